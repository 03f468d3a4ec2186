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
    /// Every byte the server sent, as the client read it.
    wire: Vec<u8>,
    /// The client's secrets (its key log), to seal records as it would.
    keys: Arc<Keys>,
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
    let mut client_config = ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let keys = Arc::new(Keys::default());
    client_config.key_log = keys.clone();
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
        wire: Vec::new(),
        keys,
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
                    self.wire.extend_from_slice(&buf[..n]);
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

    /// A sealer of records as the client's (TLS 1.3) from its first
    /// application traffic secret: valid while the client itself has
    /// sealed no application data and no KeyUpdate.
    fn client_sealer(&self) -> Sealer {
        let suite = self.client.negotiated_cipher_suite().unwrap();
        Sealer::from_secret(suite, &self.keys.secret("CLIENT_TRAFFIC_SECRET_0"))
    }

    /// What the client makes of what the server sent since: the error it
    /// fails with (`AlertReceived` for an alert), if any.
    fn client_sees(&mut self) -> Option<rustls::Error> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = self.peer.read(&mut buf).unwrap_or(0);
        self.client.read_tls(&mut &buf[..n]).unwrap();
        self.client.process_new_packets().err()
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
        // A plaintext alert record after the handshake: opened as
        // protected, as rustls opens it (it fails).
        (vec![21, 3, 3, 0, 2, 2, 40], "DecryptError"),
        // A declared length beyond the record limit, at or above rustls's
        // own header limit (its error from the header); below it, read
        // whole and opened, as rustls does (it fails to open).
        (vec![23, 3, 3, 0x48, 0x01], "MessageTooLarge"),
        (
            [&[23, 3, 3, 0x41, 0x01][..], &[0; 0x4101]].concat(),
            "DecryptError",
        ),
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

/// The body lengths of the whole records in `wire`, in order.
fn record_lengths(wire: &[u8]) -> Vec<usize> {
    let mut lengths = Vec::new();
    let mut at = 0;
    while let Some(header) = wire.get(at..at + 5) {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if at + 5 + len > wire.len() {
            break;
        }
        lengths.push(len);
        at += 5 + len;
    }
    lengths
}

/// A sealed KeyUpdate's body: the 5-byte message, its content type and
/// the tag (a record of 5 bytes of application data has the same length:
/// the tests below never send one).
const KEY_UPDATE_RECORD: usize = 5 + 1 + 16;

/// Deterministic bytes, different per seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Holds the write-key limit knob (process-wide) for one test, and gives
/// the suite's limit back when dropped.
struct WriteKeyLimit(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

static WRITE_KEY_LIMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl WriteKeyLimit {
    fn set(records: u64) -> Self {
        let guard = WRITE_KEY_LIMIT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        super::fuzzing::set_write_key_limit(records);
        Self(guard)
    }
}

impl Drop for WriteKeyLimit {
    fn drop(&mut self) {
        super::fuzzing::set_write_key_limit(u64::MAX);
    }
}

/// Our own KeyUpdate when the write key reaches its limit (4 records here
/// through the test knob; the suite's confidentiality limit less a margin
/// otherwise, the same code): exactly 4 records between two KeyUpdates on
/// the wire, in single-record writes and inside one large write, and the
/// rustls client (which checks every record under the key it expects)
/// reads every byte. Data and the client's own key updates go the other
/// way throughout.
#[test]
fn our_write_key_is_updated_at_its_limit_and_the_peer_follows() {
    let _limit = WriteKeyLimit::set(4);
    let mut p = pair(false, true);
    assert!(p.server.handed_off());
    p.wire.clear();
    let mut down = Vec::new();
    for i in 0..60u64 {
        // Never 5 bytes: such a record would look like a KeyUpdate.
        let message = bytes(i, 6 + (i as usize * 13) % 700);
        p.server.write(&message).unwrap();
        down.extend_from_slice(&message);
    }
    p.exchange().unwrap();
    assert!(p.client_reads() == down, "60 records across key updates");
    let lengths = record_lengths(&p.wire);
    let updates: Vec<usize> = (0..lengths.len())
        .filter(|&i| lengths[i] == KEY_UPDATE_RECORD)
        .collect();
    assert_eq!(lengths.len(), 60 + updates.len(), "{lengths:?}");
    assert!(updates.len() >= 14, "{} key updates", updates.len());
    for gap in updates.windows(2) {
        assert_eq!(gap[1] - gap[0], 5, "4 records per key: {updates:?}");
    }
    // One write of 7 full records and a bit: key updates in its midst.
    let big = bytes(99, 7 * 16 * 1024 + 100);
    for round in 0..3u8 {
        p.client.refresh_traffic_keys().unwrap();
        p.round_trip(&bytes(u64::from(round), 30_000), &big);
    }
}

/// The peer's KeyUpdate (update_requested) crossing our records in
/// flight: what we sealed before it arrived is under the old key (the
/// peer still reads it), our answer comes next and moves our write key,
/// and what we seal after it is under the new one; six times, with data
/// both ways each time.
#[test]
fn peer_key_updates_crossing_our_records_in_flight() {
    let mut p = pair(false, true);
    for i in 0..6u64 {
        p.client.refresh_traffic_keys().unwrap();
        let up = bytes(i, 1000 + i as usize * 5000);
        p.client.writer().write_all(&up).unwrap();
        let before = bytes(100 + i, 20_000);
        p.server.write(&before).unwrap();
        let mut c2s = Vec::new();
        while p.client.wants_write() {
            p.client.write_tls(&mut c2s).unwrap();
        }
        let read = p.server.plaintext().len();
        p.server.feed(&c2s).unwrap();
        assert!(p.server.plaintext()[read..] == up[..], "round {i}: up");
        let after = bytes(200 + i, 7 + i as usize * 3000);
        p.server.write(&after).unwrap();
        p.exchange().unwrap();
        assert!(
            p.client_reads() == [before, after].concat(),
            "round {i}: down"
        );
    }
}

/// Every split of the record stream: the client's records (1 byte, 100
/// bytes, a full record, a KeyUpdate, 3 bytes, two records' worth) fed to
/// the handed-off server one byte per read; the plaintext comes out
/// byte-exact, the KeyUpdate is followed (its answer sent: the client
/// reads what comes after it).
#[test]
fn records_fed_one_byte_per_read() {
    let mut p = pair(false, true);
    p.round_trip(b"ping", b"pong");
    let mut stream = Vec::new();
    let mut expect = Vec::new();
    for (i, len) in [1, 100, 16 * 1024, 3, 20_000].into_iter().enumerate() {
        if i == 3 {
            p.client.refresh_traffic_keys().unwrap();
        }
        let data = bytes(i as u64, len);
        p.client.writer().write_all(&data).unwrap();
        expect.extend_from_slice(&data);
        while p.client.wants_write() {
            p.client.write_tls(&mut stream).unwrap();
        }
    }
    let before = p.server.plaintext().len();
    for byte in &stream {
        p.server.feed(std::slice::from_ref(byte)).unwrap();
    }
    assert!(p.server.plaintext()[before..] == expect[..]);
    p.exchange().unwrap();
    p.server.write(b"after the update").unwrap();
    p.exchange().unwrap();
    assert_eq!(p.client_reads(), b"after the update");
    p.round_trip(b"more", b"and more");
}

/// A client session (a `tls://` dial's) driven as the loop drives it,
/// handing off as soon as it may, its records to `socket`.
struct ClientSide {
    /// The peer's end of the socket, kept open when the peer itself is
    /// gone (see [`handed_dial_and_sealer`]).
    peer_end: Option<UnixStream>,
    session: super::TlsSession,
    socket: std::os::fd::OwnedFd,
    queue: crate::buffer::OutboundQueue,
    plaintext: Vec<u8>,
}

impl ClientSide {
    fn new(config: &Arc<ClientConfig>, socket: UnixStream) -> Self {
        let mut session = super::TlsConnector::new(config.clone())
            .session("localhost", true)
            .unwrap();
        session.hand_off_at_once();
        socket.set_nonblocking(true).unwrap();
        let mut client = Self {
            peer_end: None,
            session,
            socket: socket.into(),
            queue: Default::default(),
            plaintext: Vec::new(),
        };
        client.send();
        client
    }

    /// What the session owes the peer (the ClientHello, a Finished, a
    /// KeyUpdate answer) to the socket.
    fn send(&mut self) {
        use std::os::fd::AsFd;
        let mut to = super::sink::sink(self.socket.as_fd(), &mut self.queue, 1 << 20, true);
        self.session.send(&mut to).unwrap();
        assert_eq!(self.queue.len(), 0, "the socket took every record");
    }

    /// One read's worth of ciphertext, then what it owes the peer.
    fn feed(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
        let mut input = data.to_vec();
        let mut input = &mut input[..];
        let mut out = [0u8; 1000];
        loop {
            let pumped = self.session.pump(input, &mut out)?;
            input = &mut [];
            let _ = self.session.take_opened();
            self.send();
            self.plaintext.extend_from_slice(&out[..pumped.plain]);
            if pumped.peer_closed || !pumped.more {
                return Ok(());
            }
        }
    }

    fn write(&mut self, data: &[u8]) {
        use std::os::fd::AsFd;
        let mut to = super::sink::sink(self.socket.as_fd(), &mut self.queue, 1 << 20, true);
        self.session.write(&[data], &mut to).unwrap();
        assert_eq!(self.queue.len(), 0, "the socket took every record");
    }
}

/// A rustls server (buffered, checking every record) facing a
/// [`ClientSide`] over a Unix socket pair.
struct ServerPeer {
    server: rustls::ServerConnection,
    peer: UnixStream,
    /// Plaintext the server decrypted.
    received: Vec<u8>,
}

impl ServerPeer {
    fn new(config: &Arc<rustls::ServerConfig>, peer: UnixStream) -> Self {
        peer.set_nonblocking(true).unwrap();
        Self {
            server: rustls::ServerConnection::new(config.clone()).unwrap(),
            peer,
            received: Vec::new(),
        }
    }

    /// Reads what the client sent and processes it (nothing is sent back).
    fn take_in(&mut self) {
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n @ 1..) = self.peer.read(&mut buf) {
            let mut records = &buf[..n];
            while !records.is_empty() {
                self.server.read_tls(&mut records).unwrap();
                self.server.process_new_packets().unwrap();
                let mut plain = [0u8; 4096];
                while let Ok(k @ 1..) = self.server.reader().read(&mut plain) {
                    self.received.extend_from_slice(&plain[..k]);
                }
            }
        }
    }

    /// Everything the server has to send, encoded (not sent).
    fn take_out(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        while self.server.wants_write() {
            self.server.write_tls(&mut out).unwrap();
        }
        out
    }
}

