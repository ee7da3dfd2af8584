# frozen_string_literal: true

# test:ruby33 runs the full `rake test` (bench:ruby33: `rake bench`) on MRI 3.3 (Debian trixie's Ruby) in a debootstrap
# root at .trixie/, so every change is also checked on an MRI whose own Socket.getaddrinfo is
# interruptible and raises Socket::ResolutionError. The root is made once (from the Debian
# mirror the host's apt uses) and reused while its marker file lists the same packages.
#
# The host's Rust toolchain is bind-mounted read-only. The tests run on a copy of the working
# tree inside the root (.trixie/build/igai; its tmp/ and lib/igai/igai.so are kept between
# runs), so the two Rubies never share lib/igai/igai.so. All mounts are made in a private
# mount namespace (unshare --mount) and vanish with it, whether or not the tests pass.

require "fileutils"
require "shellwords"

module Ruby33
  extend Rake::FileUtilsExt
  ROOT = File.expand_path("../.trixie", __dir__)
  MARKER = File.join(ROOT, ".igai-bootstrap-ok")
  COPY = "/build/igai" # inside the root
  KEEP = %r{\A(tmp|target)/|\Alib/igai/igai\.so\z} # 3.3 build products in the copy
  # rake-compiler runs make; netbase: /etc/hosts and /etc/services; the ruby-* clients are
  # the ones test/test_clients.rb drives (as in bin/setup's list).
  PACKAGES = "ruby-dev,libclang-dev,rake,ruby-minitest,rake-compiler,gcc,libc6-dev," \
             "iproute2,util-linux,mount,ca-certificates,make,netbase," \
             "ruby-excon,ruby-http,ruby-httpclient,ruby-faraday,ruby-httparty,ruby-rest-client," \
             "ruby-net-http-persistent,ruby-redis,ruby-dalli,ruby-pg"
  RUST = { # inside the root => host directory
    "/opt/rust/cargo" => ENV.fetch("CARGO_HOME", File.join(Dir.home, ".cargo")),
    "/opt/rust/rustup" => ENV.fetch("RUSTUP_HOME", File.join(Dir.home, ".rustup"))
  }.freeze

  module_function

  # The first Debian archive URI in the host's apt sources (one-line or deb822 format).
  def mirror
    Dir["/etc/apt/sources.list", "/etc/apt/sources.list.d/*.{list,sources}"].each do |file|
      uri = File.read(file)[%r{^\s*(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+/debian)/?\s}, 1]
      return uri if uri
    end
    abort "test:ruby33: no Debian mirror found in /etc/apt/sources.list*"
  end

  def mounts_under(dir)
    points = File.foreach("/proc/self/mounts").map { |line| line.split[1] }
    points.grep(%r{\A#{Regexp.escape(dir)}(/|\z)})
  end

  def bootstrap
    return if File.exist?(MARKER) && File.read(MARKER) == "#{PACKAGES}\n"

    abort "test:ruby33: #{ROOT} has mounts, not removing it" if mounts_under(ROOT).any?
    unless File.executable?("/usr/sbin/debootstrap")
      sh "apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap"
    end
    FileUtils.rm_rf(ROOT) # a partial root from an interrupted bootstrap
    # In its own mount namespace, so that mounts a failing debootstrap leaves behind vanish.
    sh "unshare", "--mount", "--", "debootstrap", "--variant=minbase",
       "--include=#{PACKAGES}", "trixie", ROOT, mirror
    File.write(MARKER, "#{PACKAGES}\n") # what was installed: a change rebuilds the root
  end

  # Mirrors the working tree (tracked and untracked-but-not-ignored files) into the copy,
  # preserving mtimes so that rake-compiler and cargo only rebuild what changed.
  def sync_copy(source)
    dest = File.join(ROOT, COPY)
    files = IO.popen(%w[git ls-files -z --cached --others --exclude-standard], chdir: source,
                     &:read).split("\0").select { |rel| File.file?(File.join(source, rel)) }
    wanted = files.to_h { |rel| [rel, true] }
    stamp = ->(path) { [File.mtime(path), File.size(path)] }
    Dir.glob("**/*", File::FNM_DOTMATCH, base: dest).each do |rel|
      path = File.join(dest, rel)
      File.delete(path) unless File.directory?(path) || wanted[rel] || rel.match?(KEEP)
    end
    files.each do |rel|
      src = File.join(source, rel)
      dst = File.join(dest, rel)
      next if File.exist?(dst) && stamp.call(dst) == stamp.call(src)

      FileUtils.mkdir_p(File.dirname(dst))
      FileUtils.cp(src, dst, preserve: true)
    end
  end

  # Runs `rake <task>` in the copy, inside the root.
  def run_rake(task)
    env = ENV.select { |name, _| name == "CI" || name.start_with?("IGAI_") }.merge(
      "PATH" => "/opt/rust/cargo/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
      "HOME" => "/root", "LANG" => "C.UTF-8",
      "CARGO_HOME" => "/opt/rust/cargo", "RUSTUP_HOME" => "/opt/rust/rustup"
    )
    RUST.each_key { |inside| FileUtils.mkdir_p(File.join(ROOT, inside)) }
    script = [
      # The root must be a mount point: test/bed/run's `unshare --mount` makes "/" private.
      "set -e", "mount --bind #{ROOT.shellescape} #{ROOT.shellescape}", "cd #{ROOT.shellescape}",
      "mount --rbind /dev dev", "mount -t proc proc proc", "mount --rbind /sys sys",
      *RUST.map { |inside, host| "mount -o bind,ro #{host.shellescape} .#{inside}" },
      "exec chroot . /usr/bin/env -i #{env.map { |pair| pair.join('=').shellescape }.join(' ')} " \
      "sh -c 'cd #{COPY} && ruby -v && exec rake #{task}'"
    ].join("\n")
    sh "unshare", "--mount", "--", "sh", "-c", script
  ensure
    # unshare's private namespace makes this a no-op; it guards against a leaked mount.
    mounts_under(ROOT).reverse_each { |point| system("umount", "-l", point) }
  end
end

namespace :test do
  desc "Run `rake test` on MRI 3.3 in a Debian trixie root (.trixie/, made on first use)"
  task :ruby33 do
    clock = -> { Process.clock_gettime(Process::CLOCK_MONOTONIC) }
    start = clock.call
    Ruby33.bootstrap
    puts format("test:ruby33: root ready in %.0f s", clock.call - start)
    Ruby33.sync_copy(File.expand_path("..", __dir__))
    Ruby33.run_rake("test")
  ensure
    puts format("test:ruby33: %.0f s in all", clock.call - start) if start
  end
end

namespace :bench do
  desc "Run `rake bench` on MRI 3.3 in the Debian trixie root"
  task :ruby33 do
    Ruby33.bootstrap
    Ruby33.sync_copy(File.expand_path("..", __dir__))
    Ruby33.run_rake("bench")
  end
end
