# frozen_string_literal: true

# The MRI matrix: test:ruby33 and test:ruby34 run the full `rake test` (bench:ruby33 and
# bench:ruby34: `rake bench`) on MRI 3.3 and 3.4, whose own Socket.getaddrinfo is
# interruptible and raises Socket::ResolutionError, so that every change is checked there too.
#
# Both Rubies live in one Debian trixie root at .trixie/, made with debootstrap from the Debian
# mirror the host's apt uses: MRI 3.3 is trixie's Ruby (ruby3.3), MRI 3.4 comes from Debian's
# experimental suite (ruby3.4). The root gets the packages `bin/setup --packages` lists (the
# one package list), so it builds and tests like a machine set up by bin/setup. It is made
# once and reused: .trixie/.igai-root.json records what it holds and is written only after
# every step succeeded (and removed before any step changes the root); a root whose record
# differs only in packages gets the missing ones installed, anything else makes a new root.
#
# The host's Rust toolchain (CARGO_HOME, RUSTUP_HOME) is bind-mounted read-only; a host
# without rustup gets Debian's cargo inside the root instead. Each Ruby tests its own copy of
# the working tree inside the root (/build/igai-3.3, /build/igai-3.4: their tmp/ and
# lib/igai/igai.so are kept between runs), so no two Rubies share lib/igai/igai.so. All mounts
# are made in a private mount namespace (unshare --mount) and vanish with it.
#
# TEST=... and TESTOPTS=... are passed on to the Ruby's `rake test`, as are CI and IGAI_*.

require "fileutils"
require "json"
require "shellwords"

