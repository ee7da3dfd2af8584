# frozen_string_literal: true

# DNS outages as users meet them, in the test bed with a 30 s resolver timeout (set per
# process through RES_OPTIONS): igai against the built-in Socket.getaddrinfo, each scenario in
# a fresh process. Prints the figures of the README's outage table.
#
#   rake bench                                  (every bench, MRI 3.1)
#   test/bed/run ruby -Ilib bench/outage.rb     (this one)
#   rake bench:ruby33                           (MRI 3.3, whose built-in call can be abandoned)
#
# Scenarios:
#   dead-zone    2000 distinct names of one dead zone, each abandoned by Timeout.timeout(0.002),
#                then 20 healthy names one by one (their times before and after the outage)
#   dead-zones   the same with 20 dead zones x 100 names
#                (both also report the CPU time the process uses in the 2 s after, while
#                the abandoned lookups stall: parked threads use none)
#   burst        200 threads at once each resolve a distinct name of one dead zone and give
#                up after 1 s, then one healthy name (a webhook fan-out into a dead zone)
#   lost-packet  a lookup whose first packet is lost, abandoned after 0.1 s, then the same call
#   dead-zones-120  120 dead zones x 2 names, each abandoned by Timeout.timeout(0.05), then
#                20 healthy names (a webhook sender whose customers' domains are lame)
#   waiting      120 threads wait (20 s limit) for names of 2 dead zones; after 1 s, 20 healthy
#                names (callers whose own timeout outlasts the resolver's)
#   sub-zone     4 names of a dead sub-zone (stall.igai-shared.test) abandoned after 0.05 s,
#                then 20 names of a live sub-zone of the same domain (ok.igai-shared.test)
#   single-label 4 single-label names resolved through the search list, stalled and abandoned
#                after 0.05 s, then localhost and a hosts-file name, then healthy single labels
#   slow-zone    32 threads resolve distinct names of one zone answered after 300 ms
#   trickle      24 lookups of 2 s at once, then one lookup every 0.5 s: threads over time
#                (default idle_timeout of 10 s)

require "json"
require "rbconfig"
require_relative "../test/support/bed"

Bed = IgaiTest::Bed
abort "bench/outage.rb needs the test bed: #{Bed.unavailable_reason}" unless Bed.available?

