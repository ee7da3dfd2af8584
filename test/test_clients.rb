# frozen_string_literal: true

require "json"
require_relative "test_helper"
require_relative "support/clients"

# The clients applications really use (Debian's ruby-* packages, installed by bin/setup),
# each with its own 0.3 s connect/open timeout, against a name whose DNS never answers:
# igai/replace bounds every one of them (excon, and redis before 5, only through the
# process-wide limit, IGAI_TIMEOUT), while on Rubies before 3.3 none of them is bounded without it; and a
# real request through each, with replace and with the limit, still works.
#
# Every client runs in a child process, so that neither the client nor igai/replace changes
# the process running the tests.
class TestClients < IgaiTest::BedTest
  Clients = IgaiTest::Clients

  SUPPORT = File.expand_path("support/clients.rb", __dir__)

  # Within this a stalled connect counts as ended by the client's own 0.3 s (or by the limit).
  BOUNDED = 0.8

  # Loaded first in every child: the client named by IGAI_TEST_CLIENT (exit 3 if it is not
  # installed) and the timing helper.
  PRELUDE = <<~RUBY
    require "json"
    require #{SUPPORT.dump}
    client = IgaiTest::Clients.fetch(ENV.fetch("IGAI_TEST_CLIENT"))
    begin
      client.load
    rescue LoadError => e
      puts JSON.generate("missing" => e.message)
      exit 3
    end

    def attempt
      start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      report = begin
        { "value" => yield }
      rescue Exception => e # reported, whatever it is
        { "error" => e.class.name, "message" => e.message }
      end
      report.merge("seconds" => Process.clock_gettime(Process::CLOCK_MONOTONIC) - start)
    end
  RUBY

  # A client that cannot be loaded: skips, or on CI fails, as bin/setup should have
  # installed it; but a Debian package that is installed and built for other Rubies only
  # skips everywhere (Debian builds ruby-pg and ruby-ffi, which http.rb needs, for its
  # default Ruby: MRI 3.3 in trixie, none for the 3.4 of experimental).
  def missing_client!(client, detail)
    status = IO.popen(["dpkg-query", "-W", "-f=${Status}", client.package], err: File::NULL, &:read)
    if status.include?("install ok installed")
      skip "#{client.package} is installed, but Debian built its native parts for other Rubies " \
           "than #{RUBY_VERSION}: #{detail}"
    end
    message = "#{client.package} is not installed (bin/setup installs it): #{detail}"
    Bed.skip_or_flunk(self, message)
  end

  # Runs code after PRELUDE for client; returns what it printed last, as JSON. Skips (or,
  # on CI, fails) when the client is not installed.
  def child(client, code, env: {})
    output, status = run_ruby(PRELUDE + code, env: env.merge("IGAI_TEST_CLIENT" => client.name))
    result = begin
      JSON.parse(output.lines.last.to_s)
    rescue JSON::ParserError
      {}
    end
    missing_client!(client, result["missing"]) if status.exitstatus == 3 && result["missing"]
    assert status.success?, "child failed: #{output}"
    result
  end

  Clients::ALL.each do |client|
    slug = client.name.downcase.gsub(/[^a-z0-9]+/, "_")

    # igai/replace (forced on Rubies whose own lookups are interruptible, so that it is
    # exercised everywhere): a real request works, the stalled one ends within the client's
    # own timeout (or the process-wide limit, for the clients that need it), and with the
    # limit set a name that answers still connects.
    define_method("test_#{slug}_with_igai_replace_ends_a_stalled_lookup_and_requests_work") do
      names = [Bed.answered_name, Bed.stalled_name, Bed.answered_name]
      result = child(client, <<~RUBY)
        require "igai/replace"
        Igai.replace!(force: true)
        limit = #{Clients::OWN_TIMEOUT} if client.needs_limit?
        Igai.replace!(timeout: limit)
        answered, stalled, answered_again = #{names.inspect}
        port = IgaiTest::Clients::Servers.start(client.server)
        request = attempt { client.connect.call(answered, port) }
        stalled = attempt { client.connect.call(stalled, port) }.merge("limit" => limit)
        Igai.replace!(timeout: #{Clients::OWN_TIMEOUT})
        limited = attempt { client.connect.call(answered_again, port) }
        puts JSON.generate("request" => request, "stalled" => stalled, "limited" => limited)
      RUBY
      assert_equal "hello", result["request"]["value"], result["request"].inspect
      assert_equal client.stalled_error, result["stalled"]["error"], result["stalled"].inspect
      assert_operator result["stalled"]["seconds"], :<, BOUNDED, result["stalled"].inspect
      assert_equal "hello", result["limited"]["value"], result["limited"].inspect
    end

    # MRI 3.3 and later resolve on a thread of their own, so that clients built on Timeout
    # are bounded there without igai: this holds before 3.3 only.
    next if Igai::SocketPatches.interruptible_already?

    define_method("test_#{slug}_own_timeout_cannot_end_a_stalled_lookup_without_igai_replace") do
      outlast = Bed.resolver_timeout * 0.9
      # Some clients retry for minutes (excon: 150 s): a watchdog thread ends the child
      # once it has outlasted the resolver's timeout.
      result = child(client, <<~RUBY)
        port = IgaiTest::Clients::Servers.start(client.server)
        Thread.new do
          sleep #{outlast}
          $stdout.puts JSON.generate("outlasted" => #{outlast})
          $stdout.flush
          exit!(0)
        end
        puts JSON.generate(attempt { client.connect.call(#{Bed.stalled_name.dump}, port) })
      RUBY
      assert_equal outlast, result["outlasted"],
                   "#{client.name} ended the stalled connect by itself: #{result.inspect}"
    end
  end

  # pg cannot be bounded from Ruby: pg resolves the host in Ruby first (so igai/replace and
  # the limit end that lookup), but on any failure hands the name to libpq, which resolves it
  # again in C. The workaround is a pre-resolved hostaddr; it is tested against a server
  # that hangs up (no PostgreSQL needed), which proves the connection went to that address.
  def test_pg_is_not_bounded_as_libpq_resolves_in_c_but_a_resolved_hostaddr_is
    names = [Bed.stalled_name, Bed.stalled_name, Bed.answered_name]
    result = child(Clients::PG, <<~RUBY, env: { "IGAI_TIMEOUT" => Clients::OWN_TIMEOUT.to_s })
      require "igai/replace"
      Igai.replace!(force: true)
      stalled, stalled_again, answered = #{names.inspect}
      port = IgaiTest::Clients::Servers.start(client.server)
      resolved = ->(name) { Socket.interruptible_getaddrinfo(name, nil, :INET, timeout: 0.3)[0][3] }
      puts JSON.generate(
        "libpq" => attempt { client.connect.call(stalled, port) },
        "hostaddr stalled" => attempt { PG.connect(host: stalled_again, hostaddr: resolved.call(stalled_again), port: port) },
        "hostaddr answered" => attempt { PG.connect(host: answered, hostaddr: resolved.call(answered), port: port) }
      )
    RUBY
    assert_equal "PG::ConnectionBad", result["libpq"]["error"], result["libpq"].inspect
    assert_match(/could not translate host name .* Temporary failure in name resolution/,
                 result["libpq"]["message"])
    assert_operator result["libpq"]["seconds"], :>=, Bed.resolver_timeout * 0.9
    assert_equal "Errno::ETIMEDOUT", result["hostaddr stalled"]["error"]
    assert_operator result["hostaddr stalled"]["seconds"], :<, BOUNDED
    assert_equal "PG::ConnectionBad", result["hostaddr answered"]["error"]
    assert_match(/at "127\.0\.0\.1", port \d+ failed: server closed the connection/,
                 result["hostaddr answered"]["message"])
  end
end
