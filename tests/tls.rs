//! Issue 15 over real sockets: `tls://` servers and dials through rustls in
//! the loop. Clients: the rustls client, `openssl s_client` (TLS 1.2 and
//! 1.3), `curl --cacert`, and the engine's own dials. Byte-exact transfers
//! with arbitrary splits, pipelined HTTP, async writes from workers,
//! half-close, SNI, ALPN, client certificates, failed verification, and
//! hostile peers that each close only their own connection with a clear
//! reason.

mod common;
#[path = "../examples/http_server/mod.rs"]
mod http_server;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::certs::{tls_client, tls_round_trip, Ca, TestPki, TlsClient};
use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use ringloop::tls::TlsConnector;
use ringloop::{
    Action, CloseReason, Conn, Engine, Error, EventHandler, LoopContext, SockAddr, TimeoutKind,
    Timeouts,
};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

/// An echo server that reports every close and failed handshake.
#[derive(Clone)]
struct Echo {
    closes: Sender<String>,
}

fn describe(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Tls(e) => format!("tls: {e:?}"),
        CloseReason::Timeout(kind) => format!("timeout: {kind:?}"),
        other => reason_kind(other).to_string(),
    }
}

impl EventHandler for Echo {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        echo_now(conn)
    }
    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
        let _ = self.closes.send(format!("close {}", describe(reason)));
        Action::None
    }
    fn on_handshake_error(
        &mut self,
        _ctx: &mut LoopContext,
        _peer: &SockAddr,
        reason: &CloseReason,
    ) -> Action {
        let _ = self.closes.send(format!("handshake {}", describe(reason)));
        Action::None
    }
}

struct EchoServer {
    running: Running,
    pki: TestPki,
    closes: Receiver<String>,
}

fn echo_server(
    loops: usize,
    configure: impl FnOnce(ringloop::EngineBuilder<Echo>) -> ringloop::EngineBuilder<Echo>,
) -> EchoServer {
    let pki = TestPki::new();
    let (tx, rx) = unbounded();
    let handler = Echo { closes: tx };
    let builder = Engine::builder(move |_| handler.clone())
        .listen("tls://127.0.0.1:0")
        .loops(loops)
        .tls_server(
            pki.server_tls()
                .alpn(&[b"echo/1", b"http/1.1"])
                .build()
                .unwrap(),
        );
    EchoServer {
        running: Running::start(configure(builder)),
        pki,
        closes: rx,
    }
}

impl EchoServer {
    fn addr(&self) -> SocketAddr {
        self.running.tcp_addr(0)
    }
    fn client(&self) -> TlsClient {
        tls_client(self.pki.client_config(), self.addr(), "localhost")
    }
    fn next_close(&self) -> String {
        self.closes.recv_timeout(PATIENCE).expect("a close report")
    }
}

/// Mostly medium pieces, sometimes a few bytes, sometimes large.
fn split(rng: &mut Rng) -> usize {
    match rng.below(8) {
        0 => 1 + rng.below(16),
        1 => 1 + rng.below(256 * 1024),
        _ => 1 + rng.below(20_000),
    }
}

