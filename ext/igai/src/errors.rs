//! The exceptions igai raises, matching those of `Socket.getaddrinfo` on the running Ruby.
//!
//! Building an exception runs Ruby code (`SystemCallError.new`, `Socket::ResolutionError.new`),
//! which may itself raise. Each builder here runs under [`raw::protected`], so such a raise
//! comes back as the `Error` to raise instead of jumping over the caller's frames; callers
//! also drop what they hold from the pool (a `Ticket`, an `Arc<Answer>`) before calling.

use crate::args::socket_error;
use crate::raw;
use igai_core::addrinfo::{Call, LookupError};
use magnus::rb_sys::{AsRawValue, FromRawValue};
use magnus::{prelude::*, Error, Exception, ExceptionClass, RClass, Ruby, Value};
use std::ffi::CStr;

/// The exception for a failed lookup, as MRI raises it: "newline at the end of hostname" for
/// a host ending in "\n"; the `Errno` class of `errno` for `EAI_SYSTEM`; otherwise
/// `Socket::ResolutionError` with `#error_code` where the Ruby has it (3.3+), else
/// `SocketError`, with the message "getaddrinfo: <gai_strerror>".
pub fn lookup_error(ruby: &Ruby, error: LookupError, host_ends_in_newline: bool) -> Error {
    let reason = match error.call {
        Call::GetAddrInfo => GETADDRINFO,
        Call::GetNameInfo => GETNAMEINFO,
    };
    if error.call == Call::GetAddrInfo && host_ends_in_newline {
        return match socket_error(ruby) {
            Ok(class) => Error::new(class, "newline at the end of hostname"),
            Err(e) => e,
        };
    }
    if error.code == libc::EAI_SYSTEM && error.errno != 0 {
        return system_error(error.errno, reason);
    }
    resolution_error(ruby, &reason.to_string_lossy(), error.code).unwrap_or_else(|e| e)
}

fn resolution_error(ruby: &Ruby, reason: &str, code: i32) -> Result<Error, Error> {
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated message.
    let text = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }.to_string_lossy();
    let message = format!("{reason}: {text}");
    let socket: RClass = ruby.class_object().const_get("Socket")?;
    let defined: bool = socket.funcall("const_defined?", ("ResolutionError", false))?;
    if !defined {
        return Ok(Error::new(socket_error(ruby)?, message));
    }
    let class: ExceptionClass = socket.const_get("ResolutionError")?;
    let exception: Exception = class.new_instance((message,))?;
    // MRI keeps the code in an instance variable without "@" (invisible to Ruby code) that
    // `#error_code` reads; only the C API can set such a variable.
    raw::protected(|| {
        // SAFETY: GVL held; `exception` is a live object; the name is NUL-terminated and
        // static. rb_int2inum may raise NoMemoryError: we are under protect, and this
        // closure owns nothing.
        unsafe {
            rb_sys::rb_ivar_set(
                exception.as_raw(),
                rb_sys::rb_intern(raw::cstr(b"error_code\0").as_ptr()),
                rb_sys::rb_int2inum(code as isize),
            );
        }
        Ok(())
    })?;
    Ok(exception.into())
}

const USER_TIMEOUT: &CStr = raw::cstr(b"user specified timeout\0");
const NO_THREAD: &CStr =
    raw::cstr(b"igai could not start a lookup thread, and none is running to take the lookup\0");
const GETADDRINFO: &CStr = raw::cstr(b"getaddrinfo\0");
const GETNAMEINFO: &CStr = raw::cstr(b"getnameinfo\0");

/// `Errno::ETIMEDOUT` "user specified timeout", as MRI raises for `timeout:`.
pub fn user_timeout() -> Error {
    system_error(libc::ETIMEDOUT, USER_TIMEOUT)
}

/// The `Errno` exception for a thread that could not be started while none is running.
pub fn no_thread(errno: Option<i32>) -> Error {
    system_error(errno.unwrap_or(libc::EAGAIN), NO_THREAD)
}

/// A bug in igai: a lookup thread panicked. Reported, never hidden as a resolution failure.
pub fn panicked(ruby: &Ruby) -> Error {
    Error::new(
        ruby.exception_runtime_error(),
        "igai: a lookup thread panicked (this is a bug in igai)",
    )
}

/// `SystemCallError.new(reason, errno)`: the right `Errno::*` class, message "<strerror> - reason".
fn system_error(errno: i32, reason: &'static CStr) -> Error {
    raw::protected(|| {
        // SAFETY: GVL held; rb_syserr_new builds an exception from a static NUL-terminated
        // message. It runs Ruby code that may raise: we are under protect, and this closure
        // owns nothing.
        let raw = unsafe { rb_sys::rb_syserr_new(errno, reason.as_ptr()) };
        // SAFETY: `raw` is the live exception just created.
        let value = unsafe { Value::from_raw(raw) };
        Ok(Exception::from_value(value).expect("rb_syserr_new returns an exception"))
    })
    .map_or_else(|error| error, Error::from)
}
