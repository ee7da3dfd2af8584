//! The process-wide resolver: one worker pool per process, replaced in a forked child.
//!
//! After fork(2) only the forking thread exists in the child; the parent's workers, and any lock
//! one of them held at that moment, are gone or frozen. So the child must not touch the parent's
//! pool at all: a `pthread_atfork` child handler (atomic stores only, which are async-signal-safe)
//! forgets the pool (and the count of spinning threads, see [`crate::spin`]), and the child's first
//! lookup builds a new one. The parent's pool stays allocated in the child and is never used again:
//! a bounded, one-off leak per fork, and the price of never touching a lock that may be held.
//! glibc's own locks that a lookup may hold are the [`crate::fork_gate`]'s business: its prepare
//! handler makes `fork` wait for lookups doing local work, never for one waiting on the network.
//! The handlers are registered once per process with `pthread_once`, which glibc restarts in a
//! child forked in the middle of it (a Rust `Once` would stay locked there for good).
//!
//! One more thing survives a fork: glibc keeps each thread's resolver state, open DNS socket
//! included, in the thread descriptor at the top of its stack, and caches the stacks of
//! threads that are gone, handing them to new threads of the same size. A child's new worker
//! could then get a parent worker's stack and send its queries on the socket the parent is
//! still reading (measured: 2 of 40 child lookups lost their answer). So each fork generation
//! asks for a slightly larger stack ([`stack_size`]), which no stack cached from an earlier
//! generation can satisfy.

use crate::fork_local::ForkLocal;
use crate::pool::{Config, Pool};
use crate::query::{Answer, Query};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The pool behind `Socket.interruptible_getaddrinfo` and `Socket.interruptible_getnameinfo`.
pub type Resolver = Pool<Query, Answer>;

/// Default cap on lookup threads (see the README for why 64).
pub const DEFAULT_MAX_WORKERS: usize = 64;
/// Default time an idle lookup thread waits for work before it exits.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of stuck lookups (abandoned, or in flight past the stall threshold) begun
/// since a zone's last answer that make it dead, so that only probes start there: two lets a
/// retry after one lost packet start at once (see [`crate::policy`]).
pub const DEFAULT_MAX_STUCK_PER_ZONE: usize = 2;
/// Stack of a lookup thread. getaddrinfo(3) with glibc's DNS, files and myhostname modules
/// uses a few tens of KiB; 256 KiB leaves ample room for other NSS modules while keeping
/// the address space of a full pool small. Only touched pages cost memory.
pub const STACK_SIZE: usize = 256 * 1024;

static MAX_WORKERS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_WORKERS);
static MAX_STUCK_PER_ZONE: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_STUCK_PER_ZONE);
static IDLE_TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_IDLE_TIMEOUT.as_millis() as u64);
/// This process's pool (a forked child makes its own).
static CURRENT: ForkLocal<Resolver> = ForkLocal::new();
/// How many forks lie between the first process that used igai and this one.
static FORK_GENERATION: AtomicUsize = AtomicUsize::new(0);

/// Worker stack size in this process: [`STACK_SIZE`] plus 16 KiB per fork generation, so that
/// glibc never gives a worker a stack (and resolver state) cached from a parent's worker.
pub fn stack_size() -> usize {
    STACK_SIZE + FORK_GENERATION.load(Ordering::Relaxed) * 16 * 1024
}

/// How many forks lie between the first process that used igai and this one: a waiter that
/// sees it change while it waits (a trap handler forked) is in a child, holding a ticket of
/// the parent's pool.
pub fn generation() -> usize {
    FORK_GENERATION.load(Ordering::Relaxed)
}

/// This process's resolver, created on first use (and again after a fork).
pub fn resolver() -> &'static Resolver {
    CURRENT.get_or_make(|| {
        install_fork_handlers();
        let config = Config {
            max_workers: MAX_WORKERS.load(Ordering::Relaxed),
            idle_timeout: Duration::from_millis(IDLE_TIMEOUT_MS.load(Ordering::Relaxed)),
            stack_size: stack_size(),
            thread_name: "igai-resolver".to_owned(),
            max_stuck_per_zone: MAX_STUCK_PER_ZONE.load(Ordering::Relaxed),
        };
        Pool::with_answered(config, Query::zone, Query::run, Answer::answered)
    })
}

/// A `pthread_once_t` that may live in a static.
struct OnceControl(UnsafeCell<libc::pthread_once_t>);
// SAFETY: the cell is only ever handed to pthread_once, which synchronises access to it.
unsafe impl Sync for OnceControl {}

static FORK_HANDLERS: OnceControl = OnceControl(UnsafeCell::new(libc::PTHREAD_ONCE_INIT));

