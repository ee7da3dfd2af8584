# frozen_string_literal: true

require "json"
require "optparse"
require "rbconfig"
require "socket"
require "timeout"
require "igai"
require_relative "sandbox"

module Igai
  # The igai command (exe/igai):
  #
  #   igai resolve HOST [SERVICE] [--timeout S] [--family inet|inet6] [--json]
  #   igai demo
  #
  # CLI.new.run(argv) returns the exit status: 0 on success, 1 when a lookup fails or times
  # out, 2 for usage errors, 130 after Ctrl-C.
  class CLI
    USAGE = <<~TEXT
      Usage: igai resolve HOST [SERVICE] [--timeout S] [--family inet|inet6] [--json]
             igai demo
             igai COMMAND --help

      Commands:
        resolve   look HOST up with Socket.interruptible_getaddrinfo and print its
                  addresses like `getent ahosts` (or as JSON)
        demo      show, against a name server that never answers, how long
                  Timeout.timeout(0.2) takes to end Socket.getaddrinfo and
                  Socket.interruptible_getaddrinfo
    TEXT

    # Raised for a command line that cannot be run; exit status 2.
    class UsageError < StandardError; end

    # Names of the socket types, as getent prints them.
    SOCKET_TYPES = {
      Socket::SOCK_STREAM => "STREAM", Socket::SOCK_DGRAM => "DGRAM", Socket::SOCK_RAW => "RAW"
    }.freeze

    FAMILIES = { "inet" => Socket::AF_INET, "inet6" => Socket::AF_INET6 }.freeze

    def initialize(out: $stdout, err: $stderr)
      @out = out
      @err = err
    end

    # Runs the command line argv; returns the exit status.
    def run(argv)
      command, *arguments = argv
      case command
      when "resolve" then resolve(arguments)
      when "demo" then demo(arguments)
      when "-h", "--help", "help" then help(USAGE)
      when nil then raise UsageError, "no command given"
      else raise UsageError, "unknown command #{command.inspect}"
      end
    rescue UsageError, OptionParser::ParseError => e
      @err.puts "igai: #{e.message} (see igai --help)"
      2
    rescue Interrupt
      130
    end

    private

    def help(text)
      @out.puts text
      0
    end

    # igai resolve: prints HOST's addresses, or a one-line error (exit status 1).
    def resolve(arguments)
      options = { timeout: nil, family: nil, json: false }
      parser = resolve_parser(options)
      host, service, *extra = parser.parse(arguments)
      return help(parser.help) if options[:help]
      raise UsageError, "resolve: HOST missing" unless host
      raise UsageError, "resolve: unexpected argument #{extra.first.inspect}" if extra.any?

      addresses = Addrinfo.interruptible_getaddrinfo(host, service, options[:family], nil, nil,
                                                     Socket::AI_CANONNAME,
                                                     timeout: options[:timeout])
      if options[:json]
        @out.puts JSON.pretty_generate(addresses.map { |ai| fields(ai) })
      else
        @out.puts lines(addresses)
      end
      0
    rescue Errno::ETIMEDOUT
      @err.puts "igai: #{host}: timed out after #{format('%g', options[:timeout])} s"
      1
    rescue SocketError, SystemCallError, ArgumentError => e
      @err.puts "igai: #{host}: #{e.message}"
      1
    end

    def resolve_parser(options)
      OptionParser.new do |parser|
        parser.banner = "Usage: igai resolve HOST [SERVICE] [options]\n\n" \
                        "Looks HOST (and SERVICE) up with Socket.interruptible_getaddrinfo and " \
                        "prints one line\nper address: ADDRESS, socket type, and the canonical " \
                        "name on the first line.\n\n"
        parser.on("--timeout S", Float, "give up after S seconds (exit status 1)") do |seconds|
          raise OptionParser::InvalidArgument, "#{seconds} (not positive)" unless seconds.positive?

          options[:timeout] = seconds
        end
        parser.on("--family FAMILY", FAMILIES.keys, "inet or inet6 addresses only") do |family|
          options[:family] = FAMILIES.fetch(family)
        end
        parser.on("--json", "print a JSON array of objects") { options[:json] = true }
        parser.on("-h", "--help", "show this help") { options[:help] = true }
      end
    end

    # Lines like `getent ahosts`: address, socket type, canonical name (first line only).
    def lines(addresses)
      addresses.map do |ai|
        format("%-15s %-6s %s", ai.ip_address, socket_type(ai), ai.canonname).rstrip
      end
    end

    # What --json shows of an address.
    def fields(addrinfo)
      {
        address: addrinfo.ip_address, family: addrinfo.ipv6? ? "inet6" : "inet",
        port: addrinfo.ip_port, socktype: socket_type(addrinfo), protocol: addrinfo.protocol,
        canonname: addrinfo.canonname
      }
    end

    def socket_type(addrinfo)
      SOCKET_TYPES.fetch(addrinfo.socktype) { addrinfo.socktype.to_s }
    end

    # igai demo: see Demo.
    def demo(arguments)
      wants_help = false
      parser = OptionParser.new do |opts|
        opts.banner = "Usage: igai demo\n\n#{Demo::DESCRIPTION}\n"
        opts.on("-h", "--help", "show this help") { wants_help = true }
      end
      extra = parser.parse(arguments)
      return help(parser.help) if wants_help
      raise UsageError, "demo: unexpected argument #{extra.first.inspect}" if extra.any?

      Demo.new(out: @out, err: @err).run
    end

    # igai demo. In an Igai::Sandbox (re-executing itself under unshare(1)), a UDP socket on
    # 127.0.0.1:53 that never answers is the only name server; there Timeout.timeout(LIMIT)
    # runs against Socket.getaddrinfo and Socket.interruptible_getaddrinfo, and the times are
    # shown.
    class Demo
      DESCRIPTION = <<~TEXT
        Starts a name server that never answers, on 127.0.0.1:53 in a private network
        and mount namespace with its own resolv.conf, and shows how long
        Timeout.timeout(0.2) takes to end Socket.getaddrinfo and
        Socket.interruptible_getaddrinfo there. Needs root or unprivileged user namespaces.
      TEXT

      NAME = "stalled.example"
      # The Socket methods compared.
      LOOKUPS = %i[getaddrinfo interruptible_getaddrinfo].freeze
      LIMIT = 0.2
      RESOLVER_TIMEOUT = 2
      LIB = File.expand_path("..", __dir__)

      def initialize(out:, err:)
        @out = out
        @err = err
      end

      # Runs the demo in a new sandbox; returns the exit status.
      def run
        problem = Sandbox.unavailable
        return failed!("#{problem}.\n#{Sandbox::ADVICE}") if problem

        inside = 'require "igai/cli"; exit Igai::CLI::Demo.new(out: $stdout, err: $stderr).inside'
        pid = Process.spawn(*Sandbox.command(RbConfig.ruby, "-I", LIB, "-e", inside))
        Process.wait2(pid).last.exitstatus || 1
      end

      # The demo proper, in the namespaces made by #run; returns the exit status.
      def inside
        interrupted = false
        sandbox = Sandbox.new(resolver_timeout: RESOLVER_TIMEOUT,
                              comment: "igai demo: a name server that never answers")
        sandbox.inside do
          server = silent_name_server
          show
        rescue Interrupt
          interrupted = true
          raise
        ensure
          server&.close
        end
        0
      rescue Sandbox::SetupError, SystemCallError => e
        failed!(e.message)
      rescue Interrupt
        130
      rescue ::Timeout::Error
        # Ctrl-C while plain Socket.getaddrinfo blocks (before MRI 3.3 nothing interrupts it):
        # once it returns, the standard library's Timeout (0.2, Ruby 3.1) can still raise its
        # own error, in place of the Interrupt on its way out.
        raise unless interrupted

        130
      end

      private

      def failed!(message)
        @err.puts "igai demo: #{message}"
        1
      end

      # A UDP socket on 127.0.0.1:53 that nobody reads: queries are received and never
      # answered.
      def silent_name_server
        UDPSocket.new.tap { |socket| socket.bind(Sandbox::NAMESERVER, 53) }
      end

      def show
        @out.puts "A name server that never answers is the only one in resolv.conf " \
                  "(options timeout:#{RESOLVER_TIMEOUT} attempts:1).", ""
        labels = LOOKUPS.map do |lookup|
          "Timeout.timeout(#{LIMIT}) { Socket.#{lookup}(#{NAME.inspect}, 80) }"
        end
        width = labels.map(&:length).max + 2
        LOOKUPS.zip(labels) do |lookup, label|
          @out.print label.ljust(width)
          @out.flush
          @out.puts measure { Socket.public_send(lookup, NAME, 80) }
        end
        @out.puts "", note
      end

      # How Timeout.timeout(LIMIT) around the block ended, and when.
      def measure(&lookup)
        start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        outcome = begin
          ::Timeout.timeout(LIMIT, &lookup) # the standard library's, as users know it
          "answered"
        rescue ::Timeout::Error, SocketError, SystemCallError => e
          e.class.name
        end
        format("ended after %.3f s (%s)", Process.clock_gettime(Process::CLOCK_MONOTONIC) - start,
               outcome)
      end

      def note
        if SocketPatches.interruptible_already?
          "On Ruby #{RUBY_VERSION} Socket.getaddrinfo is already interruptible (MRI 3.3 and " \
            "later);\nigai brings that to older Rubies."
        else
          "On Ruby #{RUBY_VERSION} Timeout cannot interrupt Socket.getaddrinfo: it waits for " \
            "the resolver to give up.\n`require \"igai/replace\"` routes it through igai."
        end
      end
    end
  end
end
