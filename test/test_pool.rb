# frozen_string_literal: true

require_relative "test_helper"
require "json"

# The worker pool on the stalled-DNS bed. Each test runs in a fresh child process, so that
# its thread and memory counts are its own and no other test's stalled lookups are counted.
class TestPool < IgaiTest::BedTest
  STOPWATCH = File.expand_path("support/stopwatch.rb", __dir__)

  # A DNS outage as users meet it: glibc waits 30 s (the most it allows) for an unanswered
  # query. Set per child process through RES_OPTIONS, which overrides the bed's resolv.conf.
  OUTAGE_ENV = { "RES_OPTIONS" => "timeout:30 attempts:1", "IGAI_BED_RESOLVER_TIMEOUT" => "30" }.freeze

  # Runs `body` in a child with igai loaded and helpers defined; returns its JSON report.
  # wait_until raises (failing the child) when its condition does not come within the limit.
  def in_child(body, env: {}, timeout: 60)
    code = <<~RUBY
      require "igai"
      require "json"
      require #{STOPWATCH.dump}
      def threads = Dir.children("/proc/self/task").size
      # (A thread that exits between the listing and the read has no comm left: not counted.)
      def lookup_threads = Dir["/proc/self/task/*/comm"].count { |comm| (File.read(comm) rescue "").chomp == "igai-resolver" }
      def rss_kb = File.read("/proc/self/status")[/VmRSS:\\s+(\\d+)/, 1].to_i
      def now = IgaiTest::Stopwatch.now
      def wait_until(limit = 10, &condition)
        IgaiTest::Stopwatch.wait_until("the condition of line \#{caller_locations(1, 1)[0].lineno} holds " \
                                       "(stats: \#{Igai.stats})", timeout: limit, &condition)
      end
      #{body}
    RUBY
    output, status = run_ruby(code, timeout: timeout, env: env)
    assert status.success?, output
    JSON.parse(output.lines.last, symbolize_names: true)
  end

  # The stalled queries last 30 s here (OUTAGE_ENV), so that however slowly the 1000
  # lookups run, none of the ten ends within the test.
  def test_abandoned_lookups_of_ten_names_share_at_most_ten_busy_workers_plus_the_zone_limit
    names = Array.new(10) { Bed.stalled_name }
    report = in_child(<<~RUBY, env: OUTAGE_ENV)
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
    # One running lookup per name that callers wait for, and once every caller of one gave up,
    # at most max_stuck_per_zone (2) more started in their place (a retry must not join a
    # lookup that may never answer; see the outage tests below).
    bound = 10 + 2
    assert_operator report[:busy], :<=, bound
    assert_operator report[:workers], :<=, bound
    assert_operator report[:abandoned], :<=, bound
    assert_operator report[:busy] + report[:completed], :<=, bound, "lookups started"
    assert_operator report[:coalesced], :>=, 900
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
      # Two zones: with two workers, one zone alone may run only one lookup.
      stuck = 2.times.map { |i| Thread.new { Socket.interruptible_getaddrinfo("stall-q\#{i}-\#{$$}.igai-q\#{i}.test", 80) } }
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
    # Stalled for about 0.2 s here, so not yet stuck (0.5 s) unless the machine is very slow.
    assert_equal(IgaiTest::NO_STATS.merge(workers: 2, busy: 2).except(:stuck),
                 report.except(:result, :took, :stuck))
    assert_includes 0..2, report[:stuck]
  end

  # Each stalled lookup is abandoned once it runs (not on a timer, which a loaded machine could
  # let expire while the lookup is still queued); the stall lasts 3 s.
  def test_once_stalled_queries_give_up_new_lookups_succeed_and_idle_threads_retire
    report = in_child(<<~RUBY, env: { "RES_OPTIONS" => "timeout:3 attempts:1" })
      Igai.max_workers = 5 # a zone may run all but one of them: four
      Igai.max_stuck_per_zone = 4 # all four in one zone: let each hold a worker
      4.times do |i|
        caller = Thread.new { Socket.interruptible_getaddrinfo("stall-r\#{i}-\#{$$}.igai.test", 80) }
        wait_until { Igai.stats[:busy] == i + 1 }
        caller.kill.join
      end
      during = Igai.stats
      wait_until { Igai.stats[:busy].zero? }
      answer = Socket.interruptible_getaddrinfo("ok-after-\#{$$}.igai.test", 80, :INET)[0][3]
      Igai.idle_timeout = 0.1
      wait_until { Igai.stats[:workers].zero? }
      puts JSON.generate(during: during, answer: answer, after: Igai.stats)
    RUBY
    assert_equal(IgaiTest::NO_STATS.merge(workers: 4, busy: 4, abandoned: 4, stuck: 4, stuck_zones: 1),
                 report[:during])
    assert_equal "127.0.0.1", report[:answer]
    assert_equal(IgaiTest::NO_STATS.merge(completed: 5),
                 report[:after])
  end

  # The fork gate waits for lookups inside glibc's locks, never for those waiting on a stalled
  # server: fork_took stays far below the 2 s the stalls last (MRI 3.4's fork lock waits them).
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
  # exit by itself (its status is nil when it was killed after 15 s), and the parent's
  # lookup answers as usual.
  def assert_trap_forked_child_resolves_and_exits(setup, lookup)
    report = in_child(<<~RUBY)
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
    assert_equal "127.0.0.1", report[:parent_answer]
    assert_equal 0, report[:child_status], "the child resolved and exited within 15 s"
  end

  # A trap handler that forks while the main thread waits in a lookup: the child comes back
  # into the interrupted wait, holding a ticket of the parent's pool. It must resubmit to a
  # pool of its own (it used to wait for ever).
  def test_a_child_forked_from_a_trap_handler_during_a_lookup_resolves_and_exits
    # The sender lives on: a sleeping thread is what notices the signal (MRI) while the
    # main thread's wait began with other threads alive.
    lookup = 'Socket.interruptible_getaddrinfo("delay1000-trapfork-%d.igai.test" % $$, 80, :INET)'
    assert_trap_forked_child_resolves_and_exits(<<~SETUP, lookup)
      Thread.new { wait_until { Igai.stats[:busy] == 1 }; Process.kill("USR1", parent); sleep }
    SETUP
  end

  # The same, with the signal already pending as the wait starts: MRI then runs the trap
  # handler inside rb_nogvl, before its blocking region, and the child goes on into the
  # region. To get there on cue, a finalizer sends the signal: GC.stress collects its object
  # while the call allocates, and MRI runs finalizers at the next interrupt check, which is
  # rb_nogvl's (reverse_lookup false: no Ruby method call, hence no earlier check).
  def test_a_child_forked_from_a_trap_handler_as_the_wait_starts_resolves_and_exits
    assert_trap_forked_child_resolves_and_exits(<<~SETUP, <<~LOOKUP)
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
    assert_equal %i[workers busy idle queued abandoned stuck coalesced completed stuck_zones
                    waiting_for_zone inline],
                 Igai.stats.keys
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
    assert_equal(IgaiTest::NO_STATS,
                 report[:before])
    assert_equal(IgaiTest::NO_STATS.merge(workers: 1, idle: 1, completed: 5),
                 report[:after])
  end

  # Identical lookups at once: one runs, the others join it; each joiner counts as coalesced.
  def test_stats_of_identical_concurrent_lookups
    report = in_child(<<~RUBY)
      name = "delay300-same-\#{$$}.igai.test"
      callers = 4.times.map { Thread.new { Socket.interruptible_getaddrinfo(name, 80, :INET)[0][3] } }
      wait_until { Igai.stats.values_at(:coalesced, :busy) == [3, 1] }
      during = Igai.stats
      answers = callers.map(&:value)
      puts JSON.generate(during: during, answers: answers, after: Igai.stats)
    RUBY
    assert_equal(IgaiTest::NO_STATS.merge(workers: 1, busy: 1, coalesced: 3),
                 report[:during])
    assert_equal ["127.0.0.1"] * 4, report[:answers]
    assert_equal(IgaiTest::NO_STATS.merge(workers: 1, idle: 1, coalesced: 3, completed: 1),
                 report[:after])
  end

  # --- outages: a dead zone must not stall the others (see the README's policy) ---

  # Abandons `count` lookups of distinct never-answered names, spread over `zones`, each by
  # the standard library's Timeout after 2 ms (a webhook sender or crawler meeting an outage),
  # between 20 lookups of healthy names before and 20 after. Reports the healthy lookups'
  # times, thread counts and stats.
  def outage(zones, count)
    healthy_zone = Bed.zone("healthy")
    in_child(<<~RUBY, env: OUTAGE_ENV, timeout: 120)
      require "timeout"
      zones = #{zones.inspect}
      #{HEALTHY}
      before = healthy { |i| "ok-before\#{i}-\#{$$}.#{healthy_zone}" }
      base_threads = lookup_threads
      #{count}.times do |i|
        Timeout.timeout(0.002) do
          Socket.interruptible_getaddrinfo("stall-\#{i}-\#{$$}.\#{zones[i % zones.size]}", 80)
        end
      rescue Timeout::Error
      end
      after = healthy { |i| "ok-after\#{i}-\#{$$}.#{healthy_zone}" }
      puts JSON.generate(before: before, after: after, stats: Igai.stats, stuck: Igai.stuck_zones,
                         base_threads: base_threads, lookup_threads: lookup_threads,
                         cap: Igai.max_workers)
    RUBY
  end

  # Ruby code defining healthy { |i| name }: the times (s) of 20 lookups of the names the block
  # gives, one after the other, each given up after 5 s (a lookup held up by the outage).
  HEALTHY = <<~RUBY
    def healthy
      Array.new(20) do |i|
        start = now
        begin
          Socket.interruptible_getaddrinfo(yield(i), 80, :INET, timeout: 5)
        rescue Errno::ETIMEDOUT
        end
        now - start
      end
    end
  RUBY

  def median(times) = times.sort[times.size / 2]

  # Before the fix every healthy lookup waited for a stuck worker (up to the 30 s resolver
  # timeout; 5 s here, where they give up); the precise figures (within 10 ms of `before`) are
  # in bench/outage.rb.
  def assert_healthy_zone_unaffected(report)
    assert_operator report[:after].max, :<, report[:before].max + 1.0, report.inspect
  end

  # As assert_healthy_zone_unaffected, and the median of the lookups during the outage within
  # 50 ms of the one before.
  def assert_as_fast_as_before(report)
    assert_healthy_zone_unaffected(report)
    assert_operator median(report[:after]), :<, median(report[:before]) + 0.05, report.inspect
  end

  def test_a_dead_zone_with_2000_abandoned_names_holds_two_workers_and_stalls_no_other_zone
    dead = Bed.zone("dead")
    report = outage([dead], 2000)
    assert_healthy_zone_unaffected(report)
    # Two stuck lookups (the second the zone's probe) make the zone dead.
    assert_equal({ dead.to_sym => 2 }, report[:stuck])
    stats = report[:stats]
    assert_equal [2, 1, 0, 0], stats.values_at(:abandoned, :stuck_zones, :waiting_for_zone, :queued)
    # Two stuck workers and a few that served the healthy names: far below the cap of 64.
    assert_operator report[:lookup_threads], :<=, 8, report.inspect
  end

  def test_twenty_dead_zones_with_100_abandoned_names_each_stall_no_other_zone
    dead = Array.new(20) { |i| Bed.zone("dead#{i}") }
    report = outage(dead, 2000)
    assert_healthy_zone_unaffected(report)
    assert_equal dead.sort, report[:stuck].keys.map(&:to_s).sort
    assert(report[:stuck].values.all?(2), report[:stuck].inspect)
    assert_equal [40, 20, 0, 0], report[:stats].values_at(:abandoned, :stuck_zones, :waiting_for_zone, :queued)
    assert_operator report[:lookup_threads], :<=, report[:cap] + 4
    assert_operator report[:lookup_threads], :<=, 40 + 8, report.inspect
  end

  # A webhook sender whose customers' domains have lame delegations: more dead zones than
  # workers. Stuck lookups do not count against max_workers, up to 4 x max_workers threads.
  def test_120_dead_zones_with_two_abandoned_names_each_stall_no_other_zone
    healthy_zone = Bed.zone("healthy")
    dead = Array.new(120) { |i| Bed.zone("dead#{i}") }
    report = in_child(<<~RUBY, env: OUTAGE_ENV, timeout: 120)
      #{HEALTHY}
      zones = #{dead.inspect}
      before = healthy { |i| "ok-before\#{i}-\#{$$}.#{healthy_zone}" }
      #{abandon_once_running(240, '"stall-#{i}-#{$$}.#{zones[i % 120]}"')}
      after = healthy { |i| "ok-after\#{i}-\#{$$}.#{healthy_zone}" }
      puts JSON.generate(before: before, after: after, stats: Igai.stats, lookup_threads: lookup_threads,
                         cap: Igai.max_workers)
    RUBY
    assert_as_fast_as_before(report)
    assert_equal [240, 120, 0, 0], report[:stats].values_at(:abandoned, :stuck_zones, :waiting_for_zone, :queued)
    assert_operator report[:lookup_threads], :<=, 4 * report[:cap], report.inspect
  end

  # Callers that keep waiting (Net::HTTP's 60 s open_timeout outlasts the resolver): their
  # lookups count against max_workers only until they have been in flight for the stall
  # threshold (500 ms); then the zones are dead and hold their further callers but a probe.
  def test_120_callers_still_waiting_on_two_dead_zones_leave_healthy_names_answered
    healthy_zone = Bed.zone("healthy")
    dead = [Bed.zone("dead-a"), Bed.zone("dead-b")]
    report = in_child(<<~RUBY, env: OUTAGE_ENV, timeout: 120)
      #{HEALTHY}
      before = healthy { |i| "ok-before\#{i}-\#{$$}.#{healthy_zone}" }
      callers = Array.new(120) do |i|
        Thread.new do
          Socket.interruptible_getaddrinfo("stall-w\#{i}-\#{$$}.\#{#{dead.inspect}[i % 2]}", 80, timeout: 20)
        rescue Errno::ETIMEDOUT
        end
      end
      wait_until { Igai.stats[:busy] >= Igai.max_workers }
      after = healthy { |i| "ok-after\#{i}-\#{$$}.#{healthy_zone}" }
      puts JSON.generate(before: before, after: after, stats: Igai.stats, waiting: callers.count(&:alive?),
                         lookup_threads: lookup_threads, cap: Igai.max_workers)
      $stdout.flush
      exit!(0)
    RUBY
    # The first healthy lookup may wait for the threshold; the others go at once.
    assert_operator report[:after].max, :<, 0.5 + 1.0, report.inspect
    assert_operator median(report[:after]), :<, median(report[:before]) + 0.05, report.inspect
    assert_equal 120, report[:waiting], "every caller still waits"
    assert_equal 2, report[:stats][:stuck_zones]
    # Nobody gave up, yet the lookups in flight past the threshold count as stuck (each dead
    # zone holds at least its two).
    assert_equal 0, report[:stats][:abandoned]
    assert_operator report[:stats][:stuck], :>=, 2 * 2, report.inspect
    # Each dead zone: the 32 that started at once, one more started while it held one stuck
    # lookup (its limit is two) and its probe; and one thread for the healthy names.
    assert_operator report[:lookup_threads], :<=, report[:cap] + (2 * 2) + 1, report.inspect
  end

  # Ruby code that resolves `count` never-answered names given by `name` (Ruby code using i)
  # one by one, each abandoned once it runs (the last `held` of them: once it waits for its
  # dead zone).
  def abandon_once_running(count, name, held: 0)
    <<~RUBY
      #{count}.times do |i|
        caller = Thread.new { Socket.interruptible_getaddrinfo(#{name}, 80) }
        if i < #{count - held}
          wait_until { Igai.stats[:busy] == i + 1 }
        else
          wait_until { Igai.stats[:waiting_for_zone] == 1 }
        end
        caller.kill.join
      end
    RUBY
  end

  # A company's sub-zone delegated to a server that went dead must not hold up the other
  # names of its domain: they probe the dead zone, are answered and re-open it.
  def test_a_stalled_sub_zone_does_not_hold_up_the_healthy_names_of_its_domain
    shared = Bed.zone("shared")
    report = in_child(<<~RUBY, env: OUTAGE_ENV, timeout: 120)
      #{HEALTHY}
      before = healthy { |i| "ok-before\#{i}-\#{$$}.ok.#{shared}" }
      #{abandon_once_running(4, %("stall-\#{i}-\#{$$}.stall.#{shared}"), held: 2)}
      during = Igai.stats
      after = healthy { |i| "ok-after\#{i}-\#{$$}.ok.#{shared}" }
      puts JSON.generate(before: before, after: after, during: during, stats: Igai.stats)
    RUBY
    assert_as_fast_as_before(report)
    # Two stuck (the second the stalled sub-zone's probe); the others waited and were withdrawn.
    assert_equal [2, 1, 0], report[:during].values_at(:abandoned, :stuck_zones, :waiting_for_zone)
    # The first healthy name probed, was answered and re-opened the zone.
    assert_equal [2, 0], report[:stats].values_at(:abandoned, :stuck_zones)
  end

  # Services named by a single label, resolved through the search list (a Kubernetes
  # cluster): each is its own zone, and localhost and hosts-file names never are a DNS zone.
  def test_stalled_single_label_names_hold_up_neither_other_single_labels_nor_localhost
    env = OUTAGE_ENV.merge("LOCALDOMAIN" => Bed.zone("search"))
    report = in_child(<<~RUBY, env: env, timeout: 120)
      #{HEALTHY}
      local = %w[localhost #{Bed::HOSTS_SHORT_NAME}]
      before_local = healthy { |i| local[i % 2] }
      before = healthy { |i| "ok-before\#{i}-\#{$$}" }
      services = %w[redis memcached postgres rabbitmq]
      #{abandon_once_running(4, '"stall-#{services[i]}-#{$$}"')}
      during = Igai.stats
      after_local = healthy { |i| local[i % 2] }
      after = healthy { |i| "ok-after\#{i}-\#{$$}" }
      puts JSON.generate(before: before, after: after, before_local: before_local, after_local: after_local,
                         during: during, stuck: Igai.stuck_zones)
    RUBY
    assert_as_fast_as_before(report)
    assert_as_fast_as_before(before: report[:before_local], after: report[:after_local])
    assert_equal [4, 0], report[:during].values_at(:abandoned, :stuck_zones)
    assert_equal 4, report[:stuck].size, report[:stuck].inspect
  end

  def test_a_burst_of_concurrent_lookups_to_one_dead_zone_leaves_workers_for_other_zones
    names = Array.new(200) { Bed.stalled_name }
    healthy = Bed.answered_name
    report = in_child(<<~RUBY, env: OUTAGE_ENV, timeout: 120)
      require "timeout"
      #{names.inspect}.map do |name|
        Thread.new do
          Timeout.timeout(1) { Socket.interruptible_getaddrinfo(name, 80) }
        rescue Timeout::Error
        end
      end.each(&:join)
      start = now
      begin
        answer = Socket.interruptible_getaddrinfo(#{healthy.inspect}, 80, :INET, timeout: 5)[0][3]
      rescue Errno::ETIMEDOUT
        answer = "timed out"
      end
      puts JSON.generate(answer: answer, took: now - start, stats: Igai.stats, stuck: Igai.stuck_zones)
    RUBY
    # 64 lookups start; once in flight for 500 ms they no longer count against max_workers,
    # the zone is dead and starts only a probe: the healthy name gets a worker at once.
    assert_equal "127.0.0.1", report[:answer], report.inspect
    assert_operator report[:took], :<, 1.0
    assert_equal({ Bed::STALLED_ZONE.to_sym => 65 }, report[:stuck])
    assert_equal [65, 1, 0, 0], report[:stats].values_at(:abandoned, :stuck_zones, :waiting_for_zone, :queued)
  end

  def test_a_retry_after_an_abandoned_lookup_whose_packet_was_lost_is_answered_at_once
    name = Bed.lost_first_name
    report = in_child(<<~RUBY, env: OUTAGE_ENV)
      require "timeout"
      begin
        Timeout.timeout(0.1) { Socket.interruptible_getaddrinfo(#{name.inspect}, 80, :INET) }
      rescue Timeout::Error
      end
      start = now
      answer = Socket.interruptible_getaddrinfo(#{name.inspect}, 80, :INET)[0][3]
      puts JSON.generate(answer: answer, took: now - start, stats: Igai.stats)
    RUBY
    assert_equal "127.0.0.1", report[:answer]
    # Joining the first lookup would have waited for its 30 s resolver timeout.
    assert_operator report[:took], :<, 1.0
    assert_equal 1, report[:stats][:abandoned], "the first lookup is still stuck, apart"
    assert_equal 0, report[:stats][:coalesced]
  end

  # Callers waiting for stalled lookups, and the workers stuck in them, sleep: they may spin
  # for a moment when they start waiting, never for the whole wait. A waiter that spun or
  # polled throughout would use about a CPU-second per second.
  def test_callers_and_workers_use_no_cpu_while_their_lookups_stall
    names = Array.new(6) { Bed.stalled_name }
    report = in_child(<<~RUBY, env: OUTAGE_ENV)
      require "timeout"
      waiting = #{names.first(4).inspect}.map do |name|
        Thread.new { Socket.interruptible_getaddrinfo(name, 80) rescue nil }
      end
      #{names.last(2).inspect}.each do |name|
        Timeout.timeout(0.05) { Socket.interruptible_getaddrinfo(name, 80) }
      rescue Timeout::Error
      end
      wait_until { Igai.stats[:busy] == 6 }
      cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
      sleep 1
      used = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID) - cpu
      puts JSON.generate(used: used, stats: Igai.stats, waiting: waiting.count(&:alive?))
    RUBY
    assert_equal 4, report[:waiting]
    assert_equal [6, 2], report[:stats].values_at(:busy, :abandoned)
    assert_operator report[:used], :<, 0.25, "CPU seconds used in 1 s while 6 lookups stall"
  end

  def test_thirty_two_slow_lookups_of_one_zone_run_at_once
    names = Array.new(32) { Bed.delayed_name(300) }
    report = in_child(<<~RUBY)
      start = now
      answers = #{names.inspect}.map do |name|
        Thread.new { Socket.interruptible_getaddrinfo(name, 80, :INET)[0][3] }
      end.map(&:value)
      puts JSON.generate(took: now - start, answers: answers.uniq, stats: Igai.stats)
    RUBY
    assert_equal ["127.0.0.1"], report[:answers]
    # Serialized by a zone limit they would take 16 x 0.3 s or more.
    assert_operator report[:took], :<, 2.0
    assert_equal 0, report[:stats][:stuck_zones]
  end

  def test_under_a_trickle_after_a_burst_surplus_lookup_threads_retire
    names = Array.new(20) { Bed.delayed_name(300) }
    report = in_child(<<~RUBY)
      Igai.idle_timeout = 1
      base = lookup_threads
      #{names.inspect}.map { |name| Thread.new { Socket.interruptible_getaddrinfo(name, 80, :INET) } }.each(&:join)
      peak = lookup_threads
      start = now
      i = 0
      until lookup_threads <= base + 2 || now - start > 6 # idle_timeout + 5 s
        Socket.interruptible_getaddrinfo("ok-trickle\#{i += 1}-\#{$$}.igai.test", 80, :INET)
        sleep 0.1
      end
      puts JSON.generate(base: base, peak: peak, final: lookup_threads, took: now - start, trickled: i)
    RUBY
    assert_operator report[:peak], :>=, 10, report.inspect
    assert_operator report[:final], :<=, report[:base] + 2, report.inspect
    assert_operator report[:trickled], :>=, 5, "the trickle went on while threads retired"
  end

  def test_a_huge_idle_timeout_keeps_the_pool_working
    report = in_child(<<~RUBY)
      Igai.idle_timeout = 2**63 - 1
      answers = 3.times.map { |i| Socket.interruptible_getaddrinfo("ok-huge\#{i}-\#{$$}.igai.test", 80, :INET)[0][3] }
      wait_until { Igai.stats[:idle] == 1 }
      puts JSON.generate(answers: answers, stats: Igai.stats)
    RUBY
    assert_equal ["127.0.0.1"] * 3, report[:answers]
    assert_equal [1, 1, 0], report[:stats].values_at(:workers, :idle, :busy)
  end

  def test_max_stuck_per_zone_rejects_bad_values_and_reads_its_environment_variable
    assert_raises(ArgumentError) { Igai.max_stuck_per_zone = 0 }
    assert_raises(TypeError) { Igai.max_stuck_per_zone = "many" }
    output, = run_ruby('require "igai"; print Igai.max_stuck_per_zone')
    assert_equal "2", output
    output, = run_ruby('require "igai"; print Igai.max_stuck_per_zone', env: { "IGAI_MAX_STUCK_PER_ZONE" => "5" })
    assert_equal "5", output
  end
end