/// Sends `data` through a rustls client session in plaintext pieces of
/// arbitrary size, and its ciphertext to the socket in pieces of arbitrary
/// size, while reading `expect` plaintext bytes back. One thread,
/// non-blocking: neither direction can stall the other.
fn duplex(
    conn: &mut ClientConnection,
    sock: &TcpStream,
    data: &[u8],
    expect: usize,
    seed: u64,
) -> Vec<u8> {
    sock.set_nonblocking(true).unwrap();
    let mut rng = Rng(seed | 1);
    let (mut sent, mut cipher, mut off) = (0, Vec::new(), 0);
    let mut back = Vec::with_capacity(expect);
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + 4 * PATIENCE;
    while back.len() < expect || sent < data.len() || off < cipher.len() {
        assert!(
            Instant::now() < deadline,
            "transfer stalled: sent {sent}, got {}",
            back.len()
        );
        let mut progress = false;
        if sent < data.len() && cipher.len() - off < 256 * 1024 {
            let n = split(&mut rng).min(data.len() - sent);
            let took = conn.writer().write(&data[sent..sent + n]).unwrap();
            sent += took;
            while conn.wants_write() {
                conn.write_tls(&mut cipher).unwrap();
            }
            progress |= took > 0;
        }
        if off < cipher.len() {
            let piece = split(&mut rng).min(cipher.len() - off);
            match (&mut &*sock).write(&cipher[off..off + piece]) {
                Ok(k) => {
                    off += k;
                    progress = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
            if off == cipher.len() {
                cipher.clear();
                off = 0;
            }
        }
        match conn.read_tls(&mut &*sock) {
            Ok(0) => panic!("server closed after {} bytes", back.len()),
            Ok(_) => {
                conn.process_new_packets().expect("server's records");
                loop {
                    match conn.reader().read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => back.extend_from_slice(&buf[..n]),
                        Err(_) => break,
                    }
                }
                progress = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}"),
        }
        while conn.wants_write() {
            conn.write_tls(&mut cipher).unwrap();
        }
        if !progress {
            thread::sleep(Duration::from_micros(200));
        }
    }
    sock.set_nonblocking(false).unwrap();
    back
}

fn new_session(pki: &TestPki, name: &str) -> ClientConnection {
    ClientConnection::new(
        Arc::new(pki.client_config()),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap()
}

#[test]
fn rustls_client_echo_32_mib_each_way_with_arbitrary_splits() {
    let server = echo_server(2, |b| b);
    let data = payload(15, 32 << 20);
    let mut conn = new_session(&server.pki, "localhost");
    let sock = tcp_client(server.addr());
    let back = duplex(&mut conn, &sock, &data, data.len(), 7);
    assert_eq!(back.len(), data.len());
    assert!(back == data, "32 MiB echo differs");
    assert_eq!(conn.alpn_protocol(), None, "no ALPN offered, none agreed");
    drop(sock);
    assert_eq!(server.next_close(), "close eof");
    server.running.stop();
}

/// Level-triggered on epoll (asked for: epoll's default is edge-triggered;
/// on io_uring the setting is ignored).
#[test]
fn many_clients_small_and_odd_sizes_level_triggered() {
    many_clients(echo_server(2, |b| b.edge_triggered(false)));
}

#[test]
fn many_clients_small_and_odd_sizes_edge_triggered() {
    many_clients(echo_server(2, |b| edge_triggered_on_epoll(b, None)));
}

#[test]
fn many_clients_small_and_odd_sizes_reuseport() {
    many_clients(echo_server(2, |b| b.reuse_port(true)));
}

/// 8 clients echo records of awkward sizes (around the 16 KiB record
/// limit), then leave.
fn many_clients(server: EchoServer) {
    let threads: Vec<_> = (0..8u64)
        .map(|c| {
            let addr = server.addr();
            let config = server.pki.client_config();
            thread::spawn(move || {
                let mut s = tls_client(config, addr, "localhost");
                for (i, len) in [1usize, 16_383, 16_384, 16_385, 100_000, 7]
                    .iter()
                    .enumerate()
                {
                    tls_round_trip(&mut s, &payload(c * 10 + i as u64, *len));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client");
    }
    for _ in 0..8 {
        assert_eq!(server.next_close(), "close eof");
    }
    server.running.stop();
}

/// A read buffer smaller than a record: the plaintext of one read reaches
/// the handler in 1 KiB pieces, the rest of it (and the records after it)
/// waiting in the session, byte-exact whatever the splits.
#[test]
fn records_larger_than_the_read_buffer_arrive_in_pieces() {
    let server = echo_server(1, |b| b.read_buffer_size(1024));
    let data = payload(21, 4 << 20);
    let mut conn = new_session(&server.pki, "localhost");
    let sock = tcp_client(server.addr());
    let back = duplex(&mut conn, &sock, &data, data.len(), 11);
    assert!(
        back == data,
        "4 MiB echo through a 1 KiB read buffer differs"
    );
    let mut s = server.client();
    for len in [1usize, 1023, 1024, 1025, 16_384, 16_385, 100_000] {
        tls_round_trip(&mut s, &payload(len as u64, len));
    }
    drop((sock, s));
    assert_eq!(server.next_close(), "close eof");
    assert_eq!(server.next_close(), "close eof");
    server.running.stop();
}

/// TLS 1.3 key updates in mid-stream, asked for by the client (which asks
/// the server to update its keys too): the echo goes on under the new keys
/// both ways, on small and record-spanning messages.
#[test]
fn key_updates_in_mid_stream() {
    echo_through_key_updates(echo_server(1, |b| b), false);
}

/// Echoes through 4 key updates from the client (5 B and 20 KB in turn),
/// after one round trip or after `past_the_hand_off`'s.
fn echo_through_key_updates(server: EchoServer, warm_up: bool) {
    let mut s = server.client();
    assert_eq!(
        s.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    if warm_up {
        past_the_hand_off(&mut s);
    } else {
        tls_round_trip(&mut s, b"under the first keys");
    }
    for i in 0..4u64 {
        s.conn.refresh_traffic_keys().expect("a key update");
        tls_round_trip(&mut s, &payload(i, [5, 20_000][i as usize % 2]));
    }
    drop(s);
    assert_eq!(server.next_close(), "close eof");
    server.running.stop();
}

/// Enough round trips for the session to hand its record layer off (it
/// does after 32 reads and writes; see `TlsOptions::own_record_layer`).
fn past_the_hand_off(s: &mut TlsClient) {
    for i in 0..40u64 {
        tls_round_trip(s, &payload(i, 1 + i as usize * 37));
    }
}

/// Key updates once the loop runs the record layer: the read key follows
/// the peer's, its update_requested is answered and the write key moves.
#[test]
fn key_updates_after_the_hand_off() {
    echo_through_key_updates(echo_server(1, |b| b), true);
}

/// The same past the hand-off's point with the record layer left to rustls
/// (`EngineBuilder::tls_own_record_layer(false)`).
#[test]
fn key_updates_in_mid_stream_on_rustls_records() {
    echo_through_key_updates(echo_server(1, |b| b.tls_own_record_layer(false)), true);
}

/// A record whose tag does not verify (after the handshake, so in the
/// loop's own record layer) closes that connection with the TLS reason and
/// a bad_record_mac alert; the other connection goes on.
#[test]
fn a_corrupted_record_closes_only_its_connection() {
    let server = echo_server(1, |b| b);
    let mut good = server.client();
    let mut bad = server.client();
    past_the_hand_off(&mut good);
    past_the_hand_off(&mut bad);
    bad.conn.writer().write_all(b"to be corrupted").unwrap();
    let mut record = Vec::new();
    while bad.conn.wants_write() {
        bad.conn.write_tls(&mut record).unwrap();
    }
    let last = record.len() - 1;
    record[last] ^= 0x5a;
    bad.sock.write_all(&record).unwrap();
    assert_eq!(server.next_close(), "close tls: DecryptError");
    let mut rest = Vec::new();
    let e = bad.read_to_end(&mut rest).unwrap_err();
    assert!(e.to_string().contains("BadRecordMac"), "{e}");
    tls_round_trip(&mut good, b"after");
    drop(good);
    assert_eq!(server.next_close(), "close eof");
    server.running.stop();
}

/// The server sees SNI and ALPN in on_open; the client sees ALPN.
#[test]
fn alpn_and_sni_are_visible_on_conn() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let pki = TestPki::new();
    let record = seen.clone();
    let running = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                let tls = conn.tls().expect("a TLS connection");
                record.lock().unwrap().push((
                    tls.server_name().map(str::to_string),
                    tls.alpn_protocol().map(<[u8]>::to_vec),
                    tls.protocol_version(),
                ));
                Action::None
            })
            .on_traffic(echo_now)
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .tls_server(
                pki.server_tls()
                    .alpn(&[b"h2", b"http/1.1"])
                    .build()
                    .unwrap(),
            ),
    );
    let mut config = pki.client_config();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut client = tls_client(config, running.tcp_addr(0), "localhost");
    assert_eq!(client.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    tls_round_trip(&mut client, b"ping");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![(
            Some("localhost".to_string()),
            Some(b"http/1.1".to_vec()),
            Some(rustls::ProtocolVersion::TLSv1_3)
        )]
    );
    running.stop();
}

/// Certificates chosen by SNI name; unknown or absent names get the default.
#[test]
fn sni_chooses_the_certificate() {
    let ca = Ca::new("sni CA");
    let a = ca.server(&["a.test", "127.0.0.1"]);
    let b = ca.server(&["b.test"]);
    let config = ringloop::tls::ServerTls::from_pem(a.cert_pem.as_bytes(), a.key_pem.as_bytes())
        .unwrap()
        .sni("B.test", b.cert_pem.as_bytes(), b.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(echo_now)
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .tls_server(config),
    );
    let client_config = ringloop::tls::client_config(ca.pem().as_bytes()).unwrap();
    for name in ["b.test", "a.test", "127.0.0.1"] {
        // Verification succeeds only if the certificate served is for `name`.
        let mut c = tls_client(client_config.clone(), running.tcp_addr(0), name);
        tls_round_trip(&mut c, name.as_bytes());
    }
    running.stop();
}

/// A handler close sends close_notify after what it wrote: the client reads
/// the reply and then a clean end (not a truncation).
#[test]
fn local_close_sends_close_notify() {
    close_after_reply_sends_close_notify(None);
}

/// With a lingering close the write side is shut before the socket is
/// closed: close_notify must still go out first, or the client sees a
/// truncation instead of a clean end.
#[test]
fn a_lingering_close_still_sends_close_notify() {
    close_after_reply_sends_close_notify(Some(std::time::Duration::from_secs(5)));
}

/// The handler answers "bye" and closes; the client must read exactly that
/// and then close_notify, with or without a lingering close.
fn close_after_reply_sends_close_notify(linger: Option<std::time::Duration>) {
    let pki = TestPki::new();
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(|conn| {
                conn.read_all();
                let _ = conn.write(b"bye");
                Action::Close
            })
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .lingering_close(linger)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    let mut client = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    client.write_all(b"hello").unwrap();
    let mut got = Vec::new();
    // read_to_end fails with UnexpectedEof unless close_notify came.
    client.read_to_end(&mut got).expect("a clean TLS close");
    assert_eq!(got, b"bye");
    running.stop();
}

/// Half-close both ways: the client's close_notify is the handler's
/// on_read_closed; it still answers, then shuts its side with close_notify.
#[test]
fn half_close_with_close_notify() {
    struct UntilEof;
    impl EventHandler for UntilEof {
        type State = usize;
        fn on_traffic(&mut self, conn: &mut Conn<'_, usize>) -> Action {
            let total = conn.state().copied().unwrap_or(0) + conn.read_all().len();
            conn.set_state(total);
            Action::None
        }
        fn on_read_closed(&mut self, conn: &mut Conn<'_, usize>) -> Action {
            let n = conn.state().copied().unwrap_or(0);
            let _ = conn.write(format!("got {n} bytes").as_bytes());
            conn.shutdown_write();
            Action::None
        }
    }
    let pki = TestPki::new();
    let running = Running::start(
        Engine::builder(|_| UntilEof)
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    let mut client = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    let data = payload(3, 1 << 20);
    client.write_all(&data).unwrap();
    client.conn.send_close_notify();
    client.flush().unwrap();
    client.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = String::new();
    client
        .read_to_string(&mut reply)
        .expect("reply, then a clean close");
    assert_eq!(reply, format!("got {} bytes", data.len()));
    wait_until("the connection to close", || {
        running.engine.connection_count() == 0
    });
    running.stop();
}

/// Async writes from worker threads are encrypted on the owning loop, in
/// order per sender, and every completion reports success.
#[test]
fn async_writes_from_workers_over_tls() {
    const WORKERS: usize = 4;
    const WRITES: usize = 200;
    let pki = TestPki::new();
    let completed = Arc::new(AtomicUsize::new(0));
    let done = completed.clone();
    let running = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                let handle = conn.handle();
                let engine = conn.engine();
                for w in 0..WORKERS {
                    let handle = handle.clone();
                    let done = done.clone();
                    engine
                        .submit(move || {
                            for i in 0..WRITES {
                                let line = format!("w{w} {i:04}\n");
                                let done = done.clone();
                                handle
                                    .async_write(line, move |r| {
                                        assert!(r.is_ok(), "{r:?}");
                                        done.fetch_add(1, Ordering::Relaxed);
                                    })
                                    .expect("queued");
                            }
                        })
                        .expect("submitted");
                }
                Action::None
            })
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(2)
            .workers(WORKERS)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    let mut client = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    let mut text = vec![0u8; WORKERS * WRITES * 8];
    client.read_exact(&mut text).expect("every line");
    let text = String::from_utf8(text).unwrap();
    let mut next = [0usize; WORKERS];
    for line in text.lines() {
        let (w, i) = line[1..].split_once(' ').unwrap();
        let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[w], "worker {w}'s writes out of order");
        next[w] += 1;
    }
    wait_until("every completion", || {
        completed.load(Ordering::Relaxed) == WORKERS * WRITES
    });
    running.stop();
}

fn http_tls_server(pki: &TestPki) -> Running {
    Running::start(
        http_server::builder()
            .listen("tls://127.0.0.1:0")
            .loops(2)
            .tls_server(pki.server_tls().alpn(&[b"http/1.1"]).build().unwrap()),
    )
}

#[test]
fn pipelined_http_over_tls() {
    let pki = TestPki::new();
    let running = http_tls_server(&pki);
    let mut client = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    let batch = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n".repeat(100);
    for round in 0..3 {
        client.write_all(&batch).unwrap();
        let mut seen = 0;
        let mut text = Vec::new();
        let mut buf = [0u8; 16384];
        while seen < 100 {
            let n = client.read(&mut buf).expect("responses");
            assert!(n > 0, "closed in round {round}");
            text.extend_from_slice(&buf[..n]);
            seen = text.windows(13).filter(|w| w == b"Hello, World!").count();
        }
        assert_eq!(seen, 100);
        assert_eq!(
            String::from_utf8_lossy(&text)
                .matches("HTTP/1.1 200 OK\r\n")
                .count(),
            100
        );
    }
    running.stop();
}

#[test]
fn curl_fetches_http_over_tls() {
    if !have_tool("curl", "curl") {
        return;
    }
    let pki = TestPki::new();
    let dir = TempDir::new("tls-curl");
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pki.ca.pem()).unwrap();
    let running = http_tls_server(&pki);
    let port = running.tcp_addr(0).port();
    let base = format!("https://localhost:{port}");
    let (_, stderr) = curl_plaintext_twice(
        &base,
        &[
            "--cacert".into(),
            ca.display().to_string(),
            "--resolve".into(),
            format!("localhost:{port}:127.0.0.1"),
        ],
    );
    assert!(stderr.contains("Re-using existing connection"), "{stderr}");
    // Without the CA, curl refuses the server.
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg(format!("{base}/plaintext"))
        .output()
        .expect("run curl");
    assert!(!out.status.success(), "curl trusted an unknown CA");
    running.stop();
}

