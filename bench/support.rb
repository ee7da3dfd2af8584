# frozen_string_literal: true

# Timing helpers shared by the benchmarks.
module BenchSupport
  module_function

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  # CPU time of the whole process (every thread, lookup threads included).
  def cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)

  # Best of `rounds` averages of `count` calls of the block, in microseconds per call.
  def per_call(count, rounds:)
    Array.new(rounds) do
      start = now
      count.times { yield }
      (now - start) / count * 1e6
    end.min
  end

  # Process CPU time per call of the block over `count` calls, in microseconds.
  def cpu_per_call(count)
    start = cpu
    count.times { yield }
    (cpu - start) / count * 1e6
  end
end
