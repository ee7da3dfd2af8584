# frozen_string_literal: true

require "minitest/autorun"
require "socket"
require "timeout"
require "rbconfig"
require "igai"
require_relative "support/bed"
require_relative "support/stopwatch"

module IgaiTest
  # Shared test helpers: child Ruby processes and a monotonic stopwatch.
  module Helpers
    include Stopwatch

    LIB = File.expand_path("../lib", __dir__)

    # Well under the bed resolver's own timeout (a stalled lookup lasts it all): a stalled
    # lookup that ends this early was interrupted.
    def prompt
      Bed.resolver_timeout / 2
    end

    # Runs Ruby code in a child process (inside the same bed) and returns [output, status];
    # yields the pid first when a block is given. Used for tests about signals, fork and
    # process-wide state, so that the test runner itself stays clean. env: extra environment.
    def run_ruby(code, timeout: 30, env: {})
      reader, writer = IO.pipe
      pid = Process.spawn(env, RbConfig.ruby, "-I", LIB, "-e", code, out: writer, err: writer)
      writer.close
      yield pid if block_given?
      output = +""
      Timeout.timeout(timeout) { output << reader.read }
      _, status = Process.wait2(pid)
      [output, status]
    ensure
      reader&.close
    end
  end
end
