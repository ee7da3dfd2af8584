//! One getnameinfo(3) request (address to host and service names) in plain Rust values.

use crate::addrinfo::{Call, LookupError};
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};

/// A getnameinfo(3) request: raw `struct sockaddr` bytes and `NI_*` flags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameQuery {
    pub sockaddr: Vec<u8>,
    pub flags: c_int,
}

/// The size of MRI's `union_sockaddr`, in which Socket.getnameinfo places a sockaddr.
pub const SOCKADDR_BUFFER: usize = 2048;

/// The host and service names found, or why not.
pub type NameOutcome = Result<(CString, CString), LookupError>;

impl NameQuery {
    /// True when no name service is needed: the host is wanted in numeric form
    /// (`NI_NUMERICHOST`), or the address is not an IP address at all. A service name, if
    /// wanted, comes from the local services database.
    pub fn is_numeric(&self) -> bool {
        let family = crate::addrinfo::family_of_sockaddr(&self.sockaddr);
        self.flags & libc::NI_NUMERICHOST != 0
            || (family != libc::AF_INET && family != libc::AF_INET6)
    }

    /// Performs the lookup (MRI's buffers: 1024 bytes for each name). May block on DNS.
    pub fn run(&self) -> NameOutcome {
        // Like MRI, hand getnameinfo a copy in a zeroed buffer of MRI's sockaddr size: for
        // AF_UNIX glibc reads the path up to a NUL, which a short sockaddr may not contain.
        let mut sockaddr = vec![0u8; self.sockaddr.len().max(SOCKADDR_BUFFER)];
        sockaddr[..self.sockaddr.len()].copy_from_slice(&self.sockaddr);
        let mut host = [0 as c_char; 1024];
        let mut serv = [0 as c_char; 1024];
        // Inside the fork gate, like getaddrinfo (DNS and NSS take the same glibc locks).
        let (code, errno) = crate::fork_gate::pass(|| {
            // SAFETY: `sockaddr` holds at least the `len` bytes passed, followed by zeros up
            // to SOCKADDR_BUFFER; both name buffers are writable for the lengths passed;
            // getnameinfo writes NUL-terminated text into them on success.
            let code = unsafe {
                libc::getnameinfo(
                    sockaddr.as_ptr() as *const libc::sockaddr,
                    self.sockaddr.len() as libc::socklen_t,
                    host.as_mut_ptr(),
                    host.len() as libc::socklen_t,
                    serv.as_mut_ptr(),
                    serv.len() as libc::socklen_t,
                    self.flags,
                )
            };
            (
                code,
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0),
            )
        });
        if code != 0 {
            return Err(LookupError {
                call: Call::GetNameInfo,
                code,
                errno,
            });
        }
        // SAFETY: getnameinfo succeeded, so both buffers hold NUL-terminated strings.
        let (host, serv) =
            unsafe { (CStr::from_ptr(host.as_ptr()), CStr::from_ptr(serv.as_ptr())) };
        Ok((host.to_owned(), serv.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addrinfo::{AddrQuery, Hints};

    fn loopback(port: &str) -> Vec<u8> {
        sockaddr_of("127.0.0.1", port)
    }

    fn sockaddr_of(address: &str, port: &str) -> Vec<u8> {
        let query = AddrQuery {
            host: Some(CString::new(address).unwrap()),
            service: Some(CString::new(port).unwrap()),
            hints: Hints {
                socktype: libc::SOCK_STREAM,
                ..Hints::default()
            },
            reverse: false,
        };
        query.run().unwrap().remove(0).sockaddr
    }

    #[test]
    fn numeric_host_and_service_need_no_name_service() {
        let query = NameQuery {
            sockaddr: loopback("8080"),
            flags: libc::NI_NUMERICHOST | libc::NI_NUMERICSERV,
        };
        assert!(query.is_numeric());
        let (host, serv) = query.run().unwrap();
        assert_eq!(
            (host.to_str().unwrap(), serv.to_str().unwrap()),
            ("127.0.0.1", "8080")
        );
    }

    #[test]
    fn a_host_name_is_not_numeric() {
        for address in ["127.0.0.1", "::1"] {
            let query = NameQuery {
                sockaddr: sockaddr_of(address, "80"),
                flags: 0,
            };
            assert!(!query.is_numeric(), "{address} needs the name service");
        }
    }

    #[test]
    fn a_unix_path_without_nul_is_read_only_up_to_its_length() {
        let query = NameQuery {
            sockaddr: vec![libc::AF_UNIX as u8, 0, b'a', b'b'],
            flags: libc::NI_NUMERICHOST | libc::NI_NUMERICSERV,
        };
        let (_, serv) = query.run().unwrap();
        assert_eq!(serv.to_bytes(), b"ab");
    }

    #[test]
    fn a_bad_address_reports_getnameinfo_and_its_code() {
        let query = NameQuery {
            sockaddr: vec![0xff, 0xff, 0, 0],
            flags: libc::NI_NUMERICHOST,
        };
        let error = query.run().unwrap_err();
        assert_eq!(error.call, Call::GetNameInfo);
        assert_eq!(error.code, libc::EAI_FAMILY);
    }
}
