//! A value each process makes for itself: created on first use, published once and never
//! freed, and forgotten (not freed) in a forked child, where a thread of the parent that did
//! not come along may have been using it (holding its lock, say). Forgetting is one atomic
//! store, fit for a `pthread_atfork` child handler; the child's first use makes a new value,
//! and the parent's copy stays allocated: a bounded, one-off leak per fork.

use std::sync::atomic::{AtomicPtr, Ordering};

/// See the module documentation. Meant for `static`s.
#[derive(Debug)]
pub struct ForkLocal<T> {
    current: AtomicPtr<T>,
}

impl<T> ForkLocal<T> {
    /// Empty: the first [`get_or_make`](ForkLocal::get_or_make) makes the value.
    pub const fn new() -> Self {
        ForkLocal {
            current: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This process's value, made by `make` if there is none yet. Racing first uses may each
    /// make one; one is published and the others are dropped unseen.
    pub fn get_or_make(&self, make: impl FnOnce() -> T) -> &T {
        let current = self.current.load(Ordering::Acquire);
        if !current.is_null() {
            // SAFETY: `current` only ever holds pointers from Box::into_raw below that are
            // never freed once published.
            return unsafe { &*current };
        }
        let fresh = Box::into_raw(Box::new(make()));
        match self.current.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            // SAFETY: `fresh` is now published and, like every published value, never freed.
            Ok(_) => unsafe { &*fresh },
            Err(existing) => {
                // SAFETY: `fresh` came from Box::into_raw above and nobody else has seen it.
                drop(unsafe { Box::from_raw(fresh) });
                // SAFETY: a published value is never freed.
                unsafe { &*existing }
            }
        }
    }

    /// Forgets the value without freeing it (async-signal-safe: one atomic store), so that
    /// the next use makes a new one.
    pub fn forget(&self) {
        self.current.store(std::ptr::null_mut(), Ordering::Release);
    }

    /// Whether a value has been made since the start or the last [`forget`](ForkLocal::forget).
    pub fn is_made(&self) -> bool {
        !self.current.load(Ordering::Acquire).is_null()
    }
}

impl<T> Default for ForkLocal<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_made_once_and_again_after_being_forgotten() {
        static VALUE: ForkLocal<u32> = ForkLocal::new();
        assert!(!VALUE.is_made());
        assert_eq!(*VALUE.get_or_make(|| 1), 1);
        assert!(VALUE.is_made());
        assert_eq!(*VALUE.get_or_make(|| 2), 1, "made once");
        let first: *const u32 = VALUE.get_or_make(|| 3);
        VALUE.forget();
        assert!(!VALUE.is_made());
        assert_eq!(*VALUE.get_or_make(|| 4), 4);
        // SAFETY: the forgotten value is never freed, so its pointer is still valid.
        assert_eq!(unsafe { *first }, 1);
        // SAFETY: `first` came from Box::into_raw in get_or_make and was forgotten: nothing
        // else refers to it, and this frees it once (so memcheck sees no leak in the test).
        drop(unsafe { Box::from_raw(first.cast_mut()) });
    }

    #[test]
    fn racing_first_uses_all_get_the_one_published_value() {
        static VALUE: ForkLocal<usize> = ForkLocal::new();
        let seen: Vec<usize> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| scope.spawn(move || *VALUE.get_or_make(|| i)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(seen.iter().all(|&value| value == seen[0]), "{seen:?}");
    }
}
