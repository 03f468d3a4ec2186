//! The loop's own TLS 1.3 record layer (`src/tls/handoff.rs`, taken from
//! rustls after 32 reads and writes) over real sockets on 127.0.0.1, on
//! the driver `RINGLOOP_BACKEND` picks, against rustls peers that check
//! every record: session tickets reaching a dial after its hand-off, key
//! updates the peer asks for and our own at the write key's limit (lowered
//! through a test knob), records that the socket takes only in part, and
//! data arriving with a fatal record behind it (delivered, then the close;
//! both layers), the alert such a close owes the peer sent after the
//! replies in flight or not taken by the sockets (bounded by the drain
//! timeout), and records of the most rustls's header check lets in,
//! refused as rustls refuses them once read whole.
//!
//! The tests share process-wide state (the hand-off count, the write-key
//! limit), so they run one at a time ([`serial`]).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use common::certs::{tls_client, TestPki};
use common::*;
use crossbeam_channel::{unbounded, Receiver};
use ringloop::tls::fuzzing::{hand_offs, set_write_key_limit};
use ringloop::Action;
use rustls::{ServerConfig, ServerConnection};

static SERIAL: Mutex<()> = Mutex::new(());

/// One test at a time; the write-key limit is the suite's again after.
struct Serial(#[allow(dead_code)] MutexGuard<'static, ()>);

fn serial() -> Serial {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    set_write_key_limit(u64::MAX);
    Serial(guard)
}

impl Drop for Serial {
    fn drop(&mut self) {
        set_write_key_limit(u64::MAX);
    }
}

/// A one-loop engine dialling `tls://` with `pki`'s client config (secret
/// extraction on, so it may hand off); every plaintext read goes to the
/// receiver.
fn dialler(pki: &TestPki, own_record_layer: bool) -> (Running, Receiver<Vec<u8>>) {
    let (tx, rx) = unbounded::<Vec<u8>>();
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                let _ = tx.send(conn.read_all().to_vec());
                Action::None
            })
            .builder()
            .loops(1)
            .tls_own_record_layer(own_record_layer)
            .tls_client(pki.client_config()),
    );
    (running, rx)
}

/// Exactly `n` bytes from the dialler's reads.
fn receive(rx: &Receiver<Vec<u8>>, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        got.extend(rx.recv_timeout(PATIENCE).expect("the echo in time"));
    }
    assert_eq!(got.len(), n, "more than was sent");
    got
}

/// 40 echoes through a dial, each checked: more than the 32 reads and
/// writes after which its record layer is handed off.
fn echo_past_the_hand_off(handle: &ringloop::ConnHandle, rx: &Receiver<Vec<u8>>) {
    for i in 0..40u64 {
        let message = payload(i, 1 + i as usize * 13);
        handle.write(message.clone()).wait().unwrap();
        assert!(receive(rx, message.len()) == message);
    }
}

/// A blocking rustls server's side of one connection.
struct Peer {
    conn: ServerConnection,
    sock: Tap,
}

impl Peer {
    /// Accepts and completes the handshake, sending nothing after the
    /// server's own flight: what rustls queues once the client's Finished
    /// is in (the session tickets) waits for [`flush`](Self::flush).
    fn accept(listener: &TcpListener, config: &Arc<ServerConfig>) -> Peer {
        let (sock, _) = listener.accept().unwrap();
        sock.set_read_timeout(Some(PATIENCE)).unwrap();
        sock.set_write_timeout(Some(PATIENCE)).unwrap();
        let mut peer = Peer {
            conn: ServerConnection::new(config.clone()).unwrap(),
            sock: Tap {
                sock,
                wire: Vec::new(),
            },
        };
        while peer.conn.is_handshaking() {
            peer.flush();
            peer.read_more();
        }
        peer
    }

    /// Sends `data` (in pieces rustls's buffer limit takes) and whatever
    /// was queued before it.
    fn send(&mut self, data: &[u8]) {
        for piece in data.chunks(16 * 1024) {
            self.conn.writer().write_all(piece).unwrap();
            self.flush();
        }
    }

