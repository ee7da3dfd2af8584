# frozen_string_literal: true

# test:memcheck runs test/memcheck/lookups.rb (10,000 lookups of every kind, including
# abandoned, coalesced, withdrawn and forked ones) under valgrind's memcheck inside the
# stalled-DNS bed, then reads valgrind's logs (test/memcheck/valgrind_log.rb) and fails on
# igai's memory errors:
#
#   * an invalid read, write or free with an igai frame on any of its stacks;
#   * a use of an uninitialised value by igai's code (or by libc on igai's behalf), or of a
#     value that came from a heap block igai allocated;
#   * a block igai allocated and lost for good ("definitely lost"), except the leaks a forked
#     child has by design (the parent's pool and the state of the parent's threads);
#   * a process killed by a signal, a log that did not reach valgrind's final summary, or
#     the workload itself failing (it checks every answer).
#
# Everything else valgrind reports (MRI's own heap, never freed at exit; uninitialised stack
# words its conservative GC reads) is counted and printed as information. Suppressions for
# MRI's noise: test/memcheck/ruby.supp. Logs and the full report: tmp/memcheck/.
#
# By default the extension is rebuilt for the check with debug info (release optimisations,
# its own target directory, tmp/memcheck/lib/igai/igai.so; lib/igai/igai.so is not touched)
# so that reports show igai's inlined frames and source lines. Environment:
#   MEMCHECK_DEBUGINFO=0     check lib/igai/igai.so as `rake compile` built it instead
#   MEMCHECK_LOOKUPS=N       scale the workload (default 10000)
#   IGAI_BED_RESOLVER_TIMEOUT seconds a stalled query lasts in the bed (default here: 1)
#
# test:memcheck:core runs igai-core's own Rust tests (unit, pool and property tests) under
# memcheck: stable Rust has no Miri or sanitizers, and the core's unsafe code (wake cells,
# futexes, getaddrinfo/getnameinfo buffers) is exercised there without Ruby in the way.

require "rbconfig"
require "json"
require "fileutils"

