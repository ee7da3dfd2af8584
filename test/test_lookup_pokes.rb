# frozen_string_literal: true

require "json"
require_relative "test_helper"

# Socket.interruptible_getaddrinfo while other threads raise into its callers (issue 23): an
# interrupt that lands as the binding hands a lookup to the pool, waits for it or withdraws
# it must leave nothing behind, neither an exception raised into unrelated code later nor a
# lookup the pool still counts.
class TestLookupPokes < IgaiTest::BedTest
  # Six callers for SECONDS: stalled names ended by timeout: or by Igai::Timeout, answered
  # and delayed names with and without either, plain code between; a poker raises IOError
  # into one of them every millisecond. Each caller counts, outside its calls, every
  # exception that is not a poke ("strays"), and the answers it got. Then the pool must
  # settle to nothing busy, and still answer and time out.
  CHILD = <<~'RUBY'
    require "igai"
    require "json"
    SECONDS = 4
    stop = false
    counter = 0
    name = ->(prefix, zone) { "#{prefix}-p#{counter += 1}-#{$$}.#{zone}" }
    # One lookup of a random kind; returns :answered, :expired or :plain.
    lookup = lambda do |random|
      case random.rand(6)
      when 0
        Socket.interruptible_getaddrinfo(name["stall", "igai-stalled.test"], 80, timeout: random.rand(1..30) / 1000.0)
      when 1
        Igai::Timeout.timeout(random.rand(1..30) / 1000.0) do
          Socket.interruptible_getaddrinfo(name["stall", "igai-stalled.test"], 80)
        end
      when 2
        rows = Socket.interruptible_getaddrinfo(name["ok", "igai.test"], 80, :INET, timeout: 2)
        raise "wrong answer #{rows.inspect}" unless rows[0][3] == "127.0.0.1"
        return :answered
      when 3
        rows = Igai::Timeout.timeout(2) { Socket.interruptible_getaddrinfo(name["delay20", "igai.test"], 80, :INET) }
        raise "wrong answer #{rows.inspect}" unless rows[0][3] == "127.0.0.1"
        return :answered
      when 4
        Socket.interruptible_getaddrinfo(name["delay20", "igai.test"], 80, :INET, timeout: random.rand(1..30) / 1000.0)
        return :answered
      else
        Array.new(50) { |i| i * i }.sum
        return :plain
      end
      :answered
    rescue Errno::ETIMEDOUT, Igai::Timeout::Error
      :expired
    end
    counts = Hash.new(0)
    lock = Mutex.new
    # Runs the body open to interrupts; counts in mine the poke or stray that ends it.
    open_to_pokes = lambda do |mine, &body|
      Thread.handle_interrupt(Object => :immediate, &body)
    rescue IOError
      mine[:pokes] += 1
    rescue Exception => e
      mine[:strays] += 1
      mine["stray #{e.class}: #{e.message}"] += 1
    end
    work = lambda do |random|
      mine = Hash.new(0)
      Thread.handle_interrupt(Object => :never) do
        open_to_pokes.call(mine) { mine[lookup[random]] += 1 } until stop
        open_to_pokes.call(mine) { sleep 0.2 }
      end
      lock.synchronize { mine.each { |key, value| counts[key] += value } }
    end
    callers = Thread.handle_interrupt(Object => :never) do
      Array.new(6) { |i| Thread.new(Random.new(i)) { |random| work[random] } }
    end
    poker = Thread.new do
      random = Random.new(42)
      until stop
        victim = callers.sample(random: random)
        victim.raise(IOError, "poke") if victim.alive?
        sleep 0.001
      end
    end
    sleep SECONDS
    stop = true
    poker.join
    callers.each(&:join)
    give_up = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
    settled = lambda do
      stats = Igai.stats
      stats.values_at(:busy, :queued, :abandoned, :waiting_for_zone, :stuck_zones).all?(&:zero?)
    end
    sleep 0.05 until settled.call || Process.clock_gettime(Process::CLOCK_MONOTONIC) > give_up
    settled_stats = Igai.stats
    after = Socket.interruptible_getaddrinfo("ok-after-#{$$}.igai.test", 80, :INET)[0][3]
    start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    ended = begin
      Socket.interruptible_getaddrinfo("stall-after-#{$$}.igai-stalled.test", 80, timeout: 0.2)
      "answered"
    rescue Errno::ETIMEDOUT
      "timed out"
    end
    took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
    late = begin
      sleep 0.3
      nil
    rescue Exception => e
      e.inspect
    end
    puts JSON.generate(counts: counts, stats: settled_stats, after: after, ended: ended, took: took, late: late)
  RUBY

  def test_pokes_around_lookups_leave_no_stray_exception_and_the_pool_settles
    output, status = run_ruby(CHILD, timeout: 90)
    assert status.success?, output
    report = JSON.parse(output.lines.last, symbolize_names: true)
    counts = report[:counts]
    strays = counts.select { |key, _| key.start_with?("stray ") }
    assert_equal 0, counts.fetch(:strays, 0), "exceptions outside the lookups: #{strays}"
    assert_nil report[:late], "an exception arrived after every lookup had ended"
    assert_operator counts[:pokes], :>, 100, "few pokes landed: #{counts}"
    assert_operator counts[:answered], :>, 20, "few lookups answered: #{counts}"
    assert_operator counts[:expired], :>, 20, "few lookups timed out: #{counts}"

    stats = report[:stats]
    assert_equal({ busy: 0, queued: 0, abandoned: 0, waiting_for_zone: 0, stuck_zones: 0 },
                 stats.slice(:busy, :queued, :abandoned, :waiting_for_zone, :stuck_zones),
                 "the pool still counts lookups nobody waits for: #{stats}")
    assert_equal stats[:workers], stats[:idle], "workers neither busy nor idle: #{stats}"
    assert_operator stats[:completed] + stats[:coalesced], :>=, counts[:answered],
                    "more answers than lookups the pool counted: #{stats}, #{counts}"

    assert_equal "127.0.0.1", report[:after]
    assert_equal "timed out", report[:ended]
    assert_operator report[:took], :<, prompt
  end
end
