//! Helpers for calling Ruby's C API directly: raw `VALUE`s and IDs, C string literals, and
//! running calls that may raise under `rb_protect`.
//!
//! A Ruby function that raises does not return: it jumps (longjmp) to the nearest
//! `rb_protect` or method boundary, skipping the Rust frames in between without running
//! their destructors. magnus's own calls that may raise return a `Result` (they run under
//! `rb_protect`), but a few C functions and constructors may raise without that (an
//! allocation that fails raises NoMemoryError; `rb_syserr_new` calls `SystemCallError.new`).
//! The binding therefore keeps one rule: such a call runs either where no Rust value with a
//! destructor is alive up to the method boundary, or inside [`protected`], so that a raise
//! stops at the protect and everything outside it is dropped normally.

use magnus::rb_sys::{protect, FromRawValue};
use magnus::{Error, Value};
use std::ffi::CStr;

/// Runs `build` under `rb_protect`: a raise inside it (from a call that raises without
/// returning) comes back as `Err`, like an `Err` that `build` returns itself. `build`'s own
/// frames must own nothing with a destructor while they call such functions: borrowed data
/// and Ruby objects only (a raise skips those frames).
pub fn protected<T>(build: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let mut built = None;
    protect(|| {
        built = Some(build());
        rb_sys::Qnil as rb_sys::VALUE
    })?;
    built.expect("build returned, since protect did")
}

/// A C string literal (`b"text\0"`), checked when compiled (`c"..."` needs Rust 1.77).
pub const fn cstr(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(text) => text,
        Err(_) => panic!("a C string literal ends in its only NUL"),
    }
}

/// The permanent ID of `name` (`rb_intern`): IDs made this way are never collected.
pub fn intern(name: &str) -> rb_sys::ID {
    // SAFETY: GVL held; rb_intern2 reads `len` bytes of `name`.
    unsafe { rb_sys::rb_intern2(name.as_ptr().cast(), name.len() as _) }
}

/// A `Value` for a `VALUE` that a Ruby C API call just returned.
pub fn value(raw: rb_sys::VALUE) -> Value {
    // SAFETY: `raw` was returned by a Ruby C API call made with the GVL held and is a live
    // object (kept alive by our stack, which the GC scans).
    unsafe { Value::from_raw(raw) }
}
