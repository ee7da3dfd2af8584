# frozen_string_literal: true

# Differential fuzzer: Socket.interruptible_getaddrinfo / interruptible_getnameinfo against
# Socket.getaddrinfo / getnameinfo, on random argument lists, inside the stalled-DNS bed.
# Run by `rake fuzz` (rakelib/fuzz.rake), or directly:
#
#   test/bed/run ruby -Ilib -Itest test/fuzz/differential.rb
#
# Every case builds its argument list twice from the same seed (objects with to_str/to_int
# are made afresh for each call), calls MRI's method with one and igai's with the other, and
# compares the outcomes: the result (every string with its encoding), or the exception's
# class, message and error_code. The committed corpus (test/fuzz/corpus/*.rb) is replayed
# first, then random cases run until the time is up. On a mismatch the case is printed with
# how to replay it, and the process exits 1.
#
# Arguments mix valid and invalid values of every kind: hosts that the bed's DNS server
# answers at once (never stalled or delayed names), NXDOMAIN/REFUSED/SERVFAIL names,
# /etc/hosts names, numeric hosts in many spellings, strings with NUL, newlines, unicode,
# other encodings, huge lengths; integers of every size, symbols, floats, arrays, hashes,
# nil, objects with to_str/to_int/to_ary (also ones that raise or return the wrong type),
# family and socket type names, flag bit soup; packed sockaddrs (valid, truncated, padded,
# random), Addrinfo objects and [family, port, host(, address)] arrays for getnameinfo.
# Now and then a case runs under GC.stress, or with BasicSocket.do_not_reverse_lookup off.
#
# Environment:
#   FUZZ_SECONDS=60        how long to generate cases (the corpus always runs in full)
#   FUZZ_SEED=N            seed of the random cases (printed at start; default: random)
#   FUZZ_CASE=N            run only the random case with this case seed (as printed)
#   FUZZ_STATE=PATH        where the case being run is written, for a crash (default:
#                          tmp/fuzz/current_case.txt)

require "igai"
require "socket"
require "fileutils"
require_relative "../support/bed"

