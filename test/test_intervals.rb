# frozen_string_literal: true

require_relative "test_helper"

# Odd values for the intervals and sizes igai takes (timeout:, Igai.idle_timeout=,
# Igai.max_workers=): each raises the error Ruby's own sleep or NUM2INT raises, or is clamped,
# and never takes the process or the pool down. Each case runs in a child process, since the
# failure this guards against is the process dying.
class TestIntervals < IgaiTest::BedTest
  ODD_VALUES = ["2**63-1", "2**64", "-(2**64)", "Float::INFINITY", "-Float::INFINITY", "-1", "-0.5",
                "0", "nil", "Float::NAN", "1e300", '"3"', ":x", "Object.new"].freeze

  # Runs `call` (Ruby code using `value`) for each of ODD_VALUES in one child, after
  # `prelude`; returns {value text => [outcome, lookup]}: the outcome is "ok" or the error's
  # class and the start of its message, and lookup whether a normal lookup through the pool
  # made afterwards worked (with `lookup_after`; else nil). `call` may skip a value (`next`).
  def outcomes(call, prelude: 'require "igai"', lookup_after: true)
    lookup = 'Socket.interruptible_getaddrinfo("localhost", 80, nil, :STREAM, timeout: 10).any?'
    output, status = run_ruby(<<~RUBY, timeout: 60)
      #{prelude}
      results = {}
      #{ODD_VALUES.inspect}.each do |text|
        value = eval(text)
        outcome = begin
          #{call}
          "ok"
        rescue StandardError => e
          "\#{e.class}: \#{e.message[0, 40]}"
        end
        results[text] = [outcome, #{lookup_after ? lookup : 'nil'}]
      end
      p results
    RUBY
    assert status.success?, output
    eval(output.lines.last) # rubocop:disable Security/Eval
  end

  # What `sleep` (IO.select, which converts alike without waiting) says about each value but
  # nil (IO.select would wait for ever; sleep(nil) differs between Rubies); values it would
  # accept are replaced by 0.
  def sleep_outcomes
    outcomes(<<~RUBY, prelude: "", lookup_after: false).transform_values(&:first)
      next if value.nil?
      value = 0 if value.is_a?(Numeric) && value.positive? && value.finite? && value.to_i < 2**63
      IO.select(nil, nil, nil, value)
    RUBY
  end

  # What NUM2INT says about each value (Thread#priority= converts with it).
  def num2int_outcomes
    finished = "Thread.new {}.tap(&:join).priority = value"
    outcomes(finished, prelude: "", lookup_after: false).transform_values(&:first)
  end

  def test_odd_timeouts_raise_what_sleep_raises_and_the_pool_keeps_working
    expected = sleep_outcomes.merge("nil" => "ok")
    [
      'Socket.interruptible_getaddrinfo("localhost", 80, timeout: value)',
      'Socket.interruptible_getaddrinfo("127.0.0.1", 80, timeout: value)',
      'Socket.interruptible_getnameinfo(Socket.sockaddr_in(80, "127.0.0.1"), timeout: value)',
      'Addrinfo.interruptible_getaddrinfo("localhost", 80, timeout: value)'
    ].each do |call|
      outcomes(call).each do |text, (outcome, lookup_ok)|
        # A zero timeout may expire before a lookup through the pool ends.
        next assert_includes ["ok", "Errno::ETIMEDOUT: Connection timed out - user specified ti"],
                             outcome if text == "0"

        assert_equal expected.fetch(text), outcome, "#{call} with #{text}"
        assert lookup_ok, "a lookup after #{call} with #{text}"
      end
    end
  end

  def test_odd_idle_timeouts_raise_what_sleep_raises_or_are_clamped_and_the_pool_keeps_working
    nil_error = "can't convert NilClass into time interval"[0, 40]
    expected = sleep_outcomes.merge("nil" => "TypeError: #{nil_error}")
    outcomes("Igai.idle_timeout = value").each do |text, (outcome, lookup_ok)|
      assert_equal expected.fetch(text), outcome, "Igai.idle_timeout = #{text}"
      assert lookup_ok, "a lookup after Igai.idle_timeout = #{text}"
    end
  end

  def test_a_huge_idle_timeout_is_clamped_to_136_years
    output, status = run_ruby(<<~RUBY)
      require "igai"
      Igai.idle_timeout = 2**63 - 1
      Socket.interruptible_getaddrinfo(#{Bed.answered_name.dump}, 80)
      Socket.interruptible_getaddrinfo(#{Bed.answered_name.dump}, 81)
      p [Igai.idle_timeout, Igai.stats[:workers], Igai.stats[:busy]]
    RUBY
    assert status.success?, output
    assert_equal [2.0**32, 1, 0], eval(output.lines.last) # rubocop:disable Security/Eval
  end

  def test_odd_worker_counts_raise_num2int_errors_and_the_pool_keeps_working
    expected = num2int_outcomes.merge(
      "-1" => "ArgumentError: max_workers must be at least 1 (given -1",
      "-0.5" => "ArgumentError: max_workers must be at least 1 (given 0)",
      "0" => "ArgumentError: max_workers must be at least 1 (given 0)"
    )
    refute_equal "ok", expected.fetch("2**63-1")
    outcomes("Igai.max_workers = value").each do |text, (outcome, lookup_ok)|
      assert_equal expected.fetch(text), outcome, "Igai.max_workers = #{text}"
      assert lookup_ok, "a lookup after Igai.max_workers = #{text}"
    end
  end
end
