//! The fork gate: `fork` waits for lookups that may hold one of glibc's locks, and never for
//! a lookup that waits on the network.
//!
//! A lookup thread inside getaddrinfo(3) or getnameinfo(3) takes internal glibc locks that
//! glibc's own `fork` does not reset in the child: the resolv.conf lock (held while
//! resolv.conf is checked and parsed, at the start of every lookup), the `__check_pf` lock
//! (held across a netlink request, for `AI_ADDRCONFIG` and to sort several answers), the lock
//! of the list of loaded NSS modules (held across their `dlopen`), gai.conf's. glibc resets
//! its malloc, stdio, NSS-database and dynamic-loader locks at fork, not these. A child
//! forked while a parent's lookup holds one inherits it locked, with no thread left to
//! unlock it: every lookup in that child then hangs on it, forever.
//!
//! Each of those locks is held only across local work (a file, a netlink socket, `dlopen`),
//! never while glibc waits for a DNS server: that waiting happens in poll(2) with no global
//! lock held. So the gate's `pthread_atfork` prepare handler ([`close_for_fork`]):
//! 1. closes the gate, so that no new lookup enters the C library until the fork is done
//!    (they wait in [`pass`] for [`reopen_in_parent`] or, in the child, start afresh);
//! 2. waits until every lookup already inside has left, or is blocked in poll(2)/ppoll(2)
//!    (what the kernel reports in `/proc/self/task/TID/syscall`), which is where a lookup
//!    waiting on a stalled or distant server sits; at most [`LONGEST_WAIT`] in all;
//! 3. keeps the gate's lock across the fork, so that the list of lookups is consistent in
//!    the child, which empties it (the threads in it are the parent's).
//!
//! So `fork` waits for lookups doing local work (microseconds to a few milliseconds), never
//! for one waiting on the network. What remains, and CONTRIBUTING.md measures: a lookup
//! seen in poll(2) whose answer arrives in the few microseconds between the last look and
//! the fork may take a lock (to sort its answers) as the fork happens; and a lookup that
//! stays in local work for longer than [`LONGEST_WAIT`] (a TCP connection to a DNS server,
//! a thread starved of CPU) is not waited for beyond it.

use std::cell::RefCell;
use std::io::Read;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The longest the prepare handler waits for lookups doing local work. Local work takes
/// microseconds, but a lookup thread preempted inside a lock (with others queued on it) may
/// wait tens of milliseconds for a CPU on a busy machine: with 15 ms, 19 of 1000 children
/// forked at load average 10 inherited the `__check_pf` lock and never resolved; with 100 ms
/// none did, and the wait never reached the limit. A fork waits this long only then.
pub const LONGEST_WAIT: Duration = Duration::from_millis(100);
/// How often the prepare handler looks again at lookups that neither left nor wait in
/// poll(2) (it is also woken whenever one leaves).
const LOOK_AGAIN: Duration = Duration::from_micros(200);

/// What the gate knows: whether a fork is under way, and the threads inside the C library.
struct Gate {
    closed: bool,
    /// Thread IDs (gettid) of the lookups inside the C library, one entry per lookup.
    inside: Vec<libc::pid_t>,
}

static GATE: Mutex<Gate> = Mutex::new(Gate {
    closed: false,
    inside: Vec::new(),
});
/// Signalled when the gate reopens and when a lookup leaves.
static CHANGED: Condvar = Condvar::new();

thread_local! {
    /// The gate's lock, held by the forking thread from the prepare handler to the parent's
    /// or child's handler (the same thread runs all three).
    static HELD_FOR_FORK: RefCell<Option<MutexGuard<'static, Gate>>> = const { RefCell::new(None) };
}

