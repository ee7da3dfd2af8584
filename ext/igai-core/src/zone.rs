//! The zone of a lookup: which lookups fail together when a name server goes dead.
//!
//! The pool limits how many abandoned (stuck) lookups one zone may hold (see [`crate::pool`]),
//! so that a dead zone cannot take every worker. A zone should therefore group the names that
//! one outage stops, and nothing more:
//!
//! * a host name's zone is its **registrable domain** by the ICANN section of the public
//!   suffix list (the `psl` crate, regenerated from the list upstream): `a.b.example.co.uk` →
//!   `example.co.uk`; the private section is skipped, so `x.y.github.io` → `github.io` (one
//!   provider's servers answer for all its tenants); a name that is itself a public suffix is
//!   its own zone; unknown top-level domains count as public suffixes (`host.corp` →
//!   `host.corp`). Case and one trailing dot are ignored;
//! * **single-label names** (`db`, `redis`) go through the resolver's search list, so a dead
//!   search domain stops all of them: they share the zone `(single label)`;
//! * **numeric-looking names** that are not addresses (`10.1`, `1.2.3.4.5`: a last label of
//!   digits, which no top-level domain has) share `(numeric)`;
//! * **reverse lookups** (getnameinfo, or getaddrinfo of a numeric host with
//!   `reverse_lookup`) ask the PTR records of the address's reverse zone, which is delegated
//!   per network: an IPv4 address's zone is its /24 (`3.2.1.in-addr.arpa` for 1.2.3.x), an
//!   IPv6 address's its /48 (12 nibbles of `ip6.arpa`); IPv4-mapped IPv6 addresses count as
//!   IPv4, as glibc asks for them in `in-addr.arpa`;
//! * getaddrinfo of a name with `reverse_lookup` is in the name's zone (the forward lookup
//!   comes first, and its answers are not known in advance);
//! * getaddrinfo without a host (a service lookup, which asks no DNS) is `(no host)`.
//!
//! The parenthesized names cannot be domain names, so they never collide with one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The zone of single-label host names.
pub const SINGLE_LABEL: &str = "(single label)";
/// The zone of names that look numeric but are not addresses.
pub const NUMERIC: &str = "(numeric)";
/// The zone of lookups without a host.
pub const NO_HOST: &str = "(no host)";

/// The zone of a host name given as bytes (as getaddrinfo(3) receives it).
pub fn of_name(host: &[u8]) -> String {
    let host = host.strip_suffix(b".").unwrap_or(host);
    if let Some(address) = std::str::from_utf8(host)
        .ok()
        .and_then(|text| text.parse::<IpAddr>().ok())
    {
        return of_address(address);
    }
    let name = host.to_ascii_lowercase();
    let Some(last_dot) = name.iter().rposition(|&byte| byte == b'.') else {
        return SINGLE_LABEL.to_owned();
    };
    let last_label = &name[last_dot + 1..];
    if last_label.is_empty() || last_label.iter().all(u8::is_ascii_digit) {
        return NUMERIC.to_owned();
    }
    String::from_utf8_lossy(registrable_domain(&name)).into_owned()
}

/// The registrable domain of a lowercase name without a trailing dot by the ICANN section of
/// the public suffix list, or the whole name when it is itself a public suffix.
///
/// Suffixes of the list's private section (`github.io`, `myshopify.com`, `blogspot.com`)
/// are skipped: their subdomains belong to different owners, but one provider's name servers
/// serve them all, so they fail together, and a crawler or multi-tenant app meeting that
/// provider's outage must not get two stuck lookups per tenant.
fn registrable_domain(name: &[u8]) -> &[u8] {
    let Some(found) = psl::suffix(name) else {
        return name;
    };
    let mut suffix = found.as_bytes();
    let mut private = found.typ() == Some(psl::Type::Private);
    while private {
        // The ICANN suffix lies inside the private one: look again without its first label.
        let Some(dot) = suffix.iter().position(|&byte| byte == b'.') else {
            break;
        };
        suffix = &suffix[dot + 1..];
        let found = psl::suffix(suffix);
        private = found.and_then(|found| found.typ()) == Some(psl::Type::Private);
        if let Some(found) = found {
            suffix = found.as_bytes();
        }
    }
    let Some(head) = name.len().checked_sub(suffix.len() + 1) else {
        return name;
    };
    let start = name[..head]
        .iter()
        .rposition(|&byte| byte == b'.')
        .map_or(0, |dot| dot + 1);
    &name[start..]
}

/// The reverse zone of an address: its /24 for IPv4, its /48 for IPv6.
pub fn of_address(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => of_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => of_v4(v4),
            None => of_v6(v6),
        },
    }
}

fn of_v4(address: Ipv4Addr) -> String {
    let [a, b, c, _] = address.octets();
    format!("{c}.{b}.{a}.in-addr.arpa")
}

fn of_v6(address: Ipv6Addr) -> String {
    let mut zone = String::with_capacity(12 * 2 + 8);
    for byte in address.octets()[..6].iter().rev() {
        zone.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
    }
    zone.push_str("ip6.arpa");
    zone
}

