# frozen_string_literal: true

require "socket"
require_relative "addrinfo"
require_relative "fast_fallback"
require_relative "timeout"

module Igai
  # The patches of igai/replace (Igai.replace!), igai's only monkey patch: modules that
  # Igai.replace! prepends to Socket, Addrinfo, IPSocket, TCPSocket and UDPSocket so that they
  # resolve host names through Socket.interruptible_getaddrinfo (and to Resolv::DNS, for the
  # process-wide limit). Each keeps the arguments, results and errors of the method it
  # replaces. Numeric hosts resolve at once as before.
  #
  # Lookups give rows of Socket.interruptible_getaddrinfo: [family_name, port, host, address,
  # family, socktype, protocol]; a socket is then set up by the original method, given the
  # row's numeric address in place of the host.
  module SocketPatches
    # Socket.getaddrinfo and Socket.tcp.
    module SocketClassMethods
      # Socket.getaddrinfo, interruptible.
      def getaddrinfo(host, service, family = nil, socktype = nil, protocol = nil, flags = nil,
                      reverse_lookup = nil)
        SocketPatches.limited(nil) do |limit|
          interruptible_getaddrinfo(host, service, family, socktype, protocol, flags,
                                    reverse_lookup, timeout: limit)
        end
      end

      # Socket.tcp. Given a connect_timeout and no resolv_timeout, its lookups (of the host,
      # and of the local host if any) together may take no longer than connect_timeout, and
      # give up, as an expired connect does, with Errno::ETIMEDOUT "user specified timeout"
      # (net-http 0.2's Net::HTTP turns that into Net::OpenTimeout); each connect attempt
      # then has connect_timeout of its own, as before. Given a resolv_timeout, that is its
      # lookups' own limit (MRI 3.4 makes them in threads whose lookups it bounds itself).
      # Otherwise it is the original.
      def tcp(host, port, local_host = nil, local_port = nil, connect_timeout: nil,
              resolv_timeout: nil, **options)
        call = lambda do
          super(host, port, local_host, local_port, connect_timeout: connect_timeout,
                                                    resolv_timeout: resolv_timeout, **options, &nil)
        end
        socket = if !resolv_timeout.nil?
                   SocketPatches.own_limit(&call)
                 elsif SocketPatches.seconds?(connect_timeout)
                   SocketPatches.lookups_within(connect_timeout, &call)
                 else
                   return super
                 end
        return socket unless block_given?

        begin
          yield socket
        ensure
          socket.close
        end
      end
    end

    # Addrinfo.getaddrinfo, .tcp, .udp and .ip, and with them everything built on them:
    # Addrinfo.foreach, Socket.tcp (whose resolv_timeout: then works), Socket.udp_server_sockets
    # and Socket.tcp_server_sockets.
    module AddrinfoClassMethods
      # Addrinfo.getaddrinfo, interruptible, honouring +timeout+ (Errno::ETIMEDOUT).
      def getaddrinfo(nodename, service, family = nil, socktype = nil, protocol = nil,
                      flags = nil, timeout: nil)
        SocketPatches.limited(timeout) do |limit|
          interruptible_getaddrinfo(nodename, service, family, socktype, protocol, flags,
                                    timeout: limit)
        end
      end

      # Addrinfo.tcp: the first TCP address.
      def tcp(host, port)
        SocketPatches.limited(nil) do |limit|
          interruptible_getaddrinfo(host, port, nil, :STREAM, Socket::IPPROTO_TCP,
                                    timeout: limit).first
        end
      end

      # Addrinfo.udp: the first UDP address.
      def udp(host, port)
        SocketPatches.limited(nil) do |limit|
          interruptible_getaddrinfo(host, port, nil, :DGRAM, Socket::IPPROTO_UDP,
                                    timeout: limit).first
        end
      end

      # Addrinfo.ip: the first address, without socket type or protocol.
      def ip(host)
        row = SocketPatches.limited(nil) do |limit|
          Socket.interruptible_getaddrinfo(host, nil, nil, 0, 0, 0, false, timeout: limit).first
        end
        AddrinfoBuilder.addrinfo(row, inspectname: AddrinfoBuilder.inspectname(host, nil, row),
                                      socktype: 0, protocol: 0)
      end
    end

    # IPSocket.getaddress.
    module IPSocketClassMethods
      # IPSocket.getaddress: the first address, as text.
      def getaddress(host)
        SocketPatches.lookup(host, nil, nil, Socket::SOCK_STREAM).first[3]
      end
    end

    # TCPSocket.new and .open (and Net::HTTP, Net::SMTP, ... which use them).
    module TCPSocketMethods
      # Connects like TCPSocket.new: tries the remote addresses in order until one connects,
      # each from the first local address of its family when a local host or port is given
      # (a remote address without one is skipped, unless it is the last and nothing was
      # tried); fails with the error of the last attempt. As with Socket.tcp, a
      # resolv_timeout bounds the lookups, and else a connect_timeout does (dalli 3.2 and
      # later connect with TCPSocket.new(host, port, connect_timeout:)). Where MRI (3.4 on)
      # would connect the Happy Eyeballs way, the lookups are made as it makes them then
      # (FastFallback).
      def initialize(remote_host, remote_port, local_host = nil, local_port = nil, **options)
        # A keyword this Ruby does not take: its own ArgumentError, before any lookup.
        unless (options.keys - FastFallback::KEYWORDS).empty?
          super
          return
        end

        remotes, locals = SocketPatches.tcp_lookups(remote_host, remote_port, local_host,
                                                    local_port, options)
        failure = nil
        remotes.each_with_index do |remote, index|
          if locals
            local = locals.find { |candidate| candidate[4] == remote[4] }
            next if !local && (failure || index < remotes.size - 1)

            local ||= locals.first # binding to another family fails, and says so
          end
          bind_to = local ? [local[3], local_port] : []
          begin
            return super(remote[3], remote_port, *bind_to, **options)
          rescue SystemCallError => e
            failure = if e.message.include?(" bind(2) for ")
                        SocketPatches.naming(e, local[3], local_host)
                      else
                        SocketPatches.naming(e, remote[3], remote_host)
                      end
          end
        end
        raise failure
      end
    end

    # UDPSocket#bind, #connect and #send to a host.
    module UDPSocketMethods
      # UDPSocket#bind: binds to the first address that works.
      def bind(host, port)
        SocketPatches.each_datagram_address(self, host, port) { |address| super(address, port) }
      end

      # UDPSocket#connect: connects to the first address that works.
      def connect(host, port)
        SocketPatches.each_datagram_address(self, host, port) { |address| super(address, port) }
      end

      # UDPSocket#send: with a host and port, sends to the first address that takes the
      # message.
      def send(*args)
        return super unless args.size == 4

        mesg, flags, host, port = args
        SocketPatches.each_datagram_address(self, host, port) do |address|
          super(mesg, flags, address, port)
        end
      end
    end

    # Resolv::DNS#each_address, behind Resolv.each_address, .getaddress and .getaddresses
    # (which excon uses instead of getaddrinfo). Resolv resolves in Ruby, so Timeout can
    # already end it, but left alone it retries an unanswered query for up to 75 s per record
    # type. Under the process-wide limit (Igai.replace!(timeout:)), a Resolv::DNS whose
    # timeouts were not set gives up after that long, as it does when its own timeouts run
    # out: with the addresses found so far (none for a stalled name).
    module ResolvDNSMethods
      # Resolv::DNS#each_address, within the process-wide limit.
      def each_address(name, &block)
        limit = SocketPatches.timeout
        # Resolv keeps timeouts set with #timeouts= there: then it has a limit of its own.
        return super if limit.nil? || @config.instance_variable_get(:@timeouts)

        addresses = []
        begin
          Igai::Timeout.timeout(limit) { super(name) { |address| addresses << address } }
        rescue Igai::Timeout::Error
          nil # as Resolv gives up: no more addresses
        end
        addresses.each(&block)
      end
    end

    # Where each module goes.
    TARGETS = {
      Socket.singleton_class => SocketClassMethods,
      Addrinfo.singleton_class => AddrinfoClassMethods,
      IPSocket.singleton_class => IPSocketClassMethods,
      TCPSocket => TCPSocketMethods,
      UDPSocket => UDPSocketMethods
    }.freeze

    LOCK = Mutex.new
    private_constant :LOCK

    # Igai.replace!'s default timeout: leave the process-wide limit as it is.
    NOT_GIVEN = Object.new.freeze

    # Where Socket.tcp and TCPSocket.new keep the deadline of their lookups: in the fiber's
    # storage (Ruby 3.2 on), which the threads MRI 3.4's Socket.tcp resolves in inherit;
    # before, fiber-local.
    DEADLINE = :__igai_lookup_deadline
    private_constant :DEADLINE
    FIBER_STORAGE = Fiber.respond_to?(:[])
    private_constant :FIBER_STORAGE

    @timeout = nil

    class << self
      # The process-wide limit, in seconds, of lookups without a limit of their own (nil:
      # none). See Igai.replace!.
      attr_reader :timeout

      # Sets the process-wide limit: nil (none) or a positive number of seconds.
      def timeout=(seconds)
        @timeout = seconds.nil? ? nil : positive_seconds(seconds, "timeout")
      end
    end

    module_function

    # The rows for host and service, found through igai as the socket library looks them up
    # (no flags, numeric addresses).
    def lookup(host, service, family, socktype)
      limited(nil) do |limit|
        Socket.interruptible_getaddrinfo(host, service, family, socktype, nil, nil, false,
                                         timeout: limit)
      end
    end

    # Yields the limit, in seconds or nil, for a lookup whose own limit is +own+ (nil: none):
    # +own+; or else what is left of the time the running Socket.tcp gave its lookups, or the
    # process-wide limit, whichever is shorter. When the process-wide limit runs out, the
    # lookup fails as getaddrinfo(3) fails when the resolver gives up: EAI_AGAIN.
    def limited(own)
      return yield(own) unless own.nil?

      deadline = lookup_deadline
      return yield(nil) if deadline == :own

      left = deadline && [deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max
      limit = timeout
      return yield(left) if limit.nil? || (left && left <= limit)

      begin
        yield limit
      rescue Errno::ETIMEDOUT
        raise Igai::Native.resolution_error(Socket::EAI_AGAIN), cause: nil
      end
    end

    # Runs the block, in which lookups without a limit of their own may take +seconds+ in all.
    # MRI 3.4's Socket.tcp resolves in threads and raises again the error one of them raised,
    # giving the new error that error's message ("Connection timed out - Connection timed out
    # - user specified timeout"): such an error is raised as the lookup raised it.
    def lookups_within(seconds)
      previous = lookup_deadline
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + seconds
      self.lookup_deadline = previous.is_a?(Numeric) ? [previous, deadline].min : deadline
      yield
    rescue Errno::ETIMEDOUT => e
      raise unless e.cause.is_a?(Errno::ETIMEDOUT)

      raise e.cause, cause: nil
    ensure
      self.lookup_deadline = previous
    end

    # Runs the block, whose lookups have a limit of their own (that the caller enforces):
    # the process-wide limit does not apply to them.
    def own_limit
      previous = lookup_deadline
      self.lookup_deadline = :own
      yield
    ensure
      self.lookup_deadline = previous
    end

    # The deadline lookups_within set for this fiber's lookups (and its threads'), :own
    # inside own_limit, or nil.
    def lookup_deadline
      FIBER_STORAGE ? Fiber[DEADLINE] : Thread.current[DEADLINE]
    end

    def lookup_deadline=(deadline)
      FIBER_STORAGE ? Fiber[DEADLINE] = deadline : Thread.current[DEADLINE] = deadline
    end

    # Whether value is a number of seconds a lookup can be limited to.
    def seconds?(value)
      value.is_a?(Numeric) && value.real? && value.to_f.finite? && value >= 0
    end

    # value as a Float, if it is a finite Numeric above zero; else ArgumentError, naming
    # +what+ and showing +shown+.
    def positive_seconds(value, what, shown = value)
      if value.is_a?(Numeric) && value.real? && value.to_f.finite? && value.positive?
        return value.to_f
      end

      raise ArgumentError, "#{what} must be a positive number of seconds, not #{shown.inspect}"
    end

    # The rows TCPSocket.new connects to, and those of its local host and port (nil when
    # neither is given); given its keyword options, the lookups may take resolv_timeout
    # (Errno::ETIMEDOUT), or else connect_timeout, as with Socket.tcp. Made as MRI makes
    # them: the Happy Eyeballs way where it would (FastFallback); else remote host first,
    # and before 3.4 after checking connect_timeout. A resolv_timeout that is not a number
    # of seconds is ignored there, as MRI then ignores any.
    def tcp_lookups(remote_host, remote_port, local_host, local_port, options)
      connect_timeout = options[:connect_timeout]
      if FastFallback.applies?(remote_host, options)
        run = -> { FastFallback.lookups(remote_host, remote_port, local_host, local_port, options) }
        bounded = options[:resolv_timeout].nil? && seconds?(connect_timeout)
        return bounded ? lookups_within(connect_timeout, &run) : run.call
      end

      FastFallback.time_interval!(connect_timeout) unless FastFallback::AVAILABLE
      own = options[:resolv_timeout]
      own = nil unless seconds?(own)
      find = lambda do |host, port|
        limited(own) do |limit|
          Socket.interruptible_getaddrinfo(host, port, nil, Socket::SOCK_STREAM, nil, nil, false,
                                           timeout: limit)
        end
      end
      run = lambda do
        [find.call(remote_host, remote_port),
         (find.call(local_host, local_port) unless local_host.nil? && local_port.nil?)]
      end
      own.nil? && seconds?(connect_timeout) ? lookups_within(connect_timeout, &run) : run.call
    end

    # Yields each address of host and port for a datagram socket of the family of socket, in
    # order, until the block returns (its value is returned); fails with the error of the
    # last try.
    def each_datagram_address(socket, host, port)
      failure = nil
      lookup(host, port, socket.local_address.afamily, Socket::SOCK_DGRAM).each do |row|
        return yield(row[3])
      rescue SystemCallError => e
        failure = naming(e, row[3], host)
      end
      raise failure
    end

    # error, raised for a call given address instead of host, as raised for host: the socket
    # library names the host it failed on ("connect(2) for "example.com" port 80").
    def naming(error, address, host)
      error.exception(error.message.sub("for #{address.inspect} port", "for #{host.inspect} port"))
    end

    # Where each module goes: TARGETS, and Resolv::DNS (Resolv is loaded only now, so that
    # `require "igai"` alone does not pay for it).
    def targets
      require "resolv"
      TARGETS.merge(Resolv::DNS => ResolvDNSMethods)
    end

    # Whether this Ruby's Socket.getaddrinfo can already be interrupted: MRI 3.3 and later
    # run getaddrinfo(3) on a thread of their own.
    def interruptible_already?
      (RUBY_VERSION.split(".").map(&:to_i) <=> [3, 3]) >= 0
    end

    # See Igai.replace!.
    def replace!(force, timeout)
      self.timeout = timeout unless NOT_GIVEN.equal?(timeout)
      return false if interruptible_already? && !force

      LOCK.synchronize do
        missing = targets.reject { |target, methods| target.include?(methods) }
        missing.each { |target, methods| target.prepend(methods) }
        missing.any?
      end
    end
  end

  # Makes name resolution in Ruby's socket library interruptible, by routing it through igai:
  # Socket.getaddrinfo; Addrinfo.getaddrinfo, .tcp, .udp and .ip (so also Socket.tcp and
  # Addrinfo.foreach); TCPSocket.new and .open, local host and port included, trying every
  # address in order; UDPSocket#bind, #connect and #send; IPSocket.getaddress. Socket.tcp's
  # connect_timeout also bounds its lookups when no resolv_timeout is given. Net::HTTP's
  # open_timeout, Timeout.timeout and Ctrl-C then end stalled lookups.
  #
  # +timeout+ (seconds; nil: none, the default) limits every lookup so routed that has no
  # limit of its own (no Timeout, resolv_timeout or connect_timeout around it), for clients
  # that bound only their connect (excon, through Resolv::DNS; redis 4): when it runs
  # out the lookup fails as getaddrinfo(3) fails when the resolver gives up (EAI_AGAIN:
  # SocketError, or Socket::ResolutionError, "Temporary failure in name resolution"), which
  # clients already treat as a failed connection. ArgumentError unless it is nil or a
  # positive number. Not given, the limit stays as it was; `require "igai/replace"` sets it
  # from IGAI_TIMEOUT.
  #
  # Does so only on Rubies whose Socket.getaddrinfo cannot be interrupted (MRI before 3.3),
  # unless +force+ is true. Returns true if it changed anything, false otherwise (in
  # particular when called again). `require "igai/replace"` calls it.
  def self.replace!(force: false, timeout: SocketPatches::NOT_GIVEN)
    SocketPatches.replace!(force, timeout)
  end
end
