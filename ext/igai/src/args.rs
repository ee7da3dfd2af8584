//! Argument conversion for `Socket.interruptible_getaddrinfo`, with the order, results and
//! errors of MRI's `Socket.getaddrinfo` (ext/socket's `host_str`, `port_str` and
//! `rsock_revlookup_flag`; `constant_arg` lives in `constants`), and of time intervals. Where MRI calls a conversion function of Ruby's C API that may
//! raise, we call the same function under `rb_protect`, so the exception is Ruby's own.

use crate::{constants, raw};
use igai_core::addrinfo::Hints;
use magnus::rb_sys::{protect, AsRawValue};
use magnus::{
    prelude::*,
    value::{Lazy, LazyId},
    Error, Fixnum, RClass, RString, Ruby, Value,
};
use std::ffi::{CStr, CString};
use std::net::Ipv4Addr;
use std::os::raw::c_int;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// MRI's host buffer (NI_MAXHOST): a host name must be shorter.
const HOST_MAX: usize = 1025;
/// MRI's service buffer (NI_MAXSERV): a service name must be shorter.
const SERVICE_MAX: usize = 32;

/// Splits the arguments of a method called with `min..=max` positional arguments and an
/// optional `timeout:` keyword, as a Ruby method `def m(a, b, c = nil, ..., timeout: nil)`
/// would take them, with the same errors: ArgumentError "wrong number of arguments (given
/// 1, expected 2..7)" and "unknown keyword: :x" (MRI's `rb_error_arity` and
/// `rb_get_kwargs` raise them). Keywords are only what the caller passed as keywords: a
/// trailing Hash given positionally stays positional, as in a Ruby method. `timeout` is nil
/// when not given.
pub fn positional_and_timeout(
    args: &[Value],
    min: usize,
    max: usize,
) -> Result<(&[Value], Value), Error> {
    // SAFETY: GVL held; we are inside a method call made from Ruby (a C frame of our own),
    // whose keyword flag rb_keyword_given_p reads.
    let keywords = unsafe { rb_sys::rb_keyword_given_p() } != 0;
    let (positional, options) = match args.split_last() {
        Some((last, rest)) if keywords => (rest, Some(*last)),
        _ => (args, None),
    };
    if !(min..=max).contains(&positional.len()) {
        protect(|| {
            // SAFETY: GVL held; rb_error_arity always raises the ArgumentError (under protect).
            unsafe { rb_sys::rb_error_arity(positional.len() as c_int, min as c_int, max as c_int) }
        })?;
    }
    let Some(options) = options else {
        return Ok((positional, raw::value(rb_sys::Qnil as rb_sys::VALUE)));
    };
    // The usual case, `timeout:` alone, read directly; anything else goes to rb_get_kwargs,
    // which raises for unknown keywords.
    // SAFETY: GVL held; `options` is the keyword Hash Ruby made for this call. Looking up a
    // static Symbol key hashes it without calling Ruby code.
    let only_timeout = unsafe {
        if rb_sys::rb_hash_size_num(options.as_raw()) == 1 {
            rb_sys::rb_hash_lookup2(
                options.as_raw(),
                rb_sys::rb_id2sym(timeout_id()),
                rb_sys::Qundef as rb_sys::VALUE,
            )
        } else {
            rb_sys::Qundef as rb_sys::VALUE
        }
    };
    if only_timeout != rb_sys::Qundef as rb_sys::VALUE {
        return Ok((positional, raw::value(only_timeout)));
    }
    let table = [timeout_id()];
    let mut values = [rb_sys::Qundef as rb_sys::VALUE];
    protect(|| {
        // SAFETY: GVL held; `options` is the keyword Hash Ruby made for this call (a fresh
        // one: rb_get_kwargs may delete from it). `table` and `values` are one element each,
        // as `optional` = 1 says; it raises ArgumentError for any other key.
        unsafe {
            rb_sys::rb_get_kwargs(options.as_raw(), table.as_ptr(), 0, 1, values.as_mut_ptr())
        };
        rb_sys::Qnil as rb_sys::VALUE
    })?;
    let timeout = if values[0] == rb_sys::Qundef as rb_sys::VALUE {
        rb_sys::Qnil as rb_sys::VALUE
    } else {
        values[0]
    };
    Ok((positional, raw::value(timeout)))
}

/// The ID of `timeout`, interned once.
fn timeout_id() -> rb_sys::ID {
    static ID: OnceLock<rb_sys::ID> = OnceLock::new();
    *ID.get_or_init(|| raw::intern("timeout"))
}

/// Builds the hints from `family`, `socktype`, `protocol` and `flags` (each may be nil).
pub fn hints(
    ruby: &Ruby,
    family: Value,
    socktype: Value,
    protocol: Value,
    flags: Value,
) -> Result<Hints, Error> {
    let mut hints = Hints::default();
    if !family.is_nil() {
        hints.family = constants::family(ruby, family)?;
    }
    if !socktype.is_nil() {
        hints.socktype = constants::socktype(ruby, socktype)?;
    }
    if !protocol.is_nil() {
        hints.protocol = num_to_int(protocol)?;
    }
    if !flags.is_nil() {
        hints.flags = num_to_int(flags)?;
    }
    Ok(hints)
}

