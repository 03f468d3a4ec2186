//! The loop's timers over a real engine: a loop with connection timeouts
//! armed sleeps until the next deadline instead of waking every wheel tick.
//!
//! Counted, not timed: the loop thread's voluntary context switches (each is
//! one sleep in `epoll_wait` that ended) over a quiet second, read from
//! `/proc/self/task/*/`.

mod common;

use std::fs;
use std::sync::Mutex;
use std::time::Duration;

use common::{tcp_client, wait_until, Echo, Running};
use ringloop::{Engine, Timeouts};

/// The tests here run one at a time: each engine's loop thread is called
/// `ringloop-loop-0`, and the count below finds the loop by that name.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Voluntary context switches of this process's thread called `name`.
fn sleeps_of_thread(name: &str) -> u64 {
    for task in fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task entry").path();
        let comm = fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let status = fs::read_to_string(dir.join("status")).expect("task status");
        return status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("voluntary_ctxt_switches in status");
    }
    panic!("no thread named {name}");
}

#[test]
fn an_idle_loop_with_a_long_timeout_armed_sleeps_until_its_deadline() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = Running::start(
        Engine::builder(|_| Echo)
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .timeouts(Timeouts::none().idle(Duration::from_secs(60))),
    );
    // A connection with its idle timeout on the wheel, proven alive by one
    // echo; then nothing happens for a second.
    let mut client = tcp_client(server.tcp_addr(0));
    common::echo_round_trip(&mut client, b"pong");
    wait_until("the loop thread to be named", || {
        fs::read_dir("/proc/self/task").unwrap().flatten().any(|t| {
            fs::read_to_string(t.path().join("comm")).unwrap_or_default() == "ringloop-loop-0\n"
        })
    });
    let before = sleeps_of_thread("ringloop-loop-0");
    std::thread::sleep(Duration::from_secs(1));
    let woke = sleeps_of_thread("ringloop-loop-0") - before;
    // Waking every 10 ms tick would be ~100; sleeping until the deadline
    // (60 s away) is none. A few allow for stray wake-ups.
    assert!(
        woke <= 10,
        "an idle loop with a 60 s timeout armed woke {woke} times in a second"
    );
    drop(client);
    server.stop();
}

#[test]
fn replies_that_went_out_leave_no_write_timeout_behind_and_a_stuck_one_gets_its_own() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // An hour: a wheel entry left for a reply already sent would stay the
    // whole test (and an hour of memory per idle connection).
    let server = Running::start(
        Engine::builder(|_| Echo)
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .timeouts(Timeouts::none().write(Duration::from_secs(3600))),
    );
    let addr = server.tcp_addr(0);
    let mut clients: Vec<_> = (0..20).map(|_| tcp_client(addr)).collect();
    for (i, client) in clients.iter_mut().enumerate() {
        common::echo_round_trip(client, format!("ping {i}").as_bytes());
    }
    // Every reply was sent (the clients read them): nothing to time out.
    wait_until("no timer for replies already sent", || {
        server.engine.total_stats().timers == 0
    });
    assert_eq!(server.engine.total_stats().timers, 0);

    // A peer that sends and never reads: its replies stay queued, and the
    // write timeout must be on the wheel for them.
    let stuck = tcp_client(addr);
    let mut writer = stuck.try_clone().unwrap();
    let pusher = std::thread::spawn(move || {
        let chunk = vec![b's'; 64 * 1024];
        for _ in 0..1024 {
            if std::io::Write::write_all(&mut writer, &chunk).is_err() {
                return;
            }
        }
    });
    wait_until("the stuck connection's write timeout", || {
        server.engine.total_stats().timers >= 1
    });
    // Ending the stuck peer ends the pusher's writes.
    stuck.shutdown(std::net::Shutdown::Both).unwrap();
    pusher.join().unwrap();
    // Closed, not only shut down: the server's queued replies then fail at
    // once instead of draining until the stop's grace period ends.
    drop(stuck);
    drop(clients);
    server.stop();
}
