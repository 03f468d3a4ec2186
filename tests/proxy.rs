//! `examples/proxy.rs` end to end: the built example runs as a child process
//! between std clients and a std backend, and every byte is checked.
//!
//! The example's handler is private to its binary, so the tests run the
//! binary that `cargo test` builds next to them
//! (`target/<profile>/examples/proxy`). Running it as a process also lets the
//! tests read its memory and descriptors from `/proc`.
//!
//! The backend is a std server whose behaviour each client picks with its
//! first byte (the proxy relays it like any other):
//!
//! | byte | the backend |
//! |---|---|
//! | `E` | echoes; on EOF it half-closes in turn |
//! | `G` | sends a 2 MiB banner first, then echoes |
//! | `H` | reads to EOF, then sends everything back and closes |
//! | `D` | echoes 256 KiB, then dies with a reset |
//! | `S` | a slow starter: waits 500 ms, then echoes |
//!
//! # Two bugs these tests found (both fixed)
//!
//! * **A relay stalled** for good once its backend-side queue passed the
//!   high-water mark (see `slow_starting_backend`): the unthrottled,
//!   slow-starter and slow-reader tests caught it (the Unix and small-buffer
//!   slow starters every time, the others under CPU contention). The
//!   throttled clients keep at most 1 MiB unanswered (a request/response
//!   client), so no backend-side queue reaches the mark there.
//! * **An early half-close** (request and FIN before the backend connects)
//!   lost the request (`examples/proxy.rs`).

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::example::Example;
use common::*;

const MIB: usize = 1 << 20;
/// What a `G` backend sends before anything else.
const BANNER_LEN: usize = 2 * MIB;
/// Bytes a `D` backend echoes before it dies.
const DIE_AFTER: usize = 256 * 1024;

fn banner() -> Vec<u8> {
    payload(0xBA55, BANNER_LEN)
}

/// The scripted backend (see the module docs).
fn backend(mut s: Box<dyn PeerStream>) {
    let mut mode = [0u8];
    if s.read_exact(&mut mode).is_err() {
        return;
    }
    match mode[0] {
        b'E' => echo_stream(s),
        b'G' if s.write_all(&banner()).is_ok() => echo_stream(s),
        b'H' => {
            let mut all = Vec::new();
            if s.read_to_end(&mut all).is_ok() {
                let _ = s.write_all(&all);
            }
        }
        b'S' => {
            thread::sleep(Duration::from_millis(500));
            echo_stream(s);
        }
        b'D' => {
            let mut buf = vec![0u8; 65536];
            let mut echoed = 0;
            while echoed < DIE_AFTER {
                let want = buf.len().min(DIE_AFTER - echoed);
                match s.read(&mut buf[..want]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        echoed += n;
                    }
                }
            }
            s.abort();
        }
        _ => {}
    }
}

// ----- the proxy process -----

/// A running proxy (the example built next to this test binary, see
/// `common::example`); killed if dropped without [`Proxy::stop`].
struct Proxy {
    process: Example,
    addr: SocketAddr,
}

impl Proxy {
    fn start(backend: &str, loops: usize) -> Proxy {
        Self::start_with(backend, loops, &[])
    }

