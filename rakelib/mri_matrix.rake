# frozen_string_literal: true

# The MRI matrix: test:ruby33 and test:ruby34 run the full `rake test` (bench:ruby33 and
# bench:ruby34: `rake bench`) on MRI 3.3 and 3.4, whose own Socket.getaddrinfo is
# interruptible and raises Socket::ResolutionError, so that every change is checked there too.
#
# Both Rubies live in one Debian trixie root at .trixie/ (a DebianRoot, rakelib/debian_root.rb:
# made once with debootstrap and reused): MRI 3.3 is trixie's Ruby (ruby3.3), MRI 3.4 comes from
# Debian's experimental suite (ruby3.4). The root gets the packages `bin/setup --packages` lists
# (the one package list), so it builds and tests like a machine set up by bin/setup, and the
# host's Rust toolchain. Each Ruby tests its own copy of the working tree inside the root
# (/build/igai-3.3, /build/igai-3.4: their tmp/ and lib/igai/igai.so are kept between runs), so
# no two Rubies share lib/igai/igai.so.
#
# TEST=... and TESTOPTS=... are passed on to the Ruby's `rake test`, as are CI and IGAI_*.

require "fileutils"
require_relative "debian_root"

module MriMatrix
  CHECKOUT = File.expand_path("..", __dir__)
  # Version => the binary, and the packages that bring it with its headers (and from which
  # suite, when not the root's own).
  RUBIES = {
    "3.3" => { binary: "ruby3.3", packages: %w[ruby3.3 ruby3.3-dev] },
    "3.4" => { binary: "ruby3.4", packages: %w[ruby3.4 ruby3.4-dev], suite: "experimental" }
  }.freeze
  ROOT = DebianRoot.new(
    dir: File.join(CHECKOUT, ".trixie"), suite: "trixie", layout: 2, rubies: RUBIES, rust: true,
    lock: File.join(CHECKOUT, "tmp/trixie.lock"), name: "mri matrix",
    packages: lambda do
      listed = IO.popen([File.join(CHECKOUT, "bin/setup"), "--packages"], &:read).split
      abort "mri matrix: `bin/setup --packages` failed" unless $?.success? && listed.any?
      listed
    end
  )
  # Build products in a copy, kept between runs.
  KEEP = %r{\A(tmp|target)/|\Alib/igai/igai\.so\z}
  PASSED_ON = /\A(CI|TEST|TESTOPTS|IGAI_\w+)\z/

  module_function

  # The Ruby's copy of the working tree, inside the root.
  def copy_path(version) = "/build/igai-#{version}"

  # Mirrors the working tree (tracked and untracked-but-not-ignored files) into the Ruby's
  # copy, preserving mtimes so that rake-compiler and cargo only rebuild what changed; returns
  # the copy's path inside the root.
  def sync_copy(version)
    copy = copy_path(version)
    dest = File.join(ROOT.dir, copy)
    files = IO.popen(%w[git ls-files -z --cached --others --exclude-standard], chdir: CHECKOUT,
                     &:read).split("\0").select { |rel| File.file?(File.join(CHECKOUT, rel)) }
    wanted = files.to_h { |rel| [rel, true] }
    stamp = ->(path) { [File.mtime(path), File.size(path)] }
    Dir.glob("**/*", File::FNM_DOTMATCH, base: dest).each do |rel|
      path = File.join(dest, rel)
      File.delete(path) unless File.directory?(path) || wanted[rel] || rel.match?(KEEP)
    end
    files.each do |rel|
      src = File.join(CHECKOUT, rel)
      dst = File.join(dest, rel)
      next if File.exist?(dst) && stamp.call(dst) == stamp.call(src)

      FileUtils.mkdir_p(File.dirname(dst))
      FileUtils.cp(src, dst, preserve: true)
    end
    copy
  end

  # Runs `rake <task>` with MRI <version>, in its copy of the tree inside the root (env: added
  # to what is passed on); returns the copy's path on the host.
  def rake(version, task, env: {})
    ROOT.prepare
    copy = sync_copy(version)
    ruby = RUBIES.fetch(version)[:binary]
    ROOT.in_root("cd #{copy} && #{ruby} -v && exec #{ruby} -S rake #{task.shellescape}",
                 env: ENV.select { |name, _| name.match?(PASSED_ON) }.merge(env))
    File.join(ROOT.dir, copy)
  end
end

MriMatrix::RUBIES.each_key do |version|
  name = "ruby#{version.delete('.')}"
  namespace :test do
    desc "Run `rake test` on MRI #{version} in the Debian trixie root (.trixie/, made on first use)"
    task name do
      start = DebianRoot.clock
      MriMatrix.rake(version, "test")
    ensure
      puts format("test:%s: %.0f s in all", name, DebianRoot.clock - start)
    end
  end

  namespace :bench do
    desc "Run `rake bench` on MRI #{version} in the Debian trixie root"
    task(name) { MriMatrix.rake(version, "bench") }
  end
end
