//! Where a lookup runs: inline for numeric hosts, through the Fiber scheduler when one
//! resolves addresses, on the caller's thread for names `/etc/hosts` answers (see
//! [`igai_core::inline`]), otherwise on the worker pool while the caller waits without the GVL.

use crate::{args, errors, nogvl};
use igai_core::addrinfo::{AddrQuery, Call, LookupError, Outcome};
use igai_core::fork_local::ForkLocal;
use igai_core::inline;
use igai_core::nameinfo::{NameOutcome, NameQuery};
use igai_core::pool::{Ticket, WaitEnd};
use igai_core::query::{Answer, Query};
use igai_core::resolver::{self, resolver};
use igai_core::wake::WakeCell;
use magnus::rb_sys::FromRawValue;
use magnus::{prelude::*, Error, RArray, Ruby, Value};
use std::sync::Arc;
use std::time::Instant;

/// Finds the addresses for `query` (`host` is the caller's original host argument, which a
/// Fiber scheduler receives) before `deadline`, in the same order of attempts as MRI: a
/// numeric host first, then the scheduler's `address_resolve`, then getaddrinfo(3): on this
/// thread when the hosts file answers the name, else on a worker.
pub fn addresses(
    ruby: &Ruby,
    host: Value,
    query: AddrQuery,
    deadline: Option<Instant>,
) -> Result<Arc<Answer>, Error> {
    if let Some(answer) = query.answer_without_lookup() {
        return Ok(Arc::new(Answer::Addresses(answer)));
    }
    if query.is_numeric() {
        // Numeric, but host names are wanted: a reverse lookup asks DNS.
        return in_pool(ruby, Query::Addresses(query), deadline);
    }
    if let Some(outcome) = through_scheduler(ruby, host, &query, deadline)? {
        return Ok(Arc::new(Answer::Addresses(outcome)));
    }
    if inline::answers_from_hosts_file(&query) {
        inline::count_inline();
        return Ok(Arc::new(Answer::Addresses(on_this_thread(&query)?)));
    }
    in_pool(ruby, Query::Addresses(query), deadline)
}

/// Runs a lookup that cannot stall (see [`inline::answers_from_hosts_file`]) on the
/// caller's thread, through the same [`AddrQuery::run`] as a worker's, with the GVL released
/// as `Socket.getaddrinfo` releases it. Nothing can cut it short, so the unblocking function
/// goes to one shared wake cell that nobody sleeps on; an interrupt that arrives meanwhile is
/// run (and may raise) when the GVL comes back. Holding the GVL instead measured no faster
/// (within the noise of a shared machine), and would freeze every Ruby thread should a
/// hosts file change between the check and the call send glibc to DNS.
fn on_this_thread(query: &AddrQuery) -> Result<Outcome, Error> {
    // Made without a lock (racing first calls may each make one; one is kept), so nothing a
    // forked child inherits can be held.
    static CELL: ForkLocal<WakeCell> = ForkLocal::new();
    let waker = CELL.get_or_make(WakeCell::default).waker();
    loop {
        if let Some(outcome) = nogvl::without_gvl(|| query.run(), waker)? {
            return Ok(outcome);
        }
    }
}

/// Finds the names of an address before `deadline`: at once when no name service is
/// needed, otherwise on the worker pool.
pub fn names(
    ruby: &Ruby,
    query: NameQuery,
    deadline: Option<Instant>,
) -> Result<Arc<Answer>, Error> {
    if query.is_numeric() {
        return Ok(Arc::new(Answer::Names(query.run())));
    }
    in_pool(ruby, Query::Names(query), deadline)
}

/// The getaddrinfo outcome inside an answer to an address query.
pub fn address_outcome(answer: &Answer) -> &Outcome {
    match answer {
        Answer::Addresses(outcome) => outcome,
        Answer::Names(_) => unreachable!("the pool answers a query with its own kind"),
    }
}

/// The getnameinfo outcome inside an answer to a name query.
pub fn name_outcome(answer: &Answer) -> &NameOutcome {
    match answer {
        Answer::Names(outcome) => outcome,
        Answer::Addresses(_) => unreachable!("the pool answers a query with its own kind"),
    }
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
            Some(answer) => Arc::new(Answer::Addresses(answer)),
            None if each.is_numeric() => in_pool(ruby, Query::Addresses(each), deadline)?,
            None => continue,
        };
        if let Ok(found) = address_outcome(&answer) {
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
/// the wait (the ticket is dropped: a queued lookup is withdrawn, a running one abandoned);
/// one that does not (a trap handler that returned) sends us back to the same lookup.
///
/// A trap handler may also call `fork` while we wait; the child then comes back here holding
/// a ticket of the parent's pool, whose workers it does not have and whose mutex a parent
/// worker may have held at the fork. So after every wait we compare the fork generation:
/// in a new process the ticket is forgotten, never dropped (its `Drop` would lock the
/// parent's mutex), and the query goes to this process's own pool.
fn in_pool(ruby: &Ruby, query: Query, deadline: Option<Instant>) -> Result<Arc<Answer>, Error> {
    loop {
        let generation = resolver::generation();
        // Kept for a resubmission after a fork: the pool owns the submitted copy.
        let mut ticket = resolver().submit(query.clone());
        let waited = wait(&mut ticket, deadline, generation);
        if resolver::generation() != generation {
            std::mem::forget(ticket);
            match waited {
                Ok(WaitEnd::Done(outcome)) => return Ok(outcome),
                Err(error) => return Err(error),
                Ok(_) => continue, // submit again, to this process's pool
            }
        }
        // Dropped before any exception is built (building one runs Ruby code, which may raise
        // past this frame), so that a queued lookup is always withdrawn.
        drop(ticket);
        return match waited? {
            WaitEnd::Done(outcome) => Ok(outcome),
            WaitEnd::TimedOut => Err(errors::user_timeout()),
            WaitEnd::NoThread(error) => Err(errors::no_thread(error.raw_os_error())),
            WaitEnd::Panicked => Err(errors::panicked(ruby)),
            WaitEnd::Interrupted => unreachable!("interrupted waits end only in a forked child"),
        };
    }
}

/// Waits on `ticket` without the GVL until its wait ends for good, resuming after interrupts
/// that did not raise; returns early (with [`WaitEnd::Interrupted`] or whatever ended the
/// wait) once the process is no longer of fork generation `generation`.
fn wait(
    ticket: &mut Ticket<Query, Answer>,
    deadline: Option<Instant>,
    generation: usize,
) -> Result<WaitEnd<Answer>, Error> {
    loop {
        ticket.rearm();
        let waker = ticket.waker();
        // Trap handlers run only after the GVL-free wait (nogvl.rs), so a child forked by
        // one comes back here, never into the closure.
        let end = nogvl::without_gvl(|| ticket.wait(deadline), waker)?;
        if resolver::generation() != generation {
            return Ok(end.unwrap_or(WaitEnd::Interrupted));
        }
        match end {
            Some(WaitEnd::Interrupted) | None => continue,
            Some(end) => return Ok(end),
        }
    }
}
