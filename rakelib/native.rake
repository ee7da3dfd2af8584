# frozen_string_literal: true

# rake native: the platform gem, pkg/igai-VERSION-x86_64-linux.gem, which installs without
# Rust, a compiler or Ruby's headers. It holds the extension built (release profile, then
# stripped) for each Ruby we have: the host's (MRI 3.1 on Debian 12) in the checkout, and the
# MRI matrix's 3.3 and 3.4 in their copies inside the trixie root (rakelib/mri_matrix.rake),
# as lib/igai/MAJOR.MINOR/igai.so, which lib/igai/native.rb loads. Its gemspec is igai.gemspec
# without the extension and the Rust sources, for the x86_64-linux platform and the Rubies
# inside (>= 3.1, < 3.5.dev). No extension may need glibc above GLIBC_FLOOR. `rake gem` builds
# the source gem, pkg/igai-VERSION.gem, for every other platform.
#
# test:native installs the platform gem with `gem install --local` into bare Debian roots
# (.bare-roots/bookworm: MRI 3.1; .bare-roots/trixie: MRI 3.3, and 3.4 from experimental;
# debootstrap minbase plus the Ruby, made once and reused: rakelib/debian_root.rb), which have
# no compiler, cargo, libclang or Ruby headers (test/native/bare_check.rb proves it each run),
# then, inside the root and inside the stalled-DNS test bed, requires igai from the installed
# gem, resolves, runs `igai resolve localhost` and interrupts a stalled lookup with Timeout
# (rakelib/package.rake's smoke test). It checks the glibc floor of the gem's extensions first.

require "fileutils"
require "rubygems/package"
require "tmpdir"
require_relative "debian_root"
require_relative "../lib/igai/sandbox"
require_relative "../test/support/elf_versions"

