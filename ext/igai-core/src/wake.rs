//! A wake-up flag that may be raised from a signal handler.
//!
//! A caller waiting for a lookup sleeps on a [`WakeCell`]. Two things wake it: the worker that
//! finished the lookup ([`WakeCell::notify_done`]) and whoever wants the wait cut short
//! ([`Waker::interrupt`]). MRI may call the second from inside a signal handler (it does so when
//! the waiting thread is the only Ruby thread and the unblocking function is declared
//! async-signal-safe), so interrupting uses nothing but an atomic `fetch_or` and, on Linux, a
//! `futex(FUTEX_WAKE)` system call: both are async-signal-safe.
//!
//! Cells are never freed (see [`WakeCell::leak_new`]): a late interrupt that arrives after its
//! wait has ended must still land on valid memory. The flags are only hints; the truth about a
//! lookup is kept elsewhere, so a stale flag costs at most one spurious wake-up.

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
        futex::wake(&self.flags);
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
            futex::wait(&self.flags, 0, timeout);
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

#[cfg(target_os = "linux")]
mod futex {
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

#[cfg(not(target_os = "linux"))]
mod futex {
    //! Portable fallback without a futex: waiters poll every millisecond. Correct, a little
    //! slower to notice a wake-up; igai is developed and measured on Linux.
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
        let step = Duration::from_millis(1);
        if word.load(Ordering::SeqCst) == expected {
            std::thread::sleep(timeout.map_or(step, |t| t.min(step)));
        }
    }

    pub fn wake(_word: &AtomicU32) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sleep_returns_at_the_deadline_when_nothing_happens() {
        let cell = WakeCell::leak_new();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(30);
        while cell.sleep(Some(deadline)) == Woken::Nothing && Instant::now() < deadline {}
        assert!(start.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn interrupt_from_another_thread_wakes_the_sleeper_and_stays_raised() {
        let cell = WakeCell::leak_new();
        let waker = cell.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            waker.interrupt();
        });
        let woken = loop {
            match cell.sleep(None) {
                Woken::Nothing => continue,
                other => break other,
            }
        };
        t.join().unwrap();
        assert_eq!(woken, Woken::Interrupted);
        assert!(cell.is_interrupted());
        cell.clear_interrupt();
        assert!(!cell.is_interrupted());
    }

    #[test]
    fn done_flag_is_consumed_by_the_sleep_that_sees_it() {
        let cell = WakeCell::leak_new();
        cell.notify_done();
        assert_eq!(cell.sleep(None), Woken::Done);
        let soon = Instant::now() + Duration::from_millis(5);
        assert_eq!(cell.sleep(Some(soon)), Woken::Nothing);
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
