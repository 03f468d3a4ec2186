//! `examples/echo_pool` as a hardened server (a child process): with reading
//! paused while a connection's job runs, a client that streams and never
//! reads cannot grow the server's memory (RSS, with a margin; no timing),
//! and a client that reads gets every byte back in order.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::example::Example;
use common::*;

const MIB: usize = 1 << 20;

#[test]
fn a_client_that_never_reads_cannot_grow_the_server() {
    let server = Example::start(
        "echo_pool",
        &["tcp://127.0.0.1:0", "--loops", "1", "--delay-ms", "100"],
    );
    let before = server.rss();
    let mut client = tcp_client(server.addr);
    client.set_nonblocking(true).unwrap();
    // Stream for a while (bounded: 64 MiB or until the server stops
    // taking bytes for two seconds). Before the fix the server stashed all
    // of it: ~200 MiB for 100 ms jobs.
    let chunk = vec![0x42; 64 * 1024];
    let mut sent = 0;
    let mut stalled_since = Instant::now();
    let started = Instant::now();
    while sent < 64 * MIB
        && stalled_since.elapsed() < Duration::from_secs(2)
        && started.elapsed() < Duration::from_secs(20)
    {
        match client.write(&chunk) {
            Ok(n) => {
                sent += n;
                stalled_since = Instant::now();
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("the server dropped a client it should only slow down: {e}"),
        }
    }
    let grown = server.rss().saturating_sub(before);
    assert!(
        grown < (16 * MIB) as u64,
        "server RSS grew by {} KiB after {sent} bytes from a client that never reads",
        grown / 1024
    );
    drop(client);
    assert!(server.stop().success());
}

#[test]
fn a_reading_client_gets_every_byte_back_in_order() {
    let server = Example::start(
        "echo_pool",
        &["tcp://127.0.0.1:0", "--loops", "2", "--delay-ms", "1"],
    );
    let data = payload(17, 4 * MIB);
    let mut client = tcp_client(server.addr);
    let writer = {
        let mut client = client.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || client.write_all(&data).unwrap())
    };
    let mut echoed = vec![0; data.len()];
    client.read_exact(&mut echoed).unwrap();
    writer.join().unwrap();
    assert!(echoed == data, "the echo differs");
    assert!(server.stop().success());
}

/// The library API under it: `Conn::pause_reading` holds new bytes in the
/// kernel (no `on_traffic`), `ConnHandle::resume_reading` from another
/// thread lets them in.
#[test]
fn pause_and_resume_reading_from_another_thread() {
    use std::sync::mpsc;
    use std::sync::Mutex;

    let (seen_tx, seen) = mpsc::channel::<(Vec<u8>, ringloop::ConnHandle)>();
    let seen_tx = Mutex::new(seen_tx);
    let running = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                let bytes = conn.read_all().to_vec();
                conn.pause_reading();
                assert!(conn.is_reading_paused());
                seen_tx
                    .lock()
                    .unwrap()
                    .send((bytes, conn.handle()))
                    .unwrap();
                ringloop::Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let mut client = tcp_client(running.tcp_addr(0));
    client.write_all(b"first").unwrap();
    let (bytes, handle) = seen.recv_timeout(PATIENCE).unwrap();
    assert_eq!(bytes, b"first");
    client.write_all(b"second").unwrap();
    // Paused: the second message stays in the kernel.
    assert!(seen.recv_timeout(Duration::from_millis(300)).is_err());
    handle.resume_reading().unwrap();
    let (bytes, _) = seen.recv_timeout(PATIENCE).unwrap();
    assert_eq!(bytes, b"second");
    drop(client);
    running.stop();
}

/// A job queue far too small (one worker, room for one job) and clients
/// that all want an echo at once: the example backs off and retries
/// instead of closing connections, so every client gets every echo.
#[test]
fn a_full_job_queue_slows_clients_down_instead_of_closing_them() {
    let server = Example::start(
        "echo_pool",
        &[
            "tcp://127.0.0.1:0",
            "--loops",
            "2",
            "--delay-ms",
            "2",
            "--workers",
            "1",
            "--queue",
            "1",
        ],
    );
    let clients: Vec<_> = (0..8u64)
        .map(|seed| {
            let mut client = tcp_client(server.addr);
            std::thread::spawn(move || {
                for round in 0..10 {
                    echo_round_trip(&mut client, &payload(seed * 100 + round, 100));
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("every client gets every echo");
    }
    assert!(server.stop().success());
}
