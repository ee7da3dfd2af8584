//! Property tests: fuzzing on stable Rust (cargo-fuzz needs nightly).
//!
//! proptest throws arbitrary hosts, services, hints and sockaddr bytes at the parts of the core
//! that take them without any name service:
//!
//! * [`numeric_entries`] and [`AddrQuery::answer_without_lookup`] never panic, agree with each
//!   other, and return exactly what MRI's `numeric_getaddrinfo` returns, as restated here
//!   independently from MRI's C source ([`mri_numeric`]);
//! * where MRI's numeric rule and glibc agree (see below), the answer equals glibc's own
//!   `getaddrinfo(AI_NUMERICHOST | AI_NUMERICSERV)`, entry for entry and byte for byte;
//! * [`NameQuery::run`] with `NI_NUMERICHOST | NI_NUMERICSERV` never panics on any sockaddr
//!   bytes, and names a well-formed IPv4/IPv6 sockaddr with its own address and port.
//!
//! Where MRI deliberately differs from glibc (addrinfo.rs), glibc is not asked:
//! MRI ignores hint flags; copies a nonzero hint protocol into every entry (glibc picks the
//! matching socket types); gives a SOCK_RAW entry a port (glibc: EAI_SERVICE); and leaves to
//! getaddrinfo(3) every host that inet_pton(3) rejects or that has characters outside
//! `0-9a-fA-F.:` (glibc also takes "1.2.3", "0x7f.1", "fe80::1%lo" as numeric) and every
//! service that is not all digits (glibc's strtoul also takes " 80" and "+80").
//!
//! Cases: 512 per property by default (the whole file runs in a few seconds); set
//! PROPTEST_CASES for a longer run. A failing case is saved under proptest-regressions/
//! (commit it) and replayed first next time; [`regressions`] lists hand-picked cases that
//! always run.

use igai_core::addrinfo::{numeric_entries, AddrEntry, AddrQuery, Hints};
use igai_core::nameinfo::NameQuery;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use std::ffi::{CStr, CString};
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::raw::{c_char, c_int};

const SIN_LEN: usize = size_of::<libc::sockaddr_in>();
const SIN6_LEN: usize = size_of::<libc::sockaddr_in6>();

/// 512 cases per property unless PROPTEST_CASES says otherwise.
///
/// Failures are saved in ext/igai-core/proptest-regressions/properties.txt (cargo runs tests in
/// the package's directory; proptest's default location needs a lib.rs beside the test).
fn config() -> ProptestConfig {
    let from_env = std::env::var_os("PROPTEST_CASES").is_some();
    ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/properties.txt",
        ))),
        cases: if from_env {
            ProptestConfig::default().cases
        } else {
            512
        },
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- generators

/// Bytes without NUL, as a C string.
fn c_bytes(max: usize) -> impl Strategy<Value = CString> {
    prop::collection::vec(1u8..=255, 0..=max).prop_map(|b| CString::new(b).expect("no NUL"))
}

/// Text from a small alphabet, so that near-numeric shapes come up often.
fn from_alphabet(alphabet: &'static [u8], max: usize) -> impl Strategy<Value = CString> {
    prop::collection::vec(prop::sample::select(alphabet), 0..=max)
        .prop_map(|b| CString::new(b).expect("alphabet has no NUL"))
}

/// IPv4 addresses written the usual way and in forms only some parsers take.
fn ipv4_text() -> impl Strategy<Value = String> {
    (any::<[u8; 4]>(), 0..8u8).prop_map(|(o, form)| match form {
        0 | 1 => Ipv4Addr::from(o).to_string(),
        2 => format!("{}.{}.{}.0{}", o[0], o[1], o[2], o[3]), // leading zero: inet_aton only
        3 => format!("{}.{}.{}", o[0], o[1], u16::from_be_bytes([o[2], o[3]])), // shorthand
        4 => format!("0x{:x}.{}.{}.{}", o[0], o[1], o[2], o[3]), // hex part
        5 => format!("{}.", Ipv4Addr::from(o)),               // trailing dot
        6 => u32::from_be_bytes(o).to_string(),               // one number
        _ => format!("{} ", Ipv4Addr::from(o)),               // trailing space
    })
}

