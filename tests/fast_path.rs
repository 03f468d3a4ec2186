//! The loop's fast path for input on a quiet connection ends an event
//! without settling when the callback consumed everything, wrote straight
//! through and changed nothing else of its connection. These callbacks do
//! exactly that *and then* change their connection (a close for a protocol
//! error, a half-close, a pause): each change must still be applied. A
//! connection the fast path has seen quiet keeps that mark only until
//! something else reaches it (here a pause from a handle, edge-triggered,
//! where the paused socket still reports input).

mod common;

use std::io::{Read, Write};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::*;
use ringloop::{Action, CloseReason, Conn, ConnHandle, Engine, EngineBuilder, EventHandler};

/// Answers every input (but `q`, read quietly) with a short reply, which
/// the socket takes at once, then does what the input's first byte says to
/// its connection.
struct ThenChange {
    closes: Arc<Mutex<Vec<String>>>,
    paused: mpsc::Sender<ConnHandle>,
}

impl EventHandler for ThenChange {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let input = conn.read_all();
        let first = input.first().copied();
        if first == Some(b'q') {
            return Action::None; // read quietly (after a half-close)
        }
        if conn.write(b"ok\n").is_err() {
            return Action::Close;
        }
        match first {
            Some(b'E') => conn.close_with_error("E is not a command"),
            Some(b'S') => conn.shutdown_write(),
            Some(b'P') => {
                conn.pause_reading();
                let _ = self.paused.send(conn.handle());
            }
            // A handle for the test, nothing changed.
            Some(b'H') => {
                let _ = self.paused.send(conn.handle());
            }
            _ => {}
        }
        Action::None
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
        self.closes.lock().unwrap().push(reason.to_string());
        Action::None
    }
}

/// Level-triggered (`edge: false`, asked for: epoll's default is
/// edge-triggered) or edge-triggered on epoll; on io_uring the
/// level-triggered case runs on io_uring (the setting is ignored there).
fn start(edge: bool) -> (Running, Arc<Mutex<Vec<String>>>, mpsc::Receiver<ConnHandle>) {
    if edge {
        start_with(|b| edge_triggered_on_epoll(b, None))
    } else {
        start_with(|b| b.edge_triggered(false))
    }
}

fn start_with(
    mode: impl FnOnce(EngineBuilder<ThenChange>) -> EngineBuilder<ThenChange>,
) -> (Running, Arc<Mutex<Vec<String>>>, mpsc::Receiver<ConnHandle>) {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let (paused_tx, paused) = mpsc::channel();
    let c = closes.clone();
    let running = Running::start(mode(
        Engine::builder(move |_| ThenChange {
            closes: c.clone(),
            paused: paused_tx.clone(),
        })
        .listen("tcp://127.0.0.1:0")
        .loops(1),
    ));
    (running, closes, paused)
}

fn reply(s: &mut std::net::TcpStream) -> [u8; 3] {
    let mut buf = [0u8; 3];
    s.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn a_protocol_error_after_a_write_through_closes_with_its_reason() {
    for edge in [false, true] {
        a_protocol_error_after_a_write_through_closes_with_its_reason_in(edge);
    }
}

fn a_protocol_error_after_a_write_through_closes_with_its_reason_in(edge: bool) {
    let (server, closes, _paused) = start(edge);
    let mut s = tcp_client(server.tcp_addr(0));
    // Quiet first (the fast path's case), then the error.
    s.write_all(b"x").unwrap();
    assert_eq!(&reply(&mut s), b"ok\n");
    s.write_all(b"E").unwrap();
    assert_eq!(read_to_end(&mut s), b"ok\n", "the reply, then the close");
    wait_until("the close", || !closes.lock().unwrap().is_empty());
    let closes = closes.lock().unwrap();
    assert!(
        closes[0].contains("E is not a command"),
        "closed for {closes:?}"
    );
}

#[test]
fn a_half_close_after_a_write_through_sends_fin_and_keeps_reading() {
    for edge in [false, true] {
        a_half_close_after_a_write_through_sends_fin_and_keeps_reading_in(edge);
    }
}

fn a_half_close_after_a_write_through_sends_fin_and_keeps_reading_in(edge: bool) {
    let (server, closes, _paused) = start(edge);
    let mut s = tcp_client(server.tcp_addr(0));
    s.write_all(b"x").unwrap();
    assert_eq!(&reply(&mut s), b"ok\n");
    s.write_all(b"S").unwrap();
    assert_eq!(read_to_end(&mut s), b"ok\n", "the reply, then FIN");
    // Our side is still read: the connection is not closed by the server.
    s.write_all(b"q").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert!(closes.lock().unwrap().is_empty(), "{closes:?}");
}

#[test]
fn a_pause_after_a_write_through_stops_reading_until_resumed() {
    for edge in [false, true] {
        a_pause_after_a_write_through_stops_reading_until_resumed_in(edge);
    }
}

fn a_pause_after_a_write_through_stops_reading_until_resumed_in(edge: bool) {
    let (server, _closes, paused) = start(edge);
    let mut s = tcp_client(server.tcp_addr(0));
    s.write_all(b"x").unwrap();
    assert_eq!(&reply(&mut s), b"ok\n");
    s.write_all(b"P").unwrap();
    assert_eq!(&reply(&mut s), b"ok\n");
    let handle = paused.recv_timeout(PATIENCE).unwrap();
    // Paused: this input waits in the socket, unanswered.
    s.write_all(b"x").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 3];
    let early = s.read(&mut buf);
    assert!(
        matches!(&early, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
            || e.kind() == std::io::ErrorKind::TimedOut),
        "a paused connection was read: {early:?}"
    );
    handle.resume_reading().unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    assert_eq!(&reply(&mut s), b"ok\n");
}

#[test]
fn a_pause_from_a_handle_stops_a_connection_the_fast_path_saw_quiet() {
    // Edge-triggered: a paused connection stays registered for input, so
    // its next input is an event the fast path must turn down.
    let (server, _closes, handles) = start_with(|b| edge_triggered_on_epoll(b, None));
    let mut s = tcp_client(server.tcp_addr(0));
    // Quiet, twice: the fast path has marked it.
    s.write_all(b"x").unwrap();
    assert_eq!(&reply(&mut s), b"ok\n");
    s.write_all(b"H").unwrap();
    assert_eq!(&reply(&mut s), b"ok\n");
    let handle = handles.recv_timeout(PATIENCE).unwrap();
    // Paused from outside; the write after it (same sender, applied in
    // order) says the pause is in force.
    handle.pause_reading().unwrap();
    assert_eq!(handle.write("w").wait().unwrap(), 1);
    let mut w = [0u8; 1];
    s.read_exact(&mut w).unwrap();
    assert_eq!(&w, b"w");
    // This input is in the server's socket before the next write is sent,
    // and the loop handles a turn's input before its messages: a reply to
    // it would come before the `z`.
    s.write_all(b"x").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    handle.write("z").wait().unwrap();
    let mut z = [0u8; 1];
    s.read_exact(&mut z).unwrap();
    assert_eq!(&z, b"z", "a paused connection was read and answered");
    handle.resume_reading().unwrap();
    assert_eq!(&reply(&mut s), b"ok\n");
}
