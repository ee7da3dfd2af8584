# frozen_string_literal: true

require "minitest/autorun"
require "socket"
require "timeout"
require "igai"
require_relative "support/bed_test"
require_relative "support/same_outcome"
require_relative "support/stats"
