# frozen_string_literal: true

require_relative "test_helper"

# Socket.interruptible_getnameinfo against Socket.getnameinfo: the same [host, service] or the
# same exception for every sockaddr form and flag, on the bed; and it can be interrupted.
class TestGetnameinfo < IgaiTest::BedTest
  include IgaiTest::SameOutcome

  def compared_calls
    [Socket.method(:getnameinfo), Socket.method(:interruptible_getnameinfo)]
  end

  def outcome
    yield.map { |name| [name, name.encoding] }
  rescue StandardError => e
    [e.class, e.message]
  end

  def sockaddrs
    [
      Socket.sockaddr_in(80, "127.0.0.1"), Socket.sockaddr_in(22, "::1"),
      Socket.sockaddr_in(8080, "127.0.1.1"), Socket.sockaddr_in(53, "10.9.9.9"),
      Socket.sockaddr_un("/tmp/igai.sock"), Addrinfo.tcp("127.0.0.1", 443),
      Addrinfo.udp("::1", 53), "\x02\x00#{'x' * 14}", "\x02\x00#{'x' * 3000}", "",
      Addrinfo.unix("\0abstract"),
      ["AF_INET", 80, "localhost"], ["AF_INET", 80, "localhost", "127.0.0.1"],
      ["AF_INET", "http", "localhost", nil], [:INET6, 443, "::1"], [nil, 80, "localhost"],
      ["AF_INET", 80, Bed.answered_name], ["AF_INET", 80, Bed.nxdomain_name],
      ["AF_INET", 80, Bed.answered_name(dual: true)], [nil, 80, Bed.answered_name(dual: true)],
      ["BOGUS", 80, "localhost"], ["AF_INET", 80, "bad\nname"], [:INET, 80], [nil, nil, nil],
      [1, 2, 3, 4, 5], 42, nil, Object.new
    ]
  end

  def test_every_sockaddr_form_and_flag_matches_socket_getnameinfo
    flags = [nil, 0, Socket::NI_NUMERICHOST, Socket::NI_NUMERICSERV,
             Socket::NI_NUMERICHOST | Socket::NI_NUMERICSERV, Socket::NI_NAMEREQD, Socket::NI_DGRAM,
             Socket::NI_NOFQDN, "1"]
    sockaddrs.product(flags).each do |sockaddr, flag|
      flag.nil? ? assert_same_outcome(sockaddr) : assert_same_outcome(sockaddr, flag)
    end
  end

  # A unix sockaddr whose path has no NUL: glibc reads the path up to a NUL. MRI copies the
  # sockaddr into an uninitialised stack buffer, so what follows the path is whatever was
  # there (not comparable); igai zero-fills, so the path ends where the sockaddr does and
  # nothing past it is read.
  def test_a_unix_path_without_nul_ends_with_the_sockaddr
    flags = Socket::NI_NUMERICHOST | Socket::NI_NUMERICSERV
    assert_equal "ab", Socket.interruptible_getnameinfo("\x01\x00ab".b, flags)[1]
    assert_equal "", Socket.interruptible_getnameinfo(Addrinfo.unix(""), flags)[1]
  end

  def test_arity_errors_match_socket_getnameinfo
    assert_same_argument_errors([], [Socket.sockaddr_in(80, "127.0.0.1"), 0, :extra])
  end

  def test_numeric_requests_are_answered_without_a_lookup_thread
    output, status = run_ruby(<<~RUBY)
      require "igai"
      sockaddr = Socket.sockaddr_in(80, "10.1.2.3")
      print Socket.interruptible_getnameinfo(sockaddr, Socket::NI_NUMERICHOST).inspect
      print " ", Igai.stats[:workers], " ", Igai.stats[:completed]
    RUBY
    assert status.success?, output
    assert_equal '["10.1.2.3", "http"] 0 0', output
  end

  def test_a_stalled_name_in_the_array_form_can_be_interrupted
    took = elapsed do
      assert_raises(Timeout::Error) do
        Timeout.timeout(0.2) { Socket.interruptible_getnameinfo(["AF_INET", 80, Bed.stalled_name]) }
      end
    end
    assert_operator took, :<, Bed.resolver_timeout / 2
  end

  def test_timeout_keyword_ends_a_stalled_lookup_with_etimedout
    assert_raises(Errno::ETIMEDOUT) do
      Socket.interruptible_getnameinfo(["AF_INET", 80, Bed.stalled_name], 0, timeout: 0.1)
    end
  end
end
