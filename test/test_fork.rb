# frozen_string_literal: true

require_relative "test_helper"
require "json"

# A forked child gets a resolver of its own: its Igai.stats start from zero, whatever the parent
# had finished, coalesced or left stalled, and its lookups run on its own threads. Every wait is
# bounded, so that a child that inherited the parent's pool (and would wait forever for threads
# that do not exist in it) fails the test within seconds and is killed.
class TestFork < IgaiTest::BedTest
  def test_a_forked_child_starts_from_zero_stats_and_resolves_on_its_own_threads
    code = <<~RUBY
      require "igai"
      require "json"
      require #{File.expand_path('support/stopwatch', __dir__).dump}
      3.times { |i| Socket.interruptible_getaddrinfo("ok-parent\#{i}-\#{$$}.igai.test", 80, :INET) }
      stalled = Array.new(2) do |i|
        Thread.new { Socket.interruptible_getaddrinfo("stall-parent\#{i}-\#{$$}.igai.test", 80) }
      end
      IgaiTest::Stopwatch.wait_until("two stalled lookups run") { Igai.stats[:busy] == 2 }
      parent = Igai.stats
      reader, writer = IO.pipe
      pid = fork do
        reader.close
        at_start = Igai.stats
        answer = begin
          Socket.interruptible_getaddrinfo("ok-child-\#{$$}.igai.test", 80, :INET, timeout: 5)[0][3]
        rescue SystemCallError, SocketError => e
          e.class.name
        end
        writer.puts JSON.generate(at_start: at_start, answer: answer, after: Igai.stats)
        exit!(0)
      end
      writer.close
      line = reader.wait_readable(10) && reader.gets
      Process.kill(:KILL, pid) unless line
      Process.wait(pid)
      stalled.each(&:kill)
      puts JSON.generate(parent: parent, child: line && JSON.parse(line))
    RUBY
    output, status = run_ruby(code, timeout: 30)
    assert status.success?, output
    report = JSON.parse(output.lines.last, symbolize_names: true)
    # The two stalled lookups are stuck once in flight for 0.5 s, which a slow machine may reach.
    assert_equal(IgaiTest::NO_STATS.merge(workers: 2, busy: 2, completed: 3).except(:stuck),
                 report[:parent].except(:stuck))
    assert_includes 0..2, report[:parent][:stuck]
    child = report[:child]
    refute_nil child, "the child did not report within 10 s (killed): #{output}"
    zero = IgaiTest::NO_STATS
    assert_equal zero, child[:at_start]
    assert_equal "127.0.0.1", child[:answer]
    assert_equal zero.merge(workers: 1, idle: 1, completed: 1), child[:after]
  end

  FORK_SCENARIOS = File.expand_path("support/fork_scenarios.rb", __dir__)

  # Runs a scenario of support/fork_scenarios.rb; asserts that no child hung or failed.
  def assert_every_child_resolves(*args)
    output, status = run_command([RbConfig.ruby, "-I", IgaiTest::LIB, FORK_SCENARIOS, *args], timeout: 240)
    assert status.success?, output
    report = JSON.parse(output.lines.last, symbolize_names: true)
    assert_equal 0, report[:hung], "children hung: #{output}"
    assert_equal 0, report[:failed], "children failed: #{output}"
  end

  # A lookup thread holding one of glibc's locks at the fork (resolv.conf's, taken by every
  # lookup as it starts; the netlink __check_pf one, for AI_ADDRCONFIG and to sort answers)
  # left it locked in the child, where every lookup then hung on it: before the fork gate, 20
  # to 40 of these 200 children never resolved. (The DNS names have two addresses, so glibc
  # also takes the __check_pf lock after the answer, to sort them.) Before lookups waiting in
  # poll(2) were parked for the fork, about 1 in 200 to 600 children still failed on a loaded
  # machine: an answer arriving during the fork itself.
  def test_every_child_forked_while_threads_resolve_resolves
    assert_every_child_resolves("storm", "200")
  end

  # The same on a loaded machine (two busy loops beside), where a lookup thread inside a lock
  # may wait for a CPU while the main thread forks.
  def test_every_child_forked_while_threads_resolve_on_a_busy_machine_resolves
    assert_every_child_resolves("storm", "200", "--busy")
  end

  # A fork whose thread is held up after the fork gate's prepare handler (a random pause of up
  # to 200 µs, as a loaded machine preempts it), so that DNS answers keep arriving for lookups
  # the gate saw waiting in poll(2): such a lookup went on to sort its answers under glibc's
  # __check_pf lock as the child was copied, and the child never resolved (1 to 4 of every 200
  # before the gate parked those lookups for the fork).
  def test_every_child_forked_while_answers_arrive_during_the_fork_resolves
    assert_every_child_resolves("storm", "400", "--pause=200")
  end

  # A fork during a process's very first lookup: before, the spinner limit's OnceLock could be
  # caught half-initialised (the child's lookups then hung for good, deaf to their own
  # timeout:), and the resolv.conf lock held while the file is first parsed (1 to 14 of these
  # 80 children hung or failed).
  def test_no_child_forked_during_the_first_lookup_of_a_process_hangs_or_fails
    assert_every_child_resolves("first", "80")
  end
end
