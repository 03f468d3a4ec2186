//! `ConnHandle::wake` over real sockets: each wake reaches `on_wake`
//! exactly once, never `on_traffic` when `on_wake` is overridden, in order
//! with the writes sent before it from the same thread; the default
//! `on_wake` runs `on_traffic` (a wake looked like that before); `Framed`
//! gets its own `FrameHandler::on_wake`, and arriving frames never do.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;

use common::*;
use ringloop::codec::{FrameConn, FrameHandler, Framed, LineCodec};
use ringloop::{Action, Conn, ConnHandle, Engine, EventHandler};

#[derive(Default)]
struct Counts {
    wakes: AtomicUsize,
    traffic: AtomicUsize,
    empty_traffic: AtomicUsize,
}

/// Echoes traffic; answers each wake with one `w`.
struct Overrides {
    counts: Arc<Counts>,
    handles: mpsc::Sender<ConnHandle>,
}

impl EventHandler for Overrides {
    type State = ();
    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.handles.send(conn.handle());
        Action::None
    }
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        self.counts.traffic.fetch_add(1, Ordering::SeqCst);
        let data = conn.read_all();
        if data.is_empty() {
            self.counts.empty_traffic.fetch_add(1, Ordering::SeqCst);
        }
        let _ = conn.write(data);
        Action::None
    }
    fn on_wake(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        self.counts.wakes.fetch_add(1, Ordering::SeqCst);
        let _ = conn.write(b"w");
        Action::None
    }
}

/// An `Overrides` server on `loops` loops, one client, and the server's
/// handle to it.
fn overrides_server(loops: usize) -> (Running, Arc<Counts>, TcpStream, ConnHandle) {
    let counts = Arc::new(Counts::default());
    let (tx, rx) = mpsc::channel();
    let c = counts.clone();
    let server = Running::start(
        Engine::builder(move |_| Overrides {
            counts: c.clone(),
            handles: tx.clone(),
        })
        .listen("tcp://127.0.0.1:0")
        .loops(loops),
    );
    let client = tcp_client(server.tcp_addr(0));
    let handle = rx.recv_timeout(PATIENCE).expect("on_open ran");
    (server, counts, client, handle)
}

#[test]
fn every_wake_reaches_on_wake_once_and_never_on_traffic() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 50;
    let (server, counts, mut client, handle) = overrides_server(1);
    // Wakes from several threads at once, many landing in one loop turn:
    // none is merged with another.
    thread::scope(|t| {
        for _ in 0..THREADS {
            t.spawn(|| {
                for _ in 0..PER_THREAD {
                    handle.wake().unwrap();
                }
            });
        }
    });
    let total = THREADS * PER_THREAD;
    assert_eq!(read_exactly(&mut client, total), vec![b'w'; total]);
    // Traffic still goes to on_traffic, with its bytes.
    client.write_all(b"ping").unwrap();
    assert_eq!(read_exactly(&mut client, 4), b"ping");
    server.stop();
    // Nothing after the echo: no extra wake was delivered.
    assert!(read_to_end(&mut client).is_empty());
    assert_eq!(counts.wakes.load(Ordering::SeqCst), total);
    assert_eq!(counts.empty_traffic.load(Ordering::SeqCst), 0);
    assert!(counts.traffic.load(Ordering::SeqCst) >= 1);
}

#[test]
fn a_wake_follows_the_writes_sent_before_it_from_the_same_thread() {
    let (server, counts, mut client, handle) = overrides_server(2);
    for _ in 0..20 {
        handle.try_async_write(b"A".to_vec()).unwrap();
        handle.wake().unwrap();
    }
    assert_eq!(read_exactly(&mut client, 40), b"Aw".repeat(20));
    server.stop();
    assert_eq!(counts.wakes.load(Ordering::SeqCst), 20);
}

/// Only `on_traffic`: answers an empty call (a wake, through the default
/// `on_wake`) with `t`, and echoes bytes.
struct TrafficOnly {
    handles: mpsc::Sender<ConnHandle>,
}

impl EventHandler for TrafficOnly {
    type State = ();
    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let _ = self.handles.send(conn.handle());
        Action::None
    }
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let data = conn.read_all();
        let _ = if data.is_empty() {
            conn.write(b"t")
        } else {
            conn.write(data)
        };
        Action::None
    }
}

#[test]
fn the_default_on_wake_runs_on_traffic() {
    let (tx, rx) = mpsc::channel();
    let server = Running::start(
        Engine::builder(move |_| TrafficOnly {
            handles: tx.clone(),
        })
        .listen("tcp://127.0.0.1:0")
        .loops(1),
    );
    let mut client = tcp_client(server.tcp_addr(0));
    let handle = rx.recv_timeout(PATIENCE).expect("on_open ran");
    for _ in 0..3 {
        handle.wake().unwrap();
        assert_eq!(read_exactly(&mut client, 1), b"t");
    }
    client.write_all(b"xy").unwrap();
    assert_eq!(read_exactly(&mut client, 2), b"xy");
    server.stop();
}