/// A one-loop echo server for `openssl s_client`, with its CA written to a
/// file in a temporary directory (kept alive by the caller); `None` when
/// openssl is missing and cannot be installed.
fn openssl_echo_server(dir: &str) -> Option<(EchoServer, TempDir, std::path::PathBuf)> {
    if !have_tool("openssl", "openssl") {
        return None;
    }
    let server = echo_server(1, |b| b);
    let dir = TempDir::new(dir);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, server.pki.ca.pem()).unwrap();
    Some((server, dir, ca))
}

/// `openssl s_client -brief` (bounded by `timeout 20`) connecting to
/// `server` as `localhost`, trusting `ca`, with `args` added; its stdin,
/// stdout and stderr are pipes.
fn s_client(args: &[&str], ca: &std::path::Path, server: &EchoServer) -> std::process::Child {
    Command::new("timeout")
        .args(["20", "openssl", "s_client", "-brief"])
        .args(args)
        .arg("-CAfile")
        .arg(ca)
        .args(["-servername", "localhost", "-connect"])
        .arg(server.addr().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl")
}

/// `openssl s_client` speaking TLS 1.2 and then 1.3: verified, echoed.
#[test]
fn openssl_s_client_tls12_and_tls13() {
    let Some((server, _dir, ca)) = openssl_echo_server("tls-openssl") else {
        return;
    };
    for (flag, version) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let mut child = s_client(
            &[flag, "-verify_return_error", "-alpn", "echo/1"],
            &ca,
            &server,
        );
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let line = format!("hello over {version}\n");
        stdin.write_all(line.as_bytes()).unwrap();
        let mut back = vec![0u8; line.len()];
        stdout.read_exact(&mut back).expect("the echo");
        assert_eq!(String::from_utf8_lossy(&back), line);
        drop(stdin); // EOF: s_client closes the connection
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("Protocol version: {version}")),
            "{stderr}"
        );
        assert!(stderr.contains("Verification: OK"), "{stderr}");
        let close = server.next_close();
        assert!(close == "close eof", "{close}");
    }
    server.running.stop();
}

