//! The core server over real sockets: gnet's echo scenario and its shutdown,
//! close, concurrency and bad-peer cases.

mod common;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::*;
use ringloop::{
    Action, CloseReason, Conn, ConnHandle, ConnId, EngineHandle, Error, EventHandler, LoadBalancer,
};
use ringloop::{Doorbell, Engine};

const GREETING: &[u8] = b"andypan\r\n";

/// What the test handler saw, shared by every loop's handler.
#[derive(Default)]
struct Seen {
    opened: AtomicUsize,
    closed: AtomicUsize,
    closed_without_state: AtomicUsize,
    closes: Mutex<Vec<(ConnId, String)>>,
    handles: Mutex<Vec<ConnHandle>>,
}

impl Seen {
    fn close_kinds(&self) -> Vec<String> {
        self.closes
            .lock()
            .unwrap()
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }
}

/// Echo with gnet's test behaviour: a greeting on open, per-connection
/// state, and special commands.
struct Echo {
    seen: Arc<Seen>,
    greet: bool,
}

fn kind(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Eof => "eof",
        CloseReason::Reset => "reset",
        CloseReason::Error(_) => "error",
        CloseReason::Local => "local",
        CloseReason::Requested => "requested",
        CloseReason::Shutdown => "shutdown",
        _ => "other",
    }
    .to_string()
}

impl EventHandler for Echo {
    type State = usize;

