//! Where a lookup runs: inline for numeric hosts, through the Fiber scheduler when one
//! resolves addresses, otherwise on the worker pool while the caller waits without the GVL.

use crate::{args, errors, nogvl};
use igai_core::lookup::{AddrQuery, Call, LookupError, Outcome};
use igai_core::pool::WaitEnd;
use igai_core::resolver::resolver;
use magnus::rb_sys::FromRawValue;
use magnus::{prelude::*, Error, RArray, Ruby, Value};
use std::sync::Arc;
use std::time::Instant;

/// Resolves `query` (`host` is the caller's original host argument, which a Fiber scheduler
/// receives) before `deadline`, in the same order of attempts as MRI: a numeric host first,
/// then the scheduler's `address_resolve`, then getaddrinfo(3).
pub fn resolve(
    ruby: &Ruby,
    host: Value,
    query: AddrQuery,
    deadline: Option<Instant>,
) -> Result<Arc<Outcome>, Error> {
    if let Some(answer) = query.answer_without_lookup() {
        return Ok(Arc::new(answer));
    }
    if query.is_numeric() {
        // Numeric, but host names are wanted: a reverse lookup asks DNS.
        return in_pool(ruby, query, deadline);
    }
    if let Some(outcome) = through_scheduler(ruby, host, &query, deadline)? {
        return Ok(Arc::new(outcome));
    }
    in_pool(ruby, query, deadline)
}

/// MRI's `rb_scheduler_getaddrinfo`: when the current fiber is non-blocking and its scheduler
/// implements `address_resolve(host)`, the addresses it returns (each resolved as a numeric
/// host; others skipped) are the answer, or "no such name" when none is usable. Not used for
/// hosts that are already numeric or marked `AI_NUMERICHOST`.
fn through_scheduler(
    ruby: &Ruby,
    host: Value,
    query: &AddrQuery,
    deadline: Option<Instant>,
) -> Result<Option<Outcome>, Error> {
    if query.host.is_none() || query.hints.flags & libc::AI_NUMERICHOST != 0 {
        return Ok(None);
    }
    // SAFETY: GVL held; returns the current fiber's scheduler, or nil for a blocking fiber.
    let scheduler = unsafe { Value::from_raw(rb_sys::rb_fiber_scheduler_current()) };
    if scheduler.is_nil() || !scheduler.respond_to("address_resolve", true)? {
        return Ok(None);
    }
    let addresses: Value = scheduler.funcall("address_resolve", (host,))?;
    let addresses = if addresses.is_nil() {
        ruby.ary_new()
    } else {
        RArray::try_convert(addresses)?
    };
    let mut entries = Vec::new();
    for address in addresses.into_iter() {
        let mut flags = query.hints.flags;
        let each = AddrQuery {
            host: args::host(ruby, address, &mut flags)?,
            ..query.clone()
        };
        let answer = match each.answer_without_lookup() {
            Some(answer) => Arc::new(answer),
            None if each.is_numeric() => in_pool(ruby, each, deadline)?,
            None => continue,
        };
        if let Ok(found) = answer.as_ref() {
            entries.extend(found.iter().cloned());
        }
    }
    if entries.is_empty() {
        return Ok(Some(Err(LookupError {
            call: Call::GetAddrInfo,
            code: libc::EAI_NONAME,
            errno: 0,
        })));
    }
    Ok(Some(Ok(entries)))
}

/// Hands `query` to the pool and waits with the GVL released. An interrupt that raises ends
/// the wait (the `?` drops the ticket: a queued lookup is withdrawn, a running one abandoned);
/// one that does not (a trap handler that returned) sends us back to the same lookup.
fn in_pool(
    ruby: &Ruby,
    query: AddrQuery,
    deadline: Option<Instant>,
) -> Result<Arc<Outcome>, Error> {
    let mut ticket = resolver().submit(query);
    loop {
        ticket.rearm();
        let waker = ticket.waker();
        match nogvl::without_gvl(|| ticket.wait(deadline), waker)? {
            Some(WaitEnd::Done(outcome)) => return Ok(outcome),
            Some(WaitEnd::Interrupted) | None => continue,
            Some(WaitEnd::TimedOut) => return Err(errors::user_timeout()),
            Some(WaitEnd::NoThread(error)) => return Err(errors::no_thread(&error)),
            Some(WaitEnd::Panicked) => return Err(errors::panicked(ruby)),
        }
    }
}
