# frozen_string_literal: true

# Reads valgrind memcheck's text logs (one per process: --log-file=DIR/vg.%p.log) for
# `rake test:memcheck` (rakelib/memcheck.rake), and decides which errors are igai's.
#
# Text logs, not --xml: valgrind 3.19 opens a new log file for a child forked without exec
# when the name holds %p, but writes the child's XML into the parent's XML file, where the
# two processes' output interleaves.
#
#   report = MemcheckLog.read(Dir["tmp/memcheck/vg.*.log"])
#   report.failures   # errors that fail the task (see Report#failure?)
#   report.to_s       # counts, the expected records, then every failure in full
#
# Also runnable by itself: ruby test/memcheck/valgrind_log.rb LOG... (exit 1 on failures).
module MemcheckLog
  # Code of the extension. The process runs no other Rust than igai.so, so a Rust name
  # ("a::b", "<T as U>") or Rust source (the igai crates, crates.io dependencies such as
  # magnus and rb-sys, and Rust's std, whose generics and inlined code live in igai.so)
  # is the extension's, and so is any frame in igai.so itself.
  EXTENSION = %r{/igai\.so\b|/ext/igai(?:-core)?/|\A/rustc/|/\.cargo/registry/}
  # The C library and friends: calls made on someone else's behalf. Without debug info
  # valgrind names the object ("in /lib/.../libc.so.6"); with it, glibc's source paths are
  # relative ("resolv/./resolv/res_send.c:325").
  SYSTEM = %r{\Ain /(?:usr/)?lib\S*/(?:libc|libm|ld-linux|libgcc_s|libnss_\w+|libresolv)[.-]
              | \A(?!/)[\w.+-]+(?:/[\w.+-]+)*\.[chS]:\d+\z}x
  ALLOCATOR = %r{\Ain /\S*/vgpreload_memcheck}
  RUBY = %r{\Ain /\S*/(?:libruby[-.]|ruby\d)}

  Frame = Struct.new(:function, :where) do
    def to_s = "#{function.size > 140 ? "#{function[0, 140]}..." : function} (#{where})"

    def extension? = EXTENSION.match?(where) || function.include?("::")

    def system? = SYSTEM.match?(where) || ALLOCATOR.match?(where)

    def ruby? = RUBY.match?(where)
  end

  # One error or leak record: `what` is valgrind's headline; `stacks` the main stack first,
  # then each auxiliary one (where a block was allocated or freed, where an uninitialised
  # value came from) after its line in `aux`.
  Error = Struct.new(:pid, :what, :stacks, :aux, keyword_init: true) do
    def kind
      case what
      when /\AInvalid (?:read|write) of size/ then :invalid_access
      when /\AInvalid free|\AMismatched free|\AInvalid realloc|\ASource and destination overlap/
        :invalid_free
      when /uninitialised/ then :uninitialised
      when /are definitely lost/ then :definitely_lost
      when /are (?:possibly|indirectly) lost|still reachable/ then :other_leak
      when /\AProcess terminating/ then :crash
      else :other
      end
    end

    def frames = stacks.flatten

    def extension? = frames.any?(&:extension?)

    # The code responsible for a stack: its first frame that is neither valgrind's allocator
    # nor the C library (which only works for whoever called it).
    def owner(stack = stacks.first) = stack.find { |frame| !frame.system? }

    # The first frame in igai's own crates (ext/igai, ext/igai-core): where igai's code made
    # the call that led here.
    # Without debug info (where: "in .../igai.so"), a function whose path starts in them.
    def crate_frame
      stacks.first.find do |f|
        f.where.match?(%r{/ext/igai}) || (f.where.start_with?("in ") && f.function.match?(/\A<?igai(?:_core)?::/))
      end
    end

    # The allocation stack of the heap block an uninitialised value came from
    # (--track-origins=yes), if it came from the heap.
    def heap_origin
      index = aux.index { |line| line.include?("created by a heap allocation") }
      index && stacks[index + 1]
    end

    def bytes = what[/\A([\d,]+) (?:\([\d,]+ direct, [\d,]+ indirect\) )?bytes/, 1].to_s.delete(",").to_i

    def to_s
      lines = ["[pid #{pid}] #{what}"]
      stacks.each_with_index do |stack, i|
        lines << "  #{aux[i - 1]}" if i.positive? && aux[i - 1]
        lines.concat(stack.map { |frame| "    #{frame}" })
      end
      lines.join("\n")
    end
  end

  # Leaks that a forked child has by design: the parent's threads do not exist in the child,
  # so what only they (and the pool the child forgets) pointed to is unreachable there. Each
  # rule matches the allocation stack; they apply only to forked children, never to the
  # process the task started, where the same leak fails the task.
  EXPECTED_IN_CHILD = {
    "the parent's pool, forgotten by the fork handler (ext/igai-core/src/resolver.rs)" =>
      ->(e) { e.crate_frame&.then { |f| "#{f.function} #{f.where}".match?(/resolver::resolver|resolver\.rs/) } },
    "the parent's hosts-file cache, forgotten by the fork handler (ext/igai-core/src/inline.rs, " \
    "a ForkLocal)" =>
      ->(e) { e.frames.any? { |f| f.function.include?("inline::answers_from_hosts_file") } },
    "state of the parent's threads, gone with them: a worker's std::thread handle and start " \
    "closure, a thread-local destructor registration" =>
      lambda do |e|
        e.frames.any? { |f| f.function.include?("spawn_worker") } ||
          (e.frames.any? { |f| f.function == "__cxa_thread_atexit_impl" } && e.extension?)
      end
  }.freeze

  # Errors of all the processes, and the per-process summaries valgrind printed at exit.
  class Report
    attr_reader :errors, :summaries, :logs, :parents

    def initialize(logs, errors, summaries, parents)
      @logs = logs
      @errors = errors
      @summaries = summaries # pid => {"definitely lost" => bytes, ..., "errors" => n, ...}
      @parents = parents # pid => parent pid
    end

    # The process the task started: the one whose parent ran outside valgrind.
    def main_pid = parents.find { |_, parent| !parents.key?(parent) }&.first

    def child?(error) = error.pid != main_pid

    # Why a record is expected (a forked child's by-design leak), or nil.
    def expected(error)
      return nil unless error.kind == :definitely_lost && child?(error)

      EXPECTED_IN_CHILD.find { |_, rule| rule.call(error) }&.first
    end

    # Fails the task:
    # * an invalid read, write or free, or overlapping copy, with an extension frame on any
    #   of its stacks (where it happened, where the block was allocated or freed);
    # * a use of an uninitialised value by the extension (or by the C library it called),
    #   or of one that came from a heap block the extension allocated (--track-origins);
    # * a block lost for good that the extension allocated (directly or through the C
    #   library), unless a forked child has it by design (EXPECTED_IN_CHILD);
    # * a process killed by a signal.
    # Uses of uninitialised values inside MRI are MRI's: its conservative GC reads every word
    # of each thread's stack, initialised or not (their origins are stack allocations).
    # Blocks MRI allocated and never freed are MRI's too (ruby.supp suppresses them).
    def failure?(error)
      case error.kind
      when :invalid_access, :invalid_free then error.extension?
      when :uninitialised
        error.owner&.extension? || error.heap_origin&.then { |stack| error.owner(stack)&.extension? }
      when :definitely_lost then error.owner&.extension? && !expected(error)
      when :crash then true
      else false
      end
    end

    def failures = errors.select { |e| failure?(e) }

    # Every process finished under valgrind (its log ends with the error summary).
    def complete? = !logs.empty? && summaries.size == logs.size && summaries.values.all? { |s| s.key?("errors") }

    def group(error)
      return :failing if failure?(error)
      return :expected if expected(error)

      error.extension? ? :igai_frames : :no_igai
    end

    def to_s
      out = ["valgrind: #{logs.size} process(es), main #{main_pid}, forked children " \
             "#{(parents.keys - [main_pid]).join(', ')}"]
      summaries.each do |pid, s|
        out << format("  pid %-7s errors %-6s suppressed %-7s definitely lost %s bytes, " \
                      "indirectly %s, possibly %s", pid, s["errors"], s["suppressed"],
                      s["definitely lost"] || 0, s["indirectly lost"] || 0, s["possibly lost"] || 0)
      end
      out << "records by kind: failing = igai's (see Report#failure?); expected = by design in " \
             "a forked child; igai_frames/no_igai = not igai's, information only"
      errors.group_by { |e| [e.kind, group(e)] }.sort_by { |key, _| key.map(&:to_s) }.each do |(kind, group), list|
        out << format("  %-16s %-12s %6d", kind, group, list.size)
      end
      errors.select { |e| expected(e) }.group_by { |e| expected(e) }.each do |reason, list|
        out << "expected: #{list.size} record(s), #{list.sum(&:bytes)} bytes: #{reason}"
      end
      failures.each { |e| out << "" << "FAILURE #{e}" }
      out.join("\n")
    end
  end

  # Headlines that are commentary, not errors.
  COMMENTARY = Regexp.new("\\A(?:" + Regexp.union(
    "Memcheck,", "Copyright", "Using Valgrind", "Command:", "Parent PID:", "Warning:",
    "HEAP SUMMARY", "LEAK SUMMARY", "ERROR SUMMARY", "For lists", "For counts", "To see them",
    "Reachable blocks", "Use --track-origins", "More than", "Subsequent errors",
    "will still be", "I'm not reporting", "Final error counts", "Go fix", "All heap blocks",
    "No leaks", "Rerun with", "Note:"
  ).source + "|Thread \\d+|\\s)")
  FRAME = /\A\s+(?:at|by) 0x\h+: (.*) \((.*)\)\z/
  AUX = /\A (?:Address|Block|Uninitialised value|\s*(?:The|This) )/

  module_function

  def read(paths)
    errors = []
    summaries = {}
    parents = {}
    paths.sort.each do |path|
      parse(File.read(path, encoding: "UTF-8", invalid: :replace), errors, summaries, parents)
    end
    Report.new(paths, errors, summaries, parents)
  end

  def parse(text, errors, summaries, parents)
    current = nil
    text.each_line(chomp: true) do |raw|
      next unless (m = raw.match(/\A==(\d+)== ?(.*)\z/))

      pid = m[1].to_i
      line = m[2]
      summary = (summaries[pid] ||= {})
      if line.empty?
        current = nil
      elsif (frame = line.match(FRAME))
        current&.stacks&.last&.push(Frame.new(frame[1], frame[2]))
      elsif current && line.match?(AUX)
        current.aux << line.strip
        current.stacks << []
      elsif (s = line.match(/\A\s+(definitely lost|indirectly lost|possibly lost|still reachable): ([\d,]+) bytes/))
        summary[s[1]] = s[2].delete(",").to_i
      elsif (s = line.match(/\A\s+suppressed: ([\d,]+) bytes/))
        summary["leaks suppressed"] = s[1].delete(",").to_i
      elsif (s = line.match(/\AERROR SUMMARY: ([\d,]+) errors from [\d,]+ contexts \(suppressed: ([\d,]+)/))
        summary["errors"] = s[1].delete(",").to_i
        summary["suppressed"] = s[2].delete(",").to_i
      elsif (s = line.match(/\AParent PID: (\d+)/))
        parents[pid] = s[1].to_i
      elsif line.match?(COMMENTARY) || line.start_with?(" ")
        current = nil unless current && line.start_with?(" ")
      else
        current = Error.new(pid: pid, what: line, stacks: [[]], aux: [])
        errors << current
      end
    end
  end
end

if $PROGRAM_NAME == __FILE__
  report = MemcheckLog.read(ARGV)
  puts report
  exit(report.failures.empty? && report.complete? ? 0 : 1)
end
