//! The exceptions igai raises, matching those of `Socket.getaddrinfo` on the running Ruby.

use crate::args::socket_error;
use igai_core::lookup::{Call, LookupError};
use magnus::error::ErrorType;
use magnus::rb_sys::{AsRawValue, FromRawValue};
use magnus::{prelude::*, Error, Exception, ExceptionClass, RClass, Ruby, Value};
use std::ffi::{CStr, CString};

/// The exception for a failed lookup, as MRI raises it: "newline at the end of hostname" for
/// a host ending in "\n"; the `Errno` class of `errno` for `EAI_SYSTEM`; otherwise
/// `Socket::ResolutionError` with `#error_code` where the Ruby has it (3.3+), else
/// `SocketError`, with the message "getaddrinfo: <gai_strerror>".
pub fn lookup_error(ruby: &Ruby, error: LookupError, host_ends_in_newline: bool) -> Error {
    let reason = match error.call {
        Call::GetAddrInfo => "getaddrinfo",
        Call::GetNameInfo => "getnameinfo",
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
    resolution_error(ruby, reason, error.code).unwrap_or_else(|e| e)
}

/// `Igai::Native.resolution_error(code)`: the exception `Socket.getaddrinfo` raises when
/// getaddrinfo(3) fails with `code` (an `EAI_*` value), built but not raised. igai/replace
/// raises it for `Socket::EAI_AGAIN` when its process-wide limit runs out.
pub fn resolution_error_for(ruby: &Ruby, code: i32) -> Result<Exception, Error> {
    let error = resolution_error(ruby, "getaddrinfo", code)?;
    match error.error_type() {
        ErrorType::Exception(exception) => Ok(*exception),
        _ => Err(error),
    }
}

fn resolution_error(ruby: &Ruby, reason: &str, code: i32) -> Result<Error, Error> {
    // SAFETY: gai_strerror returns a pointer to a static NUL-terminated message.
    let text = unsafe { CStr::from_ptr(libc::gai_strerror(code)) }.to_string_lossy();
    let message = format!("{reason}: {text}");
    let socket: RClass = ruby.class_object().const_get("Socket")?;
    let defined: bool = socket.funcall("const_defined?", ("ResolutionError", false))?;
    if !defined {
        let exception: Exception = socket_error(ruby)?.new_instance((message,))?;
        return Ok(exception.into());
    }
    let class: ExceptionClass = socket.const_get("ResolutionError")?;
    let exception: Exception = class.new_instance((message,))?;
    // MRI keeps the code in an instance variable without "@" (invisible to Ruby code) that
    // `#error_code` reads; only the C API can set such a variable.
    let name = CString::new("error_code").expect("no NUL");
    // SAFETY: GVL held; `exception` is a live object; rb_intern takes a NUL-terminated name.
    unsafe {
        rb_sys::rb_ivar_set(
            exception.as_raw(),
            rb_sys::rb_intern(name.as_ptr()),
            rb_sys::rb_int2inum(code as isize),
        );
    }
    Ok(exception.into())
}

/// `Errno::ETIMEDOUT` "user specified timeout", as MRI raises for `timeout:`.
pub fn user_timeout() -> Error {
    system_error(libc::ETIMEDOUT, "user specified timeout")
}

/// The `Errno` exception for a thread that could not be started while none is running.
pub fn no_thread(error: &std::io::Error) -> Error {
    system_error(
        error.raw_os_error().unwrap_or(libc::EAGAIN),
        "igai could not start a lookup thread, and none is running to take the lookup",
    )
}

/// A bug in igai: a lookup thread panicked. Reported, never hidden as a resolution failure.
pub fn panicked(ruby: &Ruby) -> Error {
    Error::new(
        ruby.exception_runtime_error(),
        "igai: a lookup thread panicked (this is a bug in igai)",
    )
}

/// `SystemCallError.new(reason, errno)`: the right `Errno::*` class, message "<strerror> - reason".
fn system_error(errno: i32, reason: &str) -> Error {
    let reason = CString::new(reason).expect("reasons have no NUL");
    // SAFETY: GVL held; rb_syserr_new builds (does not raise) an exception from a
    // NUL-terminated message.
    let raw = unsafe { rb_sys::rb_syserr_new(errno, reason.as_ptr()) };
    // SAFETY: `raw` is the live exception just created.
    let value = unsafe { Value::from_raw(raw) };
    Exception::from_value(value)
        .expect("rb_syserr_new returns an exception")
        .into()
}