/// IPv6 addresses in canonical, expanded, uppercase, v4-embedding and scoped forms.
fn ipv6_text() -> impl Strategy<Value = String> {
    (any::<[u16; 8]>(), any::<[u8; 4]>(), 0..9u8).prop_map(|(g, v4, form)| {
        let ip = Ipv6Addr::from(g);
        let v4 = Ipv4Addr::from(v4);
        match form {
            0 | 1 => ip.to_string(),
            2 => ip.to_string().to_uppercase(),
            3 => g
                .iter()
                .map(|x| format!("{x:04x}"))
                .collect::<Vec<_>>()
                .join(":"),
            4 => format!("::ffff:{v4}"),
            5 => format!("::{v4}"),
            6 => format!("{ip}%lo"),
            7 => format!("[{ip}]"),
            _ => format!("{}::{}", g[0], g[1]), // decimal-looking groups
        }
    })
}

fn host() -> impl Strategy<Value = Option<CString>> {
    prop_oneof![
        1 => Just(None),
        3 => c_bytes(40).prop_map(Some),
        3 => from_alphabet(b"0123456789abcdefABCDEF.:%x -+", 24).prop_map(Some),
        2 => from_alphabet(b"0123456789.", 18).prop_map(Some),
        4 => ipv4_text().prop_map(|t| Some(CString::new(t).expect("no NUL"))),
        4 => ipv6_text().prop_map(|t| Some(CString::new(t).expect("no NUL"))),
    ]
}

fn service() -> impl Strategy<Value = Option<CString>> {
    prop_oneof![
        2 => Just(None),
        3 => (0u32..70_000).prop_map(|p| Some(CString::new(p.to_string()).expect("digits"))),
        2 => from_alphabet(b"0123456789", 24).prop_map(Some),
        2 => from_alphabet(b"0123456789 +-x", 6).prop_map(Some),
        1 => c_bytes(12).prop_map(Some),
        1 => prop::sample::select(&["http", "domain", "00080", "65535", "65536", "4294967376"][..])
            .prop_map(|s| Some(CString::new(s).expect("no NUL"))),
    ]
}

fn hints() -> impl Strategy<Value = Hints> {
    let family = prop_oneof![
        4 => Just(libc::AF_UNSPEC),
        3 => Just(libc::AF_INET),
        3 => Just(libc::AF_INET6),
        1 => Just(libc::AF_UNIX),
        1 => any::<c_int>(),
    ];
    let socktype = prop_oneof![
        4 => Just(0),
        2 => Just(libc::SOCK_STREAM),
        2 => Just(libc::SOCK_DGRAM),
        2 => Just(libc::SOCK_RAW),
        1 => Just(libc::SOCK_SEQPACKET),
        1 => any::<c_int>(),
    ];
    let protocol = prop_oneof![
        6 => Just(0),
        2 => Just(libc::IPPROTO_TCP),
        2 => Just(libc::IPPROTO_UDP),
        1 => Just(libc::IPPROTO_SCTP),
        1 => any::<c_int>(),
    ];
    let flags = prop_oneof![
        3 => Just(0),
        2 => prop::sample::select(&[
            libc::AI_PASSIVE,
            libc::AI_CANONNAME,
            libc::AI_NUMERICHOST,
            libc::AI_NUMERICSERV,
            libc::AI_ADDRCONFIG,
            libc::AI_V4MAPPED | libc::AI_ALL,
        ][..]),
        1 => any::<c_int>(),
    ];
    (flags, family, socktype, protocol).prop_map(|(flags, family, socktype, protocol)| Hints {
        flags,
        family,
        socktype,
        protocol,
    })
}

fn addr_query() -> impl Strategy<Value = AddrQuery> {
    (host(), service(), hints(), prop::bool::weighted(0.2)).prop_map(
        |(host, service, hints, reverse)| AddrQuery {
            host,
            service,
            hints,
            reverse,
        },
    )
}

