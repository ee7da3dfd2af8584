//! A wake-up flag that may be raised from a signal handler.
//!
//! A caller waiting for a lookup sleeps on a [`WakeCell`]. Two things wake it: the worker that
//! finished the lookup ([`WakeCell::notify_done`]) and whoever wants the wait cut short
//! ([`Waker::interrupt`]). MRI may call the second from inside a signal handler (it does so when
//! the waiting thread is the only Ruby thread and the unblocking function is declared
//! async-signal-safe), so interrupting uses nothing but an atomic `fetch_or` and one system call: on Linux
//! `futex(FUTEX_WAKE)`; elsewhere, or with the cargo feature `portable-wake`, a one-byte
//! `write(2)` to the cell's own pipe, which the sleeper waits on with `poll(2)`. Both are
//! async-signal-safe.
//!
//! Cells are never freed (see [`WakeCell::leak_new`]): a late interrupt that arrives after its
//! wait has ended must still land on valid memory. The flags are only hints; the truth about a
//! lookup is kept elsewhere, so a stale flag costs at most one spurious wake-up.

use crate::spin::SpinPolicy;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// The lookup this cell waits for has an outcome (or failed).
const DONE: u32 = 1;
/// Someone asked the waiter to stop waiting and look at its interrupts.
const INTERRUPTED: u32 = 2;

/// One waiter's sleep/wake word.
#[derive(Debug, Default)]
pub struct WakeCell {
    flags: AtomicU32,
    /// What a sleeper blocks on when there is no futex (see [`doorbell`]).
    #[cfg(any(not(target_os = "linux"), feature = "portable-wake"))]
    bell: doorbell::Doorbell,
}

/// A copyable, `'static` handle that interrupts one waiter; safe to use from a signal handler.
#[derive(Debug, Clone, Copy)]
pub struct Waker(&'static WakeCell);

/// What a call to [`WakeCell::sleep`] saw when it returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The done flag was raised (it has been cleared again).
    Done,
    /// The interrupt flag is raised.
    Interrupted,
    /// Neither: the deadline passed or the sleep ended spuriously.
    Nothing,
}

impl WakeCell {
    /// Allocates a cell that lives for the rest of the process.
    pub fn leak_new() -> &'static WakeCell {
        Box::leak(Box::default())
    }

    /// The handle that interrupts this cell's waiter.
    pub fn waker(&'static self) -> Waker {
        Waker(self)
    }

    /// Clears both flags before the cell serves a new wait.
    pub fn reset(&self) {
        self.flags.store(0, Ordering::SeqCst);
    }

    /// Clears the interrupt flag; called with the interrupts already dealt with.
    pub fn clear_interrupt(&self) {
        self.flags.fetch_and(!INTERRUPTED, Ordering::SeqCst);
    }

    /// Is the interrupt flag raised?
    pub fn is_interrupted(&self) -> bool {
        self.flags.load(Ordering::SeqCst) & INTERRUPTED != 0
    }

    /// Raises the done flag and wakes the waiter.
    pub fn notify_done(&self) {
        self.raise(DONE);
    }

    fn raise(&self, flag: u32) {
        self.flags.fetch_or(flag, Ordering::SeqCst);
        self.wake_sleeper();
    }

    #[cfg(all(target_os = "linux", not(feature = "portable-wake")))]
    fn wake_sleeper(&self) {
        futex::wake(&self.flags);
    }

    #[cfg(any(not(target_os = "linux"), feature = "portable-wake"))]
    fn wake_sleeper(&self) {
        self.bell.ring();
    }

    /// Blocks while the flags are `expected`, at most `timeout` (or spuriously earlier).
    #[cfg(all(target_os = "linux", not(feature = "portable-wake")))]
    fn block(&self, expected: u32, timeout: Option<std::time::Duration>) {
        futex::wait(&self.flags, expected, timeout);
    }

    #[cfg(any(not(target_os = "linux"), feature = "portable-wake"))]
    fn block(&self, expected: u32, timeout: Option<std::time::Duration>) {
        self.bell.wait(&self.flags, expected, timeout);
    }

    /// [`sleep`](WakeCell::sleep), after watching the flags for a moment when `policy` finds
    /// waits of this kind short (see [`crate::spin`]); tells `policy` how long this one lasted.
    pub fn spin_then_sleep(&self, deadline: Option<Instant>, policy: &SpinPolicy) -> Woken {
        let start = Instant::now();
        if self.flags.load(Ordering::SeqCst) == 0 {
            policy.spin_until(deadline, || self.flags.load(Ordering::Relaxed) != 0);
        }
        let woken = self.sleep(deadline);
        policy.record(start.elapsed());
        woken
    }

    /// Sleeps until a flag is raised or `deadline` passes (or spuriously, so callers loop).
    /// Consumes the done flag; leaves the interrupt flag raised.
    pub fn sleep(&self, deadline: Option<Instant>) -> Woken {
        let seen = self.flags.load(Ordering::SeqCst);
        if seen == 0 {
            let timeout = match deadline {
                Some(deadline) => match deadline.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Woken::Nothing,
                },
                None => None,
            };
            self.block(0, timeout);
        }
        let now = self.flags.load(Ordering::SeqCst);
        if now & INTERRUPTED != 0 {
            Woken::Interrupted
        } else if now & DONE != 0 {
            self.flags.fetch_and(!DONE, Ordering::SeqCst);
            Woken::Done
        } else {
            Woken::Nothing
        }
    }
}

