//! Lookups that can run on the caller's thread: names that `/etc/hosts` answers.
//!
//! getaddrinfo(3) of a name listed in `/etc/hosts` never touches the network when
//! nsswitch.conf makes glibc ask `files` first (see [`crate::nsswitch`]): there is nothing to
//! interrupt, so the caller may run [`AddrQuery::run`] itself instead of handing the lookup to
//! a worker. glibc still produces the answer (order, flags, canonical names, errors), so
//! deciding wrongly that a lookup qualifies would cost interruptibility, never correctness;
//! every doubt therefore sends the lookup to the pool.
//!
//! The parsed files are cached and re-read when either file's inode, size, modification or
//! change time differs. Looking costs one stat(2) per file, 2–3 µs on a virtual machine,
//! against 40 µs for the whole lookup, so it is done at most every [`RECHECK`]: a change is
//! seen within that time.

use crate::addrinfo::{AddrQuery, Hints};
use crate::fork_local::ForkLocal;
use crate::hosts_file::{Families, HostsFile};
use crate::nsswitch;
use std::ffi::CStr;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where glibc reads its name service configuration and its hosts file.
pub const NSSWITCH_CONF: &CStr = cstr(b"/etc/nsswitch.conf\0");
/// See [`NSSWITCH_CONF`].
pub const HOSTS: &CStr = cstr(b"/etc/hosts\0");
/// A running nscd answers hosts lookups in glibc's stead, from its own cache and lookups.
const NSCD_SOCKET: &CStr = cstr(b"/var/run/nscd/socket\0");
/// Environment variables that change how glibc resolves (options, aliases, search domains):
/// when one is set, no lookup runs inline.
const RESOLVER_ENV: [&CStr; 3] = [
    cstr(b"RES_OPTIONS\0"),
    cstr(b"HOSTALIASES\0"),
    cstr(b"LOCALDOMAIN\0"),
];
/// Hint flags whose effect on glibc's lookup is understood here; any other flag (`AI_IDN`,
/// `AI_NUMERICHOST`, ...) sends the lookup to the pool.
const UNDERSTOOD_FLAGS: c_int = libc::AI_PASSIVE
    | libc::AI_CANONNAME
    | libc::AI_NUMERICSERV
    | libc::AI_V4MAPPED
    | libc::AI_ALL
    | libc::AI_ADDRCONFIG;

const fn cstr(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(text) => text,
        Err(_) => panic!("not a C string"),
    }
}

/// How long the files' stamps are trusted before they are taken again.
pub const RECHECK: Duration = Duration::from_millis(100);

/// Lookups answered on the caller's thread since this process started (or forked).
static INLINE: AtomicU64 = AtomicU64::new(0);
/// The cached files of this process; replaced in a forked child, where another thread of the
/// parent may have held its lock.
static CACHE: ForkLocal<Mutex<Option<Snapshot>>> = ForkLocal::new();
static FORK_HANDLER_REGISTERED: AtomicBool = AtomicBool::new(false);

/// True when `query` may run on the caller's thread: its host is listed in `/etc/hosts` with
/// an address of a family glibc will look for, nsswitch.conf makes glibc ask `files` first,
/// and nothing else (flags, service name, environment, nscd) could make glibc go further.
/// Never blocks: when another thread is reading the files, the answer is no.
pub fn answers_from_hosts_file(query: &AddrQuery) -> bool {
    let (Some(host), Some(need)) = (query.host.as_deref(), needed_families(&query.hints)) else {
        return false;
    };
    let host = host.to_bytes();
    if query.reverse
        || host.is_empty()
        || host.ends_with(b".")
        || !numeric_service(query.service.as_deref())
        || resolver_environment_set()
    {
        return false;
    }
    let Ok(mut cache) = cache().try_lock() else {
        return false;
    };
    let now = Instant::now();
    if !cache
        .as_ref()
        .is_some_and(|snapshot| now < snapshot.checked_at + RECHECK)
    {
        *cache = Some(Snapshot::refreshed(cache.take(), now));
    }
    cache
        .as_ref()
        .and_then(|snapshot| snapshot.hosts.as_ref())
        .is_some_and(|hosts| need.met_by(hosts.families(host)))
}

/// Counts one lookup answered on the caller's thread.
pub fn count_inline() {
    INLINE.fetch_add(1, Ordering::Relaxed);
}

/// Lookups answered on the caller's thread since this process started (a forked child starts
/// from zero).
pub fn inline_lookups() -> u64 {
    INLINE.load(Ordering::Relaxed)
}

