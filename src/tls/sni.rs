//! [`client_hello_sni`]: the server name a ClientHello asks for, read from
//! the ciphertext before rustls takes it.
//!
//! rustls's unbuffered server connection (0.23) does not expose the SNI it
//! acted on, so the session reads it here, once, from the ClientHello at
//! the start of the connection. Owns only this parse; it never decides anything (rustls
//! still validates the ClientHello and fails the handshake on a bad one),
//! and it reads bounded, untrusted input without panicking.

use rustls::pki_types::DnsName;

/// The largest TLS plaintext record (2^14) plus the most expansion a record
/// header may declare; anything longer is not a ClientHello.
const MAX_RECORD: usize = 16 * 1024 + 2048;

/// The largest handshake message rustls accepts (header included).
const MAX_HANDSHAKE: usize = 0xffff + 4;

/// What the start of a connection's input says about its SNI.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Sni {
    /// The ClientHello is not complete yet: ask again with more input.
    Incomplete,
    /// The name asked for (lower-cased, as rustls keeps it), or `None`: no
    /// SNI, an IP address, or not a ClientHello.
    Known(Option<Box<str>>),
}

/// Reads the SNI host name from a ClientHello at the start of `input`, in
/// one handshake record (as clients send it) or spread over several.
pub(super) fn client_hello_sni(input: &[u8]) -> Sni {
    let mut rest = input;
    let mut joined: Vec<u8> = Vec::new();
    loop {
        let Some(header) = rest.get(..5) else {
            return Sni::Incomplete;
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if header[0] != 22 || len > MAX_RECORD {
            return Sni::Known(None);
        }
        let Some(body) = rest.get(5..5 + len) else {
            return Sni::Incomplete;
        };
        rest = &rest[5 + len..];
        let message = if joined.is_empty() && whole_message(body) {
            body // the usual case: one record, no copy
        } else {
            joined.extend_from_slice(body);
            if !whole_message(&joined) {
                if joined.len() >= MAX_HANDSHAKE {
                    return Sni::Known(None);
                }
                continue;
            }
            &joined[..]
        };
        return Sni::Known(host_name(message).and_then(|name| {
            let name = std::str::from_utf8(name).ok()?;
            let name = DnsName::try_from(name).ok()?;
            Some(name.to_lowercase_owned().as_ref().into())
        }));
    }
}

/// Whether `bytes` hold a whole handshake message (header and body).
fn whole_message(bytes: &[u8]) -> bool {
    match bytes.get(..4) {
        Some(h) => {
            let len = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
            bytes.len() >= 4 + len
        }
        None => false,
    }
}

/// The first `host_name` entry of a ClientHello's server_name extension,
/// if the record holds the whole ClientHello.
fn host_name(record: &[u8]) -> Option<&[u8]> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    let mut hello = Reader(r.take(len)?);
    hello.take(2 + 32)?; // legacy_version, random
    hello.vec8()?; // legacy_session_id
    hello.vec16()?; // cipher_suites
    hello.vec8()?; // legacy_compression_methods
    let mut extensions = Reader(hello.vec16()?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let body = extensions.vec16()?;
        if kind != 0 {
            continue;
        }
        let mut names = Reader(Reader(body).vec16()?);
        while !names.0.is_empty() {
            let name_type = names.u8()?;
            let name = names.vec16()?;
            if name_type == 0 {
                return Some(name);
            }
        }
        return None;
    }
    None
}

/// A cursor over untrusted bytes: every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<usize> {
        let b = self.take(2)?;
        Some(usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A real rustls client's first flight, asking for `name`.
    fn hello(name: &str) -> Vec<u8> {
        let roots = rustls::RootCertStore::empty();
        let config = rustls::ClientConfig::builder_with_provider(super::super::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_name_a_rustls_client_sends() {
        let bytes = hello("Backend.Example");
        assert_eq!(
            client_hello_sni(&bytes),
            Sni::Known(Some("backend.example".into()))
        );
    }

    #[test]
    fn waits_for_the_whole_first_record() {
        let bytes = hello("a.example");
        for cut in [0, 3, 5, 40, bytes.len() - 1] {
            assert_eq!(
                client_hello_sni(&bytes[..cut]),
                Sni::Incomplete,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn reads_the_name_from_a_hello_split_over_records() {
        let bytes = hello("split.example");
        let body = &bytes[5..];
        for cut in [1, 3, 4, 50, body.len() - 1] {
            let mut records = Vec::new();
            for part in [&body[..cut], &body[cut..]] {
                records.extend_from_slice(&[22, 3, 1]);
                records.extend_from_slice(&(part.len() as u16).to_be_bytes());
                records.extend_from_slice(part);
            }
            let first_record = 5 + cut;
            assert_eq!(client_hello_sni(&records[..first_record]), Sni::Incomplete);
            assert_eq!(
                client_hello_sni(&records),
                Sni::Known(Some("split.example".into())),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn no_name_for_ip_addresses_plaintext_and_garbage() {
        // rustls sends no SNI for an IP address.
        assert_eq!(client_hello_sni(&hello("127.0.0.1")), Sni::Known(None));
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n"), Sni::Known(None));
        let mut bytes = hello("a.example");
        // Every truncation of the ClientHello, in a record of that length,
        // reads no name and does not panic: its message continues in a
        // record yet to come, then garbage ends it.
        let len = bytes.len();
        for cut in 6..len {
            let mut short = bytes[..cut].to_vec();
            let body = (cut - 5) as u16;
            short[3..5].copy_from_slice(&body.to_be_bytes());
            assert_eq!(client_hello_sni(&short), Sni::Incomplete, "cut {cut}");
            short.extend_from_slice(b"GET / HTTP/1.1\r\n");
            assert_eq!(client_hello_sni(&short), Sni::Known(None), "cut {cut}");
        }
        bytes[5] = 2; // a ServerHello type
        assert_eq!(client_hello_sni(&bytes), Sni::Known(None));
    }
}
