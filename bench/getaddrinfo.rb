# frozen_string_literal: true

# Per-call cost and parallel throughput of Socket.interruptible_getaddrinfo against plain
# Socket.getaddrinfo, measured in one run and printed as ratios. Run inside the test bed,
# which answers the DNS names: `rake bench`, or `test/bed/run ruby -Ilib bench/getaddrinfo.rb`.

require "etc"
require "igai"
require_relative "../test/support/bed"
require_relative "support"

Bed = IgaiTest::Bed
abort "bench/getaddrinfo.rb needs the test bed: #{Bed.unavailable_reason}" unless Bed.available?

include BenchSupport

# Rounds of the two calls alternate, so that drift in the machine's load hits both alike.
def compare(label, count, *args)
  Socket.getaddrinfo(*args)
  Socket.interruptible_getaddrinfo(*args)
  rounds = Array.new(7) do
    [per_call(count, rounds: 1) { Socket.getaddrinfo(*args) },
     per_call(count, rounds: 1) { Socket.interruptible_getaddrinfo(*args) }]
  end
  plain, ours = rounds.transpose.map(&:min)
  printf("%-34s plain %8.1f us   igai %8.1f us   ratio %.2fx\n", label, plain, ours, ours / plain)
  # igai's callers and idle workers may spin briefly before parking: what that costs in CPU.
  plain_cpu = cpu_per_call(count) { Socket.getaddrinfo(*args) }
  ours_cpu = cpu_per_call(count) { Socket.interruptible_getaddrinfo(*args) }
  printf("%-34s plain %8.1f us   igai %8.1f us   ratio %.2fx\n", "  CPU time, all threads", plain_cpu,
         ours_cpu, ours_cpu / plain_cpu)
end

# Wall time for `threads` Ruby threads each making one lookup that the DNS server answers
# after `delay_ms`, in milliseconds.
def parallel(threads, delay_ms, method)
  names = Array.new(threads) { Bed.delayed_name(delay_ms) }
  start = now
  names.map { |name| Thread.new { Socket.public_send(method, name, 80, :INET) } }.each(&:join)
  (now - start) * 1000
end

puts "igai #{Igai::VERSION} on ruby #{RUBY_VERSION}, #{Etc.nprocessors} cores" \
     "#{', IGAI_SPIN=0 (no spinning)' if ENV['IGAI_SPIN'] == '0'}" \
     "#{' (plain Socket.getaddrinfo is itself interruptible here)' if RUBY_VERSION >= '3.3'}"
puts "-- per call (best of 7 alternating rounds)"
compare("numeric address (127.0.0.1)", 20_000, "127.0.0.1", 80, nil, :STREAM)
compare("/etc/hosts name (localhost)", 5_000, "localhost", 80, nil, :STREAM)
compare("DNS name answered by test server", 1_000, Bed.answered_name, 80, :INET, :STREAM)
puts "   (#{Igai.stats[:inline]} lookups answered on the caller's thread, #{Igai.stats[:completed]} by workers)"

puts "-- 64 threads, each one lookup answered after 50 ms"
plain = parallel(64, 50, :getaddrinfo)
ours = parallel(64, 50, :interruptible_getaddrinfo)
printf("%-34s plain %8.1f ms   igai %8.1f ms   ratio %.2fx\n", "wall time", plain, ours, ours / plain)

puts "-- pool against one thread per lookup (DNS name; rounds interleaved)"
# With idle_timeout 0 every worker exits after its lookup, so each lookup starts a thread.
# (Hosts-file names no longer reach the pool: they run on the caller's thread.)
dns_name = Bed.answered_name
lookup = -> { Socket.interruptible_getaddrinfo(dns_name, 80, :INET, :STREAM) }
pooled = []
fresh = []
5.times do
  Igai.idle_timeout = 10
  pooled << per_call(1_000, rounds: 1, &lookup)
  Igai.idle_timeout = 0
  fresh << per_call(1_000, rounds: 1, &lookup)
end
Igai.idle_timeout = 10
printf("%-34s thread/lookup %6.1f us   pool %6.1f us   ratio %.2fx\n", "per call", fresh.min,
       pooled.min, pooled.min / fresh.min)