/// openssl s_client's KeyUpdate commands once the loop runs the record
/// layer: `K` (update_requested: the loop answers with its own and changes
/// its write key, or s_client could not read the echoes after it) and `k`.
#[test]
fn openssl_s_client_key_updates_after_the_hand_off() {
    let Some((server, _dir, ca)) = openssl_echo_server("tls-openssl-k") else {
        return;
    };
    let mut child = s_client(&["-tls1_3"], &ca, &server);
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // s_client reports each command on stderr; the next line may be written
    // only after it took the command (a read of stdin holding the command
    // and more text would drop the text).
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let (lines_tx, lines) = unbounded();
    let reader = thread::spawn(move || {
        use std::io::BufRead;
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut echo = |stdin: &mut std::process::ChildStdin, line: &str| {
        stdin.write_all(line.as_bytes()).unwrap();
        let mut back = vec![0u8; line.len()];
        stdout.read_exact(&mut back).expect("the echo");
        assert_eq!(String::from_utf8_lossy(&back), line);
    };
    // Past the hand-off (32 reads and writes), one record each way at a time.
    for i in 0..40 {
        echo(&mut stdin, &format!("line {i}\n"));
    }
    for command in ["K\n", "k\n", "K\n"] {
        stdin.write_all(command.as_bytes()).unwrap();
        loop {
            let line = lines.recv_timeout(PATIENCE).expect("s_client's KEYUPDATE");
            if line == "KEYUPDATE" {
                break;
            }
        }
        for i in 0..3 {
            echo(&mut stdin, &format!("after {} {i}\n", command.trim()));
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    assert_eq!(server.next_close(), "close eof");
    server.running.stop();
}

/// Client certificates: required by the server; a client without one is
/// refused (the handler hears why), a client with one is let in and its
/// certificate is visible.
#[test]
fn client_certificates_are_required_and_visible() {
    let pki = TestPki::new();
    let client_cert = pki.ca.client("client-1");
    let (tx, rx) = unbounded();
    let (hs_tx, hs_rx) = unbounded::<String>();
    struct Auth {
        seen: Sender<usize>,
        failures: Sender<String>,
    }
    impl EventHandler for Auth {
        type State = ();
        fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            let certs = conn
                .tls()
                .and_then(|t| t.peer_certificates())
                .map_or(0, <[_]>::len);
            let _ = self.seen.send(certs);
            Action::None
        }
        fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            echo_now(conn)
        }
        fn on_handshake_error(
            &mut self,
            _: &mut LoopContext,
            _: &SockAddr,
            reason: &CloseReason,
        ) -> Action {
            let _ = self.failures.send(describe(reason));
            Action::None
        }
    }
    let config = pki
        .server_tls()
        .client_auth(pki.ca.pem().as_bytes(), true)
        .unwrap()
        .build()
        .unwrap();
    let running = Running::start(
        Engine::builder(move |_| Auth {
            seen: tx.clone(),
            failures: hs_tx.clone(),
        })
        .listen("tls://127.0.0.1:0")
        .loops(1)
        .tls_server(config),
    );
    // Without a certificate: TLS 1.3 clients finish their side first, then
    // hear the alert on their first read.
    let mut anonymous = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    let _ = anonymous.write_all(b"let me in");
    let mut buf = [0u8; 16];
    assert!(
        anonymous.read(&mut buf).is_err(),
        "the server let an anonymous client in"
    );
    let failure = hs_rx.recv_timeout(PATIENCE).unwrap();
    assert!(failure.contains("NoCertificatesPresented"), "{failure}");
    // With one.
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(client_cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(client_cert.key_pem.as_bytes()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls::pki_types::CertificateDer::pem_slice_iter(pki.ca.pem().as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    })
    .with_client_auth_cert(certs, key)
    .unwrap();
    let mut client = tls_client(config, running.tcp_addr(0), "localhost");
    tls_round_trip(&mut client, b"authenticated");
    assert_eq!(
        rx.recv_timeout(PATIENCE).unwrap(),
        1,
        "the client's certificate"
    );
    running.stop();
}

use rustls::pki_types::pem::PemObject;

// ----- hostile and broken peers -----

/// A real ClientHello, as a rustls client sends it.
fn client_hello(pki: &TestPki) -> Vec<u8> {
    let mut conn = new_session(pki, "localhost");
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Reads until the server closes (end of stream or reset); `true` if it
/// did within PATIENCE. Anything else is printed.
fn closed_by_server(mut s: &TcpStream) -> bool {
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("closed_by_server: {e} ({:?})", e.kind());
                return false;
            }
        }
    }
}

#[test]
fn hostile_peers_close_only_their_own_connection() {
    let server = echo_server(1, |b| b.tls_handshake_timeout(Duration::from_millis(1500)));
    // A good client stays connected throughout.
    let mut good = server.client();
    tls_round_trip(&mut good, b"before");

    // Plaintext HTTP to the TLS port.
    let mut s = tcp_client(server.addr());
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(closed_by_server(&s));
    let why = server.next_close();
    assert!(why.starts_with("handshake tls: InvalidMessage"), "{why}");

    // Random garbage.
    let mut s = tcp_client(server.addr());
    s.write_all(&payload(99, 3000)).unwrap();
    assert!(closed_by_server(&s));
    let why = server.next_close();
    assert!(why.starts_with("handshake tls:"), "{why}");

    // A record header declaring a huge length.
    let mut s = tcp_client(server.addr());
    s.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00])
        .unwrap();
    assert!(closed_by_server(&s));
    let why = server.next_close();
    assert!(
        why.contains("MessageTooLarge") || why.contains("InvalidMessage"),
        "{why}"
    );

    // A ClientHello cut short, then silence: the handshake timeout.
    let hello = client_hello(&server.pki);
    let mut s = tcp_client(server.addr());
    let started = Instant::now();
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    assert!(closed_by_server(&s));
    assert_eq!(server.next_close(), "handshake timeout: Handshake");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );

    // A reset in the middle of the handshake.
    let mut s = tcp_client(server.addr());
    s.write_all(&hello[..hello.len() / 2]).unwrap();
    thread::sleep(Duration::from_millis(50));
    reset_on_close(&s);
    drop(s);
    assert_eq!(server.next_close(), "handshake reset");

    // A ClientHello, then EOF.
    let mut s = tcp_client(server.addr());
    s.write_all(&hello).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_server(&s));
    assert_eq!(server.next_close(), "handshake eof");

    // The good client never noticed.
    tls_round_trip(&mut good, b"after");
    assert_eq!(server.running.engine.connection_count(), 1);
    drop(good);
    assert_eq!(server.next_close(), "close eof");
    server.running.stop();
}

