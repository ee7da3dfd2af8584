# frozen_string_literal: true

require "ipaddr"
require "socket"

module Igai
  module SocketPatches
    # The lookups of TCPSocket.new as MRI 3.4 makes them when it connects the Happy Eyeballs
    # version 2 way (RFC 8305): by default (fast_fallback:, default Socket.tcp_fast_fallback)
    # whenever the host is a name rather than an address. Compared with the older way, MRI
    # then resolves a local host first; checks resolv_timeout: (a time interval) and honours
    # it, failing with Errno::ETIMEDOUT "user specified timeout"; asks for TCP addresses with
    # AI_ADDRCONFIG, of the local address's family only when there is one family; reports a
    # failed lookup of both families as "getaddrinfo(3): ..." (of one family: "getaddrinfo:
    # ..."); checks connect_timeout: before connecting; and tries IPv6 and IPv4 addresses in
    # turn, IPv6 first. The replacement does all of that through igai; it connects to one
    # address at a time (each with connect_timeout), where MRI starts the next attempt after
    # 250 ms without waiting for the previous one.
    module FastFallback
      # Whether this Ruby's TCPSocket.new connects the Happy Eyeballs way (MRI 3.4 on).
      AVAILABLE = Socket.respond_to?(:tcp_fast_fallback)

      # The keywords of this Ruby's TCPSocket.new.
      KEYWORDS = (%i[resolv_timeout connect_timeout] +
                  (AVAILABLE ? %i[fast_fallback test_mode_settings] : [])).freeze

      # IPv4 addresses as inet_pton(3) reads them: four decimal bytes, no leading zeros.
      BYTE = /(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)/
      IPV4 = /\A#{BYTE}(?:\.#{BYTE}){3}\z/

      @ready = nil
      @ready_lock = Mutex.new

      module_function

      # Whether TCPSocket.new(host, ..., **options) connects the Happy Eyeballs way here.
      def applies?(host, options)
        return false unless AVAILABLE

        enabled = options[:fast_fallback]
        enabled = Socket.tcp_fast_fallback if enabled.nil?
        enabled && !address?(host) ? true : false
      end

      # Whether MRI takes host as an address (no lookup to race): an Integer, "", "<any>",
      # "<broadcast>", or text inet_pton(3) reads as IPv4 or IPv6. A value that is not a
      # String counts as one too: the lookup then raises what MRI raises for it.
      def address?(host)
        return false if host.nil?
        return true unless host.is_a?(String)
        return true if host.empty? || host == "<any>" || host == "<broadcast>"
        return true if host.match?(IPV4)
        return false unless host.include?(":") && !host.match?(%r{[%/\[\]]})

        IPAddr.new(host).ipv6?
      rescue IPAddr::Error
        false
      end

      # [remote rows in the order to try them, local rows or nil], looked up as MRI 3.4 does.
      def lookups(remote_host, remote_port, local_host, local_port, options)
        locals = unless local_host.nil? && local_port.nil?
                   SocketPatches.lookup(local_host, local_port, nil, Socket::SOCK_STREAM)
                 end
        resolv_timeout = options[:resolv_timeout]
        time_interval!(resolv_timeout)
        families = locals ? [Socket::AF_INET6, Socket::AF_INET] & locals.map { |row| row[4] } : []
        remotes = if families.size == 1
                    remote_lookup(remote_host, remote_port, families.first, 0, resolv_timeout)
                  else
                    both_families(remote_host, remote_port, resolv_timeout)
                  end
        time_interval!(options[:connect_timeout])
        [alternate(remotes), locals]
      end

      # The TCP rows of host and port, of both families.
      def both_families(host, port, resolv_timeout)
        remote_lookup(host, port, nil, Socket::AI_ADDRCONFIG, resolv_timeout)
      rescue SocketError => e
        raise e.exception(e.message.sub(/\Agetaddrinfo: /, "getaddrinfo(3): ")), cause: nil
      end

      def remote_lookup(host, port, family, flags, resolv_timeout)
        protocol = flags.zero? ? nil : Socket::IPPROTO_TCP
        SocketPatches.limited(resolv_timeout) do |limit|
          Socket.interruptible_getaddrinfo(host, port, family, Socket::SOCK_STREAM, protocol, flags,
                                           false, timeout: limit)
        end
      end

      # rows reordered IPv6, IPv4, IPv6, ... (each family in the resolver's order).
      def alternate(rows)
        v6, v4 = rows.partition { |row| row[4] == Socket::AF_INET6 }
        v6.zip(v4).flatten(1).compact + v4.drop(v6.size)
      end

      # Raises what MRI raises for value as a time interval (TypeError, ArgumentError for a
      # negative one, RangeError), by letting IO.select read it: select checks its timeout
      # before anything else, and returns at once on an IO that is always readable.
      def time_interval!(value)
        IO.select([ready], nil, nil, value) unless value.nil?
      end

      # The read end of a pipe holding one byte that nobody reads.
      def ready
        @ready || @ready_lock.synchronize do
          @ready ||= IO.pipe.then do |reader, writer|
            writer.write("x")
            writer.close
            reader
          end
        end
      end
    end
  end
end
