//! Issue 5 beyond the echo matrix: several addresses on one engine, the
//! ticker, two SO_REUSEPORT engines sharing a port, UDP specifics (send_to,
//! datagram handles, no open/close), the load balancers, typed errors for bad
//! addresses and options, IPv6, socket options, and closing after a large
//! write.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use crossbeam_channel::unbounded;
use ringloop::{
    Action, Conn, Datagram, DatagramHandle, Engine, EngineBuilder, Error, EventHandler, KeepAlive,
    LoadBalancer, LoopContext, SockAddr, Transport, MAX_LOOPS,
};

/// Replies to every input with `tag` followed by the input.
/// (`tag` sees the listener's index, if any, and the peer's address.)
fn tagged_echo(tag: impl Fn(Option<usize>, &SockAddr) -> u8 + Send + Sync + 'static) -> Hooks<()> {
    let tag = Arc::new(tag);
    let on_datagram = tag.clone();
    Hooks::<()>::new()
        .on_traffic(move |conn| {
            let mut reply = vec![tag(conn.listener_index(), conn.peer_addr())];
            reply.extend_from_slice(conn.read_all());
            let _ = conn.write(&reply);
            Action::None
        })
        .on_datagram(move |dgram| {
            let mut reply = vec![on_datagram(Some(dgram.listener_index()), dgram.peer_addr())];
            reply.extend_from_slice(dgram.payload());
            let _ = dgram.reply(&reply);
            Action::None
        })
}

fn tagged_round_trip<S: Read + Write>(s: &mut S, data: &[u8]) -> u8 {
    s.write_all(data).unwrap();
    let mut back = vec![0u8; data.len() + 1];
    s.read_exact(&mut back).unwrap();
    assert!(
        back[1..] == *data,
        "tagged echo of {} bytes differs",
        data.len()
    );
    back[0]
}

// ----- several addresses -----

#[test]
fn one_engine_serves_several_addresses_and_tells_them_apart() {
    let dir = TempDir::new("multi-addr");
    let server = Running::start(
        tagged_echo(|listener, _| listener.map_or(u8::MAX, |i| i as u8))
            .builder()
            .listen("tcp://127.0.0.1:0")
            .listen("udp://127.0.0.1:0")
            .listen(format!("unix://{}", dir.join("a.sock").display()))
            .listen("tcp://127.0.0.1:0")
            .listen("udp://127.0.0.1:0")
            .listen(format!("unix://{}", dir.join("b.sock").display()))
            .loops(2),
    );
    let addrs = server.engine.local_addrs().to_vec();
    let kinds: Vec<Transport> = addrs.iter().map(|a| a.transport()).collect();
    use Transport::{Tcp, Udp, Unix};
    assert_eq!(kinds, [Tcp, Udp, Unix, Tcp, Udp, Unix]);
    assert_ne!(server.tcp_addr(0), server.tcp_addr(3));
    assert_ne!(server.udp_addr(1), server.udp_addr(4));
    for round in 0..3 {
        for (i, kind) in kinds.iter().enumerate() {
            let data = format!("round {round} to listener {i}").into_bytes();
            let tag = match kind {
                Tcp => tagged_round_trip(&mut tcp_client(server.tcp_addr(i)), &data),
                Unix => tagged_round_trip(&mut unix_client(&server.unix_path(i)), &data),
                _ => {
                    let s = udp_client();
                    s.send_to(&data, server.udp_addr(i)).unwrap();
                    let mut buf = [0u8; 256];
                    let (n, from) = s.recv_from(&mut buf).unwrap();
                    assert_eq!(from, server.udp_addr(i));
                    assert_eq!(&buf[1..n], &data[..]);
                    buf[0]
                }
            };
            assert_eq!(usize::from(tag), i, "listener_index of a {kind} client");
        }
    }
    wait_until("closed", || server.engine.connection_count() == 0);
    server.stop();
    assert!(!dir.join("a.sock").exists() && !dir.join("b.sock").exists());
}

// ----- ticker -----

struct Ticker {
    ticks: Arc<Mutex<Vec<usize>>>,
}

impl EventHandler for Ticker {
    type State = ();

