# frozen_string_literal: true

require_relative "version"

module Igai
  # Runs a block with a time limit, like the +timeout+ gem (0.4 and later).
  #
  #   Igai::Timeout.timeout(5) { slow_call }   # => the block's value
  #
  #   class Client
  #     include Igai::Timeout
  #
  #     def fetch
  #       timeout(2, IOError, "fetch took too long") { read_all }
  #     end
  #   end
  #
  # Every timeout of the process is served by one long-lived watcher thread,
  # so a call costs a small request object and a queue push, not a thread.
  # On Rubies with Ractor.store_if_absent (3.4 and later) each Ractor has its
  # own watcher, and timeouts work in any Ractor; elsewhere, as in the timeout
  # gem, only in the main Ractor (another raises Ractor::IsolationError). (The
  # gem 0.6.1 keeps per-Ractor state only from Ruby 4.0: it also needs its
  # clock, a Method object, to be shareable. This port has no such object.)
  #
  # This file is pure Ruby and can be loaded on its own with
  # <tt>require "igai/timeout"</tt>.
  module Timeout
    # The version of this port: the gem's.
    VERSION = Igai::VERSION

    # Raised by Igai::Timeout.timeout when the block timed out and no
    # exception class was given.
    class Error < RuntimeError; end

    # Raised inside the block when it times out and no exception class was
    # given. Being an Exception rather than a StandardError, a bare
    # <tt>rescue => e</tt> in the block does not swallow it. It is turned into
    # an Error once it leaves the block.
    class ExitException < Exception
      # Raising this exception again, even with a message (a Fiber scheduler's
      # +timeout_after+ does <tt>raise exception, message</tt>), raises this
      # very object: the timeout call that made it recognises it by identity.
      def exception(*)
        self
      end
    end

    # Masks every asynchronous interrupt (Thread#raise, Thread#kill) while the
    # bookkeeping of a call runs, so that none lands between two of its steps.
    # Frozen and compared by identity, so that Rubies that can use it as is do
    # not copy it on each call.
    QUIET = { Object => :never }.compare_by_identity.freeze
    private_constant :QUIET

    # One timeout being watched: which thread to interrupt, when, and with
    # what.
    class Request
      # Monotonic time, in seconds, after which the thread is interrupted.
      attr_reader :deadline

      # +klass+ is the exception class to raise with +message+, or nil for a
      # new ExitException (made only if the timeout fires).
      def initialize(thread, deadline, klass, message)
        @thread = thread
        @deadline = deadline
        @klass = klass
        @message = message
        # Set once the request needs no more watching, by the caller or by the
        # watcher as it fires. The watcher sets @firing (to itself) before it
        # checks @done, and clears it once done; the caller sets @done, then
        # waits for @firing to be clear. Ruby threads of a Ractor see each
        # other's writes in order (one runs at a time), so whichever comes
        # second sees the other's mark: either the watcher sees @done and
        # does not fire, or the caller waits until the exception is queued
        # for it. (A watcher that did not survive a fork made while it fired
        # is not waited for.)
        @done = false
        @firing = nil
        # The exception object the watcher raised in the thread, if it fired.
        @raised = nil
      end

      # Called by the caller's thread once the block has ended, with every
      # interrupt masked (QUIET), before the timeout call returns; +leaving+ is
      # the exception the block is ending with, if any. Afterwards the watcher
      # never interrupts the thread for this request. If it did, and the block
      # is ending with another exception, that one wins: the watcher's is
      # taken off the thread's queue. Otherwise the watcher's exception, if
      # still queued, is delivered as the mask is lifted, inside the timeout
      # call (or, if the caller masks it, when the caller lifts that mask).
      #
      # It takes no lock: that works inside trap handlers (where Mutex#lock is
      # refused).
      def finish(leaving)
        @done = true
        Thread.pass while @firing&.alive?
        drop(leaving) if leaving
      end

      # Called with every interrupt masked when +exception+ is leaving the
      # timeout call: if the watcher fired and its exception is not the one
      # leaving, makes sure it is not delivered later.
      def drop(exception)
        collect if @raised && !@raised.equal?(exception)
      end

      # Whether +exception+ is the ExitException this request raised, which
      # the timeout call turns into an Error.
      def expired?(exception)
        !@klass && exception.equal?(@raised)
      end

      # Called by the watcher thread. Interrupts the thread if the deadline
      # has passed at +now+ and the block is still running. Returns true once
      # the request needs no more watching.
      def expire(now)
        # A thread that is gone without finishing its request did not survive
        # a fork: only the forking thread lives on in the child.
        return true if @done || !@thread.alive?
        # Written this way round so that a NaN deadline never expires.
        return false unless @deadline <= now

        fire
        true
      end

      private

      def fire
        @firing = Thread.current
        unless @done
          @done = true
          @raised = build
          @thread.raise(@raised)
        end
      ensure
        @firing = nil
      end

      # The exception to raise: a new ExitException, or one built as
      # Thread#raise would build it from +klass+ and +message+; if that fails
      # (+klass+ is not an exception class, or its constructor raised,
      # whatever it raised), the failure, to be reported to the caller rather
      # than lose the watcher.
      def build
        return ExitException.new(@message) unless @klass
        raise TypeError, "exception class/object expected" unless @klass.respond_to?(:exception)

        built = @klass.exception(@message)
        raise TypeError, "exception object expected" unless built.is_a?(Exception)

        built
      rescue Exception => e
        e
      end

      # Takes the exception the watcher raised off this thread's queue of
      # pending interrupts, if it is still there. The window opened for it,
      # keyed by the object's singleton class, lets through that very object
      # and nothing else: not another timeout's exception, nor another
      # thread's Thread#raise of the same class.
      def collect
        Thread.handle_interrupt(@raised.singleton_class => :immediate) { Thread.pass }
      rescue Exception => e
        raise unless e.equal?(@raised)
      end
    end
    private_constant :Request

    # The watcher: a single thread that sleeps until the earliest deadline
    # and interrupts the threads whose blocks are still running then. There is
    # one per process, or one per Ractor where Ractors can keep their own
    # (see Watcher.current).
    #
    # Callers push requests onto a Thread::Queue and wake the thread only
    # when it has to change its plans, so that the common case (a block
    # ending well before a deadline later than the ones already watched)
    # never switches threads. No caller ever blocks in Mutex#lock, which
    # Ruby refuses inside trap handlers.
    class Watcher
      # Callers also wake the thread once this many requests wait in the
      # queue, so that it drops the finished ones and memory stays bounded.
      BACKLOG = 1024

      # Longest single wait, in seconds: Mutex#sleep rejects timeouts beyond
      # the range of Time, and waking up once an hour costs nothing.
      MAX_WAIT = 3600.0

      if defined?(Ractor.store_if_absent)
        # Where each Ractor keeps its watcher: a thread can only interrupt
        # threads of its own Ractor.
        KEY = :igai_timeout_watcher

        # The watcher of the current Ractor, made on its first use there.
        # (Ractor.store_if_absent takes a Mutex, which trap handlers may not:
        # the main Ractor's watcher, which they use, is made as this file
        # loads; other Ractors run no trap handlers.)
        def self.current
          Ractor.store_if_absent(KEY) { new }
        end

        # The current Ractor's watcher, or nil if it has none yet.
        def self.existing
          Ractor[KEY]
        end
      else
        # Before Ruby 3.4 a Ractor cannot safely make state of its own on
        # first use, so there is one watcher, as in the timeout gem: it is not
        # shareable, and a non-main Ractor reaching it raises
        # Ractor::IsolationError.
        def self.current
          GLOBAL
        end

        def self.existing
          GLOBAL
        end
      end

      # In a forked child or a daemon (see ForkHook): resumes watching the
      # deadlines inherited from the parent.
      def self.after_fork
        existing&.after_fork
      end

      def initialize
        @queue = Thread::Queue.new  # requests the thread has not seen yet
        @pending = []               # requests it is watching; kept here so
                                    # that a new thread (after a fork, or if
                                    # it was killed) carries on with them
        @lock = Thread::Mutex.new   # guards @wake_at and the sleep on @wakeup
        @wakeup = Thread::ConditionVariable.new
        @wake_at = Float::INFINITY  # when the sleeping thread will wake up
        @start_lock = Thread::Mutex.new
        @thread = nil
      end

      # Runs the block in the current thread and fiber, and makes the watcher
      # interrupt the thread with +klass+ and +message+ (see Request) if the
      # block is still running after +sec+ seconds. Without +klass+, the
      # block's ExitException leaves the call as an Error.
      #
      # Every step of the bookkeeping runs with interrupts masked (QUIET), and
      # the request is made and finished inside the region its +ensure+
      # covers, so that an interrupt from another thread can only land in the
      # block, or once the request is finished and its own exception
      # delivered: never between, where it would leave a request whose
      # deadline fires later into code that has left the block.
      def watch(sec, klass, message)
        request = nil
        ended = false
        begin
          Thread.handle_interrupt(QUIET) do
            request = Request.new(Thread.current, now + sec, klass, message)
            add(request)
          end
          value = yield sec
          ended = true
          value
        ensure
          # Nothing before the mask: no branch, where Ruby checks interrupts.
          Thread.handle_interrupt(QUIET) { request&.finish(ended ? nil : $!) }
        end
      rescue Exception => e
        Thread.handle_interrupt(QUIET) do
          # Lifting the mask delivered another thread's exception queued
          # before the watcher's (or the block ended with one): the
          # watcher's, if queued behind it, must not follow it out of the call.
          request&.drop(e)
          # Another (outer) timeout's ExitException goes on to its own call.
          raise Error, message if request&.expired?(e)
        end
        raise
      end

      # Only the forking thread lives on in a forked child, and the watcher
      # thread is gone: start a new one at once if requests were pending, so
      # that the deadlines of the blocks the child is still in fire on time.
      def after_fork
        start unless @pending.empty? && @queue.empty?
      end

      private

      def now
        Process.clock_gettime(Process::CLOCK_MONOTONIC)
      end

      def add(request)
        start unless @thread&.alive?
        @queue << request
        # The sleeping thread writes @wake_at, then checks that the queue is
        # empty, then sleeps. So either it sees this request before sleeping,
        # or this reads the @wake_at it sleeps until.
        wake if request.deadline < @wake_at || @queue.size >= BACKLOG
      end

      def wake
        # Inside a trap handler that interrupted this thread while it held
        # the lock: signal under that hold (the watcher wakes up once the
        # handler returns and the lock is released).
        return @wakeup.signal if @lock.owned?

        locking(@lock) { @wakeup.signal }
      end

      # Starts the watcher thread, on first use and whenever it is no longer
      # alive: in a forked child, or after something killed it.
      def start
        # A trap handler interrupted this very thread while it was starting
        # the watcher: the request waits in the queue until that start ends.
        return if @start_lock.owned?

        locking(@start_lock) do
          @thread = spawn unless @thread&.alive?
        end
      end

      def spawn
        # A new thread inherits the interrupt masks of its creator: made
        # under QUIET, the watcher is masked from its first instruction, so
        # that an exception raised into it before serve runs (a Thread#raise
        # on every thread, just as the thread starts) waits for its first
        # sleep, where it is dropped, instead of killing it with requests in
        # the queue that no caller will restart it for. Whatever masks the
        # creator had beneath, the Object => :immediate of that sleep, the
        # innermost, keeps the watcher interruptible there: it can be killed,
        # at exit too. The creator, masked as well, is not interrupted
        # between starting the thread and keeping it in @thread.
        Thread.handle_interrupt(QUIET) do
          thread = Thread.new { serve }
          thread.name = "Igai::Timeout watcher"
          # The thread serves everyone: it belongs to the default group, not
          # to its first caller's. An enclosed group refuses to let it go.
          # (ThreadGroup::Default is the main Ractor's; elsewhere the thread
          # stays in its creator's group.)
          ThreadGroup::Default.add(thread) if main_ractor? && !thread.group.enclosed?
          thread
        end
      end

      def main_ractor?
        !defined?(Ractor.main?) || Ractor.main?
      end

      # The body of the watcher thread. Interrupts from other threads reach
      # it only while it sleeps, never between taking a request off the queue
      # and keeping it, or between deciding to fire and firing. There an
      # exception raised into it (someone's Thread#raise on every thread) is
      # dropped, since the thread serves everyone; Thread#kill ends it.
      def serve
        Thread.handle_interrupt(QUIET) do
          loop do
            @pending << @queue.pop until @queue.empty?
            time = now
            @pending.reject! { |request| request.expire(time) }
            begin
              Thread.handle_interrupt(Object => :immediate) { sleep_until(earliest_deadline) }
            rescue Exception
              # not meant for the watcher: serve on
            end
          end
        end
      end

      def earliest_deadline
        earliest = Float::INFINITY
        @pending.each do |request|
          earliest = request.deadline if request.deadline < earliest
        end
        earliest
      end

      # Sleeps until +deadline+, or until a caller wakes the thread up.
      def sleep_until(deadline)
        @lock.synchronize do
          @wake_at = deadline
          # Requests came in since the queue was emptied: serve them first.
          next unless @queue.empty?

          if deadline == Float::INFINITY
            @wakeup.wait(@lock)
          else
            wait = deadline - now
            @wakeup.wait(@lock, [wait, MAX_WAIT].min) if wait > 0
          end
        end
      end

      # Runs the block holding +mutex+. Unlike Mutex#synchronize it never
      # calls Mutex#lock, which raises ThreadError inside trap handlers; the
      # locks taken this way are only ever held for a moment.
      def locking(mutex)
        Thread.pass until (locked = mutex.try_lock)
        yield
      ensure
        mutex.unlock if locked
      end

      if defined?(Ractor.store_if_absent)
        current # the main Ractor's watcher, made now (see Watcher.current)
      else
        GLOBAL = new
        private_constant :GLOBAL
      end
    end
    private_constant :Watcher

    # Process._fork, which every fork of a Ruby process goes through (3.1 and
    # later), and Process.daemon, which forks without it, each followed by
    # Watcher.after_fork in the new process.
    module ForkHook
      # Forks; in the child, carries on watching the inherited deadlines.
      def _fork
        pid = super
        Watcher.after_fork if pid.zero?
        pid
      end

      # Daemonizes (returning in the daemon only) and carries on watching the
      # inherited deadlines there.
      def daemon(*)
        result = super
        Watcher.after_fork
        result
      end
    end
    private_constant :ForkHook
    Process.singleton_class.prepend(ForkHook) if Process.respond_to?(:_fork)

    # Runs the block and returns its value, or interrupts it if it is still
    # running after +sec+ seconds. The block runs in the calling thread and
    # fiber, and is given +sec+.
    #
    # +sec+::     seconds, any non-negative number; +nil+ or zero runs the
    #             block without a time limit. A negative number raises
    #             ArgumentError.
    # +klass+::   the exception class raised in the block when it times out;
    #             it then propagates out of this call as is.
    # +message+:: the message of that exception, "execution expired" by
    #             default.
    #
    # Without +klass+, the block is interrupted by an ExitException, which
    # <tt>rescue => e</tt> does not catch, and the call raises Error. With
    # nested timeouts, the call whose own timeout fired raises the Error.
    #
    # The exception can be deferred with Thread.handle_interrupt, given an
    # explicit +klass+:
    #
    #   Thread.handle_interrupt(MyTimeout => :never) do
    #     Igai::Timeout.timeout(sec, MyTimeout) do
    #       setup # never interrupted
    #       Thread.handle_interrupt(MyTimeout => :immediate) { work }
    #     ensure
    #       cleanup # never interrupted
    #     end
    #   end
    #
    # When the current fiber has a scheduler that implements +timeout_after+,
    # the call is handed over to it, with +klass+ or else the ExitException it
    # is to raise.
    #
    # Exceptions that other threads raise into this one (Thread#raise,
    # Thread#kill) never make the timeout fire outside the block, as they can
    # with the timeout gem: its exception surfaces in the block or from this
    # call, never after the call has returned or raised something else. (The
    # one exception, as in the gem: an exception the caller itself defers, with
    # Thread.handle_interrupt around the call, until after it.) If the block
    # ends with another exception as the timeout fires, that exception wins.
    # A trap handler that raises, which Thread.handle_interrupt cannot defer,
    # is not covered while the call's own bookkeeping runs.
    #
    # Like any timeout built on Thread#raise, this cannot bound a block that
    # rescues Exception or stalls in its +ensure+ clauses.
    def self.timeout(sec, klass = nil, message = nil, &block) # :yield: sec
      return yield(sec) if sec.nil? || sec.zero?
      # Compared as the timeout gem does, so that odd arguments fail alike.
      raise ArgumentError, "Timeout sec must be a non-negative number" if 0 > sec

      message ||= "execution expired"
      scheduler = Fiber.current_scheduler
      if scheduler.respond_to?(:timeout_after)
        scheduled(scheduler, sec, klass, message, &block)
      else
        Watcher.current.watch(sec, klass, message, &block)
      end
    end

    # Hands the call to the current fiber's scheduler, with +klass+ or else
    # an ExitException that leaves the call as an Error.
    def self.scheduled(scheduler, sec, klass, message, &block)
      return scheduler.timeout_after(sec, klass, message, &block) if klass

      interruption = ExitException.new(message)
      begin
        scheduler.timeout_after(sec, interruption, message, &block)
      rescue ExitException => e
        Thread.handle_interrupt(QUIET) do
          # Another (outer) timeout's exception goes on to its own call.
          raise e unless e.equal?(interruption)

          raise Error, message
        end
      end
    end
    private_class_method :scheduled

    private

    # Igai::Timeout.timeout, for classes that include Igai::Timeout.
    def timeout(*args, &block) # :yield: sec
      Timeout.timeout(*args, &block)
    end
  end
end