# One scenario with one implementation, in this process; returns a Hash of figures.
module Scenario
  module_function

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  def cpu = Process.clock_gettime(Process::CLOCK_PROCESS_CPUTIME_ID)
  def threads = Dir.children("/proc/self/task").size

  def lookup_threads
    Dir["/proc/self/task/*/comm"].count { |comm| File.read(comm).chomp == "igai-resolver" }
  end

  def resolve(impl, name, **options)
    if impl == "igai"
      Socket.interruptible_getaddrinfo(name, 80, :INET, **options)
    else
      Socket.getaddrinfo(name, 80, :INET)
    end
  end

  # Milliseconds each of 20 healthy lookups takes, one after the other; the block gives the
  # i-th name (default: a name of the healthy zone).
  def healthy(impl, phase)
    Array.new(20) do |i|
      start = now
      resolve(impl, block_given? ? yield(i) : "ok-#{phase}#{i}-#{$$}.#{Bed.zone('healthy')}")
      (now - start) * 1000
    end
  end

  # Resolves each name, giving up after `patience` seconds.
  def abandon(impl, names, patience)
    names.each do |name|
      Timeout.timeout(patience) { resolve(impl, name) }
    rescue Timeout::Error
      nil
    end
  end

  # Figures of healthy lookups before and after (lists of ms), and the threads.
  def figures(impl, before, after)
    { before_median: before.sort[10], before_max: before.max, after_max: after.max,
      after_median: after.sort[10], threads: threads }
      .merge(impl == "igai" ? { lookup_threads: lookup_threads, stats: Igai.stats } : {})
  end

  def dead_zones_120(impl)
    zones = Array.new(120) { |i| Bed.zone("dead#{i}") }
    before = healthy(impl, "before")
    abandon(impl, Array.new(240) { |i| "stall-#{i}-#{$$}.#{zones[i % 120]}" }, 0.05)
    figures(impl, before, healthy(impl, "after"))
  end

  def waiting(impl)
    before = healthy(impl, "before")
    Array.new(120) do |i|
      Thread.new { abandon(impl, ["stall-w#{i}-#{$$}.#{Bed.zone("dead#{i % 2}")}"], 20) }
    end
    sleep 1
    figures(impl, before, healthy(impl, "after"))
  end

  def sub_zone(impl)
    shared = Bed.zone("shared")
    before = healthy(impl, "before") { |i| "ok-before#{i}-#{$$}.ok.#{shared}" }
    abandon(impl, Array.new(4) { |i| "stall-#{i}-#{$$}.stall.#{shared}" }, 0.05)
    figures(impl, before, healthy(impl, "after") { |i| "ok-after#{i}-#{$$}.ok.#{shared}" })
  end

  def single_label(impl)
    local = ["localhost", Bed::HOSTS_SHORT_NAME]
    before_local = healthy(impl, "before") { |i| local[i % 2] }
    before = healthy(impl, "before") { |i| "ok-before#{i}-#{$$}" }
    abandon(impl, %w[redis memcached postgres rabbitmq].map { |name| "stall-#{name}-#{$$}" }, 0.05)
    after_local = healthy(impl, "after") { |i| local[i % 2] }
    figures(impl, before, healthy(impl, "after") { |i| "ok-after#{i}-#{$$}" })
      .merge(local_before_max: before_local.max, local_after_max: after_local.max)
  end

  def outage(impl, zones)
    before = healthy(impl, "before")
    start = now
    abandon(impl, Array.new(2000) { |i| "stall-#{i}-#{$$}.#{zones[i % zones.size]}" }, 0.002)
    abandoning = now - start
    after = healthy(impl, "after")
    cpu_before = cpu
    sleep 2
    figures(impl, before, after).merge(abandoning_s: abandoning, stalled_cpu_ms: (cpu - cpu_before) * 1000)
  end

  def dead_zone(impl) = outage(impl, [Bed.zone("dead")])
  def dead_zones(impl) = outage(impl, Array.new(20) { |i| Bed.zone("dead#{i}") })

  def burst(impl)
    Array.new(200) do |i|
      Thread.new do
        Timeout.timeout(1) { resolve(impl, "stall-burst#{i}-#{$$}.#{Bed.zone('dead')}") }
      rescue Timeout::Error
        nil
      end
    end.each(&:join)
    start = now
    resolve(impl, "ok-burst-#{$$}.#{Bed.zone('healthy')}")
    { healthy_ms: (now - start) * 1000, threads: threads }
      .merge(impl == "igai" ? { lookup_threads: lookup_threads, stats: Igai.stats } : {})
  end

  def lost_packet(impl)
    name = Bed.lost_first_name
    begin
      Timeout.timeout(0.1) { resolve(impl, name) }
    rescue Timeout::Error
      nil
    end
    start = now
    resolve(impl, name)
    { retry_ms: (now - start) * 1000 }
  end

  def slow_zone(impl)
    names = Array.new(32) { Bed.delayed_name(300) }
    start = now
    names.map { |name| Thread.new { resolve(impl, name) } }.each(&:join)
    { wall_ms: (now - start) * 1000 }
  end

  def trickle(impl)
    names = Array.new(24) { Bed.delayed_name(2000) }
    base = lookup_threads
    start = now
    names.map { |name| Thread.new { resolve(impl, name) } }.each(&:join)
    samples = {}
    i = 0
    until now - start > 24
      resolve(impl, "ok-trickle#{i += 1}-#{$$}.igai.test")
      elapsed = (now - start).floor
      samples[elapsed] ||= lookup_threads if (elapsed % 4).zero?
      sleep 0.5
    end
    { base: base, lookup_threads_by_second: samples }
  end
end

RESOLVER_TIMEOUT = 30
CHILD_ENV = { "RES_OPTIONS" => "timeout:#{RESOLVER_TIMEOUT} attempts:1",
              "IGAI_BED_RESOLVER_TIMEOUT" => RESOLVER_TIMEOUT.to_s }.freeze

# Single-label names go through this search domain.
SCENARIO_ENV = { "single-label" => { "LOCALDOMAIN" => Bed.zone("search") } }.freeze

def run_child(scenario, impl)
  lib = File.expand_path("../lib", __dir__)
  env = CHILD_ENV.merge(SCENARIO_ENV.fetch(scenario, {}))
  output = IO.popen([env, RbConfig.ruby, "-I", lib, __FILE__, scenario, impl], &:read)
  JSON.parse(output.lines.last, symbolize_names: true)
end

if ARGV.size == 2
  require "igai"
  require "timeout"
  scenario, impl = ARGV
  puts JSON.generate(Scenario.public_send(scenario.tr("-", "_"), impl))
  $stdout.flush
  exit!(0) # do not wait for lookups stuck until the resolver timeout
end

# " (N lookup threads)" for igai's figures; nothing for the built-in's.
def lookup_threads_note(figures)
  figures[:lookup_threads] ? " (#{figures[:lookup_threads]} lookup threads)" : ""
end

builtin_abandons = RUBY_VERSION >= "3.3"
impls = builtin_abandons ? %w[igai builtin] : %w[igai]
puts "outage scenarios on ruby #{RUBY_VERSION}, resolver timeout #{RESOLVER_TIMEOUT} s" \
     "#{' (built-in Socket.getaddrinfo cannot be abandoned here: not measured)' unless builtin_abandons}"

# One line of healthy-name figures.
def healthy_line(scenario, impl, figures)
  format("%-11s %-7s healthy before %5.2f ms (max %5.2f), after: median %5.2f ms, max %5.2f ms; %d threads%s",
         scenario, impl, figures[:before_median], figures[:before_max], figures[:after_median],
         figures[:after_max], figures[:threads], lookup_threads_note(figures))
end

%w[dead-zone dead-zones].each do |scenario|
  impls.each do |impl|
    r = run_child(scenario, impl)
    puts format("%s; abandoning took %.1f s; CPU while stalled %.1f ms in 2 s",
                healthy_line(scenario, impl, r), r[:abandoning_s], r[:stalled_cpu_ms])
    puts "            stats #{r[:stats]}" if r[:stats]
  end
end
%w[dead-zones-120 waiting sub-zone single-label].each do |scenario|
  impls.each do |impl|
    r = run_child(scenario, impl)
    local = r[:local_after_max] &&
            format("; localhost and hosts-file name max %.2f ms (before %.2f)", r[:local_after_max], r[:local_before_max])
    puts "#{healthy_line(scenario, impl, r)}#{local}"
    puts "            stats #{r[:stats]}" if r[:stats]
  end
end
# One line of figures per scenario and implementation, after its name.
LINES = {
  "burst" => lambda { |r|
    format("200 concurrent lookups abandoned, then a healthy name in %.2f ms; %d threads%s",
           r[:healthy_ms], r[:threads], lookup_threads_note(r))
  },
  "lost-packet" => ->(r) { format("retry answered in %.2f ms", r[:retry_ms]) }
}.freeze
LINES.each do |scenario, line|
  impls.each do |impl|
    r = run_child(scenario, impl)
    printf("%-11s %-7s %s\n", scenario, impl, line.call(r))
    puts "            stats #{r[:stats]}" if r[:stats]
  end
end
(impls | %w[builtin]).each do |impl|
  printf("%-11s %-7s 32 lookups of 300 ms done in %.0f ms\n", "slow-zone", impl,
         run_child("slow-zone", impl)[:wall_ms])
end
r = run_child("trickle", "igai")
puts format("%-11s %-7s lookup threads by second (base %d): %s", "trickle", "igai", r[:base],
            r[:lookup_threads_by_second].map { |s, n| "#{s}s:#{n}" }.join(" "))
