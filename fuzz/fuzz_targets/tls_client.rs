//! The loop's own TLS 1.3 record layer on the client side
//! (`tls/handoff.rs`): a dial's session, handed off right after its
//! handshake with a real rustls server, fed records sealed under that
//! server's application traffic key (from rustls's secrets) whose content
//! types, contents and padding come from the input (application data,
//! alerts of any level and description, handshake messages: tickets,
//! KeyUpdates, anything, cut across records), with raw bytes and records
//! with a bit flipped mixed in, cut into reads at arbitrary points.
//! Checks: nothing panics; each read gives `Ok` or a typed
//! `rustls::Error` and, once an error came, every later read gives one;
//! the plaintext delivered is a prefix of the application data sealed
//! before the first raw bytes or record flipped where the AEAD covers it
//! (nothing unauthenticated gets through, nothing is reordered).
#![no_main]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ringloop::tls::fuzzing::ClientSide;
use rustls::{ClientConfig, ConnectionTrafficSecrets, ServerConfig, ServerConnection};

#[derive(Arbitrary, Debug)]
enum Piece {
    /// Application data in one record.
    Data(Vec<u8>),
    /// A record of any inner content type, content and padding.
    Record {
        kind: u8,
        content: Vec<u8>,
        padding: u8,
    },
    /// An alert record (level, description).
    Alert(u8, u8),
    /// A NewSessionTicket (valid or not, from the bytes) cut across two
    /// records at `cut`.
    Ticket { cut: u8, body: Vec<u8> },
    /// A KeyUpdate message of this request byte.
    KeyUpdate(u8),
    /// Raw bytes on the wire.
    Raw(Vec<u8>),
    /// An application data record with bit `bit` flipped.
    Flipped { content: Vec<u8>, bit: u16 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    pieces: Vec<Piece>,
    /// Where the stream is cut into reads (lengths).
    cuts: Vec<u16>,
}

struct Configs {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

fn configs() -> &'static Configs {
    static CONFIGS: OnceLock<Configs> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
        let mut server =
            ringloop::tls::ServerTls::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())
                .unwrap()
                .build()
                .unwrap();
        // No ticket sealed before the sealer takes over: its sequence
        // numbers are the ones the dial expects.
        server.send_tls13_tickets = 0;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let mut client =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        client.enable_secret_extraction = true;
        Configs {
            server: Arc::new(server),
            client: Arc::new(client),
        }
    })
}

/// The server's record protection, made here with `ring` from the
/// secrets rustls hands out.
struct Sealer {
    key: ring::aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Sealer {
    fn new((seq, secrets): (u64, ConnectionTrafficSecrets)) -> Self {
        use ring::aead;
        let (algorithm, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => panic!("a suite the target does not seal"),
        };
        let key = aead::UnboundKey::new(algorithm, key.as_ref()).unwrap();
        Self {
            key: aead::LessSafeKey::new(key),
            iv: iv.as_ref().try_into().unwrap(),
            seq,
        }
    }

    /// One record of inner type `kind` carrying `data` (at most 16 KiB)
    /// and `padding` zeros.
    fn seal(&mut self, kind: u8, data: &[u8], padding: usize) -> Vec<u8> {
        let mut nonce = self.iv;
        for (b, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        let mut body = data.to_vec();
        body.push(kind);
        body.resize(body.len() + padding, 0);
        let len = body.len() + 16;
        let header = [23, 3, 3, (len >> 8) as u8, len as u8];
        self.key
            .seal_in_place_append_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(header),
                &mut body,
            )
            .unwrap();
        [&header[..], &body].concat()
    }
}

/// Everything the dial wrote, taken in by the server.
fn server_takes_in(peer: &mut UnixStream, server: &mut ServerConnection) {
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n @ 1..) = peer.read(&mut buf) {
        let mut data = &buf[..n];
        while !data.is_empty() {
            server.read_tls(&mut data).unwrap();
            server.process_new_packets().unwrap();
        }
    }
}

