//! Connection limits over real sockets: the engine-wide cap (connections
//! wait in the backlog and are served once a place frees up; none dropped),
//! the per-source cap (refused with a reason, the place given back), the
//! accept rate, in both accept paths (acceptor and reuseport loops).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use common::*;
use ringloop::{
    AcceptRate, Action, CloseReason, Conn, Engine, EngineBuilder, EventHandler, LoopContext,
    SockAddr,
};

/// Echoes; records every refusal's reason.
#[derive(Clone, Default)]
struct Echo {
    rejected: Arc<Mutex<Vec<String>>>,
}

impl EventHandler for Echo {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        echo_now(conn)
    }
    fn on_reject(&mut self, _ctx: &mut LoopContext, _peer: &SockAddr, reason: &CloseReason) {
        let kind = match reason {
            CloseReason::SourceLimit => "source-limit".to_string(),
            other => other.to_string(),
        };
        self.rejected.lock().unwrap().push(kind);
    }
}

fn engine(echo: &Echo, reuseport: bool) -> EngineBuilder<Echo> {
    let echo = echo.clone();
    Engine::builder(move |_| echo.clone())
        .listen("tcp://127.0.0.1:0")
        .loops(2)
        .reuse_port(reuseport)
}

fn round_trip(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).unwrap();
    let mut got = vec![0; data.len()];
    s.read_exact(&mut got).unwrap();
    assert_eq!(got, data);
}

fn cap_holds_and_resumes(reuseport: bool) {
    let echo = Echo::default();
    let server = Running::start(engine(&echo, reuseport).max_conns(2));
    let addr = server.tcp_addr(0);
    let mut first = tcp_client(addr);
    let mut second = tcp_client(addr);
    round_trip(&mut first, b"one");
    round_trip(&mut second, b"two");
    // The third connects (the kernel's backlog takes it) and sends, but is
    // not accepted while two are open.
    let mut third = tcp_client(addr);
    third.write_all(b"three").unwrap();
    wait_until("a pause at the cap", || {
        server.engine.admission_stats().paused_at_cap > 0
    });
    assert_eq!(server.engine.connection_count(), 2);
    let stats = server.engine.admission_stats();
    assert_eq!((stats.admitted, stats.open), (2, 2));
    // A place frees up: the third is served, nothing was lost.
    drop(first);
    let mut got = [0; 5];
    third.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"three");
    round_trip(&mut second, b"still here");
    let stats = server.engine.admission_stats();
    assert_eq!(stats.admitted, 3);
    drop((second, third));
    wait_until("every place given back", || {
        server.engine.admission_stats().open == 0
    });
    server.stop();
    assert!(echo.rejected.lock().unwrap().is_empty());
}

#[test]
fn max_conns_waits_in_the_backlog_with_an_acceptor() {
    cap_holds_and_resumes(false);
}

#[test]
fn max_conns_waits_in_the_backlog_in_reuseport_mode() {
    cap_holds_and_resumes(true);
}

#[test]
fn many_clients_at_a_small_cap_are_all_served() {
    let echo = Echo::default();
    let server = Running::start(engine(&echo, false).max_conns(3));
    let addr = server.tcp_addr(0);
    let clients: Vec<_> = (0..24u64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = tcp_client(addr);
                let data = payload(i, 10_000);
                round_trip(&mut s, &data);
            })
        })
        .collect();
    for c in clients {
        c.join().expect("every client served");
    }
    let stats = server.engine.admission_stats();
    assert_eq!(stats.admitted, 24);
    server.stop();
}

fn source_cap(reuseport: bool) {
    let echo = Echo::default();
    let server = Running::start(engine(&echo, reuseport).max_conns_per_source(2));
    let addr = server.tcp_addr(0);
    let mut a = tcp_client(addr);
    let mut b = tcp_client(addr);
    round_trip(&mut a, b"a");
    round_trip(&mut b, b"b");
    // A third from the same address is accepted and closed at once.
    let mut c = tcp_client(addr);
    let _ = c.write_all(b"c");
    assert!(read_to_end(&mut c).is_empty(), "refused: no echo");
    wait_until("the refusal reported", || {
        !echo.rejected.lock().unwrap().is_empty()
    });
    assert_eq!(*echo.rejected.lock().unwrap(), ["source-limit"]);
    assert_eq!(server.engine.admission_stats().refused_source_limit, 1);
    // Closing one gives its place back to the address.
    drop(a);
    wait_until("the place given back", || {
        server.engine.admission_stats().open == 1
    });
    let mut d = tcp_client(addr);
    round_trip(&mut d, b"d");
    round_trip(&mut b, b"b again");
    server.stop();
}

#[test]
fn max_conns_per_source_refuses_with_a_reason() {
    source_cap(false);
}

#[test]
fn max_conns_per_source_in_reuseport_mode() {
    source_cap(true);
}

#[test]
fn accept_rate_delays_but_serves_everyone() {
    let echo = Echo::default();
    let server = Running::start(engine(&echo, false).accept_rate(AcceptRate::new(1, 1)));
    let addr = server.tcp_addr(0);
    let mut clients: Vec<_> = (0..3).map(|_| tcp_client(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        round_trip(c, format!("client {i}").as_bytes());
    }
    let stats = server.engine.admission_stats();
    assert_eq!(stats.admitted, 3);
    assert!(
        stats.rate_limited > 0,
        "three at once at one a second: {stats}"
    );
    server.stop();
}

#[test]
fn bad_limits_are_refused_at_build() {
    let echo = Echo::default();
    let err = engine(&echo, false).max_conns(0).build().unwrap_err();
    assert!(err.to_string().contains("max_conns"), "{err}");
}
