//! One name lookup, described and answered in plain Rust values.
//!
//! [`AddrQuery`] holds what `Socket.getaddrinfo` passes to getaddrinfo(3); [`AddrQuery::run`]
//! performs it (blocking) and copies the C result list into owned [`AddrEntry`] values before
//! freeing it, so no C pointer ever crosses a thread. Numeric hosts are resolved the way MRI's
//! socket library does (see [`numeric_entries`]), which differs from glibc in a few corners.

use std::ffi::{CStr, CString};
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::raw::{c_char, c_int};

/// The `hints` argument of getaddrinfo(3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Hints {
    pub flags: c_int,
    pub family: c_int,
    pub socktype: c_int,
    pub protocol: c_int,
}

/// A getaddrinfo(3) request. Equal queries are coalesced into one lookup.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AddrQuery {
    pub host: Option<CString>,
    pub service: Option<CString>,
    pub hints: Hints,
    /// Also find each address's host name with getnameinfo(3) (`reverse_lookup: true`).
    pub reverse: bool,
}

/// One address of a lookup's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrEntry {
    pub family: c_int,
    pub socktype: c_int,
    pub protocol: c_int,
    /// The raw `struct sockaddr` bytes.
    pub sockaddr: Vec<u8>,
    /// `ai_canonname`, when getaddrinfo(3) set one (with `AI_CANONNAME`).
    pub canonname: Option<CString>,
    /// The address in numeric form (getnameinfo with `NI_NUMERICHOST`).
    pub address: CString,
    /// The port number.
    pub port: c_int,
    /// The host name found by reverse lookup, when one was asked for and found.
    pub hostname: Option<CString>,
}

/// Which C call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    GetAddrInfo,
    GetNameInfo,
}

/// A failed lookup: the `EAI_*` code, and `errno` as it was right after the call
/// (meaningful when the code is `EAI_SYSTEM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LookupError {
    pub call: Call,
    pub code: c_int,
    pub errno: c_int,
}

impl Call {
    /// The C function's name, as Ruby's messages start: "getaddrinfo" or "getnameinfo".
    pub fn name(self) -> &'static str {
        match self {
            Call::GetAddrInfo => "getaddrinfo",
            Call::GetNameInfo => "getnameinfo",
        }
    }
}

impl LookupError {
    /// `gai_strerror(code)`: the C library's text for the code.
    pub fn reason(&self) -> String {
        // SAFETY: gai_strerror returns a pointer to a static NUL-terminated message for any
        // code (a generic one for codes it does not know).
        unsafe { CStr::from_ptr(libc::gai_strerror(self.code)) }
            .to_string_lossy()
            .into_owned()
    }
}

/// "getaddrinfo: Name or service not known": the call and its reason, as Ruby's
/// `SocketError` messages read (for `EAI_SYSTEM` Ruby raises the `Errno` of `errno` instead).
impl std::fmt::Display for LookupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.call.name(), self.reason())
    }
}

impl std::error::Error for LookupError {}

/// What a lookup produces.
pub type Outcome = Result<Vec<AddrEntry>, LookupError>;

impl AddrEntry {
    /// The family stored in the sockaddr itself (MRI names the family from it).
    pub fn sockaddr_family(&self) -> c_int {
        family_of_sockaddr(&self.sockaddr)
    }
}

/// The family stored in raw sockaddr bytes (`AF_UNSPEC` when they are too short to hold one).
pub fn family_of_sockaddr(sockaddr: &[u8]) -> c_int {
    if sockaddr.len() < size_of::<libc::sa_family_t>() {
        return libc::AF_UNSPEC;
    }
    family_of(sockaddr)
}

impl AddrQuery {
    /// True when the host is a numeric address that MRI resolves by itself (see
    /// [`numeric_entries`]): without `reverse`, [`AddrQuery::run`] then returns at once.
    pub fn is_numeric(&self) -> bool {
        numeric_entries(self).is_some()
    }

