# frozen_string_literal: true

require "rbconfig"
require_relative "stopwatch"

module IgaiTest
  # The gem's lib directory, for child Rubies (-I LIB).
  LIB = File.expand_path("../../lib", __dir__)

  # A test run a non-interactive shell started in the background inherits SIGINT ignored and
  # would hand that on to every child, which Ctrl-C could then not interrupt: children get
  # the default.
  previous = Signal.trap("INT", "DEFAULT")
  Signal.trap("INT", previous) unless previous == "IGNORE"

  # Child processes for tests: every one started here is waited for with a bound, and killed
  # and reaped even when the test fails, raises or is interrupted (with its whole process
  # group, so that grandchildren it forked cannot outlive the test). Plain Ruby: usable
  # without the igai extension.
  module Subprocess
    include Stopwatch

    # A running child: its pid, and its output so far (stdout, and stderr unless captured
    # apart), collected by a reader thread.
    class Child
      attr_reader :pid

      def initialize(pid, out, err)
        @pid = pid
        @lock = Mutex.new
        @grew = ConditionVariable.new
        @output = +""
        @errors = +""
        @readers = [collect(out, @output)]
        @readers << collect(err, @errors) if err
        @status = nil
      end

      # Everything the child wrote so far.
      def output
        @lock.synchronize { @output.dup }
      end

      # What the child wrote on stderr (when captured apart).
      def errors
        @lock.synchronize { @errors.dup }
      end

      # Waits until the child has written a line equal to line (a readiness handshake), for at
      # most timeout seconds; raises Minitest::Assertion with the output so far otherwise.
      def await_line(line, timeout: 10)
        give_up = Stopwatch.now + timeout
        @lock.synchronize do
          until @output.each_line.any? { |written| written.chomp == line }
            left = give_up - Stopwatch.now
            if left <= 0 || @readers.none?(&:alive?)
              raise Minitest::Assertion,
                    "child #{@pid} did not say #{line.inspect} within #{timeout} s; it wrote: #{@output}"
            end
            @grew.wait(@lock, [left, 0.05].min)
          end
        end
      end

      # True until the child has exited (a zombie counts as exited).
      def alive?
        return false if @status

        File.read("/proc/#{@pid}/stat")[/\) (\S)/, 1] != "Z"
      rescue Errno::ENOENT
        false
      end

      # Waits for the child to exit, at most timeout seconds; returns its Process::Status, or
      # kills it and raises Minitest::Assertion (with its output) when it does not end in time.
      def wait(timeout)
        give_up = Stopwatch.now + timeout
        until @status
          _, @status = Process.wait2(@pid, Process::WNOHANG)
          break if @status

          if Stopwatch.now > give_up
            kill
            raise Minitest::Assertion, "child #{@pid} still running after #{timeout} s (killed); " \
                                       "it wrote: #{output}#{errors}"
          end
          sleep 0.01
        end
        @readers.each { |reader| reader.join(5) }
        @status
      end

      # Kills the child's process group (the child and whatever it forked) and reaps the child.
      def kill
        begin
          Process.kill(:KILL, -@pid)
        rescue Errno::ESRCH, Errno::EPERM
          nil
        end
        begin
          @status ||= Process.wait2(@pid)[1]
        rescue Errno::ECHILD
          nil
        end
        @readers.each { |reader| reader.join(5) }
      end

      private

      def collect(io, buffer)
        Thread.new do
          while (chunk = io.readpartial(4096))
            @lock.synchronize do
              buffer << chunk
              @grew.broadcast
            end
          end
        rescue IOError # EOFError included: the child closed its end
          nil
        ensure
          io.close unless io.closed?
          @lock.synchronize { @grew.broadcast }
        end
      end
    end

    module_function

    # Runs command (an argv array) in its own process group. Yields the Child (to handshake
    # with it or send it signals) when a block is given; then waits for it at most timeout
    # seconds. Returns [output, status], or [stdout, stderr, status] with separate_stderr:.
    # The child is killed and reaped whatever happens.
    def run_command(command, timeout: 30, env: {}, separate_stderr: false)
      out_reader, out_writer = IO.pipe
      err_reader, err_writer = separate_stderr ? IO.pipe : [nil, out_writer]
      pid = Process.spawn(env, *command, in: File::NULL, out: out_writer, err: err_writer,
                                         pgroup: true)
      [out_writer, err_writer].uniq.each(&:close)
      child = Child.new(pid, out_reader, err_reader)
      begin
        yield child if block_given?
        status = child.wait(timeout)
      ensure
        child.kill
      end
      separate_stderr ? [child.output, child.errors, status] : [child.output, status]
    end

    # Runs Ruby code in a child Ruby (-I LIB, then ruby_args) inside the same bed; returns
    # [output, status] (stdout and stderr together). See run_command for the block and the
    # bound. Used for tests about signals, fork and process-wide state, so that the test
    # runner itself stays clean.
    def run_ruby(code, *ruby_args, timeout: 30, env: {}, &block)
      run_command([RbConfig.ruby, "-I", LIB, *coverage_probe, *ruby_args, "-e", code], timeout: timeout,
                                                                                      env: env, &block)
    end

    # Under `rake coverage`'s suite runs, the probe (also in RUBYOPT, which Ruby reads after the
    # command line) goes before any -r of ruby_args, so that the library it loads is measured.
    def coverage_probe
      ENV["IGAI_COVERAGE_DIR"] ? ["-r", File.expand_path("coverage.rb", __dir__)] : []
    end
  end
end
