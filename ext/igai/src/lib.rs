//! The Ruby binding of igai. This file only defines what Ruby sees; each concern lives in
//! its own module: argument conversion (`args`), where a lookup runs (`resolve`), releasing
//! the GVL (`nogvl`), result conversion (`convert`), exceptions (`errors`) and the pool's
//! knobs (`pool_api`). The lookup machinery itself is the Ruby-free `igai-core` crate.
//!
//! The extension is Ractor-safe: its methods may be called from any Ractor. What makes that
//! true: the only Ruby objects it keeps between calls are a class (`BasicSocket`, shareable)
//! and IDs of static Symbols (never collected, the same in every Ractor), all set up here
//! while the extension loads; Socket's constant names are kept as Rust data; everything else
//! is process-wide Rust state behind its own locks (the one lookup pool of the process).

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
    // SAFETY: called while the extension loads, before it defines a method, which is what
    // marks those methods safe to call from any Ractor (see the module docs for why they are).
    unsafe { rb_sys::rb_ext_ractor_safe(true) };
    args::load_constant_names(ruby)?;
    args::load_statics(ruby);
    let igai = ruby.define_module("Igai")?;
    let native = igai.define_module("Native")?;
    native.define_singleton_method("getaddrinfo", function!(getaddrinfo::getaddrinfo, 8))?;
    native.define_singleton_method("getnameinfo", function!(getnameinfo::getnameinfo, 3))?;
    native.define_singleton_method(
        "resolution_error",
        function!(errors::resolution_error_for, 1),
    )?;
    igai.define_singleton_method("stats", function!(pool_api::stats, 0))?;
    igai.define_singleton_method("max_workers", function!(pool_api::max_workers, 0))?;
    igai.define_singleton_method("max_workers=", function!(pool_api::set_max_workers, 1))?;
    igai.define_singleton_method("idle_timeout", function!(pool_api::idle_timeout, 0))?;
    igai.define_singleton_method("idle_timeout=", function!(pool_api::set_idle_timeout, 1))?;
    Ok(())
}
