//! A TLS 1.3 handshake's last flight (the session tickets the server sends
//! once the client's `Finished` arrives) and the handler's reply to
//! application data that came with that `Finished` leave in one write on
//! epoll and one send on io_uring: the client reads both at once. (On
//! io_uring, one send in flight per connection made the reply wait for the
//! tickets' completion, a turn of its own, and a timer wake-up when nothing
//! else came; on epoll they were two system calls, since rustls hands the
//! tickets out before the reply is sealed: a write run now holds them for
//! one gathered write with its own records, `tls/records.rs`.)

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use common::certs::TestPki;
use common::*;
use ringloop::Action;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

/// The TLS records whole in `bytes` (type, length), in order.
fn records(bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 5 <= bytes.len() {
        let len = u16::from_be_bytes([bytes[at + 3], bytes[at + 4]]) as usize;
        if at + 5 + len > bytes.len() {
            break;
        }
        out.push((bytes[at], len));
        at += 5 + len;
    }
    out
}

#[test]
fn on_io_uring_the_tickets_and_the_first_reply_leave_in_one_send() {
    opening(ringloop::Backend::IoUring, |round, first, rest| {
        assert!(
            first.len() >= 2 && rest.is_empty(),
            "round {round}: the first read had {first:?}, then {rest:?}: tickets and the reply in one send"
        );
    });
}

#[test]
fn on_epoll_the_tickets_and_the_first_reply_leave_in_one_write() {
    opening(ringloop::Backend::Epoll, |round, first, rest| {
        assert!(
            first.len() >= 2 && rest.is_empty(),
            "round {round}: the first read had {first:?}, then {rest:?}: tickets and the reply in one write"
        );
    });
}

#[test]
fn the_tickets_leave_when_the_handler_does_not_reply() {
    for backend in [ringloop::Backend::IoUring, ringloop::Backend::Epoll] {
        let pki = TestPki::new();
        let running = server(&pki, backend, |conn| {
            conn.read_all();
            Action::None
        });
        let (mut sock, _tls) = finished_with_data(&running, &pki);
        let mut buf = vec![0u8; 64 * 1024];
        let n = sock.read(&mut buf).expect("the tickets, without a reply");
        assert!(
            !records(&buf[..n]).is_empty(),
            "{backend:?}: no whole record"
        );
        running.stop();
    }
}

/// A one-loop `tls://` server on `backend` whose `on_traffic` is `traffic`.
fn server(
    pki: &TestPki,
    backend: ringloop::Backend,
    traffic: impl Fn(&mut ringloop::Conn<'_, ()>) -> Action + Send + Sync + 'static,
) -> Running {
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(traffic)
            .builder()
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .backend(backend)
            .tls_server(pki.server_tls().build().unwrap()),
    );
    assert_eq!(running.engine.backend(), backend);
    running
}

/// Connects, completes the handshake, and sends the client's `Finished`
/// and "ping" in one write, so they reach the server in one receive.
fn finished_with_data(running: &Running, pki: &TestPki) -> (TcpStream, ClientConnection) {
    let mut sock = TcpStream::connect(running.tcp_addr(0)).unwrap();
    sock.set_nodelay(true).unwrap();
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut tls = ClientConnection::new(
        Arc::new(pki.client_config()),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    // ClientHello, then the server's flight until the client is done.
    while tls.wants_write() {
        tls.write_tls(&mut sock).unwrap();
    }
    while tls.is_handshaking() {
        tls.read_tls(&mut sock).unwrap();
        tls.process_new_packets().unwrap();
    }
    tls.writer().write_all(b"ping").unwrap();
    let mut flight = Vec::new();
    while tls.wants_write() {
        tls.write_tls(&mut flight).unwrap();
    }
    sock.write_all(&flight).unwrap();
    (sock, tls)
}

/// Five handshakes against an echo on `backend`; `check` sees the records
/// of the client's first read after its `Finished` and of the reads until
/// the reply.
fn opening(backend: ringloop::Backend, check: impl Fn(usize, &[(u8, usize)], &[(u8, usize)])) {
    let pki = TestPki::new();
    let running = server(&pki, backend, |conn| {
        let data = conn.read_all();
        let _ = conn.write(data);
        Action::None
    });
    for round in 0..5 {
        let (mut sock, mut tls) = finished_with_data(&running, &pki);
        let mut buf = vec![0u8; 64 * 1024];
        let mut first = None;
        let mut rest = Vec::new();
        let mut reply = Vec::new();
        while reply.len() < 4 {
            let n = sock.read(&mut buf).unwrap();
            assert!(n > 0, "round {round}: closed before the reply");
            match first {
                None => first = Some(records(&buf[..n])),
                Some(_) => rest.extend(records(&buf[..n])),
            }
            tls.read_tls(&mut &buf[..n]).unwrap();
            tls.process_new_packets().unwrap();
            let mut chunk = [0u8; 16];
            match tls.reader().read(&mut chunk) {
                Ok(k) => reply.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(reply, b"ping");
        check(round, first.as_deref().unwrap_or_default(), &rest);
    }
    running.stop();
}
