//! Lookups that reach the system resolver through `/etc/hosts` (no DNS): the C result list is
//! copied whole, canonical and reverse names included.

use igai_core::addrinfo::{family_of_sockaddr, AddrQuery, Hints};
use std::ffi::CString;

fn query(host: &str, flags: libc::c_int, reverse: bool) -> AddrQuery {
    AddrQuery {
        host: Some(CString::new(host).unwrap()),
        service: Some(CString::new("80").unwrap()),
        hints: Hints {
            flags,
            family: libc::AF_INET,
            socktype: libc::SOCK_STREAM,
            protocol: 0,
        },
        reverse,
    }
}

#[test]
fn a_name_from_the_hosts_file_gives_every_entry_of_the_list() {
    let entries = query("localhost", 0, false).run().unwrap();
    assert!(!entries.is_empty());
    for entry in &entries {
        assert_eq!(entry.family, libc::AF_INET);
        assert_eq!(entry.sockaddr_family(), libc::AF_INET);
        assert_eq!(entry.socktype, libc::SOCK_STREAM);
        assert_eq!(entry.address.to_str(), Ok("127.0.0.1"));
        assert_eq!(entry.port, 80);
        assert_eq!(entry.canonname, None, "no AI_CANONNAME, no canonical name");
        assert_eq!(entry.hostname, None, "no reverse lookup asked for");
    }
}

#[test]
fn ai_canonname_gives_the_canonical_name_on_the_first_entry() {
    let entries = query("localhost", libc::AI_CANONNAME, false).run().unwrap();
    assert_eq!(
        entries[0].canonname.as_deref().map(|name| name.to_str()),
        Some(Ok("localhost"))
    );
}

#[test]
fn a_reverse_lookup_names_each_address() {
    let entries = query("127.0.0.1", 0, true).run().unwrap();
    for entry in &entries {
        assert_eq!(
            entry.hostname.as_deref().map(|name| name.to_str()),
            Some(Ok("localhost"))
        );
    }
}

#[test]
fn the_family_is_read_from_two_bytes_and_not_from_fewer() {
    let inet = (libc::AF_INET as libc::sa_family_t).to_ne_bytes();
    assert_eq!(family_of_sockaddr(&inet), libc::AF_INET);
    assert_eq!(family_of_sockaddr(&inet[..1]), libc::AF_UNSPEC);
    assert_eq!(family_of_sockaddr(&[]), libc::AF_UNSPEC);
}
