# frozen_string_literal: true

# Scripted DNS server for the igai stalled-DNS test bed.
#
# It is started by test/bed/run inside a private network namespace, where it
# is the only name server listed in the bind-mounted /etc/resolv.conf, so the
# real glibc getaddrinfo talks to it. The queried name chooses the behaviour
# (see Behaviour below), which lets tests ask for "a name that never
# resolves", "a name that resolves after 300 ms" and so on, without any
# external network.
#
# Usage: ruby test/bed/dns_server.rb [--host ADDR] [--port N] [--no-ipv6]
#                                    [--ready-file PATH]
#
# Once all sockets are listening it prints "ready" on stdout (and creates the
# --ready-file, if given). Every received query is appended as a line
# "<qname-lowercase> <qtype>" to the file named by $IGAI_DNS_LOG, if set.
# SIGTERM or SIGINT stop it cleanly (exit status 0).
#
# Only the Ruby standard library is used.

require "optparse"
require "resolv"
require "socket"

module IgaiBed
  # Decides how a query is answered. Pure logic, no I/O: given the question
  # name it returns what the server should do.
  module Behaviour
    ZONE = "igai.test"
    ANSWER_V4 = "127.0.0.1"
    ANSWER_V6 = "::1"
    # The second address of each family of pair-* names (both on the bed's loopback).
    SECOND_V4 = "127.0.0.2"
    SECOND_V6 = "fd00:16a1::1"
    TTL = 60

    # A decision: action is :drop (never answer), :drop_first (ignore the first query of
    # each type for the name, answer later ones), :answer_once (answer the first query of
    # each type for the name, drop later ones), :answer_first (answer the name's first query,
    # whatever its type, and drop every later one) or :answer; rcode is a
    # Resolv::DNS::RCode value; delay is in seconds; dual says whether AAAA
    # queries get an answer; pair gives two records of each family (adding SECOND_V4 and
    # SECOND_V6).
    Decision = Struct.new(:action, :rcode, :delay, :dual, :in_zone, :pair, keyword_init: true)

    module_function

    # qname is the question name without trailing dot, in any case.
    # Further zones the server answers for, one per test that needs several zones (a dead
    # zone beside a healthy one): "igai-<anything>.test", e.g. "igai-dead3.test".
    EXTRA_ZONE = /(?:\A|\.)igai-[a-z0-9-]+\.test\z/

    def decide(qname)
      name = qname.downcase.chomp(".")
      unless name == ZONE || name.end_with?(".#{ZONE}") || name.match?(EXTRA_ZONE)
        # Outside our zone: authoritative-looking "no such name".
        return Decision.new(action: :answer, rcode: Resolv::DNS::RCode::NXDomain,
                            delay: 0, dual: false, in_zone: false)
      end

      label = name.split(".").first
      case label
      when /\Astall-/
        Decision.new(action: :drop, in_zone: true)
      when /\Alose1-/
        # The first query of each type is lost; later ones (a retry) are answered.
        Decision.new(action: :drop_first, rcode: Resolv::DNS::RCode::NoError,
                     delay: 0, dual: false, in_zone: true)
      when /\Adelay(\d+)-/
        Decision.new(action: :answer, rcode: Resolv::DNS::RCode::NoError,
                     delay: Regexp.last_match(1).to_i / 1000.0,
                     dual: false, in_zone: true)
      when /\Aonce(\d+)-/
        Decision.new(action: :answer_once, rcode: Resolv::DNS::RCode::NoError,
                     delay: Regexp.last_match(1).to_i / 1000.0,
                     dual: false, in_zone: true)
      when /\Apair-/
        # Two records of each family: ANSWER_V4, SECOND_V4; ANSWER_V6, SECOND_V6.
        Decision.new(action: :answer, rcode: Resolv::DNS::RCode::NoError, delay: 0, dual: true,
                     in_zone: true, pair: true)
      when /\Afirst-/
        # Only the first query is answered (A or AAAA, whichever comes first): a name
        # answered in part, whichever record type a resolver asks for first.
        Decision.new(action: :answer_first, rcode: Resolv::DNS::RCode::NoError, delay: 0, dual: true,
                     in_zone: true)
      when /\Anx-/
        rcode_decision(Resolv::DNS::RCode::NXDomain)
      when /\Arefused-/
        rcode_decision(Resolv::DNS::RCode::Refused)
      when /\Aservfail-/
        rcode_decision(Resolv::DNS::RCode::ServFail)
      else
        Decision.new(action: :answer, rcode: Resolv::DNS::RCode::NoError,
                     delay: 0, dual: label.start_with?("dual"), in_zone: true)
      end
    end

    def rcode_decision(rcode)
      Decision.new(action: :answer, rcode: rcode, delay: 0, dual: false, in_zone: true)
    end
  end

  # The server proper: UDP and TCP listeners, one thread per query.
  class DNSServer
    # Names for the query types we log; others are logged as TYPE<n>.
    TYPE_NAMES = {
      1 => "A", 2 => "NS", 5 => "CNAME", 6 => "SOA", 12 => "PTR", 15 => "MX",
      16 => "TXT", 28 => "AAAA", 33 => "SRV", 41 => "OPT", 64 => "SVCB",
      65 => "HTTPS", 255 => "ANY"
    }.freeze

    IN = Resolv::DNS::Resource::IN
    MAX_UDP = 65_535

    def initialize(hosts:, port:, log_path:, ready_file: nil, out: $stdout, err: $stderr)
      @hosts = hosts
      @port = port
      @ready_file = ready_file
      @out = out
      @err = err
      @log = log_path && File.open(log_path, "a")
      @log&.sync = true
      @log_lock = Mutex.new
      @sockets = []
      @seen = {}
      @seen_lock = Mutex.new
    end

    # Binds all listeners, reports readiness and serves until the process is
    # told to stop (the signal handlers raise SystemExit in the main thread).
    def run
      bind_all
      threads = @sockets.map do |sock, proto|
        Thread.new { proto == :udp ? serve_udp(sock) : serve_tcp(sock) }
      end
      File.write(@ready_file, "ready\n") if @ready_file
      @out.puts "ready"
      @out.flush
      threads.each(&:join)
    ensure
      @sockets.each { |sock, _| sock.close unless sock.closed? }
      @log&.close
    end

    private

    # The first host (127.0.0.1) must bind; further ones (::1) are optional,
    # because IPv6 may be disabled in the namespace.
    def bind_all
      @hosts.each_with_index do |host, i|
        udp = Addrinfo.udp(host, @port).bind
        @sockets << [udp, :udp]
        tcp = Addrinfo.tcp(host, @port).listen(64)
        @sockets << [tcp, :tcp]
      rescue SystemCallError, SocketError => e
        raise if i.zero?

        @err.puts "igai dns_server: not listening on #{host}: #{e.message}"
      end
    end

    # UDP: receive in a loop; each query is handled in its own thread so that
    # a delayed answer never holds up the others.
    def serve_udp(sock)
      loop do
        data, addr = sock.recvfrom(MAX_UDP)
        Thread.new do
          reply = handle(data, tcp: false)
          sock.send(reply, 0, addr) if reply
        rescue IOError, SystemCallError
          nil # socket closed at shutdown, or client gone
        end
      end
    rescue IOError, SystemCallError
      nil # socket closed at shutdown
    end

    # TCP: one thread per connection, one thread per query on it (RFC 7766
    # allows out-of-order replies; glibc sends one query at a time anyway).
    def serve_tcp(server)
      loop do
        conn, = server.accept
        Thread.new { serve_tcp_connection(conn) }
      end
    rescue IOError, SystemCallError
      nil
    end

    def serve_tcp_connection(conn)
      write_lock = Mutex.new
      loop do
        header = conn.read(2)
        break if header.nil? || header.bytesize < 2

        data = conn.read(header.unpack1("n"))
        break if data.nil?

        Thread.new do
          reply = handle(data, tcp: true)
          write_lock.synchronize { conn.write([reply.bytesize].pack("n"), reply) } if reply
        rescue IOError, SystemCallError
          nil
        end
      end
    rescue IOError, SystemCallError
      nil
    ensure
      # Client closed its side (or went away): pending replies are dropped.
      conn.close unless conn.closed?
    end

    # Decodes one query and returns the encoded reply, or nil to stay silent.
    # Sleeps here for delayed names (we are in a per-query thread).
    def handle(data, tcp:)
      query = decode(data)
      return nil unless query

      return nil if query.qr != 0 # never answer answers

      question = query.question.first
      return encode_reply(query, Resolv::DNS::RCode::FormErr, tcp: tcp) unless question

      qname, qclass = question
      qtype = qclass::TypeValue
      log_query(qname.to_s, qtype)

      decision = Behaviour.decide(qname.to_s)
      return nil if decision.action == :drop
      return nil if decision.action == :answer_first && !first_time?(qname.to_s, :any)
      return nil if decision.action == :drop_first && first_time?(qname.to_s, qtype)
      return nil if decision.action == :answer_once && !first_time?(qname.to_s, qtype)

      sleep decision.delay if decision.delay.positive?
      encode_reply(query, decision.rcode, tcp: tcp) do |reply|
        add_records(reply, qname, qtype, decision) if decision.rcode == Resolv::DNS::RCode::NoError
        add_soa(reply) if decision.in_zone && reply.answer.empty? &&
                          [Resolv::DNS::RCode::NoError, Resolv::DNS::RCode::NXDomain].include?(decision.rcode)
      end
    end

    # True the first time a name is asked for with this query type (:any: with any type;
    # names are case-insensitive).
    def first_time?(qname, qtype)
      key = [qname.downcase.chomp("."), qtype]
      @seen_lock.synchronize { @seen[key] ? false : (@seen[key] = true) }
    end

    def decode(data)
      Resolv::DNS::Message.decode(data)
    rescue StandardError => e
      @err.puts "igai dns_server: undecodable packet (#{e.class}: #{e.message})"
      nil
    end

    # Builds a reply echoing the id, flags and question of the query.
    def encode_reply(query, rcode, tcp:)
      reply = Resolv::DNS::Message.new(query.id)
      reply.qr = 1
      reply.opcode = query.opcode
      reply.aa = 1
      reply.rd = query.rd
      reply.ra = 1
      reply.rcode = rcode
      query.question.each { |name, klass| reply.add_question(name, klass) }
      yield reply if block_given?
      encoded = reply.encode
      # Our replies are tiny; this only guards against misuse over UDP.
      if !tcp && encoded.bytesize > 512
        reply.tc = 1
        encoded = reply.encode
      end
      encoded
    end

    def add_records(reply, qname, qtype, decision)
      case qtype
      when IN::A::TypeValue
        reply.add_answer(qname, Behaviour::TTL, IN::A.new(Behaviour::ANSWER_V4))
        reply.add_answer(qname, Behaviour::TTL, IN::A.new(Behaviour::SECOND_V4)) if decision.pair
      when IN::AAAA::TypeValue
        reply.add_answer(qname, Behaviour::TTL, IN::AAAA.new(Behaviour::ANSWER_V6)) if decision.dual
        reply.add_answer(qname, Behaviour::TTL, IN::AAAA.new(Behaviour::SECOND_V6)) if decision.pair
      end
      # Any other type: NOERROR with no answer (NODATA).
    end

    # Negative answers carry the zone SOA, like a real authoritative server.
    def add_soa(reply)
      zone = Resolv::DNS::Name.create("#{Behaviour::ZONE}.")
      soa = Resolv::DNS::Resource::IN::SOA.new(
        Resolv::DNS::Name.create("ns.#{Behaviour::ZONE}."),
        Resolv::DNS::Name.create("hostmaster.#{Behaviour::ZONE}."),
        1, 3600, 600, 86_400, Behaviour::TTL
      )
      reply.add_authority(zone, Behaviour::TTL, soa)
    end

    def log_query(qname, qtype)
      return unless @log

      line = "#{qname.downcase.chomp('.')} #{TYPE_NAMES.fetch(qtype, "TYPE#{qtype}")}\n"
      @log_lock.synchronize { @log.write(line) }
    end
  end
end

if $PROGRAM_NAME == __FILE__
  options = { hosts: ["127.0.0.1", "::1"], port: 53, ready_file: nil }
  OptionParser.new do |opts|
    opts.banner = "Usage: #{$PROGRAM_NAME} [options]"
    opts.on("--host ADDR", "listen only on ADDR (default 127.0.0.1 and ::1)") do |h|
      (options[:explicit_hosts] ||= []) << h
    end
    opts.on("--port N", Integer, "port (default 53)") { |p| options[:port] = p }
    opts.on("--no-ipv6", "do not try to listen on ::1") { options[:hosts] = ["127.0.0.1"] }
    opts.on("--ready-file PATH", "create PATH once listening") { |f| options[:ready_file] = f }
  end.parse!
  hosts = options[:explicit_hosts] || options[:hosts]

  # Stop cleanly: SystemExit unwinds the main thread, closing the sockets.
  %w[TERM INT].each { |sig| Signal.trap(sig) { exit 0 } }

  log_path = ENV["IGAI_DNS_LOG"]
  log_path = nil if log_path&.empty?
  IgaiBed::DNSServer.new(hosts: hosts, port: options[:port], log_path: log_path,
                         ready_file: options[:ready_file]).run
end
