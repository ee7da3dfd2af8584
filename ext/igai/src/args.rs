//! Argument conversion for `Socket.interruptible_getaddrinfo`, with the order, results and
//! errors of MRI's `Socket.getaddrinfo` (ext/socket's `host_str`, `port_str`, `constant_arg`
//! and `rsock_revlookup_flag`). Where MRI calls a conversion function of Ruby's C API that may
//! raise, we call the same function under `rb_protect`, so the exception is Ruby's own.

use igai_core::lookup::Hints;
use magnus::rb_sys::{protect, AsRawValue};
use magnus::{
    prelude::*,
    value::{Lazy, LazyId},
    Error, Fixnum, RArray, RClass, RModule, RString, Ruby, StaticSymbol, Symbol, Value,
};
use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::net::Ipv4Addr;
use std::os::raw::c_int;
use std::sync::OnceLock;
use std::time::Duration;

/// MRI's host buffer (NI_MAXHOST): a host name must be shorter.
const HOST_MAX: usize = 1025;
/// MRI's service buffer (NI_MAXSERV): a service name must be shorter.
const SERVICE_MAX: usize = 32;

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
        hints.family = self::family(ruby, family)?;
    }
    if !socktype.is_nil() {
        hints.socktype = constant_arg(ruby, socktype, |n| &n.socktypes, "unknown socket type")?;
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

/// Sets the lazy statics above while the extension loads (in the main Ractor). Their first
/// use would otherwise call Ruby inside a `std::sync::Once`, and two Ractors doing so at once
/// could deadlock: one blocked in the Once, where Ruby's GC cannot stop it, while the other
/// waits inside it for a GC.
pub fn load_statics(ruby: &Ruby) {
    ruby.get_inner(&BASIC_SOCKET);
    LazyId::force(&DO_NOT_REVERSE_LOOKUP, ruby);
}

/// MRI's `rsock_family_arg`: an address family given as Integer, Symbol or String.
pub fn family(ruby: &Ruby, family: Value) -> Result<c_int, Error> {
    constant_arg(ruby, family, |n| &n.families, "unknown socket domain")
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
    if id == intern("numeric") {
        return Ok(false);
    }
    if id == intern("hostname") {
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

/// The permanent ID of `name` (`rb_intern`): IDs made this way are never collected.
fn intern(name: &str) -> rb_sys::ID {
    // SAFETY: GVL held; rb_intern2 reads `len` bytes of `name`.
    unsafe { rb_sys::rb_intern2(name.as_ptr().cast(), name.len() as _) }
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

/// Converts `timeout:`: nil is none; otherwise what Ruby accepts as a time interval
/// (a non-negative Integer, Float or Rational), with Ruby's own errors.
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
    Ok(Some(
        Duration::from_secs(interval.tv_sec.max(0) as u64)
            + Duration::from_micros(interval.tv_usec.max(0) as u64),
    ))
}

/// MRI's `constant_arg`: a Symbol, or anything convertible with `to_str`, names a constant
/// (see [`ConstantNames`]); anything else goes through `NUM2INT`. An unknown name raises
/// `SocketError` "`what`: name".
fn constant_arg(
    ruby: &Ruby,
    arg: Value,
    names: fn(&ConstantNames) -> &Names,
    what: &str,
) -> Result<c_int, Error> {
    let known = CONSTANT_NAMES.get().map(names);
    if StaticSymbol::from_value(arg).is_some() {
        // SAFETY: GVL held; for a static Symbol rb_sym2id only decodes the immediate value.
        let id = unsafe { rb_sys::rb_sym2id(arg.as_raw()) };
        if let Some(value) = known.and_then(|names| names.by_id.get(&id)) {
            return Ok(*value);
        }
    }
    let name = match Symbol::from_value(arg) {
        // SAFETY: GVL held; rb_sym2str returns the symbol's (frozen) name string.
        Some(_) => RString::from_value(unsafe_value(unsafe { rb_sys::rb_sym2str(arg.as_raw()) })),
        None => {
            let mut converted = ruby.qnil().as_raw();
            protect(|| {
                // SAFETY: GVL held; rb_check_string_type calls `to_str` if defined and
                // returns nil otherwise (raising only if `to_str` misbehaves).
                converted = unsafe { rb_sys::rb_check_string_type(arg.as_raw()) };
                converted
            })?;
            RString::from_value(unsafe_value(converted))
        }
    };
    let Some(name) = name else {
        return num_to_int(arg);
    };
    // SAFETY: the slice is used before any Ruby code can run and change the string.
    let bytes = unsafe { name.as_slice() };
    if let Some(value) = known.and_then(|names| names.by_bytes.get(bytes)) {
        return Ok(*value);
    }
    let shown = bytes.split(|b| *b == 0).next().unwrap_or_default();
    Err(Error::new(
        socket_error(ruby)?,
        format!("{what}: {}", String::from_utf8_lossy(shown)),
    ))
}

/// The names `constant_arg` accepts, read once from `Socket::Constants`: for families every
/// `AF_*` and `PF_*` constant, with and without its prefix ("AF_INET", "PF_INET", "INET");
/// for socket types every `SOCK_*` constant, with and without it ("SOCK_STREAM", "STREAM").
/// The usual spelling, a static Symbol (`:INET`, `:STREAM`), is found by its ID without
/// looking at its name. (Only static Symbols: a dynamic one lives in the heap, and keying a
/// table by its VALUE would match whatever object later takes its freed slot.)
#[derive(Default)]
pub struct ConstantNames {
    families: Names,
    socktypes: Names,
}

/// One kind of constant: values by name, and by the name's permanent ID.
#[derive(Default)]
pub struct Names {
    by_bytes: HashMap<Vec<u8>, c_int>,
    by_id: HashMap<rb_sys::ID, c_int>,
}

static CONSTANT_NAMES: OnceLock<ConstantNames> = OnceLock::new();

/// Reads `Socket::Constants` into [`ConstantNames`]; called once when the extension loads.
pub fn load_constant_names(ruby: &Ruby) -> Result<(), Error> {
    let constants: RModule = ruby
        .class_object()
        .const_get::<_, RClass>("Socket")?
        .const_get("Constants")?;
    let mut all = ConstantNames::default();
    let names: RArray = constants.funcall("constants", ())?;
    for name in names.into_iter() {
        let name = Symbol::try_convert(name)?.name()?.into_owned();
        let names = if name.starts_with("AF_") || name.starts_with("PF_") {
            &mut all.families
        } else if name.starts_with("SOCK_") {
            &mut all.socktypes
        } else {
            continue;
        };
        let Some(value) = Fixnum::from_value(constants.const_get(name.as_str())?) else {
            continue;
        };
        let value = value.to_i64() as c_int;
        let short = name.split_once('_').map_or("", |(_, rest)| rest).to_owned();
        for spelling in [short, name] {
            names.by_id.insert(intern(&spelling), value);
            names.by_bytes.insert(spelling.into_bytes(), value);
        }
    }
    let _ = CONSTANT_NAMES.set(all);
    Ok(())
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
    let mut raw = value.as_raw();
    protect(|| {
        // SAFETY: GVL held; `raw` is a live VALUE on our stack (seen by the conservative GC)
        // that rb_string_value_cstr may replace with the converted String; it raises for a
        // NUL character and otherwise returns a pointer we do not need.
        unsafe { rb_sys::rb_string_value_cstr(&mut raw) };
        raw
    })?;
    let string = RString::from_value(unsafe_value(raw)).expect("converted to a String");
    // SAFETY: copied at once, before any Ruby code can run and change the string.
    Ok(unsafe { string.as_slice() }.to_vec())
}

/// The C string MRI passes on: `bytes` up to the first NUL byte.
fn up_to_nul(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    CString::new(&bytes[..end]).expect("no NUL before `end`")
}

/// `SocketError`.
pub fn socket_error(ruby: &Ruby) -> Result<magnus::ExceptionClass, Error> {
    ruby.class_object().const_get("SocketError")
}

fn dotted(address: Ipv4Addr) -> CString {
    CString::new(address.to_string()).expect("an IPv4 address has no NUL")
}

fn unsafe_value(raw: rb_sys::VALUE) -> Value {
    use magnus::rb_sys::FromRawValue;
    // SAFETY: `raw` was returned by a Ruby C API call made with the GVL held and is a live
    // object (kept alive by our stack, which the GC scans).
    unsafe { Value::from_raw(raw) }
}