/// Registers the `pthread_atfork` handlers (once per process): the fork gate's, and the child
/// handler that forgets the parent's pool and the hosts-file cache ([`crate::inline`]); and
/// installs the signal the gate parks lookups with ([`crate::fork_park`]). Called before any
/// lookup enters the C library and before the first worker starts; the Ruby binding also
/// calls it while the extension loads.
pub fn install_fork_handlers() {
    extern "C" fn register() {
        crate::fork_park::install();
        // SAFETY: three `extern "C" fn()` handlers with no preconditions; glibc keeps the
        // registration for the life of the process.
        unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    }
    // SAFETY: FORK_HANDLERS is a static once-control initialised with PTHREAD_ONCE_INIT and
    // used for nothing else; `register` is an `extern "C" fn()`.
    unsafe { libc::pthread_once(FORK_HANDLERS.0.get(), register) };
}

extern "C" fn prepare() {
    crate::fork_gate::close_for_fork();
}

extern "C" fn parent() {
    crate::fork_gate::reopen_in_parent();
}

/// In the child: only the forking thread lives, so this touches no lock another thread could
/// have held (the gate's lock is the forking thread's own).
extern "C" fn child() {
    crate::fork_gate::reopen_in_child();
    CURRENT.forget();
    crate::inline::forget_in_child();
    FORK_GENERATION.fetch_add(1, Ordering::Relaxed);
    crate::spin::forget_spinners_after_fork();
}

/// Sets the cap on lookup threads, for this pool and any made after a fork.
pub fn set_max_workers(max_workers: usize) {
    let max_workers = max_workers.max(1);
    MAX_WORKERS.store(max_workers, Ordering::Relaxed);
    resolver().set_max_workers(max_workers);
}

/// The cap on lookup threads.
pub fn max_workers() -> usize {
    MAX_WORKERS.load(Ordering::Relaxed)
}

/// Sets how many abandoned lookups one zone may hold before its new lookups wait (at least
/// 1), for this pool and any made after a fork.
pub fn set_max_stuck_per_zone(max_stuck: usize) {
    let max_stuck = max_stuck.max(1);
    MAX_STUCK_PER_ZONE.store(max_stuck, Ordering::Relaxed);
    resolver().set_max_stuck_per_zone(max_stuck);
}

/// How many abandoned lookups one zone may hold before its new lookups wait.
pub fn max_stuck_per_zone() -> usize {
    MAX_STUCK_PER_ZONE.load(Ordering::Relaxed)
}

/// Sets how long idle lookup threads linger. Applies to pools created afterwards and, through
/// [`Pool::set_idle_timeout`], to the current one.
pub fn set_idle_timeout(timeout: Duration) {
    IDLE_TIMEOUT_MS.store(
        timeout.as_millis().min(u64::MAX as u128) as u64,
        Ordering::Relaxed,
    );
    resolver().set_idle_timeout(timeout);
}

/// How long idle lookup threads linger.
pub fn idle_timeout() -> Duration {
    Duration::from_millis(IDLE_TIMEOUT_MS.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The atfork child handler: a child forked while threads of the parent spin (here: this
    /// thread holds a spinning slot) starts with no pool, a new generation and no spinner
    /// counted, so that its own threads may spin. The child only reads atomics and exits.
    #[test]
    fn a_forked_child_forgets_the_parents_pool_and_spinners() {
        resolver(); // registers the handler
        let generation = generation();
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while !crate::spin::take_slot() {
            assert!(
                std::time::Instant::now() < give_up,
                "no spinning slot came free"
            );
            std::thread::yield_now();
        }
        let forgotten = crate::testing::in_child(|| {
            !CURRENT.is_made()
                && self::generation() == generation + 1
                && crate::spin::spinners() == 0
        });
        crate::spin::give_slot();
        assert!(
            forgotten,
            "the child kept the parent's pool, generation or spinners"
        );
    }

    /// Settings reach the current pool and are kept for pools made later (after a fork);
    /// zero means one. Restored afterwards: they are process-wide.
    #[test]
    fn settings_reach_the_pool_and_outlive_it() {
        set_max_workers(7);
        set_max_stuck_per_zone(3);
        set_idle_timeout(Duration::from_millis(1500));
        let kept = (max_workers(), max_stuck_per_zone(), idle_timeout());
        let current = resolver().max_workers();
        let after_fork = crate::testing::in_child(|| resolver().max_workers() == 7);
        set_max_workers(0);
        set_max_stuck_per_zone(0);
        let at_least_one = (max_workers(), max_stuck_per_zone());
        set_max_workers(DEFAULT_MAX_WORKERS);
        set_max_stuck_per_zone(DEFAULT_MAX_STUCK_PER_ZONE);
        set_idle_timeout(DEFAULT_IDLE_TIMEOUT);
        assert_eq!(kept, (7, 3, Duration::from_millis(1500)));
        assert_eq!(current, 7);
        assert!(after_fork, "a child's new pool did not get max_workers 7");
        assert_eq!(at_least_one, (1, 1));
    }

    /// 256 KiB, plus 16 KiB per fork generation.
    #[test]
    fn each_fork_generation_gets_a_larger_worker_stack() {
        let generation = generation();
        assert_eq!(stack_size(), 262_144 + generation * 16_384);
        let child = generation + 1;
        assert!(crate::testing::in_child(
            move || stack_size() == 262_144 + child * 16_384
        ));
    }
}