    fn on_tick(&mut self, ctx: &mut LoopContext) -> (Duration, Action) {
        let mut ticks = self.ticks.lock().unwrap();
        ticks.push(ctx.loop_index());
        let action = if ticks.len() == 25 {
            Action::Shutdown
        } else {
            Action::None
        };
        (Duration::from_millis(10), action)
    }
}

#[test]
fn the_ticker_runs_on_loop_zero_until_a_tick_shuts_the_engine_down() {
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let t = ticks.clone();
    let server = Running::start(
        Engine::builder(move |_| Ticker { ticks: t.clone() })
            .listen("tcp://127.0.0.1:0")
            .loops(3)
            .ticker(true),
    );
    // The engine stops by itself.
    let engine = server.engine.clone();
    server.join_within_patience();
    assert!(engine.is_stopping());
    let ticks = ticks.lock().unwrap();
    // The loops keep serving (and ticking) until every actor has stopped, so
    // a tick or two after the 25th is allowed; the 25th asked for the stop.
    eprintln!("{} ticks", ticks.len());
    assert!(ticks.len() >= 25, "{} ticks", ticks.len());
    assert!(ticks.iter().all(|&l| l == 0), "ticks on loops {ticks:?}");
}

#[test]
fn without_the_ticker_on_tick_never_runs() {
    let ticks = Arc::new(Mutex::new(Vec::new()));
    let t = ticks.clone();
    let server = Running::start(
        Engine::builder(move |_| Ticker { ticks: t.clone() })
            .listen("tcp://127.0.0.1:0")
            .loops(2),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    // Let both loops run a few turns.
    for _ in 0..5 {
        server.engine.execute_all(|_| {}).unwrap();
    }
    thread::sleep(Duration::from_millis(30));
    s.write_all(b"x").unwrap();
    server.stop();
    assert!(ticks.lock().unwrap().is_empty());
}

// ----- two engines on one port -----

/// Connects until every tag in `expect` has answered, at most `tries`
/// times; returns the tags seen.
fn tags_on(addr: SocketAddr, expect: &[u8], tries: usize) -> HashSet<u8> {
    let mut seen = HashSet::new();
    for i in 0..tries {
        let mut s = tcp_client(addr);
        seen.insert(tagged_round_trip(&mut s, format!("probe {i}").as_bytes()));
        if expect.iter().all(|t| seen.contains(t)) {
            break;
        }
    }
    seen
}

#[test]
fn two_reuseport_engines_share_a_port_and_stop_independently() {
    let start = |tag: u8, addr: String| {
        Running::start(
            tagged_echo(move |_, _| tag)
                .builder()
                .listen(addr)
                .loops(2)
                .reuse_port(true),
        )
    };
    let a = start(b'A', "tcp://127.0.0.1:0".into());
    let addr = a.tcp_addr(0);
    let b = start(b'B', format!("tcp://{addr}"));
    assert_eq!(b.tcp_addr(0), addr);
    assert_eq!(tags_on(addr, b"AB", 400), HashSet::from([b'A', b'B']));
    b.stop();
    assert_eq!(
        tags_on(addr, b"-", 40),
        HashSet::from([b'A']),
        "A alone now"
    );
    let c = start(b'C', format!("tcp://{addr}"));
    assert_eq!(tags_on(addr, b"AC", 400), HashSet::from([b'A', b'C']));
    a.stop();
    assert_eq!(
        tags_on(addr, b"-", 40),
        HashSet::from([b'C']),
        "C alone now"
    );
    c.stop();
    assert!(TcpStream::connect(addr).is_err(), "nobody listens any more");
}

// ----- UDP -----

/// gnet's TestUDPSendtoServer: every datagram is sent on, with `send_to`,
/// to every peer seen so far (including its sender).
#[test]
fn udp_send_to_reaches_every_known_peer_and_there_are_no_open_or_close_callbacks() {
    let peers: Arc<Mutex<Vec<SockAddr>>> = Arc::default();
    let (opens, closes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (p, o, c) = (peers.clone(), opens.clone(), closes.clone());
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |_| {
                o.fetch_add(1, Ordering::SeqCst);
                Action::None
            })
            .on_close(move |_, _| {
                c.fetch_add(1, Ordering::SeqCst);
                Action::None
            })
            .on_traffic(move |_| panic!("a datagram reached on_traffic"))
            .on_datagram(move |dgram| {
                let data = dgram.payload();
                let mut peers = p.lock().unwrap();
                if !peers.contains(dgram.peer_addr()) {
                    peers.push(dgram.peer_addr().clone());
                }
                for peer in peers.iter() {
                    dgram.send_to(data, peer).unwrap();
                }
                Action::None
            })
            .builder()
            .listen("udp://127.0.0.1:0")
            .loops(1),
    );
    let addr = server.udp_addr(0);
    let clients: Vec<_> = (0..3).map(|_| udp_client()).collect();
    let recv = |s: &std::net::UdpSocket| {
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).expect("a broadcast datagram");
        assert_eq!(from, addr);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    for (i, sender) in clients.iter().enumerate() {
        let msg = format!("from {i}");
        sender.send_to(msg.as_bytes(), addr).unwrap();
        for receiver in &clients[..=i] {
            assert_eq!(recv(receiver), msg);
        }
    }
    // A last broadcast: nothing (no duplicate) arrives before it.
    clients[0].send_to(b"end", addr).unwrap();
    for receiver in &clients {
        assert_eq!(recv(receiver), "end");
    }
    server.stop();
    assert_eq!(opens.load(Ordering::SeqCst), 0);
    assert_eq!(closes.load(Ordering::SeqCst), 0);
}