    fn flush(&mut self) {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock).unwrap();
        }
    }

    /// Reads and processes one read's worth of records; `false` at EOF.
    fn read_more(&mut self) -> bool {
        match self.conn.read_tls(&mut self.sock) {
            Ok(0) => false,
            Ok(_) => {
                self.conn.process_new_packets().expect("records that open");
                true
            }
            Err(e) => panic!("server read: {e}"),
        }
    }

    /// Plaintext already decrypted.
    fn plaintext(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while let Ok(n @ 1..) = self.conn.reader().read(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// Reads until `n` bytes of plaintext came, sending nothing.
    fn read_exactly(&mut self, n: usize) -> Vec<u8> {
        let mut got = self.plaintext();
        while got.len() < n {
            assert!(self.read_more(), "EOF after {} of {n} bytes", got.len());
            got.extend(self.plaintext());
        }
        assert_eq!(got.len(), n);
        got
    }

    /// Echoes until the client closes; asks for a key update (its own
    /// and, update_requested, the client's) after every `update_every`
    /// bytes echoed (0: never). Returns how many it asked for.
    fn echo_to_the_end(&mut self, update_every: usize) -> usize {
        let mut since_update = 0;
        let mut requests = 0;
        loop {
            let data = self.plaintext();
            if !data.is_empty() {
                self.send(&data);
                since_update += data.len();
                if update_every > 0 && since_update >= update_every {
                    self.conn.refresh_traffic_keys().unwrap();
                    requests += 1;
                    since_update = 0;
                }
            }
            self.flush();
            if !self.read_more() {
                return requests;
            }
        }
    }
}

/// A listener on 127.0.0.1 and a server config with `pki`'s certificate,
/// sending `tickets` TLS 1.3 tickets (resumed from its session cache).
fn rustls_server(pki: &TestPki, tickets: usize) -> (TcpListener, Arc<ServerConfig>) {
    let mut config = pki.server_tls().build().unwrap();
    config.send_tls13_tickets = tickets;
    (TcpListener::bind("127.0.0.1:0").unwrap(), Arc::new(config))
}

/// NewSessionTickets reaching a `tls://` dial after it took the record
/// layer from rustls: the rustls server holds its four tickets back until
/// the dial has written 40 messages (it hands off at the 32nd), then sends
/// them with the echo of the lot. The stream goes on byte-exact both ways,
/// and the tickets are stored for resumption (the module docs: rustls
/// keeps a client's tickets): the next dial through the same engine
/// resumes. The same with the record layer left to rustls (no hand-off).
#[test]
fn tickets_after_a_dials_hand_off_are_stored_and_the_stream_goes_on() {
    let _serial = serial();
    for own_record_layer in [true, false] {
        let pki = TestPki::new();
        let (listener, config) = rustls_server(&pki, 4);
        let port = listener.local_addr().unwrap().port();
        let (kinds_tx, kinds) = unbounded();
        let server = thread::spawn(move || {
            let mut first = Peer::accept(&listener, &config);
            let total: usize = (0..40).map(|i| 1 + i * 97).sum();
            let got = first.read_exactly(total);
            first.send(&got);
            first.echo_to_the_end(0);
            let mut second = Peer::accept(&listener, &config);
            kinds_tx.send(second.conn.handshake_kind()).unwrap();
            second.echo_to_the_end(0);
        });
        let (client, rx) = dialler(&pki, own_record_layer);
        let before = hand_offs();
        let handle = client
            .engine
            .dial(format!("tls://127.0.0.1:{port}"))
            .wait()
            .expect("dial and handshake");
        let mut sent = Vec::new();
        for i in 0..40u64 {
            let message = payload(i, 1 + i as usize * 97);
            handle.write(message.clone()).wait().unwrap();
            sent.extend(message);
        }
        assert_eq!(
            hand_offs() - before,
            u64::from(own_record_layer),
            "handed off before any ticket came"
        );
        assert!(
            receive(&rx, sent.len()) == sent,
            "the echo after the tickets"
        );
        for i in 0..20u64 {
            let message = payload(100 + i, 1 + i as usize * 3001);
            handle.write(message.clone()).wait().unwrap();
            assert!(receive(&rx, message.len()) == message, "round {i}");
        }
        handle.close().unwrap();
        let again = client
            .engine
            .dial(format!("tls://127.0.0.1:{port}"))
            .wait()
            .expect("the second dial");
        assert_eq!(
            kinds.recv_timeout(PATIENCE).unwrap(),
            Some(rustls::HandshakeKind::Resumed),
            "own record layer {own_record_layer}: the ticket was kept"
        );
        again.write(b"resumed".to_vec()).wait().unwrap();
        assert_eq!(receive(&rx, 7), b"resumed");
        again.close().unwrap();
        server.join().unwrap();
        client.stop();
    }
}

/// A rustls server that asks the dial for a key update (update_requested)
/// after every 32 KiB it echoes, on a 3 MB stream each way once the dial
/// has handed off: the dial follows each (its read key: the server's
/// records under the new key open) and answers each with a KeyUpdate of
/// its own (counted on the server's wire: one 22-byte record per request;
/// the dial never sends 5 bytes, which would seal to the same size), the
/// server checking every record under the key it expects. Byte-exact both
/// ways.
#[test]
fn a_dial_follows_and_answers_the_servers_key_updates() {
    let _serial = serial();
    let pki = TestPki::new();
    let (listener, config) = rustls_server(&pki, 2);
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let mut peer = Peer::accept(&listener, &config);
        peer.flush();
        let handshake = peer.sock.wire.len();
        let requests = peer.echo_to_the_end(32 * 1024);
        let answers = records_of_length(&peer.sock.wire[handshake..], 5 + 1 + 16);
        (requests, answers)
    });
    let (client, rx) = dialler(&pki, true);
    let before = hand_offs();
    let handle = client
        .engine
        .dial(format!("tls://127.0.0.1:{port}"))
        .wait()
        .expect("dial and handshake");
    echo_past_the_hand_off(&handle, &rx);
    assert_eq!(hand_offs() - before, 1, "the dial handed off");
    let mut rng = Rng(7);
    let mut sent = Vec::new();
    while sent.len() < 3_000_000 {
        let len = match 1 + rng.below(40_000) {
            5 => 6,
            len => len,
        };
        let message = payload(sent.len() as u64, len);
        handle.write(message.clone()).wait().unwrap();
        sent.extend(message);
    }
    let got = receive(&rx, sent.len());
    assert!(got == sent, "the 3 MB echo differs");
    handle.close().unwrap();
    let (requests, answers) = server.join().unwrap();
    assert!(requests >= 60, "{requests} requests");
    assert_eq!(answers, requests, "one KeyUpdate answer per request");
    client.stop();
}

/// A TCP stream that keeps a copy of every byte read from it.
struct Tap {
    sock: TcpStream,
    wire: Vec<u8>,
}

impl Read for Tap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.sock.read(buf)?;
        self.wire.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Tap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.sock.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

/// Records of application-data type and `len` body bytes in `wire`.
fn records_of_length(wire: &[u8], len: usize) -> usize {
    let mut count = 0;
    let mut at = 0;
    while let Some(header) = wire.get(at..at + 5) {
        let body = usize::from(u16::from_be_bytes([header[3], header[4]]));
        count += usize::from(header[0] == 23 && body == len);
        at += 5 + body;
    }
    count
}

