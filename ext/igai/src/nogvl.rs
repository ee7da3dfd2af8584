//! The one place that releases the GVL: a safe wrapper around `rb_nogvl`.
//!
//! Ruby calls our unblocking function when it wants the waiting thread back (Thread#raise,
//! Thread#kill, Timeout, a signal). We declare it async-signal-safe (`RB_NOGVL_UBF_ASYNC_SAFE`)
//! because it is: it only calls [`Waker::interrupt`] (an atomic OR and a futex wake). Without
//! that flag MRI starts a helper Ruby thread for every call made while only the main thread
//! runs, which would cost more than a whole cached lookup.
//!
//! `rb_nogvl` itself runs no Ruby code here (`RB_NOGVL_INTR_FAIL`: with an interrupt pending it
//! skips the region, and it checks none afterwards). We run pending interrupts ourselves, with
//! `rb_thread_check_ints` once `rb_nogvl` has returned, under `rb_protect`: a raise or throw
//! (a longjmp) stops there, skipping frames that own nothing, and comes back to us as a
//! `magnus::Error` that the caller returns after dropping what it holds.
//!
//! Why not let `rb_nogvl` run them: for the main thread, when it is the only thread, `rb_nogvl`
//! with `RB_NOGVL_UBF_ASYNC_SAFE` sets MRI's `vm->ubf_async_safe` *before* it checks interrupts
//! on the way into its region and clears it only after the region. A trap handler run by that
//! check (a signal already pending) would run arbitrary Ruby with the flag set, and while it is
//! set MRI's signal handler calls the main thread's unblocking function from inside the handler,
//! including MRI's own ones that take locks and are not async-signal-safe (`sleep`'s, an IO
//! wait's): a second signal during a trap handler's IO could deadlock the process. With
//! `RB_NOGVL_INTR_FAIL` the flag is set only across our own region, whose unblocking function
//! is async-signal-safe, and Ruby code only ever runs with it clear.

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
/// `func` must then return promptly. Then runs Ruby's pending interrupts (trap handlers,
/// Thread#raise, Thread#kill). Returns `Err` when one raised (or threw); `func`'s result, if
/// any, is dropped in that case. Returns `Ok(None)` if an interrupt was already pending, so
/// `func` was not called (callers just call again).
pub fn without_gvl<F, R>(func: F, waker: Waker) -> Result<Option<R>, Error>
where
    F: FnOnce() -> R,
{
    let mut blocking = Blocking {
        func: Some(func),
        result: None,
    };
    let data = &mut blocking as *mut Blocking<F, R> as *mut c_void;
    // SAFETY: we hold the GVL (we were called from Ruby). `data` points at `blocking`, which
    // outlives the call; `run_blocking::<F, R>` casts it back to that very type.
    // `waker.into_raw()` is a pointer to a never-freed wake cell, valid whenever `interrupt`
    // calls it, even from a signal handler or after this call returns. With
    // RB_NOGVL_INTR_FAIL, rb_nogvl runs no interrupts, so it returns normally (no longjmp
    // over this frame).
    unsafe {
        rb_sys::rb_nogvl(
            Some(run_blocking::<F, R>),
            data,
            Some(interrupt),
            waker.into_raw(),
            (rb_sys::RB_NOGVL_INTR_FAIL | rb_sys::RB_NOGVL_UBF_ASYNC_SAFE) as i32,
        );
    }
    protect(|| {
        // SAFETY: GVL held; runs pending interrupts, which may raise: `protect` catches that.
        unsafe { rb_sys::rb_thread_check_ints() };
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
