# frozen_string_literal: true

require_relative "test_helper"
require "json"

# The worker pool on the stalled-DNS bed. Each test runs in a fresh child process, so that
# its thread and memory counts are its own and no other test's stalled lookups are counted.
class TestPool < Minitest::Test
  include IgaiTest::Helpers
  Bed = IgaiTest::Bed

  def setup
    Bed.require!(self)
  end

  # Runs `body` in a child with igai loaded and helpers defined; returns its JSON report.
  def in_child(body)
    code = <<~RUBY
      require "igai"
      require "json"
      def threads = Dir.children("/proc/self/task").size
      def lookup_threads = Dir["/proc/self/task/*/comm"].count { |comm| File.read(comm).chomp == "igai-resolver" }
      def rss_kb = File.read("/proc/self/status")[/VmRSS:\\s+(\\d+)/, 1].to_i
      def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      def wait_until(limit = 10)
        give_up = now + limit
        sleep 0.01 until yield || now > give_up
      end
      #{body}
    RUBY
    output, status = run_ruby(code, timeout: 60)
    assert status.success?, output
    JSON.parse(output.lines.last, symbolize_names: true)
  end

  def test_abandoned_lookups_of_ten_names_share_at_most_ten_busy_workers
    names = Array.new(10) { Bed.stalled_name }
    report = in_child(<<~RUBY)
      names = #{names.inspect}
      50.times.map do |t|
        Thread.new do
          20.times do |i|
            Igai::Timeout.timeout(0.01) { Socket.interruptible_getaddrinfo(names[(t + i) % 10], 80) }
          rescue Igai::Timeout::Error
          end
        end
      end.each(&:join)
      puts JSON.generate(Igai.stats)
    RUBY
    assert_operator report[:busy], :<=, 10
    assert_operator report[:workers], :<=, 10
    assert_operator report[:abandoned], :<=, 10
    assert_operator report[:coalesced], :>=, 990
  end

  def test_abandoned_lookups_of_distinct_names_stay_within_the_cap_in_threads_and_memory
    report = in_child(<<~RUBY)
      base_threads = threads
      base_rss = rss_kb
      40.times.map do |t|
        Thread.new do
          50.times do |i|
            Socket.interruptible_getaddrinfo("stall-\#{t}-\#{i}-\#{$$}.igai.test", 80, timeout: 0.005)
          rescue Errno::ETIMEDOUT
          end
        end
      end.each(&:join)
      puts JSON.generate(Igai.stats.merge(extra_threads: threads - base_threads,
                                          lookup_threads: lookup_threads,
                                          rss_growth_kb: rss_kb - base_rss,
                                          cap: Igai.max_workers))
    RUBY
    assert_equal 64, report[:cap]
    assert_operator report[:workers], :<=, report[:cap]
    assert_operator report[:lookup_threads], :<=, report[:cap]
    # MRI keeps the native threads of the 40 finished Ruby threads cached for reuse.
    assert_operator report[:extra_threads], :<=, report[:cap] + 40 + 4
    assert_operator report[:rss_growth_kb], :<, 30 * 1024
    assert_equal 0, report[:queued], "timed-out queued lookups must be withdrawn"
  end

  def test_a_queued_lookup_ends_on_its_own_timeout_while_every_worker_is_stuck
    report = in_child(<<~RUBY)
      Igai.max_workers = 2
      stuck = 2.times.map { |i| Thread.new { Socket.interruptible_getaddrinfo("stall-q\#{i}-\#{$$}.igai.test", 80) } }
      wait_until { Igai.stats[:busy] == 2 }
      start = now
      begin
        Socket.interruptible_getaddrinfo("ok-queued-\#{$$}.igai.test", 80, timeout: 0.2)
        result = "answered"
      rescue Errno::ETIMEDOUT
        result = "timed out"
      end
      took = now - start
      stats = Igai.stats
      stuck.each(&:kill)
      puts JSON.generate(stats.merge(result: result, took: took))
    RUBY
    assert_equal "timed out", report[:result]
    assert_operator report[:took], :<, 1.0
    assert_equal 0, report[:queued]
    assert_equal 2, report[:workers]
  end

  def test_once_stalled_queries_give_up_new_lookups_succeed_and_idle_threads_retire
    report = in_child(<<~RUBY)
      Igai.max_workers = 4
      4.times { |i| Socket.interruptible_getaddrinfo("stall-r\#{i}-\#{$$}.igai.test", 80, timeout: 0.05) rescue nil }
      during = Igai.stats
      wait_until { Igai.stats[:busy].zero? }
      answer = Socket.interruptible_getaddrinfo("ok-after-\#{$$}.igai.test", 80, :INET)[0][3]
      Igai.idle_timeout = 0.1
      wait_until { Igai.stats[:workers].zero? }
      puts JSON.generate(during: during, answer: answer, after: Igai.stats)
    RUBY
    assert_equal 4, report[:during][:busy]
    assert_equal "127.0.0.1", report[:answer]
    assert_equal 0, report[:after][:workers]
    assert_equal 0, report[:after][:busy]
  end

  def test_a_child_forked_during_stalled_lookups_resolves_at_once
    report = in_child(<<~RUBY)
      stalled = 8.times.map { |i| Thread.new { Socket.interruptible_getaddrinfo("stall-f\#{i}-\#{$$}.igai.test", 80) } }
      wait_until { Igai.stats[:busy] == 8 }
      reader, writer = IO.pipe
      start = now
      pid = fork do
        reader.close
        t = now
        local = Socket.interruptible_getaddrinfo("localhost", 80, :INET)[0][3]
        dns = Socket.interruptible_getaddrinfo("ok-child-\#{$$}.igai.test", 80, :INET)[0][3]
        writer.puts JSON.generate(local: local, dns: dns, took: now - t, stats: Igai.stats)
        writer.close
        exit!(0)
      end
      fork_took = now - start
      writer.close
      child = JSON.parse(reader.read)
      Process.wait(pid)
      stalled.each(&:kill)
      puts JSON.generate(child: child, fork_took: fork_took, parent_busy: Igai.stats[:busy])
    RUBY
    child = report[:child]
    assert_equal "127.0.0.1", child[:local]
    assert_equal "127.0.0.1", child[:dns]
    assert_operator child[:took], :<, 1.0
    assert_operator report[:fork_took], :<, 1.0
    assert_equal 8, report[:parent_busy], "the parent's lookups are unaffected"
  end

  # Runs `lookup` (Ruby code returning Socket.interruptible_getaddrinfo's rows) in a child
  # with a USR1 trap handler that forks without a block, after `setup` (which arranges for the
  # signal). The forked child comes back into the interrupted lookup: it must resolve and
  # exit by itself. Returns {child_status:, parent_answer:} (status nil: killed after 15 s).
  def trap_fork_report(setup, lookup)
    in_child(<<~RUBY)
      parent = Process.pid
      reader, writer = IO.pipe
      trap("USR1") do
        child = fork
        writer.puts(child) if child
      end
      #{setup}
      rows = #{lookup}
      exit!(rows[0][3] == "127.0.0.1" ? 0 : 1) unless Process.pid == parent
      child = Integer(reader.gets)
      status = nil
      wait_until(15) { status = Process.wait2(child, Process::WNOHANG)&.last }
      unless status
        Process.kill(:KILL, child)
        Process.wait(child)
      end
      puts JSON.generate(child_status: status&.exitstatus, parent_answer: rows[0][3])
    RUBY
  end

  # A trap handler that forks while the main thread waits in a lookup: the child comes back
  # into the interrupted wait, holding a ticket of the parent's pool. It must resubmit to a
  # pool of its own (it used to wait for ever).
  def test_a_child_forked_from_a_trap_handler_during_a_lookup_resolves_and_exits
    # The sender lives on: a sleeping thread is what notices the signal (MRI) while the
    # main thread's wait began with other threads alive.
    lookup = 'Socket.interruptible_getaddrinfo("delay1000-trapfork-%d.igai.test" % $$, 80, :INET)'
    report = trap_fork_report(<<~SETUP, lookup)
      Thread.new { wait_until { Igai.stats[:busy] == 1 }; Process.kill("USR1", parent); sleep }
    SETUP
    assert_equal "127.0.0.1", report[:parent_answer]
    assert_equal 0, report[:child_status], "the child resolved and exited within 15 s"
  end

  # The same, with the signal already pending as the wait starts: MRI then runs the trap
  # handler inside rb_nogvl, before its blocking region, and the child goes on into the
  # region. To get there on cue, a finalizer sends the signal: GC.stress collects its object
  # while the call allocates, and MRI runs finalizers at the next interrupt check, which is
  # rb_nogvl's (reverse_lookup false: no Ruby method call, hence no earlier check).
  def test_a_child_forked_from_a_trap_handler_as_the_wait_starts_resolves_and_exits
    report = trap_fork_report(<<~SETUP, <<~LOOKUP)
      $signalled = false
      def leave_garbage
        50.times do
          ObjectSpace.define_finalizer(Object.new, proc do
            Process.kill("USR1", Process.pid) unless $signalled
            $signalled = true
          end)
        end
        nil
      end
      leave_garbage
      GC.stress = true
    SETUP
      Socket.interruptible_getaddrinfo("delay300-waitfork-\#{$$}.igai.test", 80, :INET, nil, nil,
                                       nil, false, timeout: 20).tap { GC.stress = false }
    LOOKUP
    assert_equal "127.0.0.1", report[:parent_answer]
    assert_equal 0, report[:child_status], "the child resolved and exited within 15 s"
  end

  # Building the exception runs Ruby code (here an Errno::ETIMEDOUT#initialize that raises):
  # its raise reaches the caller, and the timed-out lookup has been withdrawn from the queue
  # (the raise used to jump over the ticket's destructor and leave the job queued for ever).
  def test_a_raise_while_building_the_exception_still_withdraws_the_lookup
    report = in_child(<<~RUBY)
      Igai.max_workers = 1
      blocker = Thread.new { Socket.interruptible_getaddrinfo("stall-busy-\#{$$}.igai.test", 80) }
      wait_until { Igai.stats[:busy] == 1 }
      Errno::ETIMEDOUT.prepend(Module.new { def initialize(*) = raise(IOError, "from initialize") })
      error = begin
        Socket.interruptible_getaddrinfo("stall-queued-\#{$$}.igai.test", 80, timeout: 0.2)
      rescue IOError => e
        e.message
      end
      stats = Igai.stats
      blocker.kill
      puts JSON.generate(error: error, queued: stats[:queued])
    RUBY
    assert_equal "from initialize", report[:error]
    assert_equal 0, report[:queued], "the timed-out lookup left the queue"
  end

  # With no address space left for a thread's stack (a soft RLIMIT_AS just above what the
  # process uses), the lookup fails with an error that says so, not a resolution failure;
  # once the limit is lifted, lookups work again.
  def test_a_lookup_thread_that_cannot_be_started_is_reported_as_such
    report = in_child(<<~RUBY)
      size = File.read("/proc/self/status")[/VmSize:\\s+(\\d+)/, 1].to_i * 1024
      Process.setrlimit(:AS, size + 128 * 1024, Process::RLIM_INFINITY)
      error = begin
        Socket.interruptible_getaddrinfo("ok-nothread-\#{$$}.igai.test", 80, :INET)
        nil
      rescue SystemCallError => e
        [e.class.name, e.message]
      ensure
        Process.setrlimit(:AS, Process::RLIM_INFINITY)
      end
      after = Socket.interruptible_getaddrinfo("ok-thread-\#{$$}.igai.test", 80, :INET)[0][3]
      puts JSON.generate(error: error, after: after)
    RUBY
    assert_equal "Errno::EAGAIN", report[:error][0]
    assert_match(/igai could not start a lookup thread/, report[:error][1])
    assert_equal "127.0.0.1", report[:after]
  end

  # glibc keeps a thread's DNS socket in the descriptor at the top of its stack and hands
  # cached stacks to new threads: a child's worker must not inherit a parent worker's socket
  # (it then loses answers to the parent). Fork repeatedly while a parent lookup is in flight.
  def test_children_forked_during_lookups_get_their_own_resolver_state
    report = in_child(<<~RUBY)
      failures = 0
      30.times do |i|
        stalled = Thread.new do
          Socket.interruptible_getaddrinfo("stall-g\#{i}-\#{$$}.igai.test", 80, timeout: 0.3)
        rescue Errno::ETIMEDOUT
        end
        wait_until { Igai.stats[:busy] >= 1 }
        pid = fork do
          Socket.interruptible_getaddrinfo("ok-g\#{i}-\#{$$}.igai.test", 80, :INET)
          exit!(0)
        rescue SocketError
          exit!(1)
        end
        Process.wait(pid)
        failures += 1 unless $?.success?
        stalled.join
      end
      puts JSON.generate(failures: failures)
    RUBY
    assert_equal 0, report[:failures]
  end

  def test_max_workers_and_idle_timeout_reject_bad_values
    assert_raises(ArgumentError) { Igai.max_workers = 0 }
    assert_raises(TypeError) { Igai.max_workers = "many" }
    assert_raises(ArgumentError) { Igai.idle_timeout = -1 }
  end

  def test_igai_max_workers_environment_variable_sets_the_cap
    output, status = run_ruby('require "igai"; print Igai.max_workers')
    assert status.success?
    assert_equal "64", output
    ENV["IGAI_MAX_WORKERS"] = "7"
    output, = run_ruby('require "igai"; print Igai.max_workers')
    assert_equal "7", output
  ensure
    ENV.delete("IGAI_MAX_WORKERS")
  end

  def test_stats_report_every_documented_count
    assert_equal %i[workers busy idle queued abandoned coalesced completed], Igai.stats.keys
    assert(Igai.stats.values.all? { |count| count.is_a?(Integer) && count >= 0 })
  end
end
