//! The exceptions igai raises, matching those of `Socket.getaddrinfo` on the running Ruby.
//!
//! Building an exception runs Ruby code (`SystemCallError.new`, `Socket::ResolutionError.new`),
//! which may itself raise. Each builder here either calls only magnus functions that return
//! a raise as `Err`, or runs under [`raw::protected`], so such a raise comes back as the
//! `Error` to raise instead of jumping over the caller's frames; callers also drop what they
//! hold from the pool (a `Ticket`, an `Arc<Answer>`) before calling.
//!
//! The classes are looked up once ([`Lazy`]); classes are shareable between Ractors.

use crate::raw;
use igai_core::addrinfo::{Call, LookupError};
use magnus::rb_sys::FromRawValue;
use magnus::value::{Lazy, LazyId};
use magnus::{prelude::*, Error, Exception, ExceptionClass, RClass, RObject, Ruby, Value};
use std::ffi::CStr;

/// `SocketError`.
static SOCKET_ERROR: Lazy<ExceptionClass> = Lazy::new(|ruby| {
    ruby.class_object()
        .const_get("SocketError")
        .expect("require \"socket\" defines SocketError")
});

/// `Socket::ResolutionError` where the Ruby has it (3.3+), else nil.
static RESOLUTION_ERROR: Lazy<Value> = Lazy::new(|ruby| {
    let socket: RClass = ruby
        .class_object()
        .const_get("Socket")
        .expect("require \"socket\" defines Socket");
    let defined: bool = socket
        .funcall("const_defined?", ("ResolutionError", false))
        .unwrap_or(false);
    if defined {
        socket
            .const_get("ResolutionError")
            .expect("a defined constant")
    } else {
        ruby.qnil().as_value()
    }
});

/// Where MRI keeps a `Socket::ResolutionError`'s code: an instance variable without "@"
/// (invisible to Ruby code) that `#error_code` reads.
static ERROR_CODE: LazyId = LazyId::new("error_code");

const USER_TIMEOUT: &CStr = raw::cstr(b"user specified timeout\0");
const NO_THREAD: &CStr =
    raw::cstr(b"igai could not start a lookup thread, and none is running to take the lookup\0");
const GETADDRINFO: &CStr = raw::cstr(b"getaddrinfo\0");
const GETNAMEINFO: &CStr = raw::cstr(b"getnameinfo\0");

/// Sets the lazy statics above while the extension loads (in the main Ractor): see
/// `args::load_statics` for why.
pub fn load_statics(ruby: &Ruby) {
    ruby.get_inner(&SOCKET_ERROR);
    ruby.get_inner(&RESOLUTION_ERROR);
    LazyId::force(&ERROR_CODE, ruby);
}

/// `SocketError`, the class of igai's own argument errors that MRI raises as such.
pub fn socket_error(ruby: &Ruby) -> ExceptionClass {
    ruby.get_inner(&SOCKET_ERROR)
}

/// The exception for a failed lookup, as MRI raises it: "newline at the end of hostname" for
/// a host ending in "\n"; the `Errno` class of `errno` for `EAI_SYSTEM`; otherwise
/// `Socket::ResolutionError` with `#error_code` where the Ruby has it (3.3+), else
/// `SocketError`, with the message "getaddrinfo: <gai_strerror>".
pub fn lookup_error(ruby: &Ruby, error: LookupError, host_ends_in_newline: bool) -> Error {
    if error.call == Call::GetAddrInfo && host_ends_in_newline {
        return Error::new(socket_error(ruby), "newline at the end of hostname");
    }
    if error.code == libc::EAI_SYSTEM && error.errno != 0 {
        let call = match error.call {
            Call::GetAddrInfo => GETADDRINFO,
            Call::GetNameInfo => GETNAMEINFO,
        };
        return system_error(error.errno, call);
    }
    match resolution_error(ruby, error) {
        Ok(exception) => exception.into(),
        Err(raised) => raised,
    }
}

/// `Igai::Native.resolution_error(code)`: the exception `Socket.getaddrinfo` raises when
/// getaddrinfo(3) fails with `code` (an `EAI_*` value), built but not raised. igai/replace
/// raises it for `Socket::EAI_AGAIN` when its process-wide limit runs out.
pub fn resolution_error_for(ruby: &Ruby, code: i32) -> Result<Exception, Error> {
    let error = LookupError {
        call: Call::GetAddrInfo,
        code,
        errno: 0,
    };
    resolution_error(ruby, error)
}

/// The exception for `error`, built but not raised: `Socket::ResolutionError` with
/// `#error_code` where the Ruby has it (3.3+), else `SocketError`; message "getaddrinfo:
/// <gai_strerror>". An `Err` is what Ruby raised while building it.
fn resolution_error(ruby: &Ruby, error: LookupError) -> Result<Exception, Error> {
    let Some(class) = ExceptionClass::from_value(ruby.get_inner(&RESOLUTION_ERROR)) else {
        return socket_error(ruby).new_instance((error.to_string(),));
    };
    let exception: Exception = class.new_instance((error.to_string(),))?;
    let object = RObject::from_value(exception.as_value()).expect("exceptions are T_OBJECT");
    object.ivar_set(*ERROR_CODE, error.code)?;
    Ok(exception)
}

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

/// MRI's `rb_syserr_new(errno, reason)`: an instance of the right `Errno::*` class (made with
/// that class's `new`, as MRI does), message "<strerror> - reason".
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
    .map_or_else(|raised| raised, Error::from)
}