/// A client that completes the handshake and never reads: the server's
/// queue (ciphertext) stops draining and its write timeout closes it; the
/// other clients are unaffected.
#[test]
fn a_client_that_never_reads_is_timed_out() {
    let pki = TestPki::new();
    let (tx, rx) = unbounded();
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(|conn| {
                conn.read_all();
                // Every request asks for 8 MiB.
                let chunk = vec![b'x'; 1 << 20];
                for _ in 0..8 {
                    if conn.write(&chunk).is_err() {
                        return Action::Close;
                    }
                }
                Action::None
            })
            .on_close(move |conn, reason| {
                let _ = tx.send((describe(reason), conn.outbound_buffered()));
                Action::None
            })
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .timeouts(Timeouts::none().write(Duration::from_millis(1000)))
            .tls_server(pki.server_tls().build().unwrap()),
    );
    let mut lazy = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    lazy.write_all(b"send me everything").unwrap();
    let (why, queued) = rx.recv_timeout(PATIENCE).unwrap();
    assert_eq!(why, "timeout: Write");
    assert!(queued > 0, "the queue held ciphertext when it timed out");
    running.stop();
}

// ----- dialling -----

/// A dialled connection whose config allows secret extraction hands its
/// record layer to the loop as a server session does (after 32 reads and
/// writes) and goes on carrying data both ways, byte-exact.
#[test]
fn a_dialled_connection_hands_off_and_carries_data_both_ways() {
    let server = echo_server(1, |b| b);
    let (tx, rx) = unbounded::<Vec<u8>>();
    let mut config = server.pki.client_config();
    config.enable_secret_extraction = true;
    let client = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                let _ = tx.send(conn.read_all().to_vec());
                Action::None
            })
            .builder()
            .loops(1)
            .tls_client(config),
    );
    let handle = client
        .engine
        .dial(format!("tls://localhost:{}", server.addr().port()))
        .wait()
        .expect("dial and handshake");
    for i in 0..60u64 {
        let data = payload(i, 1 + (i as usize * 997) % 40_000);
        handle.write(data.clone()).wait().unwrap();
        let mut got = Vec::new();
        while got.len() < data.len() {
            got.extend(rx.recv_timeout(PATIENCE).unwrap());
        }
        assert!(got == data, "round {i}: {} bytes back", got.len());
    }
    handle.close().unwrap();
    assert_eq!(server.next_close(), "close eof");
    client.stop();
    server.running.stop();
}

