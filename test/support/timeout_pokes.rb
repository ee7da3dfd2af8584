# frozen_string_literal: true

require "igai/timeout"
require_relative "stopwatch"

module IgaiTest
  # The poke stress of issue 23: worker threads run short Igai::Timeout blocks back to back,
  # with plain code between them, while a poker thread raises IOError into a random worker
  # every half millisecond (as Rack::Timeout, a job watchdog or another timeout library
  # would). It counts the timeout exceptions that surface outside the call that set them:
  # with a correct timeout, none. Plain Ruby (igai/timeout only):
  #
  #   ruby -Ilib -Itest -rsupport/timeout_pokes -e 'p IgaiTest::TimeoutPokes.run(seconds: 60)'
  module TimeoutPokes
    # What a run saw. +blocks+: timeout calls made; +expired+: calls that raised their own
    # timeout exception; +pokes+: IOErrors received; +strays+: timeout exceptions caught
    # outside the call that set them (must be 0).
    Result = Struct.new(:blocks, :expired, :pokes, :strays, keyword_init: true)

    # The klass form's exceptions: each call of that form gets a subclass of its own, so
    # that one call's exception is never mistaken for another's.
    class Expired < StandardError; end

    # The plain code between the blocks: a little allocation and arithmetic, with the
    # method calls and backward branches where Ruby delivers interrupts.
    def self.plain_code
      Array.new(40) { |i| i * i }.sum
    end

    # One worker: timeouts of 1-5 ms around sleeps of 0-6 ms (every other block, one of
    # the klass form), plain code between, until +stop+ is set. Returns its counts. Only the
    # counting itself is protected from the pokes.
    def self.work(stop, random)
      counts = Hash.new(0)
      Thread.handle_interrupt(Object => :never) do
        until stop[0]
          counts[:blocks] += 1
          record(counts) { one_block(counts, random) }
        end
        record(counts) { sleep 0.05 } # a deadline left behind would fire by now
      end
      counts
    end

    # One timeout call, the odd ones with a class of their own, then plain code.
    def self.one_block(counts, random)
      klass = counts[:blocks].odd? ? Class.new(Expired) : nil
      begin
        Igai::Timeout.timeout(random.rand(1..5) / 1000.0, klass) { sleep(random.rand(0..6) / 1000.0) }
      rescue klass || Igai::Timeout::Error
        counts[:expired] += 1
      end
      plain_code
    end

    # Runs the block open to interrupts; counts the pokes and the strays that end it.
    def self.record(counts)
      Thread.handle_interrupt(Object => :immediate) { yield }
    rescue IOError
      counts[:pokes] += 1
    rescue Igai::Timeout::ExitException, Expired
      # A call's own exception was rescued right after it: an Expired here was set by
      # another call. An ExitException never leaves a call.
      counts[:strays] += 1
    end

    # Runs +threads+ workers for +seconds+ while a poker raises IOError into a random one
    # every +poke_every+ seconds; returns the Result.
    def self.run(seconds:, threads: 8, poke_every: 0.0005, seed: Random.new_seed)
      stop = [false]
      # Started masked (threads inherit their creator's mask), so that no poke lands before
      # a worker counts.
      workers = Thread.handle_interrupt(Object => :never) do
        Array.new(threads) { |i| Thread.new(Random.new(seed + i)) { |random| work(stop, random) } }
      end
      poker = Thread.new(Random.new(seed)) do |random|
        until stop[0]
          victim = workers.sample(random: random)
          victim.raise(IOError, "poke") if victim.alive?
          sleep poke_every
        end
      end
      sleep seconds
      stop[0] = true
      poker.join
      totals = workers.map(&:value).inject(Hash.new(0)) { |sum, counts| sum.merge(counts) { |_, a, b| a + b } }
      Result.new(blocks: totals[:blocks], expired: totals[:expired], pokes: totals[:pokes], strays: totals[:strays])
    end
  end
end
