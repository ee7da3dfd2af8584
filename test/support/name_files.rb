# frozen_string_literal: true

require "tmpdir"
require_relative "subprocess"

module IgaiTest
  # Child Rubies that see their own /etc/nsswitch.conf, /etc/hosts or /etc/resolv.conf: each
  # runs in a further mount namespace (unshare --mount, inside the bed's) in which the given
  # texts are bind-mounted over those files. Writable from the child (glibc and igai notice
  # changes); gone with the child, leaving the bed's own files untouched.
  module NameFiles
    include Subprocess

    # Runs Ruby code like run_ruby, with files ({"/etc/hosts" => text, ...}) mounted over the
    # system's. Returns [output, status].
    def run_ruby_with_files(code, files:, timeout: 60, env: {})
      Dir.mktmpdir("igai-name-files-") do |dir|
        mounts = files.each_with_index.map do |(target, text), index|
          source = File.join(dir, "file#{index}")
          File.write(source, text)
          File.chmod(0o644, source)
          "mount --bind #{source} #{target}"
        end
        script = "#{mounts.join(' && ')} && exec \"$@\""
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                   RbConfig.ruby, "-I", LIB, "-e", code]
        run_command(command, timeout: timeout, env: env)
      end
    end
  end
end
