# frozen_string_literal: true

require "fileutils"
require "tmpdir"
require_relative "test_helper"

# lib/igai/native.rb: which extension `require "igai"` loads, in a copy of lib/ holding the
# extensions a test puts there (copies of the one `rake compile` built), in a child Ruby
# without RubyGems (so that no installed igai gem can answer).
class TestNativeLoader < Minitest::Test
  include IgaiTest::Subprocess

  MINOR = RUBY_VERSION[/\A\d+\.\d+/]
  EXTENSION = File.join(IgaiTest::LIB, "igai/igai.so")
  REPORT = 'require "igai"; puts $LOADED_FEATURES.grep(/igai\.so\z/); ' \
           'p Socket.interruptible_getaddrinfo("127.0.0.1", 80).first[3]'

  def setup
    @dir = Dir.mktmpdir("igai-loader-")
    @lib = File.join(@dir, "lib")
    Dir.glob("**/*.rb", base: IgaiTest::LIB).each do |rel|
      FileUtils.mkdir_p(File.join(@lib, File.dirname(rel)))
      FileUtils.cp(File.join(IgaiTest::LIB, rel), File.join(@lib, rel))
    end
  end

  def teardown
    FileUtils.rm_rf(@dir)
  end

  # Puts a copy of the built extension (or content) at lib/REL; returns its path.
  def place(rel, content = nil)
    path = File.join(@lib, rel)
    FileUtils.mkdir_p(File.dirname(path))
    content ? File.write(path, content) : FileUtils.cp(EXTENSION, path)
    path
  end

  def require_igai
    run_command([RbConfig.ruby, "--disable-gems", "-I", @lib, "-e", REPORT])
  end

  # `require "igai"` loads the extension at path, and it works.
  def assert_loads(path)
    output, status = require_igai
    assert status.success?, output
    assert_equal "#{path}\n\"127.0.0.1\"\n", output
  end

  def test_loads_the_precompiled_extension_for_this_ruby_when_the_platform_gem_brought_one
    precompiled = place("igai/#{MINOR}/igai.so")
    place("igai/0.9/igai.so", "not for this Ruby")
    assert_loads precompiled
  end

  def test_prefers_the_precompiled_extension_to_one_built_from_source
    precompiled = place("igai/#{MINOR}/igai.so")
    place("igai/igai.so")
    assert_loads precompiled
  end

  def test_loads_the_extension_built_from_source_when_none_is_precompiled_for_this_ruby
    built = place("igai/igai.so")
    place("igai/0.9/igai.so", "not for this Ruby")
    assert_loads built
  end

  def test_without_a_loadable_extension_the_load_error_names_the_ruby_the_platform_and_each_failure
    place("igai/0.9/igai.so")
    broken = place("igai/#{MINOR}/igai.so", "not an ELF file")
    output, status = require_igai
    refute status.success?
    assert_match(/LoadError/, output)
    assert_includes output, "igai has no native extension that loads on Ruby #{RUBY_VERSION} (#{RUBY_PLATFORM})"
    assert_includes output, "precompiled ones for Ruby 0.9, #{MINOR} only"
    assert_includes output, "#{broken}: "
    assert_includes output, "igai/igai: cannot load such file"
  end
end