/// sockaddr bytes: well-formed IPv4/IPv6 ones, truncated or extended ones, AF_UNIX ones (with
/// and without a NUL ending the path: see
/// `af_unix_path_without_nul_is_not_read_past_the_sockaddr` below), and noise.
fn sockaddr() -> impl Strategy<Value = Vec<u8>> {
    let sin = (any::<u16>(), any::<[u8; 4]>(), any::<[u8; 8]>())
        .prop_map(|(port, ip, zero)| sockaddr_in(port, ip, zero));
    let sin6 = (any::<u16>(), any::<u32>(), any::<[u8; 16]>(), any::<u32>()).prop_map(
        |(port, flow, ip, scope)| {
            sockaddr_in6(port, flow, ip, if scope % 4 == 0 { scope } else { 0 })
        },
    );
    let well_formed = prop_oneof![sin, sin6];
    let resized = (well_formed.clone(), 0usize..40, any::<bool>()).prop_map(|(mut b, n, grow)| {
        if grow {
            b.extend(std::iter::repeat(0xa5).take(n));
        } else {
            b.truncate(b.len().saturating_sub(n));
        }
        b
    });
    let unix = (prop::collection::vec(1u8..=255, 0..120), any::<bool>()).prop_map(|(path, nul)| {
        let mut b = (libc::AF_UNIX as libc::sa_family_t).to_ne_bytes().to_vec();
        b.extend(path);
        if nul {
            b.push(0);
        }
        b
    });
    let noise = prop::collection::vec(any::<u8>(), 0..140);
    prop_oneof![4 => well_formed, 3 => resized, 1 => unix, 3 => noise]
}

fn name_flags() -> impl Strategy<Value = c_int> {
    let numeric = libc::NI_NUMERICHOST | libc::NI_NUMERICSERV;
    prop_oneof![
        6 => Just(numeric),
        1 => Just(numeric | libc::NI_DGRAM),
        1 => Just(numeric | libc::NI_NAMEREQD),
        1 => Just(numeric | libc::NI_NOFQDN),
    ]
}

// ---------------------------------------------------------------- helpers

fn sockaddr_in(port: u16, ip: [u8; 4], zero: [u8; 8]) -> Vec<u8> {
    let mut b = (libc::AF_INET as libc::sa_family_t).to_ne_bytes().to_vec();
    b.extend(port.to_be_bytes());
    b.extend(ip);
    b.extend(zero);
    assert_eq!(b.len(), SIN_LEN);
    b
}

fn sockaddr_in6(port: u16, flow: u32, ip: [u8; 16], scope: u32) -> Vec<u8> {
    let mut b = (libc::AF_INET6 as libc::sa_family_t).to_ne_bytes().to_vec();
    b.extend(port.to_be_bytes());
    b.extend(flow.to_be_bytes());
    b.extend(ip);
    b.extend(scope.to_ne_bytes());
    assert_eq!(b.len(), SIN6_LEN);
    b
}

fn family_of(b: &[u8]) -> c_int {
    libc::sa_family_t::from_ne_bytes([b[0], b[1]]) as c_int
}

/// The address and port in a sockaddr_in/sockaddr_in6 (extra bytes after it are allowed, as
/// getnameinfo(3) allows them), read field by field.
fn ip_and_port(b: &[u8]) -> Option<(IpAddr, u16)> {
    if b.len() < 2 {
        return None;
    }
    let port = u16::from_be_bytes([*b.get(2)?, *b.get(3)?]);
    match family_of(b) {
        libc::AF_INET if b.len() >= SIN_LEN => {
            let ip: [u8; 4] = b[4..8].try_into().ok()?;
            Some((IpAddr::from(ip), port))
        }
        libc::AF_INET6 if b.len() >= SIN6_LEN => {
            let ip: [u8; 16] = b[8..24].try_into().ok()?;
            Some((IpAddr::from(ip), port))
        }
        _ => None,
    }
}

fn inet_pton<const N: usize>(family: c_int, text: &CStr) -> Option<[u8; N]> {
    extern "C" {
        fn inet_pton(af: c_int, src: *const c_char, dst: *mut std::ffi::c_void) -> c_int;
    }
    let mut out = [0u8; N];
    // SAFETY: NUL-terminated input; `out` is large enough for `family` (4 or 16 bytes).
    let ok = unsafe { inet_pton(family, text.as_ptr(), out.as_mut_ptr().cast()) };
    (ok == 1).then_some(out)
}

/// What MRI's numeric rule answers: the address, the port, and each entry's (socktype,
/// protocol).
type MriAnswer = (IpAddr, u16, Vec<(c_int, c_int)>);