fn datagram_handle_server() -> (
    Running,
    crossbeam_channel::Receiver<(DatagramHandle, SockAddr)>,
) {
    let (tx, rx) = unbounded();
    let server = Running::start(
        Hooks::<()>::new()
            .on_datagram(move |dgram| {
                tx.send((dgram.handle(), dgram.peer_addr().clone()))
                    .unwrap();
                Action::None
            })
            .builder()
            .listen("udp://127.0.0.1:0")
            .loops(2),
    );
    (server, rx)
}

#[test]
fn a_datagram_handle_writes_to_its_peer_from_any_thread() {
    let (server, handles) = datagram_handle_server();
    let addr = server.udp_addr(0);
    let client = udp_client();
    client.send_to(b"hello", addr).unwrap();
    let (handle, peer) = handles.recv_timeout(PATIENCE).unwrap();
    // (A datagram handle is its own type: it cannot be woken or closed,
    // see the compile_fail examples on `DatagramHandle`.)
    assert_eq!(peer, SockAddr::Inet(client.local_addr().unwrap()));
    let recv = || {
        let mut buf = [0u8; 64];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!(from, addr);
        buf[..n].to_vec()
    };
    thread::scope(|t| {
        t.spawn(|| {
            let (tx, rx) = unbounded();
            handle
                .async_send_to(b"pushed".to_vec(), peer.clone(), move |r| {
                    tx.send(r).unwrap()
                })
                .unwrap();
            assert_eq!(rx.recv_timeout(PATIENCE).unwrap().unwrap(), 6);
        });
    });
    assert_eq!(recv(), b"pushed");
    assert_eq!(
        handle.send_to(b"x".to_vec(), peer.clone()).wait().unwrap(),
        1,
        "awaitable datagram write"
    );
    assert_eq!(recv(), b"x");
    let (tx, rx) = unbounded();
    // sendv forms one datagram.
    handle
        .async_sendv_to(
            vec![b"ab".to_vec(), b"cd".to_vec()],
            peer.clone(),
            move |r| tx.send(r).unwrap(),
        )
        .unwrap();
    assert_eq!(rx.recv_timeout(PATIENCE).unwrap().unwrap(), 4);
    assert_eq!(recv(), b"abcd");
    handle.try_send_to(b"tried".to_vec(), peer.clone()).unwrap();
    assert_eq!(recv(), b"tried");
    server.stop();
    assert!(matches!(
        handle.async_send_to(b"late".to_vec(), peer, |_| {}),
        Err(Error::EngineStopped)
    ));
}