/// A `tls://` server's write key at its limit (lowered to 8 records)
/// while a rustls client streams 2 MB through its echo and asks for key
/// updates of its own: the server updates on its own (at least one
/// KeyUpdate-sized record, 22 bytes, per 9 records it sent; the client
/// never sends 5 bytes, which would seal to the same size), the client
/// follows, byte-exact both ways.
#[test]
fn a_servers_write_key_is_updated_at_its_limit_and_the_client_follows() {
    let _serial = serial();
    set_write_key_limit(8);
    let pki = TestPki::new();
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(echo_now)
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    let before = hand_offs();
    let plain = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    let (conn, sock) = plain.into_parts();
    let mut s = rustls::StreamOwned::new(
        conn,
        Tap {
            sock,
            wire: Vec::new(),
        },
    );
    let mut rng = Rng(11);
    let mut total = 0;
    let mut i = 0u64;
    while total < 2_000_000 {
        let len = match 1 + rng.below(30_000) {
            5 => 6,
            len => len,
        };
        if i % 10 == 9 {
            s.conn.refresh_traffic_keys().unwrap();
        }
        let data = payload(i, len);
        s.write_all(&data).unwrap();
        let mut back = vec![0u8; len];
        s.read_exact(&mut back).unwrap();
        assert!(back == data, "message {i} of {len} bytes");
        total += len;
        i += 1;
    }
    assert_eq!(hand_offs() - before, 1, "the server handed off");
    let records: usize = {
        let mut at = 0;
        let mut n = 0;
        let wire = &s.sock.wire;
        while let Some(header) = wire.get(at..at + 5) {
            n += usize::from(header[0] == 23);
            at += 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
        }
        n
    };
    let updates = records_of_length(&s.sock.wire, 5 + 1 + 16);
    assert!(
        updates * 9 + 50 >= records,
        "{updates} KeyUpdates in {records} records"
    );
    drop(s);
    running.stop();
}

/// The sink's partial writes through the loop: a `tls://` server with a
/// 4 KiB send buffer writes 2 MiB in one callback (records the socket
/// takes only in part, the rest queued, on epoll; all queued on io_uring)
/// to a client that reads nothing for 300 ms and then reads slowly at
/// first; every byte arrives in order, nothing lost or duplicated. With
/// the loop's record layer and with rustls's. (It moves 1.5-3.5 MB/s with
/// the CPU idle: loopback TCP with a 4 KiB send buffer, as a plain
/// blocking sender does.)
#[test]
fn records_the_socket_takes_in_part_arrive_in_order() {
    let _serial = serial();
    const TOTAL: usize = 2 << 20;
    for own_record_layer in [true, false] {
        let pki = TestPki::new();
        let running = Running::start(
            Hooks::<()>::new()
                .on_traffic(|conn| {
                    let asked = conn.read_all().to_vec();
                    if asked == b"go" {
                        let mut rng = Rng(5);
                        let mut at = 0;
                        while at < TOTAL {
                            let len = (1 + rng.below(100_000)).min(TOTAL - at);
                            if conn.write(&stream_bytes(3, at as u64, len)).is_err() {
                                return Action::Close;
                            }
                            at += len;
                        }
                    } else if !asked.is_empty() {
                        let _ = conn.write(&asked);
                    }
                    Action::None
                })
                .builder()
                .listen("tls://127.0.0.1:0")
                .loops(1)
                .send_buffer_size(4096)
                .tls_own_record_layer(own_record_layer)
                .tls_server(pki.server_tls().build().unwrap()),
        );
        let mut s = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
        let before = hand_offs();
        for i in 0..40u64 {
            common::certs::tls_round_trip(&mut s, &payload(i, 6 + i as usize));
        }
        s.write_all(b"go").unwrap();
        s.flush().unwrap();
        thread::sleep(std::time::Duration::from_millis(300));
        let mut at = 0usize;
        let mut buf = vec![0u8; 64 * 1024];
        let mut reads = 0;
        while at < TOTAL {
            let want = if reads < 50 { 1000 } else { buf.len() };
            let n = s.read(&mut buf[..want]).unwrap();
            assert!(n > 0, "EOF after {at} bytes");
            check_stream(3, at as u64, &buf[..n]);
            at += n;
            reads += 1;
        }
        assert_eq!(at, TOTAL);
        assert_eq!(
            hand_offs() - before,
            u64::from(own_record_layer),
            "own record layer {own_record_layer}"
        );
        common::certs::tls_round_trip(&mut s, b"still in step");
        drop(s);
        running.stop();
    }
}

