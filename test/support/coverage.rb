# frozen_string_literal: true

# Line and branch coverage of lib/ for `rake coverage` (rakelib/coverage.rake). Loaded through
# RUBYOPT=-r<this file> into every Ruby of a suite run made with IGAI_COVERAGE=1 (the test
# process, the children tests start, igai's own command, the bed's runner), it starts
# Ruby's Coverage at once and, as the process exits, writes what ran of lib/ to
# $IGAI_COVERAGE_DIR/<pid>-<random>.dump (Marshal: this loads no library a test could notice).
# A forked child (whose counts Ruby clears at the fork) writes its own file, also when it
# leaves with exit!, which skips at_exit and which forked children of the tests mostly use.
require "coverage"

module IgaiTest
  module CoverageProbe
    LIB = File.expand_path("../../lib", __dir__)

    module_function

    # {"lib/igai/x.rb" => {lines: [...], branches: {...}}} for the files of LIB.
    def results
      Coverage.result(stop: false, clear: false).filter_map do |path, counts|
        next unless path.start_with?("#{LIB}/")

        ["lib/#{path.delete_prefix("#{LIB}/")}", counts]
      end.to_h
    end

    def write(dir)
      found = results
      return if found.empty?

      name = format("%<pid>d-%<random>08x.dump", pid: Process.pid, random: Random.rand(2**32))
      File.binwrite(File.join(dir, name), Marshal.dump(found))
    rescue SystemCallError => e
      warn "igai coverage: cannot write to #{dir}: #{e.message}"
    end
  end
end

if (dir = ENV.fetch("IGAI_COVERAGE_DIR", nil)) && !Coverage.running?
  Coverage.start(lines: true, branches: true)
  at_exit { IgaiTest::CoverageProbe.write(dir) }

  # exit! (Kernel's, private, and Process's) writes the results first.
  { Kernel => :private, Process.singleton_class => :public }.each do |target, visibility|
    target.prepend(Module.new do
      define_method(:exit!) do |*args|
        IgaiTest::CoverageProbe.write(dir)
        super(*args)
      end
      send(visibility, :exit!)
    end)
  end
end
