# frozen_string_literal: true

module IgaiTest
  # A monotonic stopwatch for tests (plain Ruby: usable without the igai extension).
  module Stopwatch
    # Seconds elapsed while the block runs.
    def elapsed
      start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      yield
      Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
    end
  end
end
