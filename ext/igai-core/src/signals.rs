//! Keeping signals away from our own threads.
//!
//! A process-directed signal goes to any thread that does not block it. Worker threads must
//! never receive one: Ruby's handler expects to interrupt a Ruby thread, and a lookup stuck in
//! getaddrinfo(3) has nothing useful to do with it. A new thread inherits its creator's mask,
//! so [`BlockedSignals`] blocks everything around the spawn and restores the mask after;
//! everything but igai's own parking signal, which the fork gate sends a worker waiting in
//! poll(2) (see [`crate::fork_park`]).

/// Blocks all signals in the current thread until dropped, then restores the previous mask.
pub struct BlockedSignals {
    previous: libc::sigset_t,
}

impl BlockedSignals {
    /// Blocks every blockable signal in the calling thread but the parking signal.
    pub fn block_all_but_parking() -> Self {
        // SAFETY: sigset_t is plain data; sigfillset initialises `all`, sigdelset takes one
        // signal out of it (a valid one, or it fails harmlessly), and pthread_sigmask writes
        // the old mask into `previous`, which then is fully initialised.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            if let Some(parking) = crate::fork_park::signal() {
                libc::sigdelset(&mut all, parking);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            BlockedSignals { previous }
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: `previous` is the mask pthread_sigmask returned in `block_all_but_parking`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}
