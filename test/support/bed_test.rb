# frozen_string_literal: true

require "minitest"
require_relative "bed"
require_relative "stopwatch"
require_relative "subprocess"

module IgaiTest
  # Base class of every test that runs on the stalled-DNS bed: each test first checks that the
  # bed is there (skipped without it, failed when Bed.strict?), and has the clock and the
  # child-process helpers at hand. Plain Ruby: usable without the igai extension.
  class BedTest < Minitest::Test
    include Stopwatch
    include Subprocess

    Bed = IgaiTest::Bed

    def setup
      Bed.require!(self)
    end

    # Well under the bed resolver's own timeout (a stalled lookup lasts it all): a stalled
    # lookup that ends this early was interrupted.
    def prompt
      Bed.resolver_timeout / 2
    end
  end
end