/// `BasicSocket`, looked up once.
static BASIC_SOCKET: Lazy<RClass> = Lazy::new(|ruby| {
    ruby.class_object()
        .const_get("BasicSocket")
        .expect("require \"socket\" defines BasicSocket")
});

static DO_NOT_REVERSE_LOOKUP: LazyId = LazyId::new("do_not_reverse_lookup");

/// Sets the lazy statics of this module while the extension loads (in the main Ractor).
/// Their first use would otherwise call Ruby inside a `std::sync::Once`, and two Ractors
/// doing so at once could deadlock: one blocked in the Once, where Ruby's GC cannot stop it,
/// while the other waits inside it for a GC.
pub fn load_statics(ruby: &Ruby) {
    ruby.get_inner(&BASIC_SOCKET);
    LazyId::force(&DO_NOT_REVERSE_LOOKUP, ruby);
    timeout_id();
}

/// Whether to look up host names for the addresses: `true`/`:hostname` yes, `false`/`:numeric`
/// no, nil the default (`!BasicSocket.do_not_reverse_lookup`).
pub fn reverse_lookup(ruby: &Ruby, value: Value) -> Result<bool, Error> {
    if value.is_nil() {
        let basic_socket = ruby.get_inner(&BASIC_SOCKET);
        let no_reverse: bool = basic_socket.funcall(*DO_NOT_REVERSE_LOOKUP, ())?;
        return Ok(!no_reverse);
    }
    if value.as_raw() == ruby.qtrue().as_raw() {
        return Ok(true);
    }
    if value.as_raw() == ruby.qfalse().as_raw() {
        return Ok(false);
    }
    protect(|| {
        // SAFETY: GVL held; rb_check_type only inspects `value` and raises TypeError
        // ("wrong argument type X (expected Symbol)") as MRI's Check_Type does.
        unsafe {
            rb_sys::rb_check_type(
                value.as_raw(),
                rb_sys::ruby_value_type::RUBY_T_SYMBOL as c_int,
            )
        };
        ruby.qnil().as_raw()
    })?;
    // Compared by ID, as MRI does: `:"numeric\0"` is another symbol than `:numeric`.
    // SAFETY: GVL held; `value` is a Symbol (checked above); rb_sym2id returns its ID.
    let id = unsafe { rb_sys::rb_sym2id(value.as_raw()) };
    if id == raw::intern("numeric") {
        return Ok(false);
    }
    if id == raw::intern("hostname") {
        return Ok(true);
    }
    // SAFETY: GVL held; rb_id2name returns the symbol's name as a C string (it stops at a NUL
    // inside the name, as MRI's message does), valid while the ID lives (it is pinned now).
    let name = unsafe { CStr::from_ptr(rb_sys::rb_id2name(id)) };
    Err(Error::new(
        ruby.exception_arg_error(),
        format!("invalid reverse_lookup flag: :{}", name.to_string_lossy()),
    ))
}

/// Converts the host like MRI's `host_str`, adding `AI_NUMERICHOST` to `flags` where MRI does.
/// nil is no host; an Integer is an IPv4 address; "" and "<any>" are 0.0.0.0;
/// "<broadcast>" is 255.255.255.255.
pub fn host(ruby: &Ruby, host: Value, flags: &mut c_int) -> Result<Option<CString>, Error> {
    if host.is_nil() {
        return Ok(None);
    }
    if host.is_kind_of(ruby.class_integer()) {
        let mut number = 0;
        protect(|| {
            // SAFETY: GVL held; rb_num2uint raises RangeError for values out of range.
            number = unsafe { rb_sys::rb_num2uint(host.as_raw()) } as u32;
            ruby.qnil().as_raw()
        })?;
        *flags |= libc::AI_NUMERICHOST;
        return Ok(Some(dotted(Ipv4Addr::from(number))));
    }
    let name = string_value_cstr(host)?;
    match name.as_slice() {
        b"" | b"<any>" => {
            *flags |= libc::AI_NUMERICHOST;
            Ok(Some(dotted(Ipv4Addr::UNSPECIFIED)))
        }
        b"<broadcast>" => {
            *flags |= libc::AI_NUMERICHOST;
            Ok(Some(dotted(Ipv4Addr::BROADCAST)))
        }
        bytes if bytes.len() >= HOST_MAX => Err(Error::new(
            ruby.exception_arg_error(),
            format!("hostname too long ({})", bytes.len()),
        )),
        bytes => Ok(Some(up_to_nul(bytes))),
    }
}

