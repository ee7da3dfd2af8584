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
use std::ffi::{CStr, CString};
use std::os::raw::c_int;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where glibc reads its name service configuration.
const NSSWITCH_CONF: &str = "/etc/nsswitch.conf";
/// Where glibc's `files` source reads host names.
const HOSTS: &str = "/etc/hosts";
/// A running nscd answers hosts lookups in glibc's stead, from its own cache and lookups.
const NSCD_SOCKET: &str = "/var/run/nscd/socket";
/// Environment variables that change how glibc resolves (options, aliases, search domains):
/// when one is set, no lookup runs inline.
const RESOLVER_ENV: [&str; 3] = ["RES_OPTIONS", "HOSTALIASES", "LOCALDOMAIN"];
/// How long the files' stamps are trusted before they are taken again.
pub const RECHECK: Duration = Duration::from_millis(100);
/// Hint flags whose effect on glibc's lookup is understood here; any other flag (`AI_IDN`,
/// `AI_NUMERICHOST`, ...) sends the lookup to the pool.
const UNDERSTOOD_FLAGS: c_int = libc::AI_PASSIVE
    | libc::AI_CANONNAME
    | libc::AI_NUMERICSERV
    | libc::AI_V4MAPPED
    | libc::AI_ALL
    | libc::AI_ADDRCONFIG;

/// Lookups answered on the caller's thread since this process started (or forked).
static INLINE: AtomicU64 = AtomicU64::new(0);
/// The system's files as this process last read them; replaced in a forked child, where
/// another thread of the parent may have held its lock.
static SYSTEM: ForkLocal<HostsSource> = ForkLocal::new();

/// True when `query` may run on the caller's thread: its host is listed in `/etc/hosts` with
/// an address of a family glibc will look for, nsswitch.conf makes glibc ask `files` first,
/// and nothing else (flags, service name, environment, nscd) could make glibc go further.
/// Never blocks: when another thread is reading the files, the answer is no.
pub fn answers_from_hosts_file(query: &AddrQuery) -> bool {
    crate::resolver::install_fork_handlers();
    SYSTEM
        .get_or_make(|| HostsSource::new(NSSWITCH_CONF, HOSTS, NSCD_SOCKET, &RESOLVER_ENV))
        .answers(query, Instant::now())
}

/// Where the files and settings that decide come from (the system's, or a test's), with the
/// files as last read.
struct HostsSource {
    nsswitch: CString,
    hosts: CString,
    nscd: CString,
    environment: Vec<String>,
    cache: Mutex<Option<Snapshot>>,
    /// How many times the files were read.
    reads: AtomicUsize,
}

impl HostsSource {
    fn new(nsswitch: &str, hosts: &str, nscd: &str, environment: &[&str]) -> HostsSource {
        let path = |path: &str| CString::new(path).expect("paths have no NUL");
        HostsSource {
            nsswitch: path(nsswitch),
            hosts: path(hosts),
            nscd: path(nscd),
            environment: environment.iter().map(|name| name.to_string()).collect(),
            cache: Mutex::new(None),
            reads: AtomicUsize::new(0),
        }
    }

    /// [`answers_from_hosts_file`], for these files, at time `now`.
    fn answers(&self, query: &AddrQuery, now: Instant) -> bool {
        let (Some(host), Some(need)) = (query.host.as_deref(), needed_families(&query.hints))
        else {
            return false;
        };
        let host = host.to_bytes();
        if query.reverse
            || host.is_empty()
            || host.ends_with(b".")
            || !numeric_service(query.service.as_deref())
            || self
                .environment
                .iter()
                .any(|name| std::env::var_os(name).is_some())
        {
            return false;
        }
        let Ok(mut cache) = self.cache.try_lock() else {
            return false;
        };
        if !cache
            .as_ref()
            .is_some_and(|snapshot| now < snapshot.checked_at + RECHECK)
        {
            let mut snapshot = self.refreshed(cache.take(), now);
            snapshot.checked_at = now;
            *cache = Some(snapshot);
        }
        cache
            .as_ref()
            .and_then(|snapshot| snapshot.hosts.as_ref())
            .is_some_and(|hosts| need.met_by(hosts.families(host)))
    }