module Memcheck
  extend Rake::FileUtilsExt

  ROOT = File.expand_path("..", __dir__)
  DIR = File.join(ROOT, "tmp/memcheck")
  LOGS = File.join(DIR, "logs")
  LIB = File.join(DIR, "lib")
  SUPPRESSIONS = File.join(ROOT, "test/memcheck/ruby.supp")
  WORKLOAD = File.join(ROOT, "test/memcheck/lookups.rb")
  FORKED_CHILDREN = 3 # test/memcheck/lookups.rb's FORKS

  VALGRIND = %w[
    valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite --num-callers=30 --error-limit=no --track-origins=yes
    --fullpath-after=
  ].freeze

  module_function

  def clock = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def require_valgrind!
    return if system("valgrind --version", out: File::NULL, err: File::NULL)

    abort "test:memcheck needs valgrind (apt-get install valgrind)"
  end

  # The extension with debug info, built apart from lib/igai/igai.so; returns the directory
  # to put first on Ruby's load path (nil: use lib/ as it is).
  def build_with_debug_info
    return nil if ENV["MEMCHECK_DEBUGINFO"] == "0"

    env = { "RUBY" => RbConfig.ruby, "CARGO_PROFILE_RELEASE_DEBUG" => "true",
            "CARGO_PROFILE_RELEASE_STRIP" => "none" }
    target = File.join(DIR, "target")
    sh env, "cargo", "build", "--lib", "--release", "--manifest-path",
       File.join(ROOT, "ext/igai/Cargo.toml"), "--target-dir", target
    FileUtils.mkdir_p(File.join(LIB, "igai"))
    FileUtils.cp(File.join(target, "release/libigai.so"), File.join(LIB, "igai/igai.so"))
    LIB
  end

  def run_workload(load_path)
    FileUtils.rm_rf(LOGS)
    FileUtils.mkdir_p(LOGS)
    env = { "IGAI_BED_RESOLVER_TIMEOUT" => ENV.fetch("IGAI_BED_RESOLVER_TIMEOUT", "1") }
    command = [
      File.join(ROOT, "test/bed/run"), *VALGRIND, "--suppressions=#{SUPPRESSIONS}",
      "--log-file=#{LOGS}/vg.%p.log", RbConfig.ruby,
      *(load_path ? ["-I", load_path] : []), "-I", File.join(ROOT, "lib"), WORKLOAD
    ]
    ok = nil
    sh(env, *command) { |success, _| ok = success }
    ok
  end

  def check(load_path)
    require_relative "../test/memcheck/valgrind_log"
    start = clock
    workload_ok = run_workload(load_path)
    seconds = clock - start
    report = MemcheckLog.read(Dir[File.join(LOGS, "vg.*.log")])
    text = report.to_s
    File.write(File.join(DIR, "report.txt"), text)
    puts text
    problems = []
    problems << "the workload failed (see its output above)" unless workload_ok
    problems << "a valgrind log is incomplete" unless report.complete?
    if report.logs.size < 1 + FORKED_CHILDREN
      problems << "expected #{1 + FORKED_CHILDREN} processes, found #{report.logs.size} logs"
    end
    problems << "#{report.failures.size} memory error(s) in igai (FAILURE above)" if report.failures.any?
    puts format("test:memcheck: workload under valgrind took %.0f s; logs and report in %s",
                seconds, DIR.delete_prefix("#{ROOT}/"))
    abort "test:memcheck FAILED: #{problems.join('; ')}" if problems.any?

    puts "test:memcheck: no memory errors in igai"
  end

  # Runs each test executable of igai-core under memcheck. valgrind exits with
  # VALGRIND_ERRORS when it found a memory error (or a definite leak); any other failure is
  # a test that failed under valgrind's slowdown (the pool tests measure time), reported
  # but not counted: the plain `cargo test` judges the tests.
  VALGRIND_ERRORS = 99

  def check_core_tests
    failed = []
    core_test_binaries.each do |binary|
      name = File.basename(binary)
      # cargo runs a crate's tests in the crate's directory (proptest finds its
      # regressions file relative to it).
      Dir.chdir(File.join(ROOT, "ext/igai-core")) do
        # IGAI_UNDER_VALGRIND: tests that need threads running side by side return early.
        # --child-silent-after-fork: the resolver tests' forked children check a few atomics
        # and exit; what they inherited from the parent's threads is not a leak of theirs.
        sh({ "IGAI_UNDER_VALGRIND" => "1" },
           "valgrind", "--tool=memcheck", "--error-exitcode=#{VALGRIND_ERRORS}", "-q", "--leak-check=full",
           "--child-silent-after-fork=yes",
           "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite",
           "--track-origins=yes", "--suppressions=#{File.join(ROOT, 'test/memcheck/core.supp')}",
           binary, "--test-threads=2") do |ok, status|
          next if ok

          if status.exitstatus == VALGRIND_ERRORS
            failed << name
          else
            warn "test:memcheck:core: #{name}: tests failed under valgrind (#{status.exitstatus}); " \
                 "memcheck found no error"
          end
        end
      end
    end
    abort "test:memcheck:core FAILED: memory errors in #{failed.join(', ')}" if failed.any?

    puts "test:memcheck:core: no memory errors in igai-core's tests"
  end

  # The test executables of igai-core, built by cargo.
  def core_test_binaries
    output = IO.popen(%w[cargo test -p igai-core --no-run --message-format=json], chdir: ROOT, &:read)
    abort "cargo test --no-run failed" unless $?.success?
    output.lines.filter_map do |line|
      message = JSON.parse(line)
      next unless message["reason"] == "compiler-artifact" && message.dig("profile", "test")

      message["executable"]
    end
  end
end

namespace :test do
  desc "Run 10,000 lookups under valgrind memcheck in the DNS bed; fail on igai's memory errors"
  task memcheck: :compile do
    Memcheck.require_valgrind!
    start = Memcheck.clock
    load_path = Memcheck.build_with_debug_info
    Memcheck.check(load_path)
    puts format("test:memcheck: %.0f s in all", Memcheck.clock - start)
  end

  namespace :memcheck do
    desc "Run igai-core's Rust tests under valgrind memcheck"
    task :core do
      Memcheck.require_valgrind!
      Memcheck.check_core_tests
    end
  end
end