/// A record whose tag does not verify reaching a dial after its hand-off
/// (the rustls server's record after 40 echoes, its last byte flipped):
/// that connection closes with `CloseReason::Tls(DecryptError)` and sends
/// the server a bad_record_mac alert; another dial on the same loop, open
/// all along, goes on byte-exact.
#[test]
fn a_corrupted_record_to_a_dial_closes_only_that_connection() {
    let _serial = serial();
    let pki = TestPki::new();
    let (listener, config) = rustls_server(&pki, 2);
    let port = listener.local_addr().unwrap().port();
    let server = thread::spawn(move || {
        let mut bad = Peer::accept(&listener, &config);
        bad.flush();
        let mut good = Peer::accept(&listener, &config);
        good.flush();
        for i in 0..40 {
            let message = bad.read_exactly(1 + i * 13);
            bad.send(&message);
        }
        bad.conn.writer().write_all(b"to be corrupted").unwrap();
        let mut record = Vec::new();
        while bad.conn.wants_write() {
            bad.conn.write_tls(&mut record).unwrap();
        }
        let last = record.len() - 1;
        record[last] ^= 0x21;
        bad.sock.write_all(&record).unwrap();
        let alert = loop {
            match bad.conn.read_tls(&mut bad.sock) {
                Ok(0) | Err(_) => break None,
                Ok(_) => {
                    if let Err(e) = bad.conn.process_new_packets() {
                        break Some(e);
                    }
                }
            }
        };
        good.echo_to_the_end(0);
        alert
    });
    let (data_tx, rx) = unbounded::<Vec<u8>>();
    let (closes_tx, closes) = unbounded::<String>();
    let client = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                let _ = data_tx.send(conn.read_all().to_vec());
                Action::None
            })
            .on_close(move |_, reason| {
                let why = close_name(reason);
                let _ = closes_tx.send(why);
                Action::None
            })
            .builder()
            .loops(1)
            .tls_client(pki.client_config()),
    );
    let addr = format!("tls://127.0.0.1:{port}");
    let bad = client.engine.dial(&addr).wait().expect("first dial");
    let good = client.engine.dial(&addr).wait().expect("second dial");
    let before = hand_offs();
    echo_past_the_hand_off(&bad, &rx);
    assert_eq!(hand_offs() - before, 1, "the first dial handed off");
    assert_eq!(closes.recv_timeout(PATIENCE).unwrap(), "tls: DecryptError");
    for i in 0..10u64 {
        let message = payload(50 + i, 1 + i as usize * 4000);
        good.write(message.clone()).wait().unwrap();
        assert!(receive(&rx, message.len()) == message, "round {i}");
    }
    good.close().unwrap();
    assert_eq!(closes.recv_timeout(PATIENCE).unwrap(), "requested");
    assert_eq!(
        server.join().unwrap(),
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadRecordMac
        ))
    );
    assert!(rx.is_empty(), "nothing from the corrupted record");
    client.stop();
}

/// A client past the server's hand-off that sends 33 KeyUpdates in a row
/// with no data between: that connection closes with
/// `PeerMisbehaved(TooManyKeyUpdateRequests)` and an unexpected_message
/// alert (32 in a row are followed); another client goes on.
#[test]
fn a_run_of_33_key_updates_closes_only_that_connection() {
    let _serial = serial();
    let pki = TestPki::new();
    let (closes_tx, closes) = unbounded::<String>();
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(echo_now)
            .on_close(move |_, reason| {
                let why = close_name(reason);
                let _ = closes_tx.send(why);
                Action::None
            })
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    let before = hand_offs();
    let mut good = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    let mut bad = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    for i in 0..40u64 {
        common::certs::tls_round_trip(&mut good, &payload(i, 1 + i as usize * 37));
        common::certs::tls_round_trip(&mut bad, &payload(i, 1 + i as usize * 37));
    }
    assert_eq!(hand_offs() - before, 2, "both handed off");
    for _ in 0..32 {
        bad.conn.refresh_traffic_keys().unwrap();
    }
    common::certs::tls_round_trip(&mut bad, b"32 in a row are followed");
    for _ in 0..33 {
        bad.conn.refresh_traffic_keys().unwrap();
    }
    bad.flush().unwrap();
    while bad.conn.wants_write() {
        bad.conn.write_tls(&mut bad.sock).unwrap();
    }
    assert_eq!(
        closes.recv_timeout(PATIENCE).unwrap(),
        "tls: PeerMisbehaved(TooManyKeyUpdateRequests)"
    );
    let mut rest = Vec::new();
    let e = bad.read_to_end(&mut rest).unwrap_err();
    assert!(e.to_string().contains("UnexpectedMessage"), "{e}");
    common::certs::tls_round_trip(&mut good, b"the other connection goes on");
    drop(good);
    assert_eq!(closes.recv_timeout(PATIENCE).unwrap(), "eof");
    running.stop();
}

/// A TCP stream that keeps a copy of every byte written to it.
struct SendTap {
    sock: TcpStream,
    sent: Vec<u8>,
}

impl Read for SendTap {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.sock.read(buf)
    }
}

impl Write for SendTap {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.sock.write(buf)?;
        self.sent.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.sock.flush()
    }
}

/// A key log keeping every secret a rustls peer logs, by label.
#[derive(Debug, Default)]
struct Keys(Mutex<Vec<(String, Vec<u8>)>>);

impl rustls::KeyLog for Keys {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        let mut keys = self.0.lock().unwrap_or_else(|e| e.into_inner());
        keys.push((label.to_string(), secret.to_vec()));
    }
}

/// How many bytes an HKDF expansion gives.
struct OutputLength(usize);

impl ring::hkdf::KeyType for OutputLength {
    fn len(&self) -> usize {
        self.0
    }
}

