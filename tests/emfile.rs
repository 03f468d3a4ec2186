//! Running out of file descriptors (`EMFILE`) while accepting: a child
//! server with `RLIMIT_NOFILE` = 64 is offered far more connections than it
//! can hold. It must keep serving the ones it accepted, must not spin while
//! it waits for descriptors (its CPU time over a second of waiting is
//! measured), must say so once in its log, and must accept and serve the
//! waiting connections as soon as descriptors free up. Both accept paths are
//! covered: the acceptor actor, and each loop accepting inline in reuseport
//! mode.
//!
//! The server runs in a child process (see `common::child`): the test
//! binary re-runs itself with the limit applied before exec, so only the
//! server is starved of descriptors, not the test.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::child::{ChildServer, ChildSettings};
use common::*;

/// The server half of the child-process tests (see `common::child`).
#[test]
#[ignore = "runs only as the child process of other tests"]
fn child_server() {
    common::child::serve_if_child();
}

/// Descriptors the child may hold in all.
const LIMIT: u64 = 64;
/// Clients offered: about twice what fits.
const CLIENTS: usize = 120;

struct Client {
    stream: Option<TcpStream>,
    probe: u8,
    echoed: bool,
}

/// Reads the probe echo of every client still waiting for it, without
/// blocking; returns how many have been echoed in all. A waiting connection
/// that is closed or reset fails the test: it must only wait.
fn poll_echoes(clients: &mut [Client]) -> usize {
    for (i, c) in clients.iter_mut().enumerate() {
        let (Some(stream), false) = (c.stream.as_mut(), c.echoed) else {
            continue;
        };
        let mut byte = [0u8];
        match stream.read(&mut byte) {
            Ok(1) => {
                assert_eq!(byte[0], c.probe, "client {i}: wrong echo");
                c.echoed = true;
            }
            Ok(_) => panic!("client {i}: the server closed a waiting connection"),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("client {i}: {e}"),
        }
    }
    clients.iter().filter(|c| c.echoed).count()
}

/// Polls until the echoed count stops moving for `quiet` (at least
/// `at_least` echoed), or fails after `PATIENCE`.
fn settle(clients: &mut [Client], at_least: usize, quiet: Duration) -> usize {
    let deadline = Instant::now() + PATIENCE;
    let mut last = poll_echoes(clients);
    let mut since = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let now = poll_echoes(clients);
        if now != last {
            last = now;
            since = Instant::now();
        } else if now >= at_least && since.elapsed() >= quiet {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "only {now} of at least {at_least} connections were served"
        );
    }
}

fn survives_emfile(reuse_port: bool) {
    let loops = 2;
    let mut server = ChildServer::start(ChildSettings {
        loops,
        reuse_port,
        nofile: Some(LIMIT),
        ..ChildSettings::default()
    });
    let addr = server.addr;

    // Far more connections than the server can hold: the kernel completes
    // every handshake (the backlog is 1024), the server runs dry of
    // descriptors while accepting them.
    let mut clients: Vec<Client> = (0..CLIENTS)
        .map(|i| {
            let mut stream = TcpStream::connect(addr).expect("connect");
            let probe = b'a' + (i % 26) as u8;
            stream.write_all(&[probe]).unwrap();
            stream.set_nonblocking(true).unwrap();
            Client {
                stream: Some(stream),
                probe,
                echoed: false,
            }
        })
        .collect();
    let served = settle(&mut clients, 1, Duration::from_millis(500));
    assert!(
        served < CLIENTS && served as u64 <= LIMIT,
        "{served} of {CLIENTS} served: the descriptor limit of {LIMIT} was never hit"
    );
    assert!(
        served as u64 >= LIMIT / 2,
        "only {served} served under a limit of {LIMIT}"
    );

    // The accepted connections are still served, byte-exact.
    for round in 0..3u64 {
        for (i, c) in clients.iter_mut().enumerate().filter(|(_, c)| c.echoed) {
            let s = c.stream.as_mut().unwrap();
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            echo_round_trip(s, &payload(round * 1000 + i as u64, 2000));
            s.set_nonblocking(true).unwrap();
        }
    }

    // While it waits for descriptors it must not spin: with accepts paused
    // and retried every ~100 ms, a second of waiting costs next to no CPU
    // (a busy loop would cost most of a second).
    let cpu_before = server.cpu_time();
    let wall = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = server.cpu_time() - cpu_before;
    let wall = wall.elapsed();
    assert!(
        cpu < Duration::from_millis(150),
        "the server used {cpu:?} of CPU in {wall:?} while out of descriptors"
    );
    assert_eq!(
        poll_echoes(&mut clients),
        served,
        "nothing was accepted while no descriptor was free"
    );

    // It said so, once per accepting thread (the acceptor, or each loop).
    let warnings = server
        .logs()
        .into_iter()
        .filter(|l| l.contains("pausing accepts"))
        .count();
    let accepting_threads = if reuse_port { loops } else { 1 };
    assert!(
        (1..=accepting_threads).contains(&warnings),
        "{warnings} 'pausing accepts' warnings, expected 1 ..= {accepting_threads}: {:?}",
        server.logs()
    );

    // Free descriptors by closing the served clients: the waiting ones are
    // accepted and served, a batch at a time, until every one has been.
    let mut rounds = 0;
    let mut echoed = served;
    while echoed < CLIENTS {
        rounds += 1;
        assert!(rounds <= 10, "no progress after {rounds} rounds");
        for c in clients.iter_mut().filter(|c| c.echoed) {
            c.stream = None;
        }
        echoed = settle(&mut clients, echoed + 1, Duration::from_millis(300));
    }
    drop(clients);

    // And new connections are accepted and served again.
    let mut fresh = tcp_client(addr);
    echo_round_trip(&mut fresh, b"after the storm");
    drop(fresh);
    let stats = server.wait_stats("every connection closed", |s| s.connections == 0);
    assert_eq!(
        stats.opened,
        CLIENTS as u64 + 1,
        "every offered connection was eventually accepted exactly once"
    );
    assert!(server.is_alive());
    server.stop();
}

#[test]
fn acceptor_survives_running_out_of_descriptors() {
    survives_emfile(false);
}

#[test]
fn reuseport_loops_survive_running_out_of_descriptors() {
    survives_emfile(true);
}
