# frozen_string_literal: true

# test:native (rakelib/native.rake) runs this with a bare Debian root's Ruby, inside the root
# and inside the stalled-DNS test bed: `ruby3.x bare_check.rb GEM EXTENSION CHECKOUT`. It proves the
# root has nothing to build an extension with, installs the platform gem GEM with
# `gem install --local` into a fresh GEM_HOME (timed; RubyGems must build nothing), then runs
# smoke.rb (rakelib/package.rake's check of an installed gem) beside it, which must load
# EXTENSION (lib/igai/MAJOR.MINOR/igai.so) from the installed gem and nothing from CHECKOUT (the
# host's checkout, which is not even in the root).

require "fileutils"
require "rbconfig"

gem_file, extension, checkout = ARGV
clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
ruby = "Ruby #{RUBY_VERSION}"

path = ENV.fetch("PATH").split(":")
tools = %w[cc gcc c++ g++ clang ld make cargo rustc].select do |tool|
  path.any? { |dir| File.executable?(File.join(dir, tool)) }
end
headers = Dir.glob("/usr/{include,lib,local}/**/ruby.h")
libclang = Dir.glob("/usr/lib/**/libclang*.so*")
unless tools.empty? && headers.empty? && libclang.empty?
  abort "FAIL: #{ruby}: the root is not bare: tools #{tools}, Ruby headers #{headers}, libclang #{libclang}"
end
puts "#{ruby}: no compiler, linker, make, cargo, rustc, Ruby headers or libclang in the root"

gem_home = File.join(Dir.pwd, "gems-#{RUBY_VERSION}")
FileUtils.rm_rf(gem_home)
gem_command = File.join(RbConfig::CONFIG.fetch("bindir"),
                        RbConfig::CONFIG.fetch("ruby_install_name").sub("ruby", "gem"))
start = clock.call
output = IO.popen([gem_command, "install", "--local", "--no-document", "--install-dir", gem_home, gem_file,
                   { err: %i[child out] }], &:read)
took = clock.call - start
puts output
abort "FAIL: #{ruby}: gem install failed (#{$?.inspect})" unless $?.success?
abort "FAIL: #{ruby}: gem install built a native extension" if output.include?("Building native extensions")
puts format("%s: gem install --local took %.1f s", ruby, took)

env = { "GEM_HOME" => gem_home, "GEM_PATH" => gem_home, "RUBYOPT" => nil, "RUBYLIB" => nil }
smoke = File.join(__dir__, "smoke.rb")
system(env, RbConfig.ruby, smoke, checkout, extension) or abort "FAIL: #{ruby}: smoke test"