/// A server config for `localhost` sending `tickets` TLS 1.3 tickets
/// (stateful: the server's session cache resumes them), and a client
/// config trusting it with its own resumption store.
fn configs(tickets: usize) -> (Arc<rustls::ServerConfig>, Arc<ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let mut server = super::ServerTls::from_pem(
        cert.cert.pem().as_bytes(),
        cert.key_pair.serialize_pem().as_bytes(),
    )
    .unwrap()
    .build()
    .unwrap();
    server.send_tls13_tickets = tickets;
    let mut roots = RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let mut client = ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.enable_secret_extraction = true;
    (Arc::new(server), Arc::new(client))
}

/// A dial's handshake to its end: ClientHello, the server's flight, the
/// client's Finished (taken in by the server, whose answer, the session
/// tickets, is held back and returned).
fn dial(
    server_config: &Arc<rustls::ServerConfig>,
    client_config: &Arc<ClientConfig>,
) -> (ClientSide, ServerPeer, Vec<u8>) {
    let (a, b) = UnixStream::pair().unwrap();
    let mut client = ClientSide::new(client_config, a);
    let mut server = ServerPeer::new(server_config, b);
    server.take_in();
    let flight = server.take_out();
    client.feed(&flight).unwrap();
    assert!(!client.session.is_handshaking());
    server.take_in();
    assert!(!server.server.is_handshaking());
    let held = server.take_out();
    (client, server, held)
}

/// NewSessionTickets that reach a dial after it handed its record layer
/// off (the server's five tickets held back until the client had sealed
/// 40 records on its own, then fed one byte per read, so their record is
/// split across reads): the stream goes on byte-exact both ways, and the tickets
/// are stored (in rustls's resumption store, as the module docs say): the
/// next dial resumes. The control: a dial whose tickets never came does
/// not.
#[test]
fn tickets_after_a_dial_handed_off_are_stored_and_the_stream_goes_on() {
    let (server_config, client_config) = configs(5);
    let (mut client, mut server, held) = dial(&server_config, &client_config);
    // rustls puts the five in one record: five messages for the layer to
    // take apart, each record cut across reads below.
    assert!(!record_lengths(&held).is_empty(), "the tickets held");
    let up: Vec<u8> = (0..40u64)
        .flat_map(|i| bytes(i, 1 + i as usize * 31))
        .collect();
    for i in 0..40u64 {
        client.write(&bytes(i, 1 + i as usize * 31));
    }
    assert!(client.session.handed_off());
    server.take_in();
    assert!(server.received == up);
    server
        .server
        .writer()
        .write_all(b"after the tickets")
        .unwrap();
    let mut down = held;
    down.extend(server.take_out());
    for byte in &down {
        client.feed(std::slice::from_ref(byte)).unwrap();
    }
    assert_eq!(client.plaintext, b"after the tickets");
    client.write(b"still talking");
    server.take_in();
    assert!(server.received.ends_with(b"still talking"));
    let (_, resumed, _) = dial(&server_config, &client_config);
    assert_eq!(
        resumed.server.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed)
    );

    // The control: tickets never delivered, nothing to resume.
    let (server_config, client_config) = configs(5);
    let (mut client, _server, _held) = dial(&server_config, &client_config);
    client.write(b"no tickets");
    let (_, full, _) = dial(&server_config, &client_config);
    assert_eq!(
        full.server.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
}

/// A client session store counting the TLS 1.3 tickets rustls stores.
#[derive(Debug)]
struct CountingStore {
    inner: rustls::client::ClientSessionMemoryCache,
    tickets: std::sync::atomic::AtomicUsize,
}

impl rustls::client::ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, name: ServerName<'static>, group: rustls::NamedGroup) {
        self.inner.set_kx_hint(name, group);
    }
    fn kx_hint(&self, name: &ServerName<'_>) -> Option<rustls::NamedGroup> {
        self.inner.kx_hint(name)
    }
    fn set_tls12_session(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls12ClientSessionValue,
    ) {
        self.inner.set_tls12_session(name, value);
    }
    fn tls12_session(
        &self,
        name: &ServerName<'_>,
    ) -> Option<rustls::client::Tls12ClientSessionValue> {
        self.inner.tls12_session(name)
    }
    fn remove_tls12_session(&self, name: &ServerName<'static>) {
        self.inner.remove_tls12_session(name);
    }
    fn insert_tls13_ticket(
        &self,
        name: ServerName<'static>,
        value: rustls::client::Tls13ClientSessionValue,
    ) {
        // Relaxed: read by the same thread.
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.insert_tls13_ticket(name, value);
    }
    fn take_tls13_ticket(
        &self,
        name: &ServerName<'static>,
    ) -> Option<rustls::client::Tls13ClientSessionValue> {
        self.inner.take_tls13_ticket(name)
    }
}