/// Seals one record as the peer whose TLS 1.3 application traffic
/// `secret` (from its key log) it is, under `suite`, at sequence number
/// `seq` (the records that peer sealed under it before): key and IV by
/// HKDF-Expand-Label (RFC 8446 §7.3), made here from the RFC.
fn seal_as_peer(
    suite: rustls::SupportedCipherSuite,
    secret: &[u8],
    seq: u64,
    kind: u8,
    data: &[u8],
) -> Vec<u8> {
    use ring::{aead, hkdf};
    let (hash, algorithm) = match suite.suite() {
        rustls::CipherSuite::TLS13_AES_256_GCM_SHA384 => (hkdf::HKDF_SHA384, &aead::AES_256_GCM),
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256 => (hkdf::HKDF_SHA256, &aead::AES_128_GCM),
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
    let mut nonce = expand(b"iv", 12);
    for (b, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
        *b ^= s;
    }
    let len = data.len() + 1 + 16;
    let header = [23, 3, 3, (len >> 8) as u8, len as u8];
    let mut body = [data, &[kind]].concat();
    aead::LessSafeKey::new(key)
        .seal_in_place_append_tag(
            aead::Nonce::try_assume_unique_for_key(&nonce).unwrap(),
            aead::Aad::from(header),
            &mut body,
        )
        .unwrap();
    [&header[..], &body].concat()
}

/// A warning alert other than user_canceled (handshake_failure, which
/// TLS 1.3 allows only as fatal) from a client past a `tls://` server's
/// hand-off, sealed under the client's own key (from its key log) after
/// its 40 echoed records: the server answers with a decode_error alert
/// (the rustls client reads it: `AlertReceived(DecodeError)`) and closes
/// that connection with `CloseReason::Tls(AlertReceived(HandshakeFailure))`,
/// exactly as a server whose record layer rustls runs does (the same
/// test with the hand-off off); another client on the same loop goes on.
#[test]
fn a_warning_alert_is_answered_as_rustls_answers_it() {
    let _serial = serial();
    for own_record_layer in [true, false] {
        let at = format!("own record layer {own_record_layer}");
        let pki = TestPki::new();
        let (closes_tx, closes) = unbounded::<String>();
        let running = Running::start(
            Hooks::<()>::new()
                .on_traffic(echo_now)
                .on_close(move |_, reason| {
                    let why = close_name(reason);
                    let _ = closes_tx.send(why);
                    Action::None
                })
                .builder()
                .listen("tls://127.0.0.1:0")
                .loops(1)
                .tls_own_record_layer(own_record_layer)
                .tls_server(pki.server_tls().build().unwrap()),
        );
        let before = hand_offs();
        let keys = Arc::new(Keys::default());
        let mut config = pki.client_config();
        config.key_log = keys.clone();
        let mut good = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
        let (conn, sock) = tls_client(config, running.tcp_addr(0), "localhost").into_parts();
        let mut bad = rustls::StreamOwned::new(
            conn,
            SendTap {
                sock,
                sent: Vec::new(),
            },
        );
        for i in 0..40u64 {
            let message = payload(i, 1 + i as usize * 37);
            common::certs::tls_round_trip(&mut good, &message);
            bad.write_all(&message).unwrap();
            bad.flush().unwrap();
            let mut back = vec![0u8; message.len()];
            bad.read_exact(&mut back).unwrap();
            assert!(back == message, "{at}: echo {i}");
        }
        assert_eq!(
            hand_offs() - before,
            2 * u64::from(own_record_layer),
            "{at}: both handed off"
        );
        // Every record the client sent since its handshake is under its
        // first application key: the next is this many on.
        let seq = records_of_type(&bad.sock.sent, 23);
        assert!(seq >= 40, "{at}: {seq} records");
        let secret = {
            let keys = keys.0.lock().unwrap();
            let found = keys
                .iter()
                .rev()
                .find(|(l, _)| l == "CLIENT_TRAFFIC_SECRET_0");
            found.expect("the client's secret logged").1.clone()
        };
        let suite = bad.conn.negotiated_cipher_suite().unwrap();
        let record = seal_as_peer(suite, &secret, seq as u64, 21, &[1, 40]);
        bad.sock.sock.write_all(&record).unwrap();
        assert_eq!(
            closes.recv_timeout(PATIENCE).unwrap(),
            "tls: AlertReceived(HandshakeFailure)",
            "{at}"
        );
        let seen = loop {
            match bad.conn.read_tls(&mut bad.sock) {
                Ok(0) => break None,
                Ok(_) => {
                    if let Err(e) = bad.conn.process_new_packets() {
                        break Some(e);
                    }
                }
                Err(e) => panic!("{at}: {e}"),
            }
        };
        assert_eq!(
            seen,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::DecodeError
            )),
            "{at}"
        );
        common::certs::tls_round_trip(&mut good, b"the other connection goes on");
        drop(good);
        assert_eq!(closes.recv_timeout(PATIENCE).unwrap(), "eof", "{at}");
        running.stop();
    }
}

/// Records of content type `kind` in `wire`.
fn records_of_type(wire: &[u8], kind: u8) -> usize {
    let mut count = 0;
    let mut at = 0;
    while let Some(header) = wire.get(at..at + 5) {
        count += usize::from(header[0] == kind);
        at += 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
    }
    count
}

/// What a `tls://` server's handler saw of one connection.
#[derive(Debug)]
enum Seen {
    /// Plaintext read, and the error its reply met (if any).
    Data(Vec<u8>, Option<String>),
    Closed(String),
}