    /// The answer, when it needs no name service at all: a numeric host without reverse
    /// lookup. Never blocks.
    pub fn answer_without_lookup(&self) -> Option<Outcome> {
        if self.reverse {
            return None;
        }
        numeric_entries(self).map(|entries| self.complete(entries))
    }

    /// Performs the lookup. Blocks for as long as the system resolver takes.
    pub fn run(&self) -> Outcome {
        let entries = match numeric_entries(self) {
            Some(entries) => entries,
            None => system_getaddrinfo(self)?,
        };
        self.complete(entries)
    }

    /// Fills in each entry's numeric address and port, and its host name when asked for.
    fn complete(&self, mut entries: Vec<AddrEntry>) -> Outcome {
        for entry in &mut entries {
            let (address, port) = numeric_name(&entry.sockaddr)?;
            entry.address = address;
            entry.port = port;
            if self.reverse {
                entry.hostname = reverse_name(&entry.sockaddr);
            }
        }
        Ok(entries)
    }
}

/// Resolves a numeric host as MRI's `numeric_getaddrinfo` does, or returns `None` when MRI would
/// hand the query to getaddrinfo(3): the host is absent or not a plain IPv6/IPv4 literal, the
/// service is not a port number below 65536, the family does not fit, or nothing matches the
/// socket type and protocol. Hint flags are ignored, as MRI ignores them; entries come in the
/// order stream, datagram, raw; a nonzero hint protocol is copied into every entry.
pub fn numeric_entries(query: &AddrQuery) -> Option<Vec<AddrEntry>> {
    let host_c = query.host.as_deref()?;
    let host = host_c.to_str().ok()?;
    let port = numeric_port(query.service.as_deref())?;
    let Hints {
        family,
        socktype,
        protocol,
        ..
    } = query.hints;
    let only = |chars: &str| host.chars().all(|c| chars.contains(c));
    let fits = |wanted: c_int| family == libc::AF_UNSPEC || family == wanted;
    let v6 = (fits(libc::AF_INET6) && only("0123456789abcdefABCDEF.:"))
        .then(|| inet_pton::<16>(libc::AF_INET6, host_c))
        .flatten()
        .map(|bytes| sockaddr_in6(Ipv6Addr::from(bytes), port));
    let sockaddr = match v6 {
        Some(sockaddr) => sockaddr,
        None => (fits(libc::AF_INET) && only("0123456789."))
            .then(|| inet_pton::<4>(libc::AF_INET, host_c))
            .flatten()
            .map(|bytes| sockaddr_in(Ipv4Addr::from(bytes), port))?,
    };
    let kinds = [
        (libc::SOCK_STREAM, libc::IPPROTO_TCP),
        (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
        (libc::SOCK_RAW, 0),
    ];
    let entries: Vec<AddrEntry> = kinds
        .iter()
        .filter(|(kind, kind_protocol)| {
            (socktype == 0 || socktype == *kind)
                && (protocol == 0 || *kind_protocol == 0 || protocol == *kind_protocol)
        })
        .map(|&(kind, kind_protocol)| AddrEntry {
            family: family_of(&sockaddr),
            socktype: kind,
            protocol: if protocol != 0 {
                protocol
            } else {
                kind_protocol
            },
            sockaddr: sockaddr.clone(),
            canonname: None,
            address: CString::default(),
            port: 0,
            hostname: None,
        })
        .collect();
    (!entries.is_empty()).then_some(entries)
}

/// MRI's `parse_numeric_port`: absent means port 0; otherwise only digits, below 65536.
fn numeric_port(service: Option<&CStr>) -> Option<u16> {
    let Some(service) = service else {
        return Some(0);
    };
    let digits = service.to_str().ok()?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.is_empty() {
        return Some(0);
    }
    digits.parse::<u16>().ok()
}

extern "C" {
    // POSIX; declared here because the libc crate does not bind it for every target.
    #[link_name = "inet_pton"]
    fn inet_pton_c(family: c_int, src: *const c_char, dst: *mut std::ffi::c_void) -> c_int;
}

/// inet_pton(3): the `N` address bytes of `text` in `family`, as MRI parses them.
fn inet_pton<const N: usize>(family: c_int, text: &CStr) -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    // SAFETY: `text` is NUL-terminated; `bytes` has room for the address of `family`
    // (callers pair AF_INET with 4 and AF_INET6 with 16).
    let parsed = unsafe { inet_pton_c(family, text.as_ptr(), bytes.as_mut_ptr().cast()) };
    (parsed == 1).then_some(bytes)
}

