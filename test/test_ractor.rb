# frozen_string_literal: true

require "json"
require_relative "test_helper"

# The interruptible calls, Igai::Timeout and igai/replace inside non-main Ractors, as the
# built-in calls work there. Each test runs in a fresh Ruby (Ractors are experimental: a
# crash must not take the test run down, and their warning stays out of its output); the
# child prints its findings as JSON on its last line.
class TestRactor < IgaiTest::BedTest
  # Loaded by every child: igai, and helpers usable from any Ractor.
  PRELUDE = <<~RUBY
    Warning[:experimental] = false
    require "igai"
    require "json"

    def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

    # A Ractor's result (Ractor#take before Ruby 3.5, Ractor#value after).
    def result_of(ractor) = ractor.respond_to?(:value) ? ractor.value : ractor.take

    # What the block raised, as [class name, message], or its value.
    def outcome
      yield
    rescue Exception => e
      [e.class.name, e.message]
    end
  RUBY

  # Runs PRELUDE and code in a child Ruby; code's value is printed as JSON, and returned
  # parsed.
  def in_child(code)
    script = "#{PRELUDE}\nputs JSON.generate(begin\n#{code}\nend)\n"
    output, status = run_ruby(script, timeout: 60)
    assert status.success?, "the child failed: #{output}"
    JSON.parse(output.lines.last)
  end

  def test_lookups_in_a_non_main_ractor_match_the_built_in_calls
    found = Bed.answered_name(dual: true)
    missing = Bed.nxdomain_name
    pairs = in_child(<<~RUBY)
      ractor = Ractor.new(#{found.inspect}, #{missing.inspect}) do |found, missing|
        sockaddr = Socket.sockaddr_in(80, "127.0.0.1")
        {
          "getaddrinfo" => [Socket.interruptible_getaddrinfo(found, 80, nil, :STREAM),
                            Socket.getaddrinfo(found, 80, nil, :STREAM)],
          "default reverse_lookup" => [Socket.interruptible_getaddrinfo("127.0.0.1", "http"),
                                       Socket.getaddrinfo("127.0.0.1", "http")],
          "error" => [outcome { Socket.interruptible_getaddrinfo(missing, 80) },
                      outcome { Socket.getaddrinfo(missing, 80) }],
          "bad argument" => [outcome { Socket.interruptible_getaddrinfo(found, 80, :NOPE) },
                             outcome { Socket.getaddrinfo(found, 80, :NOPE) }],
          "getnameinfo" => [Socket.interruptible_getnameinfo(sockaddr),
                            Socket.getnameinfo(sockaddr)],
          "Addrinfo" => [Addrinfo.interruptible_getaddrinfo(found, "http", nil, :STREAM).map(&:inspect),
                         Addrinfo.getaddrinfo(found, "http", nil, :STREAM).map(&:inspect)]
        }
      end
      result_of(ractor)
    RUBY
    pairs.each do |call, (igai, built_in)|
      assert_equal built_in, igai, "#{call} in a non-main Ractor"
    end
    refute_empty pairs["getaddrinfo"].first
  end

  def test_stalled_lookup_in_a_non_main_ractor_ends_at_its_timeout
    error, took = in_child(<<~RUBY)
      ractor = Ractor.new(#{Bed.stalled_name.inspect}) do |name|
        start = now
        error = outcome { Socket.interruptible_getaddrinfo(name, 80, timeout: 0.3) }
        [error.first, now - start]
      end
      result_of(ractor)
    RUBY
    assert_equal "Errno::ETIMEDOUT", error
    assert_operator took, :>=, 0.3
    assert_operator took, :<, prompt
  end

  def test_stalled_lookup_in_a_non_main_ractor_ends_at_thread_raise
    error, took = in_child(<<~RUBY)
      ractor = Ractor.new(#{Bed.stalled_name.inspect}) do |name|
        waiting = Thread.new { outcome { Socket.interruptible_getaddrinfo(name, 80) } }
        sleep 0.01 until waiting.status == "sleep"
        start = now
        waiting.raise(IOError, "stop")
        [waiting.value, now - start]
      end
      result_of(ractor)
    RUBY
    assert_equal %w[IOError stop], error
    assert_operator took, :<, prompt
  end

  # Igai::Timeout works in a non-main Ractor where Ractor.store_if_absent lets each Ractor
  # keep its own watcher (Ruby 3.4 and later). Elsewhere, like the timeout gem 0.6.1, it keeps
  # one watcher that only the main Ractor may use.
  def test_igai_timeout_in_non_main_ractors
    report = in_child(<<~RUBY)
      ractors = Array.new(2) do |index|
        Ractor.new(#{Bed.stalled_name.inspect}, #{Bed.stalled_name.inspect}, index) do |*names, index|
          start = now
          error = outcome do
            Igai::Timeout.timeout(0.3) { Socket.interruptible_getaddrinfo(names[index], 80) }
          end
          watchers = Thread.list.count { |thread| thread.name == "Igai::Timeout watcher" }
          [error, now - start, watchers]
        end
      end
      main = outcome { Igai::Timeout.timeout(0.1) { sleep 5 } }
      { "per_ractor" => !!defined?(Ractor.store_if_absent),
        "ractors" => ractors.map { |ractor| result_of(ractor) }, "main" => main }
    RUBY
    assert_equal ["Igai::Timeout::Error", "execution expired"], report["main"]
    report["ractors"].each do |error, took, watchers|
      if report["per_ractor"]
        assert_equal ["Igai::Timeout::Error", "execution expired"], error
        assert_operator took, :>=, 0.3
        assert_operator took, :<, prompt
        assert_equal 1, watchers, "each Ractor has its own watcher"
      else
        assert_equal "Ractor::IsolationError", error.first
        assert_match(/non-main ractor/i, error.last)
      end
    end
  end

  def test_several_ractors_resolve_at_once_on_the_one_pool
    names = Array.new(4) { Array.new(4) { Bed.delayed_name(400) } }
    report = in_child(<<~RUBY)
      before = Igai.stats[:completed]
      start = now
      ractors = #{names.inspect}.map do |names|
        Ractor.new(names) do |names|
          names.map { |name| Socket.interruptible_getaddrinfo(name, 80, :INET, :STREAM)[0][3] }
        end
      end
      addresses = ractors.map { |ractor| result_of(ractor) }
      { "addresses" => addresses, "took" => now - start,
        "completed" => Igai.stats[:completed] - before }
    RUBY
    assert_equal [["127.0.0.1"] * 4] * 4, report["addresses"]
    # One after another, the 16 lookups would take 6.4 s; each Ractor alone takes 1.6 s.
    assert_operator report["took"], :<, 4.8, "the Ractors' lookups did not overlap"
    # Every Ractor's lookups ran on the process's one pool, which the main Ractor sees.
    assert_equal 16, report["completed"]
  end

  def test_replaced_methods_resolve_through_igai_in_a_non_main_ractor
    found = Bed.answered_name
    report = in_child(<<~RUBY)
      Igai.replace!(force: true) # in the main Ractor, before starting others
      server = TCPServer.new("127.0.0.1", 0)
      ractor = Ractor.new(#{found.inspect}, #{Bed.stalled_name.inspect}, server.addr[1]) do |found, stalled, port|
        connected = TCPSocket.new(found, port).remote_address.ip_address
        waiting = Thread.new { outcome { IPSocket.getaddress(stalled) } }
        sleep 0.01 until waiting.status == "sleep"
        start = now
        waiting.raise(IOError, "stop")
        error = waiting.value
        took = now - start
        { "connected" => connected, "error" => error, "took" => took,
          "abandoned" => Igai.stats[:abandoned],
          "replace!" => outcome { Igai.replace!(force: true) }.first }
      end
      result_of(ractor)
    RUBY
    assert_equal "127.0.0.1", report["connected"]
    assert_equal %w[IOError stop], report["error"]
    assert_operator report["took"], :<, prompt
    assert_operator report["abandoned"], :>=, 1, "the stalled lookup was not igai's"
    # Replacing changes classes every Ractor shares: only the main Ractor may do it.
    assert_equal "Ractor::IsolationError", report["replace!"]
  end
end
