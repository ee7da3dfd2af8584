# frozen_string_literal: true

# Tests of Igai::Sandbox (lib/igai/sandbox.rb), the namespace that both `igai demo` and the
# test bed (test/bed/run) run in. Standalone like test_bed.rb: does not load the extension.
#
#   test/bed/run ruby -Ilib -Itest test/test_sandbox.rb

require "minitest/autorun"
require "json"
require "open3"
require "rbconfig"
require "tmpdir"
require_relative "../lib/igai/sandbox"
require_relative "support/bed"

class TestSandbox < Minitest::Test
  Bed = IgaiTest::Bed
  Sandbox = Igai::Sandbox
  LIB = File.expand_path("../lib", __dir__)
  BED = File.expand_path("bed/run", __dir__)

  # Sets a sandbox up (with resolver timeout 3 and one extra hosts entry) and prints, as JSON,
  # what a program inside sees.
  PROBE = <<~'RUBY'
    require "igai/sandbox"
    require "json"
    sandbox = Igai::Sandbox.new(resolver_timeout: 3, hosts: "127.0.1.9 sandbox-entry.example\n")
    sandbox.inside do |dir|
      puts JSON.generate(
        dir: dir,
        addresses: Socket.getifaddrs.filter_map(&:addr).select(&:ip?).map(&:ip_address).sort,
        hostname: Socket.gethostname,
        files: %w[/etc/resolv.conf /etc/nsswitch.conf /etc/hosts].to_h { |f| [f, File.read(f)] },
        entry: Addrinfo.getaddrinfo("sandbox-entry.example", nil, :INET).map(&:ip_address).uniq,
        res_options: ENV["RES_OPTIONS"]
      )
    end
  RUBY

  # Runs Ruby code in a new sandbox's namespaces; returns [stdout, stderr, status].
  def in_namespaces(code, env: {})
    Open3.capture3(env, *Sandbox.command(RbConfig.ruby, "-I", LIB, "-e", code))
  end

  def test_a_sandbox_has_the_beds_loopback_and_nsswitch_and_its_own_resolver_files
    Bed.require!(self)
    stdout, stderr, status = in_namespaces(PROBE, env: { "RES_OPTIONS" => "timeout:9" })
    assert status.success?, stderr
    seen = JSON.parse(stdout)

    # The bed is itself a sandbox: the same loopback addresses, AI_ADDRCONFIG's 127.0.0.2 among
    # them, and the same nsswitch.conf.
    bed_addresses = Socket.getifaddrs.filter_map(&:addr).select(&:ip?).map(&:ip_address).sort
    assert_equal bed_addresses, seen["addresses"]
    assert_includes seen["addresses"], "127.0.0.2"
    assert_equal File.read("/etc/nsswitch.conf"), seen.dig("files", "/etc/nsswitch.conf")
    refute_includes seen["hostname"], "."

    resolv_conf = seen.dig("files", "/etc/resolv.conf")
    assert_match(/^nameserver 127\.0\.0\.1$/, resolv_conf)
    assert_match(/^options timeout:3 attempts:1$/, resolv_conf)
    assert_match(/^127\.0\.0\.1 localhost$/, seen.dig("files", "/etc/hosts"))
    assert_equal ["127.0.1.9"], seen["entry"], "glibc reads the sandbox's /etc/hosts"
    assert_nil seen["res_options"], "RES_OPTIONS would override resolv.conf's options"
  end

  def test_a_sandbox_leaves_no_mount_and_no_file_behind
    Bed.require!(self)
    before = File.read("/etc/resolv.conf")
    stdout, stderr, status = in_namespaces(PROBE)
    assert status.success?, stderr
    assert_equal before, File.read("/etc/resolv.conf")
    refute File.exist?(JSON.parse(stdout)["dir"]), "the temporary directory should be removed"
  end

  # A network namespace with an interface besides lo may be the host's: nothing is mounted.
  def test_inside_refuses_a_network_namespace_with_other_interfaces
    Bed.require!(self)
    code = <<~'RUBY'
      require "igai/sandbox"
      before = File.read("/etc/resolv.conf")
      begin
        Igai::Sandbox.new(resolver_timeout: 1).inside { puts "entered" }
      rescue Igai::Sandbox::SetupError => e
        puts "refused: #{e.message}"
      end
      puts "resolv.conf unchanged" if File.read("/etc/resolv.conf") == before
    RUBY
    stdout, stderr, status = Open3.capture3(
      "unshare", "--net", "--mount", "--", "sh", "-c",
      'ip tuntap add mode tun igai-other && exec "$@"', "sh",
      RbConfig.ruby, "-I", LIB, "-e", code
    )
    assert status.success?, stderr
    assert_equal "refused: not in a private network namespace\nresolv.conf unchanged\n", stdout
  end

  # Root needs no user namespace (which a host may forbid even to root); anyone else gets
  # one, in which they are root.
  def test_only_a_user_other_than_root_gets_a_user_namespace
    Bed.require!(self)
    stdout, stderr, status = in_namespaces('print File.readlink("/proc/self/ns/user"), " ", Process.euid')
    assert status.success?, stderr
    namespace, euid = stdout.split
    assert_equal "0", euid
    assert_equal Process.euid.zero?, namespace == File.readlink("/proc/self/ns/user"), namespace
  end

  def test_unavailable_names_the_missing_unshare
    Dir.mktmpdir do |empty|
      stdout, status = Open3.capture2e({ "PATH" => empty }, RbConfig.ruby, "-I", LIB, "-e",
                                       'require "igai/sandbox"; puts Igai::Sandbox.unavailable')
      assert status.success?, stdout
      assert_match(/\Acannot create a private network namespace \(cannot run unshare: .*\)$/,
                   stdout)
    end
  end

  def test_unavailable_is_nil_where_the_namespaces_can_be_made
    Bed.require!(self)
    assert_nil Sandbox.unavailable
  end

  # test/bed/run outside the bed: without namespaces it still runs the command, telling it why
  # (and the user what to do) instead of failing.
  def test_the_bed_runs_the_command_unsandboxed_and_says_why_when_unavailable
    Dir.mktmpdir do |empty|
      ruby = RbConfig.ruby
      print_reason = 'print ENV.fetch("IGAI_BED_UNAVAILABLE"), "|", ENV["IGAI_BED"].inspect'
      disabled = { "IGAI_BED" => nil, "IGAI_BED_DISABLE" => "1" }
      no_unshare = { "IGAI_BED" => nil, "PATH" => empty }

      stdout, stderr, status = Open3.capture3(disabled, ruby, BED, ruby, "-e", print_reason)
      assert status.success?, stderr
      assert_equal "disabled by IGAI_BED_DISABLE|nil", stdout
      assert_match(/igai test bed unavailable: disabled by IGAI_BED_DISABLE/, stderr)

      stdout, stderr, status = Open3.capture3(no_unshare, ruby, BED, ruby, "-e", print_reason)
      assert status.success?, stderr
      assert_match(/\Acannot create a private network namespace \(cannot run unshare: .*\)\|nil\z/,
                   stdout)
      assert_includes stderr, Sandbox::ADVICE
    end
  end
end
