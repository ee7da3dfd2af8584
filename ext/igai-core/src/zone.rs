//! The zone of a lookup: which lookups fail together when a name server goes dead.
//!
//! The pool ([`crate::pool`], rules in [`crate::policy`]) holds back the new lookups of a
//! zone that holds `max_stuck_per_zone` stuck lookups and has not answered since they began,
//! but for one probe per sub-zone. A zone should therefore group the names that one outage
//! stops, and nothing more; its sub-zones tell apart the parts that fail on their own:
//!
//! * a host name's zone is its **registrable domain** by the ICANN section of the public
//!   suffix list (the `psl` crate, regenerated from the list upstream): `a.b.example.co.uk` →
//!   `example.co.uk`; the private section is skipped, so `x.y.github.io` → `github.io` (one
//!   provider's servers answer for most tenants, and its outage must not cost two stuck
//!   lookups per tenant); a name that is itself a public suffix is its own zone; unknown
//!   top-level domains count as public suffixes (`host.corp` → `host.corp`). Case and one
//!   trailing dot are ignored;
//! * its **sub-zone** is the longest of its parent domain (`db.corp.example.com` →
//!   `corp.example.com`, a part a company may delegate to a server of its own), its
//!   registrable domain by the whole list, private section included (`x.foo.eu.org` →
//!   `foo.eu.org`, a tenant that runs its own name servers), and its zone. So a dead sub-zone
//!   or tenant makes its zone dead, but a name of another sub-zone or tenant still probes,
//!   is answered and re-opens the zone;
//! * **internationalised names** are compared in their DNS form: each label lowercased
//!   (Unicode lowercase mapping; no NFC normalisation or full UTS 46 mapping) and, when not
//!   ASCII, Punycode-encoded with `xn--` (RFC 3492), before the suffix lookup: `bücher.de`,
//!   `BÜCHER.de` and `xn--bcher-kva.de` are one zone;
//! * **single-label names** (`db`, `redis`) are their own zone: they go through the
//!   resolver's search list, and one of them stalling (a lost packet, a service without
//!   endpoints) says nothing about the others;
//! * **`localhost` and `*.localhost`** are `(localhost)`, never a DNS zone: the hosts file (or
//!   glibc itself) answers them;
//! * **numeric-looking names** that are not addresses (`10.1`, `1.2.3.4.5`: a last label of
//!   digits, which no top-level domain has) share `(numeric)`;
//! * **reverse lookups** (getnameinfo, or getaddrinfo of a numeric host with
//!   `reverse_lookup`) ask the PTR records of the address's reverse zone, which is delegated
//!   per network: an IPv4 address's zone is its /24 (`3.2.1.in-addr.arpa` for 1.2.3.x), an
//!   IPv6 address's its /48 (12 nibbles of `ip6.arpa`); IPv4-mapped IPv6 addresses count as
//!   IPv4, as glibc asks for them in `in-addr.arpa`; a scoped IPv6 literal (`fe80::1%eth0`)
//!   is its address's without the scope;
//! * getaddrinfo of a name with `reverse_lookup` is in the name's zone (the forward lookup
//!   comes first, and its answers are not known in advance);
//! * getaddrinfo without a host (a service lookup, which asks no DNS) is `(no host)`.
//!
//! The parenthesized names cannot be domain names, so they never collide with one; single
//! labels have no dot, so they never collide with a registrable domain.

use crate::pool::Place;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The zone of the empty host name.
pub const EMPTY: &str = "(empty)";
/// The zone of `localhost` and its subdomains.
pub const LOCALHOST: &str = "(localhost)";
/// The zone of names that look numeric but are not addresses.
pub const NUMERIC: &str = "(numeric)";
/// The zone of lookups without a host.
pub const NO_HOST: &str = "(no host)";

/// The zone of a host name given as bytes (as getaddrinfo(3) receives it).
pub fn of_name(host: &[u8]) -> String {
    place_of_name(host).zone
}

