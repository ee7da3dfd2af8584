# frozen_string_literal: true

require "minitest/autorun"
require "igai/timeout"
require_relative "support/stopwatch"
require_relative "support/subprocess"

# Igai::Timeout: behaviour of the timeout gem (0.4 and later), served by one
# watcher thread. Timing bounds are deliberately generous: the machine running
# the tests may be slow and busy.
class TestIgaiTimeout < Minitest::Test
  include IgaiTest::Stopwatch
  include IgaiTest::Subprocess

  WATCHER_NAME = "Igai::Timeout watcher"

  # Raised by the tests that pass an exception class.
  class Expired < StandardError; end

  # An exception class whose constructor takes exactly one argument.
  class OneArgument < StandardError
    def initialize(message)
      super("one argument: #{message}")
    end
  end

  # An exception class whose constructor raises something other than a
  # StandardError.
  class BrokenConstructor < StandardError
    def initialize(*)
      raise NotImplementedError, "cannot build"
    end
  end

  # The least Fiber.set_scheduler accepts, plus a recorded timeout_after.
  class RecordingScheduler
    attr_reader :calls

    def initialize
      @calls = []
    end

    def timeout_after(duration, klass, message, &block)
      @calls << [duration, klass, message]
      block.call(duration)
    end

    def block(*) = raise(NotImplementedError)
    def unblock(*) = raise(NotImplementedError)
    def kernel_sleep(*) = raise(NotImplementedError)
    def io_wait(*) = raise(NotImplementedError)
    def close; end
  end

  # One whose timeout_after expires at once, raising as schedulers do.
  class ExpiringScheduler < RecordingScheduler
    def timeout_after(duration, exception, message)
      @calls << [duration, exception, message]
      raise exception, message
    end
  end

  # The same, without timeout_after.
  class PlainScheduler < RecordingScheduler
    undef_method :timeout_after
  end

  # Spins (without blocking) until +seconds+ have passed.
  def busy(seconds)
    stop = now + seconds
    nil while now < stop
  end

  def watchers
    Thread.list.select { |thread| thread.name == WATCHER_NAME }
  end

  # Runs the block in a non-blocking fiber of a new thread whose Fiber
  # scheduler is +scheduler+, and returns its value.
  def with_scheduler(scheduler, &block)
    Thread.new do
      Fiber.set_scheduler(scheduler)
      Fiber.new(&block).resume
    end.value
  end

  # Runs +code+ in a fresh Ruby that has required igai/timeout, so that it is
  # the first user of the watcher; returns its output and status.
  def fresh_ruby(code)
    run_ruby(code, "-rigai/timeout")
  end

  def assert_fresh_ruby_prints(expected, code)
    output, status = fresh_ruby(code)
    assert status.success?, "subprocess failed: #{output}"
    assert_equal expected, output
  end

  # -- arguments ------------------------------------------------------------

  def test_returns_the_block_value_and_yields_sec
    assert_equal [:value, 5], Igai::Timeout.timeout(5) { |sec| [:value, sec] }
  end

  def test_nil_or_zero_sec_just_yields_sec_without_a_time_limit
    assert_nil Igai::Timeout.timeout(nil) { |sec| sec }
    assert_equal 0, Igai::Timeout.timeout(0) { |sec| sec }
    assert_equal 0.0, Igai::Timeout.timeout(0.0) { |sec| sleep 0.05; sec }
  end

  def test_negative_sec_raises_argument_error_without_running_the_block
    ran = false
    error = assert_raises(ArgumentError) { Igai::Timeout.timeout(-1) { ran = true } }
    assert_equal "Timeout sec must be a non-negative number", error.message
    refute ran
  end

  def test_non_numeric_sec_raises_no_method_error_as_the_timeout_gem_does
    ran = false
    error = assert_raises(NoMethodError) { Igai::Timeout.timeout("1") { ran = true } }
    assert_equal :zero?, error.name
    refute ran
  end

  def test_huge_infinite_and_nan_sec_never_expire_and_spare_the_watcher
    assert_fresh_ruby_prints "[:huge, :infinite, :nan]\nexpired\ntrue\n", <<~RUBY
      watched = [[10**100, :huge], [Float::INFINITY, :infinite], [Float::NAN, :nan]]
      # Each block lasts long enough for the watcher to plan its sleep on it.
      p(watched.map { |sec, name| Igai::Timeout.timeout(sec) { sleep 0.1; name } })
      watcher = Thread.list.find { |t| t.name == "#{WATCHER_NAME}" }
      begin
        Igai::Timeout.timeout(0.1) { sleep 5 }
      rescue Igai::Timeout::Error
        puts "expired"
      end
      p watcher.alive?
    RUBY
  end

  # -- the public surface -----------------------------------------------------

  def test_only_error_exit_exception_and_version_are_public
    assert_equal %i[Error ExitException VERSION], Igai::Timeout.constants.sort
    assert_operator Igai::Timeout::Error, :<, RuntimeError
    assert_operator Igai::Timeout::ExitException, :<, Exception
    refute_operator Igai::Timeout::ExitException, :<, StandardError
    assert_kind_of String, Igai::Timeout::VERSION
  end

  def test_include_gives_a_private_timeout_method
    klass = Class.new do
      include Igai::Timeout

      def run
        timeout(1) { :inside }
      end
    end
    assert_equal :inside, klass.new.run
    refute_respond_to klass.new, :timeout
  end

  def test_include_times_out_like_the_module_method
    klass = Class.new do
      include Igai::Timeout

      def run
        timeout(0.05) { sleep 5 }
      end
    end
    assert_raises(Igai::Timeout::Error) { klass.new.run }
  end

  # -- timing out -------------------------------------------------------------

  def test_times_out_with_error_and_the_default_message
    start = now
    error = assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.1) { sleep 5 } }
    assert_equal "execution expired", error.message
    assert_operator now - start, :<, 3.0
  end

  # On time, not merely eventually: of three 0.1 s timeouts the quickest must end well before
  # 0.5 s (a watcher 0.5 s late ends every one after 0.6 s; taking the quickest keeps one slow
  # moment of a loaded machine from failing the test).
  def test_a_short_timeout_fires_on_time
    tries = Array.new(3) do
      elapsed { assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.1) { sleep 5 } } }
    end
    assert_operator tries.min, :>=, 0.1
    assert_operator tries.min, :<, 0.35, "0.1 s timeouts ended after #{tries.inspect} s"
  end

  def test_times_out_with_the_given_message
    error = assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.05, nil, "too slow") { sleep 5 } }
    assert_equal "too slow", error.message
  end

  def test_times_out_a_busy_block
    assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.05) { busy 5 } }
  end

  def test_block_is_interrupted_by_exit_exception_that_rescue_standard_error_cannot_swallow
    swallowed = false
    seen = nil
    error = assert_raises(Igai::Timeout::Error) do
      Igai::Timeout.timeout(0.05) do
        begin
          sleep 5
        rescue => e
          swallowed = e
        end
      rescue Exception => e
        seen = e
        raise
      end
    end
    refute swallowed
    assert_instance_of Igai::Timeout::ExitException, seen
    assert_same seen, error.cause
  end

  def test_inner_timeout_that_fires_is_reported_by_the_inner_call
    after_inner = nil
    result = Igai::Timeout.timeout(5, nil, "outer") do
      begin
        Igai::Timeout.timeout(0.05, nil, "inner") { sleep 5 }
      rescue Igai::Timeout::Error => e
        after_inner = e.message
      end
      :outer_finished
    end
    assert_equal "inner", after_inner
    assert_equal :outer_finished, result
  end

  def test_outer_timeout_that_fires_passes_through_the_inner_call
    inner_rescued = false
    after_inner = false
    error = assert_raises(Igai::Timeout::Error) do
      Igai::Timeout.timeout(0.05, nil, "outer") do
        begin
          Igai::Timeout.timeout(5, nil, "inner") { sleep 5 }
        rescue Igai::Timeout::Error
          inner_rescued = true
        end
        after_inner = true
      end
    end
    assert_equal "outer", error.message
    refute inner_rescued
    refute after_inner
  end

  def test_nested_timeouts_with_the_same_message_are_told_apart_by_identity
    error = assert_raises(Igai::Timeout::Error) do
      Igai::Timeout.timeout(0.05) do
        Igai::Timeout.timeout(5) { sleep 5 }
      rescue Igai::Timeout::Error
        flunk "the inner call reported the outer timeout"
      end
    end
    assert_equal "execution expired", error.message
  end

  def test_klass_is_raised_in_the_block_with_the_message
    seen = nil
    error = assert_raises(Expired) do
      Igai::Timeout.timeout(0.05, Expired, "slow") do
        sleep 5
      rescue Expired => e
        seen = e
        raise
      end
    end
    assert_same seen, error
    assert_equal "slow", error.message
  end

  def test_klass_whose_initialize_takes_one_argument
    error = assert_raises(OneArgument) { Igai::Timeout.timeout(0.05, OneArgument) { sleep 5 } }
    assert_equal "one argument: execution expired", error.message
  end

  def test_klass_that_is_not_an_exception_class_fails_in_the_block_and_spares_the_watcher
    assert_raises(TypeError) { Igai::Timeout.timeout(0.05, String) { sleep 5 } }
    assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.05) { sleep 5 } }
    assert_equal 1, watchers.size
  end

  def test_klass_whose_constructor_raises_a_non_standard_error_fails_in_the_block_and_spares_the_watcher
    Igai::Timeout.timeout(1) {} # the watcher exists
    watcher = watchers.first
    start = now
    error = assert_raises(NotImplementedError) do
      Igai::Timeout.timeout(0.05, BrokenConstructor) { sleep 5 }
    end
    assert_equal "cannot build", error.message
    assert_operator now - start, :<, 3.0
    assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.05) { sleep 5 } }
    assert_equal [watcher], watchers
    assert watcher.alive?
  end

  def test_a_shorter_timeout_started_later_is_not_delayed_by_a_longer_one
    long = Thread.new { Igai::Timeout.timeout(30) { sleep 5 } }
    sleep 0.05 # the watcher now sleeps until the long deadline
    start = now
    assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.1) { sleep 5 } }
    assert_operator now - start, :<, 3.0
  ensure
    long&.kill&.join
  end

  def test_many_threads_time_out_independently
    threads = Array.new(8) do |i|
      Thread.new do
        Array.new(20) do |j|
          if j.even?
            Igai::Timeout.timeout(0.001 * (1 + ((i + j) % 10))) { sleep 5 }
          else
            Igai::Timeout.timeout(5) { sleep 0.001 }
          end
          :finished
        rescue Igai::Timeout::Error
          :expired
        end
      end
    end
    results = threads.map { |thread| thread.join(20)&.value }
    results.each do |per_thread|
      refute_nil per_thread, "a thread hung"
      assert_equal [:expired, :finished] * 10, per_thread
    end
  end

  # -- Thread.handle_interrupt ------------------------------------------------

  def test_klass_is_deferred_while_masked_and_raised_when_the_mask_is_lifted
    finished_masked = false
    start = now
    assert_raises(Expired) do
      Igai::Timeout.timeout(0.05, Expired) do
        Thread.handle_interrupt(Expired => :never) do
          sleep 0.3
          finished_masked = true
        end
        sleep 5
      end
    end
    assert finished_masked
    assert_operator now - start, :<, 3.0
  end

  def test_documented_pattern_protects_setup_and_cleanup
    steps = []
    assert_raises(Expired) do
      Thread.handle_interrupt(Expired => :never) do
        Igai::Timeout.timeout(0.05, Expired) do
          sleep 0.2
          steps << :setup
          Thread.handle_interrupt(Expired => :immediate) do
            sleep 5
            steps << :work
          end
        ensure
          sleep 0.1
          steps << :cleanup
        end
      end
    end
    assert_equal %i[setup cleanup], steps
  end

  # -- fibers and threads -----------------------------------------------------

  def test_block_runs_in_the_callers_thread_and_fiber
    thread, fiber = Igai::Timeout.timeout(1) { [Thread.current, Fiber.current] }
    assert_same Thread.current, thread
    assert_same Fiber.current, fiber
  end

  def test_enumerator_next_in_another_fiber_is_interrupted
    enum_fiber = nil
    enum = Enumerator.new do |yielder|
      enum_fiber = Fiber.current
      sleep 5
      yielder << :never
    end
    assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.1) { enum.next } }
    refute_nil enum_fiber
    refute_same Fiber.current, enum_fiber
  end

  def test_fiber_scheduler_timeout_after_is_given_the_call
    scheduler = RecordingScheduler.new
    results = with_scheduler(scheduler) do
      [
        Igai::Timeout.timeout(2) { |sec| [:default, sec] },
        Igai::Timeout.timeout(3, Expired, "slow") { |sec| [:klass, sec] }
      ]
    end
    assert_equal [[:default, 2], [:klass, 3]], results
    (default_sec, interruption, default_message), klass_call = scheduler.calls
    assert_equal [2, "execution expired"], [default_sec, default_message]
    assert_instance_of Igai::Timeout::ExitException, interruption
    assert_equal "execution expired", interruption.message
    assert_equal [3, Expired, "slow"], klass_call
  end

  def test_fiber_scheduler_raises_its_exit_exception_and_the_caller_gets_error
    scheduler = ExpiringScheduler.new
    ran = false
    error = with_scheduler(scheduler) do
      Igai::Timeout.timeout(2, nil, "too slow") { ran = true }
      nil
    rescue Igai::Timeout::Error => e
      e
    end
    _sec, interruption, message = scheduler.calls.first
    assert_instance_of Igai::Timeout::ExitException, interruption
    assert_equal "too slow", message
    assert_instance_of Igai::Timeout::Error, error
    assert_equal "too slow", error.message
    assert_same interruption, error.cause
    refute ran
  end

  def test_fiber_scheduler_outer_timeout_passes_through_an_inner_call
    scheduler = RecordingScheduler.new
    inner_rescued = false
    error = with_scheduler(scheduler) do
      Igai::Timeout.timeout(5, nil, "outer") do |sec|
        outer = scheduler.calls.last[1]
        Igai::Timeout.timeout(sec, nil, "inner") { raise outer, "outer" }
      rescue Igai::Timeout::Error
        inner_rescued = true
      end
    rescue Igai::Timeout::Error => e
      e
    end
    refute inner_rescued
    assert_instance_of Igai::Timeout::Error, error
    assert_equal "outer", error.message
  end

  def test_fiber_scheduler_without_timeout_after_falls_back_to_the_watcher
    result = with_scheduler(PlainScheduler.new) do
      Igai::Timeout.timeout(0.05) { busy 5 }
    rescue Igai::Timeout::Error
      :expired
    end
    assert_equal :expired, result
  end

  # -- no late raise ----------------------------------------------------------

  # Yields 300 times the length of a block that ends within 0.5 to 3.3 ms, around a 3 ms
  # deadline, then lingers 0.2 s: no exception may arrive from a call that has returned.
  def assert_no_late_raise
    late = nil
    begin
      300.times { |i| yield 0.0005 + (0.0004 * (i % 8)) }
      sleep 0.2
    rescue Exception => e
      late = e
    end
    assert_nil late, "a timeout fired after its call had returned"
  end

  def test_no_exit_exception_is_raised_after_blocks_ending_just_before_their_deadline
    expired = 0
    assert_no_late_raise do |length|
      # Sleeping lets the watcher run just when the block ends.
      Igai::Timeout.timeout(0.003) { sleep(length) }
    rescue Igai::Timeout::Error
      expired += 1
    end
    assert_operator expired, :<, 300, "the blocks never finished before their deadline"
  end

  def test_no_klass_is_raised_after_blocks_ending_just_before_their_deadline
    assert_no_late_raise do |length|
      mine = Class.new(StandardError)
      begin
        Igai::Timeout.timeout(0.003, mine) { busy(length) }
      rescue mine
        # this call's own timeout: fine
      end
    end
  end

  # -- the watcher thread -----------------------------------------------------

  def test_one_watcher_thread_serves_every_call
    Igai::Timeout.timeout(1) {}
    watcher = watchers.first
    before = Thread.list
    200.times { Igai::Timeout.timeout(1) {} }
    5.times { assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.01) { sleep 1 } } }
    assert_equal [watcher], watchers
    assert watcher.alive?
    assert_empty Thread.list - before, "a call started a thread"
  end

  def test_watcher_is_named_and_joins_the_default_group_from_a_custom_group
    assert_fresh_ruby_prints "true\ntrue\n", <<~RUBY
      group = ThreadGroup.new
      caller = Thread.new { Thread.stop; Igai::Timeout.timeout(1) { :ok } }
      group.add(caller)
      Thread.pass until caller.stop?
      caller.run.join
      watchers = Thread.list.select { |t| t.name == "#{WATCHER_NAME}" }
      p watchers.size == 1
      p watchers.first.group == ThreadGroup::Default
    RUBY
  end

  def test_first_use_from_an_enclosed_thread_group_works
    assert_fresh_ruby_prints "expired\ntrue\n", <<~RUBY
      group = ThreadGroup.new
      caller = Thread.new do
        Thread.stop
        Igai::Timeout.timeout(0.1) { sleep 5 }
        :not_expired
      rescue Igai::Timeout::Error
        :expired
      end
      group.add(caller)
      group.enclose
      Thread.pass until caller.stop?
      puts caller.run.value
      p Thread.list.count { |t| t.name == "#{WATCHER_NAME}" } == 1
    RUBY
  end

  def test_watcher_created_inside_handle_interrupt_never_has_a_clean_mask
    assert_fresh_ruby_prints "killed\nexpired\n", <<~RUBY
      Thread.handle_interrupt(Object => :never) { Igai::Timeout.timeout(1) { :ok } }
      watcher = Thread.list.find { |t| t.name == "#{WATCHER_NAME}" }
      watcher.kill
      puts(watcher.join(5) ? "killed" : "unkillable")
      # A killed watcher is replaced by the next call.
      begin
        Igai::Timeout.timeout(0.1) { sleep 5 }
        puts "not expired"
      rescue Igai::Timeout::Error
        puts "expired"
      end
    RUBY
  end

  def test_first_use_inside_a_trap_handler
    assert_fresh_ruby_prints "expired\nexpired\n", <<~RUBY
      result = nil
      trap(:USR1) do
        Igai::Timeout.timeout(0.1) { sleep 5 }
        result = "not expired"
      rescue Igai::Timeout::Error
        result = "expired"
      end
      Process.kill(:USR1, Process.pid)
      stop = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
      sleep 0.01 until result || Process.clock_gettime(Process::CLOCK_MONOTONIC) > stop
      puts result
      # and the watcher made there serves the main program too
      begin
        Igai::Timeout.timeout(0.1) { sleep 5 }
      rescue Igai::Timeout::Error
        puts "expired"
      end
    RUBY
  end

  def test_forked_child_gets_a_working_watcher
    Igai::Timeout.timeout(1) {} # the parent's watcher exists
    pid = Process.fork do
      code = begin
        Igai::Timeout.timeout(0.1) { sleep 5 }
        1
      rescue Igai::Timeout::Error
        watchers.size == 1 && watchers.first.alive? ? 0 : 2
      end
      exit!(code)
    end
    status = wait_until("the child exits", timeout: 20) { Process.wait2(pid, Process::WNOHANG)&.last }
    assert_equal 0, status.exitstatus
    assert_raises(Igai::Timeout::Error) { Igai::Timeout.timeout(0.05) { sleep 5 } }
  ensure
    if pid && !status
      Process.kill(:KILL, pid)
      Process.wait(pid)
    end
  end

  # Forks inside a timeout block (as a pre-forking server's worker might), once
  # the watcher has taken the block's request, while another thread waits in a
  # block of its own (unless +alone+); the child never calls timeout again.
  # Returns what the child reported through the pipe.
  def fork_inside_a_block(sec, alone: false)
    parent = Process.pid
    reader, writer = IO.pipe
    other = Thread.new { Igai::Timeout.timeout(0.3) { sleep 5 } rescue nil } unless alone
    sleep 0.05 # the watcher now watches the other thread's deadline too
    start = now
    begin
      pid = Igai::Timeout.timeout(sec) do
        sleep 0.05 # the watcher has taken this request
        Process.fork || begin
          sleep 5
          writer.write("not interrupted")
        end
      end
    rescue Igai::Timeout::Error
      raise if Process.pid == parent

      live = watchers.select(&:alive?).size
      writer.write(format("expired %.2f %d", now - start, live))
    ensure
      exit!(0) if Process.pid != parent # whatever happened, the child goes no further
    end
    writer.close
    report = nil
    Thread.new { report = reader.read }.join(20)
    Process.kill(:KILL, pid) unless report
    Process.wait(pid)
    report
  ensure
    other&.kill&.join
    [reader, writer].each { |io| io&.close unless io&.closed? }
  end

  def test_forked_child_is_interrupted_at_the_deadline_it_inherited
    skip "no fork on this platform" unless Process.respond_to?(:fork)

    report = fork_inside_a_block(0.5)
    refute_nil report, "the child hung"
    word, elapsed, live = report.split
    assert_equal "expired", word, "the inherited deadline did not fire in the child"
    assert_operator Float(elapsed), :>=, 0.5
    assert_operator Float(elapsed), :<, 3.0
    assert_equal 1, Integer(live), "the child should have one live watcher"
  end

  # With no other deadline pending, the child's watcher must start for the
  # request the parent's watcher had already taken from its queue.
  def test_forked_child_of_a_lone_timeout_is_interrupted_at_the_deadline_it_inherited
    skip "no fork on this platform" unless Process.respond_to?(:fork)

    report = fork_inside_a_block(0.5, alone: true)
    refute_nil report, "the child hung"
    assert_equal "expired", report.split.first, "the inherited deadline did not fire in the child"
  end

  def test_daemon_is_interrupted_at_the_deadline_it_inherited
    skip "no fork or daemon on this platform" unless Process.respond_to?(:fork) && Process.respond_to?(:daemon)

    reader, writer = IO.pipe
    start = now
    # Daemonizes a forked child, so that this process stays as it is; the
    # child exits at once and the daemon (its child) goes on with the block.
    pid = Process.fork do
      reader.close
      begin
        Igai::Timeout.timeout(0.5) do
          Process.daemon(true, true)
          sleep 5
          writer.write("not interrupted")
        end
      rescue Igai::Timeout::Error
        writer.write(format("expired %.2f", now - start))
      end
    ensure
      exit!(0) # the daemon, too, goes no further
    end
    writer.close
    Process.wait(pid)
    report = nil
    Thread.new { report = reader.read }.join(20)
    refute_nil report, "the daemon hung"
    word, elapsed = report.split
    assert_equal "expired", word, "the inherited deadline did not fire in the daemon"
    assert_operator Float(elapsed), :<, 3.0
  ensure
    [reader, writer].each { |io| io&.close unless io&.closed? }
  end
end
