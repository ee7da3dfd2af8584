//! Socket constants given by name, as MRI's `constant_arg` reads them: the address family
//! and socket type arguments of `Socket.getaddrinfo` (`:INET`, `"AF_INET6"`, `:STREAM`, ...),
//! with the table of names read once from `Socket::Constants`.

use crate::{args, errors, raw};
use magnus::rb_sys::{protect, AsRawValue};
use magnus::{
    prelude::*, Error, Fixnum, RArray, RClass, RModule, RString, Ruby, StaticSymbol, Symbol, Value,
};
use std::collections::HashMap;
use std::os::raw::c_int;
use std::sync::OnceLock;

/// MRI's `rsock_family_arg`: an address family given as Integer, Symbol or String.
pub fn family(ruby: &Ruby, family: Value) -> Result<c_int, Error> {
    constant_arg(ruby, family, |n| &n.families, "unknown socket domain")
}

/// MRI's `rsock_socktype_arg`: a socket type given as Integer, Symbol or String.
pub fn socktype(ruby: &Ruby, socktype: Value) -> Result<c_int, Error> {
    constant_arg(ruby, socktype, |n| &n.socktypes, "unknown socket type")
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
        Some(_) => RString::from_value(raw::value(unsafe { rb_sys::rb_sym2str(arg.as_raw()) })),
        None => {
            let mut converted = ruby.qnil().as_raw();
            protect(|| {
                // SAFETY: GVL held; rb_check_string_type calls `to_str` if defined and
                // returns nil otherwise (raising only if `to_str` misbehaves).
                converted = unsafe { rb_sys::rb_check_string_type(arg.as_raw()) };
                converted
            })?;
            RString::from_value(raw::value(converted))
        }
    };
    let Some(name) = name else {
        return args::num_to_int(arg);
    };
    // SAFETY: the slice is used before any Ruby code can run and change the string.
    let bytes = unsafe { name.as_slice() };
    if let Some(value) = known.and_then(|names| names.by_bytes.get(bytes)) {
        return Ok(*value);
    }
    let shown = bytes.split(|b| *b == 0).next().unwrap_or_default();
    Err(Error::new(
        errors::socket_error(ruby),
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
            names.by_id.insert(raw::intern(&spelling), value);
            names.by_bytes.insert(spelling.into_bytes(), value);
        }
    }
    let _ = CONSTANT_NAMES.set(all);
    Ok(())
}
