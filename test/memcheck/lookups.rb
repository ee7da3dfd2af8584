# frozen_string_literal: true

# The workload of `rake test:memcheck`: 10,000 lookups of every kind igai handles, run under
# valgrind inside the stalled-DNS bed (test/bed/run). valgrind does the checking; this script
# only makes every code path of the extension run many times, checks that each answer is
# the expected one (so that a path that silently stopped working is noticed), and exits 1 if
# one was not.
#
#   test/bed/run valgrind ... ruby -Ilib test/memcheck/lookups.rb
#
# The kinds, with how many of the 10,000 each gets (MEMCHECK_LOOKUPS scales them all):
#   numeric    numeric hosts, answered inline without a thread
#   answered   names the bed's DNS server answers, and /etc/hosts names
#   nxdomain   NXDOMAIN, REFUSED and SERVFAIL names (SocketError)
#   reverse    reverse_lookup: true (a getnameinfo per address on the worker)
#   nameinfo   Socket.interruptible_getnameinfo: numeric (inline), host names (worker),
#              Array and Addrinfo forms, errors
#   bad_args   argument errors (ArgumentError, TypeError, SocketError, RangeError)
#   abandoned  stalled names given up by timeout:, Timeout.timeout and Thread#kill
#   coalesced  many threads asking for the same delayed name at once
#   withdrawn  Igai.max_workers = 1, the 4 threads it may have stuck on stalled names, then lookups
#              with short timeouts that give up while queued
#   forked     children (forked from an idle pool, with and without idle workers) that
#              do lookups, then exit
#
# Afterwards idle workers are retired (Igai.idle_timeout = 0) and the script waits for the
# abandoned lookups to end, so that valgrind's leak check at exit sees an empty pool: any
# outcome, ticket or job left behind is then a leak, not memory still in use.
#
# It also names AF_UNIX sockaddrs without a NUL in their path, which glibc's getnameinfo reads
# up to a NUL: igai once passed them unpadded and valgrind caught the read past their end.

require "igai"
require "socket"
require "timeout"
require_relative "../support/bed"