/// The zone and sub-zone of a host name given as bytes (see the module documentation).
pub fn place_of_name(host: &[u8]) -> Place {
    let host = host.strip_suffix(b".").unwrap_or(host);
    if let Some(address) = address_of(host) {
        return of_address(address).into();
    }
    let name = dns_form(host);
    if name == b"localhost" || name.ends_with(b".localhost") {
        return LOCALHOST.into();
    }
    if name.is_empty() {
        return EMPTY.into();
    }
    let Some(last_dot) = name.iter().rposition(|&byte| byte == b'.') else {
        return text(&name).into();
    };
    let last_label = &name[last_dot + 1..];
    if last_label.is_empty() || last_label.iter().all(u8::is_ascii_digit) {
        return NUMERIC.into();
    }
    let zone = registrable_domain(&name);
    let parent = name
        .iter()
        .position(|&byte| byte == b'.')
        .map_or(&name[..], |dot| &name[dot + 1..]);
    let tenant = psl::domain(&name).map_or(zone, |domain| domain.as_bytes());
    // All three are suffixes of the name: the longest is the most specific.
    let sub_zone = [parent, tenant, zone]
        .into_iter()
        .max_by_key(|suffix| suffix.len())
        .unwrap_or(zone);
    Place::new(text(zone), text(sub_zone))
}

