//! What the resolver's workers run: either kind of lookup, and either kind of answer.

use crate::lookup::{AddrQuery, Outcome};
use crate::nameinfo::{NameOutcome, NameQuery};
use crate::zone;

/// A lookup for the worker pool. Equal queries are coalesced.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// getaddrinfo(3): names to addresses.
    Addresses(AddrQuery),
    /// getnameinfo(3): an address to names.
    Names(NameQuery),
}

/// The answer to a [`Query`], of the matching kind.
#[derive(Debug)]
pub enum Answer {
    Addresses(Outcome),
    Names(NameOutcome),
}

impl Query {
    /// Performs the lookup; blocks as long as the system resolver takes.
    pub fn run(&self) -> Answer {
        match self {
            Query::Addresses(query) => Answer::Addresses(query.run()),
            Query::Names(query) => Answer::Names(query.run()),
        }
    }

    /// The zone whose outage would stall this lookup, for the pool's per-zone limit on
    /// abandoned lookups (see [`zone`] for the choices).
    pub fn zone(&self) -> String {
        match self {
            Query::Addresses(query) => match &query.host {
                None => zone::NO_HOST.to_owned(),
                Some(host) => zone::of_name(host.to_bytes()),
            },
            Query::Names(query) => {
                zone::of_sockaddr(&query.sockaddr).unwrap_or_else(|| zone::NO_HOST.to_owned())
            }
        }
    }
}