/// MRI's `numeric_getaddrinfo` (ext/socket/raddrinfo.c), restated: the address and port, and
/// the (socktype, protocol) of each entry, or `None` where MRI calls getaddrinfo(3) instead.
fn mri_numeric(q: &AddrQuery) -> Option<MriAnswer> {
    let host = q.host.as_deref()?;
    // parse_numeric_port: NULL is 0; else strspn(digits) == strlen, strtoul without ERANGE,
    // below 0x10000.
    let port = match q.service.as_deref() {
        None => 0,
        Some(s) => {
            let s = s.to_bytes();
            if !s.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let value = s.iter().try_fold(0u64, |n, d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })?;
            u16::try_from(value).ok()?
        }
    };
    let bytes = host.to_bytes();
    let within = |set: &[u8]| bytes.iter().all(|c| set.contains(c));
    let Hints {
        family,
        socktype,
        protocol,
        ..
    } = q.hints;
    let ip = if (family == libc::AF_UNSPEC || family == libc::AF_INET6)
        && within(b"0123456789abcdefABCDEF.:")
        && inet_pton::<16>(libc::AF_INET6, host).is_some()
    {
        IpAddr::from(inet_pton::<16>(libc::AF_INET6, host)?)
    } else if (family == libc::AF_UNSPEC || family == libc::AF_INET)
        && within(b"0123456789.")
        && inet_pton::<4>(libc::AF_INET, host).is_some()
    {
        IpAddr::from(inet_pton::<4>(libc::AF_INET, host)?)
    } else {
        return None;
    };
    let list = [
        (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        (libc::SOCK_RAW, 0),
    ];
    let kinds: Vec<_> = list
        .iter()
        .filter(|(t, p)| {
            (socktype == 0 || socktype == *t) && (protocol == 0 || *p == 0 || protocol == *p)
        })
        .map(|&(t, p)| (t, if protocol != 0 { protocol } else { p }))
        .collect();
    (!kinds.is_empty()).then_some((ip, port, kinds))
}

/// One entry of a getaddrinfo answer, as compared with glibc's.
type Row = (c_int, c_int, c_int, Vec<u8>);

/// glibc's getaddrinfo(3) with AI_NUMERICHOST | AI_NUMERICSERV and the query's family,
/// socktype and protocol: the rows, or the EAI_* code.
fn glibc_numeric(q: &AddrQuery) -> Result<Vec<Row>, c_int> {
    // SAFETY: all-zero addrinfo is a valid start for hints.
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_flags = libc::AI_NUMERICHOST | libc::AI_NUMERICSERV;
    hints.ai_family = q.hints.family;
    hints.ai_socktype = q.hints.socktype;
    hints.ai_protocol = q.hints.protocol;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: NUL-terminated or null strings, valid hints, list freed below.
    let code = unsafe { libc::getaddrinfo(ptr(&q.host), ptr(&q.service), &hints, &mut list) };
    if code != 0 {
        return Err(code);
    }
    let mut rows = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: walking the list glibc returned, before freeaddrinfo.
        let ai = unsafe { &*cursor };
        // SAFETY: ai_addr points at ai_addrlen bytes.
        let addr =
            unsafe { std::slice::from_raw_parts(ai.ai_addr as *const u8, ai.ai_addrlen as usize) };
        rows.push((ai.ai_family, ai.ai_socktype, ai.ai_protocol, addr.to_vec()));
        cursor = ai.ai_next;
    }
    // SAFETY: from a successful getaddrinfo, freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(rows)
}

fn rows(entries: &[AddrEntry]) -> Vec<Row> {
    entries
        .iter()
        .map(|e| (e.family, e.socktype, e.protocol, e.sockaddr.clone()))
        .collect()
}

/// The IP in an answer's numeric address text ("%scope" dropped).
fn parse_ip(text: &CStr) -> IpAddr {
    let text = text.to_str().expect("numeric address is ASCII");
    let bare = text.split('%').next().unwrap_or_default();
    bare.parse()
        .unwrap_or_else(|_| panic!("{text:?} is not an IP address"))
}

// ---------------------------------------------------------------- the checks

