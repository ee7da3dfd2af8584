# frozen_string_literal: true

require "socket"
require_relative "igai/version"
require_relative "igai/timeout"
require_relative "igai/native" # the native extension: precompiled for this Ruby, or built from source
require_relative "igai/addrinfo"
require_relative "igai/socket_patches"

# igai makes name resolution interruptible on every MRI.
#
# Socket.interruptible_getaddrinfo behaves exactly like Socket.getaddrinfo, but a stalled
# lookup can be cut short by Timeout, Thread#raise, Thread#kill or a signal, or by its own
# +timeout:+. Lookups run on a small, bounded pool of native threads (see Igai.stats), except
# names /etc/hosts answers, which cannot stall and run on the caller's thread (Igai.stats[:inline]).
#
# Igai.stats               -> {workers:, busy:, idle:, queued:, abandoned:, stuck:, coalesced:,
#                              completed:, stuck_zones:, waiting_for_zone:, inline:}
# Igai.stuck_zones         -> {"zone" => abandoned lookups} for zones holding abandoned lookups
# Igai.max_workers(=)      -> cap on lookup threads idle or running lookups not stuck (default 64,
#                              or IGAI_MAX_WORKERS); threads never exceed 4 times it
# Igai.max_stuck_per_zone(=) -> stuck lookups (abandoned, or in flight for 0.5 s) since its last
#                              answer that make a zone dead: it then starts only probes
#                              (default 2, or IGAI_MAX_STUCK_PER_ZONE)
# Igai.idle_timeout(=)     -> seconds an idle lookup thread lingers (default 10)
#
# Intervals (+timeout:+ and Igai.idle_timeout=) take what +sleep+ takes, with its errors
# (ArgumentError when negative; RangeError beyond time_t, for Infinity or NaN; TypeError for
# nil or a non-number); an interval longer than 2**32 seconds (about 136 years) is clamped to
# that. Igai.max_workers= takes an Integer from 1 to 2**31 - 1 (TypeError, RangeError or
# ArgumentError otherwise).
module Igai
  max_workers = ENV.fetch("IGAI_MAX_WORKERS", nil)
  self.max_workers = Integer(max_workers, 10) if max_workers
  max_stuck = ENV.fetch("IGAI_MAX_STUCK_PER_ZONE", nil)
  self.max_stuck_per_zone = Integer(max_stuck, 10) if max_stuck
end

# The extension (ext/igai) defines these two methods on Socket natively, keyword included,
# since a Ruby method around a native one cost a numeric host a third of its time:
#
# Socket.interruptible_getaddrinfo(host, service, family = nil, socktype = nil, protocol = nil,
#                                  flags = nil, reverse_lookup = nil, timeout: nil)
#   Resolves like Socket.getaddrinfo, with the same arguments, results and errors, but can be
#   interrupted (Timeout.timeout, Thread#raise, Thread#kill, Ctrl-C) while it waits, and gives
#   up with Errno::ETIMEDOUT after +timeout+ seconds when given.
#
#     Socket.interruptible_getaddrinfo("example.com", 443, nil, :STREAM, timeout: 2)
#     #=> [["AF_INET", 443, "93.184.215.14", "93.184.215.14", 2, 1, 6], ...]
#
# Socket.interruptible_getnameinfo(sockaddr, flags = 0, timeout: nil)
#   Finds host and service names like Socket.getnameinfo, with the same arguments, results
#   and errors, but interruptibly, giving up with Errno::ETIMEDOUT after +timeout+ seconds
#   when given. Requests that need no DNS (NI_NUMERICHOST) are answered without a thread.
#
#     Socket.interruptible_getnameinfo(Socket.sockaddr_in(80, "127.0.0.1"), timeout: 1)
#     #=> ["localhost", "http"]