/// The handle module promises that every callback runs exactly once: a
/// datagram handle's too, when the engine has stopped.
#[test]
fn a_datagram_handle_send_still_answers_its_callback_after_the_stop() {
    let (server, handles) = datagram_handle_server();
    let client = udp_client();
    client.send_to(b"hello", server.udp_addr(0)).unwrap();
    let (handle, peer) = handles.recv_timeout(PATIENCE).unwrap();
    server.stop();
    let (tx, rx) = unbounded();
    let r = handle.async_send_to(b"late".to_vec(), peer, move |r| {
        tx.send(format!("{r:?}")).unwrap()
    });
    assert!(matches!(r, Err(Error::EngineStopped)));
    let answer = rx.recv_timeout(PATIENCE);
    assert!(answer.is_ok(), "the async_send_to callback never ran");
    assert!(answer.unwrap().contains("EngineStopped"));
}

// ----- load balancers -----

/// Records which loop each connection (by client address) landed on.
fn placement_server(
    loops: usize,
    policy: LoadBalancer,
) -> (Running, Arc<Mutex<HashMap<SocketAddr, usize>>>) {
    let placed: Arc<Mutex<HashMap<SocketAddr, usize>>> = Arc::default();
    let p = placed.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                let peer = conn.peer_addr().as_inet().unwrap();
                p.lock().unwrap().insert(peer, conn.loop_index());
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(loops)
            .load_balancer(policy),
    );
    (server, placed)
}

/// Opens one connection and waits until its loop is known.
fn open_and_place(
    addr: SocketAddr,
    placed: &Mutex<HashMap<SocketAddr, usize>>,
) -> (TcpStream, usize) {
    let s = tcp_client(addr);
    let me = s.local_addr().unwrap();
    wait_until("the connection to open", || {
        placed.lock().unwrap().contains_key(&me)
    });
    let at = placed.lock().unwrap()[&me];
    (s, at)
}

#[test]
fn least_connections_picks_the_emptiest_loop() {
    const LOOPS: usize = 3;
    let (server, placed) = placement_server(LOOPS, LoadBalancer::LeastConnections);
    let addr = server.tcp_addr(0);
    let mut held: Vec<(TcpStream, usize)> = Vec::new();
    let mut load = [0usize; LOOPS];
    for _ in 0..6 {
        let (s, at) = open_and_place(addr, &placed);
        let least = *load.iter().min().unwrap();
        assert_eq!(load[at], least, "landed on loop {at} with load {load:?}");
        load[at] += 1;
        held.push((s, at));
    }
    assert_eq!(load, [2, 2, 2]);
    // Empty loop 1; the next two connections both go there.
    held.retain(|(_, at)| *at != 1);
    wait_until("loop 1 emptied", || server.engine.connection_count() == 4);
    for _ in 0..2 {
        let (s, at) = open_and_place(addr, &placed);
        assert_eq!(at, 1, "loop 1 is the emptiest");
        held.push((s, at));
    }
    server.stop();
}

#[test]
fn round_robin_cycles_through_the_loops() {
    const LOOPS: usize = 3;
    let (server, placed) = placement_server(LOOPS, LoadBalancer::RoundRobin);
    let addr = server.tcp_addr(0);
    let mut order = Vec::new();
    let mut held = Vec::new();
    for i in 0..7 {
        let (s, at) = open_and_place(addr, &placed);
        order.push(at);
        // Closing some on the way does not change the cycle.
        if i % 2 == 0 {
            held.push(s);
        }
    }
    let expected: Vec<usize> = (0..7).map(|i| i % LOOPS).collect();
    assert_eq!(order, expected);
    server.stop();
}

/// A TCP client connecting from `ip` (any 127.0.0.0/8 address is local).
fn tcp_client_from(ip: Ipv4Addr, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let SocketAddr::V4(to) = to else {
        panic!("an IPv4 server")
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(ip, 0))).expect("bind 127.0.0.x");
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connect");
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s
}

#[test]
fn source_address_hash_keeps_each_client_ip_on_one_loop() {
    const LOOPS: usize = 4;
    let (server, placed) = placement_server(LOOPS, LoadBalancer::SourceAddrHash);
    let addr = server.tcp_addr(0);
    let mut loop_of_ip: HashMap<Ipv4Addr, usize> = HashMap::new();
    let mut held = Vec::new();
    for round in 0..3 {
        for host in 1..=8u8 {
            let ip = Ipv4Addr::new(127, 0, 0, host);
            let s = tcp_client_from(ip, addr);
            let me = s.local_addr().unwrap();
            wait_until("the connection to open", || {
                placed.lock().unwrap().contains_key(&me)
            });
            let at = placed.lock().unwrap()[&me];
            let first = *loop_of_ip.entry(ip).or_insert(at);
            assert_eq!(at, first, "{ip} moved loops in round {round}");
            held.push(s);
        }
    }
    let used: HashSet<usize> = loop_of_ip.values().copied().collect();
    assert!(
        used.len() > 1,
        "8 addresses all hashed to one loop: {used:?}"
    );
    server.stop();
}

