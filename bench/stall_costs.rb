# frozen_string_literal: true

# What a DNS outage costs a process, plain Socket.getaddrinfo against
# Socket.interruptible_getaddrinfo, each case in a fresh forked process:
#
#   * how long `fork` takes while one lookup is stalled (MRI 3.4 makes fork wait for lookups
#     in flight);
#   * how many threads and how much memory are left behind by 2000 lookups of stalled
#     names abandoned with Thread#kill (MRI 3.3+ leaves a detached thread per lookup until
#     glibc gives up; before 3.3 plain lookups cannot be abandoned at all).
#
# Run inside the test bed: `rake bench` (which sets IGAI_BED_RESOLVER_TIMEOUT=5), or
# `IGAI_BED_RESOLVER_TIMEOUT=5 test/bed/run ruby -Ilib bench/stall_costs.rb`.

require "igai"
require_relative "../test/support/bed"
require_relative "support"

Bed = IgaiTest::Bed
abort "bench/stall_costs.rb needs the test bed: #{Bed.unavailable_reason}" unless Bed.available?

include BenchSupport

ABANDONED = 2_000
PLAIN_INTERRUPTIBLE = RUBY_VERSION >= "3.3"

# Runs the block in a forked child and returns what it returned (via Marshal).
def in_child
  reader, writer = IO.pipe
  pid = fork do
    reader.close
    writer.write(Marshal.dump(yield))
    writer.close
    exit!(0)
  end
  writer.close
  # Our own child's answer.
  result = Marshal.load(reader.read) # rubocop:disable Security/MarshalLoad
  Process.wait(pid)
  result
ensure
  reader&.close
end

# [threads waiting in poll(2) (x86-64 Linux: glibc's resolver waits for an answer there),
#  resident MB] of this process. MRI keeps the OS threads of finished Ruby threads for reuse,
# so the count of all threads would not tell what the lookups left behind.
POLL_SYSCALLS = %w[7 271].freeze # poll, ppoll

def resolver_threads_and_rss
  polling = Dir["/proc/self/task/*/syscall"].count do |path|
    POLL_SYSCALLS.include?(File.read(path).split.first)
  rescue SystemCallError
    false # the thread ended
  end
  [polling, File.read("/proc/self/status")[/^VmRSS:\s+(\d+)/, 1].to_i / 1024.0]
end

# Seconds `fork` takes while one lookup (by method) is stalled in another thread.
def fork_during_stall(method)
  in_child do
    name = Bed.stalled_name
    lookup = Thread.new do
      Socket.public_send(method, name, 80)
    rescue SocketError
      nil # the resolver gave up (when fork waited that long)
    end
    Bed.wait_for_queries(name) # the query is out: the lookup is waiting for its answer
    sleep 0.1
    start = now
    pid = fork { exit!(0) }
    took = now - start
    Process.wait(pid)
    lookup.kill
    took
  end
end

# Threads left waiting in the resolver and resident MB added by `count` lookups of stalled
# names killed while waiting, measured once their Ruby threads are gone; and how long it took.
def abandon(method, count)
  in_child do
    threads_before, rss_before = resolver_threads_and_rss
    start = now
    waiting = Array.new(count) do
      name = Bed.stalled_name
      Thread.new { Socket.public_send(method, name, 80) }
    end
    sleep 0.01 until waiting.all? { |thread| thread.status == "sleep" } || now - start > 3
    waiting.each(&:kill).each(&:join)
    threads_after, rss_after = resolver_threads_and_rss
    [threads_after - threads_before, rss_after - rss_before, now - start]
  end
end

puts "igai #{Igai::VERSION} on ruby #{RUBY_VERSION}, resolver timeout #{Bed.resolver_timeout.to_i} s" \
     "#{' (plain Socket.getaddrinfo is itself interruptible here)' if PLAIN_INTERRUPTIBLE}"

puts "-- fork while one lookup is stalled"
%i[getaddrinfo interruptible_getaddrinfo].each do |method|
  printf("%-34s fork took %8.1f ms\n", method, fork_during_stall(method) * 1000)
end

puts "-- #{ABANDONED} lookups of stalled names, abandoned (Thread#kill), in a fresh process"
%i[getaddrinfo interruptible_getaddrinfo].each do |method|
  unless PLAIN_INTERRUPTIBLE || method == :interruptible_getaddrinfo
    printf("%-34s (cannot be abandoned before MRI 3.3)\n", method)
    next
  end
  threads, rss, took = abandon(method, ABANDONED)
  printf("%-34s %6d threads left in the resolver   %+6.1f MB resident   (after %.1f s)\n",
         method, threads, rss, took)
end
