//! igai's core, free of Ruby: getaddrinfo(3) and getnameinfo(3) requests ([`addrinfo`],
//! [`nameinfo`], and [`query`] for either), which of them `/etc/hosts` answers so that they
//! may run on the caller's thread ([`inline`], from [`nsswitch`] and [`hosts_file`]), the
//! bounded, coalescing worker pool that runs the others
//! ([`pool`]), the signal-safe wake-ups callers sleep on ([`wake`]) after a short spin while
//! waits are short ([`spin`]), the per-process resolver that ties them together and survives
//! fork ([`resolver`]) with the gate that keeps a fork from catching a lookup inside one of the
//! C library's locks ([`fork_gate`]), the zones that bound how much stuck work one DNS outage
//! may hold ([`zone`]) and the scheduling rules built on them ([`policy`]); [`fork_local`]
//! holds what each process makes for itself.
//!
//! The Ruby binding (crate `igai`) parses arguments, releases the GVL while a caller waits on a
//! [`pool::Ticket`], and converts outcomes; nothing here knows about Ruby.

pub mod addrinfo;
pub mod fork_gate;
pub mod fork_local;
mod fork_park;
pub mod hosts_file;
pub mod inline;
pub mod nameinfo;
pub mod nsswitch;
pub mod policy;
pub mod pool;
pub mod query;
pub mod resolver;
mod signals;
pub mod spin;
#[cfg(test)]
mod testing;
pub mod wake;
pub mod zone;