// ----- bad settings -----

fn build(b: EngineBuilder<Hooks<()>>) -> ringloop::Result<()> {
    b.build().map(drop)
}

fn quiet() -> EngineBuilder<Hooks<()>> {
    Hooks::<()>::new().builder()
}

#[test]
fn bad_addresses_are_refused_with_typed_errors() {
    let long_path = format!("unix:///tmp/{}", "x".repeat(120));
    let cases: Vec<(String, &str)> = vec![
        ("tulip://127.0.0.1:1".into(), "scheme"),
        ("http://127.0.0.1:80".into(), "scheme"),
        ("tcp://127.0.0.1".into(), "address"),
        ("udp://127.0.0.1".into(), "address"),
        ("tcp://127.0.0.1:70000".into(), "address"),
        ("tcp://127.0.0.1:http".into(), "address"),
        ("tcp://example.com:80".into(), "address"),
        ("tcp://[::1:80".into(), "address"),
        ("tcp4://[::1]:80".into(), "address"),
        ("unix://".into(), "address"),
        (long_path, "address"),
        ("127.0.0.1:9000".into(), "address"),
        ("".into(), "address"),
    ];
    for (addr, want) in cases {
        let r = build(quiet().listen(addr.clone()));
        let ok = match want {
            "scheme" => matches!(r, Err(Error::UnsupportedScheme { .. })),
            _ => matches!(r, Err(Error::InvalidAddress { .. })),
        };
        assert!(ok, "{addr:?}: expected a {want} error, got {r:?}");
        if let Err(e) = r {
            assert!(!e.to_string().is_empty());
        }
    }
    // No address at all is a client engine, not an error.
    assert!(build(quiet()).is_ok(), "no address at all");
}

#[test]
fn bad_options_are_refused_before_anything_is_bound() {
    type Tweak = fn(EngineBuilder<Hooks<()>>) -> EngineBuilder<Hooks<()>>;
    let tweaks: Vec<(&str, Tweak)> = vec![
        ("zero loops", |b| b.loops(0)),
        ("too many loops", |b| b.loops(MAX_LOOPS + 1)),
        ("absurd loops", |b| b.loops(1 << 40)),
        ("tiny edge-triggered chunk", |b| b.edge_triggered_chunk(100)),
        ("zero workers", |b| b.workers(0)),
        ("too many workers", |b| b.workers(1 << 20)),
        ("zero job queue", |b| b.job_queue_capacity(0)),
        ("zero mailbox", |b| b.mailbox_capacity(0)),
        ("huge mailbox", |b| b.mailbox_capacity(1 << 40)),
        ("zero read buffer", |b| b.read_buffer_size(0)),
        ("tiny write cap", |b| b.write_buffer_cap(10)),
        ("zero backlog", |b| b.listen_backlog(0)),
        ("zero receive buffer", |b| b.recv_buffer_size(0)),
        ("huge send buffer", |b| b.send_buffer_size(usize::MAX)),
        ("keepalive under a second", |b| {
            b.tcp_keepalive(Some(KeepAlive::new(Duration::from_millis(10))))
        }),
        ("keepalive count zero", |b| {
            b.tcp_keepalive(Some(KeepAlive::new(Duration::from_secs(10)).count(0)))
        }),
    ];
    // Checked with a Unix address: its socket file shows whether anything
    // was bound (a TCP port could be taken by another test's client).
    let dir = TempDir::new("bad-options");
    let sock = dir.join("s.sock");
    for (what, tweak) in tweaks {
        let r = build(tweak(quiet().listen(format!("unix://{}", sock.display()))));
        assert!(matches!(r, Err(Error::InvalidConfig(_))), "{what}: {r:?}");
        assert!(!sock.exists(), "{what}: a listener was bound");
    }
    // A bind that fails after an earlier one succeeded releases the earlier.
    let r = build(
        quiet()
            .listen(format!("unix://{}", sock.display()))
            .listen("tcp://127.0.0.1:0")
            .listen(format!("unix://{}", dir.join("missing/x.sock").display())),
    );
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert!(!sock.exists(), "the first listener was not released");
    // A port someone else listens on (without SO_REUSEPORT).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let r = build(quiet().listen(format!("tcp://{}", taken.local_addr().unwrap())));
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
}

