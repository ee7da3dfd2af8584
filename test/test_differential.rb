# frozen_string_literal: true

require_relative "test_helper"

# Socket.interruptible_getaddrinfo must be indistinguishable from Socket.getaddrinfo: for
# every input, the same result (values and string encodings) or the same exception (class,
# message and, where the Ruby has it, error_code). Both run against the bed's real DNS server.
class TestDifferential < IgaiTest::BedTest
  include IgaiTest::SameOutcome

  def compared_calls
    [Socket.method(:getaddrinfo), Socket.method(:interruptible_getaddrinfo)]
  end

  # What a call produced, in a form that compares everything the caller can observe.
  def outcome
    rows = yield
    rows.map { |row| row.map { |value| value.is_a?(String) ? [value, value.encoding] : value } }
  rescue StandardError => e
    code = e.respond_to?(:error_code) ? e.error_code : nil
    [e.class, e.message, code]
  end

  def hosts
    long_label = "a" * 300
    long_name = (["b" * 60] * 5).join(".")
    [
      nil, "", "<any>", "<broadcast>", "localhost", Bed::HOSTS_NAME, Bed::HOSTS_V6_NAME,
      "127.0.0.1", "::1", "10.1.2.3", "::ffff:127.0.0.1", "1.2.3", "01.2.3.4", "fe80::1%lo",
      "2001:db8::1", Bed.answered_name, Bed.answered_name(dual: true), Bed.nxdomain_name,
      Bed.refused_name, Bed.servfail_name, long_label, long_name, "#{long_name}.igai.test",
      "nul\0inside", "newline\n", "new\nline", "a" * 1100, 0x7f000001, 0, -1, 2**32, 2**70,
      1.5, :localhost, Object.new,
      # MRI measures a string by its bytes but hands C the text up to the first NUL byte.
      "localhost".encode("UTF-32BE"), ("a" * 600).encode("UTF-16LE"), "127.0.0.1".encode("UTF-16LE")
    ]
  end

  def test_hosts_and_services_match_socket_getaddrinfo
    services = [nil, 80, 0, 65_535, 65_536, -1, "80", "http", "", "igai-no-such-service",
                "80x", "9" * 40, 2**70, :http, "a\0b"]
    hosts.product(services).each { |host, service| assert_same_outcome(host, service) }
  end

  def test_families_and_socket_types_match_socket_getaddrinfo
    some_hosts = ["localhost", "127.0.0.1", "::1", nil, Bed::HOSTS_V6_NAME,
                  Bed.answered_name(dual: true), Bed.nxdomain_name, 0x7f000001]
    families = [nil, Socket::AF_INET, Socket::AF_INET6, Socket::AF_UNSPEC, :INET, :AF_INET6,
                "AF_INET", "INET6", "PF_INET", :UNIX, :BOGUS, "bogus\0x", 9999, Object.new, 2.0]
    socktypes = [nil, 0, :STREAM, "SOCK_DGRAM", Socket::SOCK_RAW, :SEQPACKET, :BOGUS, "1"]
    some_hosts.product(families, socktypes).each do |host, family, socktype|
      assert_same_outcome(host, 443, family, socktype)
    end
  end

  def test_protocols_and_flags_match_socket_getaddrinfo
    some_hosts = ["localhost", "127.0.0.1", "::1", nil, Bed.answered_name, Bed.nxdomain_name]
    protocols = [nil, 0, Socket::IPPROTO_TCP, Socket::IPPROTO_UDP, 132, "6"]
    flags = [nil, 0, Socket::AI_PASSIVE, Socket::AI_CANONNAME, Socket::AI_NUMERICHOST,
             Socket::AI_NUMERICSERV, Socket::AI_V4MAPPED | Socket::AI_ALL, Socket::AI_ADDRCONFIG,
             1 << 20, "1"]
    some_hosts.product(protocols, flags).each do |host, protocol, flag|
      assert_same_outcome(host, "80", Socket::AF_UNSPEC, nil, protocol, flag)
      assert_same_outcome(host, 80, :INET6, :STREAM, protocol, flag)
    end
  end

  def test_reverse_lookup_values_match_socket_getaddrinfo
    some_hosts = ["localhost", "127.0.0.1", "::1", "127.0.1.1", Bed.answered_name, nil]
    values = [nil, true, false, :numeric, :hostname, :bogus, "true", 1, :"numeric\0",
              :"hostname\0x", "numeric".to_sym]
    some_hosts.product(values).each do |host, reverse_lookup|
      assert_same_outcome(host, 80, nil, :STREAM, nil, nil, reverse_lookup)
      assert_same_outcome(host, 80, nil, :STREAM, nil, Socket::AI_CANONNAME, reverse_lookup)
    end
  end

  def test_do_not_reverse_lookup_default_is_honoured_like_socket_getaddrinfo
    saved = BasicSocket.do_not_reverse_lookup
    [true, false].each do |setting|
      BasicSocket.do_not_reverse_lookup = setting
      assert_same_outcome("127.0.0.1", 80)
      assert_same_outcome("localhost", 80)
    end
  ensure
    BasicSocket.do_not_reverse_lookup = saved
  end

  # A table of family and socket type names must never mistake an object for a Symbol that
  # the garbage collector freed from the same heap slot.
  def test_objects_in_the_slots_of_collected_symbols_are_not_taken_for_names
    %w[SEQPACKET RDM INET6 PACKET].each { |name| "#{name}_#{rand}".to_sym }
    GC.start
    Array.new(100_000) { Object.new }.each do |object|
      assert_raises(TypeError) { Socket.interruptible_getaddrinfo("127.0.0.1", 80, nil, object) }
      assert_raises(TypeError) { Socket.interruptible_getaddrinfo("127.0.0.1", 80, object) }
    end
  end

  def test_arity_errors_match_socket_getaddrinfo
    assert_same_argument_errors([], ["localhost"], ["localhost", 80, nil, nil, nil, nil, nil, :extra])
  end

  def test_objects_with_to_str_are_converted_like_socket_getaddrinfo
    assert_same_outcome(converting(:to_str, "localhost"), converting(:to_str, "80"),
                        converting(:to_str, "INET"))
  end
end
