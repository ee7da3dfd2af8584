# frozen_string_literal: true

require "socket"

module IgaiTest
  # The network clients Ruby applications use (Debian packages, see bin/setup), each set up
  # with its own 0.3 s connect/open timeout, and the tiny local servers that answer them.
  # Used by test/test_clients.rb and bench/clients.rb, in child processes: loading a client
  # must not change the process that runs the tests.
  module Clients
    # Each client's own connect/open timeout, in seconds.
    OWN_TIMEOUT = 0.3

    # A client: +libraries+ to require; +connect+ calls it with host and port, with its own
    # timeout of OWN_TIMEOUT, making a real request and returning the response's text;
    # +server+ is the kind of local server that answers it (see Servers); +needs_limit+,
    # called once the client is loaded, says whether its own timeout leaves the lookup
    # unbounded, so that only igai/replace's process-wide limit (IGAI_TIMEOUT) bounds it;
    # +stalled_error+ is the class of what it raises when a stalled lookup is ended.
    Client = Struct.new(:name, :package, :libraries, :server, :needs_limit, :connect, :stalled_error,
                        keyword_init: true) do
      def load
        libraries.each { |library| require library }
      end

      def needs_limit?
        needs_limit ? needs_limit.call : false
      end
    end

    T = OWN_TIMEOUT

    # Yields resource, which a connect lambda made, and ends it with its method close
    # whatever happens.
    def self.closing(resource, close = :close)
      yield resource
    ensure
      resource.public_send(close)
    end
    URL = ->(host, port) { "http://#{host}:#{port}/" }

    ALL = [
      Client.new(
        name: "Net::HTTP", stalled_error: "Net::OpenTimeout",
        package: "ruby (net-http)", libraries: ["net/http"], server: :http,
        connect: lambda do |host, port|
          Net::HTTP.start(host, port, open_timeout: T, read_timeout: 5) { |http| http.get("/").body }
        end
      ),
      Client.new(
        name: "faraday", stalled_error: "Faraday::ConnectionFailed",
        package: "ruby-faraday", libraries: ["faraday"], server: :http,
        connect: lambda do |host, port|
          Faraday.new(url: URL.call(host, port), request: { open_timeout: T, timeout: 5 }).get("/").body
        end
      ),
      Client.new(
        name: "httparty", stalled_error: "Net::OpenTimeout",
        package: "ruby-httparty", libraries: ["httparty"], server: :http,
        connect: ->(host, port) { HTTParty.get(URL.call(host, port), open_timeout: T, read_timeout: 5).body }
      ),
      Client.new(
        name: "rest-client", stalled_error: "RestClient::Exceptions::OpenTimeout",
        package: "ruby-rest-client", libraries: ["rest-client"], server: :http,
        connect: lambda do |host, port|
          RestClient::Request.execute(method: :get, url: URL.call(host, port), open_timeout: T,
                                      read_timeout: 5).body
        end
      ),
      Client.new(
        name: "net-http-persistent", stalled_error: "Net::OpenTimeout",
        package: "ruby-net-http-persistent",
        libraries: ["net/http/persistent"], server: :http,
        connect: lambda do |host, port|
          Clients.closing(Net::HTTP::Persistent.new(name: "igai"), :shutdown) do |http|
            http.open_timeout = T
            http.read_timeout = 5
            http.request(URI(URL.call(host, port))).body
          end
        end
      ),
      Client.new(
        name: "http.rb", stalled_error: "HTTP::TimeoutError",
        package: "ruby-http", libraries: ["http"], server: :http,
        connect: lambda do |host, port|
          HTTP.timeout(connect: T, read: 5, write: 5).get(URL.call(host, port)).to_s
        end
      ),
      Client.new(
        name: "httpclient", stalled_error: "HTTPClient::ConnectTimeoutError",
        package: "ruby-httpclient", libraries: ["httpclient"], server: :http,
        connect: lambda do |host, port|
          client = HTTPClient.new
          client.connect_timeout = T
          client.receive_timeout = 5
          client.get(URL.call(host, port)).body
        end
      ),
      Client.new(
        # Resolves with Ruby's Resolv, which Timeout could end but excon does not.
        name: "excon", stalled_error: "Excon::Error::Socket",
        package: "ruby-excon", libraries: ["excon"], server: :http,
        needs_limit: -> { true },
        connect: lambda do |host, port|
          Excon.get(URL.call(host, port), connect_timeout: T, read_timeout: 5).body
        end
      ),
      Client.new(
        # redis 4 calls Socket.getaddrinfo, bounded only by the limit; redis 5 (redis-client)
        # calls Socket.tcp(connect_timeout:, resolv_timeout:).
        name: "redis", stalled_error: "Redis::CannotConnectError",
        package: "ruby-redis", libraries: ["redis"], server: :redis,
        needs_limit: -> { !defined?(::RedisClient) },
        connect: lambda do |host, port|
          redis = Redis.new(host: host, port: port, connect_timeout: T, timeout: 5, reconnect_attempts: 0)
          Clients.closing(redis) { redis.get("greeting") }
        end
      ),
      Client.new(
        name: "dalli", stalled_error: "Dalli::RingError",
        package: "ruby-dalli", libraries: ["dalli"], server: :memcached,
        connect: lambda do |host, port|
          client = Dalli::Client.new("#{host}:#{port}", socket_timeout: T, socket_max_failures: 1)
          Clients.closing(client) { client.get("greeting") }
        end
      ),
      Client.new(
        name: "Timeout around TCPSocket.new", stalled_error: "Timeout::Error",
        package: "ruby", libraries: ["timeout"],
        server: :http,
        connect: lambda do |host, port|
          Clients.closing(Timeout.timeout(T) { TCPSocket.new(host, port) }) do |socket|
            socket.write("GET / HTTP/1.0\r\n\r\n")
            socket.read.split("\r\n\r\n", 2).last
          end
        end
      )
    ].freeze

    # pg, which no setting of igai bounds (see test/test_clients.rb): libpq's connect_timeout
    # cannot go below 2 s, and covers only the connect.
    PG = Client.new(
      name: "pg", package: "ruby-pg", libraries: ["pg"], server: :hang_up,
      connect: ->(host, port) { ::PG.connect(host: host, port: port, connect_timeout: 1) }
    )

    # The client named name.
    def self.fetch(name)
      [*ALL, PG].find { |client| client.name == name } or
        raise ArgumentError, "no client #{name.inspect}"
    end

    # Local servers on 127.0.0.1 (started in threads of the calling process) that answer
    # every request with the text "hello".
    module Servers
      module_function

      # Starts a server of kind (:http, :redis or :memcached); returns its port.
      def start(kind)
        server = TCPServer.new("127.0.0.1", 0)
        Thread.new do
          loop do
            connection = server.accept
            Thread.new { serve(kind, connection) }
          end
        end
        server.addr[1]
      end

      def serve(kind, connection)
        send(kind, connection)
      rescue IOError, SystemCallError
        nil # the client went away
      ensure
        connection.close
      end

      # Hangs up at once.
      def hang_up(_connection); end

      # HTTP/1.x: one response per connection.
      def http(connection)
        nil until ["\r\n", nil].include?(connection.gets)
        connection.write("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n" \
                         "Connection: close\r\n\r\nhello")
      end

      # RESP (redis): every command (an array of bulk strings) gets the bulk string "hello".
      def redis(connection)
        while (header = connection.gets)
          Integer(header[/\A\*(\d+)/, 1]).times do
            length = Integer(connection.gets[/\A\$(\d+)/, 1])
            connection.read(length + 2)
          end
          connection.write("$5\r\nhello\r\n")
        end
      end

      # memcached's binary protocol: every request gets a successful response with flags 0
      # and the value "hello" (GET's response; a quiet or other request is answered alike).
      def memcached(connection)
        while (header = connection.read(24))
          _magic, opcode, _key_length, _extras, _type, _vbucket, body_length, opaque =
            header.unpack("CCnCCnNN")
          connection.read(body_length) if body_length.positive?
          extras = [0].pack("N")
          value = "hello"
          connection.write([0x81, opcode, 0, extras.bytesize, 0, 0, extras.bytesize + value.bytesize,
                            opaque, 0, 0].pack("CCnCCnNNNN") + extras + value)
        end
      end
    end
  end
end
