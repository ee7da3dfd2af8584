# frozen_string_literal: true

require "json"
require "open3"
require "tmpdir"
require_relative "test_helper"

# The igai command (exe/igai, Igai::CLI), run as a child process.
class TestCLI < Minitest::Test
  include IgaiTest::Stopwatch
  include IgaiTest::Subprocess

  Bed = IgaiTest::Bed
  EXE = File.expand_path("../exe/igai", __dir__)

  # Runs `igai *args`; returns [stdout, stderr, exit status]. The block, if any, gets the
  # running child (see IgaiTest::Subprocess#run_command).
  def igai(*args, env: {}, &block)
    stdout, stderr, status = run_command([RbConfig.ruby, "-I", IgaiTest::LIB, EXE, *args], env: env,
                                                                                        separate_stderr: true, &block)
    [stdout, stderr, status.exitstatus]
  end

  def assert_usage_error(args, message)
    stdout, stderr, status = igai(*args)
    assert_equal 2, status, stderr
    assert_empty stdout
    assert_equal 1, stderr.lines.size, stderr
    assert_match message, stderr
  end

  def test_help
    [%w[--help], %w[-h], %w[help]].each do |args|
      stdout, stderr, status = igai(*args)
      assert_equal [0, ""], [status, stderr]
      assert_match(/^Usage: igai resolve HOST \[SERVICE\]/, stdout)
      assert_match(/^\s+igai demo$/, stdout)
    end
    stdout, _, status = igai("resolve", "--help")
    assert_equal 0, status
    assert_match(/--timeout S.*--family FAMILY.*--json/m, stdout)
    stdout, _, status = igai("demo", "-h")
    assert_equal 0, status
    assert_match(/never answers/, stdout)
  end

  def test_usage_errors
    assert_usage_error([], /no command given/)
    assert_usage_error(%w[frobnicate], /unknown command "frobnicate"/)
    assert_usage_error(%w[resolve], /HOST missing/)
    assert_usage_error(%w[resolve --json], /HOST missing/)
    assert_usage_error(%w[resolve localhost http extra], /unexpected argument "extra"/)
    assert_usage_error(%w[resolve localhost --family inet4], /invalid argument: --family inet4/)
    assert_usage_error(%w[resolve localhost --family], /missing argument: --family/)
    assert_usage_error(%w[resolve localhost --timeout soon], /invalid argument: --timeout soon/)
    assert_usage_error(%w[resolve localhost --timeout -1], /invalid argument: --timeout/)
    assert_usage_error(%w[resolve localhost --bogus], /invalid option: --bogus/)
    assert_usage_error(%w[demo now], /unexpected argument "now"/)
  end

  # Lines like `getent ahosts` (which also asks for the canonical name), minus its
  # trailing blanks.
  def test_resolve_prints_like_getent_ahosts
    Bed.require!(self)
    [Bed::HOSTS_SHORT_NAME, Bed::HOSTS_V6_NAME, Bed.answered_name,
     Bed.answered_name(dual: true), "localhost"].each do |name|
      getent, status = run_command(["getent", "ahosts", name], separate_stderr: true).values_at(0, 2)
      Bed.skip_or_flunk(self, "getent ahosts #{name} failed: #{status.inspect}") unless status.success?

      stdout, stderr, status = igai("resolve", name)
      assert_equal [0, ""], [status, stderr], name
      assert_equal getent.lines.map(&:rstrip), stdout.lines.map(&:chomp), name
    end
  rescue Errno::ENOENT
    Bed.skip_or_flunk(self, "getent is not installed")
  end

  def test_resolve_with_service_and_family
    Bed.require!(self)
    name = Bed.answered_name(dual: true)
    stdout, _, status = igai("resolve", name, "http")
    assert_equal 0, status
    assert_equal ["::1             STREAM #{name}", "127.0.0.1       STREAM"],
                 stdout.lines.map(&:chomp)
    stdout, _, status = igai("resolve", "--family", "inet6", name, "domain")
    assert_equal 0, status
    assert_equal ["::1             STREAM #{name}", "::1             DGRAM"],
                 stdout.lines.map(&:chomp)
    stdout, _, status = igai("resolve", name, "--family=inet")
    assert_equal 0, status
    assert_equal ["127.0.0.1       STREAM #{name}", "127.0.0.1       DGRAM",
                  "127.0.0.1       RAW"], stdout.lines.map(&:chomp)
  end

  def test_resolve_json
    Bed.require!(self)
    name = Bed.answered_name(dual: true)
    stdout, stderr, status = igai("resolve", name, "443", "--json", "--timeout", "5")
    assert_equal [0, ""], [status, stderr]
    addresses = JSON.parse(stdout)
    assert_equal({ "address" => "::1", "family" => "inet6", "port" => 443, "socktype" => "STREAM",
                   "protocol" => Socket::IPPROTO_TCP, "canonname" => name }, addresses.first)
    assert_equal [["::1", "inet6"]] * 3 + [["127.0.0.1", "inet"]] * 3,
                 addresses.map { |address| address.values_at("address", "family") }
    assert_equal %w[STREAM DGRAM RAW] * 2, addresses.map { |address| address["socktype"] }
    assert_equal [name] + [nil] * 5, addresses.map { |address| address["canonname"] }
  end

  def test_resolve_failures_exit_with_status_1_and_one_line
    Bed.require!(self)
    name = Bed.nxdomain_name
    stdout, stderr, status = igai("resolve", name)
    assert_equal [1, ""], [status, stdout]
    assert_equal "igai: #{name}: getaddrinfo: Name or service not known\n", stderr
    stdout, stderr, status = igai("resolve", "localhost", "igai-no-such-service")
    assert_equal [1, ""], [status, stdout]
    assert_equal 1, stderr.lines.size
    assert_match(/\Aigai: localhost: getaddrinfo: /, stderr)
  end

  def test_resolve_timeout_on_a_stalled_name
    Bed.require!(self)
    name = Bed.stalled_name
    stdout, stderr, status = nil
    # The stall lasts 10 s here, so that a slow start of the child Ruby on a loaded machine
    # cannot be mistaken for a lookup that ran to the resolver's end.
    resolver = { "RES_OPTIONS" => "timeout:10 attempts:1" }
    time = elapsed { stdout, stderr, status = igai("resolve", name, "--timeout", "0.3", env: resolver) }
    assert_equal [1, ""], [status, stdout]
    assert_equal "igai: #{name}: timed out after 0.3 s\n", stderr
    assert_operator time, :<, 10 * 0.75
  end

  # Ctrl-C (SIGINT) during a lookup ends igai at once with exit status 130, as shells expect
  # of an interrupted command.
  def test_resolve_interrupted_by_ctrl_c_exits_with_status_130
    Bed.require!(self)
    name = Bed.stalled_name
    # The lookup would stall 10 s: igai must be gone within 5.
    stdout, stderr, status = igai("resolve", name, env: { "RES_OPTIONS" => "timeout:10 attempts:1" }) do |child|
      wait_until("the DNS server got the query") { Bed.queries_for(name).any? }
      Process.kill(:INT, child.pid)
      wait_until("igai exits", timeout: 5) { !child.alive? }
    end
    assert_equal [130, "", ""], [status, stdout, stderr]
  end

  # Ctrl-C from a terminal reaches igai demo's whole process group (the demo proper runs in a
  # child, in its namespaces): it ends with exit status 130 too, and so does the demo proper
  # when SIGINT reaches it alone (igai demo exits with its status).
  def test_demo_interrupted_by_ctrl_c_exits_with_status_130
    Bed.require!(self)
    { "the process group" => ->(child) { -child.pid }, "the demo proper" => ->(child) { demo_proper(child) } }
      .each do |target, pid|
        _, stderr, status = igai("demo") do |child|
          wait_until("the demo shows its first lookup") { child.output.include?("Timeout.timeout(0.2) {") }
          Process.kill(:INT, pid.call(child))
          wait_until("igai demo exits", timeout: 5) { !child.alive? }
        end
        assert_equal [130, ""], [status, stderr], target
      end
  end

  # The pid of the demo proper: the one child of igai demo (unshare execs it).
  def demo_proper(child)
    children = File.read("/proc/#{child.pid}/task/#{child.pid}/children").split
    assert_equal 1, children.size, "igai demo's children: #{children}"
    Integer(children.first)
  end

  def test_demo_shows_getaddrinfo_overrunning_and_igai_ending_on_time
    stdout, stderr, status = igai("demo")
    Bed.skip_or_flunk(self, "no namespaces here: #{stderr}") if status == 1 && stderr.include?("cannot create")
    assert_equal [0, ""], [status, stderr], stdout
    times = stdout.scan(/^Timeout\.timeout\(0\.2\) \{ Socket\.(\w+)\(.* after ([\d.]+) s/).to_h
    plain, ours = times.values_at("getaddrinfo", "interruptible_getaddrinfo")
    assert plain && ours, stdout
    assert_operator Float(ours), :<, 1.0
    assert_operator Float(ours), :>=, 0.2
    if Igai::SocketPatches.interruptible_already?
      assert_match(/already interruptible/, stdout)
    else
      assert_operator Float(plain), :>=, 1.0, stdout
      assert_match(/cannot interrupt Socket\.getaddrinfo/, stdout)
    end
  end

  # The README's quick start runs exe/igai from a checkout, with no -I and no RUBYLIB, from
  # wherever the user is: it must find the library beside it.
  def test_runs_from_a_checkout_without_load_path_options
    Bed.require!(self)
    name = Bed.answered_name
    Dir.mktmpdir do |elsewhere|
      env = { "RUBYLIB" => nil, "RUBYOPT" => nil }
      stdout, stderr, status = Open3.capture3(env, RbConfig.ruby, EXE, "resolve", name, "http",
                                              "--family", "inet", chdir: elsewhere)
      assert_equal [0, ""], [status.exitstatus, stderr]
      assert_match(/\A127\.0\.0\.1 +STREAM #{Regexp.escape(name)}$/, stdout)
    end
  end

  def test_demo_explains_what_to_do_without_namespaces
    Dir.mktmpdir do |empty|
      stdout, stderr, status = igai("demo", env: { "PATH" => empty })
      assert_equal [1, ""], [status, stdout]
      assert_match(/cannot create a private network namespace \(cannot run unshare: /, stderr)
      assert_match(/run it as root .* or enable unprivileged user namespaces/i, stderr)
    end
  end
end
