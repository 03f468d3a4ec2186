//! The API a new user asked for (issue 13), over real sockets: addresses as
//! `SocketAddr`, initial state for `EngineHandle::dial` / `enroll`, state without
//! the `Option` dance and together with I/O, `CloseReason::kind`, an
//! infallible `EngineHandle::stop`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use common::*;
use crossbeam_channel::{unbounded, Sender};
use ringloop::{
    Action, CloseKind, CloseReason, Conn, Engine, Error, EventHandler, ListenAddr, TimeoutKind,
};

/// Echoes, and reports each connection's initial state and close kind.
struct Report {
    opened: Sender<Option<String>>,
    closed: Sender<CloseKind>,
}

impl EventHandler for Report {
    type State = String;

    fn on_open(&mut self, conn: &mut Conn<'_, String>) -> Action {
        let _ = self.opened.send(conn.state().cloned());
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, String>) -> Action {
        echo_now(conn)
    }

    fn on_close(&mut self, _conn: &mut Conn<'_, String>, reason: &CloseReason) -> Action {
        let _ = self.closed.send(reason.kind());
        Action::None
    }
}

fn report_server(
    listen: impl ringloop::ToAddr,
) -> (
    Running,
    crossbeam_channel::Receiver<Option<String>>,
    crossbeam_channel::Receiver<CloseKind>,
) {
    let (opened_tx, opened) = unbounded();
    let (closed_tx, closed) = unbounded();
    let running = Running::start(
        Engine::builder(move |_| Report {
            opened: opened_tx.clone(),
            closed: closed_tx.clone(),
        })
        .listen(listen)
        .loops(2),
    );
    (running, opened, closed)
}

/// `listen` and `dial` take a `std::net::SocketAddr` as well as a URL (and a
/// parsed `ListenAddr`); a string still needs its scheme.
#[test]
fn listen_and_dial_take_socket_addrs() {
    let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (server, opened, _closed) = report_server(any_port);
    let addr = server.tcp_addr(0);
    assert_eq!(
        server.engine.local_addrs()[0],
        ListenAddr::parse(&format!("tcp://{addr}")).unwrap()
    );
    // A plain client reaches it…
    let mut client = tcp_client(addr);
    echo_round_trip(&mut client, b"by SocketAddr");
    assert_eq!(opened.recv_timeout(PATIENCE).unwrap(), None);
    // …and so do the engine's own dials, by SocketAddr and by ListenAddr.
    let by_socket_addr = server.engine.dial(addr).wait().unwrap();
    assert_eq!(by_socket_addr.write(b"x".to_vec()).wait().unwrap(), 1);
    let parsed = server.engine.local_addrs()[0].clone();
    let by_listen_addr = server.engine.dial(&parsed).wait().unwrap();
    assert_eq!(by_listen_addr.write(b"y".to_vec()).wait().unwrap(), 1);
    // A string without a scheme is refused with a typed error.
    assert!(matches!(
        server.engine.dial(addr.to_string()).wait(),
        Err(Error::InvalidAddress { .. })
    ));
    server.stop();
}

/// `dial_with` and `enroll_with` hand `on_open` its state; an accepted
/// connection starts without; a state of the wrong type fails the call, not
/// the loop.
#[test]
fn dial_with_and_enroll_with_give_on_open_its_state() {
    let (server, opened, _closed) = report_server("tcp://127.0.0.1:0");
    let peer = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap();

    let dialled = server
        .engine
        .dial_with(peer_addr, "dialled".to_string())
        .wait()
        .unwrap();
    assert_eq!(
        opened.recv_timeout(PATIENCE).unwrap().as_deref(),
        Some("dialled")
    );
    let (mut far_end, _) = peer.accept().unwrap();
    assert_eq!(dialled.write(b"hi".to_vec()).wait().unwrap(), 2);
    let mut hi = [0; 2];
    far_end.read_exact(&mut hi).unwrap();
    assert_eq!(&hi, b"hi");

    let stream = TcpStream::connect(peer_addr).unwrap();
    let _accepted = peer.accept().unwrap();
    server
        .engine
        .enroll_with(stream, "enrolled".to_string())
        .wait()
        .unwrap();
    assert_eq!(
        opened.recv_timeout(PATIENCE).unwrap().as_deref(),
        Some("enrolled")
    );

    let _plain = tcp_client(server.tcp_addr(0));
    assert_eq!(opened.recv_timeout(PATIENCE).unwrap(), None);

    let wrong = server.engine.dial_with(peer_addr, 42u32).wait();
    assert!(matches!(wrong, Err(Error::InvalidConfig(_))), "{wrong:?}");
    let stream = TcpStream::connect(peer_addr).unwrap();
    let wrong = server.engine.enroll_with(stream, 42u32).wait();
    assert!(matches!(wrong, Err(Error::InvalidConfig(_))), "{wrong:?}");
    // Neither reached a handler.
    assert!(opened.try_recv().is_err());
    server.stop();
}

/// Numbers the bytes each connection sent, using `with_state` (state and
/// writes in one callback) and `state_or_default` (no `Option` to unwrap).
struct Tally(Sender<u64>);

impl EventHandler for Tally {
    type State = u64;

    fn on_traffic(&mut self, conn: &mut Conn<'_, u64>) -> Action {
        conn.with_state(|total, conn| {
            let data = conn.read_all();
            *total += data.len() as u64;
            match conn.write(format!("{total}\n").as_bytes()) {
                Ok(_) => Action::None,
                Err(_) => Action::Close,
            }
        })
    }

