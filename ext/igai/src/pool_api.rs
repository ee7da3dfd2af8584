//! `Igai.stats`, `Igai.stuck_zones`, `Igai.max_workers(=)`, `Igai.max_stuck_per_zone(=)` and
//! `Igai.idle_timeout(=)`: watching and sizing the lookup threads.

use crate::args;
use igai_core::{inline, resolver};
use magnus::{value::ReprValue, Error, RHash, Ruby, Value};

/// `Igai.stats`: `{workers:, busy:, idle:, queued:, abandoned:, stuck:, coalesced:,
/// completed:, stuck_zones:, waiting_for_zone:, inline:}` for this process (a forked child
/// starts from zero); `stuck` counts running lookups abandoned or in flight past the stall
/// threshold (they do not count against `max_workers`); `inline` counts lookups of
/// `/etc/hosts` names answered on the caller's thread.
pub fn stats(ruby: &Ruby) -> Result<RHash, Error> {
    let stats = resolver::resolver().stats();
    let hash = ruby.hash_new();
    let counts: [(&str, u64); 11] = [
        ("workers", stats.workers as u64),
        ("busy", stats.busy as u64),
        ("idle", stats.idle as u64),
        ("queued", stats.queued as u64),
        ("abandoned", stats.abandoned as u64),
        ("stuck", stats.stuck as u64),
        ("coalesced", stats.coalesced),
        ("completed", stats.completed),
        ("stuck_zones", stats.stuck_zones as u64),
        ("waiting_for_zone", stats.waiting_for_zone as u64),
        ("inline", inline::inline_lookups()),
    ];
    for (name, count) in counts {
        hash.aset(ruby.to_symbol(name), count)?;
    }
    Ok(hash)
}

/// `Igai.stuck_zones`: `{"zone" => abandoned lookups}` for each zone holding abandoned
/// lookups, most first.
pub fn stuck_zones(ruby: &Ruby) -> Result<RHash, Error> {
    let hash = ruby.hash_new();
    for (zone, count) in resolver::resolver().abandoned_by_zone() {
        hash.aset(ruby.str_new(&zone), count)?;
    }
    Ok(hash)
}

/// `Igai.max_workers`: the cap on lookup threads.
pub fn max_workers() -> usize {
    resolver::max_workers()
}

/// `Igai.max_workers = n`: an Integer of at least 1 that fits a C `int` (Ruby's `NUM2INT`:
/// TypeError for nil or a String, RangeError beyond 2**31 - 1 or for Infinity/NaN; a Float
/// is truncated); ArgumentError below 1.
pub fn set_max_workers(ruby: &Ruby, value: Value) -> Result<Value, Error> {
    resolver::set_max_workers(count_of_at_least_one(ruby, value, "max_workers")?);
    Ok(value)
}

/// `Igai.max_stuck_per_zone`: stuck lookups since its last answer that make a zone dead.
pub fn max_stuck_per_zone() -> usize {
    resolver::max_stuck_per_zone()
}

/// `Igai.max_stuck_per_zone = n`: an Integer of at least 1.
pub fn set_max_stuck_per_zone(ruby: &Ruby, value: Value) -> Result<Value, Error> {
    resolver::set_max_stuck_per_zone(count_of_at_least_one(ruby, value, "max_stuck_per_zone")?);
    Ok(value)
}

/// `value` as a count for the setting `name`: converted as `NUM2INT` converts (TypeError,
/// RangeError), then ArgumentError below 1.
fn count_of_at_least_one(ruby: &Ruby, value: Value, name: &str) -> Result<usize, Error> {
    let count = args::num_to_int(value)?;
    if count < 1 {
        return Err(Error::new(
            ruby.exception_arg_error(),
            format!("{name} must be at least 1 (given {count})"),
        ));
    }
    Ok(count as usize)
}

/// `Igai.idle_timeout`: seconds an idle lookup thread waits for work before it exits.
pub fn idle_timeout() -> f64 {
    resolver::idle_timeout().as_secs_f64()
}

/// `Igai.idle_timeout = seconds`: a non-negative number, with the errors of `sleep` (see
/// [`args::timeout`]); longer than [`args::LONGEST_INTERVAL`] (about 136 years) is clamped
/// to it. nil is a TypeError, as for `sleep`.
pub fn set_idle_timeout(ruby: &Ruby, value: Value) -> Result<Value, Error> {
    if value.is_nil() {
        return Err(Error::new(
            ruby.exception_type_error(),
            "can't convert NilClass into time interval",
        ));
    }
    let interval = args::timeout(ruby, value)?.unwrap_or_default();
    resolver::set_idle_timeout(interval);
    Ok(value)
}