fn lock() -> MutexGuard<'static, Gate> {
    // A panic while the lock was held leaves the list as consistent as any other moment
    // (every change to it is one push or one swap_remove).
    GATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `call` (a call into the C library's name service) inside the gate: it waits while a
/// fork is under way, and the prepare handler waits for it while it does local work.
pub fn pass<R>(call: impl FnOnce() -> R) -> R {
    crate::resolver::install_fork_handlers();
    let tid = this_thread();
    {
        let mut gate = lock();
        while gate.closed {
            gate = CHANGED.wait(gate).unwrap_or_else(PoisonError::into_inner);
        }
        gate.inside.push(tid);
    }
    /// Takes the thread off the list when the call returns or unwinds.
    struct Leave(libc::pid_t);
    impl Drop for Leave {
        fn drop(&mut self) {
            let mut gate = lock();
            if let Some(at) = gate.inside.iter().position(|&tid| tid == self.0) {
                gate.inside.swap_remove(at);
            }
            if gate.closed {
                CHANGED.notify_all();
            }
        }
    }
    let _leave = Leave(tid);
    call()
}

/// The `pthread_atfork` prepare handler: closes the gate and waits (at most
/// [`LONGEST_WAIT`]) until each lookup inside has left or waits in poll(2), then holds the
/// gate's lock across the fork. Does nothing if this thread already holds it.
pub(crate) fn close_for_fork() {
    if HELD_FOR_FORK.with(|held| held.borrow().is_some()) {
        return;
    }
    let give_up = Instant::now() + LONGEST_WAIT;
    let mut gate = lock();
    gate.closed = true;
    loop {
        if gate.inside.is_empty() || Instant::now() >= give_up {
            break;
        }
        let inside = gate.inside.clone();
        drop(gate);
        let busy = inside.iter().any(|&tid| !waits_on_the_network(tid));
        gate = lock();
        if !busy {
            // Every lookup looked at waits on the network; one that entered since cannot
            // have (the gate is closed), and one that left needs nothing.
            break;
        }
        let left = give_up.saturating_duration_since(Instant::now());
        gate = CHANGED
            .wait_timeout(gate, left.min(LOOK_AGAIN))
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
    HELD_FOR_FORK.with(|held| *held.borrow_mut() = Some(gate));
}

/// The `pthread_atfork` parent handler: reopens the gate and lets waiting lookups in.
pub(crate) fn reopen_in_parent() {
    if let Some(mut gate) = HELD_FOR_FORK.with(|held| held.borrow_mut().take()) {
        gate.closed = false;
        drop(gate);
        CHANGED.notify_all();
    }
}

/// The `pthread_atfork` child handler: the lookups on the list were the parent's threads,
/// gone in the child; the gate opens empty. Only the forking thread lives, so nobody waits.
pub(crate) fn reopen_in_child() {
    if let Some(mut gate) = HELD_FOR_FORK.with(|held| held.borrow_mut().take()) {
        gate.inside.clear();
        gate.closed = false;
    }
}

/// This thread's kernel thread ID.
fn this_thread() -> libc::pid_t {
    thread_local! {
        static TID: std::cell::Cell<libc::pid_t> = const { std::cell::Cell::new(0) };
    }
    TID.with(|tid| {
        if tid.get() == 0 {
            // SAFETY: gettid(2) has no arguments and cannot fail.
            tid.set(unsafe { libc::gettid() });
        }
        tid.get()
    })
}

/// Is thread `tid` of this process blocked in poll(2) or ppoll(2) (how glibc's resolver waits
/// for a DNS server, holding no lock)? The kernel tells in `/proc/self/task/TID/syscall`:
/// the number of the system call the thread is blocked in, or "running". Anything else,
/// including an unreadable file, counts as "no".
fn waits_on_the_network(tid: libc::pid_t) -> bool {
    let mut text = [0u8; 32];
    let Ok(mut file) = std::fs::File::open(format!("/proc/self/task/{tid}/syscall")) else {
        return false;
    };
    let Ok(len) = file.read(&mut text) else {
        return false;
    };
    let number = text[..len]
        .split(|&byte| byte == b' ' || byte == b'\n')
        .next()
        .and_then(|field| std::str::from_utf8(field).ok())
        .and_then(|field| field.parse::<libc::c_long>().ok());
    matches!(number, Some(n) if is_poll(n))
}

/// The system calls glibc's resolver waits in.
fn is_poll(number: libc::c_long) -> bool {
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    if number == libc::SYS_poll {
        return true;
    }
    number == libc::SYS_ppoll
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A thread blocked in poll(2) on a pipe nobody writes counts as waiting on the network;
    /// this thread (running) does not.
    #[test]
    fn a_thread_blocked_in_poll_waits_on_the_network_and_a_running_one_does_not() {
        let (tid, stop) = thread_in_poll();
        assert!(
            crate::testing::eventually(|| waits_on_the_network(tid)),
            "a thread in poll(2) was not seen there"
        );
        assert!(!waits_on_the_network(this_thread()));
        stop();
    }

    /// While the gate is closed for a fork, a new call waits; reopening lets it in.
    #[test]
    fn a_call_waits_while_a_fork_is_under_way() {
        let _serial = crate::testing::serial();
        close_for_fork();
        let entered = Arc::new(AtomicBool::new(false));
        let caller = {
            let entered = entered.clone();
            std::thread::spawn(move || pass(|| entered.store(true, Ordering::SeqCst)))
        };
        std::thread::sleep(Duration::from_millis(50));
        let entered_while_closed = entered.load(Ordering::SeqCst);
        reopen_in_parent();
        caller.join().unwrap();
        assert!(
            !entered_while_closed,
            "a call entered while a fork was under way"
        );
        assert!(entered.load(Ordering::SeqCst));
    }

    /// The prepare handler waits for a call doing local work (here: spinning), until it
    /// leaves, but not past LONGEST_WAIT for one that never does.
    #[test]
    fn the_prepare_handler_waits_for_a_busy_call_and_not_longer_than_its_limit() {
        let _serial = crate::testing::serial();
        let (inside, release, tid) = busy_call();
        let leave_at = Instant::now() + Duration::from_millis(5);
        let releaser = std::thread::spawn(move || {
            std::thread::sleep(leave_at.saturating_duration_since(Instant::now()));
            release.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        close_for_fork();
        let waited = started.elapsed();
        let left_before_the_fork = !held_list_holds(tid);
        reopen_in_parent();
        releaser.join().unwrap();
        inside.join().unwrap();
        assert!(
            left_before_the_fork,
            "the prepare handler did not wait for the call"
        );
        assert!(waited < LONGEST_WAIT * 4, "waited {waited:?}");

        let (inside, release, _) = busy_call();
        let started = Instant::now();
        close_for_fork();
        let waited = started.elapsed();
        reopen_in_parent();
        release.store(true, Ordering::SeqCst);
        inside.join().unwrap();
        assert!(waited >= LONGEST_WAIT, "gave up after {waited:?}");
        assert!(waited < LONGEST_WAIT * 20, "waited {waited:?}");
    }

    /// The prepare handler does not wait for a call blocked in poll(2).
    #[test]
    fn the_prepare_handler_does_not_wait_for_a_call_in_poll() {
        let _serial = crate::testing::serial();
        let (tid, stop) = thread_in_poll();
        assert!(crate::testing::eventually(|| waits_on_the_network(tid)));
        let started = Instant::now();
        close_for_fork();
        let (waited, inside) = (started.elapsed(), held_list_holds(tid));
        reopen_in_parent();
        stop();
        assert!(inside, "the call in poll(2) should still be inside");
        assert!(
            waited < LONGEST_WAIT,
            "waited {waited:?} for a call in poll(2)"
        );
    }

    /// A real fork while a call is inside: the child's gate is open and empty, so its own
    /// calls pass at once.
    #[test]
    fn a_forked_child_starts_with_an_open_empty_gate() {
        let _serial = crate::testing::serial();
        let (tid, stop) = thread_in_poll();
        assert!(crate::testing::eventually(|| waits_on_the_network(tid)));
        let child_ok = crate::testing::in_child(|| {
            let gate = GATE.try_lock();
            matches!(gate, Ok(ref gate) if !gate.closed && gate.inside.is_empty())
        });
        let parent_open = !lock().closed;
        stop();
        assert!(child_ok, "the child's gate was locked, closed or not empty");
        assert!(parent_open, "the parent's gate stayed closed");
    }

    /// Whether the gate, as held across a fork by this thread, lists thread `tid` inside.
    /// (Other tests of this binary may have calls of their own inside.)
    fn held_list_holds(tid: libc::pid_t) -> bool {
        HELD_FOR_FORK.with(|held| {
            let held = held.borrow();
            let gate = held.as_ref().expect("the gate is held for a fork");
            gate.inside.contains(&tid)
        })
    }

    /// A thread inside the gate that spins until released; with its thread ID.
    fn busy_call() -> (std::thread::JoinHandle<()>, Arc<AtomicBool>, libc::pid_t) {
        let release = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = std::sync::mpsc::channel();
        let inside = {
            let release = release.clone();
            std::thread::spawn(move || {
                pass(|| {
                    sender.send(this_thread()).unwrap();
                    while !release.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                })
            })
        };
        let tid = receiver.recv().unwrap();
        (inside, release, tid)
    }

    /// A thread inside the gate blocked in poll(2) on a pipe; returns its thread ID and a
    /// function that ends the poll (by writing to the pipe) and joins the thread.
    fn thread_in_poll() -> (libc::pid_t, impl FnOnce()) {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a writable array of two descriptors, as pipe(2) requires.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        let [read, write] = fds;
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            sender.send(this_thread()).unwrap();
            pass(|| {
                let mut fd = libc::pollfd {
                    fd: read,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd; waits at most 30 s.
                unsafe { libc::poll(&mut fd, 1, 30_000) };
            });
        });
        let tid = receiver.recv().unwrap();
        let stop = move || {
            // SAFETY: writes one byte from a live local to our pipe, then closes both ends
            // once the reader is done.
            unsafe { libc::write(write, [1u8].as_ptr().cast(), 1) };
            thread.join().unwrap();
            // SAFETY: both descriptors are ours and closed exactly once.
            unsafe {
                libc::close(read);
                libc::close(write);
            }
        };
        (tid, stop)
    }
}
