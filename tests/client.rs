//! The client side over real sockets: gnet's client scenarios (echo through
//! dialled and enrolled connections, reading on EOF, waking right after a
//! dial), dial failures and the connect timeout, dials made from callbacks,
//! and connected UDP.
//!
//! Every test runs a client engine (one with no listen address) against a
//! peer: a ringloop server, or a plain std server thread. The client's
//! handler reports each callback on a channel; the test thread checks them,
//! with every wait bounded.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use ringloop::{
    Action, CloseReason, Conn, ConnHandle, ConnId, Engine, EngineBuilder, EngineHandle, Error,
    EventHandler, LoopContext,
};

const GREETING: &[u8] = b"andypan\r\n";
const MIB: usize = 1 << 20;

// ----- the client handler and what it reports -----

/// One callback of the client handler, in the order the loop ran them.
#[derive(Debug)]
enum Ev {
    Opened {
        id: ConnId,
        loop_index: usize,
        listener: Option<usize>,
        tag: Option<u32>,
    },
    Data {
        id: ConnId,
        bytes: Vec<u8>,
    },
    /// `on_traffic` with nothing to read: a wake.
    Woken {
        id: ConnId,
    },
    ReadClosed {
        id: ConnId,
    },
    Closed {
        id: ConnId,
        reason: String,
    },
    /// `on_dial_error` for a dial made with `Conn::dial`.
    DialError {
        tag: u32,
        loop_index: usize,
        error: String,
        kind: Option<io::ErrorKind>,
    },
    /// `Conn::dial` refused the request at once.
    DialRefused {
        tag: u32,
        error: String,
    },
}

impl Ev {
    fn id(&self) -> Option<ConnId> {
        match self {
            Ev::Opened { id, .. }
            | Ev::Data { id, .. }
            | Ev::Woken { id }
            | Ev::ReadClosed { id }
            | Ev::Closed { id, .. } => Some(*id),
            _ => None,
        }
    }
}

fn reason_kind(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Eof => "eof".into(),
        CloseReason::Reset => "reset".into(),
        CloseReason::Error(e) => format!("error: {e}"),
        CloseReason::Local => "local".into(),
        CloseReason::Requested => "requested".into(),
        CloseReason::Shutdown => "shutdown".into(),
        other => format!("other: {other}"),
    }
}

fn io_kind(error: &Error) -> Option<io::ErrorKind> {
    match error {
        Error::Io { source, .. } => Some(source.kind()),
        _ => None,
    }
}

/// Knobs shared by the handlers of every loop of one client engine.
#[derive(Default)]
struct Knobs {
    greeting: bool,
    wake_on_open: AtomicBool,
    close_on_open: AtomicBool,
    /// Dials for the next woken connection to make with `Conn::dial`.
    dials: Mutex<Vec<(String, u32)>>,
}

struct Client {
    events: Sender<Ev>,
    knobs: Arc<Knobs>,
}

impl EventHandler for Client {
    /// A tag, set by `Conn::dial` for the connections it dials.
    type State = u32;

    fn on_open(&mut self, conn: &mut Conn<'_, u32>) -> Action {
        let _ = self.events.send(Ev::Opened {
            id: conn.id(),
            loop_index: conn.loop_index(),
            listener: conn.listener_index(),
            tag: conn.state().copied(),
        });
        if self.knobs.greeting {
            conn.write(GREETING).expect("greeting");
        }
        if self.knobs.wake_on_open.load(Ordering::SeqCst) {
            conn.handle().wake().expect("wake from on_open");
        }
        if self.knobs.close_on_open.load(Ordering::SeqCst) {
            return Action::Close;
        }
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, u32>) -> Action {
        let id = conn.id();
        if conn.inbound_buffered() > 0 {
            let bytes = conn.read_all().to_vec();
            let _ = self.events.send(Ev::Data { id, bytes });
            return Action::None;
        }
        let _ = self.events.send(Ev::Woken { id });
        let dials = std::mem::take(&mut *self.knobs.dials.lock().unwrap());
        for (addr, tag) in dials {
            if let Err(e) = conn.dial(&addr, tag) {
                let _ = self.events.send(Ev::DialRefused {
                    tag,
                    error: e.to_string(),
                });
            }
        }
        Action::None
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_, u32>) -> Action {
        let _ = self.events.send(Ev::ReadClosed { id: conn.id() });
        Action::Close
    }

