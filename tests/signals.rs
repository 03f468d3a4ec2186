//! `stop_on_signals` in a real server process (the `echo_pool` example):
//! a second SIGTERM or SIGINT ends a stop that a long job keeps waiting,
//! SIGQUIT exits at once, and SIGHUP, SIGUSR1 and SIGUSR2 leave the server
//! serving. Plus the worker pool's shutdown deadline in an engine.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc;
use std::time::Duration;

use common::example::Example;
use common::*;
use nix::sys::signal::Signal;
use ringloop::{Engine, EventHandler, PoolShutdown};

/// An echo_pool whose jobs take ten minutes, with one job running.
fn stuck_echo_pool() -> (Example, std::net::TcpStream) {
    let server = Example::start(
        "echo_pool",
        &["tcp://127.0.0.1:0", "--loops", "1", "--delay-ms", "600000"],
    );
    let mut client = tcp_client(server.addr);
    client.write_all(b"a job that takes ten minutes").unwrap();
    // Wait until a worker is *in* the job (asleep in nanosleep or
    // clock_nanosleep, per /proc/PID/task/TID/syscall): only then must a
    // graceful stop wait for it. (Waiting for the pool's threads to exist
    // was not enough: the pool starts on the first submit, and under load a
    // stop could land between the threads' start and the job's queueing,
    // so the job was refused as "stopping" and the server exited at once.)
    let pid = server.pid();
    wait_until("a worker to run the job", || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .unwrap()
            .flatten()
            .any(|t| {
                let worker = std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|name| name.starts_with("ringloop-worker"));
                let sleeping = std::fs::read_to_string(t.path().join("syscall"))
                    .is_ok_and(|call| matches!(call.split(' ').next(), Some("35" | "230")));
                worker && sleeping
            })
    });
    (server, client)
}

fn second_signal_ends_a_stuck_stop(signal: Signal) {
    let (mut server, _client) = stuck_echo_pool();
    server.signal(signal);
    // The first signal starts a graceful stop that waits for the job (up to
    // the 30 s pool deadline): the server is still there a moment later.
    assert_eq!(
        server.wait_exit(Duration::from_millis(300)),
        None,
        "one signal should wait for the running job"
    );
    server.signal(signal);
    let status = server
        .wait_exit(PATIENCE)
        .unwrap_or_else(|| panic!("a second {signal} did not end the stop"));
    assert_eq!(status.code(), Some(128 + signal as i32), "{status:?}");
    assert!(
        server.stderr().iter().any(|l| l.contains("exiting now")),
        "{:?}",
        server.stderr()
    );
}

#[test]
fn a_second_sigterm_ends_a_stop_stuck_on_a_job() {
    second_signal_ends_a_stuck_stop(Signal::SIGTERM);
}

#[test]
fn a_second_sigint_ends_a_stop_stuck_on_a_job() {
    second_signal_ends_a_stuck_stop(Signal::SIGINT);
}

#[test]
fn sigquit_exits_at_once() {
    let (mut server, _client) = stuck_echo_pool();
    server.signal(Signal::SIGQUIT);
    let status = server.wait_exit(PATIENCE).expect("SIGQUIT ends the server");
    assert_eq!(status.code(), Some(131), "{status:?}");
    assert_eq!(status.signal(), None, "no death by the default action");
}

#[test]
fn sighup_and_sigusr_leave_the_server_serving() {
    let mut server = Example::start(
        "echo_pool",
        &["tcp://127.0.0.1:0", "--loops", "1", "--delay-ms", "1"],
    );
    for signal in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        server.signal(signal);
        let mut client = tcp_client(server.addr);
        client.write_all(b"still there?").unwrap();
        let mut reply = [0; 12];
        client.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"still there?", "after {signal}");
        assert_eq!(server.exited(), None, "{signal} killed the server");
    }
    // With no job running, one SIGINT is a clean, complete stop.
    server.signal(Signal::SIGINT);
    let status = server.wait_exit(PATIENCE).expect("SIGINT stops it");
    assert!(status.success(), "{status:?}: {:?}", server.stderr());
}

struct Quiet;
impl EventHandler for Quiet {
    type State = ();
}

#[test]
fn a_stop_waits_for_the_pool_at_most_its_deadline() {
    let running = Running::start(
        Engine::builder(|_| Quiet)
            .loops(1)
            .workers(1)
            .pool_shutdown(PoolShutdown::Finish)
            .pool_shutdown_timeout(Duration::from_millis(100)),
    );
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let (ran_tx, ran) = mpsc::channel();
    running
        .engine
        .submit(move || {
            started_tx.send(()).unwrap();
            let _ = released.recv(); // never ends on its own before the stop
        })
        .unwrap();
    started.recv_timeout(PATIENCE).unwrap();
    running
        .engine
        .submit(move || ran_tx.send(()).unwrap())
        .unwrap(); // queued behind it
                   // Without the deadline this would wait for `release` forever.
    running.stop();
    drop(release);
    assert!(
        ran.recv_timeout(Duration::from_millis(200)).is_err(),
        "the job queued past the deadline was dropped, not run"
    );
}
