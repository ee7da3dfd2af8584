# frozen_string_literal: true

# Seconds until each client's stalled connect ends (a name whose DNS never answers; each
# client with its own 0.3 s connect/open timeout): plain, with igai/replace, and with
# igai/replace and IGAI_TIMEOUT=0.3. Run inside the bed (`rake bench`, or
# `test/bed/run ruby -Ilib bench/clients.rb`); IGAI_BED_RESOLVER_TIMEOUT sets how long the
# resolver waits. Each measurement runs in a child process, killed after CAP seconds.
#
# Prints a Markdown table (the README's client table takes its figures from it).

require "json"
require "rbconfig"
require_relative "../test/support/clients"

CAP = Float(ENV.fetch("IGAI_BENCH_CAP", "20"))
LIB = File.expand_path("../lib", __dir__)
CLIENTS = [*IgaiTest::Clients::ALL, IgaiTest::Clients::PG].freeze

CHILD = <<~RUBY
  require #{File.expand_path('../test/support/clients', __dir__).dump}
  client = IgaiTest::Clients.fetch(ENV.fetch("IGAI_BENCH_CLIENT"))
  client.load
  if ENV["IGAI_BENCH_REPLACE"] == "1"
    require "igai/replace"
    Igai.replace!(force: true)
  end
  port = IgaiTest::Clients::Servers.start(client.server)
  stalled = "stall-\#{Process.pid}-\#{rand(1 << 32)}.igai.test"
  start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  begin
    client.connect.call(stalled, port)
    outcome = "returned"
  rescue Exception => e # reported, whatever it is
    outcome = e.class.name
  end
  puts [Process.clock_gettime(Process::CLOCK_MONOTONIC) - start, outcome].join(" ")
RUBY

# Seconds the stalled connect took in a child with env, or nil if it outlasted CAP.
def measure(client, env)
  env = env.merge("IGAI_BENCH_CLIENT" => client.name)
  IO.popen(env, [RbConfig.ruby, "-I", LIB, "-e", CHILD], err: File::NULL) do |io|
    ready = io.wait_readable(CAP + 10) # the child's start-up counts too
    unless ready
      Process.kill(:KILL, io.pid)
      return nil
    end
    line = io.read.to_s.lines.last
    line && Float(line.split.first)
  end
end

def show(seconds)
  seconds ? format("%.2f s", seconds) : "> #{CAP.to_i} s"
end

resolver = ENV.fetch("IGAI_BED_RESOLVER_TIMEOUT", "2")
puts "Ruby #{RUBY_VERSION}, resolver timeout #{resolver} s, each client's own timeout 0.3 s"
puts
puts "| client | plain | igai/replace | igai/replace, IGAI_TIMEOUT=0.3 |"
puts "| --- | --- | --- | --- |"
CLIENTS.each do |client|
  plain = measure(client, {})
  replaced = measure(client, "IGAI_BENCH_REPLACE" => "1")
  limited = measure(client, "IGAI_BENCH_REPLACE" => "1", "IGAI_TIMEOUT" => "0.3")
  puts "| #{client.name} | #{show(plain)} | #{show(replaced)} | #{show(limited)} |"
end