    fn on_close(&mut self, conn: &mut Conn<'_, u32>, reason: &CloseReason) -> Action {
        let _ = self.events.send(Ev::Closed {
            id: conn.id(),
            reason: reason_kind(reason),
        });
        Action::None
    }

    fn on_dial_error(&mut self, ctx: &mut LoopContext, tag: u32, error: &Error) -> Action {
        let _ = self.events.send(Ev::DialError {
            tag,
            loop_index: ctx.loop_index(),
            error: error.to_string(),
            kind: io_kind(error),
        });
        Action::None
    }
}

/// A client engine builder, its knobs and the receiving end of its reports.
fn client_engine(knobs: Knobs) -> (EngineBuilder<Client>, Arc<Knobs>, Recorder) {
    let (tx, rx) = mpsc::channel();
    let knobs = Arc::new(knobs);
    let shared = knobs.clone();
    let tx = Mutex::new(tx);
    let builder = Engine::builder(move |_| Client {
        events: tx.lock().unwrap().clone(),
        knobs: shared.clone(),
    });
    (
        builder,
        knobs,
        Recorder {
            rx,
            seen: Vec::new(),
        },
    )
}

/// Everything the client handler reported so far.
struct Recorder {
    rx: Receiver<Ev>,
    seen: Vec<Ev>,
}

impl Recorder {
    /// Pulls reports until `cond` holds over all of them (bounded).
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut(&[Ev]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        while !cond(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) => self.seen.push(ev),
                Err(_) => panic!("timed out waiting for {what}; seen: {:?}", self.summary()),
            }
        }
    }

    /// Takes whatever else arrives within `quiet` (for "nothing more happens").
    fn settle(&mut self, quiet: Duration) {
        while let Ok(ev) = self.rx.recv_timeout(quiet) {
            self.seen.push(ev);
        }
    }

    /// The reports about connection `id`, in order.
    fn of(&self, id: ConnId) -> Vec<&Ev> {
        self.seen.iter().filter(|e| e.id() == Some(id)).collect()
    }

    /// Every byte connection `id` received, in order.
    fn bytes_of(&self, id: ConnId) -> Vec<u8> {
        bytes_in(&self.seen, id)
    }

    fn summary(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|e| match e {
                Ev::Data { id, bytes } => format!("Data {{ id: {id}, {} bytes }}", bytes.len()),
                other => format!("{other:?}"),
            })
            .collect()
    }
}

fn bytes_in(events: &[Ev], id: ConnId) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        if let Ev::Data { id: i, bytes } = e {
            if *i == id {
                out.extend_from_slice(bytes);
            }
        }
    }
    out
}

fn closed(events: &[Ev], id: ConnId) -> Option<&str> {
    events.iter().find_map(|e| match e {
        Ev::Closed { id: i, reason } if *i == id => Some(reason.as_str()),
        _ => None,
    })
}

fn wait_pending(what: &str, p: ringloop::Pending<ConnHandle>) -> ringloop::Result<ConnHandle> {
    p.wait_timeout(PATIENCE)
        .unwrap_or_else(|| panic!("{what} did not complete within {PATIENCE:?}"))
}

// ----- ringloop echo server -----

/// A peer for the client tests: a ringloop server or a std one.
enum Peer {
    Ringloop(Running, PeerAddr, #[allow(dead_code)] Option<TempDir>),
    Std(StdServer),
}

impl Peer {
    fn ringloop_echo(unix: bool) -> Peer {
        if unix {
            let dir = TempDir::new("client-peer");
            let path = dir.join("echo.sock");
            let server = Running::start(
                Engine::builder(|_| Echo)
                    .listen(format!("unix://{}", path.display()))
                    .loops(2),
            );
            Peer::Ringloop(server, PeerAddr::Unix(path), Some(dir))
        } else {
            let server = Running::start(
                Engine::builder(|_| Echo)
                    .listen("tcp://127.0.0.1:0")
                    .loops(2),
            );
            let addr = PeerAddr::Tcp(server.tcp_addr(0));
            Peer::Ringloop(server, addr, None)
        }
    }

