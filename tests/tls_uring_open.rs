//! On io_uring, a TLS 1.3 handshake's last flight (the session tickets the
//! server sends once the client's `Finished` arrives) and the handler's
//! reply to application data that came with that `Finished` leave in one
//! send: the client reads both at once. (One send in flight per
//! connection made the reply wait for the tickets' completion, a turn of
//! its own, and a timer wake-up when nothing else came.)

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
fn the_tickets_and_the_first_reply_leave_in_one_send() {
    let pki = TestPki::new();
    let running = Running::start(
        Hooks::<()>::new()
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
    for round in 0..5 {
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
        // The client's Finished and the first message in one write, so
        // they reach the server in one receive.
        tls.writer().write_all(b"ping").unwrap();
        let mut flight = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut flight).unwrap();
        }
        sock.write_all(&flight).unwrap();
        // The first read has the tickets and the reply.
        let mut buf = vec![0u8; 64 * 1024];
        let n = sock.read(&mut buf).unwrap();
        let got = records(&buf[..n]);
        assert!(
            got.len() >= 2,
            "round {round}: the first read had {got:?}: tickets and the reply in one send"
        );
        tls.read_tls(&mut &buf[..n]).unwrap();
        tls.process_new_packets().unwrap();
        let mut reply = [0u8; 4];
        tls.reader()
            .read_exact(&mut reply)
            .unwrap_or_else(|e| panic!("round {round}: no reply in the first read ({got:?}): {e}"));
        assert_eq!(&reply, b"ping");
    }
    running.stop();
}
