//! Who accepts: a single-loop engine accepts on its own loop (no acceptor
//! thread, no hand-off message per connection) unless asked for the
//! acceptor thread; several loops use the acceptor (reuseport off). And an
//! engine accepting inline stops accepting once it is stopping, as the
//! acceptor does, while its worker pool drains.
//!
//! One test function per concern, each running its engines one at a time:
//! the thread check reads this process's `/proc/self/task`, which every
//! engine of the binary shares.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use common::*;
use ringloop::{Action, EngineBuilder};

/// The names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// Acceptor threads ("ringloop-acceptor", which the kernel cuts to 15 bytes).
fn acceptor_threads() -> usize {
    thread_names()
        .iter()
        .filter(|n| "ringloop-acceptor".starts_with(n.as_str()) && n.len() >= 15)
        .count()
}

/// The tests of this binary run one at a time: they count threads.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn echo() -> EngineBuilder<Hooks<()>> {
    Hooks::<()>::new()
        .on_traffic(echo_now)
        .builder()
        .listen("tcp://127.0.0.1:0")
}

/// Serves `clients` echo round trips and returns the mailbox messages the
/// loops handled and the acceptor threads seen while serving.
fn serve(builder: EngineBuilder<Hooks<()>>, clients: usize) -> (u64, usize) {
    let server = Running::start(builder);
    let addr = server.tcp_addr(0);
    let mut streams: Vec<TcpStream> = (0..clients).map(|_| tcp_client(addr)).collect();
    for (i, s) in streams.iter_mut().enumerate() {
        echo_round_trip(s, &payload(i as u64, 1000));
    }
    wait_until("every connection open", || {
        server.engine.total_stats().connections_opened == clients as u64
    });
    let acceptors = acceptor_threads();
    let messages = server.engine.total_stats().messages;
    drop(streams);
    server.stop();
    (messages, acceptors)
}

#[test]
fn one_loop_accepts_on_its_own_loop_unless_asked_for_the_acceptor() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(acceptor_threads(), 0);
    let (messages, acceptors) = serve(echo().loops(1), 4);
    assert_eq!(acceptors, 0, "no acceptor thread: {:?}", thread_names());
    assert_eq!(messages, 0, "no hand-off message per connection");

    let (messages, acceptors) = serve(echo().loops(1).acceptor_thread(true), 4);
    assert_eq!(acceptors, 1, "the acceptor thread asked for");
    assert_eq!(messages, 4, "one hand-off per connection");

    let (_, acceptors) = serve(echo().loops(2), 4);
    assert_eq!(acceptors, 1, "several loops share an acceptor");

    let (messages, acceptors) = serve(echo().loops(2).reuse_port(true), 4);
    assert_eq!(
        (messages, acceptors),
        (0, 0),
        "reuseport loops accept inline"
    );
}

/// A client connecting while the engine stops (its worker pool still
/// finishing a job) is not served, whoever accepts.
fn stopping_engine_accepts_nothing_new(loops: usize, acceptor_thread: bool, reuse_port: bool) {
    let opened = Arc::new(AtomicU32::new(0));
    let counter = opened.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |_| {
                counter.fetch_add(1, Ordering::Relaxed);
                Action::None
            })
            .on_traffic(echo_now)
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(loops)
            .acceptor_thread(acceptor_thread)
            .reuse_port(reuse_port)
            .workers(1),
    );
    let addr = server.tcp_addr(0);
    echo_round_trip(&mut tcp_client(addr), b"before the stop");
    // A job that holds the pool, and so the loops' stop, until released.
    let (release, held) = mpsc::channel::<()>();
    let (started, running) = mpsc::channel();
    server
        .engine
        .submit(move || {
            started.send(()).unwrap();
            let _ = held.recv_timeout(PATIENCE);
        })
        .expect("the job is queued");
    running.recv_timeout(PATIENCE).expect("the job runs");
    // `stop` returns once the engine has finished: ask from another thread.
    let engine = server.engine.clone();
    let stopper = std::thread::spawn(move || engine.stop());
    // The pool is draining and the loops still serve their connections; a
    // new client finds no listener (refused) or is reset unserved.
    std::thread::sleep(Duration::from_millis(50));
    let what = format!("loops {loops}, acceptor thread {acceptor_thread}, reuseport {reuse_port}");
    match TcpStream::connect(addr) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{what}: {e}"),
        Ok(mut late) => {
            late.set_read_timeout(Some(PATIENCE)).unwrap();
            let _ = late.write_all(b"too late");
            let mut buf = [0u8; 16];
            let n = late.read(&mut buf).unwrap_or(0);
            assert_eq!(n, 0, "{what}: a connection made after the stop was served");
        }
    }
    assert_eq!(
        opened.load(Ordering::Relaxed),
        1,
        "{what}: only the first client opened"
    );
    release.send(()).unwrap();
    stopper.join().unwrap();
    server.join();
}

#[test]
fn a_stopping_engine_accepts_nothing_new_whoever_accepts() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    stopping_engine_accepts_nothing_new(1, false, false);
    stopping_engine_accepts_nothing_new(1, true, false);
    stopping_engine_accepts_nothing_new(2, false, true);
}