/// Application data and a fatal record behind it in one write (so in one
/// read on epoll; the last of the data with the fatal record on
/// io_uring, whose receive buffers hold ~16 KiB), from a client past the
/// server's hand-off (40 echoes), sealed under the client's own key: the
/// handler sees all the data, its reply to the end of it is refused with
/// the TLS error, then the connection closes with `CloseReason::Tls` carrying the
/// fatal record's error, and the client gets the alert owed (for the
/// corrupted record bad_record_mac; the peer's fatal alert is not
/// answered). Before, the data of that read was dropped and the handler
/// heard only the close. Both layers: handed off, and the hand-off off.
#[test]
fn data_before_a_fatal_record_in_one_write_reaches_the_handler_then_the_close() {
    let _serial = serial();
    type Bad = fn(rustls::SupportedCipherSuite, &[u8], u64) -> Vec<u8>;
    let corrupted: Bad = |suite, secret, seq| {
        let mut record = seal_as_peer(suite, secret, seq, 23, b"never delivered");
        let last = record.len() - 1;
        record[last] ^= 0x08;
        record
    };
    let fatal_alert: Bad = |suite, secret, seq| seal_as_peer(suite, secret, seq, 21, &[2, 40]);
    let cases: [(&str, Bad, rustls::Error, Option<rustls::Error>); 2] = [
        (
            "corrupted record",
            corrupted,
            rustls::Error::DecryptError,
            Some(rustls::Error::AlertReceived(
                rustls::AlertDescription::BadRecordMac,
            )),
        ),
        (
            "fatal alert",
            fatal_alert,
            rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure),
            None,
        ),
    ];
    for (name, bad, error, answer) in &cases {
        for len in [3000, 20_000] {
            for own_record_layer in [true, false] {
                let at = format!("{name} after {len} bytes, own record layer {own_record_layer}");
                let pki = TestPki::new();
                let (seen_tx, seen) = unbounded::<Seen>();
                let closed_tx = seen_tx.clone();
                // 0: echo (up to the hand-off); then the length of the last
                // message, whose end alone is answered (an earlier reply
                // would still be in the ring when the session fails).
                let last = Arc::new(AtomicUsize::new(0));
                let (awaited, taken) = (last.clone(), AtomicUsize::new(0));
                let running = Running::start(
                    Hooks::<()>::new()
                        .on_traffic(move |conn| {
                            let data = conn.read_all().to_vec();
                            let awaited = awaited.load(Ordering::SeqCst);
                            let taken = taken.fetch_add(data.len(), Ordering::SeqCst) + data.len();
                            let reply = match awaited {
                                0 => conn.write(&data),
                                n if taken >= n => conn.write(b"reply"),
                                _ => Ok(0),
                            };
                            let echo = reply.err().map(|e| format!("{e:?}"));
                            let _ = seen_tx.send(Seen::Data(data, echo));
                            Action::None
                        })
                        .on_close(move |_, reason| {
                            let why = close_name(reason);
                            let _ = closed_tx.send(Seen::Closed(why));
                            Action::None
                        })
                        .builder()
                        .listen("tls://127.0.0.1:0")
                        .loops(1)
                        .tls_own_record_layer(own_record_layer)
                        .tls_server(pki.server_tls().build().unwrap()),
                );
                let before = hand_offs();
                let Sealer { mut client, secret } = Sealer::past_the_hand_off(&running, &pki, &at);
                assert_eq!(
                    hand_offs() - before,
                    u64::from(own_record_layer),
                    "{at}: handed off"
                );
                // Every echo's event (sent after its reply went out).
                let warm_up: usize = (0..40).map(|i| 1 + i * 37).sum();
                let mut echoed = 0;
                while echoed < warm_up {
                    match seen.recv_timeout(PATIENCE).expect("the echoes' events") {
                        Seen::Data(data, None) => echoed += data.len(),
                        other => panic!("{at}: {other:?} while echoing"),
                    }
                }
                assert_eq!(echoed, warm_up, "{at}");
                last.store(warm_up + len, Ordering::SeqCst);
                let seq = records_of_type(&client.sock.sent, 23) as u64;
                let suite = client.conn.negotiated_cipher_suite().unwrap();
                let message = payload(99, len);
                let mut wire = Vec::new();
                for (i, record) in message.chunks(16 * 1024).enumerate() {
                    wire.extend(seal_as_peer(suite, &secret, seq + i as u64, 23, record));
                }
                let records = message.len().div_ceil(16 * 1024) as u64;
                wire.extend(bad(suite, &secret, seq + records));
                client.sock.sock.write_all(&wire).unwrap();
                let mut got = Vec::new();
                let mut last_echo = None;
                let closed = loop {
                    match seen.recv_timeout(PATIENCE).expect("the handler in time") {
                        Seen::Data(data, echo) => {
                            got.extend(data);
                            last_echo = echo;
                        }
                        Seen::Closed(why) => break why,
                    }
                };
                assert!(
                    got == message,
                    "{at}: {} of {len} bytes delivered",
                    got.len()
                );
                assert_eq!(closed, format!("tls: {error:?}"), "{at}");
                let echo = last_echo.expect("the reply to the last data refused");
                assert!(echo.contains(&format!("{error:?}")), "{at}: {echo}");
                let mut echoed = Vec::new();
                let heard = loop {
                    match client.conn.read_tls(&mut client.sock) {
                        Ok(0) => break None,
                        Ok(_) => {
                            let state = client.conn.process_new_packets();
                            let mut buf = vec![0u8; 64 * 1024];
                            while let Ok(n @ 1..) = client.conn.reader().read(&mut buf) {
                                echoed.extend_from_slice(&buf[..n]);
                            }
                            if let Err(e) = state {
                                break Some(e);
                            }
                        }
                        Err(e) => panic!("{at}: {e}"),
                    }
                };
                assert_eq!(&heard, answer, "{at}");
                assert!(echoed.is_empty(), "{at}: {} bytes answered", echoed.len());
                running.stop();
            }
        }
    }
}

/// A `tls://` server on one loop that echoes each read (refused once its
/// session failed: the close is then the TLS error's) and sends the name of
/// each close reason on the returned channel, and a [`Sealer`] past its
/// hand-off (asserted made when the own record layer is on).
fn echo_server_and_sealer(own_record_layer: bool, at: &str) -> (Running, Sealer, Receiver<String>) {
    let pki = TestPki::new();
    let (closes_tx, closes) = unbounded::<String>();
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(|conn| {
                let data = conn.read_all().to_vec();
                let _ = conn.write(&data);
                Action::None
            })
            .on_close(move |_, reason| {
                let _ = closes_tx.send(close_name(reason));
                Action::None
            })
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .tls_own_record_layer(own_record_layer)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    let before = hand_offs();
    let peer = Sealer::past_the_hand_off(&running, &pki, at);
    assert_eq!(
        hand_offs() - before,
        u64::from(own_record_layer),
        "{at}: handed off"
    );
    (running, peer, closes)
}

/// A rustls client past a `tls://` server's hand-off (when on), which can
/// seal records of its own under its first application key.
struct Sealer {
    client: rustls::StreamOwned<rustls::ClientConnection, SendTap>,
    secret: Vec<u8>,
}