    /// `old` if the files still have its stamps, else the files read again (at `now`). The
    /// stamps are taken before reading, so a change while reading shows as a different stamp
    /// at the next check, which reads them again.
    fn refreshed(&self, old: Option<Snapshot>, now: Instant) -> Snapshot {
        let stamps = [Stamp::of(&self.nsswitch), Stamp::of(&self.hosts)];
        match old {
            Some(old) if old.stamps == stamps => old,
            _ => {
                self.reads.fetch_add(1, Ordering::Relaxed);
                Snapshot {
                    stamps,
                    checked_at: now,
                    hosts: read_hosts(&self.nsswitch, &self.hosts, &self.nscd),
                }
            }
        }
    }
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

/// For the resolver's atfork child handler: atomic stores only (async-signal-safe). The child
/// starts its count from zero and reads the files afresh into a cache of its own.
pub(crate) fn forget_in_child() {
    SYSTEM.forget();
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

/// The files as last read: `hosts` is `None` unless nsswitch.conf asks `files` first (and
/// no nscd answers in glibc's stead).
#[derive(Debug)]
struct Snapshot {
    /// Of nsswitch.conf and the hosts file, taken before they were read.
    stamps: [Stamp; 2],
    /// When the stamps were last compared with the files'.
    checked_at: Instant,
    hosts: Option<HostsFile>,
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

    /// A directory of files for one test, removed when dropped.
    struct Files(std::path::PathBuf);

    impl Files {
        fn new(test: &str) -> Files {
            let dir = std::env::temp_dir().join(format!("igai-{test}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            Files(dir)
        }

        fn write(&self, name: &str, text: &str) -> &Files {
            std::fs::write(self.0.join(name), text).unwrap();
            self
        }

        fn path(&self, name: &str) -> String {
            self.0.join(name).to_str().unwrap().to_owned()
        }

        /// A source reading `nsswitch`, `hosts` and `nscd` of this directory, with the
        /// environment variable `variable` in the role of RES_OPTIONS.
        fn source(&self, variable: &str) -> HostsSource {
            let (nsswitch, hosts, nscd) =
                (self.path("nsswitch"), self.path("hosts"), self.path("nscd"));
            HostsSource::new(&nsswitch, &hosts, &nscd, &[variable])
        }
    }

    impl Drop for Files {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Files in which nsswitch.conf asks files first and the hosts file lists `listed` with
    /// an IPv4 address, a source reading them (with `variable` as its RES_OPTIONS), and an
    /// IPv4 query of `listed`.
    fn listed(test: &str, variable: &str) -> (Files, HostsSource, AddrQuery) {
        let files = Files::new(test);
        files
            .write("nsswitch", "hosts: files dns\n")
            .write("hosts", "10.1.1.1 listed\n");
        let source = files.source(variable);
        (files, source, lookup("listed", libc::AF_INET, None))
    }

    fn lookup(host: &str, family: c_int, service: Option<&str>) -> AddrQuery {
        AddrQuery {
            host: Some(CString::new(host).unwrap()),
            service: service.map(|service| CString::new(service).unwrap()),
            hints: hints(family, 0),
            reverse: false,
        }
    }

    #[test]
    fn listed_names_of_the_family_asked_for_are_answered_and_nothing_else() {
        let files = Files::new("answers");
        files.write("nsswitch", "hosts: files dns\n").write(
            "hosts",
            "10.1.1.1 Listed four dotted.\nfd00::1 listed six\n",
        );
        let source = files.source("IGAI_TEST_UNSET_VARIABLE");
        let now = Instant::now();
        let answers = |query: AddrQuery| source.answers(&query, now);
        assert!(answers(lookup("listed", libc::AF_INET, Some("80"))));
        assert!(answers(lookup("LISTED", libc::AF_INET6, None)));
        assert!(answers(lookup("four", libc::AF_UNSPEC, Some(""))));
        assert!(answers(lookup("six", libc::AF_INET6, None)));
        assert!(!answers(lookup("four", libc::AF_INET6, None)));
        assert!(!answers(lookup("six", libc::AF_INET, None)));
        assert!(!answers(lookup("listed.", libc::AF_INET, None)));
        assert!(
            !answers(lookup("dotted.", libc::AF_INET, None)),
            "a dot is never matched"
        );
        assert!(!answers(lookup("listed", libc::AF_INET, Some("http"))));
        assert!(!answers(lookup("other", libc::AF_UNSPEC, None)));
        assert!(!answers(lookup("", libc::AF_UNSPEC, None)));
        assert!(!answers(AddrQuery {
            reverse: true,
            ..lookup("listed", libc::AF_INET, None)
        }));
        assert!(!answers(AddrQuery {
            host: None,
            ..lookup("listed", libc::AF_INET, None)
        }));
        assert!(!answers(lookup("listed", libc::AF_UNIX, None)));
    }

    #[test]
    fn nothing_is_answered_unless_nsswitch_asks_files_first_and_no_nscd_listens() {
        let files = Files::new("order");
        files.write("hosts", "10.1.1.1 listed\n");
        let query = lookup("listed", libc::AF_INET, None);
        let now = Instant::now();
        assert!(
            !files
                .source("IGAI_TEST_UNSET_VARIABLE")
                .answers(&query, now),
            "no nsswitch.conf"
        );
        files.write("nsswitch", "hosts: dns files\n");
        assert!(!files
            .source("IGAI_TEST_UNSET_VARIABLE")
            .answers(&query, now));
        files.write("nsswitch", "hosts: files\n");
        assert!(files
            .source("IGAI_TEST_UNSET_VARIABLE")
            .answers(&query, now));
        files.write("nscd", "");
        assert!(
            !files
                .source("IGAI_TEST_UNSET_VARIABLE")
                .answers(&query, now),
            "nscd"
        );
    }

    /// The role of RES_OPTIONS is played by a variable of this test's own.
    #[test]
    fn nothing_is_answered_while_a_resolver_variable_is_set() {
        let variable = format!("IGAI_TEST_RESOLVER_VARIABLE_{}", std::process::id());
        let (_files, source, query) = listed("environment", &variable);
        assert!(source.answers(&query, Instant::now()));
        std::env::set_var(&variable, "");
        let while_set = source.answers(&query, Instant::now());
        std::env::remove_var(&variable);
        assert!(!while_set);
    }

    /// Changes are seen at the first look after RECHECK, not before (the stat is skipped).
    #[test]
    fn changed_files_are_read_again_at_the_first_look_after_the_recheck_interval() {
        let (files, source, query) = listed("recheck", "IGAI_TEST_UNSET_VARIABLE");
        let start = Instant::now();
        assert!(source.answers(&query, start));
        assert!(source.answers(&query, start + RECHECK));
        assert_eq!(
            source.reads.load(Ordering::Relaxed),
            1,
            "unchanged files read again"
        );
        let start = start + RECHECK;
        files.write("hosts", "10.1.1.2 other\n");
        assert!(
            source.answers(&query, start + RECHECK / 2),
            "looked before RECHECK"
        );
        assert!(
            !source.answers(&query, start + RECHECK),
            "missed the new hosts file"
        );
        files.write("hosts", "10.1.1.1 listed\n");
        assert!(source.answers(&query, start + RECHECK * 2));
        // Of another size: a rewrite within the clock's tick may keep the times.
        files.write("nsswitch", "hosts: dns\n");
        assert!(
            !source.answers(&query, start + RECHECK * 3),
            "missed the new order"
        );
    }

    /// While another thread reads the files, a lookup does not wait for it: the pool.
    #[test]
    fn a_lookup_that_finds_the_cache_busy_goes_to_the_pool() {
        let (_files, source, query) = listed("busy", "IGAI_TEST_UNSET_VARIABLE");
        assert!(source.answers(&query, Instant::now()));
        let busy = source.cache.lock().unwrap();
        assert!(!source.answers(&query, Instant::now()));
        drop(busy);
    }

    /// The process-wide entry point reads the system's files like a source made for them,
    /// counts what it is told to, and the atfork child handler (called here directly, as in
    /// a child) forgets both.
    #[test]
    fn the_system_source_reads_the_etc_files_and_a_child_forgets_it_and_the_count() {
        let system = HostsSource::new(NSSWITCH_CONF, HOSTS, NSCD_SOCKET, &RESOLVER_ENV);
        for family in [libc::AF_UNSPEC, libc::AF_INET, libc::AF_INET6] {
            let query = lookup("localhost", family, Some("80"));
            assert_eq!(
                answers_from_hosts_file(&query),
                system.answers(&query, Instant::now())
            );
        }
        let before = inline_lookups();
        count_inline();
        assert_eq!(inline_lookups(), before + 1);
        assert!(SYSTEM.is_made());
        // A real fork: the resolver's child handler forgets the cache and the count.
        assert!(
            crate::testing::in_child(|| !SYSTEM.is_made() && inline_lookups() == 0),
            "a forked child kept the parent's hosts-file cache or count"
        );
        assert!(SYSTEM.is_made(), "the parent keeps its cache");
    }
}