/// Bytes as text, invalid UTF-8 replaced.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The address a host names literally, a scoped IPv6 one (`fe80::1%eth0`) without its scope.
fn address_of(host: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(host).ok()?;
    if let Ok(address) = text.parse::<IpAddr>() {
        return Some(address);
    }
    let (address, _scope) = text.split_once('%')?;
    address.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

/// The name as DNS compares it: ASCII lowercase; a UTF-8 name's labels lowercased and, when
/// not ASCII, Punycode-encoded with the `xn--` prefix. Other bytes are kept as they are.
fn dns_form(host: &[u8]) -> Vec<u8> {
    let Some(unicode) = std::str::from_utf8(host)
        .ok()
        .filter(|text| !text.is_ascii())
    else {
        return host.to_ascii_lowercase();
    };
    let labels: Vec<String> = unicode
        .split('.')
        .map(|label| {
            let lower = label.to_lowercase();
            if lower.is_ascii() {
                return lower;
            }
            let chars: Vec<char> = lower.chars().collect();
            punycode(&chars).map_or(lower, |encoded| format!("xn--{encoded}"))
        })
        .collect();
    labels.join(".").into_bytes()
}

/// The Punycode encoding of a label (RFC 3492, section 6.3), or `None` on overflow.
fn punycode(input: &[char]) -> Option<String> {
    const BASE: u32 = 36;
    const T_MIN: u32 = 1;
    const T_MAX: u32 = 26;
    let mut output: String = input.iter().filter(|c| c.is_ascii()).collect();
    let basic = output.len();
    let mut handled = basic;
    if basic > 0 {
        output.push('-');
    }
    let (mut n, mut delta, mut bias) = (0x80u32, 0u32, 72u32);
    while handled < input.len() {
        let next = input.iter().map(|&c| c as u32).filter(|&c| c >= n).min()?;
        let points = u32::try_from(handled + 1).ok()?;
        delta = delta.checked_add((next - n).checked_mul(points)?)?;
        n = next;
        for &c in input {
            let c = c as u32;
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c != n {
                continue;
            }
            let mut q = delta;
            let mut k = BASE;
            loop {
                let t = k.saturating_sub(bias).clamp(T_MIN, T_MAX);
                if q < t {
                    break;
                }
                output.push(punycode_digit(t + (q - t) % (BASE - t)));
                q = (q - t) / (BASE - t);
                k += BASE;
            }
            output.push(punycode_digit(q));
            let points = u32::try_from(handled + 1).ok()?;
            bias = punycode_bias(delta, points, handled == basic);
            delta = 0;
            handled += 1;
        }
        delta = delta.checked_add(1)?;
        n = n.checked_add(1)?;
    }
    Some(output)
}

/// Punycode's digit for `value` (0..36): `a`..`z`, then `0`..`9`.
fn punycode_digit(value: u32) -> char {
    let value = value as u8;
    if value < 26 {
        char::from(b'a' + value)
    } else {
        char::from(b'0' + value - 26)
    }
}

/// Punycode's bias adaptation (RFC 3492, section 6.1).
fn punycode_bias(delta: u32, points: u32, first: bool) -> u32 {
    let mut delta = if first { delta / 700 } else { delta / 2 };
    delta += delta / points;
    let mut k = 0;
    while delta > (36 - 1) * 26 / 2 {
        delta /= 36 - 1;
        k += 36;
    }
    k + (36 - 1 + 1) * delta / (delta + 38)
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
    fn single_labels_are_their_own_zone_and_numeric_looking_names_share_one() {
        assert_eq!(of_name(b"db"), "db");
        assert_eq!(of_name(b"Redis."), "redis");
        assert_ne!(of_name(b"redis"), of_name(b"memcached"));
        assert_eq!(of_name(b"10.1"), NUMERIC);
        assert_eq!(of_name(b"1.2.3.4.5"), NUMERIC);
        assert_eq!(of_name(b"host."), "host");
    }

    #[test]
    fn localhost_and_its_subdomains_are_never_a_dns_zone() {
        for name in [
            &b"localhost"[..],
            b"LOCALHOST.",
            b"app.localhost",
            b"a.b.Localhost",
        ] {
            assert_eq!(of_name(name), LOCALHOST);
        }
        assert_eq!(of_name(b"localhost.example.com"), "example.com");
        assert_eq!(of_name(b"mylocalhost"), "mylocalhost");
    }

    #[test]
    fn spellings_of_one_internationalised_domain_are_one_zone() {
        assert_eq!(of_name("bücher.de".as_bytes()), "xn--bcher-kva.de");
        assert_eq!(of_name("www.BÜCHER.de".as_bytes()), "xn--bcher-kva.de");
        assert_eq!(of_name(b"XN--BCHER-KVA.DE"), "xn--bcher-kva.de");
        assert_eq!(of_name("München.de".as_bytes()), "xn--mnchen-3ya.de");
        // RFC 3492's sample (7.1 L, Japanese): three basic code points, then the others.
        assert_eq!(
            of_name("3年b組金八先生.jp".as_bytes()),
            "xn--3b-ww4c5e180e575a65lsy2b.jp"
        );
        // An IDN top-level domain of the list.
        assert_eq!(of_name("пример.рф".as_bytes()), "xn--e1afmkfd.xn--p1ai");
    }

    #[test]
    fn sub_zones_are_the_parent_domain_or_the_tenant_whichever_is_longer() {
        let sub = |name: &str| place_of_name(name.as_bytes()).sub_zone;
        assert_eq!(sub("db.corp.example.com"), "corp.example.com");
        assert_eq!(sub("api.example.com"), "example.com");
        assert_eq!(sub("example.com"), "example.com");
        assert_eq!(sub("x.foo.eu.org"), "foo.eu.org");
        assert_eq!(sub("foo.eu.org"), "foo.eu.org");
        assert_eq!(sub("a.b.foo.eu.org"), "b.foo.eu.org");
        assert_eq!(of_name(b"x.foo.eu.org"), "eu.org");
        assert_eq!(sub("ok-1.ok.igai-shared.test"), "ok.igai-shared.test");
        assert_eq!(of_name(b"ok-1.ok.igai-shared.test"), "igai-shared.test");
        assert_eq!(place_of_name(b"redis"), Place::from("redis"));
    }

    #[test]
    fn odd_names_get_a_zone_without_panicking() {
        assert_eq!(of_name(b""), EMPTY);
        assert_eq!(of_name(b"."), EMPTY);
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
        assert_eq!(of_name(b"fe80::1%eth0"), "0.0.0.0.0.0.0.0.0.8.e.f.ip6.arpa");
        assert_eq!(of_name(b"fe80::1%2"), of_name(b"fe80::1"));
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
