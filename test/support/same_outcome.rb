# frozen_string_literal: true

module IgaiTest
  # assert_same_outcome for differential tests. The including test defines compared_calls
  # (two Methods: the plain one and igai's) and outcome { ... } (what a call produced, result
  # or exception, in a form that compares everything a caller can observe).
  module SameOutcome
    def assert_same_outcome(*args)
      plain, ours = compared_calls
      expected = outcome { plain.call(*args) }
      actual = outcome { ours.call(*args) }
      assert_equal expected, actual, "#{plain.receiver}.#{plain.name}(#{args.map(&:inspect).join(', ')})"
    end

    # An object whose only conversion is method (:to_str, :to_int) returning value.
    def converting(method, value)
      Object.new.tap { |object| object.define_singleton_method(method) { value } }
    end

    # Both calls raise ArgumentError, with the same message, for each argument list.
    def assert_same_argument_errors(*arg_lists)
      plain, ours = compared_calls
      arg_lists.each do |args|
        expected = assert_raises(ArgumentError) { plain.call(*args) }
        actual = assert_raises(ArgumentError) { ours.call(*args) }
        assert_equal expected.message, actual.message, args.inspect
      end
    end
  end
end
