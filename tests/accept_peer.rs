//! The peer address a handler sees is the one the kernel wrote when it
//! accepted the connection (`accept4` with an address buffer, no
//! `getpeername` afterwards on epoll; io_uring's multishot accept asks
//! `getpeername`): right for TCP over IPv4 and IPv6 and for Unix-domain
//! sockets (an unnamed client, and one bound to a path), whether a single
//! loop accepts inline or the acceptor thread accepts and hands over.
//! Runs on the driver `RINGLOOP_BACKEND` names.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;

use common::*;
use ringloop::{Action, EngineBuilder, SockAddr};

/// An engine that sends the peer address of each connection it opens, and
/// answers one byte so the client knows it was seen.
fn recording(addr: &str, acceptor: bool) -> (EngineBuilder<Hooks<()>>, mpsc::Receiver<SockAddr>) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let builder = Hooks::<()>::new()
        .on_open(move |conn| {
            let _ = tx.lock().unwrap().send(conn.peer_addr().clone());
            Action::None
        })
        .on_traffic(echo_now)
        .builder()
        .listen(addr);
    let builder = if acceptor {
        builder.loops(2).acceptor_thread(true)
    } else {
        builder.loops(1)
    };
    (builder, rx)
}

fn seen(rx: &mpsc::Receiver<SockAddr>) -> SockAddr {
    rx.recv_timeout(PATIENCE)
        .expect("the handler saw the connection open")
}

fn round_trip<S: Read + Write>(s: &mut S) {
    echo_round_trip(s, b"peer?");
}

fn tcp_peers(listen: &str) {
    for acceptor in [false, true] {
        let (builder, rx) = recording(listen, acceptor);
        let server = Running::start(builder);
        let addr = server.tcp_addr(0);
        let mut clients: Vec<TcpStream> = (0..3).map(|_| tcp_client(addr)).collect();
        for c in &mut clients {
            round_trip(c);
        }
        let mut want: Vec<SocketAddr> = clients.iter().map(|c| c.local_addr().unwrap()).collect();
        let mut got: Vec<SocketAddr> = (0..clients.len())
            .map(|_| match seen(&rx) {
                SockAddr::Inet(sa) => sa,
                other => panic!("a TCP peer seen as {other}"),
            })
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "acceptor thread: {acceptor}");
        drop(clients);
        server.stop();
    }
}

#[test]
fn a_tcp_v4_peer_is_the_clients_address() {
    tcp_peers("tcp://127.0.0.1:0");
}

#[test]
fn a_tcp_v6_peer_is_the_clients_address() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("skipping: no IPv6 loopback here");
        return;
    }
    tcp_peers("tcp://[::1]:0");
}

#[test]
fn a_unix_peer_is_unnamed_or_the_path_it_bound() {
    let dir = TempDir::new("accept-peer");
    for acceptor in [false, true] {
        let path = dir.join(if acceptor { "a.sock" } else { "i.sock" });
        let (builder, rx) = recording(&format!("unix://{}", path.display()), acceptor);
        let server = Running::start(builder);
        let path = server.unix_path(0);

        let mut unnamed = unix_client(&path);
        round_trip(&mut unnamed);
        assert_eq!(
            seen(&rx),
            SockAddr::Unix(None),
            "acceptor thread: {acceptor}"
        );

        // A client bound to a path of its own is seen by that path.
        let own = dir.join(if acceptor {
            "a-client.sock"
        } else {
            "i-client.sock"
        });
        let mut named = bound_unix_client(&own, &path);
        round_trip(&mut named);
        assert_eq!(
            seen(&rx),
            SockAddr::Unix(Some(own)),
            "acceptor thread: {acceptor}"
        );
        drop((unnamed, named));
        server.stop();
    }
}

/// A Unix stream client bound to `own` before it connects to `to`.
fn bound_unix_client(own: &std::path::Path, to: &std::path::Path) -> UnixStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    sock.bind(&socket2::SockAddr::unix(own).unwrap()).unwrap();
    sock.connect(&socket2::SockAddr::unix(to).unwrap()).unwrap();
    let stream = UnixStream::from(std::os::fd::OwnedFd::from(sock));
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}