    fn on_open(&mut self, conn: &mut Conn<'_, usize>) -> Action {
        let serial = self.seen.opened.fetch_add(1, Ordering::SeqCst);
        conn.set_state(serial);
        self.seen.handles.lock().unwrap().push(conn.handle());
        if self.greet {
            conn.write(GREETING).unwrap();
        }
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, usize>) -> Action {
        let data = conn.read_all();
        match data {
            b"shutdown\n" => return Action::Shutdown,
            b"close\n" => return Action::Close,
            b"close-me\n" => {
                conn.close();
                return Action::None;
            }
            b"boom\n" => panic!("handler panics on purpose"),
            _ => {}
        }
        match conn.write(data) {
            Ok(_) => Action::None,
            Err(_) => Action::Close,
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_, usize>, reason: &CloseReason) -> Action {
        if conn.state().is_none() {
            self.seen
                .closed_without_state
                .fetch_add(1, Ordering::SeqCst);
        }
        self.seen
            .closes
            .lock()
            .unwrap()
            .push((conn.handle().id(), kind(reason)));
        self.seen.closed.fetch_add(1, Ordering::SeqCst);
        Action::None
    }
}

fn echo_engine(seen: &Arc<Seen>, greet: bool) -> ringloop::EngineBuilder<Echo> {
    let seen = seen.clone();
    Engine::builder(move |_| Echo {
        seen: seen.clone(),
        greet,
    })
}

/// A running test echo server on an ephemeral TCP port.
fn echo_server(seen: &Arc<Seen>, greet: bool, loops: usize) -> Running {
    Running::start(
        echo_engine(seen, greet)
            .listen("tcp://127.0.0.1:0")
            .loops(loops),
    )
}

/// gnet's echo scenario: greeting, then clients writing random payloads up
/// to 1 MiB and reading them back byte-exact.
fn echo_scenario(loops: usize, lb: LoadBalancer, doorbell: Doorbell) {
    let seen = Arc::new(Seen::default());
    let server = Running::start(
        echo_engine(&seen, true)
            .listen("tcp://127.0.0.1:0")
            .loops(loops)
            .load_balancer(lb)
            .doorbell(doorbell),
    );
    let addr = server.tcp_addr(0);
    let clients: Vec<_> = (0..10u64)
        .map(|c| {
            thread::spawn(move || {
                let mut s = tcp_client(addr);
                let mut greeting = [0u8; GREETING.len()];
                s.read_exact(&mut greeting).unwrap();
                assert_eq!(&greeting, GREETING);
                for round in 0..4u64 {
                    let len = (payload(c * 100 + round, 4)[0] as usize + 1) * 4096; // up to 1 MiB
                    echo_round_trip(&mut s, &payload(c * 1000 + round, len));
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client");
    }
    wait_until("all connections closed", || {
        server.engine.connection_count() == 0
    });
    assert_eq!(seen.opened.load(Ordering::SeqCst), 10);
    assert_eq!(seen.closed.load(Ordering::SeqCst), 10);
    assert_eq!(seen.closed_without_state.load(Ordering::SeqCst), 0);
    assert!(
        seen.close_kinds().iter().all(|k| k == "eof"),
        "{:?}",
        seen.close_kinds()
    );
    server.stop();
}

#[test]
fn echo_one_loop() {
    echo_scenario(1, LoadBalancer::RoundRobin, Doorbell::Auto);
}

#[test]
fn echo_four_loops_least_connections() {
    echo_scenario(4, LoadBalancer::LeastConnections, Doorbell::Auto);
}

#[test]
fn echo_with_pipe_doorbells() {
    echo_scenario(2, LoadBalancer::SourceAddrHash, Doorbell::Pipe);
}

#[test]
fn echo_over_unix_socket() {
    let dir = TempDir::new("unix-echo");
    let path = dir.join("echo.sock");
    let seen = Arc::new(Seen::default());
    let server = Running::start(
        echo_engine(&seen, false)
            .listen(format!("unix://{}", path.display()))
            .loops(2),
    );
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let path = path.clone();
            thread::spawn(move || {
                let mut s = unix_client(&path);
                echo_round_trip(&mut s, &payload(c, 300_000));
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    wait_until("unix connections closed", || {
        server.engine.connection_count() == 0
    });
    server.stop();
    assert!(!path.exists(), "the socket file is removed on shutdown");
}

#[test]
fn shutdown_action_from_a_handler() {
    let seen = Arc::new(Seen::default());
    let server = echo_server(&seen, false, 2);
    let addr = server.tcp_addr(0);
    let mut idle: Vec<_> = (0..5).map(|_| tcp_client(addr)).collect();
    // Opened (not merely accepted): a socket still on its way to a loop is
    // dropped at stop without ever opening.
    wait_until("idle clients opened", || {
        seen.opened.load(Ordering::SeqCst) == 5
    });
    let mut trigger = tcp_client(addr);
    trigger.write_all(b"shutdown\n").unwrap();
    server.join(); // run returns by itself
    for s in idle.iter_mut().chain(Some(&mut trigger)) {
        assert!(read_to_end(s).is_empty(), "every client sees the close");
    }
    assert_eq!(seen.closed.load(Ordering::SeqCst), 6);
    assert!(seen.close_kinds().iter().all(|k| k == "shutdown"));
}

#[test]
fn stop_from_another_thread_closes_every_connection() {
    let seen = Arc::new(Seen::default());
    let server = echo_server(&seen, false, 3);
    let addr = server.tcp_addr(0);
    let mut clients: Vec<_> = (0..100).map(|_| tcp_client(addr)).collect();
    // Opened, as above.
    wait_until("100 connections", || {
        seen.opened.load(Ordering::SeqCst) == 100
    });
    let engine = server.engine.clone();
    thread::spawn(move || engine.stop()).join().unwrap();
    // stop() returned, so run() has finished too.
    server.join();
    for c in &mut clients {
        assert!(read_to_end(c).is_empty());
    }
    assert_eq!(seen.closed.load(Ordering::SeqCst), 100);
    assert_eq!(seen.opened.load(Ordering::SeqCst), 100);
}

#[test]
fn close_callback_runs_exactly_once_whatever_the_cause() {
    let seen = Arc::new(Seen::default());
    let server = echo_server(&seen, false, 2);
    let addr = server.tcp_addr(0);
    // Peer EOF.
    drop(tcp_client(addr));
    // Action::Close and Conn::close from the handler.
    for cmd in [&b"close\n"[..], b"close-me\n"] {
        let mut s = tcp_client(addr);
        s.write_all(cmd).unwrap();
        assert!(read_to_end(&mut s).is_empty());
    }
    // Peer reset.
    let mut s = tcp_client(addr);
    // Reset only once the server has it (a connection reset while still in
    // the backlog is dropped by accept and never opens).
    wait_until("4 opens", || seen.opened.load(Ordering::SeqCst) == 4);
    reset_on_close(&s);
    s.write_all(b"x").unwrap();
    drop(s);
    // Close requested through a handle, from another thread.
    let s = tcp_client(addr);
    wait_until("5 opens", || seen.opened.load(Ordering::SeqCst) == 5);
    let handle = seen.handles.lock().unwrap().last().unwrap().clone();
    let (tx, rx) = std::sync::mpsc::channel();
    handle
        .close_with(move |r| tx.send(r.is_ok()).unwrap())
        .unwrap();
    assert!(rx.recv_timeout(PATIENCE).unwrap());
    drop(s);
    // Still open at shutdown.
    let _open = tcp_client(addr);
    wait_until("6 opens", || seen.opened.load(Ordering::SeqCst) == 6);
    wait_until("5 closes", || seen.closed.load(Ordering::SeqCst) == 5);
    server.stop();
    let closes = seen.closes.lock().unwrap().clone();
    assert_eq!(closes.len(), 6);
    let ids: HashSet<_> = closes.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), 6, "one close callback per connection");
    let mut kinds: Vec<_> = closes.iter().map(|(_, k)| k.as_str()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        ["eof", "local", "local", "requested", "reset", "shutdown"]
    );
}

#[test]
fn thousand_concurrent_connections() {
    let seen = Arc::new(Seen::default());
    let server = echo_server(&seen, false, 2);
    let addr = server.tcp_addr(0);
    let mut clients: Vec<_> = (0..1000).map(|_| tcp_client(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("hello {i}\n").as_bytes()).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let expected = format!("hello {i}\n");
        let mut back = vec![0u8; expected.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, expected.as_bytes());
    }
    assert_eq!(server.engine.connection_count(), 1000);
    drop(clients);
    wait_until("all closed", || server.engine.connection_count() == 0);
    assert_eq!(seen.closed.load(Ordering::SeqCst), 1000);
    server.stop();
}

#[test]
fn half_closed_client_still_gets_every_byte() {
    let seen = Arc::new(Seen::default());
    let server = echo_server(&seen, false, 1);
    let mut s = tcp_client(server.tcp_addr(0));
    let data = payload(7, 4 << 20);
    let writer = {
        let mut s = s.try_clone().unwrap();
        let data = data.clone();
        thread::spawn(move || {
            s.write_all(&data).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
        })
    };
    let back = read_to_end(&mut s);
    writer.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data);
    wait_until("closed", || seen.closed.load(Ordering::SeqCst) == 1);
    assert_eq!(seen.close_kinds(), ["eof"]);
    server.stop();
}

/// Sends a large burst on open; used to be reset mid-write.
struct Flood;

impl EventHandler for Flood {
    type State = ();
    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        conn.write(&vec![b'z'; 16 << 20]).unwrap();
        Action::None
    }
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_all();
        match conn.write(data) {
            Ok(_) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

#[test]
fn a_peer_reset_mid_write_closes_only_its_connection() {
    let server = Running::start(
        Engine::builder(|_| Flood)
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let addr = server.tcp_addr(0);
    let mut bystander = tcp_client(addr);
    let mut head = vec![0u8; 1 << 20];
    bystander.read_exact(&mut head).unwrap();
    for _ in 0..5 {
        let mut victim = tcp_client(addr);
        let mut some = [0u8; 65536];
        victim.read_exact(&mut some).unwrap();
        reset_on_close(&victim);
        drop(victim); // RST while the server is still writing
    }
    wait_until("victims gone", || server.engine.connection_count() == 1);
    // The bystander still gets the rest of its 16 MiB, then its echo.
    let mut rest = vec![0u8; (16 << 20) - (1 << 20)];
    bystander.read_exact(&mut rest).unwrap();
    echo_round_trip(&mut bystander, b"still here");
    server.stop();
}

#[test]
fn a_panicking_handler_closes_only_its_connection() {
    let seen = Arc::new(Seen::default());
    let server = echo_server(&seen, false, 1);
    let addr = server.tcp_addr(0);
    let mut good = tcp_client(addr);
    let mut bad = tcp_client(addr);
    bad.write_all(b"boom\n").unwrap();
    assert!(read_to_end(&mut bad).is_empty());
    echo_round_trip(&mut good, b"unaffected");
    assert!(seen.close_kinds().contains(&"error".to_string()));
    server.stop();
}

#[test]
fn wake_runs_the_traffic_callback_on_an_idle_connection() {
    struct Waker;
    impl EventHandler for Waker {
        type State = ConnHandle;
        fn on_open(&mut self, conn: &mut Conn<'_, ConnHandle>) -> Action {
            let handle = conn.handle();
            conn.set_state(handle.clone());
            thread::spawn(move || handle.wake().unwrap());
            Action::None
        }
        fn on_traffic(&mut self, conn: &mut Conn<'_, ConnHandle>) -> Action {
            if conn.inbound_buffered() == 0 {
                conn.write(b"Waking up.").unwrap();
            }
            Action::None
        }
    }
    let server = Running::start(
        Engine::builder(|_| Waker)
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let mut got = [0u8; 10];
    s.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"Waking up.");
    server.stop();
}

#[test]
fn a_stale_handle_never_reaches_the_connection_that_reused_its_slot() {
    let seen = Arc::new(Seen::default());
    let server = echo_server(&seen, false, 1);
    let addr = server.tcp_addr(0);
    let first = tcp_client(addr);
    wait_until("first open", || seen.opened.load(Ordering::SeqCst) == 1);
    drop(first);
    wait_until("first closed", || seen.closed.load(Ordering::SeqCst) == 1);
    let mut second = tcp_client(addr);
    wait_until("second open", || seen.opened.load(Ordering::SeqCst) == 2);
    let (old, new) = {
        let h = seen.handles.lock().unwrap();
        (h[0].clone(), h[1].clone())
    };
    assert_eq!(old.id().slot(), new.id().slot(), "one loop reuses the slot");
    assert_ne!(old.id(), new.id());
    let stale = old.write(b"not for you".to_vec()).wait();
    assert!(matches!(stale, Err(Error::ConnectionClosed)), "{stale:?}");
    assert_eq!(new.write(b"for you".to_vec()).wait().unwrap(), 7);
    let mut got = [0u8; 7];
    second.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"for you");
    server.stop();
    let after = new.write(b"late".to_vec()).wait();
    assert!(matches!(after, Err(Error::EngineStopped)), "{after:?}");
}

#[test]
fn bad_configuration_is_refused_before_anything_starts() {
    let build = |b: ringloop::EngineBuilder<Echo>| b.build().map(drop);
    let seen = Arc::new(Seen::default());
    assert!(matches!(
        build(
            echo_engine(&seen, false)
                .listen("tcp://127.0.0.1:0")
                .loops(0)
        ),
        Err(Error::InvalidConfig(_))
    ));
    assert!(matches!(
        build(
            echo_engine(&seen, false)
                .listen("tcp://127.0.0.1:0")
                .loops(100_000)
        ),
        Err(Error::InvalidConfig(_))
    ));
    // No address is a client engine, not an error.
    assert!(build(echo_engine(&seen, false)).is_ok());
    assert!(matches!(
        build(echo_engine(&seen, false).listen("tulip://127.0.0.1:1")),
        Err(Error::UnsupportedScheme { .. })
    ));
    assert!(matches!(
        build(echo_engine(&seen, false).listen("tcp://127.0.0.1")),
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        build(echo_engine(&seen, false).listen("unix://")),
        Err(Error::InvalidAddress { .. })
    ));
    assert!(matches!(
        build(echo_engine(&seen, false).listen("127.0.0.1:9000")),
        Err(Error::InvalidAddress { .. })
    ));
}

#[test]
fn public_types_have_the_documented_bounds() {
    fn send_sync_clone<T: Send + Sync + Clone>() {}
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync_clone::<EngineHandle>();
    send_sync_clone::<ConnHandle>();
    send_sync_clone::<ConnId>();
    send_sync::<Error>();
    send_sync::<ringloop::TryWriteError>();
    fn send<T: Send>() {}
    send::<ringloop::Pending<usize>>();
    send::<ringloop::Engine<Echo>>();
}

/// Consumes nothing until a newline arrives (a "frame" with no size limit of
/// its own), then echoes the line.
struct LineWaiter {
    closes: Arc<Mutex<Vec<String>>>,
}

impl EventHandler for LineWaiter {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let unread = conn.peek(usize::MAX);
        if let Some(end) = unread.iter().position(|&b| b == b'\n') {
            let line = conn.next(end + 1);
            let _ = conn.write(line);
        }
        Action::None
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
        self.closes.lock().unwrap().push(format!("{reason:?}"));
        Action::None
    }
}

#[test]
fn a_peer_that_never_completes_a_request_is_cut_off_at_the_inbound_limit() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let c = closes.clone();
    let server = Running::start(
        Engine::builder(move |_| LineWaiter { closes: c.clone() })
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .max_inbound(1 << 20),
    );
    let addr = server.tcp_addr(0);
    let mut bystander = tcp_client(addr);
    bystander.write_all(b"half a li").unwrap();
    // 3 MiB with no newline: past the 1 MiB limit.
    let mut attacker = tcp_client(addr);
    let flood = vec![b'x'; 3 << 20];
    let _ = attacker.write_all(&flood); // may fail once the server closes it
    assert!(
        read_to_end(&mut attacker).is_empty(),
        "the attacker is closed"
    );
    wait_until("the attacker's close", || {
        !closes.lock().unwrap().is_empty()
    });
    assert_eq!(closes.lock().unwrap()[0], "InboundLimit");
    // The bystander's half line completes and is answered.
    bystander.write_all(b"ne\n").unwrap();
    let mut line = [0u8; 12];
    bystander.read_exact(&mut line).unwrap();
    assert_eq!(&line, b"half a line\n");
    server.stop();
}

/// Answers whole lines; at the peer's EOF, answers the last unterminated one.
struct Lines;

impl EventHandler for Lines {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        while let Some(end) = conn.peek(usize::MAX).iter().position(|&b| b == b'\n') {
            let line = conn.next(end + 1);
            let _ = conn.write(line);
        }
        Action::None
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let rest = conn.read_all();
        if !rest.is_empty() {
            let _ = conn.writev(&[b"last:", rest]);
        }
        Action::Close
    }
}

#[test]
fn on_read_closed_sees_what_on_traffic_left_unread() {
    let server = Running::start(
        Engine::builder(|_| Lines)
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    s.write_all(b"abc\ndef").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_end(&mut s), b"abc\nlast:def");
    server.stop();
}

/// Answers `PING` with `+PONG`; anything else gets an error reply and a
/// protocol-error close.
struct Strict {
    closes: Arc<Mutex<Vec<String>>>,
}

impl EventHandler for Strict {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        if conn.peek(4) == b"PING" {
            conn.discard(4);
            let _ = conn.write(b"+PONG\r\n");
        } else {
            let _ = conn.write(&vec![b'E'; 4 << 20]); // an error reply too big to go at once
            conn.close_with_error("the client did not say PING");
        }
        Action::None
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
        self.closes.lock().unwrap().push(reason.to_string());
        Action::None
    }
}

#[test]
fn a_protocol_error_closes_after_the_error_reply_is_flushed() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let c = closes.clone();
    let server = Running::start(
        Engine::builder(move |_| Strict { closes: c.clone() })
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    s.write_all(b"PING").unwrap();
    let mut pong = [0u8; 7];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"+PONG\r\n");
    s.write_all(b"HELO").unwrap();
    let reply = read_to_end(&mut s);
    assert_eq!(
        reply.len(),
        4 << 20,
        "the whole error reply arrives before the close"
    );
    wait_until("the close", || !closes.lock().unwrap().is_empty());
    assert_eq!(
        closes.lock().unwrap()[0],
        "protocol error: the client did not say PING"
    );
    server.stop();
}

#[test]
fn keepalive_set_by_the_engine_reads_back_on_the_connection() {
    struct Probe(Arc<Mutex<Vec<Option<ringloop::KeepAlive>>>>);
    impl EventHandler for Probe {
        type State = ();
        fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
            // The engine's setting, read back through socket2.
            let socket = conn.socket().unwrap();
            let ka = socket.keepalive().unwrap().then(|| {
                ringloop::KeepAlive::new(socket.tcp_keepalive_time().unwrap())
                    .interval(socket.tcp_keepalive_interval().unwrap())
                    .count(socket.tcp_keepalive_retries().unwrap())
            });
            self.0.lock().unwrap().push(ka);
            Action::None
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let ka = ringloop::KeepAlive::new(std::time::Duration::from_secs(60))
        .interval(std::time::Duration::from_secs(7))
        .count(4);
    let server = Running::start(
        Engine::builder(move |_| Probe(s.clone()))
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .tcp_keepalive(Some(ka)),
    );
    let _c = tcp_client(server.tcp_addr(0));
    wait_until("open", || !seen.lock().unwrap().is_empty());
    assert_eq!(seen.lock().unwrap()[0], Some(ka));
    server.stop();
}
