//! Parking lookup threads that wait in poll(2) for the length of a fork.
//!
//! The fork gate ([`crate::fork_gate`]) lets `fork` go ahead while lookups wait on the network,
//! since glibc holds no lock while it waits in poll(2). But a DNS answer can arrive between the
//! gate's last look and the fork's copy of the address space; the lookup then leaves poll(2)
//! and may take a lock (`__check_pf`'s, to sort its answers) just as the copy is made, and the
//! child inherits that lock held for good. Parking closes that window: the prepare handler
//! sends each such thread a real-time signal, whose handler looks at where it interrupted the
//! thread and
//! - if it is the instruction just after the system call the gate saw the thread blocked in
//!   (so the thread has not run a single instruction of its own since, and holds no lock),
//!   reports "parked" and waits on a futex until the fork is over ([`release`]);
//! - anywhere else (the thread left poll(2) in the meantime), reports "refused" and returns
//!   at once, and the gate treats the thread as one doing local work.
//!
//! glibc's resolver meets an interrupted poll(2) with `EINTR` by polling again for the time
//! left, so a parked lookup loses only the fork's duration. The signal is the highest
//! real-time signal nobody handles when igai loads ([`install`]); workers leave it unblocked
//! (see [`crate::signals`]), and the gate checks before each fork that the handler is still
//! ours. Without it (another handler took the signal, an architecture we do not know), the
//! gate works as before, without parking.
//!
//! Everything the signal handler touches is an atomic or a system call: it is
//! async-signal-safe, and it saves and restores `errno`.

use std::sync::atomic::{AtomicI32, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// The most threads one fork can park; any beyond are treated as before parking existed.
const SLOTS: usize = 1024;

/// A thread the prepare handler asked to park: the session asking, its thread ID, the address
/// its system call returns to, and its reply.
struct Slot {
    session: AtomicU32,
    tid: AtomicI32,
    resume_at: AtomicUsize,
    reply: AtomicU32,
}

const ASKED: u32 = 0;
const PARKED: u32 = 1;
const REFUSED: u32 = 2;

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        session: AtomicU32::new(0),
        tid: AtomicI32::new(0),
        resume_at: AtomicUsize::new(0),
        reply: AtomicU32::new(ASKED),
    }
}; SLOTS];
/// Slots in use by the fork under way.
static USED: AtomicUsize = AtomicUsize::new(0);
/// Odd while a fork parks threads; parked threads wait (futex) until it changes.
static SESSION: AtomicU32 = AtomicU32::new(0);
/// The signal, or 0 when parking is not available.
static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Length of the instruction that enters the kernel: the kernel moves a thread back by it
/// when it restarts an interrupted system call.
#[cfg(target_arch = "x86_64")]
const SYSCALL_INSTRUCTION: usize = 2;
#[cfg(target_arch = "aarch64")]
const SYSCALL_INSTRUCTION: usize = 4;
/// Whether this architecture's interrupted address is known to us.
const KNOWN_ARCHITECTURE: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// Chooses the parking signal and installs its handler: the highest real-time signal whose
/// handler is the default. Called once per process, from `pthread_once`
/// (see [`crate::resolver::install_fork_handlers`]).
pub(crate) fn install() {
    if !KNOWN_ARCHITECTURE {
        return;
    }
    for signal in (libc::SIGRTMIN()..=libc::SIGRTMAX()).rev() {
        let Some(current) = handler_of(signal) else {
            continue;
        };
        if current == handler_address() {
            // Installed already, by a registration a fork interrupted (the child repeats it).
            SIGNAL.store(signal, Ordering::Release);
            return;
        }
        if current != libc::SIG_DFL {
            continue;
        }
        // SAFETY: the action is fully initialised: our handler (an `extern "C"` function of
        // the three-argument form SA_SIGINFO asks for), every signal blocked while it runs.
        let installed = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler_address();
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigfillset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
        };
        if installed {
            SIGNAL.store(signal, Ordering::Release);
            return;
        }
    }
}

/// The parking signal, if igai installed one (worker threads leave it unblocked).
pub fn signal() -> Option<libc::c_int> {
    match SIGNAL.load(Ordering::Acquire) {
        0 => None,
        signal => Some(signal),
    }
}

/// Whether parking can be used for this fork: a signal was installed and its handler is
/// still ours (a program may have taken the signal since).
pub(crate) fn available() -> bool {
    signal().and_then(handler_of) == Some(handler_address())
}