/// `reuse_port` is documented as the mode in which two engines can share a
/// port; without it, a UDP port in use must be refused as a TCP one is.
#[test]
fn a_udp_port_in_use_is_refused_without_reuse_port() {
    let first = Running::start(quiet().listen("udp://127.0.0.1:0").loops(1));
    let addr = first.udp_addr(0);
    let r = build(quiet().listen(format!("udp://{addr}")).loops(1));
    first.stop();
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
}

// ----- IPv6 -----

#[test]
fn ipv6_loopback_echo() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        println!("skipped: ::1 is not available here");
        return;
    }
    let server = Running::start(
        tagged_echo(|_, peer| u8::from(peer.as_inet().is_some_and(|a| a.is_ipv6())))
            .builder()
            .listen("tcp://[::1]:0")
            .listen("tcp6://[::1]:0")
            .listen("udp://[::1]:0")
            .loops(2),
    );
    for i in 0..2 {
        let addr = server.tcp_addr(i);
        assert!(addr.is_ipv6(), "{addr}");
        let mut s = tcp_client(addr);
        // Small enough to arrive in one read (each read gets its own tag).
        assert_eq!(tagged_round_trip(&mut s, &payload(6, 1000)), 1);
    }
    let addr = server.udp_addr(2);
    let s = std::net::UdpSocket::bind("[::1]:0").unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    s.send_to(b"six", addr).unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = s.recv_from(&mut buf).unwrap();
    assert_eq!((from, &buf[..n]), (addr, &b"\x01six"[..]));
    server.stop();
}

// ----- socket options -----

/// Checks every socket option on a socket and reports what was wrong.
fn check_socket(socket: socket2::SockRef<'_>, tcp: bool, expect_nodelay: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut check = |what: &str, ok: bool| {
        if !ok {
            wrong.push(what.to_string());
        }
    };
    if tcp {
        check(
            "nodelay default",
            socket.tcp_nodelay().ok() == Some(expect_nodelay),
        );
        check("set nodelay off", socket.set_tcp_nodelay(false).is_ok());
        check("nodelay off", socket.tcp_nodelay().ok() == Some(false));
        check("set nodelay on", socket.set_tcp_nodelay(true).is_ok());
        check("nodelay on", socket.tcp_nodelay().ok() == Some(true));
        let ka = socket2::TcpKeepalive::new()
            .with_time(Duration::from_secs(60))
            .with_interval(Duration::from_secs(5));
        check("keepalive on", socket.set_tcp_keepalive(&ka).is_ok());
        check(
            "keepalive reads back",
            socket.keepalive().ok() == Some(true),
        );
        check("keepalive off", socket.set_keepalive(false).is_ok());
    } else {
        check("nodelay unsupported", socket.tcp_nodelay().is_err());
        check(
            "set nodelay unsupported",
            socket.set_tcp_nodelay(true).is_err(),
        );
        let ka = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
        check(
            "keepalive unsupported",
            socket.set_tcp_keepalive(&ka).is_err(),
        );
    }
    let size = 32 * 1024; // well below any rmem_max/wmem_max
    check("set rcvbuf", socket.set_recv_buffer_size(size).is_ok());
    check("rcvbuf", socket.recv_buffer_size().is_ok_and(|n| n >= size));
    check("set sndbuf", socket.set_send_buffer_size(size).is_ok());
    check("sndbuf", socket.send_buffer_size().is_ok_and(|n| n >= size));
    wrong
}

