# frozen_string_literal: true

require_relative "test_helper"
require_relative "support/name_files"
require "json"

# Names that /etc/hosts answers run on the caller's thread when nsswitch.conf makes glibc ask
# `files` first (README, "Names in /etc/hosts"). Each test runs a child Ruby that sees its own
# nsswitch.conf and hosts file (IgaiTest::NameFiles), and compares igai with Socket.getaddrinfo
# there: rows in the same order, the same errors, whatever the hosts line says; and counts,
# exactly, the lookups answered inline (Igai.stats[:inline]).
class TestHostsFile < IgaiTest::BedTest
  include IgaiTest::NameFiles

  # Several lines per name, both families, aliases, mixed case, a canonical name with a
  # trailing dot, and a name the bed's DNS server also answers, with other addresses
  # (127.0.0.1 and ::1).
  HOSTS = <<~HOSTS
    127.0.0.1 localhost
    ::1 localhost ip6-localhost
    10.20.0.1 Multi.Example multi alias-one
    10.20.0.2 multi.example
    fd00:20::1 MULTI.example multi
    10.20.0.3 v4only.example
    fd00:20::3 v6only.example
    10.20.0.9 dual-shadow.igai.test
    10.20.0.10 trailing.example.
  HOSTS

  # Families each name has in HOSTS, as glibc matches names (case folded, no dot stripped;
  # igai never runs a name with a trailing dot inline, so trailing.example. is left out).
  LISTED = {
    "localhost" => [4, 6], "ip6-localhost" => [6], "multi" => [4, 6], "multi.example" => [4, 6],
    "alias-one" => [4], "v4only.example" => [4], "v6only.example" => [6],
    "dual-shadow.igai.test" => [4]
  }.freeze

  NAMES = ["localhost", "LOCALHOST", "localhost.", "ip6-localhost", "multi", "Multi.Example",
           "MULTI.EXAMPLE.", "alias-one", "v4only.example", "v6only.example",
           "dual-shadow.igai.test", "DUAL-SHADOW.IGAI.TEST", "trailing.example", "trailing.example.",
           "not-listed.example"].freeze
  FAMILIES = [nil, :INET, :INET6].freeze
  SOCKTYPES = [nil, :STREAM, :DGRAM].freeze
  FLAGS = [nil, Socket::AI_CANONNAME, Socket::AI_ADDRCONFIG, Socket::AI_V4MAPPED | Socket::AI_ALL].freeze

  # Compares both calls over NAMES x FAMILIES x SOCKTYPES x FLAGS in a child that sees
  # nsswitch (and HOSTS); reports the count, the first mismatches, Igai.stats and which address
  # the shadowed name gets (its hosts entry, or DNS's answer).
  def compare_grid(nsswitch)
    code = <<~RUBY
      require "igai"
      require "json"
      outcome = lambda do |&call|
        call.call
      rescue StandardError => e
        [e.class.name, e.message, e.respond_to?(:error_code) ? e.error_code : nil]
      end
      grid = #{NAMES.inspect}.product(#{FAMILIES.inspect}, #{SOCKTYPES.inspect}, #{FLAGS.inspect})
      mismatches = grid.filter_map do |name, family, socktype, flags|
        args = [name, 80, family, socktype, nil, flags]
        plain = outcome.call { Socket.getaddrinfo(*args) }
        ours = outcome.call { Socket.interruptible_getaddrinfo(*args) }
        [args, plain, ours] unless plain == ours
      end
      shadow = Socket.getaddrinfo("dual-shadow.igai.test", nil, :INET)[0][3]
      puts JSON.generate(compared: grid.size, mismatches: mismatches.first(3), stats: Igai.stats,
                         shadow: shadow)
    RUBY
    output, status = run_ruby_with_files(code, files: { "/etc/nsswitch.conf" => nsswitch,
                                                        "/etc/hosts" => HOSTS })
    assert status.success?, output
    JSON.parse(output.lines.last, symbolize_names: true).tap do |report|
      assert_equal NAMES.size * FAMILIES.size * SOCKTYPES.size * FLAGS.size, report[:compared]
      assert_empty report[:mismatches]
    end
  end

  # How many lookups of the grid the hosts file answers, by the rule README states: the name
  # is listed (case folded, no dot stripped) with an address of the family asked for (IPv6
  # for INET6, even with V4MAPPED), either family for nil, and both for nil with ADDRCONFIG.
  def lookups_the_file_answers
    NAMES.product(FAMILIES, SOCKTYPES, FLAGS).count do |name, family, _, flags|
      listed = LISTED.fetch(name.downcase, [])
      case family
      when :INET then listed.include?(4)
      when :INET6 then listed.include?(6)
      else flags == Socket::AI_ADDRCONFIG ? listed.size == 2 : listed.any?
      end
    end
  end

  def assert_only_the_pool_resolved(report)
    assert_equal 0, report[:stats][:inline], report.inspect
  end

  def test_files_first_answers_listed_names_inline_with_the_rows_and_errors_of_getaddrinfo
    report = compare_grid("hosts: files dns\n")
    assert_equal "10.20.0.9", report[:shadow]
    assert_equal lookups_the_file_answers, report[:stats][:inline]
    assert_operator report[:stats][:inline], :>, 100
  end

  def test_files_first_without_dns_answers_inline_too
    report = compare_grid("hosts: files\n")
    assert_equal lookups_the_file_answers, report[:stats][:inline]
  end

  def test_dns_first_sends_every_lookup_to_the_pool_with_the_same_results
    report = compare_grid("hosts: dns files\n")
    assert_equal "127.0.0.1", report[:shadow], "DNS answers first"
    assert_only_the_pool_resolved(report)
  end

  def test_files_with_myhostname_sends_every_lookup_to_the_pool_with_the_same_results
    report = compare_grid("hosts: files myhostname dns\n")
    assert_equal "10.20.0.9", report[:shadow]
    assert_only_the_pool_resolved(report)
  end

  def test_files_with_non_default_actions_sends_every_lookup_to_the_pool_with_the_same_results
    report = compare_grid("hosts: files [NOTFOUND=return] dns\n")
    assert_equal "10.20.0.9", report[:shadow]
    assert_only_the_pool_resolved(report)
  end

  # Without a hosts line glibc before 2.35 asks "dns [!UNAVAIL=return] files", DNS first;
  # from 2.35 (Debian 12 has 2.36) "files dns". igai does not tell them apart: the pool.
  def test_no_hosts_line_sends_every_lookup_to_the_pool_with_the_same_results
    report = compare_grid("passwd: files\ngroup: files\n")
    assert_only_the_pool_resolved(report)
  end

  # Listed names run inline and never reach the DNS server: no worker starts at all.
  def test_listed_names_are_answered_on_the_callers_thread_without_dns_or_workers
    name = "taken-#{Process.pid}.example"
    code = <<~RUBY
      require "igai"
      require "json"
      answers = [
        Socket.interruptible_getaddrinfo(#{name.inspect}, 80, :INET)[0][3],
        Socket.interruptible_getaddrinfo(#{name.upcase.inspect}, 80)[0][3],
        Addrinfo.interruptible_getaddrinfo("localhost", 80, :INET6, :STREAM)[0].ip_address,
        Socket.interruptible_getaddrinfo("multi", "443", nil, nil, nil, Socket::AI_CANONNAME)[0][2]
      ]
      threads = Dir["/proc/self/task/*/comm"].count { |comm| File.read(comm).chomp == "igai-resolver" }
      puts JSON.generate(answers: answers, stats: Igai.stats, lookup_threads: threads)
    RUBY
    output, status = run_ruby_with_files(code, files: { "/etc/nsswitch.conf" => "hosts: files dns\n",
                                                        "/etc/hosts" => "#{HOSTS}10.20.0.7 #{name}\n" })
    assert status.success?, output
    report = JSON.parse(output.lines.last, symbolize_names: true)
    assert_equal ["10.20.0.7", "10.20.0.7", "::1", "Multi.Example"], report[:answers]
    assert_equal IgaiTest::NO_STATS.merge(inline: 4), report[:stats]
    assert_equal 0, report[:lookup_threads]
    assert_empty Bed.queries_for(name)
  end

  # The count, like the pool's, is per process: a forked child starts from zero, and its own
  # cache of the files works at once (the bed's nsswitch.conf asks files first).
  def test_a_forked_child_counts_its_inline_lookups_from_zero
    output, status = run_ruby(<<~RUBY)
      require "igai"
      3.times { Socket.interruptible_getaddrinfo("localhost", 80) }
      reader, writer = IO.pipe
      pid = fork do
        at_start = Igai.stats[:inline]
        Socket.interruptible_getaddrinfo("localhost", 80)
        writer.puts [at_start, Igai.stats[:inline], Igai.stats[:workers]].inspect
        exit!(0)
      end
      writer.close
      child = reader.read
      Process.wait(pid)
      puts child, Igai.stats[:inline]
    RUBY
    assert status.success?, output
    assert_equal "[0, 1, 0]\n3\n", output
  end

  # What glibc could take past the hosts file goes to the pool although the file is asked
  # first: a trailing dot (glibc strips none), a name listed only with the other family, both
  # families needed (ADDRCONFIG) but one listed, a service name (the services database),
  # reverse lookup, AI_NUMERICHOST, an unlisted name, and RES_OPTIONS set.
  def test_lookups_glibc_could_take_past_the_hosts_file_go_to_the_pool
    code = <<~RUBY
      require "igai"
      require "json"
      lookups = [
        ["localhost.", 80], ["v6only.example", 80, :INET], ["v4only.example", 80, :INET6],
        ["v4only.example", 80, :INET6, nil, nil, Socket::AI_V4MAPPED],
        ["v4only.example", 80, nil, nil, nil, Socket::AI_ADDRCONFIG], ["localhost", "http"],
        ["localhost", 80, nil, nil, nil, nil, true], ["localhost", 80, nil, nil, nil, Socket::AI_NUMERICHOST],
        ["not-listed.example", 80]
      ]
      lookups.each do |args|
        Socket.interruptible_getaddrinfo(*args)
      rescue SocketError
      end
      ENV["RES_OPTIONS"] = "attempts:1"
      Socket.interruptible_getaddrinfo("localhost", 80)
      puts JSON.generate(stats: Igai.stats, lookups: lookups.size + 1)
    RUBY
    output, status = run_ruby_with_files(code, files: { "/etc/nsswitch.conf" => "hosts: files dns\n",
                                                        "/etc/hosts" => HOSTS })
    assert status.success?, output
    report = JSON.parse(output.lines.last, symbolize_names: true)
    assert_equal IgaiTest::NO_STATS.merge(workers: 1, idle: 1, completed: report[:lookups]),
                 report[:stats]
  end

  # The files are read again when they change: a name added to /etc/hosts is answered inline
  # (after igai's recheck interval of 0.1 s), and once nsswitch.conf asks DNS first, no more.
  def test_changes_to_the_hosts_file_and_nsswitch_conf_are_noticed
    code = <<~RUBY
      require "igai"
      require "json"
      lookup = -> { Socket.interruptible_getaddrinfo("added.example", 80, :INET)[0][3] rescue "none" }
      inline = -> { Igai.stats[:inline] }
      before = [lookup.call, inline.call]
      File.write("/etc/hosts", "10.20.0.99 added.example\\n", mode: "a")
      sleep 0.3
      added = [lookup.call, inline.call]
      File.write("/etc/nsswitch.conf", "hosts: dns files\\n")
      sleep 0.3
      dns_first = [lookup.call, inline.call]
      puts JSON.generate([before, added, dns_first])
    RUBY
    output, status = run_ruby_with_files(code, files: { "/etc/nsswitch.conf" => "hosts: files dns\n",
                                                        "/etc/hosts" => HOSTS })
    assert status.success?, output
    before, added, dns_first = JSON.parse(output.lines.last)
    assert_equal [["none", 0], ["10.20.0.99", 1], ["10.20.0.99", 1]], [before, added, dns_first]
  end

  # An outage that holds every worker (Igai.max_workers = 4: two stalled single-label names
  # behind a search domain, whose zone is then stuck, and two of another dead zone) does not
  # delay hosts-file names: before the fast path, localhost waited in the single-label zone's
  # queue and the others for a free worker, until the 30 s resolver timeout (cut here at 1 s).
  def test_hosts_file_names_answer_at_once_while_dns_outages_hold_every_worker
    code = <<~RUBY
      require "igai"
      require "json"
      def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Igai.max_workers = 4
      stalled = ["stall-a", "stall-b", "stall-c-\#{$$}.igai-dead.test", "stall-d-\#{$$}.igai-dead.test"]
      stalled.each do |name|
        Socket.interruptible_getaddrinfo(name, 80, timeout: 0.05)
      rescue Errno::ETIMEDOUT
      end
      during = Igai.stats.slice(:abandoned, :workers)
      took = ["localhost", "igai-hosts-entry.example", "igai-hosts-entry", "multi"].map do |name|
        Array.new(3) do
          start = now
          begin
            Socket.interruptible_getaddrinfo(name, 80, :INET, timeout: 1)
          rescue Errno::ETIMEDOUT
            nil # waited behind the outage: took says how long
          end
          now - start
        end.min
      end
      puts JSON.generate(during: during, took: took, inline: Igai.stats[:inline])
    RUBY
    resolv = "nameserver 127.0.0.1\nsearch #{Bed::STALLED_ZONE}\noptions timeout:30 attempts:1\n"
    output, status = run_ruby_with_files(code, files: {
                                           "/etc/nsswitch.conf" => "hosts: files dns\n",
                                           "/etc/hosts" => "#{HOSTS}127.0.1.1 igai-hosts-entry.example igai-hosts-entry\n",
                                           "/etc/resolv.conf" => resolv
                                         })
    assert status.success?, output
    report = JSON.parse(output.lines.last, symbolize_names: true)
    assert_equal({ abandoned: 4, workers: 4 }, report[:during])
    assert_equal 12, report[:inline]
    # The plain call takes tens of microseconds; 0.25 s is a bound a loaded machine keeps.
    report[:took].each { |took| assert_operator took, :<, 0.25, report.inspect }
  end
end
