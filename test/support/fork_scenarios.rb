# frozen_string_literal: true

# Forks at the worst moments for a resolver, run as a script inside the bed and shared by
# test/test_fork.rb (which asserts that no child fails) and bench/fork.rb (which prints the
# figures, igai against the built-in lookup):
#
#   ruby -Ilib test/support/fork_scenarios.rb storm FORKS [--busy] [--pause=MICROS] [--builtin]
#     six threads resolve (DNS names and localhost, with AI_ADDRCONFIG) while the main thread
#     forks FORKS times; each child resolves a DNS name, bounded by 3 s
#   ruby -Ilib test/support/fork_scenarios.rb first PROCESSES [--busy] [--builtin]
#     PROCESSES fresh processes (forked before any lookup) each start their first lookup on
#     a thread and fork at once, at a delay stepping through the first 1 ms; each grandchild
#     resolves localhost, bounded by 1 s
#   ruby -Ilib test/support/fork_scenarios.rb stalled FORKS [--busy] [--builtin]
#     four threads keep a stalled lookup each in flight while the main thread forks FORKS
#     times; each child resolves localhost, bounded by 1 s
#
# --busy runs two busy loops beside (a loaded machine); --pause=MICROS holds each fork up for
# a random time below MICROS µs after igai's prepare handler (a forking thread preempted at the
# worst moment, see pause_before_each_fork); --builtin uses Socket.getaddrinfo under
# Timeout.timeout instead of igai. Prints one JSON line: children that failed (an
# error or their own time limit), that hung (still running 5 s later, killed), and the time
# each fork took in the parent (worst and median, ms).

require "json"
require "socket"
require "timeout"

module IgaiTest
  module ForkScenarios
    module_function

    def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

    # Resolves host with AI_ADDRCONFIG within limit seconds; true when it got an answer.
    # Says on stderr why not when `loud`.
    def resolves?(host, limit, builtin:, loud: false)
      start = now
      if builtin
        Timeout.timeout(limit) { Socket.getaddrinfo(host, 80, nil, :STREAM, nil, Socket::AI_ADDRCONFIG) }
      else
        Socket.interruptible_getaddrinfo(host, 80, nil, :STREAM, nil, Socket::AI_ADDRCONFIG, timeout: limit)
      end
      true
    rescue StandardError, Timeout::Error => e
      warn format("process %d: %s after %.3f s: %s: %s", $$, host, now - start, e.class, e.message) if loud
      false
    end

    # Forks a child that resolves host within limit seconds and exits 0 when it did;
    # returns the pid and how long fork took in this process.
    def fork_child(host, limit, builtin:)
      start = now
      pid = fork { exit!(resolves?(host, limit, builtin: builtin, loud: true) ? 0 : 1) }
      [pid, now - start]
    end

    # :ok, :failed, or :hung (still running after limit seconds; then killed).
    def verdict(pid, limit: 5)
      give_up = now + limit
      until (waited = Process.wait2(pid, Process::WNOHANG))
        if now > give_up
          Process.kill(:KILL, pid)
          Process.wait(pid)
          return :hung
        end
        sleep 0.002
      end
      waited[1].success? ? :ok : :failed
    end

    # Forks `forks` children, each resolving child_host(i) within child_limit seconds, while
    # `threads` threads keep resolving name(thread, n) within lookup_limit seconds.
    def forks_beside_lookups(forks, threads:, name:, lookup_limit:, child_host:, child_limit:, builtin:)
      stop = false
      resolvers = Array.new(threads) do |t|
        Thread.new do
          n = 0
          until stop
            resolves?(name.call(t, n), lookup_limit, builtin: builtin)
            n += 1
          end
        end
      end
      sleep 0.3
      results = Array.new(forks) do |i|
        pid, took = fork_child(child_host.call(i), child_limit, builtin: builtin)
        [verdict(pid), took]
      end
      stop = true
      resolvers.each(&:join)
      results
    end

    def storm(forks, builtin:)
      forks_beside_lookups(forks, threads: 6, lookup_limit: 2, child_limit: 3, builtin: builtin,
                                  name: ->(t, n) { t.even? ? "dual-storm#{t}-#{n % 40}.igai.test" : "localhost" },
                                  child_host: ->(i) { "ok-storm-child#{i}.igai.test" })
    end

    def stalled(forks, builtin:)
      forks_beside_lookups(forks, threads: 4, lookup_limit: 1, child_limit: 1, builtin: builtin,
                                  name: ->(t, n) { "stall-fork#{t}-#{n}.igai-stalled.test" },
                                  child_host: ->(_) { "localhost" })
    end

    def first_lookups(processes, builtin:)
      Array.new(processes) do |i|
        reader, writer = IO.pipe
        fresh = fork do
          reader.close
          Thread.new { resolves?(i.even? ? "localhost" : "ok-first#{i}.igai.test", 2, builtin: builtin) }
          delay_until = now + ((i % 20) * 0.00005)
          Thread.pass while now < delay_until
          pid, took = fork_child("localhost", 1, builtin: builtin)
          writer.puts JSON.generate([verdict(pid), took])
          exit!(0)
        end
        writer.close
        line = reader.read
        Process.wait(fresh)
        result, took = JSON.parse(line)
        [result.to_sym, took]
      end
    end

    def report(results)
      took = results.map(&:last).sort
      counts = results.map(&:first).tally
      { children: results.size, failed: counts.fetch(:failed, 0), hung: counts.fetch(:hung, 0),
        worst_fork_ms: (took.last * 1000).round(2), median_fork_ms: (took[took.size / 2] * 1000).round(2) }
    end

    # Registers a pthread_atfork prepare handler that spins for a random time up to `micros`
    # µs, before igai registers its own: prepare handlers run last-registered first, so this
    # runs after igai's and before glibc's fork copies the process, as a forking thread
    # preempted at the worst moment on a loaded machine does. Other threads (a lookup whose
    # answer just arrived included) run on meanwhile.
    def pause_before_each_fork(micros)
      require "fiddle"
      require "fiddle/closure"
      libc = Fiddle.dlopen(nil)
      @pause = Fiddle::Closure::BlockCaller.new(Fiddle::TYPE_VOID, []) do
        until_then = now + (rand(micros) / 1e6)
        nil while now < until_then
      end
      # pthread_atfork itself is in libc_nonshared.a; this is what it calls (no DSO handle).
      atfork = Fiddle::Function.new(libc["__register_atfork"], [Fiddle::TYPE_VOIDP] * 4, Fiddle::TYPE_INT)
      atfork.call(@pause, nil, nil, nil)
    end

    def main(argv)
      scenario, count = argv
      builtin = argv.include?("--builtin")
      pause = argv.find { |arg| arg.start_with?("--pause=") }&.delete_prefix("--pause=")
      pause_before_each_fork(Integer(pause)) if pause
      require "igai" unless builtin
      busy = argv.include?("--busy") ? Array.new(2) { Process.spawn(RbConfig.ruby, "-e", "loop {}") } : []
      scenarios = { "storm" => :storm, "first" => :first_lookups, "stalled" => :stalled }
      results = send(scenarios.fetch(scenario), Integer(count), builtin: builtin)
      puts JSON.generate(report(results))
    ensure
      busy&.each do |pid|
        Process.kill(:KILL, pid)
        Process.wait(pid)
      end
    end
  end
end

IgaiTest::ForkScenarios.main(ARGV) if $PROGRAM_NAME == __FILE__
