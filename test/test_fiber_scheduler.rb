# frozen_string_literal: true

require_relative "test_helper"

# With a Fiber scheduler that implements address_resolve, both methods must ask it, as
# Socket.getaddrinfo does, and build the same answer from the addresses it returns.
class TestFiberScheduler < Minitest::Test
  # The smallest scheduler that runs non-blocking fibers to completion and answers
  # address_resolve from a fixed table, recording what it was asked.
  class AddressScheduler
    attr_reader :asked

    def initialize(addresses)
      @addresses = addresses
      @asked = []
    end

    def address_resolve(hostname)
      @asked << hostname
      @addresses.fetch(hostname, nil)
    end

    def fiber(&block)
      Fiber.new(blocking: false, &block).tap(&:resume)
    end

    def block(_blocker, timeout = nil) = (sleep(timeout) if timeout)
    def unblock(_blocker, _fiber) = nil
    def kernel_sleep(duration = nil) = (sleep(duration) if duration)
    def io_wait(_io, events, _timeout) = events
    def close = nil
  end

  def in_scheduled_fiber(scheduler)
    result = nil
    Thread.new do
      Fiber.set_scheduler(scheduler)
      Fiber.schedule do
        result = begin
          yield
        rescue StandardError => e
          [e.class, e.message]
        end
      end
    end.join
    result
  end

  def both(addresses, *args)
    plain_scheduler = AddressScheduler.new(addresses)
    ours_scheduler = AddressScheduler.new(addresses)
    plain = in_scheduled_fiber(plain_scheduler) { Socket.getaddrinfo(*args) }
    ours = in_scheduled_fiber(ours_scheduler) { Socket.interruptible_getaddrinfo(*args) }
    [plain, ours, plain_scheduler.asked, ours_scheduler.asked]
  end

  def test_names_are_resolved_by_the_schedulers_address_resolve
    plain, ours, plain_asked, ours_asked = both({ "db.internal" => ["127.0.0.9", "::9"] },
                                                "db.internal", 5432, nil, :STREAM)
    assert_equal plain, ours
    assert_equal ["127.0.0.9", "::9"], ours.map { |row| row[3] }
    assert_equal plain_asked, ours_asked
    assert_equal ["db.internal"], ours_asked
  end

  def test_no_usable_address_from_the_scheduler_is_the_same_error
    [{ "gone.internal" => [] }, { "gone.internal" => nil }, { "gone.internal" => ["not-an-ip"] }]
      .each do |addresses|
      plain, ours, = both(addresses, "gone.internal", 80)
      assert_equal plain, ours
    end
  end

  def test_numeric_hosts_and_nil_do_not_ask_the_scheduler
    ["127.0.0.1", nil, 0x7f000001].each do |host|
      plain, ours, plain_asked, ours_asked = both({}, host, 80)
      assert_equal plain, ours
      assert_equal plain_asked, ours_asked
      assert_empty ours_asked
    end
  end

  def test_a_service_name_with_scheduler_addresses_is_the_same_outcome
    plain, ours, = both({ "web.internal" => ["127.0.0.9"] }, "web.internal", "http")
    assert_equal plain, ours
  end
end