/// Everything checked for one query; shared by the properties and the regression list.
fn check_addr_query(q: &AddrQuery) -> Result<(), TestCaseError> {
    let entries = numeric_entries(q);
    prop_assert_eq!(q.is_numeric(), entries.is_some());
    let answer = q.answer_without_lookup();
    if q.reverse {
        prop_assert!(
            answer.is_none(),
            "a reverse lookup always asks the name service"
        );
    } else {
        prop_assert_eq!(answer.is_some(), entries.is_some());
    }

    // Exactly MRI's rule.
    let expected = mri_numeric(q);
    match (&entries, &expected) {
        (None, None) => {}
        (Some(entries), Some((ip, port, kinds))) => {
            let got: Vec<_> = entries.iter().map(|e| (e.socktype, e.protocol)).collect();
            prop_assert_eq!(&got, kinds);
            for e in entries {
                prop_assert_eq!(ip_and_port(&e.sockaddr), Some((*ip, *port)));
                prop_assert_eq!(e.family, e.sockaddr_family());
                prop_assert_eq!(
                    e.family,
                    if ip.is_ipv4() {
                        libc::AF_INET
                    } else {
                        libc::AF_INET6
                    }
                );
                prop_assert!(e.canonname.is_none() && e.hostname.is_none());
            }
        }
        _ => prop_assert!(
            false,
            "numeric_entries: {:?}, MRI's rule: {:?}",
            entries.as_ref().map(|e| rows(e)),
            expected
        ),
    }

    // The completed answer: numeric text and port as getnameinfo(3) gives them.
    if let Some(answer) = answer {
        let done = answer.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
        let (ip, port, _) = expected.expect("checked above");
        for e in &done {
            prop_assert_eq!(parse_ip(&e.address), ip);
            prop_assert_eq!(e.port, c_int::from(port));
        }
    }

    // glibc, where MRI's numeric rule does not deliberately differ from it.
    let comparable =
        q.hints.protocol == 0 && !(q.hints.socktype == libc::SOCK_RAW && q.service.is_some());
    if let (Some(entries), true) = (&entries, comparable) {
        prop_assert_eq!(glibc_numeric(q), Ok(rows(entries)));
    }
    Ok(())
}

fn check_name_query(sockaddr: Vec<u8>, flags: c_int) -> Result<(), TestCaseError> {
    let query = NameQuery {
        sockaddr: sockaddr.clone(),
        flags,
    };
    prop_assert!(query.is_numeric());
    let outcome = query.run();
    match (family_of_or_none(&sockaddr), ip_and_port(&sockaddr)) {
        (Some(libc::AF_INET | libc::AF_INET6), Some(_)) | (Some(libc::AF_UNIX), _)
            if flags & libc::NI_NAMEREQD != 0 =>
        {
            // A name is required, and NI_NUMERICHOST forbids looking one up.
            let error = outcome.expect_err("NI_NAMEREQD with NI_NUMERICHOST");
            prop_assert_eq!(error.code, libc::EAI_NONAME);
        }
        (Some(libc::AF_INET | libc::AF_INET6), Some((ip, port))) => {
            let (host, serv) = outcome.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(parse_ip(&host), ip);
            prop_assert_eq!(serv.to_str().ok(), Some(&*port.to_string()));
            let scoped = host.to_bytes().contains(&b'%');
            let scope = sockaddr.len() >= SIN6_LEN
                && u32::from_ne_bytes(sockaddr[24..28].try_into().expect("4 bytes")) != 0;
            prop_assert!(!scoped || scope, "a scope only when the sockaddr has one");
        }
        (Some(libc::AF_INET | libc::AF_INET6), None) | (None, _) => {
            // Too short: EAI_FAMILY.
            let error = outcome.expect_err("malformed IP sockaddr");
            prop_assert_eq!(error.code, libc::EAI_FAMILY);
        }
        (Some(libc::AF_UNIX), _) => {
            // "localhost" and the path up to its NUL, or to the end of the sockaddr.
            let (host, serv) = outcome.map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(host.to_bytes(), b"localhost");
            let path = &sockaddr[2..];
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            prop_assert_eq!(serv.to_bytes(), &path[..end]);
        }
        (Some(_), _) => {
            let error = outcome.expect_err("unsupported family");
            prop_assert_eq!(error.code, libc::EAI_FAMILY);
        }
    }
    Ok(())
}

