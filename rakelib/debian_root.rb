# frozen_string_literal: true

# A Debian root (a directory made with debootstrap from the Debian mirror the host's apt uses)
# that rake tasks run commands in with chroot: the MRI matrix's trixie root
# (rakelib/mri_matrix.rake), which builds and tests, and the bare roots of test:native
# (rakelib/native.rake), which have a Ruby and nothing to build with.
#
# A root is made once and reused: DIR/.igai-root.json records what it holds and is written
# only after every step succeeded (and removed before any step changes the root); a root whose
# record differs only in packages gets the missing ones installed, anything else makes a new
# root. Rubies may come from another suite than the root's own (MRI 3.4 from experimental),
# installed past that suite's Release file's Valid-Until date, which apt checks otherwise.
#
# With rust: true the host's Rust toolchain (CARGO_HOME, RUSTUP_HOME) is bind-mounted
# read-only at /opt/rust, or, on a host without rustup, Debian's cargo is installed in the
# root. All mounts are made in a private mount namespace (unshare --mount) and vanish with it.

require "fileutils"
require "json"
require "rake"
require "shellwords"

class DebianRoot
  include Rake::FileUtilsExt

  # Besides the caller's packages: what debootstrap and apt need in the root.
  BASE_PACKAGES = %w[ca-certificates debian-archive-keyring].freeze
  PATH = "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"
  # What a rust root adds to the environment: where the host's toolchain is mounted.
  RUST_ENV = { "PATH" => "/opt/rust/cargo/bin:#{PATH}", "CARGO_HOME" => "/opt/rust/cargo",
               "RUSTUP_HOME" => "/opt/rust/rustup" }.freeze

  attr_reader :dir, :rubies

  def self.clock = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  # dir: where the root lives; suite: its Debian suite; layout: bump when the way the root is
  # made changes (older roots are then made anew); packages: a proc giving the suite's packages
  # besides BASE_PACKAGES and the Rubies'; rubies: version => {binary:, packages:, suite:
  # (when not the root's own)}; headers: whether each Ruby must have its headers (false: must
  # not); rust: whether the host's Rust toolchain is mounted; lock: the lock file (outside the
  # root, which may be made anew); name: for messages.
  def initialize(dir:, suite:, layout:, rubies:, lock:, name:, packages: -> { [] }, headers: true,
                 rust: false)
    @dir = dir
    @suite = suite
    @layout = layout
    @rubies = rubies
    @lock = lock
    @name = name
    @packages = packages
    @headers = headers
    @rust = rust
  end

  def record = File.join(dir, ".igai-root.json")

  # The host's rustup toolchain, as {directory inside the root => host directory}, or {} when
  # the root gets none or the host has none (then a rust root installs Debian's cargo).
  def rust_mounts
    return {} unless @rust

    cargo_home = ENV.fetch("CARGO_HOME", File.join(Dir.home, ".cargo"))
    rustup_home = ENV.fetch("RUSTUP_HOME", File.join(Dir.home, ".rustup"))
    return {} unless File.executable?(File.join(cargo_home, "bin/cargo")) && File.directory?(rustup_home)

    { "/opt/rust/cargo" => cargo_home, "/opt/rust/rustup" => rustup_home }
  end

  # The packages of the root's own suite: the caller's, what the root itself needs, and the
  # Rubies of that suite.
  def packages
    rust = @rust && rust_mounts.empty? ? %w[cargo rustc] : []
    own_rubies = rubies.values.reject { |ruby| ruby[:suite] }.flat_map { |ruby| ruby[:packages] }
    (@packages.call + BASE_PACKAGES + rust + own_rubies).uniq.sort
  end

  # What a ready root holds; its record holds this once the root is made.
  def wanted
    { "layout" => @layout, "suite" => @suite, "packages" => packages,
      "rubies" => rubies.transform_values { |ruby| ruby[:packages] + [ruby[:suite]].compact } }
  end

  def recorded
    JSON.parse(File.read(record))
  rescue Errno::ENOENT, JSON::ParserError
    nil
  end

  # The first Debian archive URI in the host's apt sources (one-line or deb822 format).
  def self.mirror
    Dir["/etc/apt/sources.list", "/etc/apt/sources.list.d/*.{list,sources}"].each do |file|
      uri = File.read(file)[%r{^\s*(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+/debian)/?\s}, 1]
      return uri if uri
    end
    abort "debian root: no Debian mirror found in /etc/apt/sources.list*"
  end

  def self.mounts_under(dir)
    points = File.foreach("/proc/self/mounts").map { |line| line.split[1] }
    points.grep(%r{\A#{Regexp.escape(dir)}(/|\z)})
  end

  # Makes the root ready for every Ruby, or leaves it as it is when its record says it already
  # is (and each Ruby is there).
  def prepare
    FileUtils.mkdir_p(File.dirname(@lock))
    # One rake at a time changes the root (tasks using it may run side by side).
    File.open(@lock, File::CREAT | File::RDWR) do |lock|
      lock.flock(File::LOCK_EX)
      prepare_locked
    end
  end

  def prepare_locked
    want = wanted
    have = recorded
    return if have == want && rubies.values.all? { |r| File.executable?(File.join(dir, "usr/bin", r[:binary])) }

    start = DebianRoot.clock
    keep = have && have.merge("packages" => nil) == want.merge("packages" => nil)
    FileUtils.rm_f(record) # the root is being changed: not ready until recorded again
    bootstrap(want["packages"]) unless keep
    install(want["packages"])
    verify
    File.write("#{record}.new", "#{JSON.pretty_generate(want)}\n")
    File.rename("#{record}.new", record)
    puts format("%s: root %s in %.0f s", @name, keep ? "updated" : "made", DebianRoot.clock - start)
  end

  # A new root with the suite's packages.
  def bootstrap(packages)
    abort "#{@name}: #{dir} has mounts, not removing it" if DebianRoot.mounts_under(dir).any?
    unless File.executable?("/usr/sbin/debootstrap")
      sh "apt-get update -qq && apt-get install -y -qq --no-install-recommends debootstrap"
    end
    FileUtils.rm_rf(dir) # an old root, or a partial one from an interrupted bootstrap
    FileUtils.mkdir_p(File.dirname(dir))
    # In its own mount namespace, so that mounts a failing debootstrap leaves behind vanish.
    sh "unshare", "--mount", "--", "debootstrap", "--variant=minbase",
       "--include=#{packages.join(',')}", @suite, dir, DebianRoot.mirror
  end

  # Installs, inside the root, what it lacks: packages of its suite, then each Ruby; then
  # drops the downloaded packages.
  def install(packages)
    sources = rubies.values.filter_map { |ruby| ruby[:suite] }.uniq.map do |suite|
      "Types: deb\nURIs: #{DebianRoot.mirror}\nSuites: #{suite}\nComponents: main\n" \
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    end
    File.write(File.join(dir, "etc/apt/sources.list.d/igai-extra.sources"), sources.join("\n"))
    apt = "DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Check-Valid-Until=false"
    install = "#{apt} install -y -q --no-install-recommends"
    script = ["set -e", "#{apt} update -q",
              "#{install} #{packages.shelljoin}",
              *rubies.values.map do |ruby|
                "#{install} #{ruby[:suite] ? "-t #{ruby[:suite]} " : ''}#{ruby[:packages].shelljoin}"
              end,
              "apt-get clean"] # the downloaded packages: 100+ MB
    in_root(script.join("\n"))
  end

  # Each Ruby starts, and has its headers (or, in a root without them, has none).
  def verify
    rubies.each do |version, ruby|
      check = "puts RUBY_DESCRIPTION; exit RUBY_VERSION.start_with?(#{"#{version}.".dump}) && " \
              "#{@headers ? '' : '!'}File.exist?(File.join(RbConfig::CONFIG['rubyhdrdir'], 'ruby.h'))"
      in_root("exec #{ruby[:binary]} -e #{check.shellescape}")
    end
  end

  # Runs a shell script in the root, as root, with a clean environment (plus env): /dev,
  # /proc, /sys, the host's Rust toolchain (read-only, for a rust root) and the host files
  # `binds` lists (at the same paths) mounted, in a private mount namespace. `wrap` is a
  # command line prefix that runs the whole (e.g. test/bed/run, whose /etc/resolv.conf a bind
  # then shows inside).
  def in_root(script, env: {}, binds: [], wrap: [])
    env = env.merge("PATH" => PATH, "HOME" => "/root", "LANG" => "C.UTF-8")
    env.merge!(RUST_ENV) if @rust
    mounts = rust_mounts
    mounts.each_key { |inside| FileUtils.mkdir_p(File.join(dir, inside)) }
    outer = [
      # The root must be a mount point: test/bed/run's `unshare --mount` makes "/" private.
      "set -e", "mount --bind #{dir.shellescape} #{dir.shellescape}", "cd #{dir.shellescape}",
      "mount --rbind /dev dev", "mount -t proc proc proc", "mount --rbind /sys sys",
      *mounts.map { |inside, host| "mount -o bind,ro #{host.shellescape} .#{inside}" },
      *binds.map { |path| "touch .#{path.shellescape} && mount --bind #{path.shellescape} .#{path.shellescape}" },
      "exec chroot . /usr/bin/env -i #{env.map { |pair| pair.join('=').shellescape }.join(' ')} " \
      "sh -c #{script.shellescape}"
    ].join("\n")
    sh(*wrap, "unshare", "--mount", "--", "sh", "-c", outer)
  ensure
    # unshare's private namespace makes this a no-op; it guards against a leaked mount.
    DebianRoot.mounts_under(dir).reverse_each { |point| system("umount", "-l", point) }
  end
end