/// A server's record protection made here with `ring` from the secrets
/// rustls hands out, for records rustls's own server never sends.
struct Sealer {
    key: ring::aead::LessSafeKey,
    iv: [u8; 12],
    seq: u64,
}

impl Sealer {
    fn new((seq, secrets): (u64, rustls::ConnectionTrafficSecrets)) -> Self {
        let (algorithm, key, iv) = match secrets {
            rustls::ConnectionTrafficSecrets::Aes128Gcm { key, iv } => {
                (&ring::aead::AES_128_GCM, key, iv)
            }
            rustls::ConnectionTrafficSecrets::Aes256Gcm { key, iv } => {
                (&ring::aead::AES_256_GCM, key, iv)
            }
            rustls::ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&ring::aead::CHACHA20_POLY1305, key, iv)
            }
            _ => panic!("a suite the test does not seal"),
        };
        let key = ring::aead::UnboundKey::new(algorithm, key.as_ref()).unwrap();
        Self {
            key: ring::aead::LessSafeKey::new(key),
            iv: iv.as_ref().try_into().unwrap(),
            seq,
        }
    }

    /// A sealer from a TLS 1.3 application traffic secret (as a key log
    /// gives it) of `suite`, at sequence number 0: its key and IV by
    /// HKDF-Expand-Label (RFC 8446 §7.3), made here from the RFC.
    fn from_secret(suite: rustls::SupportedCipherSuite, secret: &[u8]) -> Self {
        use ring::{aead, hkdf};
        let (hash, algorithm) = match suite.suite() {
            rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => {
                (hkdf::HKDF_SHA384, &aead::AES_256_GCM)
            }
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => {
                (hkdf::HKDF_SHA256, &aead::AES_128_GCM)
            }
            rustls::CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => {
                (hkdf::HKDF_SHA256, &aead::CHACHA20_POLY1305)
            }
            other => panic!("{other:?}: a suite the test does not seal"),
        };
        let prk = hkdf::Prk::new_less_safe(hash, secret);
        let expand = |label: &[u8], len: usize| {
            let label = [&b"tls13 "[..], label].concat();
            let length = (len as u16).to_be_bytes();
            let info = [&length[..], &[label.len() as u8], &label, &[0]].concat();
            let mut out = vec![0u8; len];
            prk.expand(&[&info], OutputLength(len))
                .unwrap()
                .fill(&mut out)
                .unwrap();
            out
        };
        let key = aead::UnboundKey::new(algorithm, &expand(b"key", algorithm.key_len())).unwrap();
        Self {
            key: aead::LessSafeKey::new(key),
            iv: expand(b"iv", 12).try_into().unwrap(),
            seq: 0,
        }
    }

    /// One record of inner type `kind` carrying `data`.
    fn seal(&mut self, kind: u8, data: &[u8]) -> Vec<u8> {
        self.seal_padded(kind, data, 0)
    }

    /// The same with `padding` zeros after the content type.
    fn seal_padded(&mut self, kind: u8, data: &[u8], padding: usize) -> Vec<u8> {
        let mut nonce = self.iv;
        for (b, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *b ^= s;
        }
        self.seq += 1;
        let len = data.len() + 1 + padding + 16;
        let header = [23, 3, 3, (len >> 8) as u8, len as u8];
        let mut body = data.to_vec();
        body.push(kind);
        body.resize(body.len() + padding, 0);
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

/// How many bytes an HKDF expansion gives.
struct OutputLength(usize);

impl ring::hkdf::KeyType for OutputLength {
    fn len(&self) -> usize {
        self.0
    }
}

/// A key log keeping every secret a rustls peer logs, by label.
#[derive(Debug, Default)]
struct Keys(std::sync::Mutex<Vec<(String, Vec<u8>)>>);

impl rustls::KeyLog for Keys {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let mut keys = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.push((label.to_string(), secret.to_vec()));
    }
}

impl Keys {
    /// The last secret logged under `label`.
    fn secret(&self, label: &str) -> Vec<u8> {
        let keys = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = keys.iter().rev().find(|(l, _)| l == label);
        found.expect("the secret was logged").1.clone()
    }
}

/// A NewSessionTicket message (handshake header and body): an hour's
/// lifetime, `nonce`, a 16-byte opaque ticket, no extensions.
fn new_session_ticket(nonce: u8) -> Vec<u8> {
    let mut body = vec![0, 0, 0x0e, 0x10, 1, 2, 3, 4, 1, nonce, 0, 16];
    body.extend_from_slice(&[nonce; 16]);
    body.extend_from_slice(&[0, 0]);
    let mut message = vec![4, 0, 0, body.len() as u8];
    message.extend(body);
    message
}

/// A dial handed off with no ticket yet (its server sends none), and a
/// hand-made record layer for that server (its secrets from rustls,
/// sealed here) to send what rustls's server never does.
fn handed_dial_and_sealer() -> (ClientSide, Sealer, Arc<CountingStore>) {
    let (server_config, client_config) = configs(0);
    let store = Arc::new(CountingStore {
        inner: rustls::client::ClientSessionMemoryCache::new(8),
        tickets: Default::default(),
    });
    let mut client_config = (*client_config).clone();
    client_config.resumption = rustls::client::Resumption::store(store.clone());
    let (mut client, server, held) = dial(&server_config, &Arc::new(client_config));
    assert!(held.is_empty(), "no tickets from this server");
    client.write(b"x");
    assert!(client.session.handed_off());
    let secrets = server.server.dangerous_extract_secrets().unwrap();
    client.peer_end = Some(server.peer);
    (client, Sealer::new(secrets.tx), store)
}

/// Tickets the way rustls's server never sends them, to a dial after its
/// hand-off, 200 records into the server's stream: one cut across two
/// records (with a record boundary inside its header), two in one record;
/// every byte fed one per read. The three are stored (the session store
/// counts them) and the data around them arrives byte-exact.
#[test]
fn tickets_split_across_records_or_sharing_one_are_stored() {
    let (mut client, mut server, store) = handed_dial_and_sealer();
    let mut wire = Vec::new();
    let mut expect = Vec::new();
    for i in 0..200u64 {
        let data = bytes(i, 1 + (i as usize * 37) % 3000);
        wire.extend(server.seal(23, &data));
        expect.extend(data);
    }
    let first = new_session_ticket(1);
    wire.extend(server.seal(22, &first[..2]));
    wire.extend(server.seal(22, &first[2..]));
    wire.extend(server.seal(23, b"between"));
    expect.extend_from_slice(b"between");
    wire.extend(server.seal(22, &[new_session_ticket(2), new_session_ticket(3)].concat()));
    wire.extend(server.seal(23, b"after"));
    expect.extend_from_slice(b"after");
    for byte in &wire {
        client.feed(std::slice::from_ref(byte)).unwrap();
    }
    assert!(client.plaintext == expect);
    // Relaxed: stored on this thread.
    assert_eq!(store.tickets.load(std::sync::atomic::Ordering::Relaxed), 3);
}

