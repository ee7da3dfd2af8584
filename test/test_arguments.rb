# frozen_string_literal: true

require_relative "test_helper"

# Socket.interruptible_getaddrinfo and .interruptible_getnameinfo are native methods, but
# take their arguments as Ruby methods with the same signatures would, with the same errors
# for a wrong count and for unknown keywords, and a Hash given positionally stays positional.
class TestArguments < Minitest::Test
  # Ruby methods with the documented signatures: what the native ones must match.
  module Reference
    module_function

    def getaddrinfo(host, service, family = nil, socktype = nil, protocol = nil, flags = nil,
                    reverse_lookup = nil, timeout: nil)
      [host, service, family, socktype, protocol, flags, reverse_lookup, timeout]
    end

    def getnameinfo(sockaddr, flags = 0, timeout: nil)
      [sockaddr, flags, timeout]
    end
  end

  ARGUMENT_ERRORS = [
    [[], {}],
    [["127.0.0.1"], {}],
    [Array.new(8, nil), {}],
    [Array.new(8, nil), { timeout: 1 }],
    [["127.0.0.1", 80], { bogus: 1 }],
    [["127.0.0.1", 80], { bogus: 1, other: 2 }],
    [["127.0.0.1", 80], { "timeout" => 1 }],
    [["127.0.0.1", 80], { timeout: 1, bogus: 1 }]
  ].freeze

  # The ArgumentError message of calling `method` with args and keywords, or nil.
  def argument_error(method, args, keywords)
    method.call(*args, **keywords)
    nil
  rescue ArgumentError => e
    e.message
  end

  def test_getaddrinfo_raises_the_argument_errors_of_a_ruby_method
    ARGUMENT_ERRORS.each do |args, keywords|
      expected = argument_error(Reference.method(:getaddrinfo), args, keywords)
      refute_nil expected, "#{args.inspect} #{keywords.inspect} is wrong"
      actual = argument_error(Socket.method(:interruptible_getaddrinfo), args, keywords)
      assert_equal expected, actual
    end
  end

  def test_getnameinfo_raises_the_argument_errors_of_a_ruby_method
    sockaddr = Socket.sockaddr_in(80, "127.0.0.1")
    [[[], {}], [[sockaddr, 0, 1], {}], [[sockaddr], { bogus: 1 }], [[sockaddr, 0], { "x" => 1 }]]
      .each do |args, keywords|
        expected = argument_error(Reference.method(:getnameinfo), args, keywords)
        refute_nil expected
        actual = argument_error(Socket.method(:interruptible_getnameinfo), args, keywords)
        assert_equal expected, actual
      end
  end

  def test_a_hash_given_positionally_is_an_argument_not_keywords
    error = assert_raises(TypeError) do
      Socket.interruptible_getaddrinfo("127.0.0.1", 80, { timeout: 1 })
    end
    assert_equal "no implicit conversion of Hash into Integer", error.message
  end

  def test_every_argument_and_the_timeout_keyword_reach_the_lookup
    rows = Socket.interruptible_getaddrinfo("127.0.0.1", 80, :INET, :STREAM, nil, 0, false,
                                            timeout: 1)
    assert_equal Socket.getaddrinfo("127.0.0.1", 80, :INET, :STREAM, nil, 0, false), rows
    numeric = Socket::NI_NUMERICHOST | Socket::NI_NUMERICSERV
    sockaddr = Socket.sockaddr_in(80, "127.0.0.1")
    assert_equal Socket.getnameinfo(sockaddr, numeric),
                 Socket.interruptible_getnameinfo(sockaddr, numeric, timeout: 1)
  end
end
