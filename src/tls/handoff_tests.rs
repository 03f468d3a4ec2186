//! Tests of the hand-off of the record layer (`handoff.rs`) through a
//! server session driven as the loop drives it, against a rustls client,
//! over a Unix socket pair.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConfig, ClientConnection, RootCertStore};

use super::fuzzing::ServerSide;

struct Pair {
    client: ClientConnection,
    server: ServerSide,
    peer: UnixStream,
    /// Plaintext the client decrypted.
    received: Vec<u8>,
}

/// A server session and a rustls client (TLS 1.2 or 1.3) before the
/// handshake.
fn unconnected(tls12: bool, own_record_layer: bool) -> Pair {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let config = Arc::new(
        super::ServerTls::from_pem(
            cert.cert.pem().as_bytes(),
            cert.key_pair.serialize_pem().as_bytes(),
        )
        .unwrap()
        .build()
        .unwrap(),
    );
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let client_config = ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let client = ClientConnection::new(
        Arc::new(client_config),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let (peer, socket) = UnixStream::pair().unwrap();
    socket.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    let server = ServerSide::with_record_layer(&config, socket.into(), own_record_layer).unwrap();
    Pair {
        client,
        server,
        peer,
        received: Vec::new(),
    }
}

/// The same, handshake done and a first message sent by the server (the
/// hand-off comes with the first write of application data).
fn pair(tls12: bool, own_record_layer: bool) -> Pair {
    let mut pair = unconnected(tls12, own_record_layer);
    pair.exchange().unwrap();
    assert!(!pair.server.is_handshaking());
    pair.server.write(b"hello").unwrap();
    pair.exchange().unwrap();
    assert_eq!(pair.client_reads(), b"hello");
    pair
}

impl Pair {
    /// Moves records both ways until neither side has more; the server's
    /// error, if it failed.
    fn exchange(&mut self) -> Result<(), rustls::Error> {
        for _ in 0..100 {
            let mut c2s = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut c2s).unwrap();
            }
            if !c2s.is_empty() {
                self.server.feed(&c2s)?;
            }
            let mut buf = vec![0u8; 256 * 1024];
            match self.peer.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let mut records = &buf[..n];
                    while !records.is_empty() {
                        self.client.read_tls(&mut records).unwrap();
                        // The client's own failures are for the caller.
                        let _ = self.client.process_new_packets();
                        let mut plain = [0u8; 4096];
                        while let Ok(n @ 1..) = self.client.reader().read(&mut plain) {
                            self.received.extend_from_slice(&plain[..n]);
                        }
                    }
                }
                _ if c2s.is_empty() => return Ok(()),
                _ => {}
            }
        }
        Ok(())
    }

    fn client_reads(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.received)
    }

    fn round_trip(&mut self, up: &[u8], down: &[u8]) {
        let before = self.server.plaintext().len();
        // In pieces the client's own buffer takes.
        for piece in up.chunks(16 * 1024) {
            self.client.writer().write_all(piece).unwrap();
            self.exchange().unwrap();
        }
        self.exchange().unwrap();
        assert_eq!(&self.server.plaintext()[before..], up);
        self.server.write(down).unwrap();
        assert_eq!(self.server.queued(), 0, "the socket took every record");
        self.exchange().unwrap();
        assert_eq!(self.client_reads(), down);
    }
}

#[test]
fn tls13_sessions_are_handed_off_and_carry_data_both_ways() {
    let mut p = pair(false, true);
    assert!(p.server.handed_off());
    p.round_trip(b"ping", b"pong");
    // More than a record each way, in one write.
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    p.round_trip(&big, &big);
    p.round_trip(b"", b"x");
}

#[test]
fn tls12_and_the_option_off_stay_on_rustls() {
    let mut p = pair(true, true);
    assert!(!p.server.handed_off());
    p.round_trip(b"ping", b"pong");
    let mut p = pair(false, false);
    assert!(!p.server.handed_off());
    p.round_trip(b"ping", b"pong");
}

