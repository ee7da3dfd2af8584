# frozen_string_literal: true

# Per-call cost of Igai::Timeout.timeout against the Timeout library bundled with
# this Ruby, measured in one run: `ruby -Ilib bench/timeout.rb`.
#
# The block does nothing and never times out, so this measures what a call
# costs when it is set up and torn down: a request pushed to the watcher
# thread for Igai::Timeout; a new thread per call for Timeout 0.2 (Ruby 3.1).

require "timeout"
require "igai/timeout"
require_relative "support"

include BenchSupport

IGAI_CALLS = 20_000
STDLIB_CALLS = 5_000

# Warm up: start Igai's watcher thread, fill method caches.
1_000.times { Igai::Timeout.timeout(5) {} }
200.times { Timeout.timeout(5) {} }

igai = per_call(IGAI_CALLS, rounds: 3) { Igai::Timeout.timeout(5) {} }
stdlib = per_call(STDLIB_CALLS, rounds: 3) { Timeout.timeout(5) {} }

puts "#{RUBY_DESCRIPTION}, bundled timeout #{Timeout::VERSION}"
printf("Igai::Timeout.timeout(5) {}  %8.2f us/call  (best of 3 x %d calls)\n", igai, IGAI_CALLS)
printf("::Timeout.timeout(5) {}      %8.2f us/call  (best of 3 x %d calls)\n", stdlib, STDLIB_CALLS)
printf("ratio Igai/stdlib            %8.3f\n", igai / stdlib)
