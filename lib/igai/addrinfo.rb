# frozen_string_literal: true

require "socket"

module Igai
  # Turns the rows of Socket.interruptible_getaddrinfo into the Addrinfo objects that
  # Addrinfo.getaddrinfo would return for the same lookup: same socket address, families,
  # socket type and protocol, same canonical name, and the same "inspect name" (the
  # "(host:service)" that Addrinfo#inspect shows).
  #
  # Rows must come from a lookup made with reverse_lookup false, so that a row's host field
  # is the canonical name where getaddrinfo(3) reported one, and the numeric address otherwise.
  module AddrinfoBuilder
    # Where Addrinfo#marshal_dump keeps the canonical name.
    CANONNAME_FIELD = 5

    module_function

    # The Addrinfo objects for rows, found for nodename, service and flags (the arguments
    # given to the lookup).
    def build(rows, nodename, service, flags)
      inspectname = inspectname(nodename, service, rows.first)
      rows.each_with_index.map do |row, index|
        _family_name, _port, host, address = row
        # A host field that differs from the address can only be a canonical name.
        named = host != address || (index.zero? && named_after_itself?(nodename, service, flags))
        addrinfo(row, inspectname: inspectname, canonname: (host.freeze if named))
      end
    end

    # One Addrinfo for row. Addrinfo.new, given the numeric address in its Array form, builds
    # the socket address as getaddrinfo(3) does and takes the inspect name from the Array's
    # host field. getaddrinfo(3) declines a few of the combinations it returned itself (a raw
    # socket with a scoped IPv6 address, where a port is given): that Addrinfo is built from
    # the socket address alone, without an inspect name.
    def addrinfo(row, inspectname:, canonname: nil, socktype: row[5], protocol: row[6])
      family_name, port, _host, address, pfamily = row
      addrinfo = begin
        Addrinfo.new([family_name, port, inspectname, address], pfamily, socktype, protocol)
      rescue SocketError
        Addrinfo.new(Socket.sockaddr_in(port, address), pfamily, socktype, protocol)
      end
      canonname ? with_canonname(addrinfo, canonname) : addrinfo
    end

    # addrinfo with canonname. Nothing but Addrinfo#marshal_load can set a canonical name, so
    # the Addrinfo is rebuilt from its own marshal_dump with the name filled in. Ruby cannot
    # marshal an Addrinfo whose protocol it has no name for (such as SCTP on Rubies without
    # Socket::IPPROTO_SCTP), nor load one that the Array form declines (see #addrinfo): those
    # are returned as they are, without their canonical name.
    def with_canonname(addrinfo, canonname)
      fields = addrinfo.marshal_dump
      fields[CANONNAME_FIELD] = canonname
      Addrinfo.allocate.tap { |named| named.marshal_load(fields) }
    rescue SocketError
      addrinfo
    end

    # The inspect name Addrinfo.getaddrinfo gives every result: the host and ":service" as
    # the caller wrote them (only a String host, and only a String or Integer service), each
    # left out when the first result's numeric address or port says the same; "" counts.
    # Frozen, or nil when nothing is left.
    def inspectname(nodename, service, first_row)
      _family_name, port, _host, address = first_row
      host = case nodename
             when String then nodename unless nodename == address
             end
      service_text = case service
                     when String then service unless service == port.to_s
                     when Integer then integer_service_text(service, port)
                     end
      return host&.dup&.freeze unless service_text

      (host&.dup || String.new).concat(":", service_text).freeze
    end

    # An Integer service as the inspect name shows it: nil for the port found, or for 0. Like
    # Addrinfo.getaddrinfo, raises Ruby's RangeError for one beyond a C int (getaddrinfo(3)
    # itself takes any number); Socket::Option.int makes that very check.
    def integer_service_text(service, port)
      Socket::Option.int(Socket::AF_INET, Socket::SOL_SOCKET, Socket::SO_DEBUG, service)
      service.to_s unless service == port || service.zero?
    end

    # Whether a first result whose host field is its numeric address has that as canonical
    # name: when AI_CANONNAME asks for one, getaddrinfo(3) names a numeric host after itself,
    # but Ruby answers a plain numeric host with a numeric (or no) service on its own, without
    # any canonical name.
    def named_after_itself?(nodename, service, flags)
      return false if flags.nil? || flags.to_int.nobits?(Socket::AI_CANONNAME)

      !(answered_by_ruby?(nodename) && numeric_service?(service))
    end

    # Whether Ruby may answer for nodename itself: it is an IPv4 address as an Integer or as
    # one of Ruby's names for one, or written with hexadecimal digits, dots and colons only
    # (an IPv6 address with a "%scope" goes to getaddrinfo(3)).
    def answered_by_ruby?(nodename)
      case nodename
      when Integer, "<any>", "<broadcast>" then true
      else nodename.to_str.match?(/\A[\h.:]*\z/)
      end
    end

    # Whether Ruby reads service as a port number by itself: none, or a whole number below
    # 65536 written with decimal digits only.
    def numeric_service?(service)
      case service
      when nil then true
      when Integer then service.between?(0, 65_535)
      else
        text = service.to_str
        text.match?(/\A\d*\z/) && text.to_i <= 65_535
      end
    end
  end
end

class Addrinfo
  class << self
    # Resolves like Addrinfo.getaddrinfo, with the same arguments, results and errors, but
    # can be interrupted (Timeout.timeout, Thread#raise, Thread#kill, Ctrl-C) while it waits,
    # and gives up with Errno::ETIMEDOUT after +timeout+ seconds when given.
    #
    #   Addrinfo.interruptible_getaddrinfo("localhost", 80, nil, :STREAM, timeout: 2)
    #   #=> [#<Addrinfo: [::1]:80 TCP (localhost)>, #<Addrinfo: 127.0.0.1:80 TCP (localhost)>]
    def interruptible_getaddrinfo(nodename, service, family = nil, socktype = nil,
                                  protocol = nil, flags = nil, timeout: nil)
      rows = Socket.interruptible_getaddrinfo(nodename, service, family, socktype, protocol,
                                              flags, false, timeout: timeout)
      Igai::AddrinfoBuilder.build(rows, nodename, service, flags)
    end
  end
end