/// What breaks the rules around a ticket ends the dial's session with a
/// typed error: application data inside a ticket cut across records, a
/// ticket that does not parse, a KeyUpdate not at its record's end.
#[test]
fn broken_tickets_end_the_dials_session_with_a_typed_error() {
    let (mut client, mut server, _) = handed_dial_and_sealer();
    let ticket = new_session_ticket(1);
    let mut wire = server.seal(22, &ticket[..10]);
    wire.extend(server.seal(23, b"inside a ticket"));
    let e = client.feed(&wire).unwrap_err();
    // rustls's error for it (`MessageInterleavedWithHandshakeMessage`).
    assert!(format!("{e:?}").contains("Interleaved"), "{e:?}");

    let (mut client, mut server, _) = handed_dial_and_sealer();
    let mut garbled = ticket.clone();
    garbled[4..8].fill(0xff);
    garbled.truncate(12);
    garbled[3] = 8;
    let e = client.feed(&server.seal(22, &garbled)).unwrap_err();
    assert!(matches!(e, rustls::Error::InvalidMessage(_)), "{e:?}");

    let (mut client, mut server, _) = handed_dial_and_sealer();
    let key_update_then_ticket = [&[24, 0, 0, 1, 0][..], &ticket].concat();
    let e = client
        .feed(&server.seal(22, &key_update_then_ticket))
        .unwrap_err();
    assert!(format!("{e:?}").contains("TrailingData"), "{e:?}");
}

/// A peer sending KeyUpdates with no application data between them is
/// refused at the 33rd (PeerMisbehaved::TooManyKeyUpdateRequests), as
/// rustls (and BoringSSL) refuse it, whether the loop runs the record
/// layer or rustls does: each costs a key derivation (and,
/// update_requested, an answer), so an endless run is not followed. 32 in
/// a row are followed, and data resets the count. (The loop's layer
/// followed every one: this test failed before it counted them.)
#[test]
fn key_updates_without_data_between_are_refused_after_32() {
    for own_record_layer in [true, false] {
        let mut p = pair(false, own_record_layer);
        assert_eq!(p.server.handed_off(), own_record_layer);
        for round in 0..2u8 {
            for _ in 0..32 {
                p.client.refresh_traffic_keys().unwrap();
            }
            p.round_trip(&[round; 10], &[round; 10]);
        }
        for _ in 0..33 {
            p.client.refresh_traffic_keys().unwrap();
        }
        let mut c2s = Vec::new();
        while p.client.wants_write() {
            p.client.write_tls(&mut c2s).unwrap();
        }
        let e = p.server.feed(&c2s).unwrap_err();
        assert_eq!(
            e,
            rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyKeyUpdateRequests),
            "own record layer {own_record_layer}"
        );
        // The loop's layer says why (unexpected_message, as BoringSSL
        // does); rustls closes without an alert.
        let mut alert = vec![0u8; 64 * 1024];
        let n = p.peer.read(&mut alert).unwrap_or(0);
        p.client.read_tls(&mut &alert[..n]).unwrap();
        let seen = p.client.process_new_packets().err();
        let said = own_record_layer.then_some(rustls::Error::AlertReceived(
            AlertDescription::UnexpectedMessage,
        ));
        assert_eq!(seen, said, "own record layer {own_record_layer}");
    }
}

/// The write key's limit in production is rustls's confidentiality limit
/// for the suite less 1024 records (AES-GCM: about 2^24.5; ChaCha20: none
/// to speak of), and the test knob only ever lowers it.
#[test]
fn the_write_key_limit_is_the_suites_less_a_margin() {
    let _knob = WriteKeyLimit::set(u64::MAX);
    for suite in super::provider().cipher_suites.iter().copied() {
        let Some(tls13) = suite.tls13() else {
            continue;
        };
        let expect = tls13.common.confidentiality_limit - 1024;
        assert_eq!(super::handoff::limit(suite), expect, "{:?}", suite.suite());
        assert!(expect > 1 << 23, "{:?}", suite.suite());
        super::fuzzing::set_write_key_limit(4);
        assert_eq!(super::handoff::limit(suite), 4);
        super::fuzzing::set_write_key_limit(u64::MAX);
    }
}

/// Random streams to a handed-off dial, 40 seeds: application data
/// records of 0 to 16 KiB, tickets whole, cut across up to three records
/// or several to a record, in reads of random sizes (1 byte to 3 KB). The
/// plaintext comes out byte-exact and every ticket is stored.
#[test]
fn random_streams_of_data_and_tickets_in_random_reads() {
    for seed in 1..=40u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut below = |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n as u64) as usize
        };
        let (mut client, mut server, store) = handed_dial_and_sealer();
        let mut wire = Vec::new();
        let mut expect = Vec::new();
        let mut tickets = 0;
        for step in 0..60u64 {
            match below(6) {
                0 => {
                    let together = 1 + below(3);
                    let messages: Vec<u8> = (0..together)
                        .flat_map(|t| new_session_ticket((step * 4 + t as u64) as u8))
                        .collect();
                    tickets += together;
                    let cuts = below(3);
                    let mut at = 0;
                    for _ in 0..cuts {
                        let cut = at + 1 + below(messages.len() - at - 1);
                        wire.extend(server.seal(22, &messages[at..cut]));
                        at = cut;
                        if at + 1 >= messages.len() {
                            break;
                        }
                    }
                    wire.extend(server.seal(22, &messages[at..]));
                }
                _ => {
                    let data = bytes(seed * 1000 + step, below(16 * 1024 + 1));
                    wire.extend(server.seal(23, &data));
                    expect.extend(data);
                }
            }
        }
        let mut at = 0;
        while at < wire.len() {
            let n = (1 + below(3000)).min(wire.len() - at);
            client.feed(&wire[at..at + n]).unwrap();
            at += n;
        }
        assert!(client.plaintext == expect, "seed {seed}");
        // Relaxed: stored on this thread.
        let stored = store.tickets.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(stored, tickets, "seed {seed}");
    }
}

/// Alerts to a handed-off dial: four user_canceled warnings are taken
/// (data around them arrives), the fifth ends the session with
/// `PeerMisbehaved(TooManyWarningAlertsReceived)` as rustls ends it; any
/// other alert, at warning level too, ends it with its description.
#[test]
fn warnings_are_taken_four_times_and_other_alerts_end_the_session() {
    let (mut client, mut server, _) = handed_dial_and_sealer();
    for i in 0..4u8 {
        let mut wire = server.seal(21, &[1, 90]);
        wire.extend(server.seal(23, &[i; 3]));
        client.feed(&wire).unwrap();
    }
    assert_eq!(client.plaintext, [[0; 3], [1; 3], [2; 3], [3; 3]].concat());
    let e = client.feed(&server.seal(21, &[1, 90])).unwrap_err();
    assert_eq!(
        e,
        rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyWarningAlertsReceived)
    );

    let (mut client, mut server, _) = handed_dial_and_sealer();
    let e = client.feed(&server.seal(21, &[1, 40])).unwrap_err();
    assert_eq!(
        e,
        rustls::Error::AlertReceived(AlertDescription::HandshakeFailure)
    );
}

