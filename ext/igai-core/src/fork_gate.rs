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
//!    waiting on a stalled or distant server sits: as long as one runs, waits for a CPU or
//!    waits for a lock, at most [`LONGEST_WAIT_FOR_LOCAL_WORK`]; once the others are blocked
//!    in other system calls (a file read, or a DNS server's stalled TCP connection: the gate
//!    cannot tell them apart), at most [`LONGEST_WAIT`];
//! 3. keeps the gate's lock across the fork, so that the list of lookups is consistent in
//!    the child, which empties it (the threads in it are the parent's).
//!
//! A lookup seen in poll(2) could still get its answer between that look and the fork, and
//! take a lock (to sort its answers) as the fork happens. So the prepare handler parks each
//! one for the length of the fork ([`crate::fork_park`]): a signal stops it right where its
//! poll(2) returns, holding no lock, until the parent's handler lets it go on.
//!
//! So `fork` waits for lookups doing local work (microseconds to a few milliseconds), never
//! for one waiting on the network over UDP. What remains, and CONTRIBUTING.md describes: a
//! lookup starved of CPU for longer than [`LONGEST_WAIT_FOR_LOCAL_WORK`] inside a lock is not
//! waited for beyond it; a fork waits up to [`LONGEST_WAIT`] for a lookup on a stalled TCP
//! connection; and where parking is not available (see [`crate::fork_park`]), the window
//! above.

use std::cell::RefCell;
use std::io::Read;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The longest the prepare handler waits for a lookup blocked in a system call other than
/// poll(2) and futex(2): a read of a file, or a DNS server's TCP connection, which may stall
/// (glibc holds no global lock across it, but the gate cannot tell it from a file read).
pub const LONGEST_WAIT: Duration = Duration::from_millis(100);
/// The longest the prepare handler waits while a lookup inside runs (or waits for a CPU) or
/// waits for a lock (futex(2)): local work that ends as soon as it gets a CPU, but that a busy
/// machine may starve, with one of glibc's locks held. With a 15 ms limit for all, 19 of 1000
/// children forked at load average 10 inherited the `__check_pf` lock (its holder preempted,
/// others queued on it) and never resolved; with 100 ms, none of 2000 did, and the wait never
/// reached it. A fork waits this long only for a thread starved that long.
pub const LONGEST_WAIT_FOR_LOCAL_WORK: Duration = Duration::from_secs(1);
/// How often the prepare handler looks again at lookups that neither left nor wait in
/// poll(2) (it is also woken whenever one leaves).
const LOOK_AGAIN: Duration = Duration::from_micros(200);

/// What the gate knows: whether a fork is under way, and the threads inside the C library.
struct Gate {
    closed: bool,
    /// The lookups inside the C library, one entry per lookup.
    inside: Vec<Inside>,
}