#[test]
fn engine_dials_tls_and_verifies_the_server() {
    let server = echo_server(1, |b| b);
    let port = server.addr().port();
    let (tx, rx) = unbounded::<Vec<u8>>();
    let client = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                let _ = tx.send(conn.read_all().to_vec());
                Action::None
            })
            .builder()
            .loops(1)
            .tls_handshake_timeout(Duration::from_secs(1))
            .tls_client(server.pki.client_config()),
    );
    // By IP (the certificate names 127.0.0.1) and by `localhost`.
    for addr in [
        format!("tls://127.0.0.1:{port}"),
        format!("tls://localhost:{port}"),
    ] {
        let handle = client
            .engine
            .dial(&addr)
            .wait()
            .expect("dial and handshake");
        handle.write(b"through the engine".to_vec()).wait().unwrap();
        let mut got = Vec::new();
        while got.len() < 18 {
            got.extend(rx.recv_timeout(PATIENCE).unwrap());
        }
        assert_eq!(got, b"through the engine");
        handle.close().unwrap();
        assert_eq!(server.next_close(), "close eof");
    }

    // An untrusted certificate: a typed error.
    let other_ca = Ca::new("someone else");
    let untrusted =
        TlsConnector::new(ringloop::tls::client_config(other_ca.pem().as_bytes()).unwrap());
    match client
        .engine
        .dial_tls(format!("tls://127.0.0.1:{port}"), untrusted)
        .wait()
    {
        Err(Error::Tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ))) => {}
        other => panic!("expected UnknownIssuer, got {other:?}"),
    }
    let why = server.next_close();
    assert!(why.contains("AlertReceived"), "{why}");

    // A certificate for another name.
    let wrong = TlsConnector::new(server.pki.client_config())
        .server_name("elsewhere.test")
        .unwrap();
    match client
        .engine
        .dial_tls(format!("tls://127.0.0.1:{port}"), wrong)
        .wait()
    {
        Err(Error::Tls(rustls::Error::InvalidCertificate(e))) => {
            assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
        }
        other => panic!("expected NotValidForName, got {other:?}"),
    }
    let why = server.next_close();
    assert!(why.contains("AlertReceived"), "{why}");

    // A plain TCP server is not TLS.
    let plain = Running::start(
        Hooks::<()>::new()
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let addr = format!("tls://127.0.0.1:{}", plain.tcp_addr(0).port());
    match client.engine.dial(&addr).wait() {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::TimedOut => {}
        other => panic!("expected a handshake timeout, got {other:?}"),
    }
    plain.stop();

    // No client config: refused up front.
    let bare = Running::start(Hooks::<()>::new().builder().loops(1));
    assert!(matches!(
        bare.engine.dial(format!("tls://127.0.0.1:{port}")).wait(),
        Err(Error::InvalidConfig(_))
    ));
    bare.stop();
    client.stop();
    server.running.stop();
}