/// Every kind of alert a peer may send after the handshake, sealed as the
/// rustls client's own records (its keys from its key log) behind a data
/// record, to a server that handed its record layer off and to one left
/// on rustls: both end with the same typed error and send the peer the
/// same alert (or none), as rustls 0.23's `process_alert` does. A warning
/// other than `user_canceled` is refused with `decode_error` (TLS 1.3
/// allows no other warning), a fatal alert (`user_canceled` too) ends the
/// session unanswered, an unknown level is refused with
/// `illegal_parameter`, an alert that does not parse with `decode_error`
/// and rustls's `InvalidMessage`. (Before, the handed-off layer ended on
/// a warning with no answer, and took a fatal `user_canceled` as a
/// warning.)
#[test]
fn alerts_are_answered_as_rustls_answers_them() {
    use rustls::Error as E;
    use rustls::InvalidMessage as M;
    use AlertDescription as A;
    let cases: Vec<(&[u8], E, Option<A>)> = vec![
        (
            &[1, 40],
            E::AlertReceived(A::HandshakeFailure),
            Some(A::DecodeError),
        ),
        (
            &[1, 255],
            E::AlertReceived(A::Unknown(255)),
            Some(A::DecodeError),
        ),
        (&[2, 90], E::AlertReceived(A::UserCanceled), None),
        (&[2, 40], E::AlertReceived(A::HandshakeFailure), None),
        (
            &[3, 40],
            E::AlertReceived(A::HandshakeFailure),
            Some(A::IllegalParameter),
        ),
        (
            &[0, 0],
            E::AlertReceived(A::CloseNotify),
            Some(A::IllegalParameter),
        ),
        (
            &[],
            E::InvalidMessage(M::MissingData("AlertLevel")),
            Some(A::DecodeError),
        ),
        (
            &[1],
            E::InvalidMessage(M::MissingData("AlertDescription")),
            Some(A::DecodeError),
        ),
        (
            &[1, 90, 7],
            E::InvalidMessage(M::TrailingData("AlertMessagePayload")),
            Some(A::DecodeError),
        ),
    ];
    for (alert, error, answer) in cases {
        for own_record_layer in [true, false] {
            let at = format!("alert {alert:?}, own record layer {own_record_layer}");
            let mut p = pair(false, own_record_layer);
            assert_eq!(p.server.handed_off(), own_record_layer, "{at}");
            let mut client = p.client_sealer();
            let before = p.server.plaintext().len();
            p.server
                .feed(&client.seal(23, b"before the alert"))
                .unwrap();
            let wire = client.seal(21, alert);
            assert_eq!(p.server.feed(&wire), Err(error.clone()), "{at}");
            assert_eq!(&p.server.plaintext()[before..], b"before the alert", "{at}");
            assert_eq!(p.client_sees(), answer.map(E::AlertReceived), "{at}");
            assert!(
                p.server.feed(b"").is_err(),
                "{at}: the session stays failed"
            );
        }
    }
    // close_notify at either level ends the stream, as rustls takes it.
    for level in [1, 2] {
        for own_record_layer in [true, false] {
            let mut p = pair(false, own_record_layer);
            let mut client = p.client_sealer();
            let mut wire = client.seal(23, b"last");
            wire.extend(client.seal(21, &[level, 0]));
            p.server.feed(&wire).unwrap();
            assert!(p.server.peer_closed(), "level {level}, {own_record_layer}");
            assert!(p.server.plaintext().ends_with(b"last"));
        }
    }
}

/// The warning count comes before the warning's kind, as in rustls: after
/// four `user_canceled`, a fifth warning of any kind is
/// `TooManyWarningAlertsReceived`. rustls sends no alert then; the
/// handed-off layer says why (unexpected_message), as it does for a run
/// of KeyUpdates.
#[test]
fn a_fifth_warning_of_any_kind_is_one_too_many() {
    for own_record_layer in [true, false] {
        let mut p = pair(false, own_record_layer);
        let mut client = p.client_sealer();
        for i in 0..4u8 {
            let mut wire = client.seal(21, &[1, 90]);
            wire.extend(client.seal(23, &[i; 3]));
            p.server.feed(&wire).unwrap();
        }
        let e = p.server.feed(&client.seal(21, &[1, 40])).unwrap_err();
        assert_eq!(
            e,
            rustls::Error::PeerMisbehaved(rustls::PeerMisbehaved::TooManyWarningAlertsReceived),
            "own record layer {own_record_layer}"
        );
        let said = own_record_layer.then_some(rustls::Error::AlertReceived(
            AlertDescription::UnexpectedMessage,
        ));
        assert_eq!(p.client_sees(), said, "own record layer {own_record_layer}");
    }
}

/// The peer's counts across the hand-off (handoff.rs, "The peer's counts
/// across the hand-off"): rustls's counters are not handed over, so the
/// loop's layer starts its own. 32 KeyUpdates in a row taken by rustls,
/// the hand-off, then 32 more taken by the loop's layer (64 with no
/// application data between), and the 65th refused; 4 `user_canceled`
/// warnings taken by rustls, 4 more by the loop's layer, the 9th refused.
/// The controls, the same sessions left on rustls, refuse the 33rd
/// KeyUpdate and the 5th warning. The test fails if the bound grows (the
/// counts reset more often) or shrinks (the counts carried over).
#[test]
fn counts_start_afresh_at_the_hand_off_and_stay_bounded() {
    for own_record_layer in [true, false] {
        let at = format!("own record layer {own_record_layer}");
        let mut p = unconnected(false, own_record_layer);
        p.exchange().unwrap();
        assert!(!p.server.is_handshaking());
        for _ in 0..32 {
            p.client.refresh_traffic_keys().unwrap();
        }
        p.exchange().unwrap();
        assert!(!p.server.handed_off());
        // The hand-off, right after rustls sealed its KeyUpdate answer
        // and this: the client reads it under the server's new key.
        p.server.write(b"hello").unwrap();
        assert_eq!(p.server.handed_off(), own_record_layer, "{at}");
        p.exchange().unwrap();
        assert_eq!(p.client_reads(), b"hello", "{at}");
        let more = if own_record_layer { 32 } else { 0 };
        for _ in 0..more {
            p.client.refresh_traffic_keys().unwrap();
        }
        p.exchange().unwrap();
        p.client.refresh_traffic_keys().unwrap();
        let mut c2s = Vec::new();
        while p.client.wants_write() {
            p.client.write_tls(&mut c2s).unwrap();
        }
        assert_eq!(
            p.server.feed(&c2s),
            Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::TooManyKeyUpdateRequests
            )),
            "{at}: KeyUpdate {} in a row",
            32 + more + 1
        );
    }
    for own_record_layer in [true, false] {
        let at = format!("own record layer {own_record_layer}");
        let mut p = unconnected(false, own_record_layer);
        p.exchange().unwrap();
        let mut client = p.client_sealer();
        let mut expect = Vec::new();
        let mut warn_and_data = |p: &mut Pair, i: u8| {
            let mut wire = client.seal(21, &[1, 90]);
            wire.extend(client.seal(23, &[i; 5]));
            expect.extend_from_slice(&[i; 5]);
            p.server.feed(&wire)
        };
        for i in 0..4 {
            warn_and_data(&mut p, i).unwrap();
        }
        assert!(!p.server.handed_off());
        p.server.write(b"hello").unwrap();
        assert_eq!(p.server.handed_off(), own_record_layer, "{at}");
        let more = if own_record_layer { 4 } else { 0 };
        for i in 4..4 + more {
            warn_and_data(&mut p, i).unwrap();
        }
        assert_eq!(
            warn_and_data(&mut p, 99),
            Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::TooManyWarningAlertsReceived
            )),
            "{at}: warning {}",
            4 + more + 1
        );
        expect.truncate(expect.len() - 5);
        assert!(p.server.plaintext() == expect, "{at}");
    }
}

