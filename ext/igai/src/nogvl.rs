//! The one place that releases the GVL: a safe wrapper around `rb_nogvl`.
//!
//! Ruby calls our unblocking function when it wants the waiting thread back (Thread#raise,
//! Thread#kill, Timeout, a signal). We declare it async-signal-safe (`RB_NOGVL_UBF_ASYNC_SAFE`)
//! because it is: it only calls [`Waker::interrupt`] (an atomic OR and a futex wake). Without
//! that flag MRI starts a helper Ruby thread for every call made while only the main thread
//! runs, which would cost more than a whole cached lookup.
//!
//! When the GVL comes back, `rb_nogvl` runs pending interrupts, which may raise or throw by
//! longjmp. We run it under `rb_protect`, so that the jump stops there: the frames it skips
//! (this module's closure and magnus's trampoline) own nothing, and the error comes back to us
//! as a `magnus::Error` that the caller returns after dropping what it holds.

use igai_core::wake::Waker;
use magnus::rb_sys::protect;
use magnus::Error;
use std::ffi::c_void;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// The state `rb_nogvl` hands to [`run_blocking`]: the closure, then its result or panic.
struct Blocking<F, R> {
    func: Option<F>,
    result: Option<std::thread::Result<R>>,
}

/// Runs `func` without the GVL. `waker` is interrupted when Ruby wants the thread back;
/// `func` must then return promptly. Returns `Err` when Ruby raised (or threw) as the GVL
/// came back; `func`'s result, if any, is dropped in that case. Returns `Ok(None)` if Ruby
/// handled interrupts without calling `func` (MRI never does so today; callers just retry).
pub fn without_gvl<F, R>(func: F, waker: Waker) -> Result<Option<R>, Error>
where
    F: FnOnce() -> R,
{
    let mut blocking = Blocking {
        func: Some(func),
        result: None,
    };
    let data = &mut blocking as *mut Blocking<F, R> as *mut c_void;
    protect(|| {
        // SAFETY: we hold the GVL (we were called from Ruby). `data` points at `blocking`,
        // which outlives the call; `run_blocking::<F, R>` casts it back to that very type.
        // `waker.into_raw()` is a pointer to a never-freed wake cell, valid whenever
        // `interrupt` calls it, even from a signal handler or after this call returns.
        unsafe {
            rb_sys::rb_nogvl(
                Some(run_blocking::<F, R>),
                data,
                Some(interrupt),
                waker.into_raw(),
                rb_sys::RB_NOGVL_UBF_ASYNC_SAFE as i32,
            );
        }
        rb_sys::Qnil as rb_sys::VALUE
    })?;
    match blocking.result {
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(panic)) => resume_unwind(panic),
        None => Ok(None),
    }
}

/// Runs the closure on the GVL-free side. A panic is caught and carried back, since it must
/// not unwind through Ruby's C frames.
extern "C" fn run_blocking<F, R>(data: *mut c_void) -> *mut c_void
where
    F: FnOnce() -> R,
{
    // SAFETY: `data` is the `Blocking<F, R>` that `without_gvl` passed to rb_nogvl, alive and
    // not otherwise accessed until rb_nogvl returns.
    let blocking = unsafe { &mut *(data as *mut Blocking<F, R>) };
    if let Some(func) = blocking.func.take() {
        blocking.result = Some(catch_unwind(AssertUnwindSafe(func)));
    }
    std::ptr::null_mut()
}

/// The unblocking function. Async-signal-safe: see the module docs.
extern "C" fn interrupt(data: *mut c_void) {
    // SAFETY: `data` is `waker.into_raw()` from `without_gvl`; wake cells are never freed.
    unsafe { Waker::from_raw(data) }.interrupt();
}
