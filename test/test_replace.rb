# frozen_string_literal: true

require "json"
require_relative "test_helper"

# igai/replace (Igai.replace!) routes the socket library's name resolution through igai.
# Every test patches a child process, so that the test runner's own Socket stays untouched.
class TestReplace < IgaiTest::BedTest

  # Loaded first in every child: attempt { ... } runs a block and reports, as a Hash, its
  # value (inspected), or the class and message of what it raised, and the seconds it took;
  # report(hash) prints the JSON that #child returns.
  PRELUDE = "require #{File.expand_path('support/stopwatch', __dir__).dump}\n" + <<~'RUBY'
    require "json"
    require "net/http"
    require "socket"
    require "timeout"

    def attempt
      start = IgaiTest::Stopwatch.now
      report = begin
        { "value" => yield.inspect }
      rescue Exception => e # reported, whatever it is
        { "error" => e.class.name, "message" => e.message }
      end
      report.merge("seconds" => IgaiTest::Stopwatch.now - start)
    end

    def report(hash)
      puts JSON.generate(hash)
    end

    # igai/replace, and on Rubies where it changes nothing by default (3.3+, already
    # interruptible) forced, so that these tests exercise igai's replacement everywhere.
    def replace_socket_lookups
      require "igai/replace"
      Igai.replace!(force: true)
    end

    # A TCP server on host that answers one HTTP request with "hello"; returns its port.
    def http_server(host)
      server = TCPServer.new(host, 0)
      Thread.new do
        client = server.accept
        nil until client.gets == "\r\n"
        client.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
        client.close
      end
      server.addr[1]
    end
  RUBY

  # Runs code in a child Ruby, after PRELUDE and an assignment of each of names to a local
  # variable, and returns what it reported. env: the child's extra environment.
  def child(code, env: {}, **names)
    variables = names.map { |variable, value| "#{variable} = #{value.dump}\n" }.join
    output, status = run_ruby(PRELUDE + variables + code, env: env)
    assert status.success?, "child failed: #{output}"
    JSON.parse(output.lines.last)
  end

  # What Socket.getaddrinfo raises when the resolver gives up (EAI_AGAIN) on this Ruby.
  RESOLVER_GAVE_UP = {
    "error" => Socket.const_defined?(:ResolutionError) ? "Socket::ResolutionError" : "SocketError",
    "message" => "getaddrinfo: Temporary failure in name resolution"
  }.freeze

  def test_net_http_open_timeout_ends_a_stalled_lookup_with_igai_replace
    result = child(<<~RUBY, name: Bed.stalled_name)
      require "igai/replace"
      report(attempt { Net::HTTP.start(name, 80, nil, open_timeout: 0.3) })
    RUBY
    assert_equal "Net::OpenTimeout", result["error"], result.inspect
    assert_operator result["seconds"], :<, 1.0
  end

  # Before MRI 3.3 open_timeout cannot end a stalled lookup (it waits for the resolver); from
  # 3.3 on Ruby's own lookup is interruptible.
  def test_net_http_open_timeout_ends_a_stalled_lookup_without_igai_replace_only_from_mri_3_3
    result = child(<<~RUBY, name: Bed.stalled_name)
      require "igai"
      report(attempt { Net::HTTP.start(name, 80, nil, open_timeout: 0.3) })
    RUBY
    if Igai::SocketPatches.interruptible_already?
      assert_equal "Net::OpenTimeout", result["error"], result.inspect
      assert_operator result["seconds"], :<, 1.0, result.inspect
    else
      assert_operator result["seconds"], :>=, Bed.resolver_timeout * 0.9, result.inspect
    end
  end

  # net-http 0.2 (Ruby 3.1's) opens with Socket.tcp(connect_timeout: open_timeout) and no
  # Timeout: connect_timeout must bound the lookups too (the host's and the local host's),
  # ending them as an expired connect ends, while a name that answers still connects. So
  # for TCPSocket.new (dalli 3.2 and later), which also takes a resolv_timeout.
  def test_socket_tcp_connect_timeout_bounds_its_lookups
    names = { name: Bed.answered_name, stalled: Bed.stalled_name, local: Bed.stalled_name,
              missing: Bed.nxdomain_name }
    result = child(<<~RUBY, **names)
      server = TCPServer.new("127.0.0.1", 0) # kept referenced: GC would close it
      port = server.addr[1]
      local_failure = attempt { Socket.tcp(name, port, missing, 0) }
      replace_socket_lookups
      kept = nil
      report(
        "original local failure" => local_failure,
        "stalled" => attempt { Socket.tcp(stalled, 80, connect_timeout: 0.3) },
        "stalled local" => attempt { Socket.tcp(name, port, local, 0, connect_timeout: 0.3) },
        "answered" => attempt do
          Socket.tcp(name, port, connect_timeout: 0.3) { |socket| (kept = socket).remote_address.ip_port }
        end,
        "closed after the block" => kept.closed?,
        "port" => port,
        "TCPSocket" => attempt { TCPSocket.new(stalled, 80, connect_timeout: 0.3) },
        "TCPSocket local" => attempt { TCPSocket.new(name, port, local, 0, connect_timeout: 0.3) },
        "TCPSocket resolv_timeout" => attempt { TCPSocket.new(stalled, 80, resolv_timeout: 0.3) }
      )
    RUBY
    ["stalled", "stalled local", "TCPSocket", "TCPSocket local", "TCPSocket resolv_timeout"].each do |call|
      expected = ["Errno::ETIMEDOUT", "Connection timed out - user specified timeout"]
      # MRI 3.4's own Socket.tcp turns any failed lookup of the local host into NoMethodError
      # (its ensure clause reads a variable set later); the replacement keeps that, in time.
      original = result["original local failure"]
      if call == "stalled local" && original["error"] == "NoMethodError"
        expected = original.values_at("error", "message")
      end
      assert_equal expected, result[call].values_at("error", "message"), call
      assert_operator result[call]["seconds"], :<, 1.0, call
    end
    assert_equal result["port"].to_s, result["answered"]["value"], result.inspect
    assert result["closed after the block"]
  end

  def test_http_get_through_a_resolved_name_works_with_igai_replace
    result = child(<<~RUBY, name: Bed.answered_name)
      replace_socket_lookups
      port = http_server("127.0.0.1")
      report(attempt { Net::HTTP.start(name, port, nil, open_timeout: 5) { |h| h.get("/").body } })
    RUBY
    assert_equal "hello".inspect, result["value"], result.inspect
  end

  def test_timeout_ends_tcpsocket_new_on_a_stalled_name
    result = child(<<~RUBY, name: Bed.stalled_name)
      replace_socket_lookups
      report(attempt { Timeout.timeout(0.3) { TCPSocket.new(name, 80) } })
    RUBY
    assert_equal "Timeout::Error", result["error"], result.inspect
    assert_operator result["seconds"], :<, 1.0
  end

  # The first address of a dual-stack name refuses, the second accepts: TCPSocket.new, like
  # MRI's, goes on to the second. When both refuse, the error names the host.
  def test_tcpsocket_new_tries_every_address_in_order
    name = Bed.answered_name(dual: true)
    result = child(<<~RUBY, name: name)
      replace_socket_lookups
      first, second = Socket.getaddrinfo(name, nil, nil, :STREAM).map { |row| row[3] }
      server = TCPServer.new(second, 0)
      port = server.addr[1]
      connected = attempt { TCPSocket.new(name, port).remote_address.ip_address }
      server.close
      refused = attempt { TCPSocket.new(name, port) }
      report("first" => first, "second" => second, "port" => port, "connected" => connected,
             "refused" => refused)
    RUBY
    assert_equal %w[127.0.0.1 ::1], [result["first"], result["second"]].sort
    assert_equal result["second"].inspect, result["connected"]["value"], result.inspect
    assert_equal "Errno::ECONNREFUSED", result["refused"]["error"]
    assert_equal "Connection refused - connect(2) for #{name.inspect} port #{result['port']}",
                 result["refused"]["message"]
  end

  # Listeners on both addresses of a dual-stack name: TCPSocket.new connects to the IPv6 one,
  # as the original does (the resolver's order; MRI 3.4's Happy Eyeballs starts with IPv6
  # too). A pair- name has listeners on its second IPv6 and first IPv4 address only: before
  # 3.4 the addresses are tried in the resolver's order (::1, fd00:16a1::1, 127.0.0.1, ...),
  # so the second IPv6 one connects, as with the original; on 3.4 the families take turns
  # (::1, 127.0.0.1, ...), so the IPv4 one does. (3.4's own Happy Eyeballs goes on from a
  # refused ::1 to whichever answer it has at that moment: not compared.)
  def test_tcpsocket_new_connects_to_the_first_address_ipv6_before_ipv4
    names = { dual: Bed.answered_name(dual: true), pair: Bed.pair_name }
    result = child(<<~RUBY, **names)
      def listeners(addresses)
        first = TCPServer.new(addresses.first, 0)
        [first, *addresses.drop(1).map { |address| TCPServer.new(address, first.addr[1]) }]
      end
      both = listeners(%w[::1 127.0.0.1])
      some = listeners(%w[fd00:16a1::1 127.0.0.1])
      connect = lambda do
        { "dual" => attempt { TCPSocket.new(dual, both[0].addr[1]).remote_address.ip_address },
          "pair" => attempt { TCPSocket.new(pair, some[0].addr[1]).remote_address.ip_address } }
          .transform_values { |outcome| outcome.except("seconds") }
      end
      original = connect.call
      replace_socket_lookups
      report("original" => original, "replaced" => connect.call)
    RUBY
    assert_equal({ "value" => "::1".inspect }, result["original"]["dual"], result.inspect)
    assert_equal result["original"]["dual"], result["replaced"]["dual"], result.inspect
    happy_eyeballs = Socket.respond_to?(:tcp_fast_fallback)
    assert_equal({ "value" => (happy_eyeballs ? Bed::ANSWER_V4 : Bed::SECOND_V6).inspect },
                 result["replaced"]["pair"], result.inspect)
    assert_equal result["original"]["pair"], result["replaced"]["pair"], result.inspect unless happy_eyeballs
  end

  # The local host is looked up once, through igai: its address, not its name, goes to the
  # original method (a once- name stalls when asked again).
  def test_tcpsocket_new_resolves_local_host_and_uses_local_port
    names = { name: Bed.answered_name, local: Bed::HOSTS_NAME, stalled: Bed.stalled_name,
              once: Bed.once_name(0) }
    result = child(<<~RUBY, **names)
      replace_socket_lookups
      server = TCPServer.new("127.0.0.1", 0) # kept referenced: GC would close it
      port = server.addr[1]
      free_port = TCPServer.open("127.0.0.1", 0) { |probe| probe.addr[1] }
      report(
        "local_host" => attempt { TCPSocket.new(name, port, local, 0).local_address.ip_address },
        "local_once" => attempt { TCPSocket.new(name, port, once, 0).local_address.ip_address },
        "local_port" => attempt { TCPSocket.open(name, port, nil, free_port).addr[1] },
        "free_port" => free_port,
        "stalled" => attempt { Timeout.timeout(0.3) { TCPSocket.new(name, port, stalled, 0) } },
        "unbindable" => attempt { TCPSocket.new(name, port, "10.9.9.9", 0) }
      )
    RUBY
    assert_equal Bed::HOSTS_ADDRESS.inspect, result["local_host"]["value"], result.inspect
    assert_equal Bed::ANSWER_V4.inspect, result["local_once"]["value"], result.inspect
    assert_operator result["local_once"]["seconds"], :<, 1.0
    assert_equal result["free_port"].to_s, result["local_port"]["value"], result.inspect
    assert_equal "Timeout::Error", result["stalled"]["error"]
    assert_operator result["stalled"]["seconds"], :<, 1.0
    assert_match(/ - bind\(2\) for "10\.9\.9\.9" port 0\z/, result["unbindable"]["message"])
  end

  def test_udpsocket_resolves_names_for_send_connect_and_bind
    names = { name: Bed.answered_name, stalled: Bed.stalled_name, missing: Bed.nxdomain_name }
    result = child(<<~RUBY, **names)
      replace_socket_lookups
      receiver = UDPSocket.new
      receiver.bind(name, 0)
      port = receiver.local_address.ip_port
      sender = UDPSocket.new
      report(
        "receiver" => receiver.local_address.ip_address,
        "sent" => attempt { sender.send("hello", 0, name, port) },
        "received" => attempt { receiver.recv(10) },
        "connected" => attempt { sender.connect(name, port) && sender.send("again", 0) },
        "received_again" => attempt { receiver.recv(10) },
        "stalled" => attempt { Timeout.timeout(0.3) { sender.send("x", 0, stalled, port) } },
        "missing" => attempt { sender.send("x", 0, missing, port) }
      )
    RUBY
    assert_equal "127.0.0.1", result["receiver"]
    assert_equal "5", result["sent"]["value"], result.inspect
    assert_equal "hello".inspect, result["received"]["value"]
    assert_equal "5", result["connected"]["value"]
    assert_equal "again".inspect, result["received_again"]["value"]
    assert_equal "Timeout::Error", result["stalled"]["error"]
    assert_operator result["stalled"]["seconds"], :<, 1.0
    resolution_error = Socket.const_defined?(:ResolutionError) ? "Socket::ResolutionError" : "SocketError"
    assert_equal [resolution_error, "getaddrinfo: Name or service not known"],
                 result["missing"].values_at("error", "message")
  end

  # bind and connect look their names up through igai: each is one more completed igai lookup,
  # and a stalled name ends at Timeout.
  def test_udpsocket_bind_and_connect_resolve_through_igai
    names = { name: Bed.answered_name, stalled_bind: Bed.stalled_name,
              stalled_connect: Bed.stalled_name }
    result = child(<<~RUBY, **names)
      replace_socket_lookups
      socket = UDPSocket.new
      counts = [Igai.stats[:completed]]
      socket.bind(name, 0)
      counts << Igai.stats[:completed]
      socket.connect(name, 9)
      counts << Igai.stats[:completed]
      report(
        "counts" => counts,
        "bind" => attempt { Timeout.timeout(0.3) { UDPSocket.new.bind(stalled_bind, 0) } },
        "connect" => attempt { Timeout.timeout(0.3) { UDPSocket.new.connect(stalled_connect, 9) } }
      )
    RUBY
    assert_equal [0, 1, 2], result["counts"], "one igai lookup each for bind and connect"
    %w[bind connect].each do |call|
      assert_equal "Timeout::Error", result[call]["error"], call
      assert_operator result[call]["seconds"], :<, 1.0, call
    end
  end

  # A name with two IPv4 addresses whose first is taken: bind goes on to the second.
  def test_udpsocket_bind_tries_every_address_of_a_name
    result = child(<<~RUBY, pair: Bed.pair_name)
      replace_socket_lookups
      taken = UDPSocket.new.tap { |socket| socket.bind("127.0.0.1", 0) }
      port = taken.local_address.ip_port
      report(attempt { UDPSocket.new.tap { |socket| socket.bind(pair, port) }.local_address.ip_address })
    RUBY
    assert_equal Bed::SECOND_V4.inspect, result["value"], result.inspect
  end

  def test_ipsocket_getaddress_is_interruptible
    result = child(<<~RUBY, name: Bed.answered_name, stalled: Bed.stalled_name)
      replace_socket_lookups
      report("address" => attempt { IPSocket.getaddress(name) },
             "stalled" => attempt { Timeout.timeout(0.3) { IPSocket.getaddress(stalled) } })
    RUBY
    assert_equal "127.0.0.1".inspect, result["address"]["value"]
    assert_equal "Timeout::Error", result["stalled"]["error"]
    assert_operator result["stalled"]["seconds"], :<, 1.0
  end

  def test_socket_and_addrinfo_lookups_are_interruptible
    result = child(<<~RUBY, stalled: Bed.stalled_name)
      replace_socket_lookups
      lookups = {
        "Socket.getaddrinfo" => -> { Socket.getaddrinfo(stalled, 80) },
        "Addrinfo.getaddrinfo" => -> { Addrinfo.getaddrinfo(stalled, 80) },
        "Addrinfo.tcp" => -> { Addrinfo.tcp(stalled, 80) },
        "Addrinfo.udp" => -> { Addrinfo.udp(stalled, 53) },
        "Addrinfo.ip" => -> { Addrinfo.ip(stalled) },
        "Socket.tcp" => -> { Socket.tcp(stalled, 80) }
      }
      reports = lookups.transform_values { |call| attempt { Timeout.timeout(0.3) { call.call } } }
      reports["resolv_timeout"] = attempt { Socket.tcp(stalled, 80, resolv_timeout: 0.3) }
      report(reports)
    RUBY
    result.each do |lookup, outcome|
      expected = lookup == "resolv_timeout" ? "Errno::ETIMEDOUT" : "Timeout::Error"
      assert_equal expected, outcome["error"], lookup
      assert_operator outcome["seconds"], :<, 1.0, lookup
    end
  end

  # Results and errors, for names and numeric hosts, are those of the original methods.
  def test_replaced_methods_behave_like_the_originals
    names = { name: Bed.answered_name, dual: Bed.answered_name(dual: true),
              missing: Bed.nxdomain_name, other: Bed.answered_name }
    result = child(<<~RUBY, **names)
      server = TCPServer.new("127.0.0.1", 0) # kept referenced: GC would close it
      port = server.addr[1]
      bound = UDPSocket.new.tap { |socket| socket.bind("127.0.0.1", 0) } # kept referenced too
      taken = bound.local_address.ip_port
      free_port = TCPServer.open("127.0.0.1", 0) { |probe| probe.addr[1] }
      one_at_a_time = Socket.respond_to?(:tcp_fast_fallback) ? { fast_fallback: false } : {}
      calls = {
        "getaddress" => -> { IPSocket.getaddress("localhost").then { |a| [a, a.encoding] } },
        "getaddress numeric" => -> { IPSocket.getaddress(1) },
        "getaddress missing" => -> { IPSocket.getaddress(missing) },
        "tcp refused" => -> { TCPSocket.new("localhost", 1) },
        "tcp refused numeric" => -> { TCPSocket.new("127.0.0.1", "1") },
        "tcp refused integer" => -> { TCPSocket.new(0x7f000001, 1) },
        "tcp refused nil" => -> { TCPSocket.new(nil, 1) },
        "tcp refused empty" => -> { TCPSocket.new("", 1) },
        "tcp refused ipv6" => -> { TCPSocket.new("::1", 1) },
        "tcp bad ipv6" => -> { TCPSocket.new("1:2:3", 1) },
        "tcp unbindable" => -> { TCPSocket.new("localhost", 1, "10.9.9.9", nil) },
        "tcp local family" => -> { TCPSocket.new("127.0.0.1", 1, "::1", 0) },
        "tcp local port" => -> { TCPSocket.new("localhost", 1, nil, free_port) },
        "tcp local in use" => -> { TCPSocket.new(name, port, other, port) },
        "tcp connected" => -> { TCPSocket.new(name, port).remote_address.inspect_sockaddr },
        "tcp connect_timeout" => lambda do
          TCPSocket.new(name, port, connect_timeout: 5).remote_address.inspect_sockaddr
        end,
        "tcp connect_timeout refused" => -> { TCPSocket.new("localhost", 1, connect_timeout: 5) },
        "tcp open" => -> { TCPSocket.open("localhost", port) { |socket| socket.class } },
        "tcp arity" => -> { TCPSocket.new("localhost") },
        "tcp keyword" => -> { TCPSocket.new("127.0.0.1", 1, bogus: 1) },
        "tcp missing" => -> { TCPSocket.new(missing, 1) },
        "tcp subclass" => -> { Class.new(TCPSocket).new("localhost", port).class.superclass },
        # MRI 3.4's Happy Eyeballs TCPSocket.new: lookups, keywords, checks and messages.
        "tcp missing local" => -> { TCPSocket.new(missing, 1, "localhost", nil) },
        "tcp missing local v4" => -> { TCPSocket.new(missing, 1, "127.0.0.1", nil) },
        "tcp local missing" => -> { TCPSocket.new("localhost", 1, missing, nil) },
        "tcp dual refused" => -> { TCPSocket.new(dual, 1) },
        "tcp dual connected" => -> { TCPSocket.new(dual, port).remote_address.ip_address },
        "tcp service" => -> { TCPSocket.new("localhost", "igai-no-such-service") },
        "tcp keywords" => -> { TCPSocket.new(missing, 1, bogus: 1, other: 2) },
        "tcp fast_fallback off" => -> { TCPSocket.new(missing, 1, fast_fallback: false) },
        "tcp fast_fallback nil" => -> { TCPSocket.new(missing, 1, fast_fallback: nil) },
        "tcp resolv_timeout type" => -> { TCPSocket.new(missing, 1, resolv_timeout: "1") },
        "tcp resolv_timeout negative" => -> { TCPSocket.new("localhost", 1, resolv_timeout: -1) },
        "tcp resolv_timeout NaN" => -> { TCPSocket.new("localhost", 1, resolv_timeout: Float::NAN) },
        "tcp connect_timeout type" => -> { TCPSocket.new("localhost", 1, connect_timeout: "1") },
        "tcp connect_timeout missing" => -> { TCPSocket.new(missing, 1, connect_timeout: "1") },
        "Addrinfo.tcp" => -> { Addrinfo.tcp("localhost", 80) },
        "Addrinfo.udp" => -> { Addrinfo.udp(dual, 53) },
        "Addrinfo.udp service" => -> { Addrinfo.udp("localhost", "http") },
        "Addrinfo.ip" => -> { Addrinfo.ip(dual) },
        "Addrinfo.ip numeric" => -> { Addrinfo.ip("1.2.3") },
        "Addrinfo.ip arity" => -> { Addrinfo.ip },
        "Addrinfo.getaddrinfo" => lambda do
          Addrinfo.getaddrinfo("localhost", "http", nil, nil, nil, Socket::AI_CANONNAME)
        end,
        "Socket.tcp" => -> { Socket.tcp(name, port) { |socket| socket.remote_address.ip_port } },
        "Socket.tcp refused" => -> { Socket.tcp("localhost", 1) },
        "Socket.tcp connect_timeout" => lambda do
          Socket.tcp(name, port, connect_timeout: 5) { |socket| socket.remote_address.ip_port }
        end,
        "Socket.tcp connect_timeout refused" => -> { Socket.tcp("localhost", 1, connect_timeout: 5) },
        # (MRI 3.4's Happy Eyeballs reports this one of two ways, depending on timing.)
        "Socket.tcp connect_timeout text" => lambda do
          Socket.tcp("localhost", 1, connect_timeout: "1", **one_at_a_time)
        end,
        "Socket.tcp keyword" => -> { Socket.tcp("localhost", 1, connect_timeout: 1, bogus: 1) },
        "Socket.getaddrinfo" => -> { Socket.getaddrinfo("localhost", 80, nil, nil, 6, 0, true) },
        "Socket.getaddrinfo flag" => -> { Socket.getaddrinfo("localhost", 80, nil, nil, 0, 0, 1) },
        "Socket.getaddrinfo keyword" => -> { Socket.getaddrinfo("localhost", 80, timeout: 1) },
        "udp bind unbindable" => -> { UDPSocket.new.bind("10.9.9.9", 0) },
        "udp bind nil" => -> { UDPSocket.new.bind(nil, 0) },
        "udp bind in use" => -> { UDPSocket.new.bind(name, taken) },
        "udp connect missing" => -> { UDPSocket.new.connect(missing, 53) },
        "udp connect family" => -> { UDPSocket.new.connect("::1", 9) },
        "udp connect service" => -> { UDPSocket.new.connect("localhost", "domain") },
        "udp send" => -> { UDPSocket.new.send("x", 0, "localhost", 9) },
        "udp send inet6" => -> { UDPSocket.new(Socket::AF_INET6).send("x", 0, "localhost", 9) },
        "udp send broadcast" => -> { UDPSocket.new.send("x", 0, "<broadcast>", 9) },
        "udp send closed" => -> { UDPSocket.new.tap(&:close).send("x", 0, "localhost", 9) },
        "udp send message" => -> { UDPSocket.new.send(1, 0, "localhost", 9) },
        "udp send sockaddr" => -> { UDPSocket.new.send("x", 0, Socket.sockaddr_in(9, "::1")) },
        "udp send arity" => -> { UDPSocket.new.send("x", 0, "localhost", 9, 1) }
      }
      run = -> { calls.transform_values { |call| attempt(&call).except("seconds") } }
      original = run.call
      replace_socket_lookups
      report("original" => original, "replaced" => run.call)
    RUBY
    result["original"].each do |call, outcome|
      assert_equal outcome, result["replaced"][call], call
    end
  end

  # IGAI_TIMEOUT (Igai.replace!(timeout:)): every lookup routed by replace without a limit of
  # its own gives up after that long, with the error of a resolver that gave up (EAI_AGAIN).
  def test_process_wide_limit_ends_lookups_without_a_limit_with_the_resolver_timeout_error
    result = child(<<~RUBY, env: { "IGAI_TIMEOUT" => "0.3" }, stalled: Bed.stalled_name)
      replace_socket_lookups
      lookups = {
        "Socket.getaddrinfo" => -> { Socket.getaddrinfo(stalled, 80) },
        "Addrinfo.getaddrinfo" => -> { Addrinfo.getaddrinfo(stalled, 80) },
        "Addrinfo.tcp" => -> { Addrinfo.tcp(stalled, 80) },
        "Addrinfo.udp" => -> { Addrinfo.udp(stalled, 53) },
        "Addrinfo.ip" => -> { Addrinfo.ip(stalled) },
        "IPSocket.getaddress" => -> { IPSocket.getaddress(stalled) },
        "TCPSocket.new" => -> { TCPSocket.new(stalled, 80) },
        "UDPSocket#send" => -> { UDPSocket.new.send("x", 0, stalled, 9) },
        "Socket.tcp" => -> { Socket.tcp(stalled, 80) },
        "Socket.tcp longer connect_timeout" => -> { Socket.tcp(stalled, 80, connect_timeout: 5) }
      }
      reports = lookups.transform_values do |call|
        error = nil
        outcome = attempt { call.call rescue (error = $!; raise) }
        code = error.error_code if error.respond_to?(:error_code)
        outcome.merge("cause" => error&.cause.inspect, "right code" => [nil, Socket::EAI_AGAIN].include?(code))
      end
      report("limit" => Igai::SocketPatches.timeout, "lookups" => reports)
    RUBY
    assert_equal 0.3, result["limit"]
    result["lookups"].each do |lookup, outcome|
      expected = RESOLVER_GAVE_UP
      cause = "nil"
      if Socket.respond_to?(:tcp_fast_fallback)
        # MRI 3.4's Happy Eyeballs: TCPSocket.new says "getaddrinfo(3)" when both families
        # fail; Socket.tcp raises again the error its lookup thread raised, as the cause.
        if lookup == "TCPSocket.new"
          expected = expected.merge("message" => expected["message"].sub("getaddrinfo:", "getaddrinfo(3):"))
        end
        cause = "#<#{expected['error']}: #{expected['message']}>" if lookup.start_with?("Socket.tcp")
      end
      assert_equal expected, outcome.slice("error", "message"), lookup
      assert_equal [cause, true], outcome.values_at("cause", "right code"), lookup
      assert_operator outcome["seconds"], :>=, 0.25, lookup
      assert_operator outcome["seconds"], :<, 1.0, lookup
    end
  end

  # A limit of the lookup's own, shorter or longer, wins over the process-wide one; a
  # Timeout around it (which replace cannot see) ends it when it is the shorter.
  def test_own_limits_win_over_the_process_wide_limit
    names = { stalled: Bed.stalled_name, delayed: Bed.delayed_name(100) }
    result = child(<<~RUBY, env: { "IGAI_TIMEOUT" => "0.3" }, **names)
      replace_socket_lookups
      report(
        "timeout:" => attempt { Addrinfo.getaddrinfo(stalled, 80, timeout: 0.6) },
        "resolv_timeout" => attempt { Socket.tcp(stalled, 80, resolv_timeout: 0.6) },
        "connect_timeout" => attempt { Socket.tcp(stalled, 80, connect_timeout: 0.1) },
        "Timeout" => attempt { Timeout.timeout(0.1) { Socket.getaddrinfo(stalled, 80) } },
        "delayed" => attempt { Socket.getaddrinfo(delayed, 80, :INET)[0][3] }
      )
    RUBY
    assert_equal "Errno::ETIMEDOUT", result["timeout:"]["error"]
    assert_operator result["timeout:"]["seconds"], :>=, 0.55
    assert_equal "Errno::ETIMEDOUT", result["resolv_timeout"]["error"]
    assert_operator result["resolv_timeout"]["seconds"], :>=, 0.55
    assert_equal "Errno::ETIMEDOUT", result["connect_timeout"]["error"]
    assert_operator result["connect_timeout"]["seconds"], :<, 0.25
    assert_equal "Timeout::Error", result["Timeout"]["error"]
    assert_equal "127.0.0.1".inspect, result["delayed"]["value"]
  end

  # Resolv (excon's resolver) retries a stalled query for up to 75 s per record type; under
  # the limit a Resolv::DNS without timeouts of its own gives up as it gives up on its own.
  def test_process_wide_limit_bounds_resolv_dns_without_timeouts_of_its_own
    names = { stalled: Bed.stalled_name, answered: Bed.answered_name, own: Bed.stalled_name,
              partial: Bed.first_only_name }
    result = child(<<~RUBY, env: { "IGAI_TIMEOUT" => "0.3" }, **names)
      replace_socket_lookups
      dns = Resolv::DNS.new
      dns.timeouts = 0.6
      report(
        "getaddress" => attempt { Resolv.getaddress(stalled) },
        "answered" => attempt { Resolv.getaddresses(answered) },
        "partial" => attempt { Resolv.getaddresses(partial) },
        "own timeouts" => attempt { dns.getaddresses(own) }
      )
    RUBY
    assert_equal ["Resolv::ResolvError", "no address for #{names[:stalled]}"],
                 result["getaddress"].values_at("error", "message")
    assert_operator result["getaddress"]["seconds"], :<, 1.0
    assert_equal ["127.0.0.1"].inspect, result["answered"]["value"]
    # The first record type Resolv asks for is answered (A before Ruby 3.4, AAAA from 3.4), the
    # other never: the address found before the limit ran out.
    assert_includes [["127.0.0.1"].inspect, ["::1"].inspect], result["partial"]["value"], result.inspect
    assert_operator result["partial"]["seconds"], :<, 1.0
    assert_equal "[]", result["own timeouts"]["value"]
    assert_operator result["own timeouts"]["seconds"], :>=, 0.55
  end

  def test_process_wide_limit_is_validated_set_and_cleared
    result = child(<<~RUBY)
      require "igai"
      limits = [-1, 0, Float::NAN, Float::INFINITY, "0.3", :soon, 1i]
      report(
        "default" => Igai::SocketPatches.timeout,
        "rejected" => limits.map { |limit| attempt { Igai.replace!(timeout: limit) } },
        "set" => Igai.replace!(timeout: Rational(1, 2)).then { Igai::SocketPatches.timeout },
        "kept" => Igai.replace!.then { Igai::SocketPatches.timeout },
        "cleared" => Igai.replace!(timeout: nil).then { Igai::SocketPatches.timeout }
      )
    RUBY
    assert_nil result["default"]
    shown = ["-1", "0", "NaN", "Infinity", '"0.3"', ":soon", "(0+1i)"]
    assert_equal shown.map { |value| ["ArgumentError", "timeout must be a positive number of seconds, not #{value}"] },
                 result["rejected"].map { |outcome| outcome.values_at("error", "message") }
    assert_equal [0.5, 0.5, nil], result.values_at("set", "kept", "cleared")
  end

  def test_igai_timeout_is_read_when_igai_replace_is_required
    code = <<~RUBY
      require "igai/replace"
      puts Igai::SocketPatches.timeout.inspect
    RUBY
    { "0.25" => "0.25", " 2 " => "2.0", "" => "nil", "  " => "nil" }.each do |value, expected|
      output, status = run_ruby(code, env: { "IGAI_TIMEOUT" => value })
      assert status.success?, output
      assert_equal expected, output.chomp, value.inspect
    end
    %w[-1 0 abc 1s nan].each do |value|
      output, status = run_ruby(code, env: { "IGAI_TIMEOUT" => value })
      refute status.success?, value
      assert_includes output, "IGAI_TIMEOUT must be a positive number of seconds, not " \
                              "#{value.inspect} (ArgumentError)"
    end
  end

  def test_replace_patches_once_and_reports_it
    result = child(<<~RUBY)
      require "igai"
      first = Igai.replace!
      again = Igai.replace!
      forced_again = Igai.replace!(force: true)
      require "igai/replace"
      owners = [Socket.method(:getaddrinfo), Addrinfo.method(:tcp), IPSocket.method(:getaddress),
                TCPSocket.instance_method(:initialize), UDPSocket.instance_method(:send),
                Socket.method(:tcp), Resolv::DNS.instance_method(:each_address)]
      counts = Igai::SocketPatches.targets.map { |target, methods| target.ancestors.count(methods) }
      report("results" => [first, again, forced_again], "owners" => owners.map { |m| m.owner.name },
             "counts" => counts)
    RUBY
    expected_first = !Igai::SocketPatches.interruptible_already?
    assert_equal [expected_first, false, !expected_first], result["results"]
    assert_equal %w[SocketClassMethods AddrinfoClassMethods IPSocketClassMethods TCPSocketMethods
                    UDPSocketMethods SocketClassMethods ResolvDNSMethods]
      .map { |name| "Igai::SocketPatches::#{name}" }, result["owners"]
    assert_equal [1] * 6, result["counts"]
  end

  # On a Ruby whose own getaddrinfo is interruptible, only force: true patches.
  def test_replace_changes_nothing_where_getaddrinfo_is_interruptible_unless_forced
    result = child(<<~RUBY)
      require "igai"
      # Stands in for MRI 3.3 or later.
      Igai::SocketPatches.define_singleton_method(:interruptible_already?) { true }
      unforced = Igai.replace!
      untouched = Socket.method(:getaddrinfo).owner == Socket.singleton_class
      forced = Igai.replace!(force: true)
      report([unforced, untouched, forced, Socket.method(:getaddrinfo).owner.name])
    RUBY
    assert_equal [false, true, true, "Igai::SocketPatches::SocketClassMethods"], result
  end

  def test_getaddrinfo_counts_as_interruptible_from_mri_3_3
    expected = Gem::Version.new(RUBY_VERSION) >= Gem::Version.new("3.3")
    assert_equal expected, Igai::SocketPatches.interruptible_already?
  end
end