#[test]
fn tls_addresses_need_a_server_config() {
    let err = Engine::builder(|_| Hooks::<()>::new())
        .listen("tls://127.0.0.1:0")
        .build()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    assert!(TimeoutKind::Handshake != TimeoutKind::Connect);
}

/// `wake` and `close` from another thread reach a TLS connection on its
/// loop: the wake runs on_traffic (which writes, encrypted there), the close
/// sends close_notify after what was queued.
#[test]
fn wake_and_close_from_another_thread() {
    let pki = TestPki::new();
    let (tx, rx) = unbounded();
    let running = Running::start(
        Hooks::<u32>::new()
            .on_open(move |conn| {
                conn.set_state(0);
                let _ = tx.send(conn.handle());
                Action::None
            })
            .on_traffic(|conn| {
                conn.read_all();
                let n = conn.state().copied().unwrap_or(0) + 1;
                conn.set_state(n);
                let _ = conn.write(format!("wake {n}\n").as_bytes());
                Action::None
            })
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(2)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    let mut client = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    let handle = rx.recv_timeout(PATIENCE).expect("on_open ran");
    let worker = thread::spawn(move || {
        handle.wake().expect("wake");
        handle.wake().expect("wake");
        // Queued behind the wakes: both replies go out before close_notify.
        handle.close().expect("close");
    });
    let mut text = String::new();
    client
        .read_to_string(&mut text)
        .expect("replies, then a clean close");
    worker.join().unwrap();
    assert_eq!(text, "wake 1\nwake 2\n");
    wait_until("the close", || running.engine.connection_count() == 0);
    running.stop();
}

#[test]
fn a_proxy_protocol_header_before_the_handshake_is_read_raw() {
    // A tls:// listener behind a balancer speaking PROXY v1: the header is
    // read as plain bytes, and what follows it in the same segment (the
    // ClientHello) goes through the TLS session, not to the handler.
    let server = echo_server(1, |b| b.proxy_protocol(true));
    let mut conn = new_session(&server.pki, "localhost");
    let mut sock = tcp_client(server.addr());
    let mut first = b"PROXY TCP4 192.0.2.7 127.0.0.1 40000 443\r\n".to_vec();
    conn.write_tls(&mut first).expect("the ClientHello");
    sock.write_all(&first).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, sock);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .expect("TLS handshake after the PROXY header");
    }
    let data = payload(21, 100_000);
    stream.write_all(&data).unwrap();
    stream.flush().unwrap();
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).expect("the echo");
    assert!(back == data, "echo behind a PROXY header differs");
    drop(stream);
    assert_eq!(server.next_close(), "close eof");
    server.running.stop();
}

