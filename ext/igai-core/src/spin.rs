//! Spinning briefly before parking, when waits of one kind usually end soon.
//!
//! A hand-off between a caller and a worker that both park costs two wake-ups, and a thread
//! woken on a CPU that went idle waits for that CPU to come back: tens of microseconds on a
//! virtual machine, more than a whole `/etc/hosts` lookup. A sleeper that first watches its
//! flag for a moment keeps its CPU awake and sees the flag at once. Watching costs CPU, so a
//! [`SpinPolicy`] learns how long waits of its kind last (a moving average) and spins only
//! while they are short; lookups that stall or go to a distant DNS server soon stop it.
//!
//! While spinning, the thread yields its CPU between looks, so that work queued on the same
//! CPU (the DNS server in the test bed, another Ruby thread) runs first. At most one thread
//! per CPU spins at a time, and none on a machine with one CPU, where the other side cannot
//! run while we watch. (One per two CPUs was measured and is too few: on two CPUs the worker
//! that just handed over an outcome still holds the one slot when its caller, already back
//! with the next lookup, wants to spin.) A spin never outlasts its waiter's deadline, and
//! `IGAI_SPIN=0` in the environment turns spinning off for processes on a CPU budget: each
//! hand-off then wakes a parked thread (slower on virtual machines, see the README).

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The longest a sleeper watches its flag before parking.
pub const SPIN_LIMIT: Duration = Duration::from_micros(200);
/// Spinning pays off while a typical wait of the kind ends within this: often enough inside
/// [`SPIN_LIMIT`], and otherwise soon after it.
const WORTH_SPINNING: Duration = Duration::from_micros(400);
/// One wait counts as at most this long in the average, so that a single stall stops the
/// spinning for a few waits and not for hundreds.
const LONGEST_SAMPLE: Duration = Duration::from_millis(4);
/// Weight of the newest wait in the moving average: 1 / 2^AVERAGE_SHIFT.
const AVERAGE_SHIFT: u32 = 3;

/// Threads spinning right now, across all policies.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);
/// Whether `IGAI_SPIN` allows spinning: [`UNREAD`] until first asked.
static ALLOWED: AtomicU8 = AtomicU8::new(UNREAD);
const UNREAD: u8 = 0;
const ON: u8 = 1;
const OFF: u8 = 2;

/// Whether spinning is allowed in this process: unless `IGAI_SPIN` is `0`, read once.
pub fn allowed() -> bool {
    match ALLOWED.load(Ordering::Relaxed) {
        UNREAD => {
            let on = allowed_by(std::env::var_os("IGAI_SPIN").as_deref());
            // Racing first reads store the same value.
            ALLOWED.store(if on { ON } else { OFF }, Ordering::Relaxed);
            on
        }
        setting => setting == ON,
    }
}

/// `IGAI_SPIN`'s value allows spinning unless it is `0`.
fn allowed_by(setting: Option<&OsStr>) -> bool {
    setting.map_or(true, |value| value.as_encoded_bytes() != b"0")
}

/// Forgets the spinners of the parent process: in a forked child only the forking thread
/// lives, and it was not spinning. Async-signal-safe (one atomic store), for the resolver's
/// `pthread_atfork` child handler.
pub fn forget_spinners_after_fork() {
    SPINNERS.store(0, Ordering::Relaxed);
}

/// [`max_spinners`] before it was first worked out.
const NOT_YET_KNOWN: usize = usize::MAX;
/// [`max_spinners`], once worked out.
static MAX_SPINNERS: AtomicUsize = AtomicUsize::new(NOT_YET_KNOWN);

/// How many threads may spin at once on this machine (its CPUs as Rust counts them, which
/// honours the affinity mask and a cgroup's CPU quota).
///
/// Worked out on first use without any once-only lock: threads that ask at the same time
/// each compute it (the same number) and store it. A `OnceLock` here once made forked
/// children hang for good: a fork while another thread was inside its initialisation left
/// the child a lock that no thread of the child would ever release.
pub(crate) fn max_spinners() -> usize {
    match MAX_SPINNERS.load(Ordering::Relaxed) {
        NOT_YET_KNOWN => {
            let max = spinners_for(std::thread::available_parallelism().map_or(1, |n| n.get()));
            MAX_SPINNERS.store(max, Ordering::Relaxed);
            max
        }
        max => max,
    }
}

