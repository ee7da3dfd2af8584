# frozen_string_literal: true

# rake ci: every check CI makes, in order (.ci/run installs what they need, then runs this).
# The three suite runs (test:ruby33, test:ruby34, test) record the coverage of lib/
# (IGAI_COVERAGE=1), which `coverage` then merges and checks without running anything again;
# `mutants:ruby:check` makes sure every planted bug of rake mutants:ruby still finds its place.

CI_STEPS = %w[
  lint mutants:ruby:check test:rust test:ruby33 test:ruby34 test:package test:native test:memcheck
  test:memcheck:core fuzz test coverage
].freeze

desc "Run every check CI runs: #{CI_STEPS.join(', ')}"
task :ci do
  $stdout.sync = true # the step headers in order with the commands' output
  ENV["IGAI_COVERAGE"] = "1"
  CI_STEPS.each do |step|
    puts "== rake #{step}"
    Rake::Task[step].invoke
  end
end