fuzz_target!(|input: Input| {
    let configs = configs();
    let (ours, mut peer) = UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    peer.set_nonblocking(true).unwrap();
    let mut client = ClientSide::new(&configs.client, ours.into()).unwrap();
    let mut server = ServerConnection::new(configs.server.clone()).unwrap();
    server_takes_in(&mut peer, &mut server);
    let mut flight = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut flight).unwrap();
    }
    client.feed(&flight).unwrap();
    assert!(!client.is_handshaking());
    server_takes_in(&mut peer, &mut server);
    client.write(b"x").unwrap();
    assert!(client.handed_off());
    let mut sealer = Sealer::new(server.dangerous_extract_secrets().unwrap().tx);

    let mut wire = Vec::new();
    let mut expect = Vec::new();
    let mut intact = true;
    for piece in input.pieces.iter().take(64) {
        let cap = |b: &[u8]| b[..b.len().min(16 * 1024)].to_vec();
        match piece {
            Piece::Data(data) => {
                let data = cap(data);
                wire.extend(sealer.seal(23, &data, 0));
                if intact {
                    expect.extend(data);
                }
            }
            Piece::Record {
                kind,
                content,
                padding,
            } => {
                let content = cap(content);
                wire.extend(sealer.seal(*kind, &content, usize::from(*padding)));
                // The content type is the last byte not zero (a type of 0
                // is padding, RFC 8446 §5.4): what the record really is.
                let inner = [&content[..], &[*kind]].concat();
                if let Some(end) = inner.iter().rposition(|&b| b != 0) {
                    if intact && inner[end] == 23 {
                        expect.extend_from_slice(&inner[..end]);
                    }
                }
            }
            Piece::Alert(level, description) => {
                wire.extend(sealer.seal(21, &[*level, *description], 0));
            }
            Piece::Ticket { cut, body } => {
                let body = &body[..body.len().min(1000)];
                let mut message = vec![4, 0, (body.len() >> 8) as u8, body.len() as u8];
                message.extend_from_slice(body);
                let cut = usize::from(*cut).min(message.len());
                for part in [&message[..cut], &message[cut..]] {
                    if !part.is_empty() {
                        wire.extend(sealer.seal(22, part, 0));
                    }
                }
            }
            Piece::KeyUpdate(request) => {
                wire.extend(sealer.seal(22, &[24, 0, 0, 1, *request], 0));
            }
            Piece::Raw(bytes) => {
                wire.extend_from_slice(&bytes[..bytes.len().min(20_000)]);
                intact &= bytes.is_empty();
            }
            Piece::Flipped { content, bit } => {
                let content = cap(content);
                let mut record = sealer.seal(23, &content, 0);
                let bit = usize::from(*bit) % (record.len() * 8);
                record[bit / 8] ^= 1 << (bit % 8);
                wire.extend(record);
                // A flip that makes the outer type handshake or alert
                // (bits 0, 1) or changes the version's low byte leaves a
                // record that opens as it would on rustls (its additional
                // data is an application data header of its length
                // whatever the header says): still authentic.
                if bit < 2 || bit / 8 == 2 {
                    if intact {
                        expect.extend(content);
                    }
                } else {
                    intact = false;
                }
            }
        }
    }

    let mut cuts = input
        .cuts
        .iter()
        .map(|&c| usize::from(c % 4096) + 1)
        .cycle();
    let mut failed = None;
    let mut rest = &wire[..];
    while !rest.is_empty() {
        let n = cuts.next().unwrap_or(rest.len()).min(rest.len());
        match client.feed(&rest[..n]) {
            Ok(()) => assert!(failed.is_none(), "Ok after {failed:?}"),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
        rest = &rest[n..];
    }
    if failed.is_some() {
        assert!(client.feed(b"").is_err(), "a failed session stays failed");
    }
    assert!(
        expect.starts_with(client.plaintext()),
        "{:?} delivered, not a prefix of the {} bytes sealed intact: {input:?}",
        client.plaintext(),
        expect.len()
    );
});
