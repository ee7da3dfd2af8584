//! `Socket.interruptible_getnameinfo`.

use crate::{args, constants, errors, raw, resolve};
use igai_core::addrinfo::AddrQuery;
use igai_core::nameinfo::{NameQuery, SOCKADDR_BUFFER};
use magnus::rb_sys::{protect, AsRawValue, FromRawValue};
use magnus::{prelude::*, Error, RArray, RString, Ruby, Value};
use std::ffi::CStr;
use std::time::Instant;

/// `Socket.interruptible_getnameinfo(sockaddr, flags = 0, timeout: nil)` (see
/// [`crate::getaddrinfo::interruptible_getaddrinfo`] for why it is defined natively).
pub fn interruptible_getnameinfo(ruby: &Ruby, args: &[Value]) -> Result<RArray, Error> {
    let (given, timeout) = args::positional_and_timeout(args, 1, 2)?;
    let flags = given
        .get(1)
        .copied()
        .unwrap_or_else(|| ruby.qnil().as_value());
    getnameinfo(ruby, given[0], flags, timeout)
}

/// Finds names like `Socket.getnameinfo(sockaddr, flags)`, interruptibly, giving up with
/// `Errno::ETIMEDOUT` after `timeout` seconds (nil: no limit). `sockaddr` is a packed
/// sockaddr String, an Addrinfo, or a `[family, port, host]` / `[family, port, host,
/// address]` Array (whose host is resolved first, as MRI does). Returns `[host, service]`.
fn getnameinfo(
    ruby: &Ruby,
    sockaddr: Value,
    flags: Value,
    timeout: Value,
) -> Result<RArray, Error> {
    let flags = if flags.is_nil() {
        0
    } else {
        args::num_to_int(flags)?
    };
    let deadline = args::deadline(args::timeout(ruby, timeout)?);
    let addresses = match sockaddr_string(sockaddr)? {
        Some(packed) => {
            if packed.len() > SOCKADDR_BUFFER {
                return Err(Error::new(
                    ruby.exception_type_error(),
                    "sockaddr length too big",
                ));
            }
            vec![packed]
        }
        None => resolve_array(ruby, sockaddr, flags, deadline)?,
    };
    let mut found: Option<(Vec<u8>, Vec<u8>)> = None;
    for address in addresses {
        let query = NameQuery {
            sockaddr: address,
            flags,
        };
        let answer = resolve::names(ruby, query, deadline)?;
        let outcome = match resolve::name_outcome(&answer) {
            Ok((host, service)) => Ok((host.as_bytes().to_vec(), service.as_bytes().to_vec())),
            Err(error) => Err(*error),
        };
        drop(answer); // before building any exception (see errors.rs)
        let (host, service) = match outcome {
            Ok(names) => names,
            Err(error) => return Err(errors::lookup_error(ruby, error, false)),
        };
        match &found {
            None => found = Some((host, service)),
            Some(first) if *first == (host.clone(), service.clone()) => {}
            Some(_) => {
                return Err(Error::new(
                    errors::socket_error(ruby),
                    "sockaddr resolved to multiple nodename",
                ))
            }
        }
    }
    let (host, service) = found.expect("at least one address");
    // Under protect: a raise while building the strings must not skip dropping the names.
    raw::protected(|| {
        let pair = ruby.ary_new_capa(2);
        pair.push(ruby.str_from_slice(&host))?;
        pair.push(ruby.str_from_slice(&service))?;
        Ok(pair)
    })
}

/// MRI's `rb_check_sockaddr_string_type`: an Addrinfo's `to_sockaddr`, or anything
/// convertible with `to_str`; `None` for anything else.
fn sockaddr_string(value: Value) -> Result<Option<Vec<u8>>, Error> {
    let mut converted = rb_sys::Qnil as rb_sys::VALUE;
    protect(|| {
        // SAFETY: GVL held; socket.so exports this function (it is what Socket.getnameinfo
        // calls); it returns a String or nil and raises only if a conversion method does.
        converted = unsafe { rb_check_sockaddr_string_type(value.as_raw()) };
        converted
    })?;
    // SAFETY: `converted` is a live VALUE just returned by Ruby (on our stack, seen by GC).
    let converted = unsafe { Value::from_raw(converted) };
    Ok(RString::from_value(converted).map(|packed| {
        // SAFETY: copied at once, before any Ruby code can run.
        unsafe { packed.as_slice() }.to_vec()
    }))
}

extern "C" {
    /// From Ruby's socket extension, loaded before us (`require "socket"` in lib/igai.rb).
    fn rb_check_sockaddr_string_type(value: rb_sys::VALUE) -> rb_sys::VALUE;
}

/// The array form: MRI resolves `[family, port, host(, address)]` with getaddrinfo first
/// (the numeric 4th element, when given, with `AI_NUMERICHOST`), and names every address.
fn resolve_array(
    ruby: &Ruby,
    sockaddr: Value,
    flags: i32,
    deadline: Option<Instant>,
) -> Result<Vec<Vec<u8>>, Error> {
    let mut converted = rb_sys::Qnil as rb_sys::VALUE;
    protect(|| {
        // SAFETY: GVL held; rb_check_array_type calls `to_ary` if defined, else returns nil.
        converted = unsafe { rb_sys::rb_check_array_type(sockaddr.as_raw()) };
        converted
    })?;
    // SAFETY: a live VALUE just returned by Ruby.
    let Some(array) = RArray::from_value(unsafe { Value::from_raw(converted) }) else {
        return Err(Error::new(
            ruby.exception_type_error(),
            "expecting String or Array",
        ));
    };
    let mut hints_flags = 0;
    let (family, port, host) = match array.len() {
        3 => (array.entry(0)?, array.entry(1)?, array.entry(2)?),
        n if n >= 4 => {
            let numeric: Value = array.entry(3)?;
            if numeric.is_nil() {
                (array.entry(0)?, array.entry(1)?, array.entry(2)?)
            } else {
                hints_flags |= libc::AI_NUMERICHOST;
                (array.entry(0)?, array.entry(1)?, numeric)
            }
        }
        n => {
            return Err(Error::new(
                ruby.exception_arg_error(),
                format!("array size should be 3 or 4, {n} given"),
            ))
        }
    };
    let mut hints = igai_core::addrinfo::Hints {
        flags: hints_flags,
        socktype: if flags & libc::NI_DGRAM != 0 {
            libc::SOCK_DGRAM
        } else {
            libc::SOCK_STREAM
        },
        ..Default::default()
    };
    let family: Value = family;
    if !family.is_nil() {
        hints.family = constants::family(ruby, family)?;
    }
    let host_name = args::host(ruby, host, &mut hints.flags)?;
    let service = args::service(ruby, port, &mut hints.flags)?;
    let ends_in_newline = host_name
        .as_deref()
        .is_some_and(|name: &CStr| name.to_bytes().last() == Some(&b'\n'));
    let query = AddrQuery {
        host: host_name,
        service,
        hints,
        reverse: false,
    };
    let answer = resolve::addresses(ruby, host, query, deadline)?;
    let error = match resolve::address_outcome(&answer) {
        Ok(entries) => return Ok(entries.iter().map(|entry| entry.sockaddr.clone()).collect()),
        Err(error) => *error,
    };
    drop(answer); // before building the exception (see errors.rs)
    Err(errors::lookup_error(ruby, error, ends_in_newline))
}
