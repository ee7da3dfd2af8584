# frozen_string_literal: true

require "rbconfig"

# Loads igai's native extension (ext/igai): the precompiled one for this Ruby's minor version,
# lib/igai/MAJOR.MINOR/igai.so, when the platform gem (igai-VERSION-x86_64-linux) brought it;
# otherwise the one built from source, igai/igai.so (lib/igai/igai.so in a checkout, the
# installed source gem's own). When none loads, a LoadError names the Ruby, the platform, the
# Rubies the precompiled extensions are for, and why each candidate failed.
module Igai
  # Where the extension comes from.
  module Native
    DLEXT = RbConfig::CONFIG.fetch("DLEXT")

    module_function

    # The extension files to try, in order: the precompiled one for this Ruby (when present),
    # then the source-built feature.
    def candidates(dir = __dir__, version = RUBY_VERSION)
      precompiled = File.join(dir, version[/\A\d+\.\d+/], "igai.#{DLEXT}")
      [(precompiled if File.file?(precompiled)), "igai/igai"].compact
    end

    def load_extension(dir = __dir__)
      failures = candidates(dir).map do |feature|
        return require(feature)
      rescue LoadError => e
        "#{feature}: #{e.message}"
      end
      raise LoadError, unavailable(dir, failures)
    end

    def unavailable(dir, failures)
      built_for = Dir.glob("*/igai.#{DLEXT}", base: dir).map { |rel| File.dirname(rel) }.sort
      precompiled = built_for.empty? ? "no precompiled extension" : "precompiled ones for Ruby #{built_for.join(', ')} only"
      "igai has no native extension that loads on Ruby #{RUBY_VERSION} (#{RUBY_PLATFORM}): #{precompiled}, " \
        "and none built from source. Install the source gem, which builds one with Rust's cargo " \
        "(gem install igai --platform ruby). Tried: #{failures.join('; ')}"
    end
  end
end

Igai::Native.load_extension