impl Waker {
    /// Raises the interrupt flag and wakes the waiter. Async-signal-safe.
    pub fn interrupt(self) {
        self.0.raise(INTERRUPTED);
    }

    /// The cell's address, to hand to C as an opaque pointer.
    pub fn into_raw(self) -> *mut std::ffi::c_void {
        self.0 as *const WakeCell as *mut std::ffi::c_void
    }

    /// Rebuilds a waker from [`Waker::into_raw`].
    ///
    /// # Safety
    /// `raw` must come from [`Waker::into_raw`]. Cells are leaked, so such a pointer stays valid
    /// for the life of the process.
    pub unsafe fn from_raw(raw: *mut std::ffi::c_void) -> Waker {
        // SAFETY: the caller promises `raw` came from `into_raw`, i.e. from a `&'static WakeCell`.
        Waker(unsafe { &*(raw as *const WakeCell) })
    }
}

/// Futex waits and wakes (also used by [`crate::fork_park`]'s signal handler: both are one
/// system call, async-signal-safe).
#[cfg(target_os = "linux")]
pub(crate) mod futex {
    use std::sync::atomic::AtomicU32;
    use std::time::Duration;

    /// Sleeps while `*word == expected`, at most `timeout`. Returns early on any wake or signal.
    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let spec = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let spec_ptr = spec
            .as_ref()
            .map_or(std::ptr::null(), |s| s as *const libc::timespec);
        // SAFETY: `word` is a live, aligned u32 for the duration of the call and `spec_ptr` is
        // null or points at a timespec on this stack frame. FUTEX_WAIT only reads both.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                expected,
                spec_ptr,
            );
        }
    }

    /// Wakes every thread sleeping on `word`. Async-signal-safe (one system call).
    pub fn wake(word: &AtomicU32) {
        // SAFETY: FUTEX_WAKE only uses the address as a key; `word` is live and aligned.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
            );
        }
    }
}

#[cfg(any(not(target_os = "linux"), feature = "portable-wake"))]
mod doorbell {
    //! Blocking without a futex: each cell owns a non-blocking pipe. Ringing writes one byte
    //! (`write(2)`, async-signal-safe); a sleeper that saw no flag raised waits for the read
    //! end with `poll(2)`, then empties the pipe. A ring between the sleeper's look at the
    //! flags and its poll leaves its byte in the pipe, so the poll returns at once: no wake-up
    //! is lost. A byte left over from an earlier wait only makes one sleep end early, which
    //! callers treat as spurious. Cells are never freed, so neither are their two descriptors;
    //! the pool reuses idle cells, so there are as many as waiters at the busiest moment.
    use std::os::raw::c_int;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A pipe: `read` is polled by the sleeper, `write` rung by whoever wakes it.
    #[derive(Debug)]
    pub struct Doorbell {
        read: c_int,
        write: c_int,
    }

