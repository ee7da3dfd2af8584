# frozen_string_literal: true

# fork at the worst moments, igai against the built-in Socket.getaddrinfo of this Ruby (on
# MRI 3.4 it has a fork lock: fork waits for its running lookups, stalled ones included),
# each scenario in a fresh process (test/support/fork_scenarios.rb, which test_fork.rb runs
# too). Prints, per scenario: children that failed to resolve or hung, and the time fork
# took in the parent (median and worst).
#
#   test/bed/run ruby -Ilib -Itest bench/fork.rb     (or rake bench; rake bench:ruby34)
#
# Scenarios:
#   storm         200 forks while six threads resolve (DNS names and localhost, AI_ADDRCONFIG)
#   storm, busy   the same beside two busy loops
#   storm, pause  400 forks, each held up after igai's prepare handler (a random pause of up
#                 to 200 µs), so that answers keep arriving during the fork
#   first lookup  80 fresh processes fork during their very first lookup
#   stalled       forks while four lookups stall (the built-in: 3 forks, each may wait for
#                 the resolver's timeout)

require "json"
require "rbconfig"
require_relative "../test/support/bed"

abort "bench/fork.rb needs the test bed: #{IgaiTest::Bed.unavailable_reason}" unless IgaiTest::Bed.available?

SCRIPT = File.expand_path("../test/support/fork_scenarios.rb", __dir__)
LIB = File.expand_path("../lib", __dir__)
SCENARIOS = [
  ["storm", %w[storm 200], %w[storm 200]],
  ["storm, busy", %w[storm 200 --busy], %w[storm 200 --busy]],
  ["storm, pause", %w[storm 400 --pause=200], %w[storm 400 --pause=200]],
  ["first lookup", %w[first 80], %w[first 80]],
  ["stalled", %w[stalled 20], %w[stalled 3]]
].freeze

def run(args)
  output = IO.popen([RbConfig.ruby, "-I", LIB, SCRIPT, *args], err: %i[child out], &:read)
  abort "#{args.join(' ')} failed: #{output}" unless $?.success?
  JSON.parse(output.lines.last, symbolize_names: true)
end

def row(report)
  format("%3d/%-3d failed, %d hung; fork %6.2f ms median, %7.2f ms worst", report[:failed],
         report[:children], report[:hung], report[:median_fork_ms], report[:worst_fork_ms])
end

puts RUBY_DESCRIPTION
builtin = RUBY_VERSION >= "3.3" ? "built-in" : "plain (not interruptible)"
SCENARIOS.each do |name, igai, plain|
  puts format("%-13s igai      %s", name, row(run(igai)))
  puts format("%-13s %-9s %s", "", builtin[0, 9], row(run(plain + ["--builtin"])))
end
