//! What the resolver's workers run: either kind of lookup, and either kind of answer.

use crate::addrinfo::{AddrQuery, Outcome};
use crate::nameinfo::{NameOutcome, NameQuery};
use crate::pool::Place;
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

    /// The zone whose outage would stall this lookup, and its sub-zone, for the pool's
    /// policy on stuck lookups (see [`zone`] for the choices).
    pub fn zone(&self) -> Place {
        match self {
            Query::Addresses(query) => match &query.host {
                None => zone::NO_HOST.into(),
                Some(host) => zone::place_of_name(host.to_bytes()),
            },
            Query::Names(query) => zone::of_sockaddr(&query.sockaddr)
                .unwrap_or_else(|| zone::NO_HOST.to_owned())
                .into(),
        }
    }
}

impl Answer {
    /// Whether the lookup's zone answered: anything but `EAI_AGAIN`, which glibc returns when
    /// no name server answered in time (or one said SERVFAIL). A dead zone's lookups end that
    /// way, and must not re-open it (see [`crate::policy`]).
    pub fn answered(&self) -> bool {
        let error = match self {
            Answer::Addresses(outcome) => outcome.as_ref().err(),
            Answer::Names(outcome) => outcome.as_ref().err(),
        };
        !matches!(error, Some(error) if error.code == libc::EAI_AGAIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addrinfo::{Call, LookupError};

    fn failed(code: libc::c_int) -> Answer {
        Answer::Addresses(Err(LookupError {
            call: Call::GetAddrInfo,
            code,
            errno: 0,
        }))
    }

    #[test]
    fn every_answer_but_a_timeout_says_the_zone_answered() {
        assert!(Answer::Addresses(Ok(Vec::new())).answered());
        assert!(failed(libc::EAI_NONAME).answered());
        assert!(!failed(libc::EAI_AGAIN).answered());
        let names = |code| {
            Answer::Names(Err(LookupError {
                call: Call::GetNameInfo,
                code,
                errno: 0,
            }))
        };
        assert!(names(libc::EAI_NONAME).answered());
        assert!(!names(libc::EAI_AGAIN).answered());
    }
}
