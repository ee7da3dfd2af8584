# frozen_string_literal: true

# rake fuzz: the differential fuzzer (test/fuzz/differential.rb) inside the stalled-DNS bed.
# It replays test/fuzz/corpus/*.rb, then compares Socket.interruptible_getaddrinfo and
# interruptible_getnameinfo with MRI's Socket.getaddrinfo and getnameinfo on random argument
# lists for FUZZ_SECONDS (default 60), seeded: the seed is printed, FUZZ_SEED=N replays it,
# FUZZ_CASE=N one case. Fails on the first mismatch (printed with how to replay it), on a
# hang, and when the VM dies (the case it was running is printed).
#
# The Rust side's fuzzing is ext/igai-core/tests/properties.rs (proptest, part of
# `rake test:rust`; PROPTEST_CASES=N for a longer run).

require "rbconfig"
require "fileutils"

desc "Differential fuzzing against Socket.getaddrinfo/getnameinfo (FUZZ_SECONDS=60, FUZZ_SEED=N)"
task fuzz: :compile do
  root = File.expand_path("..", __dir__)
  state = File.join(root, "tmp/fuzz/current_case.txt")
  FileUtils.rm_f(state)
  command = [File.join(root, "test/bed/run"), RbConfig.ruby, "-I", File.join(root, "lib"),
             "-I", File.join(root, "test"), File.join(root, "test/fuzz/differential.rb")]
  sh({ "FUZZ_STATE" => state }, *command) do |ok, status|
    next if ok

    if status.exitstatus.nil? || status.exitstatus > 1
      # Not a mismatch report: the VM died (or the bed failed). Show what was running.
      last = File.exist?(state) ? File.read(state) : "(no case had started)\n"
      warn "fuzz: the fuzzer died (#{status.inspect}) while running:\n  #{last}"
    end
    abort "fuzz FAILED"
  end
end