/// A lookup inside the C library.
#[derive(Clone, Copy)]
struct Inside {
    /// Its thread (gettid).
    tid: libc::pid_t,
    /// Whether its thread runs the parking signal's handler (see [`crate::fork_park`]).
    parkable: bool,
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
    let (tid, parkable) = this_thread();
    {
        let mut gate = lock();
        while gate.closed {
            gate = CHANGED.wait(gate).unwrap_or_else(PoisonError::into_inner);
        }
        gate.inside.push(Inside { tid, parkable });
    }
    /// Takes the thread off the list when the call returns or unwinds.
    struct Leave(libc::pid_t);
    impl Drop for Leave {
        fn drop(&mut self) {
            let mut gate = lock();
            if let Some(at) = gate.inside.iter().position(|inside| inside.tid == self.0) {
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
/// [`LONGEST_WAIT_FOR_LOCAL_WORK`] while a lookup works, [`LONGEST_WAIT`] once none does)
/// until each lookup inside has left or waits in poll(2), parking those that wait there, then
/// holds the gate's lock across the fork. Does nothing if this thread already holds it.
pub(crate) fn close_for_fork() {
    if HELD_FOR_FORK.with(|held| held.borrow().is_some()) {
        return;
    }
    let mut gate = lock();
    // Another thread's fork is under way: wait for it, so that one fork at a time closes
    // the gate and parks threads.
    while gate.closed {
        gate = CHANGED.wait(gate).unwrap_or_else(PoisonError::into_inner);
    }
    gate.closed = true;
    let started = Instant::now();
    let parking = crate::fork_park::available();
    // Threads parked for this fork, and threads that refused (left poll(2) before the
    // signal came): those are not asked again, and are judged as without parking.
    let mut parked = Vec::new();
    let mut refused = Vec::new();
    // Whether the last look found a lookup running or waiting for a lock.
    let mut working = true;
    loop {
        let limit = if working {
            LONGEST_WAIT_FOR_LOCAL_WORK
        } else {
            LONGEST_WAIT
        };
        let give_up = started + limit;
        if Instant::now() >= give_up {
            break;
        }
        let inside: Vec<Inside> = gate
            .inside
            .iter()
            .filter(|inside| !parked.contains(&inside.tid))
            .copied()
            .collect();
        if inside.is_empty() {
            break;
        }
        drop(gate);
        let mut busy = false;
        working = false;
        let mut to_park = Vec::new();
        for inside in inside {
            match look_at(inside.tid) {
                Seen::Working => (busy, working) = (true, true),
                Seen::Blocked => busy = true,
                Seen::Polling(resume_at)
                    if parking && inside.parkable && !refused.contains(&inside.tid) =>
                {
                    to_park.push((inside.tid, resume_at));
                }
                Seen::Polling(_) => {}
            }
        }
        if !to_park.is_empty() {
            let replies = crate::fork_park::park(&to_park, give_up);
            for (&(tid, _), did_park) in to_park.iter().zip(replies) {
                if did_park {
                    parked.push(tid);
                } else {
                    refused.push(tid);
                    busy = true;
                }
            }
        }
        gate = lock();
        if !busy {
            // Every lookup looked at waits on the network, parked or not; one that entered
            // since cannot have (the gate is closed), and one that left needs nothing.
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
        crate::fork_park::release();
        gate.closed = false;
        drop(gate);
        CHANGED.notify_all();
    }
}

/// The `pthread_atfork` child handler: the lookups on the list were the parent's threads,
/// gone in the child; the gate opens empty. Only the forking thread lives, so nobody waits.
pub(crate) fn reopen_in_child() {
    if let Some(mut gate) = HELD_FOR_FORK.with(|held| held.borrow_mut().take()) {
        crate::fork_park::release();
        gate.inside.clear();
        gate.closed = false;
    }
}

/// This thread's kernel thread ID, and whether it runs the parking signal's handler (a
/// thread's signal mask does not change while it makes lookups: workers block all other
/// signals from their start, and Ruby threads block none).
fn this_thread() -> (libc::pid_t, bool) {
    thread_local! {
        static THREAD: std::cell::Cell<(libc::pid_t, bool)> = const { std::cell::Cell::new((0, false)) };
    }
    THREAD.with(|thread| {
        if thread.get().0 == 0 {
            // SAFETY: gettid(2) has no arguments and cannot fail.
            let tid = unsafe { libc::gettid() };
            // The parking signal is chosen there; before, no thread would accept it.
            crate::resolver::install_fork_handlers();
            thread.set((tid, crate::fork_park::accepted_by_this_thread()));
        }
        thread.get()
    })
}

/// What the prepare handler saw a lookup's thread doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Blocked in poll(2) or ppoll(2), how glibc's resolver waits for a DNS server, holding
    /// no lock; with the address that call returns to.
    Polling(usize),
    /// Running or waiting for a CPU (in no system call), or waiting for a lock (futex(2)):
    /// local work, which ends once it gets a CPU.
    Working,
    /// Blocked in another system call, or not to be seen.
    Blocked,
}

/// What thread `tid` of this process is doing. The kernel tells in
/// `/proc/self/task/TID/syscall`: "running" (on a CPU); -1, the stack pointer and the
/// instruction address (stopped in no system call: preempted, or in a page fault); or the
/// number of the system call the thread is blocked in, its six arguments, the stack pointer
/// and the address the call returns to.
fn look_at(tid: libc::pid_t) -> Seen {
    let mut text = [0u8; 256];
    let Ok(mut file) = std::fs::File::open(format!("/proc/self/task/{tid}/syscall")) else {
        return Seen::Blocked;
    };
    let Ok(len) = file.read(&mut text) else {
        return Seen::Blocked;
    };
    let text = std::str::from_utf8(&text[..len]).unwrap_or("");
    let mut fields = text.split_ascii_whitespace();
    match fields.next().map(str::parse::<libc::c_long>) {
        Some(Ok(number)) if is_poll(number) => {
            let resume_at = fields.last().and_then(|field| field.strip_prefix("0x"));
            match resume_at.and_then(|field| usize::from_str_radix(field, 16).ok()) {
                Some(resume_at) => Seen::Polling(resume_at),
                None => Seen::Blocked,
            }
        }
        Some(Ok(-1 | libc::SYS_futex)) => Seen::Working,
        Some(Ok(_)) => Seen::Blocked,
        // "running"
        Some(Err(_)) => Seen::Working,
        None => Seen::Blocked,
    }
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
    use crate::testing::TestPipe;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    /// A thread blocked in poll(2) on a pipe nobody writes is seen polling; a spinning one,
    /// working.
    #[test]
    fn a_thread_blocked_in_poll_is_seen_polling_and_a_running_one_working() {
        let poller = Poller::start();
        // (Under valgrind the thread leaves its poll(2) now and then for valgrind's own work.)
        assert!(crate::testing::eventually(|| matches!(
            look_at(poller.tid),
            Seen::Polling(_)
        )));
        poller.finish();
        if crate::testing::under_valgrind() {
            // Under valgrind a thread not running waits for its turn in a system call of
            // valgrind's, so a spinning thread may be seen blocked.
            return;
        }
        let (inside, release, tid) = busy_call();
        let seen = look_at(tid);
        release.store(true, Ordering::SeqCst);
        inside.join().unwrap();
        assert_eq!(seen, Seen::Working);
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
    /// leaves...
    #[test]
    fn the_prepare_handler_waits_for_a_busy_call_until_it_leaves() {
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
    }

    /// ... but not past LONGEST_WAIT_FOR_LOCAL_WORK for one that never leaves.
    #[test]
    fn the_prepare_handler_gives_up_on_a_busy_call_at_its_limit() {
        if crate::testing::under_valgrind() {
            // `rake test:memcheck:core`: valgrind runs one thread at a time, and the others
            // wait for their turn in a system call of its own, so the busy call is seen
            // blocked, not working, and given up on at LONGEST_WAIT.
            return;
        }
        let _serial = crate::testing::serial();
        let (inside, release, _) = busy_call();
        let started = Instant::now();
        close_for_fork();
        let waited = started.elapsed();
        reopen_in_parent();
        release.store(true, Ordering::SeqCst);
        inside.join().unwrap();
        assert!(
            waited >= LONGEST_WAIT_FOR_LOCAL_WORK,
            "gave up after {waited:?}"
        );
        assert!(
            waited < LONGEST_WAIT_FOR_LOCAL_WORK * 3,
            "waited {waited:?}"
        );
    }

    /// A call waiting for a lock (futex(2)) longer than LONGEST_WAIT, as one queued behind a
    /// starved holder of one of glibc's locks does, is still waited for.
    #[test]
    fn the_prepare_handler_waits_for_a_call_waiting_for_a_lock() {
        let _serial = crate::testing::serial();
        let held = Arc::new(Mutex::new(()));
        let (locked, is_locked) = std::sync::mpsc::channel();
        let holder = {
            let held = held.clone();
            std::thread::spawn(move || {
                let _holding = held.lock().unwrap();
                locked.send(()).unwrap();
                std::thread::sleep(LONGEST_WAIT * 2);
            })
        };
        is_locked.recv().unwrap();
        let (sender, receiver) = std::sync::mpsc::channel();
        let inside = {
            let held = held.clone();
            std::thread::spawn(move || {
                pass(|| {
                    sender.send(this_thread().0).unwrap();
                    drop(held.lock().unwrap());
                })
            })
        };
        let tid = receiver.recv().unwrap();
        assert!(crate::testing::eventually(|| look_at(tid) == Seen::Working));
        close_for_fork();
        let left_before_the_fork = !held_list_holds(tid);
        reopen_in_parent();
        holder.join().unwrap();
        inside.join().unwrap();
        assert!(
            left_before_the_fork,
            "the prepare handler gave up on a call waiting for a lock"
        );
    }

    /// A call blocked in a system call other than poll(2) (here read(2), as a DNS server's
    /// stalled TCP connection is) delays a fork by LONGEST_WAIT at most.
    #[test]
    fn the_prepare_handler_waits_for_a_call_blocked_in_a_read_only_briefly() {
        let _serial = crate::testing::serial();
        let pipe = TestPipe::new();
        let read = pipe.read;
        let (sender, receiver) = std::sync::mpsc::channel();
        let inside = std::thread::spawn(move || {
            pass(|| {
                sender.send(this_thread().0).unwrap();
                TestPipe::read_byte(read);
            })
        });
        let tid = receiver.recv().unwrap();
        assert!(crate::testing::eventually(|| look_at(tid) == Seen::Blocked));
        let started = Instant::now();
        close_for_fork();
        let waited = started.elapsed();
        reopen_in_parent();
        pipe.send();
        inside.join().unwrap();
        assert!(waited >= LONGEST_WAIT, "gave up after {waited:?}");
        assert!(
            waited < LONGEST_WAIT_FOR_LOCAL_WORK,
            "waited {waited:?} for a call blocked in read(2)"
        );
    }

    /// The prepare handler does not wait for a call blocked in poll(2).
    #[test]
    fn the_prepare_handler_does_not_wait_for_a_call_in_poll() {
        let _serial = crate::testing::serial();
        let poller = Poller::start();
        let started = Instant::now();
        close_for_fork();
        let (waited, inside) = (started.elapsed(), held_list_holds(poller.tid));
        reopen_in_parent();
        poller.finish();
        assert!(inside, "the call in poll(2) should still be inside");
        assert!(
            waited < LONGEST_WAIT,
            "waited {waited:?} for a call in poll(2)"
        );
    }

    /// A call in poll(2) whose answer comes while a fork is under way does not go on (to take
    /// a lock the child would inherit) until the fork is over: it is parked.
    #[test]
    fn a_call_in_poll_is_parked_until_the_fork_is_over() {
        if crate::testing::under_valgrind() {
            // `rake test:memcheck:core`: valgrind runs a thread's system calls from its own
            // code, so the thread is never where /proc shows its poll(2) returning to, and
            // refuses to park (the gate then works as without parking). Memory errors are
            // what that run looks for.
            return;
        }
        let _serial = crate::testing::serial();
        let poller = Poller::start();
        close_for_fork();
        poller.answer();
        std::thread::sleep(Duration::from_millis(50));
        let went_on_during_the_fork = poller.returned();
        reopen_in_parent();
        let went_on_after = crate::testing::eventually(|| poller.returned());
        poller.finish();
        assert!(
            !went_on_during_the_fork,
            "the call left poll(2) while the fork was under way"
        );
        assert!(went_on_after, "the call stayed parked after the fork");
    }

    /// Two threads forking at once: each one's fork finds the gate closed for it, though the
    /// first's prepare handler lets go of the gate's lock while it looks at busy calls and
    /// the first's parent handler reopens the gate.
    #[test]
    fn two_forks_at_once_each_hold_the_gate_closed() {
        let _serial = crate::testing::serial();
        let (inside, release, _) = busy_call();
        let fork = |pause: Duration| {
            std::thread::spawn(move || {
                close_for_fork();
                let closed = HELD_FOR_FORK.with(|held| held.borrow().as_ref().unwrap().closed);
                std::thread::sleep(pause);
                reopen_in_parent();
                closed
            })
        };
        let first = fork(Duration::from_millis(20));
        std::thread::sleep(Duration::from_millis(10));
        let second = fork(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(10));
        release.store(true, Ordering::SeqCst);
        inside.join().unwrap();
        assert!(first.join().unwrap(), "the first fork found the gate open");
        assert!(
            second.join().unwrap(),
            "the second fork found the gate open"
        );
        assert!(!lock().closed, "the gate stayed closed");
    }

    /// A thread the signal finds where the gate saw its poll(2) return to parks, replies so
    /// before `park` returns, and stays parked until the session's release.
    #[test]
    fn a_thread_found_at_its_poll_return_parks_until_released() {
        if crate::testing::under_valgrind() {
            return; // threads refuse under valgrind: see a_call_in_poll_is_parked_...
        }
        let _serial = crate::testing::serial();
        let poller = Poller::start();
        let Seen::Polling(resume_at) = look_at(poller.tid) else {
            panic!("the thread left poll(2)");
        };
        let give_up = Instant::now() + Duration::from_secs(10);
        let parked = crate::fork_park::park(&[(poller.tid, resume_at)], give_up);
        poller.answer();
        std::thread::sleep(Duration::from_millis(50));
        let went_on_while_parked = poller.returned();
        crate::fork_park::release();
        let went_on_after = crate::testing::eventually(|| poller.returned());
        poller.finish();
        assert_eq!(parked, [true]);
        assert!(!went_on_while_parked, "a parked thread went on");
        assert!(went_on_after, "a released thread stayed parked");
    }

    /// A stray parking signal (sent to a thread the gate did not ask, while a fork parks
    /// another) leaves its thread alone, though it waits in the same poll(2).
    #[test]
    fn a_thread_not_asked_is_not_parked_by_a_stray_signal() {
        if crate::testing::under_valgrind() {
            return; // threads refuse under valgrind: see a_call_in_poll_is_parked_...
        }
        let _serial = crate::testing::serial();
        let asked = Poller::start();
        let stray = Poller::start();
        let Seen::Polling(resume_at) = look_at(asked.tid) else {
            panic!("the thread left poll(2)");
        };
        let give_up = Instant::now() + Duration::from_secs(10);
        let parked = crate::fork_park::park(&[(asked.tid, resume_at)], give_up);
        let signal = crate::fork_park::signal().unwrap();
        // SAFETY: tgkill(2) takes plain integers; it sends our own signal to our own thread.
        unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), stray.tid, signal) };
        stray.answer();
        let stray_went_on = crate::testing::eventually(|| stray.returned());
        crate::fork_park::release();
        asked.finish();
        stray.finish();
        assert_eq!(parked, [true]);
        assert!(stray_went_on, "a thread the gate did not ask was parked");
    }

    /// A thread the signal finds anywhere but where the gate saw its poll(2) return to (it
    /// moved on in between) does not park, and goes on at once.
    #[test]
    fn a_thread_found_elsewhere_refuses_to_park() {
        let _serial = crate::testing::serial();
        let poller = Poller::start();
        let Seen::Polling(resume_at) = look_at(poller.tid) else {
            panic!("the thread left poll(2)");
        };
        let elsewhere = resume_at + 64;
        let give_up = Instant::now() + Duration::from_secs(10);
        let parked = crate::fork_park::park(&[(poller.tid, elsewhere)], give_up);
        poller.answer();
        let went_on = crate::testing::eventually(|| poller.returned());
        crate::fork_park::release();
        poller.finish();
        assert_eq!(parked, [false]);
        assert!(went_on, "a thread that refused stayed parked");
    }

    /// Where a program took the parking signal for a handler of its own, the gate does not
    /// send it (and works as it did without parking).
    #[test]
    fn no_thread_is_parked_once_the_signal_has_another_handler() {
        let _serial = crate::testing::serial();
        crate::resolver::install_fork_handlers();
        let signal = crate::fork_park::signal().expect("a parking signal is installed");
        let poller = Poller::start();
        // SAFETY: sigaction_t is plain data; this swaps the signal's action for "ignore",
        // keeping ours in `ours`, and puts ours back below.
        let ours = unsafe {
            let mut ignore: libc::sigaction = std::mem::zeroed();
            ignore.sa_sigaction = libc::SIG_IGN;
            let mut ours: libc::sigaction = std::mem::zeroed();
            assert_eq!(libc::sigaction(signal, &ignore, &mut ours), 0);
            ours
        };
        let started = Instant::now();
        close_for_fork();
        let waited = started.elapsed();
        poller.answer();
        let went_on = crate::testing::eventually(|| poller.returned());
        reopen_in_parent();
        // SAFETY: puts back the action read above.
        unsafe { libc::sigaction(signal, &ours, std::ptr::null_mut()) };
        poller.finish();
        assert!(went_on, "a thread was parked through another handler");
        assert!(
            waited < LONGEST_WAIT,
            "waited {waited:?}, for a reply to a signal sent through another handler?"
        );
        assert!(crate::fork_park::available());
    }

    /// A thread that blocks the parking signal is not sent it (it would never reply): the
    /// gate judges it as it did without parking.
    #[test]
    fn a_thread_that_blocks_the_signal_is_not_asked_to_park() {
        let _serial = crate::testing::serial();
        let poller = Poller::start_blocking_parking();
        let started = Instant::now();
        close_for_fork();
        let waited = started.elapsed();
        poller.answer();
        let went_on = crate::testing::eventually(|| poller.returned());
        reopen_in_parent();
        poller.finish();
        assert!(went_on, "a thread that blocks the signal was parked");
        assert!(
            waited < LONGEST_WAIT,
            "waited {waited:?}, for a reply to a blocked signal?"
        );
    }

    /// A real fork while a call is parked in poll(2): the child's gate is open and empty, so
    /// its own calls pass at once, and the parent's call goes on after the fork.
    #[test]
    fn a_forked_child_starts_with_an_open_empty_gate() {
        let _serial = crate::testing::serial();
        let poller = Poller::start();
        let child_ok = crate::testing::in_child(|| {
            let gate = GATE.try_lock();
            matches!(gate, Ok(ref gate) if !gate.closed && gate.inside.is_empty())
        });
        let parent_open = !lock().closed;
        poller.answer();
        let went_on = crate::testing::eventually(|| poller.returned());
        poller.finish();
        assert!(child_ok, "the child's gate was locked, closed or not empty");
        assert!(parent_open, "the parent's gate stayed closed");
        assert!(went_on, "the parent's call stayed parked");
    }

    /// Whether the gate, as held across a fork by this thread, lists thread `tid` inside.
    /// (Other tests of this binary may have calls of their own inside.)
    fn held_list_holds(tid: libc::pid_t) -> bool {
        HELD_FOR_FORK.with(|held| {
            let held = held.borrow();
            let gate = held.as_ref().expect("the gate is held for a fork");
            gate.inside.iter().any(|inside| inside.tid == tid)
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
                    sender.send(this_thread().0).unwrap();
                    while !release.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                })
            })
        };
        let tid = receiver.recv().unwrap();
        (inside, release, tid)
    }

    /// A thread inside the gate blocked in poll(2) on a pipe, polling again when a signal
    /// interrupts it (as glibc's resolver does), until a byte arrives.
    struct Poller {
        tid: libc::pid_t,
        returned: Arc<AtomicBool>,
        pipe: TestPipe,
        thread: std::thread::JoinHandle<()>,
    }

    impl Poller {
        fn start() -> Poller {
            Poller::start_with(false)
        }

        /// A poller whose thread blocks the parking signal.
        fn start_blocking_parking() -> Poller {
            Poller::start_with(true)
        }

        fn start_with(block_parking: bool) -> Poller {
            let pipe = TestPipe::new();
            let read = pipe.read;
            let returned = Arc::new(AtomicBool::new(false));
            let (sender, receiver) = std::sync::mpsc::channel();
            let thread = {
                let returned = returned.clone();
                std::thread::spawn(move || {
                    if block_parking {
                        crate::resolver::install_fork_handlers();
                        let signal = crate::fork_park::signal().unwrap();
                        // SAFETY: sigset_t is plain data, initialised by sigemptyset; this
                        // thread blocks one more signal.
                        unsafe {
                            let mut set: libc::sigset_t = std::mem::zeroed();
                            libc::sigemptyset(&mut set);
                            libc::sigaddset(&mut set, signal);
                            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                        }
                    }
                    sender.send(this_thread().0).unwrap();
                    pass(|| loop {
                        let mut fd = libc::pollfd {
                            fd: read,
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        // SAFETY: one valid pollfd; waits at most 30 s.
                        let polled = unsafe { libc::poll(&mut fd, 1, 30_000) };
                        let interrupted = polled < 0
                            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR);
                        if !interrupted {
                            returned.store(true, Ordering::SeqCst);
                            break;
                        }
                    });
                })
            };
            let tid = receiver.recv().unwrap();
            let poller = Poller {
                tid,
                returned,
                pipe,
                thread,
            };
            assert!(
                crate::testing::eventually(|| matches!(look_at(tid), Seen::Polling(_))),
                "the thread was not seen in poll(2)"
            );
            poller
        }

        /// Writes the byte its poll(2) waits for.
        fn answer(&self) {
            self.pipe.send();
        }

        /// Whether its poll(2) returned with the byte (or failed otherwise).
        fn returned(&self) -> bool {
            self.returned.load(Ordering::SeqCst)
        }

        /// Answers, waits for the thread, then closes the pipe (dropping it).
        fn finish(self) {
            self.answer();
            self.thread.join().unwrap();
        }
    }
}
