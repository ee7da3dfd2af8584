# frozen_string_literal: true

# test:package checks the gem as users get it: builds igai.gem, fails if build products or
# local directories slipped into its file list, installs it into a throw-away GEM_HOME (which
# compiles the Rust extension through extconf.rb, as `gem install` does), then, from a
# directory outside the checkout and inside the stalled-DNS test bed, checks that the
# installed gem loads nothing from the checkout, resolves, and lets Timeout interrupt a
# stalled lookup. Finally it reports how much disk the installed gem takes.

require "rbconfig"
require "tmpdir"

module PackageCheck
  CHECKOUT = File.expand_path("..", __dir__)
  FORBIDDEN = %r{(\A|/)(target|tmp|pkg|\.trixie|\.bare-roots)(/|\z)|\.(so|o)\z}

  # Runs as `test/bed/run ruby smoke.rb CHECKOUT [EXTENSION]` with only the temporary
  # GEM_HOME (test:native runs it too, in bare Debian roots); EXTENSION: the extension the gem
  # must load, relative to the gem's directory.
  SMOKE = <<~'RUBY'
    require "igai"
    require "timeout"

    checkout, extension = ARGV
    leaked = $LOADED_FEATURES.select { |path| path.start_with?("#{checkout}/") }
    abort "FAIL: loaded from the checkout: #{leaked.join(', ')}" unless leaked.empty?
    spec = Gem.loaded_specs["igai"]
    abort "FAIL: igai not loaded from GEM_HOME (#{spec&.full_gem_path})" \
      unless spec&.full_gem_path&.start_with?("#{ENV.fetch('GEM_HOME')}/")
    abort "FAIL: no test bed: #{ENV['IGAI_BED_UNAVAILABLE']}" unless ENV["IGAI_BED"] == "1"
    loaded = $LOADED_FEATURES.grep(%r{/igai\.so\z})
    puts "native extension: #{loaded.join(', ')}"
    abort "FAIL: loaded #{loaded}, not #{extension}" \
      if extension && loaded != [File.join(spec.full_gem_path, extension)]

    addresses = ->(name) { Socket.interruptible_getaddrinfo(name, 80).map { |ai| ai[3] }.uniq }
    got = addresses.call("ok-pkg.igai.test")
    abort "FAIL: ok-pkg.igai.test resolved to #{got}" unless got == ["127.0.0.1"]
    got = addresses.call("localhost")
    abort "FAIL: localhost resolved to #{got}" unless got.include?("127.0.0.1")

    start = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    begin
      Timeout.timeout(0.3) { Socket.interruptible_getaddrinfo("stall-pkg.igai.test", 80) }
      abort "FAIL: the stalled lookup returned"
    rescue Timeout::Error
      took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - start
    end
    abort format("FAIL: interrupting the stalled lookup took %.2f s", took) if took > 1.0

    # The igai command as `gem install` sets it up (the binstub in GEM_HOME/bin).
    command = File.join(ENV.fetch("GEM_HOME"), "bin", "igai")
    out = IO.popen([command, "resolve", "ok-pkg.igai.test", "--family", "inet"], &:read)
    abort "FAIL: #{command} resolve: #{out.inspect} (#{$?.inspect})" \
      unless $?.success? && out.start_with?("127.0.0.1 ")
    out = IO.popen([command, "resolve", "localhost"], &:read)
    abort "FAIL: #{command} resolve localhost: #{out.inspect} (#{$?.inspect})" \
      unless $?.success? && out.match?(/^(127\.0\.0\.1|::1) /)
    puts format("PASS: installed gem resolves, loads nothing from the checkout, " \
                "stalled lookup interrupted after %.2f s, igai command works", took)
  RUBY

  module_function

  def check_file_list(gem_file)
    offenders = Gem::Package.new(gem_file).spec.files.grep(FORBIDDEN)
    return if offenders.empty?

    abort "test:package: the gem must not contain build products or local directories:\n  " \
          "#{offenders.join("\n  ")}"
  end

  def report_size(gem_dir)
    size = lambda do |dir|
      Dir.glob("#{dir}/**/*", File::FNM_DOTMATCH).sum { |f| File.file?(f) ? File.size(f) : 0 }
    end
    target = File.join(gem_dir, "ext/igai/target")
    puts format("test:package: installed gem dir %.1f MB (of which ext/igai/target %.1f MB)",
                size.call(gem_dir) / 1e6, size.call(target) / 1e6)
  end
end

namespace :test do
  desc "Build and install the gem into a temporary GEM_HOME, then smoke-test it in the bed"
  task :package do
    clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
    start = clock.call
    Dir.mktmpdir("igai-package-") do |tmp|
      gem_file = File.join(tmp, "igai.gem")
      gem_home = File.join(tmp, "gems")
      sh "gem", "build", "igai.gemspec", "--output", gem_file, chdir: PackageCheck::CHECKOUT
      PackageCheck.check_file_list(gem_file)
      sh "gem", "install", "--local", "--no-document", "--install-dir", gem_home, gem_file

      run_dir = File.join(tmp, "run")
      Dir.mkdir(run_dir)
      File.write(File.join(run_dir, "smoke.rb"), PackageCheck::SMOKE)
      env = { "GEM_HOME" => gem_home, "GEM_PATH" => gem_home, "RUBYOPT" => nil, "RUBYLIB" => nil }
      sh env, File.join(PackageCheck::CHECKOUT, "test/bed/run"), RbConfig.ruby, "smoke.rb",
         PackageCheck::CHECKOUT, chdir: run_dir
      PackageCheck.report_size(Dir[File.join(gem_home, "gems/igai-*")].first)
    end
    puts format("test:package: %.0f s in all", clock.call - start)
  end
end
