# frozen_string_literal: true

# rake ci: every check CI makes, in order (.ci/run installs what they need, then runs this).
# `rake test` comes last, so that its minitest summary closes the log.

CI_STEPS = %w[
  lint test:rust test:ruby33 test:ruby34 test:package test:native test:memcheck test:memcheck:core fuzz test
].freeze

desc "Run every check CI runs: #{CI_STEPS.join(', ')}"
task :ci do
  $stdout.sync = true # the step headers in order with the commands' output
  CI_STEPS.each do |step|
    puts "== rake #{step}"
    Rake::Task[step].invoke
  end
end