/// Which families the hosts file must list for the name so that glibc's `files` source
/// answers the query and ends it; `None` when unsure.
///
/// * `AF_INET` asks for IPv4 only, `AF_INET6` for IPv6 first: with `AI_V4MAPPED` glibc asks
///   for IPv4 too, but only after IPv6, and stops at `files` if either was found;
/// * `AF_UNSPEC` asks for both at once and stops at `files` if it lists either; but with
///   `AI_ADDRCONFIG` glibc first narrows the family to the one the host has configured,
///   which we do not know, so both must be listed.
fn needed_families(hints: &Hints) -> Option<Need> {
    if hints.flags & !UNDERSTOOD_FLAGS != 0 {
        return None;
    }
    match hints.family {
        libc::AF_INET => Some(Need::V4),
        libc::AF_INET6 => Some(Need::V6),
        libc::AF_UNSPEC if hints.flags & libc::AI_ADDRCONFIG != 0 => Some(Need::Both),
        libc::AF_UNSPEC => Some(Need::Either),
        _ => None,
    }
}

/// What a query needs the hosts file to list for its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    V4,
    V6,
    Either,
    Both,
}

impl Need {
    fn met_by(self, families: Families) -> bool {
        match self {
            Need::V4 => families.v4,
            Need::V6 => families.v6,
            Need::Either => families.v4 || families.v6,
            Need::Both => families.v4 && families.v6,
        }
    }
}

/// A service glibc reads as a port number without asking the `services` database.
fn numeric_service(service: Option<&CStr>) -> bool {
    service.map_or(true, |service| {
        let digits = service.to_bytes();
        digits.len() <= 5 && digits.iter().all(u8::is_ascii_digit)
    })
}

fn resolver_environment_set() -> bool {
    RESOLVER_ENV.iter().any(|name| {
        // SAFETY: `name` is NUL-terminated; getenv only reads the environment. Callers run
        // under Ruby's GVL, as every change Ruby makes to the environment does.
        !unsafe { libc::getenv(name.as_ptr()) }.is_null()
    })
}

/// This process's cache, created on first use (and again after a fork).
fn cache() -> &'static Mutex<Option<Snapshot>> {
    if !FORK_HANDLER_REGISTERED.swap(true, Ordering::AcqRel) {
        // SAFETY: registers an `extern "C" fn()` child handler with no preconditions.
        unsafe { libc::pthread_atfork(None, None, Some(forget_in_child)) };
    }
    CACHE.get_or_make(|| Mutex::new(None))
}

/// The atfork child handler: atomic stores only (async-signal-safe). The child starts its
/// count from zero and reads the files afresh into a cache of its own.
extern "C" fn forget_in_child() {
    CACHE.forget();
    INLINE.store(0, Ordering::Relaxed);
}

/// What stat(2) says about a file: `None` when it does not exist (or cannot be read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(Option<[i64; 7]>);

impl Stamp {
    fn of(path: &CStr) -> Stamp {
        // SAFETY: an all-zero `stat` is a valid value for stat(2) to overwrite.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is NUL-terminated and `st` is a writable `stat`.
        if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
            return Stamp(None);
        }
        Stamp(Some([
            st.st_dev as i64,
            st.st_ino as i64,
            st.st_size,
            st.st_mtime,
            st.st_mtime_nsec,
            st.st_ctime,
            st.st_ctime_nsec,
        ]))
    }
}

/// The stamps of the files a snapshot was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamps {
    nsswitch: Stamp,
    hosts: Stamp,
}

impl Stamps {
    fn now() -> Stamps {
        Stamps {
            nsswitch: Stamp::of(NSSWITCH_CONF),
            hosts: Stamp::of(HOSTS),
        }
    }
}

/// The files as last read: `hosts` is `None` unless nsswitch.conf asks `files` first (and
/// no nscd answers in glibc's stead).
#[derive(Debug)]
struct Snapshot {
    stamps: Stamps,
    /// When the stamps were last compared with the files'.
    checked_at: Instant,
    hosts: Option<HostsFile>,
}

impl Snapshot {
    /// `old` if the files still have its stamps, else the files read again; checked `now`.
    /// The stamps are taken before reading, so a change while reading shows as a different
    /// stamp at the next check, which reads them again.
    fn refreshed(old: Option<Snapshot>, now: Instant) -> Snapshot {
        let stamps = Stamps::now();
        match old {
            Some(old) if old.stamps == stamps => Snapshot {
                checked_at: now,
                ..old
            },
            _ => Snapshot {
                stamps,
                checked_at: now,
                hosts: read_hosts(NSSWITCH_CONF, HOSTS, NSCD_SOCKET),
            },
        }
    }
}

