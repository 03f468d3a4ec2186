//! Scale: 10,000 concurrent connections, and 100,000 connect/close cycles
//! with no descriptor or memory growth. The server is a child process (see
//! `common::child`): 10,000 connections need 10,000 descriptors on each side
//! of loopback, more than one process may hold under the hard limit of
//! 20,000; and a process of its own gives an undisturbed view of the
//! server's descriptors and memory. The two tests take turns (each needs
//! the cores and thousands of descriptors). Both drivers: scripts/check
//! runs the suite once with `RINGLOOP_BACKEND=epoll` and once with
//! `io-uring`; the child inherits it, and each test checks that the child
//! runs that driver (not a fallback).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::child::{ChildServer, ChildSettings};
use common::*;

/// The server half of the child-process tests (see `common::child`).
#[test]
#[ignore = "runs only as the child process of other tests"]
fn child_server() {
    common::child::serve_if_child();
}

/// One heavy test at a time.
static HEAVY: Mutex<()> = Mutex::new(());

const CLIENT_THREADS: usize = 4;

/// The child runs the driver the suite's run names (`RINGLOOP_BACKEND`:
/// scripts/check runs these tests once on epoll and once on io_uring), not
/// a silent fallback; returns its name for the log.
fn expect_suite_backend(stats: &common::child::ChildStats) -> &'static str {
    let running = if stats.io_uring == 1 {
        "io-uring"
    } else {
        "epoll"
    };
    if let Ok(wanted @ ("io-uring" | "epoll")) = std::env::var("RINGLOOP_BACKEND").as_deref() {
        assert_eq!(running, wanted, "the child server runs the wrong driver");
    }
    running
}

/// Opens `n` connections to `addr` and checks one echo on each; returns them open.
fn open_and_echo(addr: SocketAddr, n: usize, seed: usize) -> Vec<TcpStream> {
    let mut streams: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut s = TcpStream::connect(addr)
                .unwrap_or_else(|e| panic!("connection {i} of {n}: connect: {e}"));
            s.set_read_timeout(Some(PATIENCE)).unwrap();
            s.write_all(format!("{:08}", seed + i).as_bytes()).unwrap();
            s
        })
        .collect();
    for (i, s) in streams.iter_mut().enumerate() {
        let mut back = [0u8; 8];
        s.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("connection {} echo: {e}", seed + i));
        assert_eq!(back, format!("{:08}", seed + i).as_bytes());
    }
    streams
}

#[test]
fn ten_thousand_concurrent_connections() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    const N: usize = 10_000;
    let limit = raise_nofile_limit();
    assert!(
        limit >= N as u64 + 500,
        "RLIMIT_NOFILE {limit} is too low for {N} connections"
    );
    let started = Instant::now();
    // The child inherits the raised limit.
    let mut server = ChildServer::start(ChildSettings::default());
    let addr = server.addr;
    // One connection first, so that every thread of the server (the
    // acceptor starts after the loops) holds its descriptors.
    echo_round_trip(&mut tcp_client(addr), b"probe");
    server.wait_stats("the probe closed", |s| s.connections == 0);
    let fds_idle = server.fd_count();

    let per_thread = N / CLIENT_THREADS;
    let streams: Vec<TcpStream> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..CLIENT_THREADS)
            .map(|t| s.spawn(move || open_and_echo(addr, per_thread, t * per_thread)))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("client thread"))
            .collect()
    });
    assert_eq!(streams.len(), N);
    let stats = server.wait_stats("10,000 connections", |s| s.connections == N as u64);
    let backend = expect_suite_backend(&stats);
    assert_eq!(stats.opened, N as u64 + 1);
    assert!(server.fd_count() >= fds_idle + N);
    let opened_in = started.elapsed();

    drop(streams);
    server.wait_stats("every connection closed", |s| s.connections == 0);
    let deadline = Instant::now() + PATIENCE;
    while server.fd_count() != fds_idle {
        if Instant::now() > deadline {
            let fds: Vec<_> = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .collect();
            panic!("server fds {} (idle {fds_idle}): {fds:?}", fds.len());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "{backend}: 10,000 connections opened and echoed in {opened_in:?}, all closed after {:?}",
        started.elapsed()
    );
    server.stop();
}

/// Connect/close cycles from several threads: one in eight echoes a few
/// bytes first; one in four ends with a reset (SO_LINGER 0), the others
/// with a normal close.
fn churn(addr: SocketAddr, cycles: usize) {
    let per_thread = cycles / CLIENT_THREADS;
    std::thread::scope(|s| {
        for t in 0..CLIENT_THREADS {
            s.spawn(move || {
                for i in 0..per_thread {
                    let mut c = TcpStream::connect(addr)
                        .unwrap_or_else(|e| panic!("thread {t}, cycle {i}: connect: {e}"));
                    if i % 8 == 0 {
                        c.set_read_timeout(Some(PATIENCE)).unwrap();
                        echo_round_trip(&mut c, &payload((t * per_thread + i) as u64, 16));
                    }
                    if i % 4 == 1 {
                        reset_on_close(&c);
                    }
                }
            });
        }
    });
}

#[test]
fn hundred_thousand_connect_close_cycles_leak_nothing() {
    let _turn = HEAVY.lock().unwrap_or_else(|e| e.into_inner());
    const WARM_UP: usize = 10_000;
    const CYCLES: usize = 100_000;
    let mut server = ChildServer::start(ChildSettings::default());
    let addr = server.addr;

    // Warm up: the slabs, allocator arenas and kernel structures reach
    // their working size.
    churn(addr, WARM_UP);
    server.wait_stats("warm-up connections closed", |s| s.connections == 0);
    let fds_before = server.fd_count();
    let rss_before = server.rss();

    let started = Instant::now();
    churn(addr, CYCLES);
    let churn_time = started.elapsed();
    let stats = server.wait_stats("every connection closed", |s| s.connections == 0);
    let backend = expect_suite_backend(&stats);
    std::thread::sleep(Duration::from_millis(100));
    let fds_after = server.fd_count();
    let rss_after = server.rss();
    eprintln!(
        "{backend}: {CYCLES} cycles in {churn_time:?} ({:.0}/s); server fds {fds_before} -> {fds_after}, \
         VmRSS {} KiB -> {} KiB; {stats:?}",
        CYCLES as f64 / churn_time.as_secs_f64(),
        rss_before / 1024,
        rss_after / 1024
    );
    // A connection reset before the server accepted it is skipped by
    // accept (ECONNABORTED / ENOTCONN); every other one must have opened.
    let resets = (WARM_UP + CYCLES) as u64 / 4;
    assert!(
        (((WARM_UP + CYCLES) as u64 - resets)..=(WARM_UP + CYCLES) as u64).contains(&stats.opened),
        "{} connections opened of {} made ({resets} reset by the client)",
        stats.opened,
        WARM_UP + CYCLES
    );
    assert_eq!(fds_after, fds_before, "the server's descriptors grew");
    // 4 MiB over 100,000 cycles: a leak of 42 bytes per connection shows.
    assert!(
        rss_after <= rss_before + (4 << 20),
        "the server's memory grew from {} KiB to {} KiB over {CYCLES} cycles",
        rss_before / 1024,
        rss_after / 1024
    );
    server.stop();
}
