//! Writes of received bytes on io_uring (issue 14): a write of a slice of
//! the callback's input is sent from the provided buffer it arrived in,
//! without a copy (`event_loop/forward.rs`). Whatever the handler writes
//! around it, the bytes leave in the order written; a close right after
//! delivers them; a write to another connection is never sent on the
//! callback's own; and peers that do not read cannot hold every receive
//! buffer of the loop. Every test runs on both drivers.
//!
//! The last one needs a small buffer ring (an environment variable read
//! when the engine starts), so it runs in a child process: this binary
//! runs itself with the variable and one `#[ignore]`d test selected.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::*;
use ringloop::{Action, Backend, Conn, ConnId, Engine, EventHandler};

/// The drivers to run on: epoll always, io_uring where it works here.
fn backends() -> Vec<Backend> {
    let mut b = vec![Backend::Epoll];
    if uring_available() {
        b.push(Backend::IoUring);
    }
    b
}

/// One loop on `backend` serving `tcp://127.0.0.1:0` with a fresh handler
/// from `make`.
fn one_loop_on<H, F>(backend: Backend, make: F) -> Running
where
    H: EventHandler,
    F: Fn(usize) -> H + Send + Sync + 'static,
{
    Running::start(
        Engine::builder(make)
            .listen("tcp://127.0.0.1:0")
            .backend(backend)
            .loops(1),
    )
}

/// For every complete line of its input, writes the line without its
/// newline (a slice of the input: the first one of a callback may be sent
/// from the receive buffer), then `!\n` (queued behind it); a partial line
/// waits for the rest. `bye` closes once written.
struct Lines;

impl EventHandler for Lines {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let input = conn.peek(usize::MAX);
        let mut used = 0;
        let mut close = false;
        while let Some(end) = input[used..].iter().position(|&b| b == b'\n') {
            let line = &input[used..used + end];
            used += end + 1;
            if conn.write(line).is_err() || conn.write(b"!\n").is_err() {
                return Action::Close;
            }
            if line == b"bye" {
                close = true;
                break;
            }
        }
        conn.discard(used);
        if close {
            Action::Close
        } else {
            Action::None
        }
    }
}

/// What [`Lines`] answers to `input` (complete lines only).
fn lines_reply(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in input.split_inclusive(|&b| b == b'\n') {
        if let Some(line) = line.strip_suffix(b"\n") {
            out.extend_from_slice(line);
            out.extend_from_slice(b"!\n");
        }
    }
    out
}

/// Printable lines of varied lengths (some longer than a receive buffer).
fn lines(seed: u64, count: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for i in 0..count {
        let len = match i % 7 {
            0 => 40_000,
            1 => 16 * 1024,
            _ => rng.below(3000),
        };
        out.extend((0..len).map(|_| b'a' + rng.below(26) as u8));
        out.push(b'\n');
    }
    out
}

/// Sends `input` while reading the reply on another thread; returns what
/// came back before the server closed or `expect_len` bytes arrived.
fn exchange(addr: std::net::SocketAddr, input: &[u8], pieces: usize, expect_len: usize) -> Vec<u8> {
    let mut c = tcp_client(addr);
    let mut reader = c.try_clone().unwrap();
    let r = thread::spawn(move || {
        let mut back = Vec::new();
        let mut buf = vec![0u8; 65536];
        while back.len() < expect_len {
            match reader.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => back.extend_from_slice(&buf[..n]),
            }
        }
        back
    });
    // In pieces that split lines, so callbacks see partial lines too.
    let step = input.len().div_ceil(pieces.max(1)).max(1);
    for piece in input.chunks(step) {
        c.write_all(piece).expect("write");
    }
    r.join().unwrap()
}

#[test]
fn a_written_slice_of_the_input_and_what_follows_keep_their_order() {
    for backend in backends() {
        let server = one_loop_on(backend, |_| Lines);
        let addr = server.tcp_addr(0);
        let clients: Vec<_> = (0..8u64)
            .map(|seed| {
                thread::spawn(move || {
                    let input = lines(seed, 300);
                    let expect = lines_reply(&input);
                    let back = exchange(addr, &input, 1 + seed as usize * 37, expect.len());
                    back == expect
                })
            })
            .collect();
        for (i, c) in clients.into_iter().enumerate() {
            assert!(c.join().unwrap(), "{backend:?}: client {i}'s reply differs");
        }
        server.stop();
    }
}

