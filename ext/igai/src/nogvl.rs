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
    let released = protect(|| {
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
    });
    if let Err(error) = released {
        reset_async_safe_flag();
        return Err(error);
    }
    match blocking.result {
        Some(Ok(value)) => Ok(Some(value)),
        Some(Err(panic)) => resume_unwind(panic),
        None => Ok(None),
    }
}

/// Clears MRI's `vm->ubf_async_safe` after `rb_nogvl` raised.
///
/// For the main thread, when it is the only thread, `rb_nogvl` with `RB_NOGVL_UBF_ASYNC_SAFE`
/// sets `vm->ubf_async_safe` *before* its blocking region and clears it after. But entering
/// the region runs pending interrupts first (`unblock_function_set` calls
/// `RUBY_VM_CHECK_INTS` unless `RB_NOGVL_INTR_FAIL` is given), and an interrupt already pending
/// then raises out of `rb_nogvl` with the flag still set (MRI 3.1 to 3.4 alike). While it stays
/// set, MRI's signal handler calls whatever unblocking function the main thread has registered
/// from inside the handler, including MRI's own ones that take locks and are not
/// async-signal-safe (`sleep`'s, an IO wait's), until the next `rb_nogvl` completes.
///
/// A second `rb_nogvl` with `RB_NOGVL_INTR_FAIL` and no unblocking function is harmless and
/// clears the flag: it sets nothing (no unblocking function), it does not run interrupts (it
/// skips its empty region if one is pending, and `INTR_FAIL` also skips the check after it),
/// so it cannot raise, and its unconditional `vm->ubf_async_safe = 0` for the main thread runs.
/// It only costs a GVL release on the error path; we cannot tell whether the raise came before
/// or after the region, and after it the flag is already clear, so this is also harmless.
fn reset_async_safe_flag() {
    extern "C" fn nothing(_: *mut c_void) -> *mut c_void {
        std::ptr::null_mut()
    }
    // SAFETY: GVL held (we are back from rb_nogvl's raise, under our caller's Ruby call);
    // `nothing` touches no data; with RB_NOGVL_INTR_FAIL rb_nogvl runs no interrupts, so it
    // returns normally.
    unsafe {
        rb_sys::rb_nogvl(
            Some(nothing),
            std::ptr::null_mut(),
            None,
            std::ptr::null_mut(),
            rb_sys::RB_NOGVL_INTR_FAIL as i32,
        );
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
