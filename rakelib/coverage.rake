# frozen_string_literal: true

# Coverage of lib/ as a gate. With IGAI_COVERAGE=1, `rake test` (and so test:ruby33 and
# test:ruby34, which run it in the trixie root's copies) loads test/support/coverage.rb into
# every Ruby of the run, which writes the lines and branches of lib/ that ran to
# tmp/coverage/<ruby version>/ of the checkout that ran them. `rake coverage` merges what the
# host's Ruby and the matrix Rubies found (without running anything), prints line and branch
# figures per Ruby and merged, and fails on a line or branch that no Ruby ran and that
# test/coverage-gaps.txt does not list with the reason no suite run can reach it (see gaps).
# COVERAGE_PARTIAL=1 merges whatever Rubies have results (figures only for those).

require "digest"
require "fileutils"

module IgaiCoverage
  CHECKOUT = File.expand_path("..", __dir__)
  PROBE = File.join(CHECKOUT, "test/support/coverage.rb")
  GAPS = File.join(CHECKOUT, "test/coverage-gaps.txt")
  DIGEST = "lib.sha256"

  module_function

  def enabled?
    ENV["IGAI_COVERAGE"] == "1"
  end

  # Where a checkout keeps what a Ruby's suite run covered.
  def results_dir(checkout = CHECKOUT, version = RUBY_VERSION)
    File.join(checkout, "tmp/coverage", version)
  end

  # The sources' fingerprint: results are only merged with results of the same lib/.
  def lib_digest(checkout = CHECKOUT)
    files = Dir.glob("lib/**/*.rb", base: checkout).sort
    Digest::SHA256.hexdigest(files.map { |file| "#{file}\0#{File.read(File.join(checkout, file))}" }.join("\0"))
  end

  # The environment of a suite run: with IGAI_COVERAGE=1, an emptied results directory and
  # RUBYOPT loading the probe; else nothing.
  def env
    return {} unless enabled?

    dir = results_dir
    FileUtils.rm_rf(dir)
    FileUtils.mkdir_p(dir)
    File.write(File.join(dir, DIGEST), lib_digest)
    { "IGAI_COVERAGE_DIR" => dir, "RUBYOPT" => [ENV.fetch("RUBYOPT", nil), "-r#{PROBE}"].compact.join(" ") }
  end

  # {version => results dir} of the host's Ruby and the matrix Rubies (their checkouts in the
  # trixie root), found or not.
  def expected
    found = { RUBY_VERSION => results_dir }
    MriMatrix::RUBIES.each_key do |version|
      copy = File.join(MriMatrix::ROOT.dir, "build/igai-#{version}")
      dirs = Dir.glob(File.join(copy, "tmp/coverage", "#{version}.*"))
      found[version] = dirs.max_by { |dir| File.mtime(dir) } || File.join(copy, "tmp/coverage", "#{version}.x")
    end
    found
  end

  # {file => [{lines:, branches:}, ...]} of every process of one Ruby's run.
  def load(dir)
    Dir.glob(File.join(dir, "*.dump")).map { |path| Marshal.load(File.binread(path)) } # rubocop:disable Security/MarshalLoad
  end

  # One Ruby's results merged over its processes: {file => {lines: {line => ran?},
  # branches: {key => ran?}}}, a key being [condition, its line, target, its line] (no
  # columns: MRI 3.4's parser places them differently).
  def merge_processes(dumps)
    merged = Hash.new { |hash, file| hash[file] = { lines: {}, branches: {} } }
    dumps.each do |dump|
      dump.each do |file, counts|
        counts[:lines].each_with_index do |count, index|
          merged[file][:lines][index + 1] = (merged[file][:lines][index + 1] || false) | count.positive? if count
        end
        counts[:branches].each do |(condition, _, line), targets|
          targets.each do |(target, _, target_line), count|
            key = [condition, line, target, target_line]
            merged[file][:branches][key] = (merged[file][:branches][key] || false) | count.positive?
          end
        end
      end
    end
    merged
  end

  # Several Rubies' results as one: a line or branch ran if it ran on any of them.
  def merge_rubies(results)
    results.values.each_with_object(Hash.new { |h, f| h[f] = { lines: {}, branches: {} } }) do |result, all|
      result.each do |file, kinds|
        kinds.each do |kind, entries|
          entries.each { |key, ran| all[file][kind][key] = all[file][kind].fetch(key, false) | ran }
        end
      end
    end
  end

  def figure(result, kind)
    entries = result.values.flat_map { |kinds| kinds[kind].values }
    ran = entries.count(true)
    format("%d/%d (%.1f%%)", ran, entries.size, entries.empty? ? 100 : 100.0 * ran / entries.size)
  end

  # The listed gaps, [[file, kind, snippet, reason]]: a line of test/coverage-gaps.txt is
  # "FILE | KIND | SNIPPET | REASON": KIND is line, or the kind of branch (then, else, when, in,
  # body, &.), and SNIPPET a piece of the source line the line or branch starts on (not a line
  # number, which every edit above it would move).
  def gaps
    File.readlines(GAPS, chomp: true).each_with_index.filter_map do |line, index|
      next if line.strip.empty? || line.start_with?("#")

      fields = line.split(" | ", 4).map(&:strip)
      abort "coverage: #{GAPS}:#{index + 1}: not \"FILE | KIND | SNIPPET | REASON\": #{line}" \
        unless fields.size == 4 && fields.none?(&:empty?)
      fields
    end
  end

  # The source lines of file, by number.
  def source(file)
    @source ||= {}
    @source[file] ||= [nil, *File.readlines(File.join(CHECKOUT, file), chomp: true)]
  end

  # What no Ruby ran, as [file, line, kind, description].
  def unexecuted(merged)
    merged.sort.flat_map do |file, kinds|
      lines = kinds[:lines].reject { |_, ran| ran }.map { |line, _| [file, line, "line", "line #{line}"] }
      branches = kinds[:branches].reject { |_, ran| ran }.map do |(condition, line, target, target_line), _|
        [file, target_line, target.to_s, "#{target} branch at line #{target_line} (of the #{condition} at line #{line})"]
      end
      lines + branches
    end
  end

  def covers?(gap, file, line, kind)
    g_file, g_kind, snippet, = gap
    g_file == file && g_kind == kind && source(file)[line].to_s.include?(snippet)
  end

  def report
    partial = ENV["COVERAGE_PARTIAL"] == "1"
    digest = lib_digest
    results = {}
    expected.each do |version, dir|
      stamp = File.join(dir, DIGEST)
      problem = if !File.exist?(stamp) then "no results in #{dir}"
                elsif File.read(stamp) != digest then "results in #{dir} are of other sources of lib/"
                end
      if problem
        abort "coverage: Ruby #{version}: #{problem}; run its suite with IGAI_COVERAGE=1 " \
              "(rake test / test:ruby33 / test:ruby34)" unless partial
        puts "coverage: Ruby #{version} left out: #{problem}"
        next
      end
      results[File.basename(dir)] = merge_processes(load(dir))
    end
    abort "coverage: no results at all" if results.empty?

    results.each do |version, result|
      puts format("coverage %-7s lines %s, branches %s", version, figure(result, :lines), figure(result, :branches))
    end
    merged = merge_rubies(results)
    puts format("coverage merged  lines %s, branches %s", figure(merged, :lines), figure(merged, :branches))
    check(merged)
  end

  def check(merged)
    gap_list = gaps
    gap_list.each do |file, kind, snippet, _|
      next if File.exist?(File.join(CHECKOUT, file)) && source(file).any? { |text| text.to_s.include?(snippet) }

      abort "coverage: #{File.basename(GAPS)}: #{file} has no line with #{snippet.inspect} (#{kind}): the " \
            "code moved; list the gap again on the line that now holds it, or remove it"
    end
    missing = unexecuted(merged)
    unlisted = missing.reject { |file, line, kind, _| gap_list.any? { |gap| covers?(gap, file, line, kind) } }
    puts "coverage: #{missing.size - unlisted.size} unexecuted lines and branches listed in #{File.basename(GAPS)}"
    gap_list.each do |gap|
      next if missing.any? { |file, line, kind, _| covers?(gap, file, line, kind) }

      puts "coverage: listed but executed this time (remove it from #{File.basename(GAPS)} unless it depends on timing): " \
           "#{gap.take(3).join(' | ')}"
    end
    return if unlisted.empty?

    unlisted.each do |file, line, _, description|
      puts "  not executed by any Ruby: #{file}: #{description}: #{source(file)[line].to_s.strip}"
    end
    abort "coverage: #{unlisted.size} unexecuted lines or branches not listed in #{GAPS}"
  end
end

desc "Merge the coverage of lib/ from the suite runs on every Ruby (IGAI_COVERAGE=1); fail on an unlisted gap"
task :coverage do
  IgaiCoverage.report
end