/// One spinner per CPU; none with a single CPU, where the thread we wait for cannot run
/// while we watch.
fn spinners_for(cpus: usize) -> usize {
    if cpus < 2 {
        0
    } else {
        cpus
    }
}

/// What one kind of wait (callers waiting for outcomes, idle workers waiting for jobs) has
/// learned about how long it lasts.
#[derive(Debug, Default)]
pub struct SpinPolicy {
    /// Moving average of recent waits, in nanoseconds.
    typical_nanos: AtomicU64,
}

impl SpinPolicy {
    /// A policy that spins until it has seen long waits.
    pub const fn new() -> Self {
        SpinPolicy {
            typical_nanos: AtomicU64::new(0),
        }
    }

    /// The moving average of recent waits.
    pub fn typical_wait(&self) -> Duration {
        Duration::from_nanos(self.typical_nanos.load(Ordering::Relaxed))
    }

    /// Should the next wait spin before parking?
    pub fn worth_spinning(&self) -> bool {
        self.typical_wait() <= WORTH_SPINNING
    }

    /// Adds a wait that lasted `waited` to the average.
    pub fn record(&self, waited: Duration) {
        let sample = waited.min(LONGEST_SAMPLE).as_nanos() as u64;
        // Racing updates may lose one sample; the average is a hint.
        let old = self.typical_nanos.load(Ordering::Relaxed);
        let new = old - (old >> AVERAGE_SHIFT) + (sample >> AVERAGE_SHIFT);
        self.typical_nanos.store(new, Ordering::Relaxed);
    }

    /// Watches `ready` for at most [`SPIN_LIMIT`], and not past `deadline`, when spinning is
    /// [`allowed`], this kind of wait is worth it and a spinning slot is free.
    pub fn spin_until(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) -> Spun {
        if !allowed() || !self.worth_spinning() || !take_slot() {
            return Spun::NotTried;
        }
        let limit = Instant::now() + SPIN_LIMIT;
        let until = deadline.map_or(limit, |deadline| deadline.min(limit));
        let spun = loop {
            if ready() {
                break Spun::Ready;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
            if ready() {
                break Spun::Ready;
            }
            if Instant::now() >= until {
                break Spun::GaveUp;
            }
            std::thread::yield_now();
        };
        give_slot();
        spun
    }
}

/// How a [`SpinPolicy::spin_until`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spun {
    /// `ready` became true.
    Ready,
    /// [`SPIN_LIMIT`] passed first.
    GaveUp,
    /// No spin: spinning is off, waits of this kind are long, or the slots were all taken.
    NotTried,
}