/// The handler `signal` has now (or SIG_DFL, SIG_IGN); None if it cannot be read.
fn handler_of(signal: libc::c_int) -> Option<libc::sighandler_t> {
    // SAFETY: sigaction_t is plain data; sigaction(2) with a null new action only reads the
    // current one into `current`.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        (libc::sigaction(signal, std::ptr::null(), &mut current) == 0)
            .then_some(current.sa_sigaction)
    }
}

/// Whether the calling thread would run the parking handler (does not block the signal).
pub(crate) fn accepted_by_this_thread() -> bool {
    let Some(signal) = signal() else {
        return false;
    };
    // SAFETY: sigset_t is plain data; pthread_sigmask with a null new set only reads the
    // calling thread's mask into `mask`, which sigismember then reads.
    unsafe {
        let mut mask: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut mask) == 0
            && libc::sigismember(&mask, signal) == 0
    }
}

/// Asks each thread of `threads` (thread ID, and the address its blocking system call
/// returns to, as `/proc` showed it) to park, and waits for their replies until `give_up`.
/// Returns, in the same order, whether each parked. Parked threads stay parked until
/// [`release`]. The caller must be the only one parking (the gate's lock serialises forks).
pub(crate) fn park(threads: &[(libc::pid_t, usize)], give_up: Instant) -> Vec<bool> {
    let Some(signal) = signal() else {
        return vec![false; threads.len()];
    };
    // Only the forking thread (one at a time, see `fork_gate`) changes the session.
    let mut session = SESSION.load(Ordering::Relaxed);
    if session % 2 == 0 {
        session = session.wrapping_add(1);
        SESSION.store(session, Ordering::Release);
    }
    let mut asked = Vec::with_capacity(threads.len());
    for &(tid, resume_at) in threads {
        let at = USED.load(Ordering::Relaxed);
        if at == SLOTS {
            asked.push(None);
            continue;
        }
        let slot = &TABLE[at];
        slot.session.store(session, Ordering::Relaxed);
        slot.tid.store(tid, Ordering::Relaxed);
        slot.resume_at.store(resume_at, Ordering::Relaxed);
        slot.reply.store(ASKED, Ordering::Relaxed);
        USED.store(at + 1, Ordering::Release);
        // SAFETY: tgkill(2) takes plain integers. It sends `signal`, whose handler is ours,
        // to thread `tid` of this process, or fails if that thread is gone. Should the thread
        // have moved on (or, after it ended, another have taken its ID), the handler finds it
        // away from `resume_at` and returns at once.
        let sent = unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, signal) == 0 };
        if sent {
            asked.push(Some(at));
        } else {
            slot.reply.store(REFUSED, Ordering::Relaxed);
            asked.push(None);
        }
    }
    let replied = |at: &Option<usize>| match at {
        Some(at) => TABLE[*at].reply.load(Ordering::Acquire) != ASKED,
        None => true,
    };
    while !asked.iter().all(replied) && Instant::now() < give_up {
        std::thread::sleep(Duration::from_micros(20));
    }
    asked
        .iter()
        .map(|at| matches!(at, Some(at) if TABLE[*at].reply.load(Ordering::Acquire) == PARKED))
        .collect()
}

/// Ends the parking session: parked threads go back to their poll(2). Called by the fork's
/// parent handler (and, where no parked thread exists, the child's).
pub(crate) fn release() {
    let session = SESSION.load(Ordering::Relaxed);
    if session % 2 == 1 {
        USED.store(0, Ordering::Relaxed);
        SESSION.store(session.wrapping_add(1), Ordering::Release);
        crate::wake::futex::wake(&SESSION);
    }
}

/// The address of [`on_park_signal`], as `sigaction` holds it.
fn handler_address() -> libc::sighandler_t {
    on_park_signal as *const () as libc::sighandler_t
}

