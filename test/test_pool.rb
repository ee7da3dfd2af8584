# frozen_string_literal: true

require_relative "test_helper"
require "json"

# The worker pool on the stalled-DNS bed. Each test runs in a fresh child process, so that
# its thread and memory counts are its own and no other test's stalled lookups are counted.
class TestPool < IgaiTest::BedTest
  STOPWATCH = File.expand_path("support/stopwatch.rb", __dir__)

  # Runs `body` in a child with igai loaded and helpers defined; returns its JSON report.
  # wait_until raises (failing the child) when its condition does not come within the limit.
  def in_child(body, env: {})
    code = <<~RUBY
      require "igai"
      require "json"
      require #{STOPWATCH.dump}
      def threads = Dir.children("/proc/self/task").size
      def lookup_threads = Dir["/proc/self/task/*/comm"].count { |comm| File.read(comm).chomp == "igai-resolver" }
      def rss_kb = File.read("/proc/self/status")[/VmRSS:\\s+(\\d+)/, 1].to_i
      def now = IgaiTest::Stopwatch.now
      def wait_until(limit = 10, &condition)
        IgaiTest::Stopwatch.wait_until("the condition of line \#{caller_locations(1, 1)[0].lineno} holds " \
                                       "(stats: \#{Igai.stats})", timeout: limit, &condition)
      end
      #{body}
    RUBY
    output, status = run_ruby(code, timeout: 60, env: env)
    assert status.success?, output
    JSON.parse(output.lines.last, symbolize_names: true)
  end

  # The stalled queries last 30 s here (RES_OPTIONS), so that however slowly the 1000
  # lookups run, none of the ten ends and is started again within the test.
  def test_abandoned_lookups_of_ten_names_share_at_most_ten_busy_workers
    names = Array.new(10) { Bed.stalled_name }
    report = in_child(<<~RUBY, env: { "RES_OPTIONS" => "timeout:30 attempts:1" })
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
    assert_equal({ workers: 10, busy: 10, idle: 0, queued: 0, abandoned: 10, coalesced: 990,
                   completed: 0 }, report)
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
    assert_equal({ workers: 2, busy: 2, idle: 0, queued: 0, abandoned: 0, coalesced: 0, completed: 0 },
                 report.except(:result, :took))
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
    assert_equal({ workers: 4, busy: 4, idle: 0, queued: 0, abandoned: 4, coalesced: 0, completed: 0 },
                 report[:during])
    assert_equal "127.0.0.1", report[:answer]
    assert_equal({ workers: 0, busy: 0, idle: 0, queued: 0, abandoned: 0, coalesced: 0, completed: 5 },
                 report[:after])
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

  # After five lookups of distinct names, one after the other: one thread did them all and
  # now idles; nothing is in flight.
  def test_stats_after_lookups_one_after_another
    report = in_child(<<~RUBY)
      before = Igai.stats
      5.times { |i| Socket.interruptible_getaddrinfo("ok-seq\#{i}-\#{$$}.igai.test", 80, :INET) }
      puts JSON.generate(before: before, after: Igai.stats)
    RUBY
    assert_equal({ workers: 0, busy: 0, idle: 0, queued: 0, abandoned: 0, coalesced: 0, completed: 0 },
                 report[:before])
    assert_equal({ workers: 1, busy: 0, idle: 1, queued: 0, abandoned: 0, coalesced: 0, completed: 5 },
                 report[:after])
  end

  # Identical lookups at once: one runs, the others join it; each joiner counts as coalesced.
  def test_stats_of_identical_concurrent_lookups
    report = in_child(<<~RUBY)
      name = "delay300-same-\#{$$}.igai.test"
      callers = 4.times.map { Thread.new { Socket.interruptible_getaddrinfo(name, 80, :INET)[0][3] } }
      wait_until { Igai.stats[:coalesced] == 3 }
      during = Igai.stats
      answers = callers.map(&:value)
      puts JSON.generate(during: during, answers: answers, after: Igai.stats)
    RUBY
    assert_equal({ workers: 1, busy: 1, idle: 0, queued: 0, abandoned: 0, coalesced: 3, completed: 0 },
                 report[:during])
    assert_equal ["127.0.0.1"] * 4, report[:answers]
    assert_equal({ workers: 1, busy: 0, idle: 1, queued: 0, abandoned: 0, coalesced: 3, completed: 1 },
                 report[:after])
  end
end