fn sockaddr_in(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    // SAFETY: sockaddr_in is plain old data; all-zero bytes are a valid value.
    let mut sa: libc::sockaddr_in = unsafe { zeroed() };
    sa.sin_family = libc::AF_INET as libc::sa_family_t;
    sa.sin_port = port.to_be();
    sa.sin_addr.s_addr = u32::from_ne_bytes(ip.octets());
    bytes_of(&sa)
}

fn sockaddr_in6(ip: Ipv6Addr, port: u16) -> Vec<u8> {
    // SAFETY: sockaddr_in6 is plain old data; all-zero bytes are a valid value.
    let mut sa: libc::sockaddr_in6 = unsafe { zeroed() };
    sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sa.sin6_port = port.to_be();
    sa.sin6_addr.s6_addr = ip.octets();
    bytes_of(&sa)
}

fn bytes_of<T: Copy>(value: &T) -> Vec<u8> {
    // SAFETY: `value` is a live, initialised `T` (a C sockaddr struct without padding holes
    // we read uninitialised: it was zeroed first), viewed as `size_of::<T>()` bytes.
    unsafe { std::slice::from_raw_parts(value as *const T as *const u8, size_of::<T>()).to_vec() }
}

/// The address family stored in a sockaddr's first field.
fn family_of(sockaddr: &[u8]) -> c_int {
    let mut family = [0u8; size_of::<libc::sa_family_t>()];
    let len = family.len();
    family.copy_from_slice(&sockaddr[..len]);
    libc::sa_family_t::from_ne_bytes(family) as c_int
}

