//! The TLS input path: a server session driven as the event loop drives it,
//! fed a real rustls client's records (TLS 1.2 or 1.3: handshake, data,
//! close_notify) cut into reads at arbitrary points, with some bytes
//! optionally corrupted. Checks: nothing panics; unless corrupted, the
//! handshake completes and the plaintext delivered is exactly what the
//! client sent, whatever the cuts; corrupted input ends in a TLS error, and
//! what plaintext got through before it is a prefix of what was sent (every
//! record is authenticated: a flipped byte never becomes plaintext). TLS 1.3
//! sessions hand their record layer to the loop (`tls/handoff.rs`) at the
//! server's first write after the handshake (a "." it sends at once) unless
//! the input turns that off; the client sends
//! KeyUpdates (update_requested) between writes where the input says, so
//! the loop's answer and key changes meet every cut.
#![no_main]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringloop::tls::fuzzing::ServerSide;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig};

#[derive(Arbitrary, Debug)]
struct Input {
    tls12: bool,
    /// Plaintext writes the client makes after the handshake.
    writes: Vec<Vec<u8>>,
    /// Where the client's byte stream is cut into reads (lengths).
    cuts: Vec<u16>,
    /// Bytes to corrupt: (offset into the stream, xor mask).
    flips: Vec<(u16, u8)>,
    close_notify: bool,
    /// Leave the record layer to rustls.
    rustls_records: bool,
    /// Before which writes the client updates its keys (bit i: write i).
    key_updates: u16,
}

struct Configs {
    server: Arc<ServerConfig>,
    tls12: Arc<ClientConfig>,
    tls13: Arc<ClientConfig>,
}

fn configs() -> &'static Configs {
    static CONFIGS: OnceLock<Configs> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
        let server = ringloop::tls::ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
            .unwrap()
            .build()
            .unwrap();
        let client = |versions: &[&'static rustls::SupportedProtocolVersion]| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.cert.der().clone()).unwrap();
            Arc::new(
                ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
            )
        };
        Configs {
            server: Arc::new(server),
            tls12: client(&[&rustls::version::TLS12]),
            tls13: client(&[&rustls::version::TLS13]),
        }
    })
}

/// Moves everything the server wrote to its socket into the client.
fn server_to_client(peer: &mut UnixStream, client: &mut ClientConnection) -> bool {
    let mut buf = [0u8; 16384];
    loop {
        match peer.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                let mut data = &buf[..n];
                while !data.is_empty() {
                    if client.read_tls(&mut data).is_err() || client.process_new_packets().is_err()
                    {
                        return false;
                    }
                }
            }
            Err(_) => return true,
        }
    }
}

fuzz_target!(|input: Input| {
    let configs = configs();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    let mut server =
        ServerSide::with_record_layer(&configs.server, ours.into(), !input.rustls_records).unwrap();
    let config = if input.tls12 {
        &configs.tls12
    } else {
        &configs.tls13
    };
    let mut client =
        ClientConnection::new(config.clone(), ServerName::try_from("localhost").unwrap()).unwrap();

    let corrupt = !input.flips.is_empty();
    let mut cuts = input
        .cuts
        .iter()
        .map(|&c| usize::from(c % 2048) + 1)
        .cycle();
    let mut offset = 0usize; // position in the client's byte stream
    let mut sent_plain = Vec::new();
    let mut writes = input.writes.iter().take(16).enumerate();
    let mut closed = false;
    // Whether the server wrote its "." and whether the peer had closed then.
    let mut hello: Option<bool> = None;
    for _round in 0..64 {
        if !client.is_handshaking() && !closed {
            match writes.next() {
                Some((i, w)) => {
                    if input.key_updates & (1 << i) != 0 && !input.tls12 {
                        client.refresh_traffic_keys().unwrap();
                    }
                    let w = &w[..w.len().min(8192)];
                    use std::io::Write;
                    client.writer().write_all(w).unwrap();
                    sent_plain.extend_from_slice(w);
                }
                None => {
                    if input.close_notify {
                        client.send_close_notify();
                    }
                    closed = true;
                }
            }
        }
        let mut stream = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut stream).unwrap();
        }
        for &(at, mask) in &input.flips {
            let at = usize::from(at);
            if at >= offset && at < offset + stream.len() {
                stream[at - offset] ^= mask | 1;
            }
        }
        offset += stream.len();
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
            if server.feed(&rest[..n]).is_err() {
                assert!(corrupt, "clean input failed: {input:?}");
                return;
            }
            rest = &rest[n..];
        }
        if hello.is_none() && !server.is_handshaking() {
            server.write(b".").unwrap();
            hello = Some(server.peer_closed());
        }
        if !server_to_client(&mut peer, &mut client) {
            assert!(corrupt, "the client refused the server's records");
            return;
        }
        if closed && !client.wants_write() {
            break;
        }
    }
    if corrupt {
        // Whatever got through was authenticated: a prefix of what was sent.
        assert!(sent_plain.starts_with(server.plaintext()));
        return;
    }
    assert!(!server.is_handshaking(), "the handshake did not complete");
    // TLS 1.3 hands off at the "." (every round ends with whole records
    // read), unless the peer had closed by then.
    assert_eq!(
        server.handed_off(),
        !input.tls12 && !input.rustls_records && hello == Some(false),
        "hand-off: {input:?}"
    );
    assert_eq!(server.plaintext(), &sent_plain[..], "plaintext differs");
    assert_eq!(server.peer_closed(), input.close_notify);
    // And back: the server's writes reach the client intact.
    server.write(b"pong").unwrap();
    assert!(server_to_client(&mut peer, &mut client));
    let mut back = [0u8; 5];
    if server.queued() == 0 {
        client.reader().read_exact(&mut back).unwrap();
        assert_eq!(&back, b".pong");
    }
});