#[test]
fn a_close_right_after_an_echo_delivers_it_whole() {
    for backend in backends() {
        let server = one_loop_on(backend, |_| Lines);
        let addr = server.tcp_addr(0);
        for seed in 0..20u64 {
            let mut input = lines(seed, 40);
            input.extend_from_slice(b"bye\n");
            let expect = lines_reply(&input);
            // Read to the server's close: nothing after `bye` is answered.
            let back = exchange(addr, &input, 1 + seed as usize % 3, usize::MAX);
            assert!(
                back == expect,
                "{backend:?}, seed {seed}: {} of {} bytes came back before the close",
                back.len(),
                expect.len()
            );
        }
        server.stop();
    }
}

/// Pairs each connection with the one opened before it: what one receives
/// goes to the other (`write_to`), never back to itself.
struct Pairs {
    waiting: Option<ConnId>,
}

impl EventHandler for Pairs {
    type State = Option<ConnId>;

    fn on_open(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
        if let Some(peer) = self.waiting.take() {
            conn.set_state(Some(peer));
            let me = conn.id();
            if let Ok(Some(state)) = conn.state_of_mut(peer) {
                *state = Some(me);
            }
            // Both say when they are paired.
            if conn.write(b"P").is_err() || conn.write_to(peer, b"P").is_err() {
                return Action::Close;
            }
        } else {
            conn.set_state(None); // (a state to fill in when paired)
            self.waiting = Some(conn.id());
        }
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Option<ConnId>>) -> Action {
        let Some(&Some(peer)) = conn.state() else {
            return Action::None; // not paired yet: keep the bytes
        };
        let data = conn.read_all();
        match conn.write_to(peer, data) {
            Ok(_) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

#[test]
fn a_write_to_another_connection_goes_to_that_connection() {
    for backend in backends() {
        let server = one_loop_on(backend, |_| Pairs { waiting: None });
        let addr = server.tcp_addr(0);
        let mut a = tcp_client(addr);
        let mut b = tcp_client(addr);
        for s in [&mut a, &mut b] {
            let mut paired = [0u8; 1];
            s.read_exact(&mut paired).expect("paired");
            assert_eq!(&paired, b"P");
        }
        for round in 0..50u64 {
            let data = payload(round, 100 + (round as usize * 997) % 40_000);
            let (from, to) = if round % 2 == 0 {
                (&mut a, &mut b)
            } else {
                (&mut b, &mut a)
            };
            let mut reader = to.try_clone().unwrap();
            let expect = data.clone();
            let r = thread::spawn(move || {
                let mut back = vec![0u8; expect.len()];
                reader
                    .read_exact(&mut back)
                    .expect("read the forwarded bytes");
                back == expect
            });
            from.write_all(&data).unwrap();
            assert!(
                r.join().unwrap(),
                "{backend:?}, round {round}: forwarded bytes differ"
            );
        }
        // Nothing ever came back to a sender.
        for s in [&mut a, &mut b] {
            s.set_nonblocking(true).unwrap();
            let mut one = [0u8; 1];
            assert!(
                matches!(s.read(&mut one), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
                "{backend:?}: a sender got bytes back"
            );
        }
        server.stop();
    }
}

/// Clients that send and never read stall the server's replies to them
/// (each such reply may be a send from a receive buffer, which it holds
/// until the peer reads); a loop with only 16 receive buffers must still
/// answer another client.
#[test]
fn peers_that_never_read_cannot_hold_every_receive_buffer() {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "child_non_readers",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RINGLOOP_URING_BUFFERS", "16")
        .env_remove("RINGLOOP_BACKEND")
        .output()
        .expect("run the child test");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(text.contains("1 passed"), "child did not run:\n{text}");
}

#[test]
#[ignore = "run by peers_that_never_read_cannot_hold_every_receive_buffer in a child process"]
fn child_non_readers() {
    for backend in backends() {
        let server = one_loop_on(backend, |_| Echo);
        let addr = server.tcp_addr(0);
        // 24 peers (more than the ring's buffers) each write until the
        // server stops reading them (its replies are stuck), then idle.
        let stalled: Vec<_> = (0..24u64)
            .map(|seed| {
                thread::spawn(move || {
                    // A small receive buffer: the replies stall after a few KiB.
                    let socket =
                        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
                            .unwrap();
                    socket.set_recv_buffer_size(4096).unwrap();
                    socket.connect(&addr.into()).expect("connect");
                    let mut c = TcpStream::from(socket);
                    c.set_write_timeout(Some(Duration::from_millis(200)))
                        .unwrap();
                    let data = payload(seed, 64 * 1024);
                    while c.write_all(&data).is_ok() {}
                    c
                })
            })
            .collect();
        let stalled: Vec<TcpStream> = stalled.into_iter().map(|t| t.join().unwrap()).collect();
        let mut lone = tcp_client(addr);
        for round in 0..50u64 {
            echo_round_trip(
                &mut lone,
                &payload(1000 + round, 1 + (round as usize * 331) % 20_000),
            );
        }
        drop(stalled);
        server.stop();
    }
}