/// A run of empty records that began under rustls and goes on after the
/// hand-off is counted as one run, as rustls counts it: data, 20 empty
/// records taken by rustls, the hand-off, 12 more taken by the loop's
/// layer, and the 33rd in a row refused (`TooManyEmptyFragments`, no
/// alert). The control, the same session left on rustls, refuses the same
/// record. The records before the hand-off come whole or cut into reads
/// of 1 or 7 bytes. Before, the loop's layer started its count at 0 and
/// took 32 more (the 53rd was refused).
#[test]
fn a_run_of_empty_records_goes_on_across_the_hand_off() {
    for (own_record_layer, cut) in [(true, usize::MAX), (true, 1), (true, 7), (false, 7)] {
        let at = format!("own record layer {own_record_layer}, reads of {cut}");
        let mut p = unconnected(false, own_record_layer);
        p.exchange().unwrap();
        let mut client = p.client_sealer();
        let mut wire = client.seal(23, b"data");
        for _ in 0..20 {
            wire.extend(client.seal(23, &[]));
        }
        for read in wire.chunks(cut) {
            p.server.feed(read).unwrap();
        }
        assert!(!p.server.handed_off(), "{at}");
        p.server.write(b"hello").unwrap();
        assert_eq!(p.server.handed_off(), own_record_layer, "{at}");
        let twelve: Vec<u8> = (0..12).flat_map(|_| client.seal(23, &[])).collect();
        assert_eq!(p.server.feed(&twelve), Ok(()), "{at}: 32 in a row");
        assert_eq!(
            p.server.feed(&client.seal(23, &[])),
            Err(rustls::Error::PeerMisbehaved(
                rustls::PeerMisbehaved::TooManyEmptyFragments
            )),
            "{at}: the 33rd in a row"
        );
        assert_eq!(p.client_sees(), None, "{at}: no alert");
        assert_eq!(p.server.plaintext(), b"data", "{at}");
    }
}

/// One record of a stream to a dial: inner content type, content, zeros
/// of padding after the type.
struct Record {
    kind: u8,
    content: Vec<u8>,
    padding: usize,
}

/// What is done to a sealed stream at one record (see
/// [`mutated_record_streams_to_a_dial_end_in_typed_errors`]).
#[derive(Clone, Copy, Debug)]
enum Cut {
    /// A bit flipped somewhere in the record, header included.
    Flip,
    /// The record left out.
    Drop,
    /// The record sent twice.
    Twice,
    /// Random bytes (a record header's worth or more) before it.
    Garbage,
}

/// The seeded property test of the handed-off record layer on the client
/// side (the smaller step in place of a fuzz target): 300 seeds, each a
/// valid stream to a handed-off dial (application data of 0 to 3000
/// bytes, tickets whole or cut across records, up to four
/// `user_canceled` warnings, padding) with, for most seeds, mutations of
/// the plaintext before sealing (a record's content type or content
/// replaced by random bytes, a KeyUpdate slipped in) and of the
/// ciphertext (a bit flipped, a record dropped or sent twice, garbage
/// before a record), fed in reads of random sizes (1 byte to 2 KB).
/// Properties: nothing panics; each read gives `Ok` or a typed
/// `rustls::Error`, and once an error came every later read gives one;
/// the plaintext delivered is a prefix of the application data sealed
/// intact before the ciphertext mutation (nothing unauthenticated gets
/// through, nothing is reordered); an unmutated stream is delivered
/// exactly, without error. The run must reach at least six kinds of
/// error (past the AEAD: alerts, handshake messages, content types), or
/// the mutations are not doing their work.
#[test]
fn mutated_record_streams_to_a_dial_end_in_typed_errors() {
    let mut kinds = std::collections::BTreeSet::new();
    let (mut clean, mut failed) = (0, 0);
    for seed in 1..=300u64 {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut below = |n: usize| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % n.max(1) as u64) as usize
        };
        let (mut client, mut server, _) = handed_dial_and_sealer();
        let mut records = Vec::new();
        let mut warnings = 0;
        for step in 0..(4 + below(30)) {
            let padding = if below(4) == 0 { below(300) } else { 0 };
            match below(8) {
                0 => {
                    let ticket = new_session_ticket(step as u8);
                    let cut = below(ticket.len() + 1);
                    for part in [&ticket[..cut], &ticket[cut..]] {
                        if !part.is_empty() {
                            records.push(Record {
                                kind: 22,
                                content: part.to_vec(),
                                padding,
                            });
                        }
                    }
                }
                1 if warnings < 4 => {
                    warnings += 1;
                    records.push(Record {
                        kind: 21,
                        content: vec![1, 90],
                        padding,
                    });
                }
                _ => records.push(Record {
                    kind: 23,
                    content: bytes(seed * 100 + step as u64, below(3001)),
                    padding,
                }),
            }
        }
        let plain_mutations = if seed % 8 == 0 { 0 } else { below(3) };
        for _ in 0..plain_mutations {
            let at = below(records.len());
            match below(4) {
                0 => records[at].kind = below(256) as u8,
                1 => {
                    let len = below(40);
                    records[at].content = bytes(seed * 7 + at as u64, len);
                }
                2 => records.insert(
                    at,
                    Record {
                        kind: 22,
                        content: vec![24, 0, 0, 1, below(3) as u8],
                        padding: 0,
                    },
                ),
                _ => records[at].content.truncate(below(6)),
            }
        }
        let cut = (seed % 8 != 0 && below(3) > 0).then(|| {
            let how = [Cut::Flip, Cut::Drop, Cut::Twice, Cut::Garbage][below(4)];
            (below(records.len()), how)
        });
        // The bit a flip flips, in the record as sealed. One in the outer
        // content type that makes it handshake or alert (bits 0 and 1), or
        // in the version's low byte, leaves a record that opens all the
        // same (its additional data is an application data header of its
        // length whatever the header says, as rustls makes it): no harm.
        let flip = cut.map(|(at, _)| {
            let r = &records[at];
            below((5 + r.content.len() + 1 + r.padding + 16) * 8)
        });
        let harmless =
            matches!(cut, Some((_, Cut::Flip))) && flip.is_some_and(|bit| bit < 2 || bit / 8 == 2);
        // The plaintext the records sealed intact carry, in order, up to
        // the one the ciphertext mutation hits (that one too when it is
        // sent twice: its first copy is intact).
        let intact = match cut {
            None => records.len(),
            Some(_) if harmless => records.len(),
            Some((at, Cut::Twice)) => at + 1,
            Some((at, _)) => at,
        };
        let mut expect = Vec::new();
        for r in &records[..intact] {
            // The content type is the last byte not zero (a type of 0
            // is padding, RFC 8446 §5.4): what the record really is.
            let inner = [&r.content[..], &[r.kind]].concat();
            if let Some(end) = inner.iter().rposition(|&b| b != 0) {
                if inner[end] == 23 {
                    expect.extend_from_slice(&inner[..end]);
                }
            }
        }
        let mut wire = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let sealed = server.seal_padded(r.kind, &r.content, r.padding);
            match cut {
                Some((at, how)) if at == i => match how {
                    Cut::Flip => {
                        let mut sealed = sealed;
                        let bit = flip.unwrap_or(0);
                        sealed[bit / 8] ^= 1 << (bit % 8);
                        wire.extend(sealed);
                    }
                    Cut::Drop => {}
                    Cut::Twice => {
                        wire.extend(&sealed);
                        wire.extend(sealed);
                    }
                    Cut::Garbage => {
                        wire.extend(bytes(seed * 3, 5 + below(40)));
                        wire.extend(sealed);
                    }
                },
                _ => wire.extend(sealed),
            }
        }
        let mutated = plain_mutations > 0 || cut.is_some();
        let mut error = None;
        let mut at = 0;
        while at < wire.len() {
            let n = (1 + below(2000)).min(wire.len() - at);
            match client.feed(&wire[at..at + n]) {
                Ok(()) => assert!(error.is_none(), "seed {seed}: Ok after {error:?}"),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
            at += n;
        }
        let delivered = &client.plaintext;
        assert!(
            expect.starts_with(delivered),
            "seed {seed}: {} bytes delivered, not a prefix of the {} sealed intact",
            delivered.len(),
            expect.len()
        );
        match error {
            Some(e) => {
                assert!(mutated, "seed {seed}: {e:?} from a valid stream");
                assert!(client.feed(b"").is_err(), "seed {seed}: stays failed");
                // The variant and what it wraps, up to any text.
                let kind: String = format!("{e:?}").chars().take_while(|&c| c != '"').collect();
                kinds.insert(kind);
                failed += 1;
            }
            None if !mutated => {
                assert!(*delivered == expect, "seed {seed}: the clean stream");
                clean += 1;
            }
            None => {}
        }
    }
    assert!(clean >= 30, "{clean} clean streams");
    assert!(failed >= 100, "{failed} streams failed");
    assert!(kinds.len() >= 6, "{kinds:?}");
}