/// Stopping the engine while handshakes run closes those connections with
/// `CloseReason::Shutdown` through `on_handshake_error` (never `on_close`:
/// they never opened), and their peers see the socket close.
#[test]
fn engine_stop_during_handshakes_reports_shutdown() {
    let server = echo_server(1, |b| b);
    let hello = client_hello(&server.pki);
    // One peer sent half its ClientHello ...
    let mut half = tcp_client(server.addr());
    half.write_all(&hello[..hello.len() / 2]).unwrap();
    // ... the other all of it, and got the server's first flight.
    let mut whole = tcp_client(server.addr());
    whole.write_all(&hello).unwrap();
    let mut flight = [0u8; 5];
    whole.read_exact(&mut flight).expect("the ServerHello");
    assert_eq!(flight[0], 0x16, "a handshake record");
    wait_until("both connections on the loop", || {
        server.running.engine.connection_count() == 2
    });
    let closes = server.closes;
    server.running.stop();
    for _ in 0..2 {
        let why = closes.recv_timeout(PATIENCE).expect("a handshake report");
        assert_eq!(why, "handshake shutdown");
    }
    assert!(
        closes.try_recv().is_err(),
        "no on_close for connections that never opened"
    );
    assert!(closed_by_server(&half));
    assert!(closed_by_server(&whole));
}

/// A peer that ends its TCP stream without `close_notify` abandoned the
/// session: closing on that end of stream sends nothing back; a reply
/// written after it is still followed by `close_notify`.
#[test]
fn an_abandoned_session_gets_close_notify_only_after_a_reply() {
    struct ByeOnEof(bool);
    impl EventHandler for ByeOnEof {
        type State = ();
        fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            echo_now(conn)
        }
        fn on_read_closed(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            if self.0 {
                let _ = conn.write(b"bye");
            }
            Action::Close
        }
    }
    for answer in [false, true] {
        let pki = TestPki::new();
        let running = Running::start(
            Engine::builder(move |_| ByeOnEof(answer))
                .listen("tls://127.0.0.1:0")
                .loops(1)
                .tls_server(pki.server_tls().build().unwrap()),
        );
        let mut client = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
        tls_round_trip(&mut client, b"hello");
        client.sock.shutdown(std::net::Shutdown::Write).unwrap();
        if answer {
            let mut got = Vec::new();
            // read_to_end fails with UnexpectedEof unless close_notify came.
            client
                .read_to_end(&mut got)
                .expect("the reply, then close_notify");
            assert_eq!(got, b"bye");
        } else {
            let mut rest = Vec::new();
            client.sock.read_to_end(&mut rest).expect("end of stream");
            assert!(
                rest.is_empty(),
                "{} bytes after an abandoned session",
                rest.len()
            );
        }
        running.stop();
    }
}

/// On the io_uring driver a TLS connection's ciphertext comes in through
/// the ring (a multishot receive into its provided buffers, decrypted
/// there): the loop thread makes no `read` of its own per message (`syscr`
/// in `/proc/PID/task/TID/io` counts them). Through readiness, as before
/// this path existed, every echoed message cost the loop one `read`.
#[test]
fn tls_on_io_uring_reads_through_the_ring() {
    if !uring_available() {
        return;
    }
    let pki = TestPki::new();
    let (tx, rx) = unbounded();
    let running = Running::start(
        Hooks::<()>::new()
            .on_open(move |_| {
                // The loop thread's own I/O counters.
                let _ = tx.send(std::fs::read_link("/proc/thread-self").expect("thread-self"));
                Action::None
            })
            .on_traffic(|conn| {
                let data = conn.read_all();
                let _ = conn.write(data);
                Action::None
            })
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .backend(ringloop::Backend::IoUring)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    assert_eq!(running.engine.backend(), ringloop::Backend::IoUring);
    let mut client = tls_client(pki.client_config(), running.tcp_addr(0), "localhost");
    let thread = rx.recv_timeout(PATIENCE).expect("on_open ran");
    let io = std::path::Path::new("/proc").join(thread).join("io");
    let reads = || -> u64 {
        let text = std::fs::read_to_string(&io).expect("the loop thread's io counters");
        text.lines()
            .find_map(|l| l.strip_prefix("syscr:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no syscr in {text}"))
    };
    tls_round_trip(&mut client, b"warm up");
    let before = reads();
    const MESSAGES: u64 = 200;
    for i in 0..MESSAGES {
        tls_round_trip(&mut client, format!("message {i} ").repeat(20).as_bytes());
    }
    let made = reads() - before;
    assert!(
        made < MESSAGES / 4,
        "{made} read calls on the loop thread for {MESSAGES} echoed messages"
    );
    drop(client);
    running.stop();
}
