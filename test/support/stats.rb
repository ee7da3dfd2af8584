# frozen_string_literal: true

module IgaiTest
  # Igai.stats of a process that has no lookup thread and never looked anything up: every count
  # zero. Tests state exact expectations as NO_STATS.merge(the counts the scenario fixes).
  NO_STATS = { workers: 0, busy: 0, idle: 0, queued: 0, abandoned: 0, stuck: 0, coalesced: 0,
               completed: 0, stuck_zones: 0, waiting_for_zone: 0, inline: 0 }.freeze
end
