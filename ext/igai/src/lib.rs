//! The Ruby binding of igai. This file only defines what Ruby sees (`Socket`'s two
//! interruptible methods and `Igai`'s pool knobs); each concern lives in its own module: the
//! two methods (`getaddrinfo`, `getnameinfo`), argument conversion (`args`, and `constants`
//! for socket constants given by name), where a lookup runs (`resolve`), releasing the GVL
//! (`nogvl`), result conversion (`convert`), exceptions (`errors`), C API helpers (`raw`) and
//! the pool's knobs (`pool_api`). The lookup machinery itself is the Ruby-free `igai-core`
//! crate.
//!
//! The extension is Ractor-safe: its methods may be called from any Ractor. What makes that
//! true: the only Ruby objects it keeps between calls are classes (`BasicSocket`,
//! `SocketError`, `Socket::ResolutionError`: shareable) and IDs of static Symbols (never
//! collected, the same in every Ractor), all set up here while the extension loads; Socket's
//! constant names are kept as Rust data; everything else is process-wide Rust state behind
//! its own locks (the one lookup pool of the process).

mod args;
mod constants;
mod convert;
mod errors;
mod getaddrinfo;
mod getnameinfo;
mod nogvl;
mod pool_api;
mod raw;
mod resolve;

use magnus::{function, prelude::*, Error, RClass, Ruby};

#[magnus::init]
fn init(ruby: &Ruby) -> Result<(), Error> {
    // SAFETY: called while the extension loads, before it defines a method, which is what
    // marks those methods safe to call from any Ractor (see the module docs for why they are).
    unsafe { rb_sys::rb_ext_ractor_safe(true) };
    constants::load_constant_names(ruby)?;
    args::load_statics(ruby);
    errors::load_statics(ruby);
    let socket: RClass = ruby.class_object().const_get("Socket")?;
    socket.define_singleton_method(
        "interruptible_getaddrinfo",
        function!(getaddrinfo::interruptible_getaddrinfo, -1),
    )?;
    socket.define_singleton_method(
        "interruptible_getnameinfo",
        function!(getnameinfo::interruptible_getnameinfo, -1),
    )?;
    let igai = ruby.define_module("Igai")?;
    let native = igai.define_module("Native")?;
    native.define_singleton_method(
        "resolution_error",
        function!(errors::resolution_error_for, 1),
    )?;
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
