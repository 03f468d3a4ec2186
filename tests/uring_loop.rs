//! The event loop on io_uring (issue 14): the backend option and its
//! fallback, and what the completion driver must survive: a buffer ring
//! that runs dry, closes and stops with operations in flight, and many
//! connections and connect/close cycles without descriptor growth.
//!
//! Tests that need an environment variable set for the engine (a refused
//! io_uring, a tiny buffer ring) run in a child process: this binary runs
//! itself with the variable and one `#[ignore]`d test selected.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use ringloop::{Action, Backend, Conn, Engine, Error, EventHandler};

fn echo_server(backend: Backend, loops: usize) -> Running {
    Running::start(
        Engine::builder(|_| Echo)
            .listen("tcp://127.0.0.1:0")
            .backend(backend)
            .loops(loops),
    )
}

/// Runs `test` (an ignored test of this binary) in a child process with
/// `env` set; it must pass.
fn run_child(test: &str, env: &[(&str, &str)]) {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            test,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().copied())
        .env_remove("RINGLOOP_BACKEND")
        .output()
        .expect("run the child test");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child {test} failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "child {test} did not run:\n{text}"
    );
}

#[test]
fn the_engine_reports_the_backend_it_runs_on() {
    let epoll = echo_server(Backend::Epoll, 1);
    assert_eq!(epoll.engine.backend(), Backend::Epoll);
    let mut c = tcp_client(epoll.tcp_addr(0));
    echo_round_trip(&mut c, b"epoll");
    epoll.stop();
    if !uring_available() {
        return;
    }
    let uring = echo_server(Backend::IoUring, 1);
    assert_eq!(uring.engine.backend(), Backend::IoUring);
    let mut c = tcp_client(uring.tcp_addr(0));
    for i in 0..100u64 {
        echo_round_trip(&mut c, &payload(i, 1 + (i as usize * 997) % 70_000));
    }
    uring.stop();
    // Auto resolves to one of the two, never stays Auto.
    let auto = echo_server(Backend::Auto, 1);
    assert_ne!(auto.engine.backend(), Backend::Auto);
    auto.stop();
}

#[test]
fn a_refused_io_uring_falls_back_to_epoll_or_fails_when_insisted_on() {
    run_child(
        "child_refused_io_uring",
        &[("RINGLOOP_URING_REFUSE", "setup")],
    );
}

#[test]
#[ignore = "run by a_refused_io_uring_falls_back_to_epoll_or_fails_when_insisted_on in a child process"]
fn child_refused_io_uring() {
    assert_eq!(
        std::env::var("RINGLOOP_URING_REFUSE").as_deref(),
        Ok("setup")
    );
    let auto = echo_server(Backend::Auto, 1);
    assert_eq!(auto.engine.backend(), Backend::Epoll, "auto falls back");
    let mut c = tcp_client(auto.tcp_addr(0));
    echo_round_trip(&mut c, b"still serving");
    auto.stop();
    match Engine::builder(|_| Echo)
        .listen("tcp://127.0.0.1:0")
        .backend(Backend::IoUring)
        .build()
    {
        Err(Error::BackendUnavailable { backend, reason }) => {
            assert_eq!(backend, Backend::IoUring);
            assert!(reason.contains("simulated"), "{reason}");
        }
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("an engine insisting on a refused io_uring must not build"),
    }
}

#[test]
fn the_environment_chooses_the_default_backend() {
    run_child("child_backend_from_env", &[("RINGLOOP_BACKEND_CHILD", "1")]);
}

