# frozen_string_literal: true

require_relative "test_helper"

# A lookup stalled in the bed's silent DNS server must end as soon as Ruby asks: Timeout (the
# stdlib's and Igai::Timeout), Thread#raise, Thread#kill, SIGINT, or its own timeout:. Bounds
# are generous (the stall lasts the resolver's whole timeout, 2 s); the bench measures speed.
class TestInterrupts < IgaiTest::BedTest
  [::Timeout, Igai::Timeout].each do |timeout_module|
    label = timeout_module.name.downcase.gsub("::", "_")

    define_method("test_#{label}_ends_a_stalled_lookup_at_its_deadline") do
      took = elapsed do
        assert_raises(timeout_module::Error) do
          timeout_module.timeout(0.2) { Socket.interruptible_getaddrinfo(Bed.stalled_name, 80) }
        end
      end
      assert_operator took, :>=, 0.2
      assert_operator took, :<, prompt
    end

    define_method("test_#{label}_with_a_class_raises_that_class_into_the_lookup") do
      error = Class.new(StandardError)
      assert_raises(error) do
        timeout_module.timeout(0.1, error) { Socket.interruptible_getaddrinfo(Bed.stalled_name, 80) }
      end
    end

    define_method("test_#{label}_does_not_disturb_a_lookup_that_answers_in_time") do
      name = Bed.delayed_name(100)
      rows = timeout_module.timeout(5) { Socket.interruptible_getaddrinfo(name, 80, :INET) }
      assert_equal "127.0.0.1", rows.first[3]
    end
  end

  # Starts a thread looking up a stalled name; returns it once the lookup is under way (the
  # server got the query and the thread sleeps).
  def stalled_lookup_thread
    name = Bed.stalled_name
    waiting = Thread.new { Socket.interruptible_getaddrinfo(name, 80, :INET) }
    waiting.report_on_exception = false
    wait_until("the server gets the query of #{name}") { Bed.queries_for(name).any? }
    wait_until("the waiting thread sleeps") { waiting.status == "sleep" }
    waiting
  end

  # Runs code (which must print "ready" just before its lookup) in a child Ruby; once the child
  # said so and the server got the query for name, yields the child (to signal it).
  def child_waiting_for(name, code, &block)
    run_ruby(code) do |child|
      child.await_line("ready")
      wait_until("the server gets the query of #{name}") { Bed.queries_for(name).any? }
      block.call(child)
    end
  end

  def test_thread_raise_ends_a_stalled_lookup
    waiting = stalled_lookup_thread
    took = elapsed do
      waiting.raise(IOError, "stop")
      error = assert_raises(IOError) { waiting.join }
      assert_equal "stop", error.message
    end
    assert_operator took, :<, prompt
  end

  def test_thread_kill_ends_a_stalled_lookup
    waiting = stalled_lookup_thread
    took = elapsed { waiting.kill.join }
    assert_operator took, :<, prompt
    refute waiting.alive?
  end

  def test_timeout_keyword_ends_a_stalled_lookup_with_etimedout
    error = nil
    took = elapsed do
      error = assert_raises(Errno::ETIMEDOUT) do
        Socket.interruptible_getaddrinfo(Bed.stalled_name, 80, timeout: 0.2)
      end
    end
    assert_equal "Connection timed out - user specified timeout", error.message
    assert_operator took, :>=, 0.2
    assert_operator took, :<, prompt
  end

  def test_timeout_keyword_leaves_a_lookup_that_answers_in_time_alone
    rows = Socket.interruptible_getaddrinfo(Bed.delayed_name(50), 80, :INET, timeout: 5)
    assert_equal "127.0.0.1", rows.first[3]
  end

  def test_timeout_keyword_rejects_what_is_not_a_time_interval
    assert_raises(ArgumentError) { Socket.interruptible_getaddrinfo("localhost", 80, timeout: -1) }
    assert_raises(TypeError) { Socket.interruptible_getaddrinfo("localhost", 80, timeout: "1") }
    assert_raises(ArgumentError) { Socket.interruptible_getaddrinfo("localhost", 80, bogus: 1) }
  end

  def test_zero_timeout_still_answers_numeric_hosts_which_need_no_lookup
    rows = Socket.interruptible_getaddrinfo("127.0.0.1", 80, :INET, :STREAM, timeout: 0)
    assert_equal [["AF_INET", 80, "127.0.0.1", "127.0.0.1", Socket::AF_INET, Socket::SOCK_STREAM,
                   Socket::IPPROTO_TCP]], rows
  end

  def test_sigint_raises_interrupt_in_the_main_thread_during_a_stalled_lookup
    name = Bed.stalled_name
    code = <<~RUBY
      require "igai"
      $stdout.sync = true
      begin
        puts "ready"
        Socket.interruptible_getaddrinfo(#{name.inspect}, 80, :INET)
        puts "returned"
      rescue Interrupt
        puts "interrupted"
      end
    RUBY
    took = nil
    output, = child_waiting_for(name, code) do |child|
      Process.kill(:INT, child.pid)
      took = elapsed { wait_until("the child exits", timeout: 5) { !child.alive? } }
    end
    assert_includes output, "interrupted"
    refute_includes output, "returned"
    assert_operator took, :<, prompt
  end

  # A handler that returns must neither fail the call nor start the lookup again: the DNS
  # server sees the name queried once. Checked with only the main thread (MRI then calls our
  # unblocking function from the signal handler itself) and with another thread alive.
  def test_a_trapped_signal_neither_ends_nor_restarts_a_lookup
    [false, true].each do |with_other_thread|
      name = Bed.delayed_name(600)
      code = <<~RUBY
        require "igai"
        $stdout.sync = true
        hits = 0
        trap(:USR1) { hits += 1 }
        Thread.new { sleep } if #{with_other_thread}
        puts "ready"
        rows = Socket.interruptible_getaddrinfo(#{name.inspect}, 80, :INET, :STREAM)
        puts "hits=\#{hits} address=\#{rows.first[3]}"
      RUBY
      output, status = child_waiting_for(name, code) do |child|
        3.times do
          Process.kill(:USR1, child.pid)
          sleep 0.03
        end
      end
      assert status.success?, output
      assert_match(/hits=3 address=127\.0\.0\.1/, output)
      assert_equal ["A"], Bed.queries_for(name), "the lookup must be sent once"
    end
  end

  # Resume, not restart, told apart by the server: a once- name is answered 300 ms after its
  # first query and never again. The handler outlasts that answer; when it returns, the call
  # must take the answer that came meanwhile. A call that dropped its lookup and started it
  # again would send a second query, get no answer and fail after the resolver's 2 s.
  def test_a_lookup_resumed_after_a_slow_trap_handler_takes_the_answer_that_came_meanwhile
    [false, true].each do |with_other_thread|
      name = Bed.once_name(300)
      code = <<~RUBY
        require "igai"
        $stdout.sync = true
        handled = 0
        trap(:USR1) { sleep 0.6; handled += 1 }
        Thread.new { sleep } if #{with_other_thread}
        start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        puts "ready"
        result = begin
          Socket.interruptible_getaddrinfo(#{name.inspect}, 80, :INET, :STREAM).first[3]
        rescue SocketError => e
          e.message
        end
        took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
        puts "handled=\#{handled} result=\#{result} took=\#{took.round(3)}"
      RUBY
      output, status = child_waiting_for(name, code) { |child| Process.kill(:USR1, child.pid) }
      assert status.success?, output
      assert_match(/handled=1 result=127\.0\.0\.1 /, output, "other thread: #{with_other_thread}")
      assert_operator Float(output[/took=([\d.]+)/, 1]), :<, Bed.resolver_timeout * 0.75, output
      assert_equal ["A"], Bed.queries_for(name), "the lookup must be sent once"
    end
  end

  # An interrupt already pending when the wait starts (deferred by handle_interrupt) raises
  # before the GVL is released; the lookup is withdrawn, and later lookups still wait and
  # handle trapped signals normally (igai runs interrupts itself, after rb_nogvl, with MRI's
  # async-safe flag clear: see nogvl.rs).
  def test_an_interrupt_pending_as_the_wait_starts_raises_and_lookups_go_on
    name = Bed.delayed_name(300)
    code = <<~RUBY
      require "igai"
      main = Thread.current
      raised = Thread.handle_interrupt(RuntimeError => :never) do
        Thread.new { main.raise("pending") }.join
        Thread.handle_interrupt(RuntimeError => :on_blocking) do
          Socket.interruptible_getaddrinfo(#{Bed.stalled_name.inspect}, 80)
        end
        "not raised"
      rescue RuntimeError => e
        e.message
      end
      hits = 0
      trap(:USR1) { hits += 1 }
      Thread.new { sleep 0.1; 3.times { Process.kill(:USR1, Process.pid); sleep 0.03 } }.join(0)
      rows = Socket.interruptible_getaddrinfo(#{name.inspect}, 80, :INET, :STREAM)
      sleep 0.05 until hits == 3
      puts "raised=\#{raised} queued=\#{Igai.stats[:queued]} hits=\#{hits} address=\#{rows.first[3]}"
    RUBY
    output, status = run_ruby(code)
    assert status.success?, output
    assert_match(/raised=pending queued=0 hits=3 address=127\.0\.0\.1/, output)
  end

  # Trap handlers that wait on IO, run between lookups of the only Ruby thread, while more
  # signals arrive. Before, a signal pending as a wait started ran its trap handler with MRI's
  # async-safe flag set, so a second signal made MRI call the handler's IO unblocking function
  # (which takes locks) from inside the signal handler. Bounded: the run must finish, with
  # every lookup answered and handlers run.
  def test_trap_handlers_doing_io_while_more_signals_arrive_leave_lookups_working
    code = <<~RUBY
      require "igai"
      reader, = IO.pipe
      handled = 0
      trap(:USR1) { IO.select([reader], nil, nil, 0.0002); handled += 1 }
      puts "ready"
      $stdout.flush
      lookups = 0
      give_up = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 2
      while Process.clock_gettime(Process::CLOCK_MONOTONIC) < give_up
        Socket.interruptible_getaddrinfo("localhost", 80, :INET, timeout: 1)
        lookups += 1
      end
      puts "lookups=\#{lookups} handled=\#{handled}"
    RUBY
    output, status = run_ruby(code, timeout: 30) do |child|
      child.await_line("ready")
      signals = 0
      while child.alive? && signals < 1500
        Process.kill(:USR1, child.pid)
        signals += 1
        sleep 0.001
      end
    end
    assert status.success?, output
    counts = output.match(/lookups=(\d+) handled=(\d+)/)
    refute_nil counts, output
    lookups, handled = counts.captures.map { |count| Integer(count) }
    assert_operator lookups, :>, 100, output
    assert_operator handled, :>, 100, output
  end

  def test_other_threads_keep_running_while_a_lookup_waits
    ticks = 0
    ticker = Thread.new { loop { ticks += 1; sleep 0.001 } }
    Socket.interruptible_getaddrinfo(Bed.delayed_name(1000), 80, :INET)
    ticker.kill.join
    assert_operator ticks, :>, 50
  end
end