    fn addr(&self) -> &PeerAddr {
        match self {
            Peer::Ringloop(_, a, _) => a,
            Peer::Std(s) => &s.addr,
        }
    }

    fn stop(self) {
        match self {
            Peer::Ringloop(server, _, _) => server.stop(),
            Peer::Std(s) => drop(s),
        }
    }
}

// ----- gnet's TestClient: the echo matrix -----

/// Ten connections, half dialled by the engine and half connected with std
/// and enrolled; each greets on open, then gets two 1 MiB payloads written
/// through its handle; every echoed byte is checked.
fn client_echo(peer: Peer, client_loops: usize) {
    let url = peer.addr().url();
    let (builder, _knobs, mut rec) = client_engine(Knobs {
        greeting: true,
        ..Knobs::default()
    });
    let client = Running::start(builder.loops(client_loops));
    let mut handles = Vec::new();
    for i in 0..10 {
        let handle = if i % 2 == 0 {
            wait_pending("dial", client.engine.dial(&url))
        } else {
            wait_pending("enroll", client.engine.enroll(peer.addr().connect()))
        };
        handles.push(handle.unwrap_or_else(|e| panic!("connection {i}: {e}")));
    }
    let (done_tx, done_rx) = mpsc::channel();
    let mut expected = HashMap::new();
    for (i, h) in handles.iter().enumerate() {
        let mut all = GREETING.to_vec();
        for k in 0..2 {
            let data = payload((i * 10 + k) as u64, MIB);
            all.extend_from_slice(&data);
            let done = done_tx.clone();
            h.async_write(data, move |r| done.send(r).unwrap())
                .expect("async_write queued");
        }
        expected.insert(h.id(), all);
    }
    for _ in 0..20 {
        let r = done_rx.recv_timeout(PATIENCE).expect("write completion");
        assert_eq!(r.expect("async_write"), MIB);
    }
    rec.wait_for("every echo", |seen| {
        expected
            .iter()
            .all(|(id, want)| bytes_in(seen, *id).len() >= want.len())
    });
    for (id, want) in &expected {
        let got = rec.bytes_of(*id);
        assert_eq!(got.len(), want.len(), "connection {id}: echo length");
        assert!(got == *want, "connection {id}: echo differs");
    }
    // Each connection opened once, as a client (no listener), and the
    // engine spread them over all its loops.
    let mut loops = BTreeSet::new();
    for h in &handles {
        match rec.of(h.id()).first() {
            Some(Ev::Opened {
                listener,
                loop_index,
                tag,
                ..
            }) => {
                assert_eq!(*listener, None);
                assert_eq!(*tag, None);
                assert_eq!(*loop_index, h.id().loop_index());
                loops.insert(*loop_index);
            }
            other => panic!("first callback of {}: {other:?}", h.id()),
        }
    }
    assert_eq!(loops.len(), client_loops, "connections on loops {loops:?}");
    for h in &handles {
        h.close().unwrap();
    }
    rec.wait_for("every close", |seen| {
        handles.iter().all(|h| closed(seen, h.id()).is_some())
    });
    for h in &handles {
        assert_eq!(closed(&rec.seen, h.id()), Some("requested"));
    }
    wait_until("client connections gone", || {
        client.engine.connection_count() == 0
    });
    client.stop();
    peer.stop();
}

#[test]
fn client_tcp_one_loop() {
    client_echo(Peer::ringloop_echo(false), 1);
}

#[test]
fn client_tcp_three_loops() {
    client_echo(Peer::ringloop_echo(false), 3);
}

#[test]
fn client_unix_one_loop() {
    client_echo(Peer::ringloop_echo(true), 1);
}

#[test]
fn client_unix_three_loops() {
    client_echo(Peer::ringloop_echo(true), 3);
}

#[test]
fn client_tcp_std_peer() {
    client_echo(Peer::Std(StdServer::tcp(echo_stream)), 2);
}

#[test]
fn client_unix_std_peer() {
    client_echo(Peer::Std(StdServer::unix(echo_stream)), 2);
}

// ----- dial failures -----

/// A dial to a closed port fails with `ConnectionRefused`, from the refusal
/// itself: the connect timeout is a minute, the wait is bounded well below.
#[test]
fn dial_to_a_closed_port_is_refused_quickly() {
    let (builder, _knobs, mut rec) = client_engine(Knobs::default());
    let client = Running::start(builder.loops(2).connect_timeout(Duration::from_secs(60)));
    let url = format!("tcp://{}", closed_tcp_port());
    for round in 0..10 {
        let pending = client.engine.dial_on(round % 2, &url);
        let result = pending
            .wait_timeout(Duration::from_secs(10))
            .expect("a refused dial must not wait for the connect timeout");
        match result {
            Err(ref e @ Error::Io { ref source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::ConnectionRefused, "{e}")
            }
            other => panic!("dial to a closed port: {other:?}"),
        }
    }
    // A Unix path nobody listens on fails at once too.
    let dir = TempDir::new("no-listener");
    let url = format!("unix://{}", dir.join("nobody.sock").display());
    match wait_pending("unix dial", client.engine.dial(&url)) {
        Err(Error::Io { source, .. }) => assert_eq!(source.kind(), io::ErrorKind::NotFound),
        other => panic!("dial to a missing Unix path: {other:?}"),
    }
    // A bad address is refused before anything is sent to a loop.
    assert!(matches!(
        wait_pending("bad dial", client.engine.dial("tulip://127.0.0.1:1")),
        Err(Error::UnsupportedScheme { .. })
    ));
    assert!(matches!(
        wait_pending("bad dial", client.engine.dial("tcp://127.0.0.1")),
        Err(Error::InvalidAddress { .. })
    ));
    // Failed dials never opened anything: no callback ran, nothing is counted.
    rec.settle(Duration::from_millis(50));
    assert!(rec.seen.is_empty(), "{:?}", rec.summary());
    assert_eq!(client.engine.connection_count(), 0);
    client.stop();
}

/// A dial to an address that never answers ends with the connect timeout.
#[test]
fn dial_to_a_black_hole_times_out() {
    let hole = BlackHole::new().expect("a black hole on loopback");
    let (builder, _knobs, mut rec) = client_engine(Knobs::default());
    let client = Running::start(builder.loops(1).connect_timeout(Duration::from_millis(200)));
    let url = format!("tcp://{}", hole.addr);
    for _ in 0..3 {
        let result = client
            .engine
            .dial(&url)
            .wait_timeout(Duration::from_secs(10))
            .expect("the connect timeout must end the dial");
        match result {
            Err(ref e @ Error::Io { ref source, .. }) => {
                assert_eq!(source.kind(), io::ErrorKind::TimedOut, "{e}")
            }
            other => panic!("dial to a black hole: {other:?}"),
        }
    }
    rec.settle(Duration::from_millis(50));
    assert!(rec.seen.is_empty(), "{:?}", rec.summary());
    assert_eq!(client.engine.connection_count(), 0);
    client.stop();
    // The smallest timeout the builder takes (1 ms, under one tick of the
    // loop's timer wheel) ends the dial too.
    let (builder, _knobs, _rec) = client_engine(Knobs::default());
    let client = Running::start(builder.loops(1).connect_timeout(Duration::from_millis(1)));
    match client
        .engine
        .dial(&url)
        .wait_timeout(Duration::from_secs(10))
    {
        Some(Err(Error::Io { source, .. })) => assert_eq!(source.kind(), io::ErrorKind::TimedOut),
        other => panic!("dial with a 1 ms connect timeout: {other:?}"),
    }
    client.stop();
}

/// A dial still connecting when the engine stops completes with
/// `Error::EngineStopped` (its waiter is not left hanging) and the stop is
/// clean.
#[test]
fn a_dial_in_progress_at_stop_completes_with_engine_stopped() {
    let hole = BlackHole::new().expect("a black hole on loopback");
    let (builder, _knobs, _rec) = client_engine(Knobs::default());
    let client = Running::start(builder.loops(2).connect_timeout(Duration::from_secs(60)));
    let url = format!("tcp://{}", hole.addr);
    let pending: Vec<_> = (0..4).map(|_| client.engine.dial(&url)).collect();
    // Give the loops time to start the connects (not needed for correctness:
    // a dial still in the mailbox at stop must fail too).
    std::thread::sleep(Duration::from_millis(50));
    client.stop();
    for p in pending {
        let r = p
            .wait_timeout(PATIENCE)
            .expect("a dial pending at stop must complete");
        assert!(matches!(r, Err(Error::EngineStopped)), "{r:?}");
    }
}

/// Dials made from a callback with `Conn::dial` land on the caller's loop;
/// their failures reach `on_dial_error` with the state they were given.
#[test]
fn conn_dial_outcomes_reach_the_handler_with_their_state() {
    let hole = BlackHole::new().expect("a black hole on loopback");
    let dir = TempDir::new("conn-dial");
    let peer = Peer::ringloop_echo(false);
    let (builder, knobs, mut rec) = client_engine(Knobs::default());
    let client = Running::start(builder.loops(2).connect_timeout(Duration::from_millis(300)));
    // A control connection on loop 1: waking it makes the dials.
    let control = wait_pending("control dial", client.engine.dial_on(1, peer.addr().url()))
        .expect("control connection");
    assert_eq!(control.id().loop_index(), 1);
    *knobs.dials.lock().unwrap() = vec![
        (format!("tcp://{}", closed_tcp_port()), 1),
        (format!("tcp://{}", hole.addr), 2),
        (format!("unix://{}", dir.join("nobody.sock").display()), 3),
        (peer.addr().url(), 4),
        ("tulip://127.0.0.1:1".to_string(), 5),
        ("tcp://127.0.0.1".to_string(), 6),
    ];
    control.wake().unwrap();
    rec.wait_for("every dial outcome", |seen| {
        let errors = seen
            .iter()
            .filter(|e| matches!(e, Ev::DialError { .. } | Ev::DialRefused { .. }))
            .count();
        let opened = seen
            .iter()
            .any(|e| matches!(e, Ev::Opened { tag: Some(4), .. }));
        errors == 5 && opened
    });
    let mut outcomes = HashMap::new();
    for e in &rec.seen {
        match e {
            Ev::DialError {
                tag,
                loop_index,
                kind,
                error,
            } => {
                assert_eq!(*loop_index, 1, "dial {tag} failed on another loop");
                assert!(
                    outcomes.insert(*tag, (*kind, error.clone())).is_none(),
                    "state {tag} reported twice"
                );
            }
            Ev::DialRefused { tag, error } => {
                assert!(outcomes.insert(*tag, (None, error.clone())).is_none());
            }
            Ev::Opened {
                tag: Some(tag),
                loop_index,
                listener,
                ..
            } => {
                assert_eq!(*tag, 4);
                assert_eq!(*loop_index, 1, "Conn::dial lands on the caller's loop");
                assert_eq!(*listener, None);
            }
            _ => {}
        }
    }
    let kind = |tag| outcomes.get(&tag).map(|(k, _)| *k);
    assert_eq!(kind(1), Some(Some(io::ErrorKind::ConnectionRefused)));
    assert_eq!(kind(2), Some(Some(io::ErrorKind::TimedOut)));
    assert_eq!(kind(3), Some(Some(io::ErrorKind::NotFound)));
    assert_eq!(kind(5), Some(None), "a bad scheme is refused by Conn::dial");
    assert_eq!(
        kind(6),
        Some(None),
        "a bad address is refused by Conn::dial"
    );
    assert!(!outcomes.contains_key(&4), "{outcomes:?}");
    // The dialled connection works: the echo peer sends back what it gets.
    let opened = rec
        .seen
        .iter()
        .find_map(|e| match e {
            Ev::Opened {
                id, tag: Some(4), ..
            } => Some(*id),
            _ => None,
        })
        .unwrap();
    let h = client.engine.handle(opened);
    assert_eq!(h.write(b"via Conn::dial".to_vec()).wait().unwrap(), 14);
    rec.wait_for("echo on the dialled connection", |seen| {
        bytes_in(seen, opened).len() >= 14
    });
    assert_eq!(rec.bytes_of(opened), b"via Conn::dial");
    client.stop();
    peer.stop();
}

// ----- gnet's ClientReadOnEOF -----

/// A peer that writes `len` bytes and closes: the client gets every byte in
/// `on_traffic`, then `on_read_closed`, then `on_close` with EOF.
fn read_on_eof(unix: bool, edge_triggered: bool) {
    let sizes = [0usize, 1, 65_537, 3 * MIB];
    let (builder, _knobs, mut rec) = client_engine(Knobs::default());
    // Both asked for: epoll's default is edge-triggered. (Asking for
    // edge-triggered mode makes `Auto` choose epoll.)
    let builder = builder.edge_triggered(edge_triggered);
    let client = Running::start(builder.loops(2));
    let mut expected: Vec<(ConnId, Arc<Vec<u8>>)> = Vec::new();
    let mut peers = Vec::new();
    for (s, &len) in sizes.iter().enumerate() {
        let data = Arc::new(payload(s as u64 + 77, len));
        let (closed_tx, closed_rx) = mpsc::channel::<()>();
        let closed_tx = Mutex::new(closed_tx);
        let sent = data.clone();
        let peer = StdServer::new(unix, move |mut stream| {
            stream.write_all(&sent).expect("peer write");
            drop(stream); // FIN right behind the bytes
            let _ = closed_tx.lock().unwrap().send(());
        });
        // Each connection's peer thread reports once it has closed.
        let mut peer_closes = 0;
        for i in 0..6 {
            // Whether to enroll only once the peer has written and closed:
            // only for what fits in the socket buffers of an unread socket.
            let late = i % 3 == 2 && len <= 65_537;
            let pending = if late {
                let fd = peer.addr.connect();
                // Every earlier connection's peer finishes too (the client
                // engine reads them), so i + 1 reports include this one's.
                while peer_closes < i + 1 {
                    closed_rx.recv_timeout(PATIENCE).expect("peer closed");
                    peer_closes += 1;
                }
                client.engine.enroll(fd)
            } else if i % 2 == 0 {
                client.engine.dial(peer.addr.url())
            } else {
                client.engine.enroll(peer.addr.connect())
            };
            let h = wait_pending("connect", pending)
                .unwrap_or_else(|e| panic!("connection {i} to a {len}-byte peer: {e}"));
            expected.push((h.id(), data.clone()));
        }
        peers.push(peer);
    }
    rec.wait_for("every close", |seen| {
        expected.iter().all(|(id, _)| closed(seen, *id).is_some())
    });
    for (id, data) in &expected {
        let events = rec.of(*id);
        let got = rec.bytes_of(*id);
        assert_eq!(got.len(), data.len(), "{id}: bytes before close");
        assert!(got == **data, "{id}: bytes differ");
        let read_closed = events
            .iter()
            .position(|e| matches!(e, Ev::ReadClosed { .. }))
            .unwrap_or_else(|| panic!("{id}: no on_read_closed"));
        let last_data = events
            .iter()
            .rposition(|e| matches!(e, Ev::Data { .. }))
            .unwrap_or(0);
        assert!(matches!(events[0], Ev::Opened { .. }), "{id}: {events:?}");
        assert!(last_data < read_closed, "{id}: bytes after on_read_closed");
        assert_eq!(read_closed, events.len() - 2, "{id}: order");
        assert_eq!(closed(&rec.seen, *id), Some("eof"));
    }
    wait_until("client connections gone", || {
        client.engine.connection_count() == 0
    });
    client.stop();
}

#[test]
fn client_reads_everything_before_eof_tcp() {
    read_on_eof(false, false);
}

/// Edge-triggered, the bytes and the peer's end often come in one event: a
/// short read must not be taken for "drained" then, or the end is never
/// read (no new edge comes for it) and the connection stalls half-open.
#[test]
fn client_reads_everything_before_eof_edge_triggered_tcp() {
    read_on_eof(false, true);
}

#[test]
fn client_reads_everything_before_eof_edge_triggered_unix() {
    read_on_eof(true, true);
}

#[test]
fn client_reads_everything_before_eof_unix() {
    read_on_eof(true, false);
}

// ----- gnet's WakeConnImmediately -----

/// A peer that reads and discards.
struct Quiet;

impl EventHandler for Quiet {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        conn.read_all();
        Action::None
    }
}

