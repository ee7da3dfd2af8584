# frozen_string_literal: true

# require "igai/replace" makes name resolution in Ruby's socket library interruptible on
# Rubies where it is not (MRI before 3.3): Socket.getaddrinfo, Addrinfo.getaddrinfo,
# Socket.tcp, TCPSocket.new, UDPSocket#send and the rest then resolve through igai, so that
# Timeout.timeout, Net::HTTP's open_timeout, Thread#raise and Ctrl-C end stalled lookups.
# See Igai.replace!, which it calls (and which can force the replacement on other Rubies).
#
# IGAI_TIMEOUT=seconds sets the process-wide limit of lookups without a limit of their own
# (Igai.replace!'s timeout:); unset or empty, there is none.
require "igai"

limit = ENV.fetch("IGAI_TIMEOUT", "")
if limit.strip.empty?
  Igai.replace!
else
  seconds = Float(limit, exception: false)
  Igai.replace!(timeout: Igai::SocketPatches.positive_seconds(seconds, "IGAI_TIMEOUT", limit))
end
