# frozen_string_literal: true

# Test-side interface to the igai stalled-DNS test bed (test/bed/run).
#
# Tests run under `test/bed/run ...` resolve names through a scripted DNS
# server; this module tells them whether the bed is there, makes names that
# trigger each server behaviour, and reads the server's query log.
#
#   def test_something
#     IgaiTest::Bed.require!(self)          # skip (or flunk on CI) without bed
#     name = IgaiTest::Bed.stalled_name     # never answered
#     ...
#   end
#
# Plain Ruby only; it does not load the igai extension.

require "securerandom"

module IgaiTest
  module Bed
    ZONE = "igai.test"
    # Where stalled names live by default: a dead zone of their own beside the healthy ZONE,
    # as in a real outage. igai holds back new lookups of a zone whose abandoned lookups
    # reach Igai.max_stuck_per_zone, so stalled names in ZONE would also delay the answered
    # names of tests that abandon stalled lookups first.
    STALLED_ZONE = "igai-stalled.test"

    # What the DNS server answers for names under ZONE.
    ANSWER_V4 = "127.0.0.1"
    ANSWER_V6 = "::1"
    # The second address of each family of pair_name.
    SECOND_V4 = "127.0.0.2"
    SECOND_V6 = "fd00:16a1::1"

    # Entries of the bed's /etc/hosts (resolved by nss "files", no DNS query).
    HOSTS_NAME = "igai-hosts-entry.example"
    HOSTS_SHORT_NAME = "igai-hosts-entry"
    HOSTS_ADDRESS = "127.0.1.1"
    HOSTS_V6_NAME = "igai-hosts-v6.example"
    HOSTS_V6_ADDRESS = "::1"

    @counter = 0
    @counter_lock = Mutex.new

    class << self
      # True when running inside the bed (set by test/bed/run).
      def available?
        ENV["IGAI_BED"] == "1"
      end

      # Why the bed is not available (nil when it is).
      def unavailable_reason
        return nil if available?

        reason = ENV["IGAI_BED_UNAVAILABLE"]
        return reason if reason && !reason.empty?

        "not running under test/bed/run (run e.g. `test/bed/run rake test`)"
      end

      # True when nothing may be skipped: on CI (CI set to anything non-empty)
      # or with IGAI_REQUIRE_BED=1. A missing bed then fails the run.
      def strict?
        !ENV["CI"].to_s.empty? || ENV["IGAI_REQUIRE_BED"] == "1"
      end

      # Skips test with message, or fails it when strict?.
      def skip_or_flunk(test, message)
        strict? ? test.flunk(message) : test.skip(message)
      end

      # Call first in a test that needs the bed: skips it when the bed is
      # missing, or fails it when strict?, where a missing bed is a bug.
      def require!(test)
        return true if available?

        skip_or_flunk(test, "stalled-DNS bed unavailable: #{unavailable_reason}")
      end

      # Seconds glibc waits for an unanswered query (resolv.conf timeout:,
      # with attempts:1). Defaults to the bed's default when unset.
      def resolver_timeout
        Float(ENV.fetch("IGAI_BED_RESOLVER_TIMEOUT", "2"))
      end

      # Path of the DNS server's query log, or nil outside the bed.
      def log_path
        path = ENV["IGAI_DNS_LOG"]
        path unless path.nil? || path.empty?
      end

      # --- names; each call returns a new, never repeated name ---

      # Never answered: getaddrinfo blocks for about resolver_timeout.
      # Names are in STALLED_ZONE unless zone: names another the server answers for
      # (zone(label)).
      def stalled_name(zone: STALLED_ZONE)
        unique_name("stall", zone)
      end

      # Answered (like answered_name) after ms milliseconds.
      def delayed_name(ms, zone: ZONE)
        unique_name("delay#{Integer(ms)}", zone)
      end

      # Answered (like answered_name) ms milliseconds after the server received
      # the first query of its name and type; any later query of that name and
      # type is never answered. So a lookup that is sent again (restarted)
      # instead of waited for stalls until the resolver gives up.
      def once_name(ms)
        unique_name("once#{Integer(ms)}")
      end

      # A -> 127.0.0.1; AAAA -> ::1 when dual, else no AAAA data.
      def answered_name(dual: false, zone: ZONE)
        unique_name(dual ? "dual" : "ok", zone)
      end

      # Two addresses of each family: A 127.0.0.1, SECOND_V4; AAAA ::1, SECOND_V6 (glibc
      # sorts them ::1, SECOND_V6, 127.0.0.1, SECOND_V4).
      def pair_name
        unique_name("pair")
      end

      # Only the first query of the name is answered, whatever its type (A -> 127.0.0.1, or
      # AAAA -> ::1); no later one ever is: a name answered in part.
      def first_only_name
        unique_name("first")
      end

      # The first query of each type for it is lost (never answered); later ones are
      # answered like answered_name.
      def lost_first_name(zone: ZONE)
        unique_name("lose1", zone)
      end

      # A further zone the server answers for ("igai-<label>.test"): a registrable domain of
      # its own, apart from ZONE, for tests that need a dead zone beside a healthy one.
      def zone(label)
        "igai-#{label}.test"
      end

      # NXDOMAIN (getaddrinfo: EAI_NONAME).
      def nxdomain_name
        unique_name("nx")
      end

      # REFUSED rcode.
      def refused_name
        unique_name("refused")
      end

      # SERVFAIL rcode.
      def servfail_name
        unique_name("servfail")
      end

      def hosts_name
        HOSTS_NAME
      end

      def hosts_v6_name
        HOSTS_V6_NAME
      end

      # --- query log ---

      # Query types the server received for name, in arrival order, e.g.
      # ["A", "AAAA"]. Empty when nothing was logged (or no log).
      def queries_for(name)
        path = log_path
        return [] unless path && File.exist?(path)

        wanted = name.downcase.chomp(".")
        File.foreach(path).filter_map do |line|
          qname, qtype = line.split
          qtype if qname == wanted
        end
      end

      # Waits until at least count queries for name were logged (the server
      # logs on receipt, a moment after the client sent them). Returns the
      # query types, or whatever was logged when timeout runs out.
      def wait_for_queries(name, count: 1, timeout: 2.0)
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
        loop do
          types = queries_for(name)
          return types if types.size >= count
          return types if Process.clock_gettime(Process::CLOCK_MONOTONIC) >= deadline

          sleep 0.01
        end
      end

      private

      # "<prefix>-<pid>-<counter>-<random>.<zone>"
      def unique_name(prefix, zone = ZONE)
        n = @counter_lock.synchronize { @counter += 1 }
        "#{prefix}-#{Process.pid}-#{n}-#{SecureRandom.hex(4)}.#{zone}"
      end
    end
  end
end