/// Calls getaddrinfo(3) and copies its list.
fn system_getaddrinfo(query: &AddrQuery) -> Result<Vec<AddrEntry>, LookupError> {
    // SAFETY: an all-zero addrinfo is the documented way to start hints.
    let mut hints: libc::addrinfo = unsafe { zeroed() };
    hints.ai_flags = query.hints.flags;
    hints.ai_family = query.hints.family;
    hints.ai_socktype = query.hints.socktype;
    hints.ai_protocol = query.hints.protocol;
    let host = query.host.as_ref().map_or(std::ptr::null(), |h| h.as_ptr());
    let service = query
        .service
        .as_ref()
        .map_or(std::ptr::null(), |s| s.as_ptr());
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // Inside the fork gate: a fork must not catch this thread holding one of glibc's locks.
    let (code, errno) = crate::fork_gate::pass(|| {
        // SAFETY: host and service are null or NUL-terminated strings owned by `query`, hints
        // is a valid addrinfo, and `list` receives a list we free below with freeaddrinfo.
        let code = unsafe { libc::getaddrinfo(host, service, &hints, &mut list) };
        (
            code,
            std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        )
    });
    if code != 0 {
        return Err(LookupError {
            call: Call::GetAddrInfo,
            code: code_as_mri_reports(code, errno),
            errno,
        });
    }
    let mut entries = Vec::new();
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` walks the list getaddrinfo returned; each node and its ai_addr
        // (ai_addrlen bytes) and ai_canonname (NUL-terminated or null) are valid until
        // freeaddrinfo below, and we copy everything we keep.
        let ai = unsafe { &*cursor };
        let sockaddr = if ai.ai_addr.is_null() {
            Vec::new()
        } else {
            // SAFETY: see above: ai_addr points at ai_addrlen readable bytes.
            unsafe { std::slice::from_raw_parts(ai.ai_addr as *const u8, ai.ai_addrlen as usize) }
                .to_vec()
        };
        let canonname = (!ai.ai_canonname.is_null())
            // SAFETY: see above: a non-null ai_canonname is a NUL-terminated string.
            .then(|| unsafe { CStr::from_ptr(ai.ai_canonname) }.to_owned());
        entries.push(AddrEntry {
            family: ai.ai_family,
            socktype: ai.ai_socktype,
            protocol: ai.ai_protocol,
            sockaddr,
            canonname,
            address: CString::default(),
            port: 0,
            hostname: None,
        });
        cursor = ai.ai_next;
    }
    // SAFETY: `list` came from a successful getaddrinfo and is freed exactly once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(entries)
}

/// Like MRI on Linux: an NSS module missing its files reports EAI_SYSTEM/ENOENT, which means
/// "no such name" to the user.
fn code_as_mri_reports(code: c_int, errno: c_int) -> c_int {
    if code == libc::EAI_SYSTEM && errno == libc::ENOENT {
        libc::EAI_NONAME
    } else {
        code
    }
}

/// getnameinfo(3) with `NI_NUMERICHOST | NI_NUMERICSERV`: the address text and port number.
/// An IPv4 address is formatted here, as glibc would (dotted decimal, port in decimal),
/// without getnameinfo's trip through inet_ntop and sprintf, which was a quarter of the
/// cost of a call answered without a lookup.
pub fn numeric_name(sockaddr: &[u8]) -> Result<(CString, c_int), LookupError> {
    if let Some(name) = numeric_ipv4_name(sockaddr) {
        return Ok(name);
    }
    let mut host = [0 as c_char; 1024];
    let mut serv = [0 as c_char; 1024];
    let code = getnameinfo(
        sockaddr,
        &mut host,
        Some(&mut serv),
        libc::NI_NUMERICHOST | libc::NI_NUMERICSERV,
    );
    if code != 0 {
        return Err(LookupError {
            call: Call::GetNameInfo,
            code,
            errno: std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
        });
    }
    // SAFETY: getnameinfo succeeded, so both buffers hold NUL-terminated strings.
    let (host, serv) = unsafe { (CStr::from_ptr(host.as_ptr()), CStr::from_ptr(serv.as_ptr())) };
    // Like C's atoi: leading digits, 0 when there are none.
    let port = serv
        .to_bytes()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0i64, |n, b| {
            (n * 10 + i64::from(b - b'0')).min(i64::from(c_int::MAX))
        });
    Ok((host.to_owned(), port as c_int))
}

/// The address text and port of a whole `sockaddr_in`, as getnameinfo(3) gives them with
/// `NI_NUMERICHOST | NI_NUMERICSERV`; `None` for anything else (left to getnameinfo).
fn numeric_ipv4_name(sockaddr: &[u8]) -> Option<(CString, c_int)> {
    if sockaddr.len() != size_of::<libc::sockaddr_in>() {
        return None;
    }
    // SAFETY: `sockaddr` holds exactly size_of::<sockaddr_in>() bytes; read_unaligned copies
    // them into a plain-old-data struct (every bit pattern is valid) whatever their alignment.
    let sa: libc::sockaddr_in = unsafe { std::ptr::read_unaligned(sockaddr.as_ptr().cast()) };
    if c_int::from(sa.sin_family) != libc::AF_INET {
        return None;
    }
    let text = dotted_decimal(sa.sin_addr.s_addr.to_ne_bytes());
    Some((text, c_int::from(u16::from_be(sa.sin_port))))
}

/// "a.b.c.d" for the four bytes of an IPv4 address in network order, written byte by byte
/// (core::fmt cost more than the rest of a numeric call's conversion).
fn dotted_decimal(octets: [u8; 4]) -> CString {
    let mut text = Vec::with_capacity(16);
    for (index, octet) in octets.into_iter().enumerate() {
        if index > 0 {
            text.push(b'.');
        }
        if octet >= 100 {
            text.push(b'0' + octet / 100);
        }
        if octet >= 10 {
            text.push(b'0' + octet / 10 % 10);
        }
        text.push(b'0' + octet % 10);
    }
    CString::new(text).expect("digits and dots have no NUL")
}

/// getnameinfo(3) without flags: the host name for an address, `None` when the lookup fails.
fn reverse_name(sockaddr: &[u8]) -> Option<CString> {
    let mut host = [0 as c_char; 1024];
    if getnameinfo(sockaddr, &mut host, None, 0) != 0 {
        return None;
    }
    // SAFETY: getnameinfo succeeded, so `host` holds a NUL-terminated string.
    Some(unsafe { CStr::from_ptr(host.as_ptr()) }.to_owned())
}

fn getnameinfo(
    sockaddr: &[u8],
    host: &mut [c_char],
    serv: Option<&mut [c_char]>,
    flags: c_int,
) -> c_int {
    let (serv_ptr, serv_len) = match serv {
        Some(buf) => (buf.as_mut_ptr(), buf.len()),
        None => (std::ptr::null_mut(), 0),
    };
    // SAFETY: `sockaddr` is `sockaddr.len()` readable bytes; the output buffers are writable
    // for the lengths passed (or null with length 0); getnameinfo writes NUL-terminated text.
    unsafe {
        libc::getnameinfo(
            sockaddr.as_ptr() as *const libc::sockaddr,
            sockaddr.len() as libc::socklen_t,
            host.as_mut_ptr(),
            host.len() as libc::socklen_t,
            serv_ptr,
            serv_len as libc::socklen_t,
            flags,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(host: &str, service: Option<&str>, hints: Hints) -> AddrQuery {
        AddrQuery {
            host: Some(CString::new(host).unwrap()),
            service: service.map(|s| CString::new(s).unwrap()),
            hints,
            reverse: false,
        }
    }

    #[test]
    fn a_lookup_error_reads_like_rubys_message_and_is_an_error() {
        let error = LookupError {
            call: Call::GetAddrInfo,
            code: libc::EAI_NONAME,
            errno: 0,
        };
        // SAFETY: gai_strerror returns a static NUL-terminated message.
        let text = unsafe { CStr::from_ptr(libc::gai_strerror(libc::EAI_NONAME)) };
        assert_eq!(
            error.to_string(),
            format!("getaddrinfo: {}", text.to_str().unwrap())
        );
        let boxed: Box<dyn std::error::Error> = Box::new(LookupError {
            call: Call::GetNameInfo,
            ..error
        });
        assert!(boxed.to_string().starts_with("getnameinfo: "));
    }

    #[test]
    fn numeric_ipv4_gives_stream_datagram_raw_in_order() {
        let q = query("127.0.0.1", Some("80"), Hints::default());
        assert!(q.is_numeric());
        let entries = q.run().unwrap();
        let kinds: Vec<_> = entries.iter().map(|e| (e.socktype, e.protocol)).collect();
        assert_eq!(
            kinds,
            [
                (libc::SOCK_STREAM, libc::IPPROTO_TCP),
                (libc::SOCK_DGRAM, libc::IPPROTO_UDP),
                (libc::SOCK_RAW, 0)
            ]
        );
        assert!(entries.iter().all(|e| e.family == libc::AF_INET
            && e.port == 80
            && e.address.to_str() == Ok("127.0.0.1")));
    }

    #[test]
    fn numeric_ipv6_and_hint_protocol_copied_like_mri() {
        let hints = Hints {
            protocol: libc::IPPROTO_TCP,
            ..Hints::default()
        };
        let entries = query("::1", None, hints).run().unwrap();
        let kinds: Vec<_> = entries.iter().map(|e| (e.socktype, e.protocol)).collect();
        assert_eq!(
            kinds,
            [
                (libc::SOCK_STREAM, libc::IPPROTO_TCP),
                (libc::SOCK_RAW, libc::IPPROTO_TCP)
            ]
        );
        assert_eq!(entries[0].address.to_str(), Ok("::1"));
        assert_eq!(entries[0].family, libc::AF_INET6);
    }

    #[test]
    fn names_service_names_and_mismatched_families_are_not_numeric() {
        assert!(!query("localhost", Some("80"), Hints::default()).is_numeric());
        assert!(!query("127.0.0.1", Some("http"), Hints::default()).is_numeric());
        assert!(!query("127.0.0.1", Some("65536"), Hints::default()).is_numeric());
        let v6_only = Hints {
            family: libc::AF_INET6,
            ..Hints::default()
        };
        assert!(!query("127.0.0.1", None, v6_only).is_numeric());
        assert!(!query("fe80::1%lo", None, Hints::default()).is_numeric());
        assert!(!query("1.2.3", None, Hints::default()).is_numeric());
        let seqpacket = Hints {
            socktype: libc::SOCK_SEQPACKET,
            ..Hints::default()
        };
        assert!(!query("127.0.0.1", None, seqpacket).is_numeric());
    }

    #[test]
    fn empty_service_is_port_zero() {
        let entries = query("10.1.2.3", Some(""), Hints::default()).run().unwrap();
        assert_eq!(entries[0].port, 0);
    }

    #[test]
    fn only_eai_system_with_enoent_is_reported_as_no_such_name() {
        assert_eq!(
            code_as_mri_reports(libc::EAI_SYSTEM, libc::ENOENT),
            libc::EAI_NONAME
        );
        assert_eq!(
            code_as_mri_reports(libc::EAI_SYSTEM, libc::EACCES),
            libc::EAI_SYSTEM
        );
        assert_eq!(
            code_as_mri_reports(libc::EAI_AGAIN, libc::ENOENT),
            libc::EAI_AGAIN
        );
        assert_eq!(code_as_mri_reports(libc::EAI_AGAIN, 0), libc::EAI_AGAIN);
    }

    #[test]
    fn ipv4_names_are_formatted_as_getnameinfo_formats_them() {
        let addresses = [
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(10, 20, 30, 40),
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(192, 168, 100, 9),
        ];
        for address in addresses {
            for port in [0u16, 1, 80, 443, 8080, 65535] {
                let sockaddr = sockaddr_in(address, port);
                let mut host = [0 as c_char; 1024];
                let mut serv = [0 as c_char; 1024];
                let flags = libc::NI_NUMERICHOST | libc::NI_NUMERICSERV;
                assert_eq!(getnameinfo(&sockaddr, &mut host, Some(&mut serv), flags), 0);
                // SAFETY: getnameinfo succeeded, so both buffers hold NUL-terminated strings.
                let (host, serv) =
                    unsafe { (CStr::from_ptr(host.as_ptr()), CStr::from_ptr(serv.as_ptr())) };
                let expected = (host.to_owned(), serv.to_str().unwrap().parse().unwrap());
                assert_eq!(numeric_ipv4_name(&sockaddr), Some(expected.clone()));
                assert_eq!(numeric_name(&sockaddr).unwrap(), expected);
            }
        }
    }

    #[test]
    fn every_octet_is_written_as_inet_ntop_writes_it() {
        for octet in 0..=255u8 {
            let address = Ipv4Addr::new(octet, 0, octet, 255 - octet);
            let expected = CString::new(address.to_string()).unwrap();
            assert_eq!(dotted_decimal(address.octets()), expected);
        }
    }

    #[test]
    fn only_whole_ipv4_sockaddrs_take_the_formatting_shortcut() {
        let v4 = sockaddr_in(Ipv4Addr::new(127, 0, 0, 1), 80);
        assert_eq!(numeric_ipv4_name(&v4[..v4.len() - 1]), None);
        let v6 = sockaddr_in6(Ipv6Addr::LOCALHOST, 80);
        assert_eq!(numeric_ipv4_name(&v6), None);
        assert_eq!(
            numeric_name(&v6).unwrap(),
            (CString::new("::1").unwrap(), 80)
        );
    }

    #[test]
    fn system_errors_keep_their_code() {
        let q = query("", None, Hints::default());
        let error = q.run().unwrap_err();
        assert_eq!(error.call, Call::GetAddrInfo);
        assert_eq!(error.code, libc::EAI_NONAME);
    }
}