    fn start_with(backend: &str, loops: usize, extra: &[&str]) -> Proxy {
        let loops = loops.to_string();
        let mut args = vec!["--listen", "tcp://127.0.0.1:0", "--backend", backend];
        args.extend(["--loops", &loops]);
        args.extend(extra);
        let process = Example::start("proxy", &args);
        let addr = process.addr;
        Proxy { process, addr }
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn stderr(&self) -> Vec<String> {
        self.process.stderr()
    }

    /// A `/proc/PID/status` figure in KiB (`VmRSS`, `VmHWM`).
    fn status_kib(&self, field: &str) -> u64 {
        proc_status_bytes(self.pid(), field) / 1024
    }

    /// The proxy's open sockets (`socket:[INODE]`), listener included.
    fn sockets(&self) -> Vec<String> {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .map(|l| l.display().to_string())
            .filter(|l| l.starts_with("socket:"))
            .collect()
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.process.exited() {
            panic!("the proxy exited: {status}; stderr: {:?}", self.stderr());
        }
    }

    /// SIGTERM, then waits (bounded) for a clean exit.
    fn stop(self) -> ExitStatus {
        self.process.stop()
    }
}

// ----- clients -----

/// What a client through the proxy should get back.
fn expected(mode: u8, data: &[u8]) -> Vec<u8> {
    match mode {
        b'G' => [banner(), data.to_vec()].concat(),
        _ => data.to_vec(),
    }
}

/// Sends the mode byte and `data` through the proxy on one thread while
/// reading on another. With `half_close` the client shuts its write half
/// after the data and reads to EOF; without, it reads exactly what it
/// expects and closes. With a `window`, the writer never gets more than that
/// many bytes ahead of their echo (a request/response client); without, it
/// writes as fast as the proxy takes. Returns what it read.
fn exchange(
    proxy: SocketAddr,
    mode: u8,
    data: Arc<Vec<u8>>,
    half_close: bool,
    window: Option<usize>,
) -> Vec<u8> {
    let mut s = tcp_client(proxy);
    let want = expected(mode, &data).len();
    // Bytes of `data` seen back so far (after the banner of a G backend).
    let echoed = Arc::new(AtomicUsize::new(0));
    let skip = want - data.len();
    let writer = {
        let mut s = s.try_clone().unwrap();
        let echoed = echoed.clone();
        // An H backend answers only after EOF: no window can apply.
        let window = window.filter(|_| mode != b'H');
        thread::spawn(move || {
            s.write_all(&[mode]).unwrap();
            let mut sent = 0;
            for chunk in data.chunks(65536) {
                if let Some(w) = window {
                    let deadline = Instant::now() + PATIENCE;
                    while sent - echoed.load(Ordering::SeqCst) > w {
                        assert!(Instant::now() < deadline, "no echo for {PATIENCE:?}");
                        thread::sleep(Duration::from_micros(200));
                    }
                }
                s.write_all(chunk).unwrap();
                sent += chunk.len();
            }
            if half_close {
                s.shutdown(Shutdown::Write).unwrap();
            }
        })
    };
    let mut got = Vec::with_capacity(want);
    let mut buf = vec![0u8; 65536];
    while half_close || got.len() < want {
        let room = if half_close {
            buf.len()
        } else {
            buf.len().min(want - got.len())
        };
        match s.read(&mut buf[..room]) {
            Ok(0) if half_close => break,
            Ok(0) => panic!(
                "mode {}: EOF after {} of {want} bytes",
                mode as char,
                got.len()
            ),
            Ok(n) => {
                got.extend_from_slice(&buf[..n]);
                echoed.store(got.len().saturating_sub(skip), Ordering::SeqCst);
            }
            Err(e) => panic!(
                "mode {}: after {} of {want} relayed bytes: {e} (a timeout is a stall)",
                mode as char,
                got.len()
            ),
        }
    }
    writer.join().expect("client writer");
    got
}

/// Waits until the proxy holds no socket but its listener: every relay it
/// opened is closed on both sides. (Only sockets are counted: a test
/// process may hand other descriptors down to its children.)
fn wait_for_relays_closed(proxy: &Proxy) {
    let deadline = Instant::now() + PATIENCE;
    while proxy.sockets().len() > 1 {
        if Instant::now() > deadline {
            let ss = Command::new("ss")
                .args(["-tanpe"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            let mine: Vec<&str> = ss
                .lines()
                .filter(|l| l.contains(&format!("pid={},", proxy.pid())))
                .collect();
            panic!(
                "the proxy still holds {} sockets: {:?}\n{}",
                proxy.sockets().len(),
                proxy.sockets(),
                mine.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(10));
    }
}

// ----- byte-exact relaying -----

/// Many concurrent clients, payloads from one byte to 6 MiB, with and
/// without half-close, in both directions (`G` sends first); every byte
/// relayed exactly, and every relay closed afterwards. `window`: see
/// [`exchange`].
fn many_clients(loops: usize, unix_backend: bool, window: Option<usize>) {
    let backend = StdServer::new(unix_backend, backend);
    let mut proxy = Proxy::start(&backend.addr.url(), loops);
    let sizes = [1, 100, 4096, 65_536, 300_000, MIB, 3 * MIB, 6 * MIB];
    let clients: Vec<_> = (0..24usize)
        .map(|i| {
            let addr = proxy.addr;
            thread::spawn(move || {
                let mode = [b'E', b'G', b'H'][i % 3];
                // H answers only after EOF: it needs the half-close.
                let half_close = mode == b'H' || i % 2 == 0;
                let data = Arc::new(payload(i as u64, sizes[i % sizes.len()]));
                let got = exchange(addr, mode, data.clone(), half_close, window);
                let want = expected(mode, &data);
                assert_eq!(got.len(), want.len(), "client {i} ({})", mode as char);
                assert!(got == want, "client {i} ({}): bytes differ", mode as char);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    assert_eq!(backend.accepted.load(Ordering::SeqCst), 24);
    wait_for_relays_closed(&proxy);
    proxy.assert_running();
    assert!(proxy.stop().success());
}

#[test]
fn relays_byte_exact_one_loop() {
    many_clients(1, false, Some(MIB));
}

#[test]
fn relays_byte_exact_two_loops() {
    many_clients(2, false, Some(MIB));
}

#[test]
fn relays_byte_exact_to_a_unix_backend() {
    many_clients(2, true, Some(MIB));
}

/// Clients that write all they have at once: a backend connection's queue
/// can pass its high-water mark whenever the backend lags.
#[test]
fn relays_byte_exact_unthrottled_clients() {
    many_clients(2, false, None);
}

#[test]
fn relays_byte_exact_unthrottled_clients_to_a_unix_backend() {
    many_clients(2, true, None);
}

/// One client streams 32 MiB both ways at once, then half-closes.
fn large_stream(window: Option<usize>) {
    let backend = StdServer::tcp(backend);
    let proxy = Proxy::start(&backend.addr.url(), 1);
    let data = Arc::new(payload(4242, 32 * MIB));
    let got = exchange(proxy.addr, b'E', data.clone(), true, window);
    assert_eq!(got.len(), data.len());
    assert!(got == *data, "bytes differ");
    assert!(proxy.stop().success());
}

#[test]
fn relays_a_large_stream_with_half_close() {
    large_stream(Some(MIB));
}

#[test]
fn relays_a_large_unthrottled_stream_with_half_close() {
    large_stream(None);
}

/// A backend that starts reading late (the client has sent a lot by then),
/// then echoes: the relay must resume in both directions and finish.
///
/// While the backend sleeps, the proxy queues the client's bytes on the
/// backend connection until that queue passes its high-water mark. Then the
/// backend starts echoing. If the proxy stops reading the backend connection
/// because of that connection's *own* full queue, the backend blocks writing
/// its echo, never reads again, the queue never drains: the relay is stuck
/// for good. Whether the queue reaches the mark depends on how much the
/// kernel buffers between proxy and backend absorb before the backend
/// blocks: loopback TCP with autotuned buffers often absorbs enough; 64 KiB
/// buffers or a Unix socket never do.
fn slow_starting_backend(backend: StdServer) {
    let proxy = Proxy::start(&backend.addr.url(), 1);
    let data = Arc::new(payload(31, 16 * MIB));
    let got = exchange(proxy.addr, b'S', data.clone(), false, None);
    assert!(got == *data, "bytes differ");
    wait_for_relays_closed(&proxy);
    assert!(proxy.stop().success());
}

#[test]
fn a_slow_starting_tcp_backend_does_not_stall_the_relay() {
    slow_starting_backend(StdServer::tcp(backend));
}

#[test]
fn a_slow_starting_tcp_backend_with_small_buffers_does_not_stall_the_relay() {
    let addr = "127.0.0.1:0".parse().unwrap();
    slow_starting_backend(StdServer::tcp_with(addr, Some(64 * 1024), backend));
}

#[test]
fn a_slow_starting_unix_backend_does_not_stall_the_relay() {
    slow_starting_backend(StdServer::unix(backend));
}

// ----- failures -----

/// A backend that refuses closes the client; the proxy keeps serving the
/// clients it already relays, and new ones once the backend is back.
#[test]
fn a_refusing_backend_closes_its_client_only() {
    let first = StdServer::tcp(backend);
    let backend_addr = first.tcp_addr();
    let mut proxy = Proxy::start(&first.addr.url(), 2);
    // A relay that outlives its backend's listener.
    let mut steady = tcp_client(proxy.addr);
    steady.write_all(b"E").unwrap();
    echo_round_trip(&mut steady, b"before");
    drop(first); // the listener closes; the established relay stays
    for _ in 0..5 {
        let mut refused = tcp_client(proxy.addr);
        // Bytes sent before the dial fails are dropped with the client.
        let _ = refused.write_all(b"Ehello");
        assert!(
            read_to_end(&mut refused).is_empty(),
            "a refused client gets nothing"
        );
    }
    echo_round_trip(&mut steady, b"still relayed");
    // The proxy logs each refusal (read from its stderr by another thread).
    wait_until("the proxy to log the refusal", || {
        proxy.stderr().iter().any(|l| l.contains("refused"))
    });
    // The backend comes back on the same port.
    let _second = StdServer::tcp_on(backend_addr, backend);
    let data = Arc::new(payload(9, 200_000));
    assert!(exchange(proxy.addr, b'E', data.clone(), true, None) == *data);
    echo_round_trip(&mut steady, b"and after");
    proxy.assert_running();
    drop(steady);
    assert!(proxy.stop().success());
}

/// A backend that dies mid-stream (a reset) closes its own client; clients
/// relayed at the same time to healthy backend connections are untouched.
#[test]
fn a_backend_dying_mid_stream_closes_its_client_only() {
    let backend = StdServer::tcp(backend);
    let mut proxy = Proxy::start(&backend.addr.url(), 1);
    let bystanders: Vec<_> = (0..4u64)
        .map(|i| {
            let addr = proxy.addr;
            thread::spawn(move || {
                let data = Arc::new(payload(100 + i, 4 * MIB));
                let got = exchange(addr, b'E', data.clone(), i % 2 == 0, Some(MIB));
                assert!(got == *data, "bystander {i}: bytes differ");
            })
        })
        .collect();
    let victims: Vec<_> = (0..4u64)
        .map(|i| {
            let addr = proxy.addr;
            thread::spawn(move || {
                let mut s = tcp_client(addr);
                let data = payload(200 + i, 2 * MIB);
                let writer = {
                    let mut s = s.try_clone().unwrap();
                    // The backend resets midway: the tail may not be taken.
                    thread::spawn(move || {
                        let _ = s.write_all(b"D");
                        let _ = s.write_all(&data);
                    })
                };
                let got = read_to_end(&mut s);
                writer.join().unwrap();
                assert!(got.len() <= DIE_AFTER, "victim {i} got {} bytes", got.len());
                assert!(
                    got == payload(200 + i, 2 * MIB)[..got.len()],
                    "victim {i}: bytes differ"
                );
            })
        })
        .collect();
    for t in bystanders.into_iter().chain(victims) {
        t.join().expect("client");
    }
    wait_for_relays_closed(&proxy);
    proxy.assert_running();
    assert!(proxy.stop().success());
}

/// Bytes a client sends before its backend has connected are relayed once
/// it has (the backend is slow to answer: its accept queue is full for the
/// first SYN; the retransmit about 1 s later gets in).
#[test]
fn bytes_sent_before_the_backend_connects_are_relayed() {
    let hole = BlackHole::new().expect("a black hole on loopback");
    let addr = hole.addr;
    let mut proxy = Proxy::start(&format!("tcp://{addr}"), 1);
    let _backend = hole.open_after(Duration::from_millis(300), backend);
    let mut s = tcp_client(proxy.addr);
    let early = payload(5, 100_000);
    s.write_all(b"E").unwrap();
    s.write_all(&early).unwrap();
    let mut got = vec![0u8; early.len()];
    s.read_exact(&mut got).expect("the echo of the early bytes");
    assert!(got == early, "early bytes differ");
    echo_round_trip(&mut s, b"and later ones");
    drop(s);
    wait_for_relays_closed(&proxy);
    proxy.assert_running();
    assert!(proxy.stop().success());
}

/// A client that sends its request and half-closes before the backend has
/// connected still gets the answer: the proxy forwards the request and the
/// FIN once the backend is there. The backend is slow to answer (its accept
/// queue is full for the first SYN; the retransmit about 1 s later gets in).
#[test]
fn a_client_half_closing_before_the_backend_connects_gets_its_answer() {
    let hole = BlackHole::new().expect("a black hole on loopback");
    let addr = hole.addr;
    let mut proxy = Proxy::start(&format!("tcp://{addr}"), 1);
    let _backend = hole.open_after(Duration::from_millis(300), backend);
    let mut s = tcp_client(proxy.addr);
    s.write_all(b"Hhello, slow backend").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let got = read_to_end(&mut s);
    assert_eq!(
        String::from_utf8_lossy(&got),
        "hello, slow backend",
        "the answer to a request sent before the backend connected"
    );
    proxy.assert_running();
    assert!(proxy.stop().success());
}

/// A client that floods before its backend has connected is closed once it
/// passes the example's early-bytes limit (1 MiB), instead of being
/// buffered without bound. The backend is a black hole, so the dial hangs.
#[test]
fn a_client_flooding_before_the_backend_connects_is_closed() {
    let hole = BlackHole::new().expect("a black hole on loopback");
    let mut proxy = Proxy::start(&format!("tcp://{}", hole.addr), 1);
    let mut s = tcp_client(proxy.addr);
    // More than the kernel's socket buffers and (on io_uring) the loop's
    // provided buffers can absorb between them.
    let flood = payload(1, 32 * MIB);
    let writer = {
        let mut s = s.try_clone().unwrap();
        thread::spawn(move || s.write_all(&flood).is_ok())
    };
    assert!(read_to_end(&mut s).is_empty());
    assert!(!writer.join().unwrap(), "the proxy took all 32 MiB");
    proxy.assert_running();
    assert!(proxy.stop().success());
}

// ----- back-pressure -----

/// Clients that send a lot and never read (the backend echoes): the proxy
/// stops reading them once a side's queue is above its high-water mark, so
/// its memory stays near the marks (64 KiB per side by default) instead of
/// growing with the bytes sent. With `read_back`, the clients then read
/// everything back, byte-exact; without, they leave and the proxy closes
/// both sides of each relay.
fn slow_readers(backend: StdServer, read_back: bool) {
    const CLIENTS: usize = 2;
    const OFFER: usize = 256 * MIB;
    let mut proxy = Proxy::start(&backend.addr.url(), 1);
    // Warm up: one relay, so the baseline includes the loop's buffers.
    let data = Arc::new(payload(3, 100_000));
    assert!(exchange(proxy.addr, b'E', data.clone(), true, None) == *data);
    let baseline_kib = proxy.status_kib("VmRSS");
    let stream = Arc::new(payload(77, 16 * MIB));
    let writers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let s = tcp_client(proxy.addr);
            // A write that makes no progress for 2 s means the proxy
            // stopped reading: the client is blocked by back-pressure.
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            let stream = stream.clone();
            let mut w = s.try_clone().unwrap();
            let t = thread::spawn(move || {
                w.write_all(b"E").unwrap();
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut sent = 0;
                while sent < OFFER && Instant::now() < deadline {
                    let at = sent % stream.len();
                    let end = (at + 65536).min(stream.len());
                    match w.write(&stream[at..end]) {
                        Ok(n) => sent += n,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            return sent
                        }
                        Err(e) => panic!("slow client write: {e}"),
                    }
                }
                sent
            });
            (s, t)
        })
        .collect();
    let mut sent = Vec::new();
    let mut readers = Vec::new();
    for (s, t) in writers {
        sent.push(t.join().expect("writer"));
        readers.push(s);
    }
    let peak_kib = proxy.status_kib("VmHWM");
    let growth_mib = peak_kib.saturating_sub(baseline_kib) as f64 / 1024.0;
    let sent_mib: Vec<f64> = sent.iter().map(|&n| n as f64 / MIB as f64).collect();
    eprintln!(
        "slow readers: sent {sent_mib:.1?} MiB each before blocking; proxy VmRSS {baseline_kib} KiB \
         before, VmHWM {peak_kib} KiB (+{growth_mib:.1} MiB)"
    );
    for &n in &sent {
        assert!(
            n < OFFER,
            "a client sent all {OFFER} bytes: no back-pressure"
        );
    }
    // Two sides per client, each at most its high-water mark (64 KiB) plus
    // one read (64 KiB), plus allocator slack.
    let bound_mib = (CLIENTS * 2) as f64 * 0.125 + 16.0;
    assert!(
        growth_mib < bound_mib,
        "proxy memory grew by {growth_mib:.1} MiB (bound {bound_mib} MiB) for {sent_mib:.1?} MiB sent"
    );
    if !read_back {
        drop(readers);
        wait_for_relays_closed(&proxy);
        proxy.assert_running();
        assert!(proxy.stop().success());
        return;
    }
    // Now read: every byte sent comes back, in order.
    let checks: Vec<_> = readers
        .into_iter()
        .zip(sent)
        .map(|(mut s, n)| {
            let stream = stream.clone();
            thread::spawn(move || {
                let mut got = 0;
                let mut buf = vec![0u8; 65536];
                while got < n {
                    // Never across the end of the repeated stream.
                    let at = got % stream.len();
                    let want = (n - got).min(buf.len()).min(stream.len() - at);
                    let k = match s.read(&mut buf[..want]) {
                        Ok(0) => panic!("EOF after {got} of {n} echoed bytes"),
                        Ok(k) => k,
                        Err(e) => {
                            panic!("after {got} of {n} echoed bytes: {e} (a timeout is a stall)")
                        }
                    };
                    assert!(
                        buf[..k] == stream[at..at + k],
                        "echo differs near byte {got}"
                    );
                    got += k;
                }
            })
        })
        .collect();
    for c in checks {
        c.join().expect("reader");
    }
    proxy.assert_running();
    assert!(proxy.stop().success());
}

#[test]
fn a_slow_reader_keeps_the_proxy_memory_bounded() {
    slow_readers(StdServer::tcp(backend), false);
}

/// Once the slow readers read, every byte comes back. It stalled (before the
/// relay fix) when the queue that passed its mark was the backend
/// connection's.
#[test]
fn slow_readers_get_every_byte_once_they_read() {
    slow_readers(StdServer::tcp(backend), true);
}

#[test]
fn slow_readers_get_every_byte_once_they_read_unix_backend() {
    slow_readers(StdServer::unix(backend), true);
}

// ----- what the proxy refuses and bounds -----

#[test]
fn a_backend_that_cannot_serve_is_refused_at_start() {
    // The proxy's own address (a fixed free port, so it can be named
    // before the proxy starts), a datagram address, garbage, no port.
    let own = closed_tcp_port();
    let own_url = format!("tcp://{own}");
    let wildcard = format!("tcp://0.0.0.0:{}", own.port());
    let cases = [
        (own_url.as_str(), own_url.as_str(), "own listen address"),
        (own_url.as_str(), wildcard.as_str(), "own listen address"),
        (
            "udp://127.0.0.1:9",
            "tcp://127.0.0.1:0",
            "not a stream address",
        ),
        ("no such address", "tcp://127.0.0.1:0", "no such address"),
        ("tcp://127.0.0.1:0", "tcp://127.0.0.1:0", "no port"),
    ];
    for (backend, listen, why) in cases {
        match Example::try_start("proxy", &["--listen", listen, "--backend", backend]) {
            Ok(_) => panic!("the proxy started with backend {backend} on {listen}"),
            Err((status, stderr)) => {
                assert_eq!(
                    status.and_then(|s| s.code()),
                    Some(2),
                    "{backend}: {stderr:?}"
                );
                assert!(
                    stderr.iter().any(|l| l.contains(why)),
                    "{backend}: no {why:?} in {stderr:?}"
                );
            }
        }
    }
}

#[test]
fn a_half_closed_relay_where_nothing_moves_is_closed() {
    // A backend that takes the client's FIN and then neither answers nor
    // closes: without client-fin/server-fin the relay would be held for good.
    let backend = StdServer::tcp(|mut s| {
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink); // up to the forwarded FIN
        thread::sleep(PATIENCE); // then silence, connection open
    });
    let proxy = Proxy::start_with(
        &backend.addr.url(),
        1,
        &["--client-fin-ms", "300", "--server-fin-ms", "300"],
    );
    let mut client = tcp_client(proxy.addr);
    client.write_all(b"Ea request, then FIN").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let ended = client.read_to_end(&mut rest); // bounded by PATIENCE
    assert!(ended.is_ok(), "the half-closed relay was held: {ended:?}");
    assert!(rest.is_empty());
    assert!(proxy.stop().success());
}