impl Sealer {
    /// Connects to `running`'s listener and echoes 40 messages (the server
    /// answers each with its echo, which is checked).
    fn past_the_hand_off(running: &Running, pki: &TestPki, at: &str) -> Sealer {
        let keys = Arc::new(Keys::default());
        let mut config = pki.client_config();
        config.key_log = keys.clone();
        let (conn, sock) = tls_client(config, running.tcp_addr(0), "localhost").into_parts();
        let mut client = rustls::StreamOwned::new(
            conn,
            SendTap {
                sock,
                sent: Vec::new(),
            },
        );
        for i in 0..40u64 {
            let message = payload(i, 1 + i as usize * 37);
            client.write_all(&message).unwrap();
            client.flush().unwrap();
            let mut back = vec![0u8; message.len()];
            client.read_exact(&mut back).unwrap();
            assert!(back == message, "{at}: echo {i}");
        }
        let secret = {
            let keys = keys.0.lock().unwrap();
            let found = keys
                .iter()
                .rev()
                .find(|(l, _)| l == "CLIENT_TRAFFIC_SECRET_0");
            found.expect("the client's secret logged").1.clone()
        };
        Sealer { client, secret }
    }

    /// `data` as application data records (16 KiB each) sealed after the
    /// client's own, then a record whose tag is corrupted.
    fn data_then_a_corrupted_record(&self, data: &[u8]) -> Vec<u8> {
        let suite = self.client.conn.negotiated_cipher_suite().unwrap();
        let seq = records_of_type(&self.client.sock.sent, 23) as u64;
        let mut wire = Vec::new();
        let mut records = 0;
        for (i, record) in data.chunks(16 * 1024).enumerate() {
            wire.extend(seal_as_peer(
                suite,
                &self.secret,
                seq + i as u64,
                23,
                record,
            ));
            records += 1;
        }
        let mut bad = seal_as_peer(suite, &self.secret, seq + records, 23, b"never read");
        let last = bad.len() - 1;
        bad[last] ^= 0x08;
        wire.extend(bad);
        wire
    }

    /// Reads to the end of stream: the plaintext, and the error the
    /// records brought (an alert received), if any.
    fn read_to_the_end(&mut self, at: &str) -> (Vec<u8>, Option<rustls::Error>) {
        let mut plain = Vec::new();
        let heard = loop {
            match self.client.conn.read_tls(&mut self.client.sock) {
                Ok(0) => break None,
                Ok(_) => {
                    let state = self.client.conn.process_new_packets();
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = self.client.conn.reader().read(&mut buf) {
                        plain.extend_from_slice(&buf[..n]);
                    }
                    if let Err(e) = state {
                        break Some(e);
                    }
                }
                Err(e) => panic!("{at}: {e}"),
            }
        };
        (plain, heard)
    }
}

/// The close reason a `tls://` server's handler saw, as a short string.
fn close_name(reason: &ringloop::CloseReason) -> String {
    match reason {
        ringloop::CloseReason::Tls(e) => format!("tls: {e:?}"),
        other => reason_kind(other).to_string(),
    }
}

/// A server that echoes each read (its reply to the data before a
/// corrupted record is in flight on io_uring when the record fails: the
/// first ~16 KiB come in a receive buffer of their own, the rest and the
/// corrupted record in the next, taken in the same turn) owes the peer
/// bad_record_mac: the client reads the echoes, then the alert, on both
/// drivers. Before, on io_uring the close dropped what was queued behind
/// the send in flight, the alert with it, and the client read only the
/// end of stream. Both layers: handed off, and the hand-off off.
#[test]
fn the_alert_owed_after_a_tls_error_follows_the_replies_in_flight() {
    let _serial = serial();
    for len in [20_000, 40_000] {
        for own_record_layer in [true, false] {
            let at = format!("{len} bytes, own record layer {own_record_layer}");
            let (running, mut peer, closes) = echo_server_and_sealer(own_record_layer, &at);
            let message = payload(7, len);
            let wire = peer.data_then_a_corrupted_record(&message);
            peer.client.sock.sock.write_all(&wire).unwrap();
            assert_eq!(
                closes.recv_timeout(PATIENCE).unwrap(),
                "tls: DecryptError",
                "{at}"
            );
            let (echoed, heard) = peer.read_to_the_end(&at);
            assert!(
                message.starts_with(&echoed),
                "{at}: {} bytes echoed, not the message's start",
                echoed.len()
            );
            assert_eq!(
                heard,
                Some(rustls::Error::AlertReceived(
                    rustls::AlertDescription::BadRecordMac
                )),
                "{at}: after {} bytes echoed",
                echoed.len()
            );
            running.stop();
        }
    }
}

/// A `tls://` server on one loop that echoes a [`Sealer`]'s warm-up and
/// answers anything after it with `reply` bytes of `x` (its queue allowed to
/// hold them; `tune` adds the test's own settings), sending the name of each
/// close reason on the returned channel; and its client past the hand-off,
/// which asks for the reply, gives it the time to fill both sockets'
/// buffers (the rest waits in the queue or in a ring send), then sends a
/// corrupted record, which the server still reads.
fn a_corrupted_record_behind_a_reply(
    reply: usize,
    tune: impl FnOnce(ringloop::EngineBuilder<Hooks<()>>) -> ringloop::EngineBuilder<Hooks<()>>,
) -> (Running, Sealer, Receiver<String>) {
    let pki = TestPki::new();
    let (closes_tx, closes) = unbounded::<String>();
    let warm_up: usize = (0..40).map(|i| 1 + i * 37).sum();
    let taken = AtomicUsize::new(0);
    let builder = Hooks::<()>::new()
        .on_traffic(move |conn| {
            let data = conn.read_all().to_vec();
            let before = taken.fetch_add(data.len(), Ordering::SeqCst);
            let _ = if before < warm_up {
                conn.write(&data)
            } else {
                conn.write(&vec![b'x'; reply])
            };
            Action::None
        })
        .on_close(move |_, reason| {
            let _ = closes_tx.send(close_name(reason));
            Action::None
        })
        .builder()
        .listen("tls://127.0.0.1:0")
        .loops(1)
        .write_water_marks(ringloop::WaterMarks::new(64 << 20, 32 << 20))
        .tls_server(pki.server_tls().build().unwrap());
    let running = Running::start(tune(builder));
    let mut peer = Sealer::past_the_hand_off(&running, &pki, "warm-up");
    peer.client.write_all(b"a reply of 4 MiB, please").unwrap();
    peer.client.flush().unwrap();
    thread::sleep(std::time::Duration::from_millis(200));
    let wire = peer.data_then_a_corrupted_record(b"");
    peer.client.sock.sock.write_all(&wire).unwrap();
    (running, peer, closes)
}