/// The parsed hosts file at `hosts`, if the nsswitch.conf at `nsswitch` makes glibc ask it
/// first and no nscd listens at `nscd`.
fn read_hosts(nsswitch: &CStr, hosts: &CStr, nscd: &CStr) -> Option<HostsFile> {
    let read = |path: &CStr| std::fs::read(path.to_str().ok()?).ok();
    let conf = String::from_utf8(read(nsswitch)?).ok()?;
    if !nsswitch::hosts_files_first(&conf) || Stamp::of(nscd).0.is_some() {
        return None;
    }
    Some(HostsFile::parse(&read(hosts)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;

    fn hints(family: c_int, flags: c_int) -> Hints {
        Hints {
            family,
            flags,
            ..Hints::default()
        }
    }

    #[test]
    fn each_family_and_flag_needs_what_glibc_asks_files_for() {
        let v4mapped_all = libc::AI_V4MAPPED | libc::AI_ALL;
        let cases = [
            (libc::AF_INET, 0, Some(Need::V4)),
            (libc::AF_INET6, 0, Some(Need::V6)),
            (libc::AF_INET6, v4mapped_all, Some(Need::V6)),
            (libc::AF_INET6, libc::AI_ADDRCONFIG, Some(Need::V6)),
            (libc::AF_UNSPEC, 0, Some(Need::Either)),
            (libc::AF_UNSPEC, libc::AI_CANONNAME, Some(Need::Either)),
            (libc::AF_UNSPEC, libc::AI_ADDRCONFIG, Some(Need::Both)),
            (libc::AF_UNIX, 0, None),
            (libc::AF_INET, libc::AI_NUMERICHOST, None),
            (libc::AF_UNSPEC, 0x0040 /* AI_IDN */, None),
        ];
        for (family, flags, need) in cases {
            assert_eq!(
                needed_families(&hints(family, flags)),
                need,
                "{family} {flags}"
            );
        }
        let both = Families { v4: true, v6: true };
        let v4 = Families {
            v4: true,
            v6: false,
        };
        assert!(Need::Both.met_by(both) && !Need::Both.met_by(v4));
        assert!(Need::Either.met_by(v4) && Need::V4.met_by(v4) && !Need::V6.met_by(v4));
        assert!(!Need::Either.met_by(Families::default()));
    }

    #[test]
    fn only_absent_or_numeric_services_are_read_without_the_services_database() {
        let service = |text: &str| CString::new(text).unwrap();
        assert!(numeric_service(None));
        assert!(numeric_service(Some(&service(""))));
        assert!(numeric_service(Some(&service("80"))));
        assert!(numeric_service(Some(&service("65535"))));
        assert!(!numeric_service(Some(&service("http"))));
        assert!(!numeric_service(Some(&service("8o"))));
        assert!(!numeric_service(Some(&service("123456"))));
    }

    /// A file's stamp changes when it is rewritten, even to the same size, and when it is
    /// replaced by another file; a missing file has a stamp of its own.
    #[test]
    fn a_rewritten_or_replaced_file_gets_a_new_stamp() {
        let dir = std::env::temp_dir().join(format!("igai-inline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        let c_path = CString::new(path.to_str().unwrap()).unwrap();
        assert_eq!(Stamp::of(&c_path), Stamp(None));
        std::fs::write(&path, "127.0.0.1 a\n").unwrap();
        let first = Stamp::of(&c_path);
        assert!(first.0.is_some());
        assert_eq!(
            Stamp::of(&c_path),
            first,
            "an unchanged file keeps its stamp"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "127.0.0.1 b\n").unwrap();
        let rewritten = Stamp::of(&c_path);
        assert_ne!(rewritten, first);
        let other = dir.join("other");
        std::fs::write(&other, "127.0.0.1 b\n").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(Stamp::of(&c_path), rewritten, "a new inode is a new file");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_hosts_file_is_read_only_when_nsswitch_asks_it_first_and_no_nscd_listens() {
        let dir = std::env::temp_dir().join(format!("igai-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |name: &str| CString::new(dir.join(name).to_str().unwrap()).unwrap();
        std::fs::write(dir.join("hosts"), "10.1.1.1 listed\n").unwrap();
        std::fs::write(dir.join("files-first"), "hosts: files dns\n").unwrap();
        std::fs::write(dir.join("dns-first"), "hosts: dns files\n").unwrap();
        std::fs::write(dir.join("socket"), "").unwrap();
        let (hosts, none) = (path("hosts"), path("no-such-file"));
        let listed = |parsed: Option<HostsFile>| parsed.is_some_and(|h| h.families(b"listed").v4);
        assert!(listed(read_hosts(&path("files-first"), &hosts, &none)));
        assert!(read_hosts(&path("dns-first"), &hosts, &none).is_none());
        assert!(
            read_hosts(&none, &hosts, &none).is_none(),
            "no nsswitch.conf"
        );
        assert!(read_hosts(&path("files-first"), &hosts, &path("socket")).is_none());
        assert!(read_hosts(&path("files-first"), &none, &none).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