/// Wake and close right after a dial (and from `on_open`, and in either
/// order): every wake of a live connection runs `on_traffic` once, a wake
/// after a close is ignored, nothing panics, and the engine stops cleanly.
#[test]
fn wake_and_close_right_after_dial() {
    let server = Running::start(
        Engine::builder(|_| Quiet)
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let url = format!("tcp://{}", server.tcp_addr(0));
    let (builder, knobs, mut rec) = client_engine(Knobs::default());
    let client = Running::start(builder.loops(2));
    #[derive(Debug, PartialEq)]
    enum Want {
        WokenOpen,
        WokenThenClosed,
        ClosedNotWoken,
    }
    let mut wants: Vec<(ConnId, Want)> = Vec::new();
    let mut refused_on_open = 0;
    for i in 0..60 {
        let connect = |engine: &EngineHandle| {
            if i % 4 == 3 {
                engine.enroll(tcp_client(server.tcp_addr(0)))
            } else {
                engine.dial(&url)
            }
        };
        match i % 6 {
            0 => {
                let h = wait_pending("dial", connect(&client.engine)).unwrap();
                h.wake().unwrap();
                wants.push((h.id(), Want::WokenOpen));
            }
            1 => {
                let h = wait_pending("dial", connect(&client.engine)).unwrap();
                h.wake().unwrap();
                h.close().unwrap();
                wants.push((h.id(), Want::WokenThenClosed));
            }
            2 => {
                let h = wait_pending("dial", connect(&client.engine)).unwrap();
                h.close().unwrap();
                h.wake().unwrap();
                wants.push((h.id(), Want::ClosedNotWoken));
            }
            3 | 4 => {
                knobs.wake_on_open.store(true, Ordering::SeqCst);
                let h = wait_pending("dial", connect(&client.engine));
                knobs.wake_on_open.store(false, Ordering::SeqCst);
                wants.push((h.unwrap().id(), Want::WokenOpen));
            }
            _ => {
                // Closed by its own on_open: the dial reports it closed.
                knobs.close_on_open.store(true, Ordering::SeqCst);
                let r = wait_pending("dial", connect(&client.engine));
                knobs.close_on_open.store(false, Ordering::SeqCst);
                assert!(matches!(r, Err(Error::ConnectionClosed)), "{r:?}");
                refused_on_open += 1;
            }
        }
    }
    rec.wait_for("every wake and close", |seen| {
        let opened_closed_locally = seen
            .iter()
            .filter(|e| matches!(e, Ev::Closed { reason, .. } if reason == "local"))
            .count();
        opened_closed_locally == refused_on_open
            && wants.iter().all(|(id, want)| match want {
                Want::WokenOpen => seen
                    .iter()
                    .any(|e| matches!(e, Ev::Woken { id: i } if i == id)),
                _ => closed(seen, *id).is_some(),
            })
    });
    rec.settle(Duration::from_millis(100));
    for (id, want) in &wants {
        let kinds: Vec<&str> = rec
            .of(*id)
            .iter()
            .map(|e| match e {
                Ev::Opened { .. } => "open",
                Ev::Woken { .. } => "woken",
                Ev::Closed { .. } => "closed",
                Ev::Data { .. } => "data",
                Ev::ReadClosed { .. } => "read-closed",
                _ => "other",
            })
            .collect();
        let expected: &[&str] = match want {
            Want::WokenOpen => &["open", "woken"],
            Want::WokenThenClosed => &["open", "woken", "closed"],
            Want::ClosedNotWoken => &["open", "closed"],
        };
        assert_eq!(kinds, expected, "{id} ({want:?})");
    }
    client.stop();
    server.stop();
}

// ----- connected UDP -----

/// `udp://` dials give a connected datagram connection: each datagram
/// written through the handle reaches the peer whole, and each one the peer
/// sends back is one `on_traffic` call.
fn udp_client(peer_addr: std::net::SocketAddr) {
    let (builder, _knobs, mut rec) = client_engine(Knobs {
        greeting: true,
        ..Knobs::default()
    });
    let client = Running::start(builder.loops(2));
    let h = wait_pending("udp dial", client.engine.dial(format!("udp://{peer_addr}")))
        .expect("udp dial");
    let id = h.id();
    rec.wait_for("greeting echo", |seen| !bytes_in(seen, id).is_empty());
    for k in 0..20usize {
        let datagram = payload(k as u64 + 500, 1 + k * 397);
        assert_eq!(h.write(datagram.clone()).wait().unwrap(), datagram.len());
        let before = rec.seen.len();
        rec.wait_for("datagram echo", |seen| {
            seen[before..].iter().any(|e| matches!(e, Ev::Data { .. }))
        });
        let got: Vec<&Vec<u8>> = rec.seen[before..]
            .iter()
            .filter_map(|e| match e {
                Ev::Data { bytes, .. } => Some(bytes),
                _ => None,
            })
            .collect();
        assert_eq!(got.len(), 1);
        assert!(*got[0] == datagram, "datagram {k} echoed differently");
    }
    let datagrams: Vec<&Vec<u8>> = rec
        .seen
        .iter()
        .filter_map(|e| match e {
            Ev::Data { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(
        datagrams[0].as_slice(),
        GREETING,
        "greeting is one datagram"
    );
    assert_eq!(datagrams.len(), 21);
    h.close().unwrap();
    rec.wait_for("close", |seen| closed(seen, id).is_some());
    assert_eq!(closed(&rec.seen, id), Some("requested"));
    client.stop();
}

#[test]
fn udp_dial_to_a_std_echo() {
    let echo = UdpEcho::start();
    udp_client(echo.addr);
}

#[test]
fn udp_dial_to_a_ringloop_echo() {
    let server = Running::start(
        Engine::builder(|_| Echo)
            .listen("udp://127.0.0.1:0")
            .loops(2),
    );
    let addr = server.engine.local_addrs()[0]
        .sock_addr()
        .as_inet()
        .expect("an inet address");
    udp_client(addr);
    server.stop();
}

/// A handler that reads part of each datagram of a dialled UDP connection.
struct PartialReader {
    seen: Mutex<Sender<(bool, Vec<u8>)>>,
}

impl EventHandler for PartialReader {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let input = conn.peek(usize::MAX).to_vec();
        conn.next(2);
        let _ = self.seen.lock().unwrap().send((conn.is_datagram(), input));
        Action::None
    }
}

/// What `Conn` documents for a dialled UDP connection ("each datagram is
/// one on_traffic call, … bytes left unread are discarded with their
/// datagram"; `is_datagram` is true for it): unread bytes are not carried
/// into the next datagram, and `is_datagram()` is true.
#[test]
fn udp_dial_keeps_datagram_boundaries() {
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(PATIENCE)).unwrap();
    let addr = peer.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let client = Running::start(
        Engine::builder(move |_| PartialReader {
            seen: Mutex::new(tx.lock().unwrap().clone()),
        })
        .loops(1),
    );
    let h = wait_pending("udp dial", client.engine.dial(format!("udp://{addr}"))).unwrap();
    h.write(b"hello".to_vec()).wait().unwrap();
    let mut buf = [0u8; 64];
    let (_, from) = peer.recv_from(&mut buf).expect("the client's datagram");
    for datagram in [&b"AAAA"[..], b"BBBB"] {
        peer.send_to(datagram, from).unwrap();
        let (is_datagram, input) = rx.recv_timeout(PATIENCE).expect("on_traffic");
        assert_eq!(
            input, datagram,
            "one datagram per on_traffic, nothing carried over"
        );
        assert!(
            is_datagram,
            "Conn::is_datagram() on a dialled UDP connection"
        );
    }
    client.stop();
}
