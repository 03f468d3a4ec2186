//! A `tls://` server whose handshake fails while part of its flight is
//! still unwritten (a certificate chain larger than the sockets hold, a
//! client that reads nothing until its bad record is sent) owes the peer
//! its fatal alert after the rest of that flight, on the driver
//! `RINGLOOP_BACKEND` picks: on io_uring the flight waits in a ring send,
//! on epoll in the connection's queue, and the failed handshake's close
//! waits for both (bounded by the drain timeout) instead of dropping them
//! with the alert. The client is rustls: it reads the whole flight,
//! verifies the chain, and must hear `bad_record_mac`.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use common::certs::{Ca, TestPki};
use common::*;
use crossbeam_channel::{unbounded, Receiver, Sender};
use ringloop::{Action, CloseReason, Conn, Engine, EventHandler, LoopContext, SockAddr};
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConnection};

/// Reports every failed handshake and close.
#[derive(Clone)]
struct Report(Sender<String>);

fn describe(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Tls(e) => format!("tls: {e:?}"),
        other => reason_kind(other).to_string(),
    }
}

impl EventHandler for Report {
    type State = ();
    fn on_close(&mut self, _conn: &mut Conn<'_, ()>, reason: &CloseReason) -> Action {
        let _ = self.0.send(format!("close {}", describe(reason)));
        Action::None
    }
    fn on_handshake_error(
        &mut self,
        _ctx: &mut LoopContext,
        _peer: &SockAddr,
        reason: &CloseReason,
    ) -> Action {
        let _ = self.0.send(format!("handshake {}", describe(reason)));
        Action::None
    }
}

/// A TCP connection to `addr` whose receive buffer is the kernel's least
/// (set before the connect, so the window it offers stays small).
fn small_window_client(addr: SocketAddr) -> TcpStream {
    use nix::sys::socket::{
        connect, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let SocketAddr::V4(v4) = addr else {
        panic!("an IPv4 listener");
    };
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::empty(),
        None,
    )
    .expect("socket");
    setsockopt(&fd, sockopt::RcvBuf, &2048).expect("SO_RCVBUF");
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4)).expect("connect");
    let sock = TcpStream::from(fd);
    sock.set_read_timeout(Some(PATIENCE)).unwrap();
    sock.set_write_timeout(Some(PATIENCE)).unwrap();
    sock
}

/// The server's certificate, then `padding` copies of an unrelated CA's
/// (never needed to verify it: the chain only grows).
fn long_chain(pki: &TestPki, padding: usize) -> String {
    let unrelated = Ca::new("padding CA, never a trust anchor").pem();
    let mut chain = pki.server.cert_pem.clone();
    for _ in 0..padding {
        chain.push_str(&unrelated);
    }
    chain
}

/// A one-loop `tls://` server with a ~45 KB certificate chain (under
/// rustls's 64 KiB handshake message limit, far above the ~10 KB the two
/// sockets hold) and small socket buffers; its reports go to the receiver.
fn server(pki: &TestPki, drain: Duration, handshake: Duration) -> (Running, Receiver<String>) {
    let (tx, reports) = unbounded();
    let handler = Report(tx);
    let chain = long_chain(pki, 100);
    let tls = ringloop::tls::ServerTls::from_pem(chain.as_bytes(), pki.server.key_pem.as_bytes())
        .unwrap()
        .build()
        .unwrap();
    let running = Running::start(
        Engine::builder(move |_| handler.clone())
            .listen("tls://127.0.0.1:0")
            .loops(1)
            .send_buffer_size(4096)
            .drain_timeout(drain)
            .tls_handshake_timeout(handshake)
            .tls_server(tls),
    );
    (running, reports)
}

/// Sends a rustls ClientHello, lets the server's flight fill both sockets
/// and wait (in a ring send, or in the queue), then a record that cannot
/// be the client's Finished: application data under no key the server
/// has. Reads nothing.
fn hello_then_a_bogus_record(running: &Running, pki: &TestPki) -> (ClientConnection, TcpStream) {
    let mut sock = small_window_client(running.tcp_addr(0));
    let mut client = ClientConnection::new(
        Arc::new(pki.client_config()),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    while client.wants_write() {
        client.write_tls(&mut sock).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut bogus = vec![23, 3, 3, 0, 40];
    bogus.extend(payload(5, 40));
    sock.write_all(&bogus).unwrap();
    (client, sock)
}

/// The client reads the whole flight, verifies the chain, and then hears
/// the alert owed: bad_record_mac. Before, both drivers dropped the
/// flight's rest and the alert (the client read ~15 KB, then the end of
/// stream).
#[test]
fn a_failed_handshake_sends_its_alert_after_a_flight_the_sockets_did_not_take() {
    let pki = TestPki::new();
    let (running, reports) = server(&pki, Duration::from_secs(20), Duration::from_secs(20));
    let (mut client, mut sock) = hello_then_a_bogus_record(&running, &pki);
    // Everything the server sent: its whole flight, then the alert (the
    // failed handshake is reported once they are out).
    let mut read = 0;
    let heard = loop {
        match client.read_tls(&mut sock) {
            Ok(0) => break None,
            Ok(n) => {
                read += n;
                if let Err(e) = client.process_new_packets() {
                    break Some(e);
                }
            }
            Err(e) => panic!("client read after {read} bytes: {e}"),
        }
    };
    assert!(read > 40_000, "the flight was {read} bytes, not all of it");
    assert_eq!(
        heard,
        Some(rustls::Error::AlertReceived(AlertDescription::BadRecordMac)),
        "after {read} bytes of the server's"
    );
    assert_eq!(
        reports.recv_timeout(PATIENCE).expect("the handshake's end"),
        "handshake tls: DecryptError"
    );
    assert!(reports.try_recv().is_err(), "one report only");
    running.stop();
}

/// The wait is bounded: with a client that never reads, the failed
/// handshake ends at the drain timeout, or at the handshake timeout if
/// that comes first (here the other is a minute away, beyond the test's
/// patience), reported as the handshake's failure with its TLS error
/// (never as a close: it never opened).
#[test]
fn a_failed_handshake_whose_flight_is_never_read_still_ends() {
    // The handshake timeout runs from the accept: long enough for the
    // bogus record (sent 200 ms in) to come first.
    let (short, long) = (Duration::from_millis(300), Duration::from_secs(60));
    for (drain, handshake) in [(short, long), (long, Duration::from_secs(2))] {
        let at = format!("drain timeout {drain:?}, handshake timeout {handshake:?}");
        let pki = TestPki::new();
        let (running, reports) = server(&pki, drain, handshake);
        let (_client, _sock) = hello_then_a_bogus_record(&running, &pki);
        assert_eq!(
            reports.recv_timeout(PATIENCE).expect("the handshake's end"),
            "handshake tls: DecryptError",
            "{at}"
        );
        wait_until("the connection gone", || {
            running.engine.connection_count() == 0
        });
        assert!(reports.try_recv().is_err(), "{at}: one report only");
        running.stop();
    }
}