    impl Default for Doorbell {
        fn default() -> Self {
            let mut fds = [0 as c_int; 2];
            // SAFETY: `fds` is a writable array of two descriptors, as pipe(2) requires.
            let made = unsafe { libc::pipe(fds.as_mut_ptr()) };
            assert_eq!(
                made,
                0,
                "igai could not create a wake-up pipe: {}",
                std::io::Error::last_os_error()
            );
            for fd in fds {
                // SAFETY: `fd` is a descriptor pipe(2) just returned; F_GETFL/F_SETFL and
                // F_SETFD only change its flags.
                unsafe {
                    let flags = libc::fcntl(fd, libc::F_GETFL);
                    libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
                    libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                }
            }
            Doorbell {
                read: fds[0],
                write: fds[1],
            }
        }
    }

    impl Doorbell {
        /// Wakes the sleeper. Async-signal-safe: one `write(2)`, whose result does not matter
        /// (a full pipe already holds a wake-up; errno is saved and restored for the
        /// interrupted code's sake).
        pub fn ring(&self) {
            let saved = errno();
            let byte = 1u8;
            // SAFETY: `write` is an open descriptor of a never-freed cell; one byte is read
            // from a live local.
            unsafe { libc::write(self.write, (&byte as *const u8).cast(), 1) };
            set_errno(saved);
        }

        /// Sleeps while `*word == expected`, at most `timeout`; returns early on any ring or
        /// signal.
        pub fn wait(&self, word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
            if word.load(Ordering::SeqCst) != expected {
                return;
            }
            let mut poll = libc::pollfd {
                fd: self.read,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one live pollfd; poll(2) writes only its `revents`.
            unsafe { libc::poll(&mut poll, 1, poll_timeout(timeout)) };
            self.drain();
        }

        /// Empties the pipe (it is non-blocking: stops when nothing is left).
        fn drain(&self) {
            let mut buffer = [0u8; 64];
            loop {
                // SAFETY: reads at most `buffer.len()` bytes into a live local buffer.
                let read =
                    unsafe { libc::read(self.read, buffer.as_mut_ptr().cast(), buffer.len()) };
                if read < buffer.len() as isize {
                    break;
                }
            }
        }
    }

    /// `timeout` in whole milliseconds for poll(2), rounded up (so that a sleep never ends
    /// just before its deadline and spins); -1 for none.
    fn poll_timeout(timeout: Option<Duration>) -> c_int {
        match timeout {
            None => -1,
            Some(timeout) => {
                let millis = timeout.as_nanos().div_ceil(1_000_000);
                millis.min(c_int::MAX as u128) as c_int
            }
        }
    }

    fn errno() -> c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn set_errno(value: c_int) {
        // SAFETY: __errno_location returns this thread's errno slot.
        unsafe { *libc::__errno_location() = value };
    }

    #[cfg(any(target_os = "macos", target_os = "ios", target_os = "freebsd"))]
    fn set_errno(value: c_int) {
        // SAFETY: __error returns this thread's errno slot.
        unsafe { *libc::__error() = value };
    }