module NativeGem
  extend Rake::FileUtilsExt

  CHECKOUT = File.expand_path("..", __dir__)
  PLATFORM = "x86_64-linux"
  GLIBC_FLOOR = IgaiTest::ElfVersions::GLIBC_FLOOR
  RELEASE = { "IGAI_CARGO_PROFILE" => "release" }.freeze
  # What the source gem ships only to build the extension.
  SOURCES = %r{\A(ext/|Cargo\.)}
  STAGE = File.join(CHECKOUT, "tmp/native")
  BARE = File.join(CHECKOUT, ".bare-roots")
  BED = [File.join(CHECKOUT, "test/bed/run"), "sh", "-c",
         'test "$IGAI_BED" = 1 || { echo "test:native: no test bed: $IGAI_BED_UNAVAILABLE" >&2; exit 1; }; exec "$@"',
         "in-bed"].freeze
  BARE_ROOTS = [
    ["bookworm", { "3.1" => { binary: "ruby3.1", packages: %w[ruby] } }],
    ["trixie", { "3.3" => { binary: "ruby3.3", packages: %w[ruby3.3] },
                 "3.4" => { binary: "ruby3.4", packages: %w[ruby3.4], suite: "experimental" } }]
  ].map do |suite, rubies|
    DebianRoot.new(dir: File.join(BARE, suite), suite: suite, layout: 2, rubies: rubies, headers: false,
                   lock: File.join(CHECKOUT, "tmp/bare-#{suite}.lock"), name: "test:native #{suite}")
  end

  module_function

  def minor(version) = version[/\A\d+\.\d+/]

  def gem_file = File.join(CHECKOUT, "pkg", "igai-#{source_spec.version}-#{PLATFORM}.gem")

  def source_spec = Gem::Specification.load(File.join(CHECKOUT, "igai.gemspec"))

  def build
    local = Gem::Platform.local
    abort "rake native: builds #{PLATFORM} gems on #{PLATFORM} only, not #{local}" \
      unless "#{local.cpu}-#{local.os}" == PLATFORM
    extensions = stage(build_extensions)
    check_glibc_floor(extensions.map { |rel| File.join(STAGE, rel) })
    spec = platform_spec(extensions)
    built = Dir.chdir(STAGE) { Gem::Package.build(spec) }
    FileUtils.mkdir_p(File.dirname(gem_file))
    FileUtils.mv(File.join(STAGE, built), gem_file)
    puts format("rake native: %s (%.1f MB; Ruby %s)", gem_file, File.size(gem_file) / 1e6,
                spec.required_ruby_version)
  end

  # Builds the extension in the release profile with the host's Ruby in the checkout, and
  # with each matrix Ruby in its copy; returns {minor => built igai.so}.
  def build_extensions
    built = { minor(RUBY_VERSION) => build_in(CHECKOUT) { sh RELEASE, RbConfig.ruby, "-S", "rake", "compile" } }
    MriMatrix::RUBIES.each_key do |version|
      copy = File.join(MriMatrix::ROOT.dir, MriMatrix.copy_path(version))
      built[version] = build_in(copy) { MriMatrix.rake(version, "compile", env: RELEASE) }
    end
    built
  end

  # Runs the build of the tree at dir, after removing a Makefile written for another profile
  # (extconf.rb writes the profile into it, and rake-compiler would keep it); returns the
  # extension it built.
  def build_in(dir)
    Dir[File.join(dir, "tmp/*/igai/*/Makefile")].each do |makefile|
      File.delete(makefile) unless File.read(makefile).match?(/^PROFILE = release$/)
    end
    yield
    File.join(dir, "lib/igai/igai.so")
  end

  # Fills STAGE with the gem's files: the source gem's but the sources of the extension, and
  # each extension, stripped, as lib/igai/MINOR/igai.so; returns the extensions' paths.
  def stage(built)
    FileUtils.rm_rf(STAGE)
    source_spec.files.grep_v(SOURCES).each do |rel|
      FileUtils.mkdir_p(File.join(STAGE, File.dirname(rel)))
      FileUtils.cp(File.join(CHECKOUT, rel), File.join(STAGE, rel), preserve: true)
    end
    built.sort.map do |version, library|
      rel = "lib/igai/#{version}/igai.so"
      FileUtils.mkdir_p(File.join(STAGE, File.dirname(rel)))
      sh "strip", "--strip-unneeded", "-o", File.join(STAGE, rel), library
      rel
    end
  end

  # igai.gemspec for PLATFORM: no extension to build, the Rubies of the extensions inside.
  def platform_spec(extensions)
    spec = source_spec.dup
    spec.platform = PLATFORM
    spec.extensions = []
    spec.files = spec.files.grep_v(SOURCES) + extensions
    versions = extensions.map { |rel| Gem::Version.new(rel.split("/")[2]) }
    major, minor = versions.max.segments
    spec.required_ruby_version = [">= #{versions.min}", "< #{major}.#{minor + 1}.dev"]
    spec
  end

  # Prints the highest glibc version each extension needs; aborts when one needs more than
  # GLIBC_FLOOR (or when none is found, which would mean the ELF reader missed them).
  def check_glibc_floor(paths)
    paths.each do |path|
      floor = IgaiTest::ElfVersions.glibc_floor(path)
      puts "glibc floor: #{path.delete_prefix("#{CHECKOUT}/")} needs GLIBC_#{floor || '(none found)'}"
      abort "glibc floor: #{path} needs more than GLIBC_#{GLIBC_FLOOR}" unless floor && floor <= GLIBC_FLOOR
    end
  end

  # The extensions inside the gem file, by minor: unpacked into dir.
  def unpack_extensions(dir)
    Gem::Package.new(gem_file).extract_files(dir)
    Dir.glob("lib/igai/*/igai.so", base: dir).to_h { |rel| [rel.split("/")[2], File.join(dir, rel)] }
  end

  # test:native: the gem's glibc floor, then each bare root.
  def test_bare_roots
    versions = Dir.mktmpdir("igai-native-") do |dir|
      extensions = unpack_extensions(dir)
      check_glibc_floor(extensions.values)
      extensions.keys.sort
    end
    tested = BARE_ROOTS.flat_map { |root| root.rubies.keys }.sort
    abort "test:native: the gem holds extensions for #{versions}, the roots test #{tested}" unless versions == tested

    BARE_ROOTS.each { |root| test_bare_root(root) }
  end

  # Installs and smoke-tests the gem with each Ruby of the root, inside the root and the bed.
  def test_bare_root(root)
    root.prepare
    work = File.join(root.dir, "root/igai-native")
    FileUtils.rm_rf(work)
    FileUtils.mkdir_p(work)
    FileUtils.cp([gem_file, File.join(CHECKOUT, "test/native/bare_check.rb")], work)
    File.write(File.join(work, "smoke.rb"), PackageCheck::SMOKE)
    checks = root.rubies.map do |version, ruby|
      [ruby[:binary], "bare_check.rb", File.basename(gem_file), "lib/igai/#{version}/igai.so", CHECKOUT].shelljoin
    end
    binds = Igai::Sandbox.new(resolver_timeout: 1).files.keys
    root.in_root(["set -e", "cd /root/igai-native", *checks].join("\n"),
                 env: { "IGAI_BED" => "1" }, binds: binds, wrap: BED)
  end
end

Rake::Task["native"].clear # rake-compiler's: a gem of the host's build only

desc "Build pkg/igai-VERSION-#{NativeGem::PLATFORM}.gem: the extension precompiled for MRI 3.1 (host), 3.3 and 3.4 (trixie root)"
task(:native) { NativeGem.build }

desc "Build the source gem, pkg/igai-VERSION.gem (its extension is built by `gem install`)"
task :gem do
  mkdir_p "pkg"
  sh "gem", "build", "igai.gemspec", "--output", "pkg/igai-#{NativeGem.source_spec.version}.gem"
end

namespace :test do
  desc "Install the platform gem into bare Debian roots (.bare-roots/, made on first use) and smoke-test it there"
  task native: :native do
    start = DebianRoot.clock
    NativeGem.test_bare_roots
    puts format("test:native: %.0f s in all", DebianRoot.clock - start)
  end
end
