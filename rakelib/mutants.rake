# frozen_string_literal: true

# Mutation testing of the Rust core with cargo-mutants (a crates.io tool:
# `cargo install cargo-mutants --locked`). Each mutant (an operator flipped, a function body
# replaced by a default value, ...) is built and run against `cargo test -p igai-core`; a
# mutant the tests do not notice is "missed". Every missed mutant must either be killed by a
# new test or be listed, with a one-line reason, in ext/igai-core/mutants-equivalent.md.
#
#   rake mutants                                   # all of ext/igai-core (~10 min here)
#   rake mutants FILES=src/wake.rs,src/addrinfo.rs   # some files only
#   rake mutants:diff [BASE=main]                  # only lines changed since BASE (in-diff)
#
# MUTANTS_JOBS=2 tests two mutants at once; MUTANTS_TIMEOUT (default 30 s, six times the
# tests' own time) ends a mutant whose tests hang: it counts as "timeout", i.e. noticed.
#
# Prints the counts (caught, missed, timeout, unviable) and each missed mutant marked as
# explained or not; fails when a missed mutant is not explained.

module Mutants
  CORE = "ext/igai-core"
  EQUIVALENT = File.join(CORE, "mutants-equivalent.md")
  OUTPUT = "tmp/mutants"

  module_function

  def cargo_mutants!
    return if system("cargo", "mutants", "--version", out: File::NULL, err: File::NULL)

    abort "rake mutants needs cargo-mutants: cargo install cargo-mutants --locked"
  end

  # Runs cargo mutants with extra arguments; its own exit status (2 when mutants are missed)
  # is not the verdict: the report below is.
  def run(*args)
    cargo_mutants!
    FileUtils.mkdir_p(OUTPUT)
    system("cargo", "mutants", "--package", "igai-core", "--output", OUTPUT, "--no-shuffle",
           # Leave out what .gitignore lists: .trixie/ (a whole Debian root), tmp/, target/.
           "--gitignore", "true",
           "--timeout", ENV.fetch("MUTANTS_TIMEOUT", "30"), "--jobs", ENV.fetch("MUTANTS_JOBS", "1"),
           *args)
    report
  end

  # The mutants listed in the file cargo-mutants wrote for an outcome.
  def listed(outcome)
    path = File.join(OUTPUT, "mutants.out", "#{outcome}.txt")
    File.exist?(path) ? File.readlines(path, chomp: true).reject(&:empty?) : []
  end

  # Explained survivors: the mutant descriptions in EQUIVALENT (lines "- `file: mutation`:
  # reason"), without line and column numbers, which move with every edit.
  def explained
    File.read(EQUIVALENT).scan(/^- `([^`]+)`/).flatten.map { |mutant| without_position(mutant) }
  end

  def without_position(mutant)
    mutant.sub(/\A(\S+?):\d+:\d+: /, '\1: ')
  end

  def report
    counts = %w[caught missed timeout unviable].to_h { |outcome| [outcome, listed(outcome).size] }
    puts "\nmutants: #{counts.map { |outcome, n| "#{n} #{outcome}" }.join(', ')}"
    known = explained
    unexplained = listed("missed").reject do |mutant|
      explanation = known.include?(without_position(mutant))
      puts "  missed (#{explanation ? 'equivalent, see mutants-equivalent.md' : 'UNEXPLAINED'}): #{mutant}"
      explanation
    end
    return if unexplained.empty?

    abort "#{unexplained.size} missed mutant(s) neither killed by a test nor explained in #{EQUIVALENT}"
  end
end

desc "Mutation-test ext/igai-core with cargo-mutants (FILES=src/a.rs,src/b.rs to narrow)"
task :mutants do
  files = ENV.fetch("FILES", "").split(",").flat_map { |file| ["--file", File.join(Mutants::CORE, file)] }
  Mutants.run(*files)
end

desc "Mutation-test only the lines changed since BASE (default main): cargo-mutants --in-diff"
task "mutants:diff" do
  base = ENV.fetch("BASE", "main")
  diff = File.join(Mutants::OUTPUT, "change.diff")
  FileUtils.mkdir_p(Mutants::OUTPUT)
  File.write(diff, `git diff #{base}... -- #{Mutants::CORE}`)
  if File.empty?(diff)
    puts "mutants:diff: no change to #{Mutants::CORE} since #{base}"
  else
    Mutants.run("--in-diff", diff)
  end
end

# rake mutants:ruby: the planted bugs of test/mutants/catalogue.rb, one at a time, against the
# test files each names (test/mutants/runner.rb). ONLY=id,id or FILES=cli.rb,timeout.rb
# narrow it; MUTANTS_RUBY_TIMEOUT (default 300 s) ends a run that hangs ("timeout": noticed).
# Entries marked ruby: "3.4" run in the trixie root (after `rake test:ruby34` built the
# extension there). Fails on an anchor not found once, or on a survivor not explained in
# test/mutants/mutants-equivalent.md.
namespace :mutants do
  desc "Plant the bugs of test/mutants/catalogue.rb in lib/ one at a time and run their tests"
  task ruby: :compile do
    require_relative "../test/mutants/runner"
    results = IgaiTest::Mutants.run(IgaiTest::Mutants.select(IgaiTest::Mutants.catalogue))
    left = IgaiTest::Mutants.unexplained(results)
    abort "#{left.size} survivor(s) neither killed by a test nor explained" if left.any?
  rescue IgaiTest::Mutants::Error => e
    abort "mutants:ruby: #{e.message}"
  end

  desc "Check the catalogue of rake mutants:ruby: every anchor found exactly once (no test run)"
  task "ruby:check" do
    require_relative "../test/mutants/runner"
    puts "mutants:ruby: #{IgaiTest::Mutants.catalogue.size} planted bugs, every anchor found once"
  rescue IgaiTest::Mutants::Error => e
    abort "mutants:ruby: #{e.message}"
  end
end
