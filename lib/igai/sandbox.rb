# frozen_string_literal: true

require "open3"
require "socket"
require "tmpdir"

module Igai
  # A private network, mount and UTS namespace in which glibc's resolver asks one name server,
  # on 127.0.0.1:53, that the caller starts: where `igai demo` stalls its lookups and where the
  # test suite runs (test/bed/run). Only the Ruby standard library is used (the test bed loads
  # this file without the native extension).
  #
  # Outside, a program re-executes itself in new namespaces:
  #
  #   problem = Igai::Sandbox.unavailable and abort "#{problem}.\n#{Igai::Sandbox::ADVICE}"
  #   exec(*Igai::Sandbox.command(RbConfig.ruby, $PROGRAM_NAME, "--inside"))
  #
  # and, inside them, sets the sandbox up and starts its name server:
  #
  #   Igai::Sandbox.new(resolver_timeout: 2).inside do |dir|
  #     # loopback is up; /etc/resolv.conf says "nameserver 127.0.0.1"
  #   end
  #
  # The sandbox, inside the new namespaces:
  # * only the loopback interface exists (nothing leaves the machine); besides 127.0.0.1 and
  #   ::1 it carries 127.0.0.2 and fd00:16a1::1, so that AI_ADDRCONFIG behaves as on a
  #   connected host;
  # * the host name has no dot, so that glibc has no implicit search domain;
  # * /etc/resolv.conf (nameserver 127.0.0.1, options timeout:T attempts:1), /etc/nsswitch.conf
  #   (hosts: files dns) and /etc/hosts are replaced by bind mounts, and nscd is hidden;
  # * LOCALDOMAIN, RES_OPTIONS and HOSTALIASES are removed from ENV.
  #
  # The host's files are never modified: the replacements live in a temporary directory and the
  # mounts vanish with the namespace.
  class Sandbox
    # A step of the set-up that failed.
    class SetupError < StandardError; end

    # What to do when the namespaces cannot be created.
    ADVICE = "Run it as root (with sudo), or enable unprivileged user namespaces " \
             "(sysctl kernel.unprivileged_userns_clone=1, user.max_user_namespaces > 0; " \
             "on Ubuntu also kernel.apparmor_restrict_unprivileged_userns=0)."

    NAMESERVER = "127.0.0.1"
    # Extra loopback addresses: glibc's AI_ADDRCONFIG counts every address except 127.0.0.1 and
    # ::1, so without them an AI_ADDRCONFIG lookup would fail at once without asking DNS.
    EXTRA_ADDRESSES = ["127.0.0.2/8", "fd00:16a1::1/128"].freeze
    # Files and DNS only: no mdns, myhostname or systemd-resolved module can answer.
    NSSWITCH = <<~NSS
      hosts: files dns
      networks: files
    NSS
    HOSTS = <<~HOSTS
      127.0.0.1 localhost
      ::1 localhost ip6-localhost ip6-loopback
    HOSTS
    # Environment variables that would override resolv.conf (search list, options) or add
    # aliases.
    RESOLVER_ENV = %w[LOCALDOMAIN RES_OPTIONS HOSTALIASES].freeze
    NSCD_DIRECTORIES = %w[/run/nscd /var/run/nscd].freeze

    class << self
      # The unshare(1) command line that runs argv in new namespaces: as root a new mount,
      # network and UTS namespace; otherwise also a user namespace in which we are root.
      def command(*argv)
        flags = %w[--mount --net --uts]
        flags = %w[--user --map-root-user] + flags unless Process.euid.zero?
        ["unshare", *flags, "--", *argv]
      end

      # Why the namespaces cannot be created here ("cannot create a private network namespace
      # (REASON)"), or nil when they can (tried with `true`).
      def unavailable
        output, status = Open3.capture2e(*command("true"))
        return if status.success?

        unable("unshare failed: #{output.strip.lines.last&.strip || status.inspect}")
      rescue SystemCallError => e
        unable("cannot run unshare: #{e.message}")
      end

      # Whether this process is in a fresh network namespace: one with the loopback interface
      # only.
      def private_network?
        Socket.getifaddrs.map(&:name).uniq == ["lo"]
      end

      private

      def unable(reason)
        "cannot create a private network namespace (#{reason})"
      end
    end

    # resolver_timeout: seconds glibc waits for an unanswered query (resolv.conf timeout:).
    # hosts: lines added to /etc/hosts. hostname: the host name set when the inherited one has a
    # dot. comment: the first line of resolv.conf.
    def initialize(resolver_timeout:, hosts: "", hostname: "igai-sandbox",
                   comment: "igai sandbox")
      @resolver_timeout = resolver_timeout
      @hosts = hosts
      @hostname = hostname
      @comment = comment
    end

    # The files mounted over the system's, by path.
    def files
      {
        "/etc/resolv.conf" => "# #{@comment}\nnameserver #{NAMESERVER}\n" \
                              "options timeout:#{@resolver_timeout} attempts:1\n",
        "/etc/nsswitch.conf" => NSSWITCH,
        "/etc/hosts" => HOSTS + @hosts
      }
    end

    # Sets the sandbox up in the namespaces made by Sandbox.command and yields a temporary
    # directory (removed afterwards); returns the block's value. Raises SetupError when a step
    # fails, or when this is not a private network namespace (so that nothing is mounted over
    # the host's files).
    def inside
      raise SetupError, "not in a private network namespace" unless self.class.private_network?

      Dir.mktmpdir("igai-sandbox-") do |dir|
        set_up_loopback
        set_hostname
        files.each { |target, content| bind_over(target, write(dir, target, content)) }
        hide_nscd
        RESOLVER_ENV.each { |name| ENV.delete(name) }
        yield dir
      end
    end

    private

    def set_up_loopback
      run!("ip", "link", "set", "lo", "up")
      v4, v6 = EXTRA_ADDRESSES
      run!("ip", "-4", "addr", "add", v4, "dev", "lo")
      # IPv6 may be disabled; then AI_ADDRCONFIG simply skips AAAA queries.
      system("ip", "-6", "addr", "add", v6, "dev", "lo", "nodad", out: File::NULL, err: File::NULL)
    end

    # With no "search" line glibc derives a search domain from a dotted host name
    # (box.example.org -> example.org) and, after a stalled query times out, asks again with
    # that suffix: stalls would last twice as long on such hosts.
    def set_hostname
      return unless Socket.gethostname.include?(".")

      begin
        system("hostname", @hostname, err: File::NULL) ||
          File.write("/proc/sys/kernel/hostname", @hostname)
      rescue SystemCallError
        nil # checked below
      end
      raise SetupError, "cannot set a dotless host name" if Socket.gethostname.include?(".")
    end

    def write(dir, target, content)
      File.join(dir, File.basename(target)).tap do |source|
        File.write(source, content)
        File.chmod(0o644, source)
      end
    end

    # Bind-mounts source over target. mount(8) follows symlinks, so a symlinked
    # /etc/resolv.conf (systemd-resolved, NetworkManager, ...) is handled by mounting over the
    # file it points to; we resolve it ourselves to say clearly when it dangles.
    def bind_over(target, source)
      unless File.exist?(target)
        raise SetupError, "#{target} is a dangling symlink (-> #{File.readlink(target)})" \
          if File.symlink?(target)

        raise SetupError, "#{target} does not exist; only an existing file can be replaced"
      end
      real = File.realpath(target)
      raise SetupError, "#{target} (#{real}) is not a regular file" unless File.file?(real)

      run!("mount", "--bind", source, real)
    end

    # A running nscd would answer getaddrinfo through its socket (a shared file, not the
    # network), bypassing our files: hide it under an empty tmpfs.
    def hide_nscd
      NSCD_DIRECTORIES.select { |path| File.directory?(path) }.each do |path|
        system("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", path, err: File::NULL)
      end
    end

    def run!(*command)
      output, status = Open3.capture2e(*command)
      raise SetupError, "`#{command.join(' ')}` failed: #{output.strip}" unless status.success?
    rescue SystemCallError => e
      raise SetupError, "cannot run `#{command.join(' ')}`: #{e.message}"
    end
  end
end
