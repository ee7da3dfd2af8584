//! The Ruby binding of igai. This file only defines what Ruby sees; each concern lives in
//! its own module: argument conversion (`args`), where a lookup runs (`resolve`), releasing
//! the GVL (`nogvl`), result conversion (`convert`), exceptions (`errors`) and the pool's
//! knobs (`pool_api`). The lookup machinery itself is the Ruby-free `igai-core` crate.

mod args;
mod convert;
mod errors;
mod getaddrinfo;
mod getnameinfo;
mod nogvl;
mod pool_api;
mod resolve;

use magnus::{function, prelude::*, Error, Ruby};

#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    args::load_constant_names(ruby)?;
    let igai = ruby.define_module("Igai")?;
    let native = igai.define_module("Native")?;
    native.define_singleton_method("getaddrinfo", function!(getaddrinfo::getaddrinfo, 8))?;
    native.define_singleton_method("getnameinfo", function!(getnameinfo::getnameinfo, 3))?;
    igai.define_singleton_method("stats", function!(pool_api::stats, 0))?;
    igai.define_singleton_method("stuck_zones", function!(pool_api::stuck_zones, 0))?;
    igai.define_singleton_method("max_workers", function!(pool_api::max_workers, 0))?;
    igai.define_singleton_method("max_workers=", function!(pool_api::set_max_workers, 1))?;
    igai.define_singleton_method(
        "max_stuck_per_zone",
        function!(pool_api::max_stuck_per_zone, 0),
    )?;
    igai.define_singleton_method(
        "max_stuck_per_zone=",
        function!(pool_api::set_max_stuck_per_zone, 1),
    )?;
    igai.define_singleton_method("idle_timeout", function!(pool_api::idle_timeout, 0))?;
    igai.define_singleton_method("idle_timeout=", function!(pool_api::set_idle_timeout, 1))?;
    Ok(())
}