#[test]
fn key_updates_from_the_peer_are_followed_and_answered() {
    let mut p = pair(false, true);
    for i in 0..5u8 {
        // rustls asks the peer to update too (update_requested): the
        // client then reads only if our answer came and our write key moved.
        p.client.refresh_traffic_keys().unwrap();
        p.round_trip(&[i; 300], &[i + 1; 20_000]);
    }
}

#[test]
fn a_corrupted_record_is_a_decrypt_error_and_a_bad_record_mac_alert() {
    let mut p = pair(false, true);
    p.round_trip(b"ping", b"pong");
    p.client.writer().write_all(b"to be corrupted").unwrap();
    let mut record = Vec::new();
    while p.client.wants_write() {
        p.client.write_tls(&mut record).unwrap();
    }
    let last = record.len() - 1;
    record[last] ^= 0x40;
    assert_eq!(p.server.feed(&record), Err(rustls::Error::DecryptError));
    let mut alert = vec![0u8; 1024];
    let n = p.peer.read(&mut alert).unwrap();
    p.client.read_tls(&mut &alert[..n]).unwrap();
    assert_eq!(
        p.client.process_new_packets().unwrap_err(),
        rustls::Error::AlertReceived(AlertDescription::BadRecordMac)
    );
    // A failed session stays failed.
    assert!(p.server.feed(b"").is_err());
}

#[test]
fn records_that_break_the_protocol_close_with_a_typed_error() {
    for (bytes, expect) in [
        // A plaintext alert record after the handshake.
        (vec![21, 3, 3, 0, 2, 2, 40], "InvalidContentType"),
        // A declared length beyond the record limit.
        (vec![23, 3, 3, 0x48, 0x01], "PeerSentOversizedRecord"),
        // Too short to hold a tag.
        (vec![23, 3, 3, 0, 3, 1, 2, 3], "DecryptError"),
    ] {
        let mut p = pair(false, true);
        p.round_trip(b"ping", b"pong");
        let e = p.server.feed(&bytes).unwrap_err();
        assert!(format!("{e:?}").contains(expect), "{e:?} for {bytes:?}");
    }
}

#[test]
fn close_notify_ends_the_stream() {
    let mut p = pair(false, true);
    p.round_trip(b"ping", b"pong");
    p.client.writer().write_all(b"last").unwrap();
    p.client.send_close_notify();
    p.exchange().unwrap();
    assert!(p.server.peer_closed());
    assert!(p.server.plaintext().ends_with(b"last"));
}

/// The peer's KeyUpdate (update_requested) arriving with the handshake's
/// last record: rustls holds its answer until the next application data,
/// so the hand-off waits for that write (a fuzz finding).
#[test]
fn a_key_update_before_the_first_write_is_answered_before_the_hand_off() {
    let mut p = unconnected(false, true);
    // ClientHello out, the server's flight back: the client is done.
    let mut hello = Vec::new();
    p.client.write_tls(&mut hello).unwrap();
    p.server.feed(&hello).unwrap();
    let mut flight = vec![0u8; 64 * 1024];
    let n = p.peer.read(&mut flight).unwrap();
    p.client.read_tls(&mut &flight[..n]).unwrap();
    p.client.process_new_packets().unwrap();
    assert!(!p.client.is_handshaking());
    // Finished, a KeyUpdate and application data in one read.
    p.client.refresh_traffic_keys().unwrap();
    p.client.writer().write_all(&[64]).unwrap();
    p.exchange().unwrap();
    assert_eq!(p.server.plaintext(), [64]);
    assert!(!p.server.handed_off());
    p.server.write(b"pong").unwrap();
    assert!(p.server.handed_off());
    p.exchange().unwrap();
    assert_eq!(p.client_reads(), b"pong");
    p.round_trip(b"ping", b"pong again");
}
