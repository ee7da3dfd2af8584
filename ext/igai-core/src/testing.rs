//! Helpers for the core's own unit tests.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Forks; the child runs `check` (which must not rely on locks other threads may hold)
/// and reports through a pipe whether it returned true. Returns what the child reported.
/// Not the exit status: under valgrind a child exits with valgrind's own status, after
/// reporting the parent's threads' memory as lost.
pub fn in_child(check: impl FnOnce() -> bool) -> bool {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a writable array of two descriptors, as pipe(2) requires.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
    let [read, write] = fds;
    // SAFETY: the child runs only `check` and write(2) before _exit, never returning into
    // the test harness; callers keep `check` to atomics, locks of their own thread and
    // glibc's fork-safe malloc.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let verdict = [u8::from(check())];
        // SAFETY: writes one byte from a live local to our pipe, then _exit ends the
        // child at once, running nothing of the parent's.
        unsafe {
            libc::write(write, verdict.as_ptr().cast(), 1);
            libc::_exit(0)
        };
    }
    // SAFETY: `write` is our descriptor of the pipe; the child holds its own copy.
    unsafe { libc::close(write) };
    assert!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
    let mut verdict = [0u8];
    // SAFETY: reads at most one byte into a live local; `read` is our open descriptor.
    let got = unsafe { libc::read(read, verdict.as_mut_ptr().cast(), 1) };
    // SAFETY: closes our descriptor once; waits for our own child; `status` is a live int.
    let waited = unsafe {
        libc::close(read);
        let mut status = 0;
        libc::waitpid(pid, &mut status, 0)
    };
    assert_eq!(waited, pid);
    got == 1 && verdict[0] == 1
}

/// Polls `done` until it holds, for at most 10 s; returns whether it did.
pub fn eventually(done: impl Fn() -> bool) -> bool {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !done() {
        if Instant::now() >= give_up {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Held by tests that must not run beside each other (the fork gate's: one closes the
/// process-wide gate that another measures).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the tests run under valgrind (`rake test:memcheck:core` sets
/// `IGAI_UNDER_VALGRIND`): it runs one thread at a time, from system calls of its own, so
/// tests about what other threads are seen doing return early there.
pub fn under_valgrind() -> bool {
    std::env::var_os("IGAI_UNDER_VALGRIND").is_some()
}

/// A pipe for a thread to block on, in read(2) or poll(2), until [`TestPipe::send`] writes
/// a byte. Both ends close when it is dropped (after the threads using it have ended).
pub struct TestPipe {
    /// The end to block on.
    pub read: libc::c_int,
    write: libc::c_int,
}

impl TestPipe {
    pub fn new() -> TestPipe {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a writable array of two descriptors, as pipe(2) requires.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe failed");
        let [read, write] = fds;
        TestPipe { read, write }
    }

    /// Writes the byte a reader waits for.
    pub fn send(&self) {
        // SAFETY: writes one byte from a live local to our open pipe.
        unsafe { libc::write(self.write, [1u8].as_ptr().cast(), 1) };
    }

    /// Blocks in read(2) on the pipe's read end `read` until a byte comes; what read(2)
    /// returned.
    pub fn read_byte(read: libc::c_int) -> isize {
        let mut byte = [0u8];
        // SAFETY: reads at most one byte into a live local; `read` is an open descriptor
        // (its TestPipe outlives the reading thread).
        unsafe { libc::read(read, byte.as_mut_ptr().cast(), 1) }
    }
}

impl Drop for TestPipe {
    fn drop(&mut self) {
        // SAFETY: both descriptors are ours and closed exactly once, here.
        unsafe {
            libc::close(self.read);
            libc::close(self.write);
        }
    }
}
