# frozen_string_literal: true

# Tests of the stalled-DNS test bed itself (test/bed/run + dns_server.rb),
# using only Ruby's own resolver entry points (Socket.getaddrinfo,
# Addrinfo.getaddrinfo), which call the real glibc getaddrinfo. If these
# pass, the igai tests built on the bed measure igai and not the bed.
#
# Standalone on purpose: does not load the igai extension.
#
#   test/bed/run ruby -Itest test/test_bed.rb

require "minitest/autorun"
require "resolv"
require "socket"
require "timeout"
require_relative "support/bed_test"

class TestBed < IgaiTest::BedTest

  # MRI 3.3 made Socket.getaddrinfo interruptible (it runs in a helper
  # thread); before that a blocked getaddrinfo ignores Timeout until glibc
  # gives up.
  INTERRUPTIBLE_GETADDRINFO = Gem::Version.new(RUBY_VERSION) >= Gem::Version.new("3.3")

  def test_environment_describes_the_bed
    assert_equal "1", ENV["IGAI_BED"]
    assert Bed.log_path && File.exist?(Bed.log_path), "IGAI_DNS_LOG should name an existing file"
    assert_operator Bed.resolver_timeout, :>=, 1.0
    assert_includes File.read("/etc/resolv.conf"), "nameserver 127.0.0.1"
    assert_includes File.read("/etc/resolv.conf"), "timeout:#{Bed.resolver_timeout.to_i}"
  end

  def test_answered_name_resolves_to_loopback
    name = Bed.answered_name
    addrs = Addrinfo.getaddrinfo(name, 80, :INET, :STREAM).map(&:ip_address)
    assert_equal [Bed::ANSWER_V4], addrs

    rows = Socket.getaddrinfo(name, 80, :INET, :STREAM)
    assert_equal Bed::ANSWER_V4, rows.first[3]
  end

  # The bed gives lo extra addresses so that AI_ADDRCONFIG lookups still go
  # to DNS (and can stall) instead of failing at once.
  def test_ai_addrconfig_lookups_reach_dns
    name = Bed.answered_name(dual: true)
    v4 = Addrinfo.getaddrinfo(name, 80, :INET, :STREAM, nil, Socket::AI_ADDRCONFIG)
    assert_equal [Bed::ANSWER_V4], v4.map(&:ip_address)
    assert_includes Bed.queries_for(name), "A"
  end

  def test_answered_name_has_no_ipv6_address
    error = assert_raises(SocketError) do
      Addrinfo.getaddrinfo(Bed.answered_name, 80, :INET6, :STREAM)
    end
    assert_match(/no address associated/i, error.message) # EAI_NODATA
  end

  def test_dual_name_resolves_to_both_families
    name = Bed.answered_name(dual: true)
    assert_equal [Bed::ANSWER_V6], Addrinfo.getaddrinfo(name, 80, :INET6, :STREAM).map(&:ip_address)

    all = Addrinfo.getaddrinfo(name, 80, nil, :STREAM).map(&:ip_address)
    assert_equal [Bed::ANSWER_V4, Bed::ANSWER_V6].sort, all.sort
  end

  def test_pair_name_resolves_to_two_addresses_of_each_family_in_order
    name = Bed.pair_name
    assert_equal [Bed::ANSWER_V6, Bed::SECOND_V6, Bed::ANSWER_V4, Bed::SECOND_V4],
                 Addrinfo.getaddrinfo(name, 80, nil, :STREAM).map(&:ip_address)
    assert_equal [Bed::ANSWER_V4, Bed::SECOND_V4],
                 Addrinfo.getaddrinfo(name, 80, :INET, :STREAM).map(&:ip_address)
  end

  def test_first_only_name_answers_its_first_query_and_no_other
    name = Bed.first_only_name
    dns = Resolv::DNS.new(nameserver: "127.0.0.1").tap { |resolver| resolver.timeouts = 0.3 }
    assert_equal [Bed::ANSWER_V6], dns.getresources(name, Resolv::DNS::Resource::IN::AAAA).map { |r| r.address.to_s }
    assert_empty dns.getresources(name, Resolv::DNS::Resource::IN::A)
    assert_empty dns.getresources(name, Resolv::DNS::Resource::IN::AAAA)
    assert_equal %w[AAAA A AAAA], Bed.queries_for(name)
  end

  def test_nxdomain_name_raises
    error = assert_raises(SocketError) { Socket.getaddrinfo(Bed.nxdomain_name, 80) }
    assert_match(/not known/i, error.message) # EAI_NONAME
  end

  def test_names_outside_the_zone_do_not_resolve
    assert_raises(SocketError) { Socket.getaddrinfo("www.example.com", 80) }
  end

  def test_refused_and_servfail_fail_quickly
    [Bed.refused_name, Bed.servfail_name].each do |name|
      took = elapsed do
        error = assert_raises(SocketError) { Socket.getaddrinfo(name, 80) }
        assert_match(/temporary failure/i, error.message) # EAI_AGAIN
      end
      assert_operator took, :<, Bed.resolver_timeout / 2, "#{name} should fail at once"
    end
  end

  def test_hosts_file_entries_resolve_without_dns
    assert_equal [Bed::HOSTS_ADDRESS],
                 Addrinfo.getaddrinfo(Bed.hosts_name, 80, :INET, :STREAM).map(&:ip_address)
    assert_equal [Bed::HOSTS_ADDRESS],
                 Addrinfo.getaddrinfo(Bed::HOSTS_SHORT_NAME, 80, :INET, :STREAM).map(&:ip_address)
    assert_equal [Bed::HOSTS_V6_ADDRESS],
                 Addrinfo.getaddrinfo(Bed.hosts_v6_name, 80, :INET6, :STREAM).map(&:ip_address)
    assert_empty Bed.queries_for(Bed.hosts_name), "hosts entries must not reach the DNS server"
  end

  # Resolves name (IPv4, stream) and asserts the bed's answer; returns how long it took.
  def time_answer(name)
    rows = nil
    took = elapsed { rows = Socket.getaddrinfo(name, 80, :INET, :STREAM) }
    assert_equal Bed::ANSWER_V4, rows.first[3]
    took
  end

  def test_delayed_name_resolves_after_the_delay
    took = time_answer(Bed.delayed_name(300))
    assert_operator took, :>=, 0.25
    assert_operator took, :<, Bed.resolver_timeout
  end

  # A once- name is answered after its delay the first time, and never again: a repeated
  # query of the same name stalls until the resolver gives up.
  def test_once_name_answers_only_its_first_query
    name = Bed.once_name(100)
    assert_operator time_answer(name), :>=, 0.08
    took = elapsed do
      error = assert_raises(SocketError) { Socket.getaddrinfo(name.upcase, 80, :INET) }
      assert_match(/temporary failure/i, error.message) # EAI_AGAIN
    end
    assert_in_delta Bed.resolver_timeout, took, 0.75
    assert_equal %w[A A], Bed.queries_for(name)
  end

  # Strictness: on CI (CI set to anything) or with IGAI_REQUIRE_BED=1 a missing bed fails.
  def test_a_missing_bed_fails_instead_of_skipping_when_strict
    saved = ENV.to_h.slice("CI", "IGAI_REQUIRE_BED", "IGAI_BED")
    ENV["IGAI_BED"] = "0"
    [[{ "CI" => "1" }, true], [{ "CI" => "true" }, true], [{ "IGAI_REQUIRE_BED" => "1" }, true],
     [{ "CI" => "", "IGAI_REQUIRE_BED" => nil }, false]].each do |env, strict|
      ENV.delete("CI")
      ENV.delete("IGAI_REQUIRE_BED")
      env.each { |key, value| ENV[key] = value }
      assert_equal strict, Bed.strict?, env.inspect
      error = assert_raises(Minitest::Assertion) { Bed.require!(self) }
      assert_equal strict ? Minitest::Assertion : Minitest::Skip, error.class, env.inspect
    end
  ensure
    %w[CI IGAI_REQUIRE_BED IGAI_BED].each { |key| ENV[key] = saved[key] }
  end

  # The point of the bed: a stalled name blocks getaddrinfo until the
  # resolver timeout, and (before MRI 3.3) Timeout cannot interrupt it.
  def test_stalled_name_blocks_plain_getaddrinfo
    name = Bed.stalled_name
    error = nil
    took = elapsed do
      Timeout.timeout(0.2) { Socket.getaddrinfo(name, 80) }
    rescue Timeout::Error, SocketError => e
      error = e
    end

    if INTERRUPTIBLE_GETADDRINFO
      assert_kind_of Timeout::Error, error
      assert_operator took, :<, 1.0, "MRI >= 3.3 should interrupt getaddrinfo"
    else
      # The resolver's failure, or Timeout's error delivered once getaddrinfo returned.
      assert_includes [SocketError, Timeout::Error], error.class, error.inspect
      assert_operator took, :>=, [1.0, Bed.resolver_timeout * 0.5].max,
                      "Timeout interrupted getaddrinfo: the bed did not stall it"
      assert_operator took, :<, Bed.resolver_timeout * 2 + 2
    end
    assert_includes Bed.wait_for_queries(name), "A"
  end

  def test_stalled_name_fails_after_resolver_timeout
    name = Bed.stalled_name
    took = elapsed do
      error = assert_raises(SocketError) { Socket.getaddrinfo(name, 80, :INET) }
      assert_match(/temporary failure/i, error.message) # EAI_AGAIN
    end
    assert_in_delta Bed.resolver_timeout, took, 0.75
    assert_equal ["A"], Bed.queries_for(name)
  end

  def test_queries_are_logged
    name = Bed.answered_name
    Socket.getaddrinfo(name, 80, :INET)
    assert_equal ["A"], Bed.queries_for(name)

    both = Bed.answered_name(dual: true)
    Socket.getaddrinfo(both, 80)
    assert_equal %w[A AAAA], Bed.queries_for(both).sort
    assert_equal %w[A AAAA], Bed.queries_for(both.upcase).sort, "lookup is case-insensitive"
  end

  def test_names_are_unique
    stalled = Array.new(50) { Bed.stalled_name }
    answered = Array.new(50) { Bed.answered_name }
    assert_equal 100, (stalled + answered).uniq.size
    assert(stalled.all? { |n| n.end_with?(".#{Bed::STALLED_ZONE}") })
    assert(answered.all? { |n| n.end_with?(".#{Bed::ZONE}") })
  end

  # The server also speaks TCP (used by glibc for truncated replies).
  def test_server_answers_over_tcp
    query = Resolv::DNS::Message.new(4242)
    query.rd = 1
    query.add_question(Bed.answered_name(dual: true), Resolv::DNS::Resource::IN::AAAA)
    data = query.encode
    reply = Socket.tcp("127.0.0.1", 53, connect_timeout: 2) do |sock|
      sock.write([data.bytesize].pack("n"), data)
      Resolv::DNS::Message.decode(sock.read(sock.read(2).unpack1("n")))
    end
    assert_equal 4242, reply.id
    assert_equal Resolv::DNS::RCode::NoError, reply.rcode
    assert_equal [Bed::ANSWER_V6], reply.answer.map { |_, _, rr| rr.address.to_s }
  end
end