    fn on_close(&mut self, conn: &mut Conn<'_, u64>, _reason: &CloseReason) -> Action {
        let _ = self.0.send(*conn.state_or_default());
        Action::None
    }
}

#[test]
fn state_without_the_option_dance_and_together_with_io() {
    let (tx, totals) = unbounded();
    let server = Running::start(
        Engine::builder(move |_| Tally(tx.clone()))
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let mut client = tcp_client(server.tcp_addr(0));
    let mut line = |send: &[u8], expect: &str| {
        client.write_all(send).unwrap();
        let mut got = vec![0; expect.len()];
        client.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8(got).unwrap(), expect);
    };
    line(b"ab", "2\n");
    line(b"cde", "5\n");
    drop(client);
    assert_eq!(totals.recv_timeout(PATIENCE).unwrap(), 5);
    // A connection that never sent a byte closes with the default state.
    drop(tcp_client(server.tcp_addr(0)));
    assert_eq!(totals.recv_timeout(PATIENCE).unwrap(), 0);
    server.stop();
}

/// `CloseReason::kind()` is `Copy + Eq`: the test compares kinds sent from
/// the loop, for a peer's close, a request from a handle, and a stop —
/// which returns `()`, there being nothing it could fail at.
#[test]
fn close_kinds_compare_and_stop_cannot_fail() {
    let (server, _opened, closed) = report_server("tcp://127.0.0.1:0");
    drop(tcp_client(server.tcp_addr(0)));
    assert_eq!(closed.recv_timeout(PATIENCE).unwrap(), CloseKind::Eof);

    let handle = server.engine.dial(server.tcp_addr(0)).wait().unwrap();
    handle.close().unwrap();
    let mut kinds = vec![
        closed.recv_timeout(PATIENCE).unwrap(),
        closed.recv_timeout(PATIENCE).unwrap(),
    ];
    kinds.sort_by_key(|k| k.to_string());
    // The dialled side was closed by request; its accepted peer saw EOF.
    assert_eq!(kinds, [CloseKind::Eof, CloseKind::Requested]);

    let mut open = tcp_client(server.tcp_addr(0));
    echo_round_trip(&mut open, b"open"); // served, so open
    let engine = server.engine.clone();
    let () = engine.stop();
    assert_eq!(closed.recv_timeout(PATIENCE).unwrap(), CloseKind::Shutdown);
    assert_ne!(
        CloseKind::Timeout(TimeoutKind::Idle),
        CloseKind::Timeout(TimeoutKind::Read)
    );
    server.join();
}

/// The builder is the one way to configure an engine: every setter, at the
/// value its documentation suggests, builds an engine that serves (the
/// checks of out-of-range values are in modes.rs).
#[test]
fn every_builder_setter_builds_an_engine_that_serves() {
    use ringloop::{
        BackPressure, Doorbell, KeepAlive, LoadBalancer, PoolShutdown, Timeouts, WaterMarks,
    };
    use std::time::Duration;
    let server = Running::start(
        Hooks::<()>::new()
            .on_traffic(echo_now)
            .builder()
            .listen("tcp://127.0.0.1:0")
            .listen(SocketAddr::from(([127, 0, 0, 1], 0)))
            .loops(2)
            .read_buffer_size(16 * 1024)
            .write_buffer_cap(16 * 1024)
            .tcp_nodelay(false)
            .tcp_keepalive(Some(KeepAlive::new(Duration::from_secs(60))))
            .recv_buffer_size(256 * 1024)
            .send_buffer_size(256 * 1024)
            .reuse_addr(true)
            .edge_triggered_chunk(256 * 1024)
            .listen_backlog(4096)
            .load_balancer(LoadBalancer::LeastConnections)
            .mailbox_capacity(4096)
            .doorbell(Doorbell::Pipe)
            .timeouts(Timeouts::none().idle(Duration::from_secs(300)))
            .write_water_marks(WaterMarks::new(256 * 1024, 64 * 1024))
            .back_pressure(BackPressure::Close)
            .max_inbound(1 << 20)
            .connect_timeout(Duration::from_secs(2))
            .drain_timeout(Duration::from_millis(500))
            .workers(8)
            .job_queue_capacity(100)
            .pool_shutdown(PoolShutdown::Cancel)
            .pool_shutdown_timeout(Duration::from_secs(5))
            .lingering_close(Some(Duration::from_secs(1)))
            .buffer_budget(64 << 20)
            .ticker(true)
            .tls_handshake_timeout(Duration::from_secs(3)),
    );
    assert_eq!(server.engine.loop_count(), 2);
    assert_eq!(server.engine.local_addrs().len(), 2);
    for i in 0..2 {
        echo_round_trip(&mut tcp_client(server.tcp_addr(i)), b"configured");
    }
    server.stop();
    // Reuse-port and level/edge switches build too.
    for (reuse_port, edge) in [(true, false), (false, true)] {
        let server = Running::start(
            Hooks::<()>::new()
                .on_traffic(echo_now)
                .builder()
                .listen("tcp://127.0.0.1:0")
                .loops(2)
                .reuse_port(reuse_port)
                .edge_triggered(edge),
        );
        echo_round_trip(&mut tcp_client(server.tcp_addr(0)), b"configured");
        server.stop();
    }
}