/// The reverse zone of the address in raw `struct sockaddr` bytes, or `None` when they hold
/// no IPv4 or IPv6 address.
pub fn of_sockaddr(sockaddr: &[u8]) -> Option<String> {
    let family = crate::addrinfo::family_of_sockaddr(sockaddr);
    if family == libc::AF_INET && sockaddr.len() >= 8 {
        let octets: [u8; 4] = sockaddr[4..8].try_into().ok()?;
        return Some(of_address(IpAddr::from(octets)));
    }
    if family == libc::AF_INET6 && sockaddr.len() >= 24 {
        let octets: [u8; 16] = sockaddr[8..24].try_into().ok()?;
        return Some(of_address(IpAddr::from(octets)));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_belong_to_their_registrable_domain() {
        assert_eq!(of_name(b"a.b.example.co.uk"), "example.co.uk");
        assert_eq!(of_name(b"WWW.Example.COM."), "example.com");
        assert_eq!(of_name(b"x.y.github.io"), "github.io");
        assert_eq!(of_name(b"shop.myshopify.com"), "myshopify.com");
        // A private suffix over a two-label ICANN one (com.cn).
        assert_eq!(
            of_name(b"x.s3.cn-north-1.amazonaws.com.cn"),
            "amazonaws.com.cn"
        );
        assert_eq!(of_name(b"a.b.c.kawasaki.jp"), "b.c.kawasaki.jp");
        assert_eq!(of_name(b"stall-1.igai.test"), "igai.test");
        assert_eq!(of_name(b"co.uk"), "co.uk");
        assert_eq!(of_name(b"host.corp"), "host.corp");
    }

    #[test]
    fn single_label_and_numeric_looking_names_share_a_zone_each() {
        assert_eq!(of_name(b"db"), SINGLE_LABEL);
        assert_eq!(of_name(b"localhost."), SINGLE_LABEL);
        assert_eq!(of_name(b"10.1"), NUMERIC);
        assert_eq!(of_name(b"1.2.3.4.5"), NUMERIC);
        assert_eq!(of_name(b"host."), SINGLE_LABEL);
    }

    #[test]
    fn odd_names_get_a_zone_without_panicking() {
        assert_eq!(of_name(b""), SINGLE_LABEL);
        assert_eq!(of_name(b"."), SINGLE_LABEL);
        assert_eq!(of_name(b".."), NUMERIC);
        assert_eq!(of_name(b".com"), ".com");
        assert_eq!(of_name(b"a..com"), ".com");
        assert_eq!(of_name(b"x.\xff\xfe.com"), "\u{fffd}\u{fffd}.com");
    }

    #[test]
    fn addresses_belong_to_their_reverse_network() {
        assert_eq!(of_name(b"192.0.2.77"), "2.0.192.in-addr.arpa");
        assert_eq!(
            of_name(b"2001:db8:abcd:12::1"),
            "d.c.b.a.8.b.d.0.1.0.0.2.ip6.arpa"
        );
        assert_eq!(of_name(b"::ffff:192.0.2.1"), "2.0.192.in-addr.arpa");
    }

    /// The raw bytes of a libc sockaddr struct, as the C API hands them over.
    fn bytes_of<T: Copy>(sockaddr: &T) -> Vec<u8> {
        // SAFETY: `sockaddr` is a live libc sockaddr struct, all of whose bytes the callers
        // initialised (they start from `mem::zeroed`); they are read, not changed.
        unsafe {
            std::slice::from_raw_parts(
                (sockaddr as *const T).cast::<u8>(),
                std::mem::size_of::<T>(),
            )
        }
        .to_vec()
    }

    #[test]
    fn sockaddrs_belong_to_their_reverse_network() {
        // SAFETY: sockaddr_in is plain old data; all-zero is a valid value.
        let mut v4: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        v4.sin_family = libc::AF_INET as libc::sa_family_t;
        v4.sin_addr.s_addr = u32::from_ne_bytes([198, 51, 100, 9]);
        assert_eq!(
            of_sockaddr(&bytes_of(&v4)).as_deref(),
            Some("100.51.198.in-addr.arpa")
        );
        assert_eq!(of_sockaddr(&[0u8; 2]), None);
    }

    #[test]
    fn ipv6_sockaddrs_belong_to_their_48_and_short_ones_to_none() {
        // SAFETY: sockaddr_in6 is plain old data; all-zero is a valid value.
        let mut v6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
        v6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        v6.sin6_addr.s6_addr = "2001:db8:abcd:12::1".parse::<Ipv6Addr>().unwrap().octets();
        let bytes = bytes_of(&v6);
        assert_eq!(
            of_sockaddr(&bytes).as_deref(),
            Some("d.c.b.a.8.b.d.0.1.0.0.2.ip6.arpa")
        );
        // Cut short before the address ends: no zone, and no read past the end.
        assert_eq!(of_sockaddr(&bytes[..23]), None);
        let mut short_v4 = bytes[..7].to_vec();
        short_v4[..2].copy_from_slice(&(libc::AF_INET as libc::sa_family_t).to_ne_bytes());
        assert_eq!(of_sockaddr(&short_v4), None);
    }
}