/// The wait for a send in flight before the alert owed is bounded: a
/// server whose reply (4 MiB, above what the sockets hold) a client never
/// reads still closes the connection after the client's corrupted record,
/// at the drain timeout at the latest, with the TLS error as its reason.
#[test]
fn a_tls_error_behind_a_reply_the_peer_never_reads_still_closes() {
    let _serial = serial();
    let (running, _peer, closes) = a_corrupted_record_behind_a_reply(4 << 20, |builder| {
        builder.drain_timeout(std::time::Duration::from_millis(300))
    });
    assert_eq!(closes.recv_timeout(PATIENCE).unwrap(), "tls: DecryptError");
    wait_until("the close", || running.engine.connection_count() == 0);
    running.stop();
}

/// The alert owed after a TLS error waits for a reply the sockets did not
/// take, on both drivers: a server whose reply (4 MiB) waits in its queue
/// (epoll) or in a ring send (io_uring) while the client reads nothing
/// gets the client's corrupted record; the client then reads the whole
/// reply and, after it, bad_record_mac. Before, epoll closed at once with
/// a best-effort flush that the full socket refused: the rest of the reply
/// and the alert were lost, and the client read the end of stream.
#[test]
fn the_alert_owed_after_a_tls_error_follows_a_reply_the_sockets_did_not_take() {
    let _serial = serial();
    let reply = 4 << 20;
    let (running, mut peer, closes) = a_corrupted_record_behind_a_reply(reply, |builder| {
        builder
            .drain_timeout(std::time::Duration::from_secs(20))
            // Far below the reply (the kernel's own would grow to 4 MiB).
            .send_buffer_size(16 * 1024)
    });
    let (replied, heard) = peer.read_to_the_end("after the reply");
    assert_eq!(replied.len(), reply, "the whole reply before the alert");
    assert!(replied.iter().all(|&b| b == b'x'));
    assert_eq!(
        heard,
        Some(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadRecordMac
        ))
    );
    assert_eq!(closes.recv_timeout(PATIENCE).unwrap(), "tls: DecryptError");
    running.stop();
}

/// Records of 18,431 bytes (the most rustls's header check lets in, more
/// than an io_uring receive buffer holds) from the client past the
/// hand-off, in two writes: read whole across reads and refused as rustls
/// refuses them, on both layers and drivers. Sealed with an inner
/// plaintext too long: `PeerSentOversizedRecord`, and the client hears
/// record_overflow; a body that does not open: `DecryptError`, and
/// bad_record_mac. Before, the loop's layer refused both from the header
/// (`PeerSentOversizedRecord`, before the body came, whatever the body).
#[test]
fn records_of_18431_bytes_are_read_whole_and_refused_as_rustls_refuses_them() {
    let _serial = serial();
    type Body = fn(rustls::SupportedCipherSuite, &[u8], u64) -> Vec<u8>;
    // 18,414 bytes of data, the content type, the tag: 18,431.
    let sealed: Body = |suite, secret, seq| seal_as_peer(suite, secret, seq, 23, &[7; 18_414]);
    let garbage: Body = |_, _, _| [&[23, 3, 3, 0x47, 0xff][..], &[7; 18_431]].concat();
    let cases: [(&str, Body, rustls::Error, rustls::AlertDescription); 2] = [
        (
            "sealed",
            sealed,
            rustls::Error::PeerSentOversizedRecord,
            rustls::AlertDescription::RecordOverflow,
        ),
        (
            "not opening",
            garbage,
            rustls::Error::DecryptError,
            rustls::AlertDescription::BadRecordMac,
        ),
    ];
    for (name, body, error, alert) in &cases {
        for own_record_layer in [true, false] {
            let at = format!("{name}, own record layer {own_record_layer}");
            let (running, mut peer, closes) = echo_server_and_sealer(own_record_layer, &at);
            let suite = peer.client.conn.negotiated_cipher_suite().unwrap();
            let seq = records_of_type(&peer.client.sock.sent, 23) as u64;
            let record = body(suite, &peer.secret, seq);
            assert_eq!(record.len(), 5 + 18_431, "{at}");
            peer.client.sock.sock.write_all(&record[..9000]).unwrap();
            thread::sleep(std::time::Duration::from_millis(50));
            peer.client.sock.sock.write_all(&record[9000..]).unwrap();
            assert_eq!(
                closes.recv_timeout(PATIENCE).unwrap(),
                format!("tls: {error:?}"),
                "{at}"
            );
            let (echoed, heard) = peer.read_to_the_end(&at);
            assert!(echoed.is_empty(), "{at}: {} bytes echoed", echoed.len());
            assert_eq!(heard, Some(rustls::Error::AlertReceived(*alert)), "{at}");
            running.stop();
        }
    }
}
