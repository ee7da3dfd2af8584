# frozen_string_literal: true

require_relative "lib/igai/version"

Gem::Specification.new do |spec|
  spec.name = "igai"
  spec.version = Igai::VERSION
  spec.authors = ["igai developers"]
  spec.summary = "Interruptible getaddrinfo for every MRI: Timeout, Thread#raise and Ctrl-C " \
                 "end stalled DNS lookups"
  spec.description = <<~DESC
    Socket.interruptible_getaddrinfo behaves exactly like Socket.getaddrinfo, but a stalled
    lookup can be interrupted by Timeout, Thread#raise, Thread#kill or signals, or given its own
    timeout. Lookups run on a bounded, reusable, coalescing, fork-safe pool of native threads.
    Comes with Igai::Timeout, a port of the modern Timeout library. Native core in Rust.
  DESC
  spec.license = "MIT"
  spec.required_ruby_version = ">= 3.1"

  spec.files = Dir[
    "lib/**/*.rb",
    "exe/*",
    "ext/igai/extconf.rb",
    "ext/igai/Cargo.toml",
    "ext/igai/src/**/*.rs",
    "ext/igai-core/Cargo.toml",
    "ext/igai-core/src/**/*.rs",
    "Cargo.toml",
    "Cargo.lock",
    "README.md",
    "CHANGELOG.md",
    "LICENSE"
  ]
  spec.bindir = "exe"
  spec.executables = Dir["exe/*"].map { |path| File.basename(path) }
  spec.require_paths = ["lib"]
  spec.extensions = ["ext/igai/extconf.rb"]
end