/// Converts the service like MRI's `port_str`: a Fixnum becomes its decimal text (adding
/// `AI_NUMERICSERV`), anything else must convert to a String without NUL bytes.
pub fn service(ruby: &Ruby, service: Value, flags: &mut c_int) -> Result<Option<CString>, Error> {
    if service.is_nil() {
        return Ok(None);
    }
    if let Some(port) = Fixnum::from_value(service) {
        *flags |= libc::AI_NUMERICSERV;
        let text = CString::new(port.to_i64().to_string()).expect("digits have no NUL");
        return Ok(Some(text));
    }
    let name = string_value_cstr(service)?;
    if name.len() >= SERVICE_MAX {
        return Err(Error::new(
            ruby.exception_arg_error(),
            format!("service name too long ({})", name.len()),
        ));
    }
    Ok(Some(up_to_nul(&name)))
}

/// The longest interval igai waits for: 2**32 seconds (about 136 years). Longer intervals
/// that Ruby accepts (up to `time_t`'s 2**63 - 1 seconds) are clamped to it, because a
/// deadline that far ahead cannot be represented as a point in time (`Instant`) and means
/// "never" in practice anyway.
pub const LONGEST_INTERVAL: Duration = Duration::from_secs(1 << 32);

/// Converts `timeout:`: nil is none; otherwise what Ruby accepts as a time interval
/// (a non-negative Integer, Float or Rational), with Ruby's own errors (those of `sleep`:
/// ArgumentError for a negative value, RangeError for one beyond `time_t`, Infinity or NaN,
/// TypeError for a non-number), clamped to [`LONGEST_INTERVAL`].
pub fn timeout(ruby: &Ruby, timeout: Value) -> Result<Option<Duration>, Error> {
    if timeout.is_nil() {
        return Ok(None);
    }
    let mut interval = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    protect(|| {
        // SAFETY: GVL held; rb_time_interval raises ArgumentError for negative values and
        // TypeError for non-numbers, and otherwise returns a normalised timeval.
        let tv = unsafe { rb_sys::rb_time_interval(timeout.as_raw()) };
        interval.tv_sec = tv.tv_sec;
        interval.tv_usec = tv.tv_usec;
        ruby.qnil().as_raw()
    })?;
    let interval = Duration::from_secs(interval.tv_sec.max(0) as u64)
        + Duration::from_micros(interval.tv_usec.max(0) as u64);
    Ok(Some(interval.min(LONGEST_INTERVAL)))
}

/// The point in time `limit` from now, or none: `limit` is at most [`LONGEST_INTERVAL`],
/// which every clock in use can add, but a clock that cannot gets no deadline rather than
/// a panic.
pub fn deadline(limit: Option<Duration>) -> Option<Instant> {
    limit.and_then(|limit| Instant::now().checked_add(limit))
}

/// MRI's `NUM2INT`, with its TypeError and RangeError.
pub fn num_to_int(value: Value) -> Result<c_int, Error> {
    // Fast path for the usual small Integer; everything else takes Ruby's own conversion.
    if let Some(number) = Fixnum::from_value(value).and_then(|n| c_int::try_from(n.to_i64()).ok()) {
        return Ok(number);
    }
    let mut number = 0;
    protect(|| {
        // SAFETY: GVL held; rb_num2int raises for non-numbers and out-of-range values.
        number = unsafe { rb_sys::rb_num2int(value.as_raw()) } as c_int;
        rb_sys::Qnil as rb_sys::VALUE
    })?;
    Ok(number)
}

/// MRI's `StringValueCStr`: converts with `to_str`, raises ArgumentError for a NUL character,
/// and returns all the string's bytes. MRI then measures the string by its byte length but
/// hands C the text up to its first NUL byte (which a UTF-16 or UTF-32 string may hold):
/// see [`up_to_nul`].
pub fn string_value_cstr(value: Value) -> Result<Vec<u8>, Error> {
    // Fast path for a String without NUL bytes; everything else takes Ruby's own conversion.
    if let Some(string) = RString::from_value(value) {
        // SAFETY: the slice is copied before any Ruby code can run and change the string.
        let bytes = unsafe { string.as_slice() };
        if !bytes.contains(&0) {
            return Ok(bytes.to_vec());
        }
    }
    let mut converted = value.as_raw();
    protect(|| {
        // SAFETY: GVL held; `converted` is a live VALUE on our stack (seen by the conservative GC)
        // that rb_string_value_cstr may replace with the converted String; it raises for a
        // NUL character and otherwise returns a pointer we do not need.
        unsafe { rb_sys::rb_string_value_cstr(&mut converted) };
        converted
    })?;
    let string = RString::from_value(raw::value(converted)).expect("converted to a String");
    // SAFETY: copied at once, before any Ruby code can run and change the string.
    Ok(unsafe { string.as_slice() }.to_vec())
}

/// The C string MRI passes on: `bytes` up to the first NUL byte.
fn up_to_nul(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no NUL before `end`")
}

fn dotted(address: Ipv4Addr) -> CString {
    CString::new(address.to_string()).expect("an IPv4 address has no NUL")
}