module MemcheckLookups
  Bed = IgaiTest::Bed
  TOTAL = Integer(ENV.fetch("MEMCHECK_LOOKUPS", "10000"))
  SHARES = {
    numeric: 2400, answered: 1500, nxdomain: 800, reverse: 500, nameinfo: 1500,
    bad_args: 500, abandoned: 300, coalesced: 1500, withdrawn: 400, forked: 600
  }.freeze
  FORKS = 3
  NUMERIC = Socket::NI_NUMERICHOST | Socket::NI_NUMERICSERV

  class Failure < StandardError; end

  @counts = Hash.new(0)
  @lock = Mutex.new

  class << self
    attr_reader :counts

    def share(kind)
      [(SHARES.fetch(kind) * TOTAL / 10_000.0).round, 1].max
    end

    def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

    def count(kind, n = 1)
      @lock.synchronize { @counts[kind] += n }
    end

    def check(condition, message)
      raise Failure, message unless condition
    end

    def gai(*args, **opts)
      Socket.interruptible_getaddrinfo(*args, **opts)
    end

    # Expects the block to raise `klass`; returns the exception.
    def expect_error(klass, what)
      yield
      raise Failure, "#{what}: no #{klass} raised"
    rescue klass => e
      e
    end

    def wait_until(limit, what)
      give_up = now + limit
      sleep 0.02 until yield || now > give_up
      check(yield, "timed out waiting for #{what}: #{Igai.stats}")
    end

    # ------------------------------------------------------------------ kinds

    def numeric(n)
      hosts = ["127.0.0.1", "::1", "10.1.2.3", "::ffff:1.2.3.4", "", "<any>", "<broadcast>",
               0x7f000001, "255.255.255.255", "2001:db8::1"]
      n.times do |i|
        host = hosts[i % hosts.size]
        rows = case i % 4
               when 0 then gai(host, i % 65_536)
               when 1 then gai(host, "80", nil, :STREAM)
               when 2 then gai(host, nil, nil, :DGRAM, nil, Socket::AI_PASSIVE, false)
               else gai(host, "443", nil, nil, Socket::IPPROTO_TCP, nil, :numeric, timeout: 5)
               end
        check(!rows.empty?, "numeric #{host.inspect}: no rows")
        count(:numeric)
      end
    end

    def answered(n)
      n.times do |i|
        rows = case i % 6
               when 0 then gai(Bed.answered_name, 80)
               when 1 then gai(Bed.answered_name(dual: true), "443", nil, :STREAM)
               when 2 then gai(Bed.answered_name, nil, :INET, nil, nil, Socket::AI_CANONNAME)
               when 3 then gai(Bed.hosts_name, 80, nil, :STREAM)
               when 4 then gai("localhost", "http", nil, :STREAM, nil, nil, false, timeout: 10)
               else gai(Bed.answered_name(dual: true), 80, :INET6, :DGRAM)
               end
        check(rows.any? { |row| ["127.0.0.1", "::1", "127.0.1.1"].include?(row[3]) },
              "answered lookup #{i}: #{rows.inspect}")
        count(:answered)
      end
    end

    def nxdomain(n)
      n.times do |i|
        name = case i % 8
               when 6 then Bed.refused_name
               when 7 then Bed.servfail_name
               else Bed.nxdomain_name
               end
        expect_error(SocketError, name) { gai(name, 80, nil, :STREAM) }
        count(:nxdomain)
      end
    end

    def reverse(n)
      n.times do |i|
        host = i.even? ? "127.0.0.1" : Bed.answered_name
        rows = gai(host, 80, nil, :STREAM, nil, nil, i % 3 == 0 ? :hostname : true)
        check(rows.first[2] == "localhost", "reverse #{host}: #{rows.inspect}")
        count(:reverse)
      end
    end

    def nameinfo(n)
      v4 = Socket.sockaddr_in(80, "127.0.0.1")
      v6 = Socket.sockaddr_in(443, "::1")
      n.times do |i|
        case i % 10
        when 0 then check(Socket.interruptible_getnameinfo(v4, NUMERIC) == ["127.0.0.1", "80"], "ni v4")
        when 1 then check(Socket.interruptible_getnameinfo(v6, NUMERIC)[0] == "::1", "ni v6")
        when 2 then check(Socket.interruptible_getnameinfo(v4)[0] == "localhost", "ni name")
        when 3 then Socket.interruptible_getnameinfo(v6, Socket::NI_NUMERICSERV, timeout: 10)
        when 4 then Socket.interruptible_getnameinfo(["AF_INET", 80, Bed.answered_name], NUMERIC)
        when 5 then Socket.interruptible_getnameinfo([:INET6, "443", "::1", "::1"])
        when 6 then Socket.interruptible_getnameinfo(Addrinfo.tcp("127.0.0.1", 22), NUMERIC)
        when 7
          expect_error(SocketError, "ni nx") { Socket.interruptible_getnameinfo(["AF_INET", 80, Bed.nxdomain_name]) }
        when 8
          expect_error(SocketError, "ni family") { Socket.interruptible_getnameinfo("\xff\xff\0\0".b) }
        else
          expect_error(TypeError, "ni too big") { Socket.interruptible_getnameinfo("x" * 3000) }
        end
        count(:nameinfo)
      end
    end

    def bad_args(n)
      to_str = Object.new
      def to_str.to_str = raise(IOError, "to_str raised")
      cases = [
        [ArgumentError, ["nul\0inside", 80]],
        [ArgumentError, ["a" * 2000, 80]],
        [ArgumentError, ["localhost", "s" * 40]],
        [SocketError, ["localhost", 80, :NO_SUCH_FAMILY]],
        [SocketError, ["localhost", 80, nil, "NO_SUCH_TYPE"]],
        [TypeError, ["localhost", 80, nil, nil, Object.new]],
        [RangeError, ["localhost", 80, nil, nil, nil, 2**80]],
        [RangeError, [2**40, 80]],
        [ArgumentError, ["localhost", 80, nil, nil, nil, nil, :bogus]],
        [TypeError, ["localhost", 80, nil, nil, nil, nil, "true"]],
        [IOError, [to_str, 80]],
        [SocketError, ["newline\n", 80, nil, :STREAM]]
      ]
      n.times do |i|
        klass, args = cases[i % cases.size]
        expect_error(klass, "bad args #{args.inspect[0, 60]}") { gai(*args) }
        count(:bad_args)
      end
      expect_error(ArgumentError, "negative timeout") { gai("localhost", 80, timeout: -1) }
    end

    # Stalled names given up in three ways; a few names are shared, so that some lookups join
    # an abandoned job (which then has a waiter again; when that job ends just then, with the
    # bed's "temporary failure", the joiner gets that answer instead of its timeout).
    def abandoned(n)
      names = Array.new(8) { Bed.stalled_name }
      n.times do |i|
        name = i % 3 == 0 ? names[i % names.size] : Bed.stalled_name
        case i % 3
        when 0
          begin
            gai(name, 80, timeout: 0.02)
            raise Failure, "a stalled name was answered"
          rescue Errno::ETIMEDOUT, SocketError
            nil
          end
        when 1
          expect_error(Timeout::Error, "Timeout") { Timeout.timeout(0.02) { gai(name, 80) } }
        else
          thread = Thread.new { gai(name, 80) }
          sleep 0.01
          thread.kill.join
        end
        count(:abandoned)
      end
    end

    # Rounds of `threads` threads resolving one delayed name together.
    def coalesced(n)
      threads = 30
      (n / threads).times do
        name = Bed.delayed_name(100)
        gate = Queue.new
        workers = Array.new(threads) do
          Thread.new do
            gate.pop
            rows = gai(name, 80, nil, :STREAM)
            check(rows.first[3] == "127.0.0.1", "coalesced #{name}: #{rows.inspect}")
            count(:coalesced)
          end
        end
        threads.times { gate << true }
        workers.each(&:join)
      end
    end

    # Every thread the pool may have stuck on stalled names (given up at once, so abandoned):
    # with max_workers 1, stuck lookups stop counting against it, up to the ceiling of 4
    # threads (policy.rs, THREAD_CEILING); lookups then queue behind them and give up while
    # queued, so their jobs are withdrawn. Two zones with two each, so that neither is dead
    # before its second. A round ends when the stalled lookups do (the resolver's timeout).
    STUCK = 4

    def withdrawn(n)
      saved = [Igai.max_workers, Igai.idle_timeout]
      drain # no idle worker may take the jobs meant to queue
      Igai.idle_timeout = saved[1]
      Igai.max_workers = 1
      left = n
      while left.positive?
        wait_until(Bed.resolver_timeout + 10, "the stuck workers to finish") { Igai.stats[:busy].zero? }
        STUCK.times do |i|
          zone = Bed.zone("stuck#{i / 2}")
          expect_error(Errno::ETIMEDOUT, "stuck") { gai(Bed.stalled_name(zone: zone), 80, timeout: 0.05) }
        end
        wait_until(10, "#{STUCK} stuck workers") { Igai.stats.values_at(:busy, :queued) == [STUCK, 0] }
        left -= withdraw_while_stuck(left)
        check(Igai.stats[:queued].zero?, "queued jobs left behind: #{Igai.stats}")
      end
    ensure
      Igai.max_workers, Igai.idle_timeout = saved
    end

    # Lookups that give up while queued, as long as every worker stays stuck; returns how many.
    def withdraw_while_stuck(limit)
      done = 0
      while done < limit && Igai.stats[:busy] == STUCK
        begin
          if done.even?
            gai(Bed.answered_name, 80, timeout: 0.01)
          else
            Timeout.timeout(0.01) { Socket.interruptible_getnameinfo(["AF_INET", 80, Bed.answered_name]) }
          end
          # Answered: only fine if a stuck lookup ended meanwhile and freed its worker.
          check(Igai.stats[:busy] < STUCK, "a lookup queued behind #{STUCK} stuck workers was answered")
        rescue Errno::ETIMEDOUT, Timeout::Error
          nil
        end
        count(:withdrawn)
        done += 1
      end
      done
    end

    # Children, forked from a parent whose pool is idle (nothing in flight), each do their
    # share of lookups and exit normally; valgrind checks each child's memory at its exit.
    # The first child is forked after the parent's workers have all retired, the others
    # while idle workers exist (threads that vanish in the child). Nothing is in flight at
    # fork time: a worker's lookup running across fork leaves in the child memory that only
    # that (vanished) thread referenced, which the leak check would count. (Lookups in flight
    # across fork are tested for correctness in test_pool.rb.)
    def forked(n)
      per_child = n / FORKS
      saved = Igai.idle_timeout
      FORKS.times do |f|
        if f.zero?
          drain
          Igai.idle_timeout = saved
        else
          8.times { gai(Bed.answered_name, 80) } # warm workers
          wait_until(10, "idle workers") { Igai.stats[:busy].zero? && Igai.stats[:idle].positive? }
        end
        pid = fork { child_lookups(f, per_child) }
        _, status = Process.wait2(pid)
        check(status.success?, "child #{f} failed: #{status.inspect}")
        count(:forked, per_child)
      end
    end

    def child_lookups(child, n)
      n.times do |i|
        case i % 6
        when 0 then check(gai(Bed.answered_name, 80)[0][3] == "127.0.0.1", "child answered")
        when 1 then gai("127.0.0.1", 80)
        when 2 then expect_error(SocketError, "child nx") { gai(Bed.nxdomain_name, 80) }
        when 3 then Socket.interruptible_getnameinfo(Socket.sockaddr_in(80, "127.0.0.1"))
        when 4 then gai("127.0.0.1", 80, nil, :STREAM, nil, nil, true)
        else expect_error(Errno::ETIMEDOUT, "child stall") { gai(Bed.stalled_name, 80, timeout: 0.02) }
        end
      end
      check(Igai.stats[:completed] >= n / 2, "child #{child}: #{Igai.stats}")
      drain
    rescue Failure => e
      warn "memcheck child #{child}: #{e.message}"
      exit 1
    end

    # Idle workers retire; abandoned lookups end (bed resolver timeout) and are cleaned up.
    def drain
      Igai.idle_timeout = 0
      wait_until(Bed.resolver_timeout * 3 + 10, "the pool to empty") do
        stats = Igai.stats
        stats[:busy].zero? && stats[:workers].zero? && stats[:queued].zero?
      end
    end

    # AF_UNIX sockaddrs whose path has no NUL (glibc reads the path up to a NUL).
    def unix_paths_without_nul
      10.times do
        check(Socket.interruptible_getnameinfo("\x01\x00ab".b, NUMERIC)[1] == "ab", "unix path")
        Socket.interruptible_getnameinfo(Addrinfo.unix(""), NUMERIC)
      end
    end

    def main
      Bed.available? or abort("test/memcheck/lookups.rb must run inside test/bed/run")
      start = now
      SHARES.each_key do |kind|
        t0 = now
        send(kind, share(kind))
        GC.start
        warn format("memcheck: %-9s %5d lookups in %6.1f s", kind, counts[kind], now - t0)
      end
      unix_paths_without_nul
      drain
      total = counts.values.sum
      warn format("memcheck: %d lookups in %.1f s; %s", total, now - start, Igai.stats)
    rescue Failure => e
      warn "memcheck: FAILED: #{e.message}"
      exit 1
    end
  end
end

MemcheckLookups.main
