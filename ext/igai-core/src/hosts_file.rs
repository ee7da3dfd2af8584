//! Which names `/etc/hosts` lists, and with addresses of which families.
//!
//! Only as much as deciding whether glibc's `files` source knows a name needs: glibc then
//! produces the answer itself. Names are matched as glibc matches them (ASCII case folded,
//! exactly otherwise: no trailing dot is stripped, so `localhost.` is not `localhost`). A
//! line counts when its address is one glibc reads too (dotted-quad IPv4, or IPv6, a
//! v4-mapped one counting as IPv6 only); names with bytes outside ASCII are left out, since
//! glibc folds their case by the locale. Leaving a name out is always safe: the lookup then
//! goes to the worker pool.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The address families a name has in the hosts file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

/// The names of a hosts file, lowercased, with the families of their addresses.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostsFile {
    names: HashMap<Vec<u8>, Families>,
}

impl HostsFile {
    /// Parses the text of a hosts file (`#` starts a comment; fields are separated by white
    /// space; the first is the address, the others the canonical name and aliases).
    pub fn parse(text: &[u8]) -> HostsFile {
        let mut names: HashMap<Vec<u8>, Families> = HashMap::new();
        for line in text.split(|&b| b == b'\n') {
            let line = line.split(|&b| b == b'#').next().unwrap_or_default();
            let mut fields = line
                .split(|b| b.is_ascii_whitespace())
                .filter(|field| !field.is_empty());
            let Some(family) = fields.next().and_then(address_family) else {
                continue;
            };
            for name in fields.filter(|name| name.is_ascii()) {
                let families = names.entry(name.to_ascii_lowercase()).or_default();
                match family {
                    Family::V4 => families.v4 = true,
                    Family::V6 => families.v6 = true,
                }
            }
        }
        HostsFile { names }
    }

    /// The families `name` has addresses of (none when it is not listed).
    pub fn families(&self, name: &[u8]) -> Families {
        if !name.is_ascii() {
            return Families::default();
        }
        self.names
            .get(&name.to_ascii_lowercase())
            .copied()
            .unwrap_or_default()
    }
}

enum Family {
    V4,
    V6,
}

/// The family of a hosts-file address field, when glibc certainly reads it as one.
fn address_family(field: &[u8]) -> Option<Family> {
    let text = std::str::from_utf8(field).ok()?;
    if text.parse::<Ipv4Addr>().is_ok() {
        Some(Family::V4)
    } else if text.parse::<Ipv6Addr>().is_ok() {
        Some(Family::V6)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: Families = Families { v4: true, v6: true };
    const V4: Families = Families {
        v4: true,
        v6: false,
    };
    const V6: Families = Families {
        v4: false,
        v6: true,
    };
    const NONE: Families = Families {
        v4: false,
        v6: false,
    };

    #[test]
    fn names_and_aliases_gather_the_families_of_every_line() {
        let hosts = HostsFile::parse(
            b"127.0.0.1 localhost\n::1 localhost ip6-localhost\n\
              10.0.0.5\tDB.internal db # primary\n10.0.0.6 db.internal\n\
              fd00::7 only6.internal\n",
        );
        assert_eq!(hosts.families(b"localhost"), BOTH);
        assert_eq!(hosts.families(b"ip6-localhost"), V6);
        assert_eq!(hosts.families(b"db.internal"), V4);
        assert_eq!(hosts.families(b"DB"), V4);
        assert_eq!(hosts.families(b"only6.internal"), V6);
        assert_eq!(hosts.families(b"primary"), NONE, "comments are not names");
    }

    #[test]
    fn names_match_as_glibc_matches_them() {
        let hosts = HostsFile::parse(b"127.0.0.1 localhost Mixed.Case\n");
        assert_eq!(hosts.families(b"LOCALHOST"), V4);
        assert_eq!(hosts.families(b"mixed.case"), V4);
        assert_eq!(hosts.families(b"localhost."), NONE, "glibc strips no dot");
        assert_eq!(hosts.families(b"local"), NONE);
        assert_eq!(hosts.families(b""), NONE);
    }

    #[test]
    fn lines_glibc_might_read_otherwise_are_left_out() {
        let hosts = HostsFile::parse(
            "127.1 short\n0x7f.0.0.1 hex\nfe80::1%eth0 scoped\nnot-an-address name\n\
             127.0.0.1 café\n::ffff:127.0.0.9 mapped\n10.0.0.1\n# 10.0.0.2 commented\n"
                .as_bytes(),
        );
        for name in ["short", "hex", "scoped", "name", "commented"] {
            assert_eq!(hosts.families(name.as_bytes()), NONE, "{name}");
        }
        assert_eq!(hosts.families("café".as_bytes()), NONE);
        assert_eq!(hosts.families("CAFÉ".as_bytes()), NONE);
        assert_eq!(hosts.families(b"mapped"), V6);
    }

    #[test]
    fn carriage_returns_and_tabs_separate_fields() {
        let hosts = HostsFile::parse(b"127.0.0.1\twin\r\n::1 \t win6\t\r\n");
        assert_eq!(hosts.families(b"win"), V4);
        assert_eq!(hosts.families(b"win6"), V6);
    }
}
