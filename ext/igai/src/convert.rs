//! Lookup results as the Ruby values `Socket.getaddrinfo` returns.

use igai_core::addrinfo::AddrEntry;
use magnus::{Error, RArray, RString, Ruby};
use std::ffi::CStr;
use std::io::Write;

/// One `[family_name, port, host, address, family, socktype, protocol]` row per entry, as
/// MRI's `make_addrinfo` builds them. `host` is the canonical name when getaddrinfo reported
/// one, else the reverse-looked-up name when asked for and found, else the numeric address.
/// Allocates Ruby objects, which may raise NoMemoryError: call it under `raw::protected`.
pub fn address_rows(ruby: &Ruby, entries: &[AddrEntry]) -> Result<RArray, Error> {
    let rows = ruby.ary_new_capa(entries.len());
    for entry in entries {
        let host = entry
            .canonname
            .as_deref()
            .or(entry.hostname.as_deref())
            .unwrap_or(&entry.address);
        let row = ruby.ary_new_capa(7);
        row.push(family_name(ruby, entry))?;
        row.push(entry.port)?;
        row.push(binary_string(ruby, host))?;
        row.push(binary_string(ruby, &entry.address))?;
        row.push(entry.family)?;
        row.push(entry.socktype)?;
        row.push(entry.protocol)?;
        rows.push(row)?;
    }
    Ok(rows)
}

/// "AF_INET", "AF_INET6" (US-ASCII, as MRI's interned names), or "unknown:<n>". Formatted
/// on the stack: this runs under protect (see raw.rs) and owns nothing to drop.
fn family_name(ruby: &Ruby, entry: &AddrEntry) -> RString {
    let mut buffer = [0u8; 32];
    let name: &[u8] = match entry.sockaddr_family() {
        libc::AF_INET => b"AF_INET",
        libc::AF_INET6 => b"AF_INET6",
        libc::AF_UNIX => b"AF_UNIX",
        other => {
            let mut rest = &mut buffer[..];
            write!(rest, "unknown:{other}").expect("fits in 32 bytes");
            let written = 32 - rest.len();
            &buffer[..written]
        }
    };
    ruby.enc_str_new(name, ruby.usascii_encoding())
}

/// A string in ASCII-8BIT, as MRI's `rb_str_new2` makes them.
fn binary_string(ruby: &Ruby, text: &CStr) -> RString {
    ruby.str_from_slice(text.to_bytes())
}
