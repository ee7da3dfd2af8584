# frozen_string_literal: true

module IgaiTest
  # The tests' one monotonic clock, and bounded waiting on it (plain Ruby: usable without the
  # igai extension, and in child processes: `require` this file by its path).
  module Stopwatch
    module_function

    # Seconds on the monotonic clock.
    def now
      Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    # Seconds elapsed while the block runs.
    def elapsed
      start = now
      yield
      now - start
    end

    # Polls the block every 10 ms until it returns a true value, which is returned; after
    # timeout seconds raises (Minitest::Assertion in a test, RuntimeError elsewhere) with
    # message, so that a condition that never comes fails the test instead of passing or
    # hanging quietly.
    def wait_until(message, timeout: 10)
      give_up = now + timeout
      loop do
        result = yield
        return result if result
        raise failure_class, "gave up after #{timeout} s waiting until #{message}" if now > give_up

        sleep 0.01
      end
    end

    def failure_class
      defined?(Minitest::Assertion) ? Minitest::Assertion : RuntimeError
    end
    private_class_method :failure_class
  end
end
