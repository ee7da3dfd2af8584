//! Lookup results as the Ruby values `Socket.getaddrinfo` returns.

use igai_core::addrinfo::AddrEntry;
use magnus::rb_sys::FromRawValue;
use magnus::{Error, RArray, Ruby, Value};
use std::ffi::CStr;

/// One `[family_name, port, host, address, family, socktype, protocol]` row per entry, as
/// MRI's `make_addrinfo` builds them. `host` is the canonical name when getaddrinfo reported
/// one, else the reverse-looked-up name when asked for and found, else the numeric address.
pub fn address_rows(ruby: &Ruby, entries: &[AddrEntry]) -> Result<RArray, Error> {
    let rows = ruby.ary_new_capa(entries.len());
    for entry in entries {
        let host = entry
            .canonname
            .as_deref()
            .or(entry.hostname.as_deref())
            .unwrap_or(&entry.address);
        let row = ruby.ary_new_capa(7);
        row.push(family_name(entry))?;
        row.push(entry.port)?;
        row.push(binary_string(host))?;
        row.push(binary_string(&entry.address))?;
        row.push(entry.family)?;
        row.push(entry.socktype)?;
        row.push(entry.protocol)?;
        rows.push(row)?;
    }
    Ok(rows)
}

/// "AF_INET", "AF_INET6" (US-ASCII, as MRI's interned names), or "unknown:<n>".
fn family_name(entry: &AddrEntry) -> Value {
    let name = match entry.sockaddr_family() {
        libc::AF_INET => "AF_INET".to_owned(),
        libc::AF_INET6 => "AF_INET6".to_owned(),
        libc::AF_UNIX => "AF_UNIX".to_owned(),
        other => format!("unknown:{other}"),
    };
    // SAFETY: GVL held; rb_usascii_str_new copies `len` bytes from a live buffer.
    let raw = unsafe { rb_sys::rb_usascii_str_new(name.as_ptr().cast(), name.len() as _) };
    // SAFETY: `raw` is the live string just created.
    unsafe { Value::from_raw(raw) }
}

/// A string in ASCII-8BIT, as MRI's `rb_str_new2` makes them.
fn binary_string(text: &CStr) -> Value {
    let bytes = text.to_bytes();
    // SAFETY: GVL held; rb_str_new copies `len` bytes from a live buffer.
    let raw = unsafe { rb_sys::rb_str_new(bytes.as_ptr().cast(), bytes.len() as _) };
    // SAFETY: `raw` is the live string just created.
    unsafe { Value::from_raw(raw) }
}