/// Takes one of the [`max_spinners`] slots, if one is free.
pub(crate) fn take_slot() -> bool {
    let max = max_spinners();
    SPINNERS
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// Gives back a slot that [`take_slot`] took.
pub(crate) fn give_slot() {
    SPINNERS.fetch_sub(1, Ordering::Relaxed);
}

/// How many threads spin right now.
#[cfg(test)]
pub(crate) fn spinners() -> usize {
    SPINNERS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn short_waits_keep_spinning_and_one_stall_stops_it_for_a_few_waits() {
        let policy = SpinPolicy::new();
        assert!(policy.worth_spinning());
        for _ in 0..50 {
            policy.record(Duration::from_micros(50));
        }
        assert!(policy.worth_spinning());
        policy.record(Duration::from_secs(30));
        assert!(!policy.worth_spinning(), "a stall must stop the spinning");
        let mut short_waits = 0;
        while !policy.worth_spinning() {
            policy.record(Duration::from_micros(50));
            short_waits += 1;
            assert!(short_waits < 20, "spinning never came back");
        }
        assert!(
            short_waits >= 3,
            "one stall stopped spinning for {short_waits} waits only"
        );
    }

    #[test]
    fn waits_longer_than_the_spin_stop_it() {
        let policy = SpinPolicy::new();
        for _ in 0..50 {
            policy.record(Duration::from_millis(2));
        }
        assert!(!policy.worth_spinning());
        assert_eq!(policy.spin_until(None, || true), Spun::NotTried);
    }

    #[test]
    fn one_thread_per_cpu_may_spin_and_none_on_one_cpu() {
        let spinners: Vec<usize> = [1, 2, 3, 8].into_iter().map(spinners_for).collect();
        assert_eq!(spinners, [0, 2, 3, 8]);
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(max_spinners(), spinners_for(cpus));
    }

    /// Many threads wanting to spin at once: the ones spinning never outnumber the slots, and
    /// each one that spins holds one (the count includes it).
    #[test]
    fn no_more_threads_spin_at_once_than_there_are_slots() {
        let threads = max_spinners() + 4;
        let start = std::sync::Barrier::new(threads);
        let most = AtomicUsize::new(0);
        let least = AtomicUsize::new(usize::MAX);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    let policy = SpinPolicy::new();
                    start.wait();
                    policy.spin_until(None, || {
                        let now = spinners();
                        most.fetch_max(now, Ordering::Relaxed);
                        least.fetch_min(now, Ordering::Relaxed);
                        false
                    });
                });
            }
        });
        let (most, least) = (most.into_inner(), least.into_inner());
        assert!(most <= max_spinners(), "{most} threads spun at once");
        if most > 0 {
            assert!(least >= 1, "a thread spun without holding a slot");
        }
    }

    /// Spins until a spinning slot was free (other tests may hold them).
    fn spin_with_a_slot(policy: &SpinPolicy, ready: impl Fn() -> bool) -> Spun {
        let give_up = Instant::now() + Duration::from_secs(10);
        loop {
            match policy.spin_until(None, &ready) {
                Spun::NotTried if Instant::now() < give_up => std::thread::yield_now(),
                spun => return spun,
            }
        }
    }

    #[test]
    fn a_spin_sees_a_flag_raised_during_it_and_gives_up_by_its_limit() {
        let policy = SpinPolicy::new();
        if max_spinners() == 0 {
            // One CPU: spinning is off by design.
            assert_eq!(policy.spin_until(None, || true), Spun::NotTried);
            return;
        }
        let start = Instant::now();
        assert_eq!(spin_with_a_slot(&policy, || false), Spun::GaveUp);
        assert!(start.elapsed() >= SPIN_LIMIT);
        let flag = AtomicBool::new(false);
        let raised_at = Instant::now() + SPIN_LIMIT / 4;
        let spun = spin_with_a_slot(&policy, || {
            if Instant::now() >= raised_at {
                flag.store(true, Ordering::Relaxed);
            }
            flag.load(Ordering::Relaxed)
        });
        assert_eq!(spun, Spun::Ready);
    }

    /// Without its deadline every spin lasts SPIN_LIMIT; with a deadline an eighth of that
    /// away, one of a few tries (a loaded machine may preempt some) ends well before.
    #[test]
    fn a_spin_ends_at_its_deadline_when_that_comes_first() {
        if max_spinners() == 0 {
            return; // one CPU: spinning is off by design
        }
        let policy = SpinPolicy::new();
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut shortest = Duration::MAX;
        let mut tries = 0;
        while tries < 20 && Instant::now() < give_up {
            let start = Instant::now();
            match policy.spin_until(Some(start + SPIN_LIMIT / 8), || false) {
                Spun::NotTried => std::thread::yield_now(),
                spun => {
                    assert_eq!(spun, Spun::GaveUp);
                    shortest = shortest.min(start.elapsed());
                    tries += 1;
                }
            }
        }
        assert!(
            shortest < SPIN_LIMIT * 3 / 4,
            "the shortest spin took {shortest:?}"
        );
    }

    #[test]
    fn igai_spin_0_turns_spinning_off_and_anything_else_leaves_it_on() {
        assert!(allowed_by(None));
        assert!(allowed_by(Some(OsStr::new("1"))));
        assert!(allowed_by(Some(OsStr::new(""))));
        assert!(!allowed_by(Some(OsStr::new("0"))));
        assert_eq!(
            allowed(),
            allowed_by(std::env::var_os("IGAI_SPIN").as_deref())
        );
        let before = ALLOWED.swap(OFF, Ordering::Relaxed);
        let spun = SpinPolicy::new().spin_until(None, || true);
        ALLOWED.store(before, Ordering::Relaxed);
        assert_eq!(spun, Spun::NotTried);
    }
}
