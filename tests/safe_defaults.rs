//! What an engine bounds without being asked, over real sockets: input a
//! peer stops sending halfway (the incomplete-input timeout, trickled one
//! byte at a time), output a peer stops reading (the write timeout), and a
//! half-closed connection where nothing moves. Timeouts are set small here;
//! every wait is bounded by `PATIENCE`, and nothing asserts how fast.

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use ringloop::{Action, CloseReason, Conn, Engine, EventHandler, TimeoutKind, Timeouts};

const SMALL: Duration = Duration::from_millis(300);

/// A line protocol: consumes complete lines only (echoing them), so a line
/// without its end stays unconsumed; reports every close reason. Keeps a
/// connection open after the peer's end of stream.
struct Lines {
    closed: mpsc::Sender<String>,
}

impl EventHandler for Lines {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let waiting = conn.peek(usize::MAX);
        if let Some(end) = waiting.iter().rposition(|&b| b == b'\n') {
            let lines = conn.next(end + 1);
            let _ = conn.write(lines);
        }
        Action::None
    }

    fn on_read_closed(&mut self, _conn: &mut Conn<'_, ()>) -> Action {
        Action::None // half-open: this side could still write
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
        let _ = self.closed.send(reason.to_string());
        Action::None
    }
}

fn start(timeouts: Timeouts) -> (Running, mpsc::Receiver<String>) {
    let (tx, rx) = mpsc::channel();
    let running = Running::start(
        Engine::builder(move |_| Lines { closed: tx.clone() })
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .timeouts(timeouts),
    );
    (running, rx)
}

fn reason(kind: TimeoutKind) -> String {
    CloseReason::Timeout(kind).to_string()
}

/// Reads until the server closes; `true` once it did (EOF or reset).
fn closed_by_server(client: &mut TcpStream) -> bool {
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut sink = [0; 4096];
    loop {
        match client.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true, // reset
        }
    }
}

#[test]
fn the_defaults_bound_slow_peers() {
    // An engine's default timeouts are `Timeouts::default()` (asserted by
    // the options module's unit test, the engine's settings being private).
    let t = Timeouts::default();
    for (name, d) in [
        ("incomplete", t.incomplete),
        ("write", t.write),
        ("half-closed", t.half_closed),
    ] {
        assert!(
            d.is_some_and(|d| d <= Duration::from_secs(60)),
            "{name}: {d:?}"
        );
    }
}

#[test]
fn a_trickled_unfinished_line_is_closed_by_the_incomplete_timeout() {
    let (running, closed) = start(Timeouts::none().incomplete(SMALL));
    let mut client = tcp_client(running.tcp_addr(0));
    // Complete lines are answered; progress restarts the clock.
    client.write_all(b"hello\n").unwrap();
    let mut reply = [0; 6];
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"hello\n");
    // A slowloris: one byte of an unfinished line every 50 ms, each well
    // inside the timeout, for as long as the server lets it.
    let mut trickler = client.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        for _ in 0..(PATIENCE.as_millis() / 50) {
            if trickler.write_all(b"x").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    assert!(
        closed_by_server(&mut client),
        "the trickler was never closed"
    );
    assert_eq!(
        closed.recv_timeout(PATIENCE).unwrap(),
        reason(TimeoutKind::Incomplete)
    );
    assert!(
        trickle.join().unwrap(),
        "the trickler's writes kept working"
    );
    running.stop();
}

#[test]
fn a_quiet_connection_with_nothing_unfinished_stays_open() {
    let (running, closed) = start(Timeouts::none().incomplete(SMALL));
    let mut client = tcp_client(running.tcp_addr(0));
    client.write_all(b"one\n").unwrap();
    let mut reply = [0; 4];
    client.read_exact(&mut reply).unwrap();
    // Three times the timeout with nothing pending: no reason to close.
    std::thread::sleep(SMALL * 3);
    client.write_all(b"two\n").unwrap();
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"two\n");
    assert!(closed.try_recv().is_err());
    running.stop();
}

#[test]
fn a_peer_that_stops_reading_is_closed_by_the_write_timeout() {
    let (running, closed) = start(Timeouts::none().write(SMALL));
    let client = tcp_client(running.tcp_addr(0));
    // Lines echoed back to a client that never reads: the socket buffers
    // fill, the queue stops moving, the write timeout fires.
    let mut writer = client.try_clone().unwrap();
    let line = vec![b'w'; 64 * 1024 - 1]
        .into_iter()
        .chain([b'\n'])
        .collect::<Vec<_>>();
    let pusher = std::thread::spawn(move || {
        for _ in 0..100_000 {
            if writer.write_all(&line).is_err() {
                return;
            }
        }
    });
    assert_eq!(
        closed.recv_timeout(PATIENCE).unwrap(),
        reason(TimeoutKind::Write)
    );
    drop(client);
    pusher.join().unwrap();
    running.stop();
}

#[test]
fn a_half_closed_connection_where_nothing_moves_is_closed() {
    let (running, closed) = start(Timeouts::none().half_closed(SMALL));
    let mut client = tcp_client(running.tcp_addr(0));
    client.write_all(b"last words\n").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut reply = [0; 11];
    client.read_exact(&mut reply).unwrap();
    assert!(closed_by_server(&mut client));
    assert_eq!(
        closed.recv_timeout(PATIENCE).unwrap(),
        reason(TimeoutKind::HalfClosed)
    );
    running.stop();
}

/// Pauses reading on a request it cannot take yet (as a handler does when
/// its worker pool is full), leaving the bytes unconsumed, and answers the
/// request once resumed from another thread.
struct Pauser {
    paused: mpsc::Sender<ringloop::ConnHandle>,
    closed: mpsc::Sender<String>,
}

impl EventHandler for Pauser {
    type State = bool; // answered once already: later input is echoed at once

    fn on_traffic(&mut self, conn: &mut Conn<'_, bool>) -> Action {
        if !conn.state().copied().unwrap_or(false) {
            let _ = conn.set_state(true);
            conn.pause_reading();
            let _ = self.paused.send(conn.handle());
            return Action::None;
        }
        let all = conn.read_all();
        let _ = conn.write(all);
        Action::None
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, bool>, reason: &CloseReason) -> Action {
        let _ = self.closed.send(reason.to_string());
        Action::None
    }
}

#[test]
fn input_held_back_by_a_pause_is_not_incomplete_input() {
    let (paused_tx, paused) = mpsc::channel();
    let (closed_tx, closed) = mpsc::channel();
    let running = Running::start(
        Engine::builder(move |_| Pauser {
            paused: paused_tx.clone(),
            closed: closed_tx.clone(),
        })
        .listen("tcp://127.0.0.1:0")
        .loops(1)
        .timeouts(Timeouts::none().incomplete(SMALL)),
    );
    let mut client = tcp_client(running.tcp_addr(0));
    client.write_all(b"request").unwrap();
    let handle = paused.recv_timeout(PATIENCE).unwrap();
    // The handler holds the request for three times the incomplete-input
    // timeout (a long job): that is the handler's choice, not a slow peer.
    std::thread::sleep(SMALL * 3);
    assert!(closed.try_recv().is_err(), "a paused connection was closed");
    handle.resume_reading().unwrap();
    let mut reply = [0; 7];
    client.set_read_timeout(Some(PATIENCE)).unwrap();
    client.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"request");
    assert!(closed.try_recv().is_err());
    running.stop();
}