/// Checks every socket option on a stream connection. (A stream has no
/// `send_to`: that is a compile error now, see the `compile_fail` example
/// on `ringloop::Datagram`.)
fn check_options(conn: &mut Conn<'_, ()>, expect_nodelay: bool) -> Vec<String> {
    let tcp = conn.peer_addr().as_inet().is_some();
    let socket = conn
        .socket()
        .expect("a connection's socket during its callback");
    let mut wrong = check_socket(socket, tcp, expect_nodelay);
    if conn.local_addr().is_err() {
        wrong.push("local address".into());
    }
    if conn.flush().is_err() {
        wrong.push("flush".into());
    }
    wrong
}

/// Checks every socket option on a datagram's (shared) socket.
fn check_datagram_options(dgram: &Datagram<'_>) -> Vec<String> {
    let mut wrong = check_socket(dgram.socket(), false, false);
    if dgram.local_addr().is_err() {
        wrong.push("local address".into());
    }
    wrong
}

fn options_server(nodelay: bool) -> (Running, crossbeam_channel::Receiver<Vec<String>>, TempDir) {
    let dir = TempDir::new("sockopts");
    let (tx, rx) = unbounded();
    let tx2 = tx.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                let _ = conn.read_all();
                tx.send(check_options(conn, nodelay)).unwrap();
                let _ = conn.write(b"ok");
                Action::None
            })
            .on_datagram(move |dgram| {
                tx2.send(check_datagram_options(dgram)).unwrap();
                let _ = dgram.reply(b"ok");
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .listen(format!("unix://{}", dir.join("o.sock").display()))
            .listen("udp://127.0.0.1:0")
            .tcp_nodelay(nodelay)
            .tcp_keepalive(Some(KeepAlive::new(Duration::from_secs(30))))
            .loops(1),
    );
    (server, rx, dir)
}

#[test]
fn socket_options_on_tcp_unix_and_udp_connections() {
    for nodelay in [true, false] {
        let (server, reports, _dir) = options_server(nodelay);
        let mut ok = [0u8; 2];
        let mut t = tcp_client(server.tcp_addr(0));
        t.write_all(b"?").unwrap();
        t.read_exact(&mut ok).unwrap();
        assert_eq!(reports.recv().unwrap(), Vec::<String>::new(), "tcp");
        let mut u = unix_client(&server.unix_path(1));
        u.write_all(b"?").unwrap();
        u.read_exact(&mut ok).unwrap();
        assert_eq!(reports.recv().unwrap(), Vec::<String>::new(), "unix");
        let d = udp_client();
        d.send_to(b"?", server.udp_addr(2)).unwrap();
        d.recv_from(&mut ok).unwrap();
        assert_eq!(reports.recv().unwrap(), Vec::<String>::new(), "udp");
        server.stop();
    }
}

// ----- closing after a large write -----

/// `Action::Close` is documented to close "after flushing what was written
/// to it": a client must get every byte of a reply far larger than the
/// socket buffer, then EOF.
fn close_after_a_large_write(unix: bool, edge: bool) {
    const BIG: usize = 16 << 20;
    let dir = TempDir::new("close-flush");
    let mut b = Hooks::<()>::new()
        .on_traffic(|conn| {
            let _ = conn.read_all();
            let _ = conn.write(&payload(9, BIG));
            Action::Close
        })
        .builder()
        .listen("tcp://127.0.0.1:0")
        .listen(format!("unix://{}", dir.join("c.sock").display()))
        .loops(1);
    b = if edge {
        edge_triggered_on_epoll(b, None)
    } else {
        // Asked for: epoll's default is edge-triggered.
        b.edge_triggered(false)
    };
    let server = Running::start(b);
    let got = if unix {
        let mut s = unix_client(&server.unix_path(1));
        s.write_all(b"go").unwrap();
        read_to_end(&mut s)
    } else {
        let mut s = tcp_client(server.tcp_addr(0));
        s.write_all(b"go").unwrap();
        read_to_end(&mut s)
    };
    server.stop();
    assert_eq!(
        got.len(),
        BIG,
        "bytes lost by the close (unix {unix}, edge {edge})"
    );
    assert!(got == payload(9, BIG));
}

#[test]
fn closing_after_a_large_write_delivers_every_byte() {
    for (unix, edge) in [(false, false), (false, true), (true, false), (true, true)] {
        close_after_a_large_write(unix, edge);
    }
}
