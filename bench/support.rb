# frozen_string_literal: true

# Timing helpers shared by the benchmarks.
module BenchSupport
  module_function

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # Best of `rounds` averages of `count` calls of the block, in microseconds per call.
  def per_call(count, rounds:)
    Array.new(rounds) do
      start = now
      count.times { yield }
      (now - start) / count * 1e6
    end.min
  end
end