/// The parking signal's handler (see the module's documentation).
extern "C" fn on_park_signal(
    _signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: __errno_location returns this thread's errno, valid for the thread's life.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above; the value is restored before returning.
    let saved_errno = unsafe { *errno };
    let session = SESSION.load(Ordering::Acquire);
    if session % 2 == 1 {
        // SAFETY: gettid(2) has no arguments and cannot fail.
        let tid = unsafe { libc::gettid() };
        let used = USED.load(Ordering::Acquire).min(SLOTS);
        if let Some(slot) = TABLE[..used].iter().rev().find(|slot| {
            slot.tid.load(Ordering::Relaxed) == tid
                && slot.session.load(Ordering::Relaxed) == session
        }) {
            // SAFETY: the kernel hands an SA_SIGINFO handler a valid ucontext_t.
            let at = unsafe { interrupted_at(context) };
            let resume_at = slot.resume_at.load(Ordering::Relaxed);
            if at_system_call_return(at, resume_at) {
                slot.reply.store(PARKED, Ordering::Release);
                while SESSION.load(Ordering::Acquire) == session {
                    crate::wake::futex::wait(&SESSION, session, None);
                }
            } else {
                slot.reply.store(REFUSED, Ordering::Release);
            }
        }
    }
    // SAFETY: restores this thread's errno, as read above.
    unsafe { *errno = saved_errno };
}

/// Whether a thread interrupted at `at` stands where a system call returning to
/// `resume_at` left it: just after the call, or just before it (the kernel restarts some
/// interrupted calls by moving the thread back over the instruction).
fn at_system_call_return(at: usize, resume_at: usize) -> bool {
    resume_at != 0 && (at == resume_at || at == resume_at.wrapping_sub(SYSCALL_INSTRUCTION))
}

/// The instruction address at which the signal interrupted the thread.
///
/// # Safety
/// `context` must be the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
#[cfg(target_arch = "x86_64")]
unsafe fn interrupted_at(context: *mut libc::c_void) -> usize {
    let context = &*context.cast::<libc::ucontext_t>();
    context.uc_mcontext.gregs[libc::REG_RIP as usize] as usize
}

/// The instruction address at which the signal interrupted the thread.
///
/// # Safety
/// `context` must be the `ucontext_t` the kernel passed to an SA_SIGINFO handler.
#[cfg(target_arch = "aarch64")]
unsafe fn interrupted_at(context: *mut libc::c_void) -> usize {
    let context = &*context.cast::<libc::ucontext_t>();
    context.uc_mcontext.pc as usize
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const SYSCALL_INSTRUCTION: usize = 0;

/// Never called: [`install`] installs nothing on other architectures.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn interrupted_at(_context: *mut libc::c_void) -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestPipe;

    /// A thread stands at its system call's return when it is exactly there, or one system
    /// call instruction before (a restarted call); nowhere else, and never for an unknown
    /// address.
    #[test]
    fn a_thread_is_at_its_system_call_return_only_there_or_just_before() {
        let resume_at = 0x7f00_0000_1234;
        assert!(at_system_call_return(resume_at, resume_at));
        assert!(at_system_call_return(
            resume_at - SYSCALL_INSTRUCTION,
            resume_at
        ));
        assert!(!at_system_call_return(resume_at + 1, resume_at));
        assert!(!at_system_call_return(resume_at - 1, resume_at));
        assert!(!at_system_call_return(0, 0));
    }

    /// A thread that refuses to park goes on as if the signal had not come: a system call it
    /// was blocked in (here read(2)) is restarted, not failed with EINTR.
    #[test]
    fn a_refusing_thread_goes_on_with_the_system_call_it_was_in() {
        let _serial = crate::testing::serial();
        crate::resolver::install_fork_handlers();
        let pipe = TestPipe::new();
        let read = pipe.read;
        let (sender, receiver) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            // SAFETY: gettid(2) has no arguments and cannot fail.
            sender.send(unsafe { libc::gettid() }).unwrap();
            TestPipe::read_byte(read)
        });
        let tid = receiver.recv().unwrap();
        let in_read = || {
            std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
                .is_ok_and(|text| text.starts_with(&format!("{} ", libc::SYS_read)))
        };
        assert!(
            crate::testing::eventually(in_read),
            "the thread never blocked in read(2)"
        );
        let give_up = Instant::now() + Duration::from_secs(10);
        let parked = park(&[(tid, 1)], give_up);
        release();
        pipe.send();
        let got = reader.join().unwrap();
        assert_eq!(parked, [false]);
        assert_eq!(got, 1, "the interrupted read(2) failed instead of going on");
    }

    /// A registration repeated (by a child forked while the first ran) keeps the signal the
    /// first chose, instead of taking a second one.
    #[test]
    fn installing_again_keeps_the_signal_already_installed() {
        // Not beside the gate's test that lends the signal to another handler.
        let _serial = crate::testing::serial();
        crate::resolver::install_fork_handlers();
        let chosen = signal().expect("a parking signal is installed");
        install();
        assert_eq!(signal(), Some(chosen));
        assert!(available());
    }
}