#[test]
#[ignore = "run by the_environment_chooses_the_default_backend in a child process"]
fn child_backend_from_env() {
    // (The parent removes RINGLOOP_BACKEND; this child sets it for itself
    // before any engine is built, with no other thread running.)
    assert!(std::env::var("RINGLOOP_BACKEND_CHILD").is_ok());
    // Told nothing, an engine runs on auto (the default): io_uring where
    // the kernel allows it, else epoll.
    let server = Running::start(
        Engine::builder(|_| Echo)
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let expected = if uring_available() {
        Backend::IoUring
    } else {
        Backend::Epoll
    };
    assert_eq!(server.engine.backend(), expected);
    server.stop();
    // Edge-triggered mode is an epoll feature: asking for it with the
    // default backend chooses epoll.
    let server = Running::start(
        Engine::builder(|_| Echo)
            .listen("tcp://127.0.0.1:0")
            .edge_triggered(true)
            .loops(1),
    );
    assert_eq!(server.engine.backend(), Backend::Epoll);
    server.stop();
    // The environment overrides the default: io_uring, or (where the
    // kernel refuses it) the typed error of an engine insisting on it.
    std::env::set_var("RINGLOOP_BACKEND", "io-uring");
    match Engine::builder(|_| Echo)
        .listen("tcp://127.0.0.1:0")
        .loops(1)
        .build()
    {
        Ok(server) => {
            assert_eq!(server.handle().backend(), Backend::IoUring);
            server.handle().stop();
            server.run().expect("engine run");
        }
        Err(Error::BackendUnavailable { backend, .. }) => assert_eq!(backend, Backend::IoUring),
        Err(e) => panic!("wrong error: {e}"),
    }
    std::env::set_var("RINGLOOP_BACKEND", "kqueue");
    match Engine::builder(|_| Echo).loops(1).build() {
        Err(Error::InvalidConfig(what)) => assert!(what.contains("kqueue"), "{what}"),
        other => panic!("an unknown backend name must fail: {:?}", other.err()),
    }
    // The builder's choice wins over the environment.
    let server = Running::start(
        Engine::builder(|_| Echo)
            .listen("tcp://127.0.0.1:0")
            .backend(Backend::Epoll)
            .loops(1),
    );
    assert_eq!(server.engine.backend(), Backend::Epoll);
    server.stop();
}

/// Many clients stream at once into a loop whose buffer ring holds only 4
/// buffers, so the ring runs dry again and again; every byte must come
/// back, in order.
#[test]
fn a_dry_buffer_ring_loses_no_data() {
    run_child("child_dry_buffer_ring", &[("RINGLOOP_URING_BUFFERS", "4")]);
}

#[test]
#[ignore = "run by a_dry_buffer_ring_loses_no_data in a child process"]
fn child_dry_buffer_ring() {
    if !uring_available() {
        return;
    }
    let server = echo_server(Backend::IoUring, 1);
    let addr = server.tcp_addr(0);
    let clients: Vec<_> = (0..24u64)
        .map(|seed| {
            thread::spawn(move || {
                let data = payload(seed, 512 * 1024);
                let mut c = tcp_client(addr);
                let mut reader = c.try_clone().unwrap();
                let expect = data.clone();
                let r = thread::spawn(move || {
                    let mut back = vec![0u8; expect.len()];
                    reader.read_exact(&mut back).expect("read the echo");
                    back == expect
                });
                c.write_all(&data).expect("write");
                r.join().unwrap()
            })
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        assert!(c.join().unwrap(), "client {i}: the echo differs");
    }
    server.stop();
}

/// The server closes connections while their receives are armed and their
/// replies still being written; clients keep sending. Nothing crashes, the
/// engine stops cleanly and no descriptor is left behind.
#[test]
fn closes_with_receives_and_sends_in_flight() {
    if !uring_available() {
        return;
    }
    struct CloseAfter(Arc<AtomicUsize>);
    impl EventHandler for CloseAfter {
        type State = usize;
        fn on_open(&mut self, conn: &mut Conn<'_, usize>) -> Action {
            conn.set_state(0);
            Action::None
        }
        fn on_traffic(&mut self, conn: &mut Conn<'_, usize>) -> Action {
            let data = conn.read_all().to_vec();
            let _ = conn.write(&data);
            let _ = conn.write(&vec![7u8; 256 * 1024]); // more than the socket takes
            let seen = conn.state_mut().map_or(0, |n| {
                *n += 1;
                *n
            });
            // Closing with the big reply still being written and the
            // client still sending.
            let _ = seen;
            self.0.fetch_add(1, Ordering::Relaxed);
            Action::Close
        }
    }
    let before = fd_count();
    let closed = Arc::new(AtomicUsize::new(0));
    let c2 = closed.clone();
    let server = Running::start(
        Engine::builder(move |_| CloseAfter(c2.clone()))
            .listen("tcp://127.0.0.1:0")
            .backend(Backend::IoUring)
            .loops(2),
    );
    let addr = server.tcp_addr(0);
    let received = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let received = received.clone();
            thread::spawn(move || {
                for _ in 0..10 {
                    let Ok(c) = TcpStream::connect(addr) else {
                        continue;
                    };
                    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
                    c.set_read_timeout(Some(PATIENCE)).unwrap();
                    let mut w = c.try_clone().unwrap();
                    let writer = thread::spawn(move || {
                        for _ in 0..50 {
                            if w.write_all(&[1u8; 1000]).is_err() {
                                break;
                            }
                        }
                    });
                    // (A close with the client's input unread may reset:
                    // how much of the reply arrives is not the point.)
                    let got = read_to_end(&mut &c);
                    received.fetch_add(got.len(), Ordering::Relaxed);
                    writer.join().unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    wait_until("every connection closed", || {
        server.engine.connection_count() == 0
    });
    assert!(closed.load(Ordering::Relaxed) > 0, "the server closed none");
    assert!(
        received.load(Ordering::Relaxed) > 0,
        "no reply reached a client"
    );
    server.stop();
    wait_until("descriptors back to the start", || fd_count() <= before);
}

/// The engine stops while clients stream: receives are armed and replies
/// queued; `run` returns `Ok` and descriptors go back.
#[test]
fn stop_with_operations_in_flight() {
    if !uring_available() {
        return;
    }
    let before = fd_count();
    let server = echo_server(Backend::IoUring, 2);
    let addr = server.tcp_addr(0);
    let stop = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut c = tcp_client(addr);
                c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
                while stop.load(Ordering::Relaxed) == 0 {
                    if c.write_all(&[3u8; 16 * 1024]).is_err() {
                        break; // closed by the stop (we never read: it fills up)
                    }
                }
            })
        })
        .collect();
    wait_until("clients connected", || {
        server.engine.connection_count() == 8
    });
    thread::sleep(Duration::from_millis(100));
    server.stop();
    stop.store(1, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    wait_until("descriptors back to the start", || fd_count() <= before);
}

/// Connect/echo/close cycles and a crowd of idle connections: the
/// descriptor count comes back to where it started (bounded in time, not in
/// cycles, so a slow machine runs fewer).
#[test]
fn connect_close_cycles_and_many_connections_leave_no_descriptors() {
    if !uring_available() {
        return;
    }
    let before = fd_count();
    let server = echo_server(Backend::IoUring, 2);
    let addr = server.tcp_addr(0);
    let started = Instant::now();
    let mut cycles = 0;
    while cycles < 20_000 && started.elapsed() < Duration::from_secs(10) {
        let mut c = tcp_client(addr);
        if cycles % 2 == 0 {
            echo_round_trip(&mut c, b"x");
        }
        drop(c);
        cycles += 1;
    }
    assert!(cycles >= 100, "only {cycles} cycles");
    let mut crowd = Vec::new();
    for _ in 0..3000 {
        crowd.push(tcp_client(addr));
    }
    wait_until("the crowd is open", || {
        server.engine.connection_count() == 3000
    });
    for c in crowd.iter_mut().step_by(97) {
        echo_round_trip(c, b"alive");
    }
    drop(crowd);
    wait_until("every connection closed", || {
        server.engine.connection_count() == 0
    });
    eprintln!("{cycles} connect/close cycles");
    server.stop();
    wait_until("descriptors back to the start", || fd_count() <= before);
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        if Instant::now() >= deadline {
            let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .map(|p| p.display().to_string())
                .collect();
            panic!(
                "timed out waiting: {what} ({} descriptors: {fds:?})",
                fds.len()
            );
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Every server example takes the driver on its command line (`--backend`;
/// `--driver` in the proxy, whose `--backend` is its upstream) and says on
/// its "listening" line which one it runs on.
#[test]
fn the_server_examples_take_the_backend_and_print_it() {
    use common::deploy_example::Example;
    let mut drivers = vec!["epoll"];
    if uring_available() {
        drivers.push("io-uring");
    }
    let upstream = echo_server(Backend::Epoll, 1);
    let upstream_url = format!("tcp://{}", upstream.tcp_addr(0));
    for driver in drivers {
        for name in ["echo", "echo_pool", "codec", "http", "kv", "push", "proxy"] {
            let mut args = vec!["--loops", "1"];
            if name == "proxy" {
                args.extend(["--listen", "tcp://127.0.0.1:0", "--backend", &upstream_url]);
                args.extend(["--driver", driver]);
            } else {
                args.extend(["tcp://127.0.0.1:0", "--backend", driver]);
            }
            let example = Example::start(name, &args, 1);
            let line = example
                .output()
                .into_iter()
                .find(|l| l.contains(" listening on "))
                .expect("a listening line");
            assert!(line.ends_with(&format!(" on {driver}")), "{name}: {line}");
            example.stop();
        }
    }
    upstream.stop();
    let refused = Command::new(common::example::example_binary("echo"))
        .args(["tcp://127.0.0.1:0", "--backend", "kqueue"])
        .output()
        .expect("run echo");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a bad --backend is a usage error"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("kqueue"));
}

/// The completion driver gathers receives into batches (a wait for
/// several completions, bounded by the kernel's min-wait): many busy
/// connections grow the batch, and a request that then comes alone must
/// still be answered at once, not wait for a batch that never fills (the
/// loop has no timer here: a wait that is not bounded would never end).
#[test]
fn a_lone_request_after_a_busy_batch_is_answered_at_once() {
    if !uring_available() {
        return;
    }
    lone_request_after_busy_batch();
}

/// The same on a kernel without the min-wait (simulated: batched waits
/// off): the loop waits for one completion at a time, as before.
#[test]
fn without_the_kernels_min_wait_the_loop_waits_per_completion() {
    run_child("child_without_min_wait", &[("RINGLOOP_URING_BATCH", "0")]);
}

#[test]
#[ignore = "run by without_the_kernels_min_wait_the_loop_waits_per_completion in a child process"]
fn child_without_min_wait() {
    if !uring_available() {
        return;
    }
    lone_request_after_busy_batch();
}

/// The same on a kernel without deferred task running (simulated: the
/// ring set up with cooperative task running, as before 6.1).
#[test]
fn without_deferred_task_running_batched_waits_still_answer_at_once() {
    run_child("child_without_defer", &[("RINGLOOP_URING_DEFER", "0")]);
}

#[test]
#[ignore = "run by without_deferred_task_running_batched_waits_still_answer_at_once in a child process"]
fn child_without_defer() {
    if !uring_available() {
        return;
    }
    lone_request_after_busy_batch();
}

fn lone_request_after_busy_batch() {
    let server = echo_server(Backend::IoUring, 1);
    let addr = server.tcp_addr(0);
    // 32 connections in lockstep: each turn finds many with input.
    let busy: Vec<_> = (0..32u64)
        .map(|seed| {
            thread::spawn(move || {
                let mut c = tcp_client(addr);
                for round in 0..200 {
                    echo_round_trip(&mut c, &payload(seed * 1000 + round, 256));
                }
                c
            })
        })
        .collect();
    // Kept open (quiet): their closes would shrink the batch first.
    let quiet: Vec<TcpStream> = busy
        .into_iter()
        .map(|b| b.join().expect("a busy client"))
        .collect();
    // Now one connection alone, one request at a time. A reply held back
    // for a batch would hit the read timeout.
    let mut lone = tcp_client(addr);
    lone.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for round in 0..100 {
        echo_round_trip(&mut lone, &payload(round, 100));
    }
    drop(quiet);
    server.stop();
}

/// The loop's connection lifetimes with a registered file table
/// (`RINGLOOP_URING_FIXED=1`: operations name table entries, which a close
/// must empty before the slot is reused): closes and a stop with receives
/// and sends in flight, and connect/close cycles beside a crowd, leave no
/// descriptor (nor socket: a table entry left behind would keep one open,
/// and the clients reading to the end would hang).
#[test]
fn with_registered_files_closes_stops_and_cycles_leave_no_descriptors() {
    run_child("child_with_fixed_files", &[("RINGLOOP_URING_FIXED", "1")]);
}

#[test]
#[ignore = "run by with_registered_files_closes_stops_and_cycles_leave_no_descriptors in a child process"]
fn child_with_fixed_files() {
    closes_with_receives_and_sends_in_flight();
    stop_with_operations_in_flight();
    connect_close_cycles_and_many_connections_leave_no_descriptors();
}