/// Opened records that rustls 0.23 refuses in its own checks
/// (`into_tls13_unpadded_message`, in that order), sealed as the rustls
/// client's (its keys from its key log) after a data record, to a server
/// that handed its record layer off and to one left on rustls: both end
/// with the same typed error and send the peer the same alert (or none).
/// An inner plaintext of no content type (all zeros, RFC 8446 §5.4) is
/// `PeerMisbehaved(IllegalTlsInnerPlaintext)`, unanswered (rustls sends
/// no alert for it); a protected ChangeCipherSpec (RFC 8446 §5) is
/// `PeerMisbehaved(IllegalMiddleboxChangeCipherSpec)` with
/// unexpected_message; an inner plaintext over 2^14 + 1 bytes with its
/// padding is `PeerSentOversizedRecord` with record_overflow, whatever it
/// holds. (Before, the handed-off layer said `InvalidContentType` with
/// unexpected_message for the first, an `UnexpectedMessage` of its own
/// for the second, and took the padded 16 KiB record.) The last case, a
/// full record with its content type and no padding, is taken by both.
#[test]
fn opened_records_are_checked_as_rustls_checks_them() {
    use rustls::Error as E;
    use rustls::PeerMisbehaved as P;
    use AlertDescription as A;
    let full = [7u8; 16 * 1024];
    /// Inner content type, content, padding; the error and the alert.
    type Case<'a> = (u8, &'a [u8], usize, Option<E>, Option<A>);
    let cases: Vec<Case<'_>> = vec![
        (
            0,
            &[],
            0,
            Some(E::PeerMisbehaved(P::IllegalTlsInnerPlaintext)),
            None,
        ),
        (
            0,
            &[],
            300,
            Some(E::PeerMisbehaved(P::IllegalTlsInnerPlaintext)),
            None,
        ),
        (
            20,
            &[1],
            0,
            Some(E::PeerMisbehaved(P::IllegalMiddleboxChangeCipherSpec)),
            Some(A::UnexpectedMessage),
        ),
        (
            20,
            &[1],
            12,
            Some(E::PeerMisbehaved(P::IllegalMiddleboxChangeCipherSpec)),
            Some(A::UnexpectedMessage),
        ),
        (
            20,
            &[],
            0,
            Some(E::PeerMisbehaved(P::IllegalMiddleboxChangeCipherSpec)),
            Some(A::UnexpectedMessage),
        ),
        (
            0,
            &[],
            16 * 1024 + 1,
            Some(E::PeerSentOversizedRecord),
            Some(A::RecordOverflow),
        ),
        (
            23,
            &full,
            1,
            Some(E::PeerSentOversizedRecord),
            Some(A::RecordOverflow),
        ),
        (23, &full, 0, None, None),
    ];
    for (kind, data, padding, error, answer) in cases {
        for own_record_layer in [true, false] {
            let at = format!(
                "type {kind}, {} bytes, padding {padding}, own record layer {own_record_layer}",
                data.len()
            );
            let mut p = pair(false, own_record_layer);
            assert_eq!(p.server.handed_off(), own_record_layer, "{at}");
            let mut client = p.client_sealer();
            p.server.feed(&client.seal(23, b"before")).unwrap();
            let wire = client.seal_padded(kind, data, padding);
            assert_eq!(p.server.feed(&wire).err(), error, "{at}");
            assert_eq!(p.client_sees(), answer.map(E::AlertReceived), "{at}");
            match error {
                Some(_) => assert!(p.server.feed(b"").is_err(), "{at}: stays failed"),
                None => assert!(p.server.plaintext().ends_with(data), "{at}"),
            }
        }
    }
}

