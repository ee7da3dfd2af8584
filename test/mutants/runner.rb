# frozen_string_literal: true

require "fileutils"
require "rbconfig"
require "shellwords"

module IgaiTest
  # The mutation runner of the Ruby code (`rake mutants:ruby`): no Ruby mutation tool is
  # packaged in Debian, so this one applies the planted bugs of a catalogue
  # (test/mutants/catalogue.rb), one at a time, to a scratch copy of lib/, test/ and exe/
  # (never the working tree), runs the test files each names inside the stalled-DNS bed, and
  # reports whether the tests noticed: killed (they failed), survived (they passed), timeout
  # (they ran past the limit: noticed), unviable (the mutated file does not even parse).
  #
  # A catalogue entry: id, file, an exact snippet of the file (from, found exactly once) and
  # its replacement (to), the test files that should catch it (tests, optionally narrowed
  # with only: a minitest -n pattern), the Ruby it runs on (ruby: "3.4" for paths only MRI
  # 3.4 takes, run in the trixie root's copy; default the host's Ruby) and a one-line
  # description. Every survivor must be killed by a new test or be listed, with a reason,
  # in test/mutants/mutants-equivalent.md.
  module Mutants
    DIR = __dir__
    CHECKOUT = File.expand_path("../..", DIR)
    CATALOGUE = File.join(DIR, "catalogue.rb")
    EQUIVALENT = File.join(DIR, "mutants-equivalent.md")
    # What a scratch copy holds: everything the tests load.
    TREE = %w[lib test exe].freeze
    EXTENSION = "lib/igai/igai.so"
    FIELDS = %i[id file from to tests only ruby description].freeze

    # One planted bug.
    Mutant = Struct.new(*FIELDS, keyword_init: true) do
      def ruby
        self[:ruby] || "host"
      end

      # The file's text with the bug planted; raises Error unless +from+ occurs exactly once.
      def apply(text)
        count = text.scan(from).size
        unless count == 1
          where = count.zero? ? "not found" : "found #{count} times (it must be unique)"
          raise Error, "mutant #{id}: anchor #{where} in #{file}:\n  #{from.inspect}\n" \
                       "The file changed since the catalogue was written: re-anchor this entry " \
                       "in test/mutants/catalogue.rb on the code as it is now (same behaviour, " \
                       "new snippet), or drop it if that behaviour is gone."
        end
        text.sub(from) { to }
      end
    end

    # A catalogue that cannot be used as it stands.
    class Error < StandardError; end

    module_function

    # Every entry of the catalogue, checked: fields, unique ids, existing files, anchors
    # found exactly once in the working tree's files.
    def catalogue(path = CATALOGUE)
      entries = eval(File.read(path), empty_binding, path) # rubocop:disable Security/Eval
      mutants = entries.map do |entry|
        unknown = entry.keys - FIELDS
        raise Error, "catalogue entry #{entry[:id].inspect}: unknown fields #{unknown}" if unknown.any?

        Mutant.new(**entry)
      end
      check(mutants)
      mutants
    end

    # A binding with no local variables, for the catalogue's own.
    def empty_binding
      binding
    end

    def check(mutants)
      duplicates = mutants.map(&:id).tally.select { |_, n| n > 1 }.keys
      raise Error, "catalogue: repeated ids #{duplicates}" if duplicates.any?

      mutants.each do |mutant|
        missing = %i[id file from tests description].select { |field| mutant[field].to_s.empty? }
        missing << :to if mutant.to.nil? # "" deletes the anchor
        raise Error, "mutant #{mutant.id.inspect}: missing #{missing.join(', ')}" if missing.any?
        raise Error, "mutant #{mutant.id}: from and to are the same" if mutant.from == mutant.to

        mutant.apply(File.read(File.join(CHECKOUT, mutant.file)))
        mutant.tests.each do |test|
          raise Error, "mutant #{mutant.id}: no test file #{test}" unless File.file?(File.join(CHECKOUT, test))
        end
      end
    end

    # Ids explained in EQUIVALENT (lines "- `id`: reason").
    def explained
      File.exist?(EQUIVALENT) ? File.read(EQUIVALENT).scan(/^- `([^`]+)`/).flatten : []
    end

    # The entries ONLY (ids) and FILES (file names) select, all by default.
    def select(mutants, only: ENV.fetch("ONLY", ""), files: ENV.fetch("FILES", ""))
      ids = only.split(",")
      names = files.split(",")
      chosen = mutants.select do |mutant|
        (ids.empty? || ids.include?(mutant.id)) &&
          (names.empty? || names.include?(File.basename(mutant.file)))
      end
      unknown = ids - mutants.map(&:id)
      raise Error, "no mutant #{unknown.join(', ')} in the catalogue" if unknown.any?

      chosen
    end

    # Runs the mutants; prints one line each and the summary; returns the results.
    def run(mutants, out: $stdout)
      # Started in the background by a shell, this process ignores SIGINT, and so would the
      # tests' children, to which tests send it.
      previous = Signal.trap("INT", "DEFAULT")
      Signal.trap("INT", previous) unless previous == "IGNORE"
      results = mutants.group_by(&:ruby).flat_map do |ruby, group|
        bed = Bed.for(ruby)
        bed.prepare
        group.map do |mutant|
          result = bed.try(mutant)
          out.puts format("%-9s %5.0f s  %-40s %s", result[:outcome], result[:seconds], mutant.id,
                          mutant.description)
          result.merge(mutant: mutant)
        end
      end
      report(results, out)
      results
    end

    def report(results, out)
      counts = results.map { |result| result[:outcome] }.tally
      out.puts "\nmutants:ruby: #{results.size} planted: " +
               %w[killed survived timeout unviable].map { |o| "#{counts.fetch(o, 0)} #{o}" }.join(", ")
      known = explained
      results.select { |result| result[:outcome] == "survived" }.each do |result|
        mutant = result[:mutant]
        note = known.include?(mutant.id) ? "equivalent, see #{File.basename(EQUIVALENT)}" : "UNEXPLAINED"
        out.puts "  survived (#{note}): #{mutant.id}: #{mutant.file}: #{mutant.description}"
      end
    end

    # The unexplained survivors of results.
    def unexplained(results)
      known = explained
      results.select { |result| result[:outcome] == "survived" && !known.include?(result[:mutant].id) }
    end

    # A scratch copy of the tree and the Ruby that tests it: the host's, or one of the trixie
    # root (rakelib/mri_matrix.rake), whose copy of the tree built the extension for it.
    class Bed
      TIMEOUT = Float(ENV.fetch("MUTANTS_RUBY_TIMEOUT", "300"))
      SCRATCH = File.join(CHECKOUT, "tmp/mutants-ruby")

      def self.for(ruby)
        ruby == "host" ? new : TrixieBed.new(ruby)
      end

      # Where the scratch copy lives, as seen from here.
      def scratch
        File.join(SCRATCH, "host")
      end

      def extension
        File.join(CHECKOUT, EXTENSION)
      end

      def logs
        File.join(SCRATCH, "logs")
      end

      # A fresh copy of the working tree's lib/, test/ and exe/ and the built extension.
      def prepare
        raise Error, "#{extension} missing: run `rake compile` first" unless File.file?(extension)

        FileUtils.rm_rf(scratch)
        files = IO.popen(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *TREE],
                         chdir: CHECKOUT, &:read).split("\0")
        files.each do |rel|
          src = File.join(CHECKOUT, rel)
          next unless File.file?(src)

          FileUtils.mkdir_p(File.dirname(File.join(scratch, rel)))
          FileUtils.cp(src, File.join(scratch, rel), preserve: true)
        end
        FileUtils.cp(extension, File.join(scratch, EXTENSION))
        FileUtils.mkdir_p(logs)
      end

      # Plants the mutant in the copy, runs its tests, puts the file back; returns
      # {outcome:, seconds:}.
      def try(mutant)
        path = File.join(scratch, mutant.file)
        original = File.read(path)
        File.write(path, mutant.apply(original))
        start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        outcome = if parses?(path)
                    tests_pass(mutant)
                  else
                    "unviable"
                  end
        { outcome: outcome, seconds: Process.clock_gettime(Process::CLOCK_MONOTONIC) - start }
      ensure
        File.write(path, original) if original
      end

      def parses?(path)
        system(RbConfig.ruby, "-c", path, out: File::NULL, err: File::NULL)
      end

      # The test command, run in the copy: every file in one minitest process.
      def test_argv(mutant, ruby = RbConfig.ruby)
        load = "files = ARGV.shift(Integer(ARGV.shift)); files.each { |file| require File.expand_path(file) }"
        ["test/bed/run", ruby, "-Ilib", "-Itest", "-e", load, mutant.tests.size.to_s, *mutant.tests,
         *(mutant.only ? ["-n", mutant.only] : [])]
      end

      def command(mutant)
        ["nice", "-n", "10", *test_argv(mutant)]
      end

      # A bed that failed to start (a loaded machine) is tried again this many times.
      BED_RETRIES = 2

      # "killed", "survived" or "timeout"; the output goes to logs/<id>.log. A run in which
      # the bed itself failed ("igai test bed: ...", no test ran) proves nothing: it is run
      # again, and raises Error if the bed keeps failing.
      def tests_pass(mutant)
        (BED_RETRIES + 1).times do
          outcome = run_tests(mutant)
          return outcome unless outcome == "bed failed"
        end
        raise Error, "mutant #{mutant.id}: the bed failed to start #{BED_RETRIES + 1} times; see " \
                     "#{File.join(logs, "#{mutant.id}.log")}"
      end

      def run_tests(mutant)
        log = File.join(logs, "#{mutant.id}.log")
        # Strict, as on CI: a test that needs the bed fails rather than skips without it (a
        # mutant of the sandbox could otherwise pass by making the bed unavailable).
        pid = Process.spawn({ "IGAI_REQUIRE_BED" => "1" }, *command(mutant), chdir: scratch, out: log,
                                                                              err: %i[child out], pgroup: true,
                                                                              in: File::NULL)
        status = wait(pid)
        return "timeout" unless status
        return "survived" if status.success?

        output = File.read(log)
        bed_failed = output.match?(/^igai test bed: /) && !output.match?(/^\d+ runs, \d+ assertions/)
        bed_failed ? "bed failed" : "killed"
      end

      # The exit status, or nil after TIMEOUT (the group is then stopped: TERM, which the
      # bed passes on and cleans up after, then KILL).
      def wait(pid)
        give_up = Process.clock_gettime(Process::CLOCK_MONOTONIC) + TIMEOUT
        loop do
          _, status = Process.wait2(pid, Process::WNOHANG)
          return status if status
          break if Process.clock_gettime(Process::CLOCK_MONOTONIC) > give_up

          sleep 0.2
        end
        stop(pid)
        nil
      end

      def stop(pid)
        Process.kill("TERM", -pid)
        50.times do
          return if Process.wait(pid, Process::WNOHANG)

          sleep 0.2
        end
        Process.kill("KILL", -pid)
        Process.wait(pid)
      rescue Errno::ESRCH, Errno::ECHILD
        nil
      end
    end

    # A scratch copy inside the trixie root (.trixie/build/mutants-3.x), tested by MRI 3.x
    # there, with the extension `rake test:ruby3x` built in the root's copy of the tree.
    class TrixieBed < Bed
      def initialize(version)
        super()
        @version = version
        @binary = MriMatrix::RUBIES.fetch(version) { raise Error, "no MRI #{version} in the matrix" }[:binary]
      end

      def inside
        "/build/mutants-#{@version}"
      end

      def scratch
        File.join(MriMatrix::ROOT, inside)
      end

      def extension
        File.join(MriMatrix::ROOT, "build/igai-#{@version}", EXTENSION).tap do |path|
          next if File.file?(path)

          raise Error, "#{path} missing: run `rake test:ruby#{@version.delete('.')}` first (it builds " \
                       "the extension for MRI #{@version} in the trixie root)"
        end
      end

      # The test command, run by MriMatrix.in_root's shell in the root, as rake test:ruby3x
      # runs there.
      def command(mutant)
        script = "cd #{inside} && exec nice -n 10 #{test_argv(mutant, @binary).shelljoin}"
        [RbConfig.ruby, "-e", <<~RUBY, script]
          require "rake"
          load #{File.join(CHECKOUT, 'rakelib/mri_matrix.rake').dump}
          MriMatrix.in_root(ARGV[0], env: ENV.select { |name, _| name.match?(MriMatrix::PASSED_ON) })
        RUBY
      end
    end
  end
end
