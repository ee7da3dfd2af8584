# frozen_string_literal: true

require "minitest/autorun"
require "igai/timeout"
require_relative "support/timeout_pokes"

# Igai::Timeout under exceptions from other threads (Thread#raise): whatever step of a
# call's bookkeeping one lands in, no timeout exception surfaces after the call has
# returned or raised (issue 23).
#
# The deterministic tests make the interrupt land at a chosen step: a hook prepended to
# the internal request class runs Thread.current.raise there, which, like Thread#raise from
# another thread, is delivered at once unless interrupts are masked, and then when the
# mask is lifted.
class TestIgaiTimeoutInterrupts < Minitest::Test
  # The "other thread's" exception.
  class Poke < StandardError; end

  # A klass-form timeout exception.
  class Expired < StandardError; end

  # Runs the hook the current thread set for a step of the bookkeeping, once, with the
  # object at hand (the request, or the exception being converted).
  module Hooks
    def self.run(step, subject)
      hook = Thread.current[:igai_timeout_test_hooks]&.delete(step)
      hook&.call(subject)
    end
  end

  # The steps of Igai::Timeout's bookkeeping, with a hook before or after each.
  module RequestHooks
    def initialize(...)
      super
      Hooks.run(:registered, self)
    end

    def finish(...)
      Hooks.run(:finishing, self)
      super
    end
  end
  Igai::Timeout.const_get(:Request).prepend(RequestHooks)

  # Hooks the watcher thread runs once at a step of its own, set by a test (in hooks, step =>
  # proc): as it builds the exception to raise, after it has marked the request as firing and
  # done (:building); as a new watcher thread begins, before its loop takes over (:starting).
  module WatcherThreadHooks
    @hooks = {}

    class << self
      attr_reader :hooks

      def run(step)
        @hooks.delete(step)&.call
      end
    end
  end

  # The watcher building the exception to raise.
  module FiringHooks
    private

    def build
      WatcherThreadHooks.run(:building)
      super
    end
  end
  Igai::Timeout.const_get(:Request).prepend(FiringHooks)

  # The queue push that registers a request with the watcher, and the start of a new watcher
  # thread.
  module WatcherHooks
    private

    def add(request)
      super
      Hooks.run(:added, request)
    end

    def serve
      WatcherThreadHooks.run(:starting)
      super
    end
  end
  Igai::Timeout.const_get(:Watcher).prepend(WatcherHooks)

  # The identity check of the ExitException -> Error conversion.
  module ConversionHooks
    def equal?(other)
      Hooks.run(:converting, self)
      super
    end
  end
  Igai::Timeout::ExitException.prepend(ConversionHooks)

  def teardown
    Thread.current[:igai_timeout_test_hooks] = nil
  end

  # Runs the call with +hooks+ (step => proc) set, and returns what it raised (or
  # :returned), after waiting well past every deadline involved: nothing may arrive then.
  def outcome_with(hooks)
    Thread.current[:igai_timeout_test_hooks] = hooks
    outcome = begin
      yield
      :returned
    rescue Exception => e
      e
    end
    late = begin
      sleep 0.3
      nil
    rescue Exception => e
      e
    end
    assert_nil late, "a timeout exception arrived after the call had ended with #{outcome.inspect}"
    outcome
  end

  def poke = ->(_) { Thread.current.raise(Poke, "poke") }

  # Waits until the watcher has fired +request+ (its exception then waits, masked, for the
  # step to end), at most 10 s. (Thread.pending_interrupt?(klass) crashes MRI 3.1.)
  def wait_until_fired(request)
    give_up = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    sleep 0.005 until request.instance_variable_get(:@raised) || Process.clock_gettime(Process::CLOCK_MONOTONIC) > give_up
  end

  def let_the_watcher_fire = ->(request) { wait_until_fired(request) }

  # The step's interrupt waits (masked) while the watcher fires, then the step goes on.
  def poke_and_let_the_watcher_fire
    lambda do |request|
      Thread.current.raise(Poke, "poke")
      wait_until_fired(request)
    end
  end

  def test_an_interrupt_as_the_request_is_made_leaves_nothing_behind
    outcome = outcome_with(registered: poke) { Igai::Timeout.timeout(0.05) { sleep 5 } }
    assert_instance_of Poke, outcome
  end

  def test_an_interrupt_as_the_request_is_registered_leaves_nothing_behind
    outcome = outcome_with(added: poke) { Igai::Timeout.timeout(0.05) { sleep 5 } }
    assert_instance_of Poke, outcome
  end

  def test_an_interrupt_as_the_request_is_finished_leaves_nothing_behind
    outcome = outcome_with(finishing: poke) { Igai::Timeout.timeout(0.05) { :done } }
    assert_instance_of Poke, outcome
  end

  def test_an_interrupt_as_the_request_is_finished_in_the_klass_form_leaves_nothing_behind
    outcome = outcome_with(finishing: poke) { Igai::Timeout.timeout(0.05, Expired) { :done } }
    assert_instance_of Poke, outcome
  end

  def test_an_interrupt_that_comes_before_the_watcher_fires_while_finishing_wins
    outcome = outcome_with(finishing: poke_and_let_the_watcher_fire) { Igai::Timeout.timeout(0.02) { :done } }
    assert_instance_of Poke, outcome
  end

  def test_an_interrupt_that_comes_before_the_watcher_fires_while_finishing_wins_in_the_klass_form
    outcome = outcome_with(finishing: poke_and_let_the_watcher_fire) do
      Igai::Timeout.timeout(0.02, Expired) { :done }
    end
    assert_instance_of Poke, outcome
  end

  def test_a_timeout_that_fires_while_the_request_is_finished_is_raised_by_the_call
    outcome = outcome_with(finishing: let_the_watcher_fire) { Igai::Timeout.timeout(0.02) { :done } }
    assert_instance_of Igai::Timeout::Error, outcome
  end

  def test_a_timeout_that_fires_while_the_request_is_finished_raises_klass_from_the_call
    outcome = outcome_with(finishing: let_the_watcher_fire) { Igai::Timeout.timeout(0.02, Expired) { :done } }
    assert_instance_of Expired, outcome
  end

  def test_an_interrupt_in_the_conversion_to_error_leaves_nothing_behind
    outcome = outcome_with(converting: poke) { Igai::Timeout.timeout(0.02) { sleep 5 } }
    assert_includes [Poke, Igai::Timeout::Error], outcome.class
  end

  def test_an_outer_timeout_that_fires_while_an_inner_request_is_finished_goes_to_the_outer_call
    outer = nil
    hooks = { registered: ->(request) { outer = request }, finishing: ->(_) { wait_until_fired(outer) } }
    outcome = outcome_with(hooks) do
      Igai::Timeout.timeout(0.02) do
        Igai::Timeout.timeout(5) { :inner }
      rescue Igai::Timeout::Error
        flunk "the inner call reported the outer timeout"
      end
    end
    assert_instance_of Igai::Timeout::Error, outcome
  end

  # A child forked while the watcher fires its request has no watcher to wait for: its call
  # must not wait for the parent's to finish firing.
  def test_a_child_forked_while_the_watcher_fires_its_request_finishes_the_call
    skip "no fork on this platform" unless Process.respond_to?(:fork)

    firing = Thread::Queue.new
    release = Thread::Queue.new
    WatcherThreadHooks.hooks[:building] = lambda do
      firing << true
      release.pop
    end
    reader, writer = IO.pipe
    parent = Process.pid
    pid = nil
    outcome = begin
      Igai::Timeout.timeout(0.05) do
        firing.pop
        pid = Process.fork
        release << true if pid # the parent's watcher goes on
        :returned
      end
    rescue Igai::Timeout::Error
      :expired
    end
    if Process.pid != parent
      writer.write(outcome.to_s)
      exit!(0)
    end
    writer.close
    report = nil
    Thread.new { report = reader.read }.join(10)
    assert_equal "returned", report, "the child's call waited for the parent's watcher"
  ensure
    WatcherThreadHooks.hooks.delete(:building)
    if pid
      Process.kill(:KILL, pid) unless report
      Process.wait(pid)
    end
    [reader, writer].each { |io| io&.close unless io&.closed? }
  end

  # Someone's Thread#raise on every thread reaches the watcher too: it must keep serving,
  # and no deadline it was given may be lost.
  def test_exceptions_raised_into_the_watcher_neither_stop_it_nor_lose_a_deadline
    watcher = watcher_thread
    poker = Thread.new do
      200.times do
        watcher.raise(IOError, "poke")
        sleep 0.001
      end
    end
    start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.1) { sleep 5 } }
    took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
    poker.join
    assert watcher.alive?, "the watcher died"
    assert_operator took, :<, 3.0, "the deadline fired late"
  end

  # A Thread#raise that reaches a new watcher thread before its loop has masked interrupts
  # (just as it starts: the first call, after a fork, or after a kill) is the same case:
  # it used to kill the thread with the request that started it still in the queue, and
  # that deadline was lost (the block ran its whole 2 s here).
  def test_an_exception_raised_into_the_watcher_as_it_starts_neither_stops_it_nor_loses_a_deadline
    watcher_thread.kill.join # the next call starts a new watcher
    WatcherThreadHooks.hooks[:starting] = -> { Thread.current.raise(IOError, "poke") }
    outcome = outcome_with({}) { Igai::Timeout.timeout(0.1) { sleep 2 } }
    assert_instance_of Igai::Timeout::Error, outcome
    assert watcher_thread&.alive?, "the new watcher died"
  ensure
    WatcherThreadHooks.hooks.delete(:starting)
  end

  # The watcher thread, started first if need be.
  def watcher_thread
    Igai::Timeout.timeout(1) {}
    Thread.list.find { |thread| thread.name == "Igai::Timeout watcher" }
  end

  # The reduced reproduction of issue 23, bounded: 8 threads of short timeouts, one
  # IOError poke every 0.5 ms. Before the fix, 100-300 strays in these 5 s on MRI 3.1.2.
  def test_no_timeout_exception_leaves_its_call_while_other_threads_raise_into_it
    result = IgaiTest::TimeoutPokes.run(seconds: 5)
    assert_operator result.blocks, :>, 1000, "the stress hardly ran: #{result}"
    assert_operator result.pokes, :>, 100, "few pokes landed: #{result}"
    assert_operator result.expired, :>, 100, "few timeouts fired: #{result}"
    assert_equal 0, result.strays, "timeout exceptions surfaced outside their calls: #{result}"
  end
end