    #[cfg(not(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd"
    )))]
    fn set_errno(_value: c_int) {}

    #[cfg(test)]
    mod tests {
        use super::super::{WakeCell, Woken};
        use std::time::{Duration, Instant};

        #[cfg(target_os = "linux")]
        #[test]
        fn a_sleeper_blocks_on_its_pipe_instead_of_polling() {
            use super::super::tests::context_switches;
            let cell = WakeCell::leak_new();
            let waker = cell.waker();
            let ringer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                waker.interrupt();
            });
            let (before, _) = context_switches();
            let woken = loop {
                match cell.sleep(None) {
                    Woken::Nothing => continue,
                    other => break other,
                }
            };
            let switches = context_switches().0 - before;
            ringer.join().unwrap();
            assert_eq!(woken, Woken::Interrupted);
            // Polling every millisecond would switch about 300 times.
            assert!(switches < 20, "{switches} context switches while asleep");
        }

        #[test]
        fn a_ring_before_the_sleep_is_not_lost_and_a_deadline_still_ends_it() {
            let cell = WakeCell::leak_new();
            cell.notify_done();
            assert_eq!(cell.sleep(None), Woken::Done);
            let start = Instant::now();
            let deadline = start + Duration::from_millis(40);
            while cell.sleep(Some(deadline)) == Woken::Nothing && Instant::now() < deadline {}
            assert!(start.elapsed() >= Duration::from_millis(40));
        }

        #[test]
        fn rings_from_a_signal_handler_wake_the_sleeper() {
            use std::sync::atomic::{AtomicPtr, Ordering};
            static CELL: AtomicPtr<WakeCell> = AtomicPtr::new(std::ptr::null_mut());
            extern "C" fn on_signal(_: libc::c_int) {
                let cell = CELL.load(Ordering::SeqCst);
                if !cell.is_null() {
                    // SAFETY: CELL holds a leaked, never-freed cell.
                    unsafe { &*cell }.waker().interrupt();
                }
            }
            let cell = WakeCell::leak_new();
            CELL.store(cell as *const WakeCell as *mut WakeCell, Ordering::SeqCst);
            // SAFETY: installs a handler that only calls the async-signal-safe interrupt.
            unsafe {
                libc::signal(
                    libc::SIGUSR2,
                    on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
                )
            };
            // SAFETY: pthread_self is always valid for the calling thread.
            let sleeper = unsafe { libc::pthread_self() } as usize;
            let sender = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                // SAFETY: the sleeper thread is alive until it is woken (it joins us after).
                unsafe { libc::pthread_kill(sleeper as libc::pthread_t, libc::SIGUSR2) };
            });
            let start = Instant::now();
            while cell.sleep(Some(start + Duration::from_secs(5))) == Woken::Nothing
                && start.elapsed() < Duration::from_secs(5)
            {}
            sender.join().unwrap();
            assert!(cell.is_interrupted());
            assert!(start.elapsed() < Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// Runs `body` on its own thread and returns its result; fails the test when it has not
    /// finished within `limit`, so that a wait that never ends cannot hang `cargo test`.
    fn within<T: Send + 'static>(limit: Duration, body: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(body());
        });
        match result.recv_timeout(limit) {
            Ok(value) => value,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("still waiting after {limit:?}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the waiting thread panicked"),
        }
    }

    /// `cell.sleep(deadline)` bounded by a watchdog.
    fn sleep_bounded(cell: &'static WakeCell, deadline: Option<Instant>) -> Woken {
        within(Duration::from_secs(10), move || cell.sleep(deadline))
    }

    /// CPU time the calling thread has used so far.
    fn thread_cpu_time() -> Duration {
        // SAFETY: an all-zero timespec is a valid value for clock_gettime to overwrite.
        let mut now: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: `now` is a live timespec on this stack frame; clock_gettime only writes it.
        let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
        assert_eq!(status, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
    }

    /// What a sleeper saw: how many times `sleep` returned, the wall time it took, the CPU time
    /// it burnt, and how it ended.
    struct Slept {
        returns: u32,
        took: Duration,
        cpu: Duration,
        end: Woken,
        ended: Instant,
    }

    /// Sleeps on `cell` as a caller does, looping while `sleep` returns `Nothing` until
    /// `deadline` (if any) has passed, and counts.
    fn sleep_like_a_caller(cell: &'static WakeCell, deadline: Option<Instant>) -> Slept {
        sleep_repeatedly(deadline, || cell.sleep(deadline))
    }

    /// Calls `sleep` while it returns `Nothing` until `deadline` (if any) has passed, and
    /// counts.
    fn sleep_repeatedly(deadline: Option<Instant>, mut sleep: impl FnMut() -> Woken) -> Slept {
        let start = Instant::now();
        let cpu = thread_cpu_time();
        let mut returns = 0;
        let end = loop {
            returns += 1;
            match sleep() {
                Woken::Nothing if deadline.map_or(true, |d| Instant::now() < d) => continue,
                end => break end,
            }
        };
        Slept {
            returns,
            took: start.elapsed(),
            cpu: thread_cpu_time() - cpu,
            end,
            ended: Instant::now(),
        }
    }

    /// A sleeper that blocked returned once (a few times at most, for spurious wake-ups) and
    /// burnt next to no CPU; one that polls returns thousands of times and burns its whole wait.
    fn assert_it_blocked(slept: &Slept) {
        assert!(
            slept.returns <= 3,
            "sleep returned {} times: it polls",
            slept.returns
        );
        assert!(
            slept.cpu < Duration::from_millis(40),
            "a sleeper used {:?} of CPU",
            slept.cpu
        );
    }

    /// A sleep with a deadline blocks until the deadline: it returns once (a few times at
    /// most, for spurious wake-ups) and burns next to no CPU. A cell that polls returns
    /// thousands of times and burns the whole wait.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_sleep_blocks_until_its_deadline_instead_of_polling() {
        let cell = WakeCell::leak_new();
        let deadline = Instant::now() + Duration::from_millis(200);
        let slept = within(Duration::from_secs(10), move || {
            sleep_like_a_caller(cell, Some(deadline))
        });
        assert_eq!(slept.end, Woken::Nothing);
        assert_it_blocked(&slept);
    }

    /// The same for a sleep without a deadline that an interrupt ends.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_sleep_without_deadline_blocks_until_interrupted_instead_of_polling() {
        let cell = WakeCell::leak_new();
        let waker = cell.waker();
        let sleeper = std::thread::spawn(move || sleep_like_a_caller(cell, None));
        std::thread::sleep(Duration::from_millis(200));
        let interrupted = Instant::now();
        waker.interrupt();
        let slept = within(Duration::from_secs(10), move || sleeper.join().unwrap());
        assert_eq!(slept.end, Woken::Interrupted);
        assert!(
            slept.ended >= interrupted,
            "the sleep ended before the interrupt"
        );
        assert_it_blocked(&slept);
    }

    /// Voluntary and involuntary context switches of the calling thread so far (Linux's
    /// RUSAGE_THREAD).
    #[cfg(target_os = "linux")]
    pub(super) fn context_switches() -> (i64, i64) {
        // SAFETY: an all-zero rusage is valid; getrusage fills it in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `usage` is a live, writable rusage.
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
        (usage.ru_nvcsw as i64, usage.ru_nivcsw as i64)
    }

    /// A sleeper whose flag is raised while it spins never leaves its CPU: no context switch
    /// at all, although it waited. Without the spin it parks (a voluntary switch) every time.
    /// Tried for up to 10 s, since other tests may hold the spinning slots or keep the CPUs
    /// busy; one clean hand-over proves the spin.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_flag_raised_during_the_spin_is_seen_without_parking() {
        use crate::spin::SpinPolicy;
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        if crate::spin::max_spinners() == 0 {
            return; // one CPU: spinning is off by design
        }
        if crate::testing::under_valgrind() {
            // `rake test:memcheck:core`: valgrind runs one thread at a time, so no spinner
            // can see another thread act. Memory errors are what that run looks for.
            return;
        }
        static POLICY: SpinPolicy = SpinPolicy::new();
        let policy = &POLICY;
        let clean = within(Duration::from_secs(30), move || {
            let give_up = Instant::now() + Duration::from_secs(10);
            std::iter::repeat_with(|| {
                let cell = WakeCell::leak_new();
                let entering = Arc::new(AtomicBool::new(false));
                let notifier = {
                    let entering = Arc::clone(&entering);
                    std::thread::spawn(move || {
                        while !entering.load(Ordering::SeqCst) {
                            std::hint::spin_loop();
                        }
                        let raise_at = Instant::now() + Duration::from_micros(50);
                        while Instant::now() < raise_at {
                            std::hint::spin_loop();
                        }
                        cell.notify_done();
                    })
                };
                let before = context_switches();
                let start = Instant::now();
                entering.store(true, Ordering::SeqCst);
                let woken = cell.spin_then_sleep(None, policy);
                let waited = start.elapsed();
                let after = context_switches();
                notifier.join().unwrap();
                woken == Woken::Done && after == before && waited >= Duration::from_micros(40)
            })
            .find(|&clean| clean || Instant::now() >= give_up)
            .unwrap_or(false)
        });
        assert!(
            clean,
            "every hand-over parked the sleeper or switched it out"
        );
    }

    /// The spin is bounded: a long wait still parks and burns next to no CPU.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_sleep_that_spins_first_still_blocks_after_the_spin() {
        use crate::spin::SpinPolicy;
        let cell = WakeCell::leak_new();
        let deadline = Instant::now() + Duration::from_millis(200);
        let slept = within(Duration::from_secs(10), move || {
            let policy = SpinPolicy::new();
            sleep_repeatedly(Some(deadline), || {
                cell.spin_then_sleep(Some(deadline), &policy)
            })
        });
        assert_eq!(slept.end, Woken::Nothing);
        assert!(
            slept.ended >= deadline,
            "the sleep ended before its deadline"
        );
        assert_it_blocked(&slept);
    }

    #[test]
    fn a_sleep_ends_at_its_deadline_when_nothing_happens() {
        let cell = WakeCell::leak_new();
        let deadline = Instant::now() + Duration::from_millis(30);
        let slept = within(Duration::from_secs(10), move || {
            sleep_like_a_caller(cell, Some(deadline))
        });
        assert_eq!(slept.end, Woken::Nothing);
        assert!(Instant::now() >= deadline);
        assert!(slept.took < Duration::from_secs(5), "{:?}", slept.took);
    }

    #[test]
    fn a_sleep_whose_deadline_has_passed_returns_at_once() {
        let cell = WakeCell::leak_new();
        let slept = within(Duration::from_secs(10), move || {
            sleep_like_a_caller(cell, Some(Instant::now()))
        });
        assert_eq!((slept.end, slept.returns), (Woken::Nothing, 1));
    }

    #[test]
    fn interrupt_from_another_thread_wakes_the_sleeper_and_stays_raised() {
        let cell = WakeCell::leak_new();
        let waker = cell.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.interrupt();
        });
        let slept = within(Duration::from_secs(10), move || {
            sleep_like_a_caller(cell, None)
        });
        t.join().unwrap();
        assert_eq!(slept.end, Woken::Interrupted);
        assert!(cell.is_interrupted());
        // The interrupt stays raised: the next sleep returns at once.
        assert_eq!(sleep_bounded(cell, None), Woken::Interrupted);
        cell.clear_interrupt();
        assert!(!cell.is_interrupted());
    }

    #[test]
    fn done_wakes_a_sleeper_and_is_consumed_by_the_sleep_that_sees_it() {
        let cell = WakeCell::leak_new();
        let notifier = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            cell.notify_done();
        });
        let slept = within(Duration::from_secs(10), move || {
            sleep_like_a_caller(cell, None)
        });
        notifier.join().unwrap();
        assert_eq!(slept.end, Woken::Done);
        assert!(!cell.is_interrupted());
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(sleep_bounded(cell, Some(soon)), Woken::Nothing);
    }

    #[test]
    fn done_flag_is_consumed_by_the_sleep_that_sees_it() {
        let cell = WakeCell::leak_new();
        cell.notify_done();
        assert_eq!(sleep_bounded(cell, None), Woken::Done);
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(sleep_bounded(cell, Some(soon)), Woken::Nothing);
    }

    #[test]
    fn an_interrupt_wins_over_done_and_leaves_done_for_later() {
        let cell = WakeCell::leak_new();
        cell.notify_done();
        cell.waker().interrupt();
        assert_eq!(sleep_bounded(cell, None), Woken::Interrupted);
        cell.clear_interrupt();
        assert_eq!(sleep_bounded(cell, None), Woken::Done);
    }

    #[test]
    fn reset_clears_both_flags() {
        let cell = WakeCell::leak_new();
        cell.notify_done();
        cell.waker().interrupt();
        cell.reset();
        assert!(!cell.is_interrupted());
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(sleep_bounded(cell, Some(soon)), Woken::Nothing);
    }

    #[test]
    fn raw_round_trip_keeps_the_same_cell() {
        let cell = WakeCell::leak_new();
        // SAFETY: the pointer comes straight from `into_raw`.
        let waker = unsafe { Waker::from_raw(cell.waker().into_raw()) };
        waker.interrupt();
        assert!(cell.is_interrupted());
    }
}
