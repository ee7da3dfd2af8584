# frozen_string_literal: true

require_relative "test_helper"

# Addrinfo.interruptible_getaddrinfo must return what Addrinfo.getaddrinfo returns: for every
# input, Addrinfo objects alike in everything a caller can observe (inspect with its inspect
# name, socket address, families, socket type, protocol, canonical name, marshal form), or
# the same exception. Both run against the bed's real DNS server.
class TestAddrinfo < IgaiTest::BedTest
  include IgaiTest::SameOutcome

  def compared_calls
    [Addrinfo.method(:getaddrinfo), Addrinfo.method(:interruptible_getaddrinfo)]
  end

  # What a call produced, in a form that compares everything the caller can observe.
  def outcome
    yield.map do |addrinfo|
      [addrinfo.class, addrinfo.inspect, addrinfo.to_sockaddr, addrinfo.afamily,
       addrinfo.pfamily, addrinfo.socktype, addrinfo.protocol, with_encodings(addrinfo.canonname),
       addrinfo.canonname&.frozen?, with_encodings(marshal_fields(addrinfo))]
    end
  rescue StandardError => e
    [e.class, e.message]
  end

  # Strings with their encodings, also inside Arrays.
  def with_encodings(value)
    case value
    when String then [value, value.encoding]
    when Array then value.map { |item| with_encodings(item) }
    else value
    end
  end

  # All fields of addrinfo, inspect name included; Ruby cannot marshal some protocols.
  def marshal_fields(addrinfo)
    addrinfo.marshal_dump
  rescue SocketError => e
    e.message
  end

  def hosts
    [
      nil, "", "<any>", "<broadcast>", "localhost", Bed::HOSTS_NAME, Bed::HOSTS_SHORT_NAME,
      Bed::HOSTS_V6_NAME, "127.0.0.1", "::1", "0:0::1", "::ffff:127.0.0.1", "1.2.3",
      "01.2.3.4", "2001:db8::1", Bed.answered_name, Bed.answered_name(dual: true),
      Bed.nxdomain_name, Bed.servfail_name, "a" * 300, "nul\0inside", "newline\n",
      "a" * 1100, 0x7f000001, 0, -1, 2**32, 1.5, :localhost, "ÿ.igai.test",
      "localhost".encode("UTF-16LE"), Object.new
    ]
  end

  def test_hosts_and_services_match_addrinfo_getaddrinfo
    services = [nil, 80, 0, 65_535, 65_536, 65_616, -1, 2**31, 2**40, -(2**33), "80", "0080",
                "0", "", "http", "igai-no-such-service", "80x", "9" * 40, 2**70, :http, "a\0b"]
    hosts.product(services).each { |host, service| assert_same_outcome(host, service) }
  end

  def test_families_and_socket_types_match_addrinfo_getaddrinfo
    some_hosts = ["localhost", "127.0.0.1", "::1", nil, Bed::HOSTS_V6_NAME,
                  Bed.answered_name(dual: true), Bed.nxdomain_name, 0x7f000001]
    families = [nil, Socket::AF_INET, Socket::AF_INET6, Socket::AF_UNSPEC, :INET, :AF_INET6,
                "AF_INET", "PF_INET", :UNIX, :BOGUS, 9999, Object.new, 2.0]
    socktypes = [nil, 0, :STREAM, "SOCK_DGRAM", Socket::SOCK_RAW, :SEQPACKET, :BOGUS, "1"]
    some_hosts.product(families, socktypes).each do |host, family, socktype|
      assert_same_outcome(host, 443, family, socktype)
      assert_same_outcome(host, "https", family, socktype)
    end
  end

  def test_protocols_and_flags_match_addrinfo_getaddrinfo
    some_hosts = ["localhost", "127.0.0.1", "::1", nil, Bed.answered_name, Bed.nxdomain_name]
    protocols = [nil, 0, Socket::IPPROTO_TCP, Socket::IPPROTO_UDP, 132, "6"]
    flags = [nil, 0, Socket::AI_PASSIVE, Socket::AI_CANONNAME, Socket::AI_NUMERICHOST,
             Socket::AI_NUMERICSERV, Socket::AI_V4MAPPED | Socket::AI_ALL, Socket::AI_ADDRCONFIG,
             1 << 20, "1", 2.0]
    some_hosts.product(protocols, flags).each do |host, protocol, flag|
      # Known gap, see test_canonical_name_is_lost_only_for_protocols_ruby_cannot_name.
      next if protocol == 132 && [Socket::AI_CANONNAME, 2.0].include?(flag)

      assert_same_outcome(host, "80", Socket::AF_UNSPEC, nil, protocol, flag)
      assert_same_outcome(host, 80, :INET6, :STREAM, protocol, flag)
    end
  end

  # Which results carry a canonical name depends on who answered: getaddrinfo(3) names a
  # numeric host after itself, Ruby's own answer for plain numeric hosts names nothing.
  def test_canonical_names_match_addrinfo_getaddrinfo
    some_hosts = ["localhost", Bed::HOSTS_SHORT_NAME, Bed::HOSTS_V6_NAME, Bed.answered_name,
                  Bed.answered_name(dual: true), "127.0.0.1", "::1", "0:0::1", "::ffff:127.0.0.1",
                  "1.2.3", "", "<any>", "<broadcast>", 0x7f000001, "ABCD::1"]
    services = [nil, 80, 0, 65_535, 65_536, "80", "0080", "65535", "65536", "", "http",
                "domain"]
    canonname = Socket::AI_CANONNAME
    some_hosts.product(services).each do |host, service|
      assert_same_outcome(host, service, nil, nil, nil, canonname)
      assert_same_outcome(host, service, :INET6, :STREAM, nil, canonname | Socket::AI_V4MAPPED)
      assert_same_outcome(host, service, :INET, :DGRAM, nil, canonname | Socket::AI_NUMERICHOST)
    end
  end

  # A scoped IPv6 address goes to getaddrinfo(3) even when numeric; see also
  # test_raw_results_for_scoped_ipv6_addresses_lose_only_their_inspect_name.
  def test_scoped_ipv6_addresses_match_addrinfo_getaddrinfo
    services = [nil, 80, 0, 65_536, "80", "0080", "", "http"]
    [nil, Socket::AI_CANONNAME].product(services, [:STREAM, :DGRAM]) do |flags, service, socktype|
      assert_same_outcome("fe80::1%lo", service, nil, socktype, nil, flags)
    end
    [nil, 80, "80", "http"].each { |service| assert_same_outcome("fe80::1%lo", service) }
    assert_same_outcome("fe80::1%lo", 80, nil, :RAW, nil, Socket::AI_CANONNAME)
  end

  def test_objects_with_to_str_and_to_int_are_converted_like_addrinfo_getaddrinfo
    name = converting(:to_str, "localhost")
    numeric_name = converting(:to_str, "127.0.0.1")
    service = converting(:to_str, "80")
    family = converting(:to_str, "INET")
    flags = converting(:to_int, Socket::AI_CANONNAME)
    assert_same_outcome(name, service, family)
    assert_same_outcome(name, 80, nil, nil, nil, flags)
    assert_same_outcome(numeric_name, service, nil, nil, nil, flags)
    assert_same_outcome(numeric_name, "http", nil, nil, nil, flags)
  end

  def test_arity_and_keyword_errors_match_addrinfo_getaddrinfo
    calls = [[[], {}], [["localhost"], {}], [["localhost", 80, nil, nil, nil, nil, nil], {}],
             [["localhost", 80], { bogus: 1 }], [["localhost", 80], { bogus: 1, other: 2 }],
             [["localhost", 80, { timeout: 1 }], {}]]
    calls.each do |args, keywords|
      plain = assert_raises(ArgumentError, TypeError) { Addrinfo.getaddrinfo(*args, **keywords) }
      ours = assert_raises(ArgumentError, TypeError) do
        Addrinfo.interruptible_getaddrinfo(*args, **keywords)
      end
      assert_equal [plain.class, plain.message], [ours.class, ours.message], args.inspect
    end
  end

  # Ruby cannot marshal an Addrinfo with a protocol it has no name for, and marshal_load is
  # the only way to give an Addrinfo a canonical name: such results lose it, nothing else.
  def test_canonical_name_is_lost_only_for_protocols_ruby_cannot_name
    args = ["localhost", 80, nil, nil, 132, Socket::AI_CANONNAME]
    plain = Addrinfo.getaddrinfo(*args)
    # A Ruby that can marshal protocol 132 loses nothing: then the outcomes are equal.
    return assert_same_outcome(*args) if marshal_fields(plain.first).is_a?(Array)

    ours = Addrinfo.interruptible_getaddrinfo(*args)
    assert_equal "localhost", plain.first.canonname
    assert_nil ours.first.canonname
    strip = ->(addrinfo) { addrinfo.inspect.sub(" localhost (", " (") }
    assert_equal plain.map(&strip), ours.map(&strip)
    assert_equal plain.map(&:to_sockaddr), ours.map(&:to_sockaddr)
  end

  # Neither Addrinfo.new nor Addrinfo#marshal_load can rebuild a raw-socket Addrinfo with a
  # scoped IPv6 address and a port (getaddrinfo(3) declines the combination): such results
  # come without their inspect name, nothing else differs.
  def test_raw_results_for_scoped_ipv6_addresses_lose_only_their_inspect_name
    plain = Addrinfo.getaddrinfo("fe80::1%lo", "0080")
    ours = Addrinfo.interruptible_getaddrinfo("fe80::1%lo", "0080")
    raw = ->(addrinfo) { addrinfo.socktype == Socket::SOCK_RAW }
    assert_equal ["#<Addrinfo: [fe80::1%lo]:80 SOCK_RAW (:0080)>"],
                 plain.select(&raw).map(&:inspect)
    assert_equal ["#<Addrinfo: [fe80::1%lo]:80 SOCK_RAW>"], ours.select(&raw).map(&:inspect)
    assert_equal plain.reject(&raw).map(&:inspect), ours.reject(&raw).map(&:inspect)
    assert_equal plain.map(&:to_sockaddr), ours.map(&:to_sockaddr)
  end

  def test_timeout_ends_a_stalled_lookup
    error = nil
    time = elapsed do
      error = assert_raises(Errno::ETIMEDOUT) do
        Addrinfo.interruptible_getaddrinfo(Bed.stalled_name, 80, timeout: 0.2)
      end
    end
    assert_operator time, :<, 1.0
    assert_equal "Connection timed out - user specified timeout", error.message
  end

  def test_timeout_interrupts_a_stalled_lookup
    time = elapsed do
      assert_raises(Timeout::Error) do
        Timeout.timeout(0.2) { Addrinfo.interruptible_getaddrinfo(Bed.stalled_name, 80) }
      end
    end
    assert_operator time, :<, 1.0
  end

  def test_results_are_usable_addrinfos
    server = TCPServer.new("127.0.0.1", 0)
    addrinfo = Addrinfo.interruptible_getaddrinfo(Bed.answered_name, server.addr[1], :INET,
                                                  :STREAM, nil, Socket::AI_CANONNAME).first
    addrinfo.connect(&:close)
    copy = Marshal.load(Marshal.dump(addrinfo))
    assert_equal [addrinfo.inspect, addrinfo.to_sockaddr], [copy.inspect, copy.to_sockaddr]
  ensure
    server&.close
  end
end