module IgaiFuzz
  Bed = IgaiTest::Bed
  ROOT = File.expand_path("../..", __dir__)
  HANG_SECONDS = 30 # both calls of one case together; the bed answers in milliseconds

  # Objects that convert (or fail to convert) through Ruby's implicit conversion methods.
  class ToStr
    def initialize(value) = @value = value
    def to_str = @value.is_a?(Exception) ? raise(@value) : @value
    def inspect = "ToStr(#{@value.inspect})"
  end

  class ToInt
    def initialize(value) = @value = value
    def to_int = @value.is_a?(Exception) ? raise(@value) : @value
    def inspect = "ToInt(#{@value.inspect})"
  end

  class ToAry
    def initialize(value) = @value = value
    def to_ary = @value.is_a?(Exception) ? raise(@value) : @value
    def inspect = "ToAry(#{@value.inspect})"
  end

  # An object with no conversions at all, and a stable inspect (messages quote it).
  class Opaque
    def inspect = "#<Opaque>"
  end

  # Bed names. Deterministic in their tag, so that both builds of a case use the same names;
  # none is stalled or delayed.
  module Names
    PREFIXES = { answered: "ok", dual: "dual", nxdomain: "nx", refused: "refused", servfail: "servfail" }.freeze

    module_function

    def bed(kind, tag) = "#{PREFIXES.fetch(kind)}-fuzz#{Process.pid}-#{tag}.#{Bed::ZONE}"
  end

  # Builds argument lists from a Random. Re-running with an equal Random gives an equal list.
  class Generator
    AI_FLAGS = %i[AI_PASSIVE AI_CANONNAME AI_NUMERICHOST AI_NUMERICSERV AI_V4MAPPED AI_ALL
                  AI_ADDRCONFIG].filter_map { |name| Socket.const_get(name) if Socket.const_defined?(name) }
    NI_FLAGS = %i[NI_NUMERICHOST NI_NUMERICSERV NI_NOFQDN NI_NAMEREQD NI_DGRAM].map { |n| Socket.const_get(n) }
    FAMILY_NAMES = %w[INET INET6 UNSPEC UNIX AF_INET AF_INET6 AF_UNSPEC PF_INET PF_INET6 PF_UNSPEC
                      AF_UNIX IPX AF_PACKET PACKET inet INET7 AF_ SOCK_STREAM] + ["", "AF_INET\0x"]
    SOCKTYPE_NAMES = %w[STREAM DGRAM RAW SEQPACKET RDM SOCK_STREAM SOCK_DGRAM SOCK_RAW
                        SOCK_SEQPACKET INET stream BOGUS SOCK_] + ["", "STREAM\0"]
    FAMILIES = [Socket::AF_INET, Socket::AF_INET6, Socket::AF_UNSPEC, Socket::AF_UNIX, 17, 3, 255, 9999, -1]
    SOCKTYPES = [0, Socket::SOCK_STREAM, Socket::SOCK_DGRAM, Socket::SOCK_RAW, Socket::SOCK_SEQPACKET, 4, 10, -1]
    PROTOCOLS = [0, Socket::IPPROTO_TCP, Socket::IPPROTO_UDP, 132, 136, 255, 256, -1]
    SERVICES = %w[80 http https domain ssh 0 65535 65536 -1 +80 0x50 80x 00080 igai-no-such-service
                  tcp smtp 1 08 9999999999999999999999] + ["", " 80", "80 ", "8\n0", "ht\0tp"]

    def initialize(random)
      @random = random
    end

    def rand(n = nil) = n ? @random.rand(n) : @random.rand
    def chance(p) = rand < p
    def pick(list) = list[rand(list.size)]

    # [:getaddrinfo | :getnameinfo, args]
    def call
      chance(0.7) ? [:getaddrinfo, getaddrinfo_args] : [:getnameinfo, getnameinfo_args]
    end

    def getaddrinfo_args
      return well_formed_getaddrinfo_args if chance(0.35)

      args = [host, service, family, socktype, protocol, ai_flags, reverse_lookup]
      count = case rand(20)
              when 0 then rand(2)          # too few
              when 1 then 8 + rand(2)      # too many
              else 2 + rand(6)             # 2..7
              end
      Array.new(count) { |i| i < args.size ? args[i] : extra }
    end

    # Only values of the expected kinds, so that most cases get as far as the lookup.
    def well_formed_getaddrinfo_args
      [
        chance(0.6) ? bed_host : numeric_host,
        pick([nil, 80, "80", "http", "domain", 0, "", "65535"]),
        pick([nil, nil, Socket::AF_INET, Socket::AF_INET6, Socket::AF_UNSPEC, :INET, "AF_INET6", :PF_INET]),
        pick([nil, nil, 0, Socket::SOCK_STREAM, :DGRAM, "SOCK_RAW", :SEQPACKET]),
        pick([nil, nil, 0, Socket::IPPROTO_TCP, Socket::IPPROTO_UDP, 132]),
        chance(0.5) ? nil : bit_soup(AI_FLAGS),
        pick([nil, nil, true, false, :numeric, :hostname])
      ].first(2 + rand(6))
    end

    def getnameinfo_args
      case rand(12)
      when 0 then []
      when 1 then [sockaddr, ni_flags, extra]
      when 2, 3 then [sockaddr]
      else [sockaddr, ni_flags]
      end
    end

    # --- values ----------------------------------------------------------------------------

    def tag = rand(1_000)

    def bed_host
      case rand(10)
      when 0..3 then Names.bed(:answered, tag)
      when 4, 5 then Names.bed(:dual, tag)
      when 6 then Names.bed(:nxdomain, tag)
      when 7 then Names.bed(:refused, tag)
      when 8 then Names.bed(:servfail, tag)
      else pick([Bed::HOSTS_NAME, Bed::HOSTS_SHORT_NAME, Bed::HOSTS_V6_NAME, "localhost", "LOCALHOST",
                 "localhost.", "ip6-localhost", "example.com", "no-such-name", "a.b.c.d.example"])
      end
    end

    def ipv4 = Array.new(4) { pick([0, 1, 127, 255, rand(256)]) }.join(".")

    def ipv6
      groups = Array.new(8) { pick(["0", "1", "ffff", "FFFF", rand(0x10000).to_s(16), "db8", "2001", "fe80"]) }
      case rand(6)
      when 0 then groups.join(":")
      when 1 then "#{groups.first(2).join(':')}::#{groups.last}"
      when 2 then "::ffff:#{ipv4}"
      when 3 then "::#{pick(['1', ''])}"
      when 4 then "fe80::#{groups.last}%#{pick(%w[lo 1 eth0 999 x])}"
      else "#{groups.first(3).join(':')}::#{groups.last(2).join(':')}"
      end
    end

    def numeric_host
      case rand(10)
      when 0..2 then ipv4
      when 3..5 then ipv6
      when 6 then pick(["1.2.3", "127.1", "0x7f.0.0.1", "01.2.3.4", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ",
                        " 1.2.3.4", "4294967295", "0", "1e3", "::1::", ":::", "[::1]", "1::2::3", "g::1"])
      when 7 then "#{ipv4}#{pick(['.', '\\n', '%lo', '/24', ':80'])}"
      when 8 then pick(["<any>", "<broadcast>", "", "<ANY>", "<any>\0"])
      else "#{ipv6}#{pick(['', '%', '%0', '%%', '.'])}"
      end
    end

    def weird_string
      case rand(12)
      when 0 then "a" * pick([63, 64, 253, 254, 255, 1023, 1024, 1025, 4000])
      when 1 then (["x" * 63] * pick([3, 4, 5, 16])).join(".")
      when 2 then "#{pick(['localhost', ipv4, 'x'])}\0#{pick(['', 'y', '\\0'])}"
      when 3 then "#{pick(['localhost', ipv4, Names.bed(:answered, tag)])}\n"
      when 4 then "\n#{pick(['localhost', ipv4])}"
      when 5 then pick(["ünïcödé.example", "例え.テスト", "\u{1F600}", "xn--bcher-kva.example", "bücher"])
      when 6 then "localhost".encode(pick([Encoding::UTF_16LE, Encoding::UTF_32BE]))
      when 7 then Array.new(rand(40)) { rand(256).chr }.join.b
      when 8 then "\xff\xfe\x80".dup.force_encoding(Encoding::UTF_8) # broken UTF-8
      when 9 then pick(["localhost", ipv4]).dup.force_encoding(pick([Encoding::ASCII_8BIT, Encoding::US_ASCII, Encoding::EUC_JP]))
      when 10 then " " * rand(5)
      else pick(%w[. .. - _ * ? %s %n localhost..example -x.example x_y.example])
      end
    end

    def integer
      case rand(8)
      when 0 then rand(256)
      when 1 then rand(65_537)
      when 2 then -rand(1 << 31)
      when 3 then pick([2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64, -(2**31), -(2**63) - 1])
      when 4 then pick([2**70, -(2**70), 10**40])
      when 5 then 0x7f000001
      when 6 then rand(1 << 32)
      else 0
      end
    end

    # Something that is not the expected kind of value.
    def odd_value(depth = 0)
      case rand(14)
      when 0 then nil
      when 1 then true
      when 2 then false
      when 3 then pick([1.5, 80.0, -0.0, Float::NAN, Float::INFINITY, 1e20])
      when 4 then pick(%i[localhost http INET STREAM bogus numeric hostname])
      when 5 then Opaque.new
      when 6 then depth < 2 ? Array.new(rand(4)) { odd_value(depth + 1) } : []
      when 7 then pick([{}, { timeout: 1 }, { "a" => 1 }])
      when 8 then ToStr.new(depth < 2 ? plain_string : "x")
      when 9 then ToStr.new(pick([1, nil, :sym, IOError.new("to_str raised"), TypeError.new("bad")]))
      when 10 then ToInt.new(pick([80, 2**40, -1, "80", nil, ArgumentError.new("to_int raised")]))
      when 11 then 2r / 3 # Rational
      when 12 then Object
      else integer
      end
    end

    def plain_string = pick(["localhost", ipv4, "80", "http", "INET", "STREAM", Names.bed(:answered, tag)])

    def host
      case rand(20)
      when 0..6 then bed_host
      when 7..11 then numeric_host
      when 12..14 then weird_string
      when 15 then integer
      when 16 then ToStr.new(pick([bed_host, numeric_host]))
      else odd_value
      end
    end

    def service
      case rand(10)
      when 0..2 then nil
      when 3..4 then pick([80, 0, 443, 65_535, 65_536, -1, 2**16 + 80, 2**62, 2**64])
      when 5..7 then pick(SERVICES)
      when 8 then chance(0.5) ? ToStr.new(pick(SERVICES)) : "s" * pick([31, 32, 33, 100])
      else odd_value
      end
    end

    def family = constant(FAMILIES, FAMILY_NAMES)

    def socktype = constant(SOCKTYPES, SOCKTYPE_NAMES)

    # A family or socktype argument: nil, a number, a name (String or Symbol), a to_str
    # object holding a name, or something odd.
    def constant(numbers, names)
      case rand(10)
      when 0..3 then nil
      when 4, 5 then pick(numbers)
      when 6 then pick(names).then { |name| chance(0.5) ? name.to_sym : name }
      when 7 then ToStr.new(pick(names))
      else odd_value
      end
    end

    def protocol
      case rand(10)
      when 0..4 then nil
      when 5..7 then pick(PROTOCOLS)
      when 8 then pick(["6", :tcp, ToInt.new(6)])
      else odd_value
      end
    end

    def bit_soup(flags)
      flags.select { chance(0.3) }.sum(0) | (chance(0.1) ? 1 << rand(31) : 0)
    end

    def ai_flags
      case rand(10)
      when 0..3 then nil
      when 4..7 then bit_soup(AI_FLAGS)
      when 8 then pick([-1, 2**31, 2**40, "1", 1.0])
      else odd_value
      end
    end

    def ni_flags
      case rand(10)
      when 0..1 then nil
      when 2..7 then bit_soup(NI_FLAGS) | (chance(0.6) ? Socket::NI_NUMERICHOST : 0)
      when 8 then pick([-1, 2**31, 2**40, "1", 1.5, 0])
      else odd_value
      end
    end

    def reverse_lookup
      case rand(10)
      when 0..5 then nil
      when 6 then pick([true, false])
      when 7 then pick(%i[numeric hostname bogus NUMERIC])
      else pick(["true", 1, 0, Opaque.new, ToStr.new("hostname"), :"numeric\0"])
      end
    end

    def extra = odd_value

    # --- getnameinfo's first argument ------------------------------------------------------

    def sockaddr
      case rand(16)
      when 0..3 then packed_ip
      when 4 then packed_ip.then { |s| s[0, rand(s.bytesize)] }
      when 5 then packed_ip + "\0" * pick([1, 8, 100, 2000, 2100])
      when 6 then packed_unix
      when 7 then random_bytes
      when 8 then addrinfo
      when 9..12 then sockaddr_array
      when 13 then ToStr.new(packed_ip)
      when 14 then ToAry.new(sockaddr_array)
      else odd_value
      end
    end

    def port = pick([0, 22, 53, 80, 443, 65_535, rand(65_536)])

    def packed_ip
      host = chance(0.5) ? ipv4 : pick(["::1", "::", "fe80::1", "2001:db8::1", "::ffff:127.0.0.1", "ff02::1"])
      packed = Socket.sockaddr_in(port, host)
      return packed unless packed.bytesize == 28 && chance(0.3)

      packed.dup.tap { |s| s[24, 4] = [pick([1, 2, 999, 2**32 - 1])].pack("L") } # scope id
    end

    # AF_UNIX with its path NUL-terminated inside the string (see UNCOMPARABLE).
    def packed_unix
      path = pick(["", "/tmp/sock", "x" * 107, "\u00e9"])
      [Socket::AF_UNIX].pack("S") + path.b + "\0" * (1 + rand(3))
    end

    def random_bytes = Array.new(rand(40)) { rand(256) }.pack("C*")

    def addrinfo
      case rand(5)
      when 0 then Addrinfo.tcp(ipv4, port)
      when 1 then Addrinfo.udp("::1", port)
      when 2 then Addrinfo.unix(pick(["/tmp/igai-fuzz", ""]))
      when 3 then Addrinfo.ip(ipv4)
      else Addrinfo.tcp("fe80::1%lo", port)
      end
    end

    def sockaddr_array
      family = pick(["AF_INET", "AF_INET6", :INET, nil, "AF_UNSPEC", Socket::AF_INET, "BOGUS", ToStr.new("INET")])
      host = chance(0.6) ? pick([ipv4, "::1", "127.0.0.1", "localhost"]) : pick([bed_host, numeric_host, weird_string, integer])
      array = [family, pick([port, "80", "http", nil, "x" * 40, -1]), host]
      array << pick([nil, ipv4, "::1", "1.2.3", host]) if chance(0.3)
      array << odd_value if chance(0.05)
      array = array.first(rand(3)) if chance(0.05)
      array
    end
  end

  # Cases where MRI's answer is not reproducible, so there is nothing to compare with.
  # Each entry: description => predicate on [method, args].
  UNCOMPARABLE = {
    "AF_UNIX sockaddr whose path has no NUL: MRI copies it into an uninitialised stack " \
    "buffer and glibc's getnameinfo reads the path on to a NUL, so MRI returns whatever " \
    "followed (igai zero-fills: test_getnameinfo.rb)" => lambda do |method, args|
      next false unless method == :getnameinfo && !args.empty?

      sockaddr = args[0]
      sockaddr = sockaddr.to_str if sockaddr.is_a?(ToStr)
      sockaddr = sockaddr.to_sockaddr if sockaddr.is_a?(Addrinfo) # Addrinfo.unix("") has no path
      sockaddr.is_a?(String) && sockaddr.bytesize >= 2 &&
        sockaddr.unpack1("S") == Socket::AF_UNIX && !sockaddr.byteslice(2..).include?("\0")
    rescue StandardError
      false
    end
  }.freeze

  # Runs the corpus, then random cases; returns the process exit status.
  class Runner
    def initialize
      @seed = Integer(ENV.fetch("FUZZ_SEED", Random.new_seed % 2**64))
      @seconds = Float(ENV.fetch("FUZZ_SECONDS", "60"))
      @only_case = ENV["FUZZ_CASE"]&.then { |c| Integer(c) }
      @state = ENV.fetch("FUZZ_STATE", File.join(ROOT, "tmp/fuzz/current_case.txt"))
      @stats = Hash.new(0)
      @outcomes = Hash.new(0)
      FileUtils.mkdir_p(File.dirname(@state))
    end

    def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

    def run
      Bed.available? or abort("test/fuzz/differential.rb must run inside test/bed/run (rake fuzz)")
      puts "fuzz: seed #{@seed} (replay: FUZZ_SEED=#{@seed}), #{@seconds} s"
      start = now
      probe_collected_symbols unless @only_case
      replay_corpus unless @only_case
      random_cases(start)
      summary(now - start)
      0
    rescue Mismatch => e
      puts e.message
      1
    end

    class Mismatch < StandardError; end

    # A regression probe: igai once remembered Symbol VALUEs that the GC could free, and took
    # objects that later filled those heap slots for the Symbols. After a GC, plain objects fill
    # the freed slots, and each is passed as a family and as a socket type.
    def probe_collected_symbols
      2.times do |round|
        GC.start
        Array.new(20_000) { Opaque.new }.each_with_index do |object, i|
          [[object], [nil, object]].each do |family_socktype|
            args = ["127.0.0.1", 80, *family_socktype]
            check("collected-Symbol probe, round #{round}, object #{i}", :getaddrinfo, args, args.dup,
                  replay: "any run (the probe runs first)")
          end
        end
      end
    end

    def replay_corpus
      Dir[File.join(__dir__, "corpus/*.rb")].sort.each do |path|
        builds = Array.new(2) { Corpus.load(path) }
        builds[0].zip(builds[1]).each_with_index do |((method, args), (_, args2)), i|
          check("#{File.basename(path)}##{i}", method, args, args2, replay: "corpus #{path} case #{i}")
          @stats[:corpus] += 1
        end
      end
    end

    def random_cases(start)
      return random_case(@only_case, "case #{@only_case}") if @only_case

      master = Random.new(@seed)
      index = 0
      until index.positive? && now - start >= @seconds
        index += 1
        random_case(master.rand(2**64), "random ##{index}", "or FUZZ_SEED=#{@seed}, case ##{index}")
      end
    end

    def random_case(case_seed, name, also = nil)
      build = -> { Generator.new(Random.new(case_seed)).call }
      method, args = build.call
      _, args2 = build.call
      check(name, method, args, args2,
            replay: "FUZZ_CASE=#{case_seed}#{also ? " (#{also})" : ''}",
            stress: Random.new(case_seed ^ 0x5eed).rand < 0.01,
            reverse_default: Random.new(case_seed ^ 0xd0).rand < 0.05)
      @stats[:random] += 1
    end

    # Calls MRI's method with `args` and igai's with `args2` (an equal, separately built list).
    def check(name, method, args, args2, replay:, stress: false, reverse_default: false)
      File.write(@state, "#{name}: Socket.#{method}(#{args.map { |a| show(a) }.join(', ')}) [#{replay}]\n")
      if (reason = UNCOMPARABLE.keys.find { |key| UNCOMPARABLE[key].call(method, args) })
        @stats["skipped (uncomparable: #{reason[/\A[^:(]*/].strip})"] += 1
        return
      end

      @stats[method] += 1
      plain, ours = with_watchdog(name, method, args) do
        with_settings(stress, reverse_default) do
          [outcome { Socket.public_send(method, *args) },
           outcome { Socket.public_send(:"interruptible_#{method}", *args2) }]
        end
      end
      @outcomes[plain[0] == :ok ? :ok : plain[1]] += 1
      return if plain == ours

      raise Mismatch, <<~MSG
        fuzz: MISMATCH in #{name}
          Socket.#{method}(#{args.map { |a| show(a) }.join(', ')})
          Socket.#{method}:               #{plain.inspect[0, 2000]}
          Socket.interruptible_#{method}: #{ours.inspect[0, 2000]}
          #{stress ? 'under GC.stress; ' : ''}#{reverse_default ? 'with BasicSocket.do_not_reverse_lookup = false; ' : ''}replay: #{replay}
      MSG
    end

    # inspect, with the encoding of strings that are not UTF-8 (inspect hides it).
    def show(value)
      case value
      when String
        value.encoding == Encoding::UTF_8 ? value.inspect : "#{value.b.inspect}.force_encoding(#{value.encoding.name.inspect})"
      when Array then "[#{value.map { |v| show(v) }.join(', ')}]"
      else value.inspect
      end
    end

    # What a call produced, comparing everything a caller can observe.
    def outcome
      [:ok, deep(yield)]
    rescue StandardError, ScriptError => e
      code = e.respond_to?(:error_code) ? e.error_code : nil
      [:error, e.class, e.message, code]
    end

    def deep(value)
      case value
      when String then [value, value.encoding, value.frozen?]
      when Array then value.map { |v| deep(v) }
      else value
      end
    end

    def with_settings(stress, reverse_default)
      saved = BasicSocket.do_not_reverse_lookup
      BasicSocket.do_not_reverse_lookup = false if reverse_default
      GC.stress = true if stress
      yield
    ensure
      GC.stress = false
      BasicSocket.do_not_reverse_lookup = saved
    end

    # Nothing may hang: the bed answers in milliseconds. MRI's own call cannot be
    # interrupted, so a watchdog thread reports the case and ends the process.
    def with_watchdog(name, method, args)
      @current = [name, "Socket.#{method}(#{args.map { |a| show(a) }.join(', ')})", now]
      @watchdog ||= Thread.new do
        loop do
          sleep 1
          case_name, call, started = @current
          next unless started && now - started > HANG_SECONDS

          $stderr.puts "fuzz: HANG (> #{HANG_SECONDS} s) in #{case_name}: #{call}"
          exit!(1)
        end
      end
      yield
    ensure
      @current = nil
    end

    def summary(seconds)
      puts format("fuzz: %d cases in %.0f s (corpus %d, random %d): %s", @stats[:corpus] + @stats[:random],
                  seconds, @stats[:corpus], @stats[:random],
                  @stats.reject { |k, _| %i[corpus random].include?(k) }.map { |k, v| "#{k} #{v}" }.join(", "))
      top = @outcomes.sort_by { |_, n| -n }.first(12).map { |what, n| "#{what} #{n}" }.join(", ")
      puts "fuzz: outcomes: #{top}"
      puts "fuzz: no mismatch (seed #{@seed})"
    end
  end

  # Evaluates a corpus file: it calls `gai(*args)` and `gni(*args)` once per case, and may use
  # the helpers below. Evaluated afresh for each of the two calls, so each gets its own objects.
  class Corpus
    include Names

    def self.load(path)
      corpus = new
      corpus.instance_eval(File.read(path), path)
      corpus.cases
    end

    attr_reader :cases

    def initialize = @cases = []
    def gai(*args) = @cases << [:getaddrinfo, args]
    def gni(*args) = @cases << [:getnameinfo, args]
    def answered(tag = 0) = Names.bed(:answered, "c#{tag}")
    def dual(tag = 0) = Names.bed(:dual, "c#{tag}")
    def nxdomain(tag = 0) = Names.bed(:nxdomain, "c#{tag}")
    def refused(tag = 0) = Names.bed(:refused, "c#{tag}")
    def servfail(tag = 0) = Names.bed(:servfail, "c#{tag}")
    def to_str(value) = ToStr.new(value)
    def to_int(value) = ToInt.new(value)
    def to_ary(value) = ToAry.new(value)
    def opaque = Opaque.new
  end
end

exit IgaiFuzz::Runner.new.run if $PROGRAM_NAME == __FILE__