/// Frames answered with `frame:<it>`; wakes with `woken`.
struct FramedWaker {
    wakes: Arc<AtomicUsize>,
    handles: mpsc::Sender<ConnHandle>,
}

impl FrameHandler for FramedWaker {
    type State = ();
    fn on_open(&mut self, conn: &mut FrameConn<'_, ()>) -> Action {
        let _ = self.handles.send(conn.handle());
        Action::None
    }
    fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
        let mut reply = b"frame:".to_vec();
        reply.extend_from_slice(frame);
        let _ = conn.write_frame(&reply);
        Action::None
    }
    fn on_wake(&mut self, conn: &mut FrameConn<'_, ()>) -> Action {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        let _ = conn.write_frame(b"woken");
        Action::None
    }
}

#[test]
fn framed_wakes_reach_on_wake_once_each_and_frames_do_not() {
    let wakes = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel();
    let w = wakes.clone();
    let server = Running::start(
        Engine::builder(move |_| {
            Framed::new(
                LineCodec::new(),
                FramedWaker {
                    wakes: w.clone(),
                    handles: tx.clone(),
                },
            )
        })
        .listen("tcp://127.0.0.1:0")
        .loops(1),
    );
    let mut client = tcp_client(server.tcp_addr(0));
    let handle = rx.recv_timeout(PATIENCE).expect("on_open ran");
    // A partial frame waits in the buffer: a wake must neither complete
    // nor drop it.
    client.write_all(b"par").unwrap();
    for _ in 0..5 {
        handle.wake().unwrap();
    }
    assert_eq!(read_exactly(&mut client, 30), b"woken\n".repeat(5));
    client.write_all(b"t\nnext\n").unwrap();
    assert_eq!(read_exactly(&mut client, 22), b"frame:part\nframe:next\n");
    server.stop();
    assert!(read_to_end(&mut client).is_empty());
    assert_eq!(wakes.load(Ordering::SeqCst), 5);
}

fn read_exactly(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    std::io::Read::read_exact(s, &mut buf).expect("read the reply");
    buf
}

/// Holds its input (reading paused) until woken; `on_wake` resumes reading
/// with `Conn::resume_reading`, on the loop.
struct HoldUntilWoken {
    handles: mpsc::Sender<ConnHandle>,
    /// Bytes held each time `on_traffic` holds.
    held: mpsc::Sender<usize>,
}

impl EventHandler for HoldUntilWoken {
    /// Whether a wake has released the input.
    type State = bool;
    fn on_open(&mut self, conn: &mut Conn<'_, bool>) -> Action {
        conn.set_state(false);
        let _ = self.handles.send(conn.handle());
        Action::None
    }
    fn on_traffic(&mut self, conn: &mut Conn<'_, bool>) -> Action {
        if conn.state() != Some(&true) {
            conn.pause_reading(); // keep the input, read nothing more
            let _ = self.held.send(conn.peek(usize::MAX).len());
            return Action::None;
        }
        let data = conn.read_all();
        let _ = conn.write(data);
        Action::None
    }
    fn on_wake(&mut self, conn: &mut Conn<'_, bool>) -> Action {
        conn.set_state(true);
        conn.resume_reading();
        Action::None
    }
}

/// Input held back while reading was paused is handed to `on_traffic` as
/// soon as `Conn::resume_reading` is called on the loop (here in
/// `on_wake`), as `ConnHandle::resume_reading` does, not only once more
/// bytes arrive (the client sends nothing more).
#[test]
fn resume_reading_on_the_loop_delivers_the_input_held_while_paused() {
    for edge in [false, true] {
        let (tx, rx) = mpsc::channel();
        let (held_tx, held) = mpsc::channel();
        let server = Running::start(
            Engine::builder(move |_| HoldUntilWoken {
                handles: tx.clone(),
                held: held_tx.clone(),
            })
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .edge_triggered(edge),
        );
        let mut client = tcp_client(server.tcp_addr(0));
        let handle = rx.recv_timeout(PATIENCE).expect("on_open ran");
        client.write_all(b"held").unwrap();
        // Wait until the loop has read all the bytes and paused: the wake
        // must find them buffered, not on the socket.
        while held
            .recv_timeout(PATIENCE)
            .expect("on_traffic held the input")
            < 4
        {}
        handle.wake().unwrap();
        assert_eq!(
            read_exactly(&mut client, 4),
            b"held",
            "edge-triggered: {edge}"
        );
        server.stop();
    }
}