module MriMatrix
  extend Rake::FileUtilsExt

  CHECKOUT = File.expand_path("..", __dir__)
  ROOT = File.join(CHECKOUT, ".trixie")
  RECORD = File.join(ROOT, ".igai-root.json")
  LOCK = File.join(CHECKOUT, "tmp/trixie.lock") # outside the root, which may be made anew
  SUITE = "trixie"
  # Bump when the way the root is made changes: older roots are then made anew.
  LAYOUT = 2
  # Version => the binary, and the packages that bring it with its headers (and from which
  # suite, when not the root's own).
  RUBIES = {
    "3.3" => { binary: "ruby3.3", packages: %w[ruby3.3 ruby3.3-dev] },
    "3.4" => { binary: "ruby3.4", packages: %w[ruby3.4 ruby3.4-dev], suite: "experimental" }
  }.freeze
  # Besides bin/setup's list: what debootstrap, apt and the copies need in the root.
  BASE_PACKAGES = %w[ca-certificates debian-archive-keyring].freeze
  # Build products in a copy, kept between runs.
  KEEP = %r{\A(tmp|target)/|\Alib/igai/igai\.so\z}
  PATH = "/opt/rust/cargo/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
  PASSED_ON = /\A(CI|TEST|TESTOPTS|IGAI_\w+)\z/

  module_function

  def clock = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # The host's rustup toolchain, as {directory inside the root => host directory}, or {} when
  # the host has none (then the root installs Debian's cargo).
  def rust_mounts
    cargo_home = ENV.fetch("CARGO_HOME", File.join(Dir.home, ".cargo"))
    rustup_home = ENV.fetch("RUSTUP_HOME", File.join(Dir.home, ".rustup"))
    return {} unless File.executable?(File.join(cargo_home, "bin/cargo")) && File.directory?(rustup_home)

    { "/opt/rust/cargo" => cargo_home, "/opt/rust/rustup" => rustup_home }
  end

  # The packages of the root's own suite: bin/setup's list, and what the root itself needs.
  def packages
    listed = IO.popen([File.join(CHECKOUT, "bin/setup"), "--packages"], &:read).split
    abort "mri matrix: `bin/setup --packages` failed" unless $?.success? && listed.any?
    rust = rust_mounts.empty? ? %w[cargo rustc] : []
    (listed + BASE_PACKAGES + rust + RUBIES.values.reject { |r| r[:suite] }.flat_map { |r| r[:packages] })
      .uniq.sort
  end

  # What a ready root holds; RECORD holds this once the root is made.
  def wanted
    { "layout" => LAYOUT, "suite" => SUITE, "packages" => packages,
      "rubies" => RUBIES.transform_values { |ruby| ruby[:packages] + [ruby[:suite]].compact } }
  end

  def recorded
    JSON.parse(File.read(RECORD))
  rescue Errno::ENOENT, JSON::ParserError
    nil
  end

  # The first Debian archive URI in the host's apt sources (one-line or deb822 format).
  def mirror
    Dir["/etc/apt/sources.list", "/etc/apt/sources.list.d/*.{list,sources}"].each do |file|
      uri = File.read(file)[%r{^\s*(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+/debian)/?\s}, 1]
      return uri if uri
    end
    abort "mri matrix: no Debian mirror found in /etc/apt/sources.list*"
  end

  def mounts_under(dir)
    points = File.foreach("/proc/self/mounts").map { |line| line.split[1] }
    points.grep(%r{\A#{Regexp.escape(dir)}(/|\z)})
  end

  # Makes the root ready for every Ruby of RUBIES, or leaves it as it is when its record says
  # it already is (and each Ruby is there).
  def prepare
    FileUtils.mkdir_p(File.dirname(LOCK))
    # One rake at a time changes the root (test:ruby33 and test:ruby34 may run side by side).
    File.open(LOCK, File::CREAT | File::RDWR) do |lock|
      lock.flock(File::LOCK_EX)
      prepare_locked
    end
  end

  def prepare_locked
    want = wanted
    have = recorded
    return if have == want && RUBIES.values.all? { |r| File.executable?(File.join(ROOT, "usr/bin", r[:binary])) }

    start = clock
    keep = have && have.merge("packages" => nil) == want.merge("packages" => nil)
    FileUtils.rm_f(RECORD) # the root is being changed: not ready until recorded again
    bootstrap(want["packages"]) unless keep
    install(want["packages"])
    verify
    File.write("#{RECORD}.new", "#{JSON.pretty_generate(want)}\n")
    File.rename("#{RECORD}.new", RECORD)
    puts format("mri matrix: root %s in %.0f s", keep ? "updated" : "made", clock - start)
  end

  # A new root with the suite's packages.
  def bootstrap(packages)
    abort "mri matrix: #{ROOT} has mounts, not removing it" if mounts_under(ROOT).any?
    unless File.executable?("/usr/sbin/debootstrap")
      sh "apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap"
    end
    FileUtils.rm_rf(ROOT) # an old root, or a partial one from an interrupted bootstrap
    # In its own mount namespace, so that mounts a failing debootstrap leaves behind vanish.
    sh "unshare", "--mount", "--", "debootstrap", "--variant=minbase",
       "--include=#{packages.join(',')}", SUITE, ROOT, mirror
  end

  # Installs, inside the root, what it lacks: packages of its suite, then each Ruby (from
  # experimental past its Release file's Valid-Until date, which apt checks otherwise).
  def install(packages)
    sources = RUBIES.values.filter_map { |ruby| ruby[:suite] }.uniq.map do |suite|
      "Types: deb\nURIs: #{mirror}\nSuites: #{suite}\nComponents: main\n" \
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    end
    File.write(File.join(ROOT, "etc/apt/sources.list.d/igai-extra.sources"), sources.join("\n"))
    apt = "DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false"
    install = "#{apt} install -y -q --no-install-recommends"
    script = ["set -e", "#{apt} update -q",
              "#{install} #{packages.shelljoin}",
              *RUBIES.values.map do |ruby|
                "#{install} #{ruby[:suite] ? "-t #{ruby[:suite]} " : ''}#{ruby[:packages].shelljoin}"
              end]
    in_root(script.join("\n"))
  end

  # Each Ruby starts and has its headers.
  def verify
    RUBIES.each do |version, ruby|
      check = "puts RUBY_DESCRIPTION; exit RUBY_VERSION.start_with?(#{"#{version}.".dump}) && " \
              "File.exist?(File.join(RbConfig::CONFIG['rubyhdrdir'], 'ruby.h'))"
      in_root("exec #{ruby[:binary]} -e #{check.shellescape}")
    end
  end

  # Mirrors the working tree (tracked and untracked-but-not-ignored files) into the Ruby's
  # copy, preserving mtimes so that rake-compiler and cargo only rebuild what changed; returns
  # the copy's path inside the root.
  def sync_copy(version)
    copy = "/build/igai-#{version}"
    dest = File.join(ROOT, copy)
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

  # Runs `rake <task>` with MRI <version>, in its copy of the tree inside the root.
  def rake(version, task)
    prepare
    copy = sync_copy(version)
    ruby = RUBIES.fetch(version)[:binary]
    in_root("cd #{copy} && #{ruby} -v && exec #{ruby} -S rake #{task.shellescape}",
            env: ENV.select { |name, _| name.match?(PASSED_ON) })
  end

  # Runs a shell script in the root, as root, with a clean environment (plus env): /dev,
  # /proc, /sys and the host's Rust toolchain (read-only) mounted, in a private mount
  # namespace.
  def in_root(script, env: {})
    env = env.merge(
      "PATH" => PATH, "HOME" => "/root", "LANG" => "C.UTF-8",
      "CARGO_HOME" => "/opt/rust/cargo", "RUSTUP_HOME" => "/opt/rust/rustup"
    )
    mounts = rust_mounts
    mounts.each_key { |inside| FileUtils.mkdir_p(File.join(ROOT, inside)) }
    outer = [
      # The root must be a mount point: test/bed/run's `unshare --mount` makes "/" private.
      "set -e", "mount --bind #{ROOT.shellescape} #{ROOT.shellescape}", "cd #{ROOT.shellescape}",
      "mount --rbind /dev dev", "mount -t proc proc proc", "mount --rbind /sys sys",
      *mounts.map { |inside, host| "mount -o bind,ro #{host.shellescape} .#{inside}" },
      "exec chroot . /usr/bin/env -i #{env.map { |pair| pair.join('=').shellescape }.join(' ')} " \
      "sh -c #{script.shellescape}"
    ].join("\n")
    sh "unshare", "--mount", "--", "sh", "-c", outer
  ensure
    # unshare's private namespace makes this a no-op; it guards against a leaked mount.
    mounts_under(ROOT).reverse_each { |point| system("umount", "-l", point) }
  end
end

MriMatrix::RUBIES.each_key do |version|
  name = "ruby#{version.delete('.')}"
  namespace :test do
    desc "Run `rake test` on MRI #{version} in the Debian trixie root (.trixie/, made on first use)"
    task name do
      start = MriMatrix.clock
      MriMatrix.rake(version, "test")
    ensure
      puts format("test:%s: %.0f s in all", name, MriMatrix.clock - start)
    end
  end

  namespace :bench do
    desc "Run `rake bench` on MRI #{version} in the Debian trixie root"
    task(name) { MriMatrix.rake(version, "bench") }
  end
end
