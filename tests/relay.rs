//! `ringloop::relay` over real sockets: a proxy that writes only its
//! transform gets early bytes, half-close, teardown and dial errors right.

mod common;

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::thread::JoinHandle;

use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use ringloop::relay::{Backend, Relay, RelayHandler, Relayed, Side};
use ringloop::{CloseReason, Conn, ConnId, Engine, Error, LoopContext};

/// Upper-cases what the backend says; counts what each side relayed in its
/// own state; reports closes and dial errors.
struct Shout {
    backend: String,
    events: Sender<String>,
}

impl RelayHandler for Shout {
    /// Bytes this connection relayed to its partner.
    type State = usize;

    fn backend(&mut self, _client: &mut Conn<'_, Relayed<usize>>) -> Option<Backend<'_>> {
        Some(Backend::new(&self.backend))
    }

    fn transform<'a>(&mut self, conn: &mut Conn<'a, Relayed<usize>>) -> Cow<'a, [u8]> {
        let data = conn.read_all();
        let Some(state) = conn.state_mut() else {
            return Cow::Borrowed(data);
        };
        **state += data.len();
        match state.side() {
            Side::Backend => Cow::Owned(data.to_ascii_uppercase()),
            _ => Cow::Borrowed(data),
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Relayed<usize>>, reason: &CloseReason) {
        if let Some(state) = conn.state() {
            let _ = self.events.send(format!(
                "{:?} relayed {} closed {}",
                state.side(),
                **state,
                reason_kind(reason)
            ));
        }
    }

    fn on_dial_error(&mut self, _ctx: &mut LoopContext, client: ConnId, error: &Error) {
        let _ = self
            .events
            .send(format!("dial error for {client}: {error}"));
    }
}

fn relay_to(backend: String) -> (Running, Receiver<String>) {
    let (tx, rx) = unbounded();
    let running = Running::start(
        Engine::builder(move |_| {
            Relay::new(Shout {
                backend: backend.clone(),
                events: tx.clone(),
            })
        })
        .listen("tcp://127.0.0.1:0")
        .loops(2),
    );
    (running, rx)
}

/// A backend that echoes one connection until its end of stream, then
/// closes; returns what it received.
fn echo_backend() -> (String, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("tcp://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 4096];
        loop {
            match s.read(&mut buf).unwrap() {
                0 => return got, // FIN forwarded by the relay; dropping `s` sends ours
                n => {
                    got.extend_from_slice(&buf[..n]);
                    s.write_all(&buf[..n]).unwrap();
                }
            }
        }
    });
    (url, thread)
}

fn events(rx: &Receiver<String>, n: usize) -> Vec<String> {
    let mut got: Vec<String> = (0..n).map(|_| rx.recv_timeout(PATIENCE).unwrap()).collect();
    got.sort();
    got
}

/// The next two close events as "Side reason", sorted.
fn sides_and_reasons(rx: &Receiver<String>) -> Vec<String> {
    events(rx, 2)
        .iter()
        .map(|e| {
            let words: Vec<&str> = e.split(' ').collect();
            format!("{} {}", words[0], words[words.len() - 1])
        })
        .collect()
}

/// Bytes sent at once (before the backend can have connected) and a FIN
/// right behind them: all of it reaches the backend in order, the
/// transformed echo comes back, and both ends of the stream are forwarded.
#[test]
fn early_bytes_half_close_and_a_transform() {
    let (backend, backend_thread) = echo_backend();
    let (proxy, rx) = relay_to(backend);
    let sent = b"hello, relay\n".repeat(1000);
    let mut client = tcp_client(proxy.tcp_addr(0));
    client.write_all(&sent).unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let back = read_to_end(&mut client);
    assert_eq!(
        backend_thread.join().unwrap(),
        sent,
        "the backend got every byte in order"
    );
    assert!(
        back == sent.to_ascii_uppercase(),
        "the echo came back transformed and whole"
    );
    let n = sent.len();
    assert_eq!(
        events(&rx, 2),
        [
            format!("Backend relayed {n} closed eof"),
            format!("Client relayed {n} closed eof"),
        ]
    );
    proxy.stop();
}

/// A backend that resets takes its client down (and only it); a client that
/// leaves takes its backend down.
#[test]
fn one_side_failing_closes_its_partner() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (proxy, rx) = relay_to(format!("tcp://{}", listener.local_addr().unwrap()));

    // The backend resets.
    let mut doomed = tcp_client(proxy.tcp_addr(0));
    let mut bystander = tcp_client(proxy.tcp_addr(0));
    let (b1, _) = listener.accept().unwrap();
    let (mut b2, _) = listener.accept().unwrap();
    doomed.write_all(b"x").unwrap();
    bystander.write_all(b"y").unwrap();
    // Which backend belongs to which client: read the byte each got.
    let mut one = [0u8; 1];
    let (mut doomed_backend, mut bystander_backend) = {
        let mut b1 = b1;
        b1.read_exact(&mut one).unwrap();
        if one == *b"x" {
            b2.read_exact(&mut one).unwrap();
            (b1, b2)
        } else {
            b2.read_exact(&mut one).unwrap();
            (b2, b1)
        }
    };
    reset_on_close(&doomed_backend);
    doomed_backend.flush().unwrap();
    drop(doomed_backend);
    let _ = read_to_end(&mut doomed); // closed by the relay
    assert_eq!(sides_and_reasons(&rx), ["Backend reset", "Client local"]);
    // The other relay still works both ways.
    bystander_backend.write_all(b"still here").unwrap();
    let mut buf = [0u8; 10];
    bystander.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"STILL HERE");

    // The client leaves with a reset: its backend is closed.
    reset_on_close(&bystander);
    drop(bystander);
    assert_eq!(read_to_end(&mut bystander_backend), b"");
    assert_eq!(sides_and_reasons(&rx), ["Backend local", "Client reset"]);
    proxy.stop();
}

/// No backend listening: the handler hears of it, and the client is closed.
#[test]
fn a_backend_that_refuses_closes_its_client() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (proxy, rx) = relay_to(format!("tcp://127.0.0.1:{port}"));
    let mut client = tcp_client(proxy.tcp_addr(0));
    let _ = client.write_all(b"anyone there?");
    assert_eq!(read_to_end(&mut client), b"");
    let error = rx.recv_timeout(PATIENCE).unwrap();
    assert!(error.starts_with("dial error for "), "{error}");
    assert!(error.to_lowercase().contains("refused"), "{error}");
    let closed = rx.recv_timeout(PATIENCE).unwrap();
    assert!(closed.starts_with("Client relayed"), "{closed}");
    proxy.stop();
}