/// Runs of records and record headers from the peer, fed after a record
/// of data to a server handed off and to one left on rustls 0.23: both
/// end with the same error and send the same alert (or none), or both
/// take them. Runs of empty records (of any type: the 33rd in a row ends
/// the session, unanswered, as `ALLOWED_CONSECUTIVE_EMPTY_FRAGMENTS_MAX`
/// in rustls's `conn.rs`), a handshake message cut across records with
/// another record between its parts, inner content types rustls cannot
/// parse, a KeyUpdate of an unknown request, and the header checks of
/// rustls's `read_opaque_message_header` (content type, version, empty,
/// length), which come before the body; a record is opened whatever its
/// outer type or 0x03XX version says (the additional data is that of
/// application data, as rustls makes it), and a ChangeCipherSpec record is
/// never opened. Before, the hand-off layer took any number of empty
/// records and differed on all the others.
#[test]
fn record_runs_and_headers_are_refused_as_rustls_refuses_them() {
    use rustls::Error as E;
    use rustls::InvalidMessage as I;
    use rustls::PeerMisbehaved as P;
    use AlertDescription as A;
    type Wire = fn(&mut Sealer) -> Vec<u8>;
    /// What the peer sends; the error and alert, or, taken, the end of
    /// the plaintext.
    type Case = (&'static str, Wire, Result<&'static [u8], (E, Option<A>)>);
    /// `n` empty application data records.
    fn empty(s: &mut Sealer, n: usize) -> Vec<u8> {
        (0..n).flat_map(|_| s.seal(23, &[])).collect()
    }
    /// A record of data whose header's byte `at` is then `byte`.
    fn outer(s: &mut Sealer, at: usize, byte: u8) -> Vec<u8> {
        let mut record = s.seal(23, b"sealed as application data");
        record[at] = byte;
        record
    }
    let cases: Vec<Case> = vec![
        (
            "33 empty application data records",
            |s| empty(s, 33),
            Err((E::PeerMisbehaved(P::TooManyEmptyFragments), None)),
        ),
        (
            "32 empty, data, 32 empty",
            |s| [empty(s, 32), s.seal(23, b"between"), empty(s, 32)].concat(),
            Ok(b"between"),
        ),
        (
            "32 empty application data records, an empty handshake record",
            |s| [empty(s, 32), s.seal(22, &[])].concat(),
            Err((E::PeerMisbehaved(P::TooManyEmptyFragments), None)),
        ),
        (
            "an empty handshake record, then data",
            |s| [s.seal(22, &[]), s.seal(23, b"after")].concat(),
            Ok(b"after"),
        ),
        (
            "a KeyUpdate cut across records, data between",
            |s| [s.seal(22, &[24, 0]), s.seal(23, b"data")].concat(),
            Err((
                E::PeerMisbehaved(P::MessageInterleavedWithHandshakeMessage),
                None,
            )),
        ),
        (
            "inner content type 99",
            |s| s.seal(99, b"x"),
            Err((
                E::InvalidMessage(I::InvalidContentType),
                Some(A::DecodeError),
            )),
        ),
        (
            "inner content type heartbeat",
            |s| s.seal(24, b"x"),
            Err((
                E::InvalidMessage(I::InvalidContentType),
                Some(A::DecodeError),
            )),
        ),
        (
            "a KeyUpdate of request 5",
            |s| s.seal(22, &[24, 0, 0, 1, 5]),
            Err((
                E::InvalidMessage(I::InvalidKeyUpdate),
                Some(A::IllegalParameter),
            )),
        ),
        (
            "outer content type 99",
            |s| outer(s, 0, 99),
            Err((
                E::InvalidMessage(I::InvalidContentType),
                Some(A::DecodeError),
            )),
        ),
        (
            "outer version 0x0403",
            |s| outer(s, 1, 4),
            Err((
                E::InvalidMessage(I::UnknownProtocolVersion),
                Some(A::DecodeError),
            )),
        ),
        (
            "outer version 0x0301",
            |s| outer(s, 2, 1),
            Ok(b"sealed as application data"),
        ),
        (
            "outer content type handshake",
            |s| outer(s, 0, 22),
            Ok(b"sealed as application data"),
        ),
        (
            "outer content type alert",
            |s| outer(s, 0, 21),
            Ok(b"sealed as application data"),
        ),
        (
            "a plaintext ChangeCipherSpec",
            |_| vec![20, 3, 3, 0, 1, 1],
            Err((
                E::InappropriateMessage {
                    expect_types: vec![
                        rustls::ContentType::ApplicationData,
                        rustls::ContentType::Handshake,
                    ],
                    got_type: rustls::ContentType::ChangeCipherSpec,
                },
                Some(A::UnexpectedMessage),
            )),
        ),
        (
            "a plaintext ChangeCipherSpec of value 2",
            |_| vec![20, 3, 3, 0, 1, 2],
            Err((E::InvalidMessage(I::InvalidCcs), Some(A::DecodeError))),
        ),
        (
            "a plaintext ChangeCipherSpec of two bytes",
            |_| vec![20, 3, 3, 0, 2, 1, 1],
            Err((
                E::InvalidMessage(I::TrailingData("ChangeCipherSpecPayload")),
                Some(A::DecodeError),
            )),
        ),
        (
            "a plaintext alert",
            |_| vec![21, 3, 3, 0, 2, 2, 40],
            Err((E::DecryptError, Some(A::BadRecordMac))),
        ),
        (
            "an empty alert record",
            |_| vec![21, 3, 3, 0, 0],
            Err((
                E::InvalidMessage(I::InvalidEmptyPayload),
                Some(A::DecodeError),
            )),
        ),
        (
            "a header of length 18432",
            |_| vec![23, 3, 3, 0x48, 0],
            Err((E::InvalidMessage(I::MessageTooLarge), Some(A::DecodeError))),
        ),
        // Lengths between 2^14 + 256 and rustls's header limit: the record
        // is read whole and opened, and fails as it opens (or waits).
        (
            "a header of length 16641, its body not yet in",
            |_| [&[23, 3, 3, 0x41, 0x01][..], &[7; 9000]].concat(),
            Ok(b"before"),
        ),
        (
            "a header of length 18431, its body not yet in",
            |_| [&[23, 3, 3, 0x47, 0xff][..], &[7; 18_430]].concat(),
            Ok(b"before"),
        ),
        (
            "a record of length 16641 that does not open",
            |_| [&[23, 3, 3, 0x41, 0x01][..], &[7; 16_641]].concat(),
            Err((E::DecryptError, Some(A::BadRecordMac))),
        ),
        (
            "a record of length 18431 that does not open",
            |_| [&[23, 3, 3, 0x47, 0xff][..], &[7; 18_431]].concat(),
            Err((E::DecryptError, Some(A::BadRecordMac))),
        ),
        (
            "a record of length 16641 sealed (16,624 bytes of data)",
            |s| s.seal(23, &[7; 16_624]),
            Err((E::PeerSentOversizedRecord, Some(A::RecordOverflow))),
        ),
        (
            "a record of length 18431 sealed (padding up to it)",
            |s| s.seal_padded(23, b"x", 18_431 - 16 - 2),
            Err((E::PeerSentOversizedRecord, Some(A::RecordOverflow))),
        ),
    ];
    for (name, wire, expected) in &cases {
        for own_record_layer in [true, false] {
            let at = format!("{name}, own record layer {own_record_layer}");
            let mut p = pair(false, own_record_layer);
            assert_eq!(p.server.handed_off(), own_record_layer, "{at}");
            let mut client = p.client_sealer();
            p.server.feed(&client.seal(23, b"before")).unwrap();
            let result = p.server.feed(&wire(&mut client));
            match expected {
                Ok(end) => {
                    assert_eq!(result.err(), None, "{at}");
                    assert!(p.server.plaintext().ends_with(end), "{at}");
                    assert_eq!(p.client_sees(), None, "{at}");
                }
                Err((error, answer)) => {
                    assert_eq!(result.err().as_ref(), Some(error), "{at}");
                    assert_eq!(p.client_sees(), answer.map(E::AlertReceived), "{at}");
                    assert!(p.server.feed(b"").is_err(), "{at}: stays failed");
                }
            }
        }
    }
}

/// Application data and a fatal record after it in one read: the
/// plaintext the peer validly sent before the failure is delivered, then
/// the session fails with the fatal record's typed error, having sent the
/// alert it owes (rustls keeps plaintext received before an error
/// readable). Before, the whole read's plaintext was dropped on both
/// layers. Three kinds of fatal record (a corrupted one, a fatal alert,
/// one of no content type), behind one small record, one larger than the
/// session's 1000-byte output (the plaintext held beyond it is delivered
/// too) and three records; to a server handed off and one left on
/// rustls, and to a handed-off dial.
#[test]
fn plaintext_before_a_fatal_record_in_the_same_read_is_delivered_first() {
    use rustls::Error as E;
    use AlertDescription as A;
    type Bad = fn(&mut Sealer) -> Vec<u8>;
    let corrupted: Bad = |s| {
        let mut record = s.seal(23, b"never delivered");
        let last = record.len() - 1;
        record[last] ^= 0x10;
        record
    };
    let fatal_alert: Bad = |s| s.seal(21, &[2, 40]);
    let no_content_type: Bad = |s| s.seal_padded(0, &[], 7);
    let bads: [(&str, Bad, E, Option<A>); 3] = [
        (
            "corrupted",
            corrupted,
            E::DecryptError,
            Some(A::BadRecordMac),
        ),
        (
            "fatal alert",
            fatal_alert,
            E::AlertReceived(A::HandshakeFailure),
            None,
        ),
        (
            "no content type",
            no_content_type,
            E::PeerMisbehaved(rustls::PeerMisbehaved::IllegalTlsInnerPlaintext),
            None,
        ),
    ];
    let messages = [bytes(1, 6), bytes(2, 3000), bytes(3, 40_000)];
    for (name, bad, error, answer) in &bads {
        for message in &messages {
            for own_record_layer in [true, false] {
                let at = format!(
                    "{name} after {} bytes, own record layer {own_record_layer}",
                    message.len()
                );
                let mut p = pair(false, own_record_layer);
                let mut client = p.client_sealer();
                let before = p.server.plaintext().len();
                let mut wire = Vec::new();
                for record in message.chunks(16 * 1024) {
                    wire.extend(client.seal(23, record));
                }
                wire.extend(bad(&mut client));
                assert_eq!(p.server.feed(&wire), Err(error.clone()), "{at}");
                assert!(&p.server.plaintext()[before..] == message, "{at}");
                assert_eq!(p.client_sees(), answer.map(E::AlertReceived), "{at}");
                assert!(p.server.feed(b"").is_err(), "{at}: stays failed");
                assert!(p.server.write(b"no").is_err(), "{at}: writes refused");
            }
            let (mut dial, mut server, _) = handed_dial_and_sealer();
            let mut wire = Vec::new();
            for record in message.chunks(16 * 1024) {
                wire.extend(server.seal(23, record));
            }
            wire.extend(bad(&mut server));
            let at = format!("{name} after {} bytes, to a dial", message.len());
            assert_eq!(dial.feed(&wire), Err(error.clone()), "{at}");
            assert!(dial.plaintext == *message, "{at}");
            assert!(dial.feed(b"").is_err(), "{at}: stays failed");
        }
    }
}