fn family_of_or_none(b: &[u8]) -> Option<c_int> {
    (b.len() >= 2).then(|| family_of(b))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn numeric_queries_follow_mri_and_agree_with_glibc(q in addr_query()) {
        check_addr_query(&q)?;
    }

    /// Any hints with a valid literal: the family/socktype/protocol filters, all paths.
    #[test]
    fn valid_literals_with_any_hints(
        ip in prop_oneof![ipv4_text(), ipv6_text()],
        port in prop::option::of(0u32..70_000),
        hints in hints(),
        reverse in any::<bool>(),
    ) {
        let q = AddrQuery {
            host: Some(CString::new(ip).expect("no NUL")),
            service: port.map(|p| CString::new(p.to_string()).expect("digits")),
            hints,
            reverse,
        };
        check_addr_query(&q)?;
    }

    #[test]
    fn numeric_getnameinfo_never_panics_and_names_ip_sockaddrs(
        sockaddr in sockaddr(),
        flags in name_flags(),
    ) {
        check_name_query(sockaddr, flags)?;
    }
}

/// Hand-picked cases, always run (proptest-regressions/ holds the ones proptest found).
#[test]
fn regressions() {
    let q = |host: Option<&str>, service: Option<&str>, family, socktype, protocol| AddrQuery {
        host: host.map(|h| CString::new(h).unwrap()),
        service: service.map(|s| CString::new(s).unwrap()),
        hints: Hints {
            flags: 0,
            family,
            socktype,
            protocol,
        },
        reverse: false,
    };
    let (inet, inet6, stream, raw) = (
        libc::AF_INET,
        libc::AF_INET6,
        libc::SOCK_STREAM,
        libc::SOCK_RAW,
    );
    let cases = [
        q(Some("127.0.0.1"), Some("80"), 0, 0, 0),
        q(Some("::1"), None, 0, 0, 0),
        q(Some("::ffff:1.2.3.4"), Some("65535"), inet6, stream, 0),
        q(Some("::1.2.3.4"), Some("0"), 0, 0, 0),
        q(Some("1.2.3"), Some("80"), 0, 0, 0), // glibc takes it, MRI does not
        q(Some("01.2.3.4"), Some("80"), 0, 0, 0), // leading zero
        q(Some("0x7f.0.0.1"), Some("80"), 0, 0, 0), // hex part
        q(Some("fe80::1%lo"), Some("80"), 0, 0, 0), // scope: not MRI-numeric
        q(Some("127.0.0.1"), Some("65536"), 0, 0, 0), // port too big
        q(Some("127.0.0.1"), Some("18446744073709551696"), 0, 0, 0), // strtoul ERANGE
        q(Some("127.0.0.1"), Some("4294967376"), 0, 0, 0), // 2**32 + 80: no wrap-around
        q(
            Some("127.0.0.1"),
            Some("000000000000000000000000080"),
            0,
            0,
            0,
        ),
        q(Some("127.0.0.1"), Some(""), 0, 0, 0), // empty service: port 0
        q(Some("127.0.0.1"), Some(" 80"), 0, 0, 0), // glibc's strtoul takes it
        q(Some("127.0.0.1"), Some("+80"), 0, 0, 0),
        q(Some("127.0.0.1"), None, inet6, 0, 0), // family mismatch
        q(Some("::1"), None, inet, 0, 0),
        q(Some("127.0.0.1"), Some("80"), 0, raw, 0), // glibc: EAI_SERVICE; MRI: an entry
        q(Some("127.0.0.1"), Some("80"), 0, 0, libc::IPPROTO_TCP), // protocol copied
        q(
            Some("127.0.0.1"),
            Some("80"),
            0,
            libc::SOCK_DGRAM,
            libc::IPPROTO_TCP,
        ), // none
        q(Some("127.0.0.1"), Some("80"), 0, libc::SOCK_SEQPACKET, 0),
        q(Some("127.0.0.1"), Some("80"), 0, c_int::MIN, c_int::MAX),
        q(Some("127.0.0.1"), Some("80"), c_int::MAX, 0, 0),
        q(Some(""), Some("80"), 0, 0, 0),
        q(Some(":"), None, 0, 0, 0),
        q(Some("::"), None, 0, 0, 0),
        q(Some("1:2:3:4:5:6:7:8:9"), None, 0, 0, 0),
        q(Some("...."), None, 0, 0, 0),
        q(Some("255.255.255.255"), Some("65535"), 0, 0, 0),
        q(Some("256.0.0.1"), None, 0, 0, 0),
        q(Some("ABCD:EF01::"), None, 0, 0, 0),
        q(Some("\u{663}.1.1.1"), None, 0, 0, 0), // Arabic-Indic digit
        q(Some("1.1.1.1\u{a0}"), None, 0, 0, 0),
        q(None, Some("80"), 0, 0, 0),
    ];
    for case in &cases {
        let mut reversed = case.clone();
        reversed.reverse = true;
        for query in [case, &reversed] {
            if let Err(e) = check_addr_query(query) {
                panic!("{query:?}: {e}");
            }
        }
    }

    let numeric = libc::NI_NUMERICHOST | libc::NI_NUMERICSERV;
    let sockaddrs = [
        Vec::new(),
        vec![0],
        (libc::AF_INET as u16).to_ne_bytes().to_vec(),
        sockaddr_in(80, [127, 0, 0, 1], [0; 8]),
        sockaddr_in(0, [255; 4], [0xff; 8]),
        sockaddr_in(65535, [0; 4], [0; 8])[..SIN_LEN - 1].to_vec(),
        [sockaddr_in(1, [1; 4], [0; 8]), vec![0; 100]].concat(),
        sockaddr_in6(443, 0, Ipv6Addr::LOCALHOST.octets(), 0),
        sockaddr_in6(1, 7, "fe80::1".parse::<Ipv6Addr>().unwrap().octets(), 1),
        sockaddr_in6(
            1,
            0,
            "ff02::1".parse::<Ipv6Addr>().unwrap().octets(),
            u32::MAX,
        ),
        sockaddr_in6(
            1,
            0,
            "::ffff:1.2.3.4".parse::<Ipv6Addr>().unwrap().octets(),
            0,
        ),
        sockaddr_in6(1, 0, "::1.2.3.4".parse::<Ipv6Addr>().unwrap().octets(), 0),
        sockaddr_in6(9, 0, [0xff; 16], 0)[..SIN6_LEN - 4].to_vec(),
        [
            (libc::AF_UNIX as u16).to_ne_bytes().to_vec(),
            b"/tmp/sock\0".to_vec(),
        ]
        .concat(),
        [(libc::AF_UNIX as u16).to_ne_bytes().to_vec(), vec![0]].concat(),
        vec![0xff, 0xff, 0, 0],
        vec![0; 2048],
        vec![0xff; 2049],
    ];
    for sockaddr in sockaddrs {
        for flags in [numeric, numeric | libc::NI_DGRAM | libc::NI_NAMEREQD] {
            if let Err(e) = check_name_query(sockaddr.clone(), flags) {
                panic!("{sockaddr:?} {flags:#x}: {e}");
            }
        }
    }
}

/// Regression: glibc's getnameinfo(3) copies an AF_UNIX sockaddr's `sun_path` with strlen(3),
/// so a path without NUL inside the sockaddr is read past its end. `NameQuery::run` once
/// passed the Vec's own bytes, and glibc read whatever followed them on the heap into the
/// service name; it now copies them into a zeroed buffer first, as MRI does. A known marker
/// right after the bytes (in the Vec's spare capacity) would show a read past them.
#[test]
fn af_unix_path_without_nul_is_not_read_past_the_sockaddr() {
    let mut sockaddr = Vec::with_capacity(64);
    sockaddr.extend_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
    sockaddr.extend_from_slice(b"ab");
    for (slot, byte) in sockaddr.spare_capacity_mut().iter_mut().zip(b"BEYOND\0") {
        slot.write(*byte);
    }
    let query = NameQuery {
        sockaddr,
        flags: libc::NI_NUMERICHOST | libc::NI_NUMERICSERV,
    };
    let (_, serv) = query.run().expect("AF_UNIX is supported");
    assert_eq!(serv.to_bytes(), b"ab", "read past the sockaddr's 4 bytes");
}
