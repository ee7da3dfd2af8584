//! Keeping signals away from our own threads.
//!
//! A process-directed signal goes to any thread that does not block it. Worker threads must
//! never receive one: Ruby's handler expects to interrupt a Ruby thread, and a lookup stuck in
//! getaddrinfo(3) has nothing useful to do with it. A new thread inherits its creator's mask,
//! so [`BlockedSignals`] blocks everything around the spawn and restores the mask after.

/// Blocks all signals in the current thread until dropped, then restores the previous mask.
pub struct BlockedSignals {
    previous: libc::sigset_t,
}

impl BlockedSignals {
    /// Blocks every blockable signal in the calling thread.
    pub fn block_all() -> Self {
        // SAFETY: sigset_t is plain data; sigfillset initialises `all`, and pthread_sigmask
        // writes the old mask into `previous`, which then is fully initialised.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            BlockedSignals { previous }
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: `previous` is the mask pthread_sigmask returned in `block_all`.
        unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut());
        }
    }
}
