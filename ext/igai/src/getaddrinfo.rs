//! `Socket.interruptible_getaddrinfo`.

use crate::{args, convert, errors, raw, resolve};
use igai_core::addrinfo::AddrQuery;
use magnus::{prelude::*, Error, RArray, Ruby, Value};

/// `Socket.interruptible_getaddrinfo(host, service, family = nil, socktype = nil,
/// protocol = nil, flags = nil, reverse_lookup = nil, timeout: nil)`: defined here rather
/// than as a Ruby method around a native one, which cost numeric hosts (answered without a
/// lookup) a third of their time.
pub fn interruptible_getaddrinfo(ruby: &Ruby, args: &[Value]) -> Result<RArray, Error> {
    let (given, timeout) = args::positional_and_timeout(args, 2, 7)?;
    let arg = |index: usize| {
        given
            .get(index)
            .copied()
            .unwrap_or_else(|| ruby.qnil().as_value())
    };
    getaddrinfo(
        ruby,
        arg(0),
        arg(1),
        arg(2),
        arg(3),
        arg(4),
        arg(5),
        arg(6),
        timeout,
    )
}

/// Resolves like `Socket.getaddrinfo(host, service, family, socktype, protocol, flags,
/// reverse_lookup)`, but interruptibly, and giving up with `Errno::ETIMEDOUT` after `timeout`
/// seconds (nil: no limit). Arguments are checked in MRI's order, with MRI's errors.
#[allow(clippy::too_many_arguments)]
fn getaddrinfo(
    ruby: &Ruby,
    host: Value,
    service: Value,
    family: Value,
    socktype: Value,
    protocol: Value,
    flags: Value,
    reverse_lookup: Value,
    timeout: Value,
) -> Result<RArray, Error> {
    let mut hints = args::hints(ruby, family, socktype, protocol, flags)?;
    let reverse = args::reverse_lookup(ruby, reverse_lookup)?;
    let deadline = args::deadline(args::timeout(ruby, timeout)?);
    let host_name = args::host(ruby, host, &mut hints.flags)?;
    let service_name = args::service(ruby, service, &mut hints.flags)?;
    let ends_in_newline = host_name
        .as_ref()
        .is_some_and(|name| name.as_bytes().last() == Some(&b'\n'));
    let query = AddrQuery {
        host: host_name,
        service: service_name,
        hints,
        reverse,
    };
    let answer = resolve::addresses(ruby, host, query, deadline)?;
    let error = match resolve::address_outcome(&answer) {
        // Under protect: a raise while building the rows must not skip dropping `answer`.
        Ok(entries) => return raw::protected(|| convert::address_rows(ruby, entries)),
        Err(error) => *error,
    };
    drop(answer); // before building the exception (see errors.rs)
    Err(errors::lookup_error(ruby, error, ends_in_newline))
}
