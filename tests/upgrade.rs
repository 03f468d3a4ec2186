//! Upgrades that drop nothing, over real sockets: `examples/echo --upgrade
//! PATH` replaced five times in a row while clients keep connecting,
//! echoing for about a second and closing (acceptor and reuseport modes):
//! no connection refused, reset or timed out, every byte echoed exactly,
//! each old process gone soon after its last connection, no descriptor left
//! behind. Also: a handoff the new process cannot complete leaves the old
//! one serving; a stale control socket file is replaced; in-process, the
//! draining engine tells its handlers and stops at the upgrade deadline.

mod common;
use common::deploy_example as example;
#[path = "common/load.rs"]
mod load;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use example::Example;
use load::{Load, CONN_LIFE};
use ringloop::{Action, Conn, Engine, EventHandler, LoopContext};

/// A process's open descriptors by kind (`socket`, `pipe`, `anon_inode`,
/// paths).
fn fds(pid: u32) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|l| l.display().to_string())
        .map(|l| l.split(":[").next().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

/// `fds(pid)` once it stopped changing.
fn settled_fds(pid: u32) -> Vec<String> {
    let mut last = fds(pid);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = fds(pid);
        if now == last {
            return now;
        }
        last = now;
    }
}

fn echo_args(path: &std::path::Path, addr: &str, reuseport: bool) -> Vec<String> {
    let mut args = vec![
        addr.to_string(),
        "--upgrade".into(),
        path.display().to_string(),
        "--loops".into(),
        "2".into(),
    ];
    if reuseport {
        args.push("--reuseport".into());
    }
    args
}

fn five_upgrades_under_load(reuseport: bool) {
    let dir = TempDir::new("upgrade");
    let path = dir.join("upgrade.sock");
    let mut current = Example::start("echo", &echo_args(&path, "tcp://127.0.0.1:0", reuseport), 1);
    let addr = current.tcp_addr(0);
    let url = format!("tcp://{addr}");
    // Every actor thread is up (pollers made) once connections are served;
    // then the descriptors settle.
    for _ in 0..4 {
        echo_round_trip(&mut tcp_client(addr), b"warm up");
    }
    let baseline_fds = settled_fds(current.pid());
    let (load, clients) = Load::start(addr, 6);
    std::thread::sleep(Duration::from_millis(500));
    for upgrade in 1..=5 {
        let started = Instant::now();
        let next = Example::start("echo", &echo_args(&path, &url, reuseport), 1);
        assert_eq!(
            next.tcp_addr(0),
            addr,
            "upgrade {upgrade} serves the same port"
        );
        // The old one finishes its connections (about CONN_LIFE) and exits;
        // far sooner than the 30 s deadline.
        let status = current
            .wait_exit(Duration::from_secs(20))
            .unwrap_or_else(|| panic!("upgrade {upgrade}: the old process is still running"));
        assert!(
            status.success(),
            "upgrade {upgrade}: {status} {:?}",
            current.output()
        );
        let took = started.elapsed();
        assert!(
            took < CONN_LIFE + Duration::from_secs(10),
            "upgrade {upgrade}: the old process took {took:?} to exit"
        );
        current = next;
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(300));
    let errors = load.finish(clients);
    assert!(
        errors.is_empty(),
        "{} failed connections: {errors:?}",
        errors.len()
    );
    let done = load.connections.load(Ordering::Relaxed);
    assert!(done >= 12, "only {done} connections completed");
    // Nothing left behind: the last process holds what the first did.
    let deadline = Instant::now() + PATIENCE;
    while fds(current.pid()) != baseline_fds && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fds(current.pid()), baseline_fds, "descriptors left behind");
    current.stop();
    assert!(
        !path.exists(),
        "the last process removes its control socket"
    );
    eprintln!(
        "{} connections, {} bytes echoed through 5 upgrades, 0 errors",
        done,
        load.bytes.load(Ordering::Relaxed)
    );
}

#[test]
fn five_upgrades_under_load_drop_nothing() {
    five_upgrades_under_load(false);
}

#[test]
fn five_upgrades_under_load_drop_nothing_in_reuseport_mode() {
    five_upgrades_under_load(true);
}

#[test]
fn a_failed_handoff_leaves_the_old_process_serving() {
    let dir = TempDir::new("upgrade-refused");
    let path = dir.join("upgrade.sock");
    let mut old = Example::start("echo", &echo_args(&path, "tcp://127.0.0.1:0", false), 1);
    let addr = old.tcp_addr(0);
    let mut held = tcp_client(addr);
    echo_round_trip(&mut held, b"before");
    // The new process takes the socket, then cannot bind its second
    // address: it exits with the error, and never says READY.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut args = echo_args(&path, &format!("tcp://{addr}"), false);
    args.push(format!("tcp://{}", busy.local_addr().unwrap()));
    let mut failed = Example::start("echo", &args, 0);
    let status = failed.wait_exit(PATIENCE).expect("the new process exits");
    assert!(!status.success());
    let out = failed.output().join("\n");
    assert!(out.contains("in use"), "{out}");
    // The old one goes on: old connections, new connections, and a later
    // upgrade.
    assert!(
        old.try_exit().is_none(),
        "the old process must keep serving"
    );
    echo_round_trip(&mut held, b"after");
    echo_round_trip(&mut tcp_client(addr), b"a new connection");
    drop(held);
    let next = Example::start(
        "echo",
        &echo_args(&path, &format!("tcp://{addr}"), false),
        1,
    );
    assert!(old.wait_exit(PATIENCE).expect("drained and gone").success());
    echo_round_trip(&mut tcp_client(addr), b"served by the next one");
    next.stop();
}

#[test]
fn a_stale_control_socket_is_replaced() {
    let dir = TempDir::new("upgrade-stale");
    let path = dir.join("upgrade.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // the file stays
    assert!(path.exists());
    let first = Example::start("echo", &echo_args(&path, "tcp://127.0.0.1:0", false), 1);
    let addr = first.tcp_addr(0);
    echo_round_trip(&mut tcp_client(addr), b"bound as usual");
    let mut first = first;
    let second = Example::start(
        "echo",
        &echo_args(&path, &format!("tcp://{addr}"), false),
        1,
    );
    assert!(first.wait_exit(PATIENCE).expect("handed over").success());
    echo_round_trip(&mut tcp_client(addr), b"upgraded");
    second.stop();
}

/// Echoes; counts `on_drain` calls.
#[derive(Clone, Default)]
struct Drainer {
    drains: Arc<AtomicUsize>,
}

impl EventHandler for Drainer {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        echo_now(conn)
    }
    fn on_drain(&mut self, _ctx: &mut LoopContext) -> Action {
        self.drains.fetch_add(1, Ordering::Relaxed);
        Action::None
    }
}

#[test]
fn the_old_engine_drains_until_the_deadline_in_process() {
    let dir = TempDir::new("upgrade-lib");
    let path = dir.join("upgrade.sock");
    let old_handler = Drainer::default();
    let h = old_handler.clone();
    let old = Running::start(
        Engine::builder(move |_| h.clone())
            .listen("tcp://127.0.0.1:0")
            .loops(2)
            .upgrade_socket(&path)
            .upgrade_deadline(Duration::from_millis(500)),
    );
    let addr = old.tcp_addr(0);
    let mut lingering = tcp_client(addr);
    echo_round_trip(&mut lingering, b"old");
    let started = Instant::now();
    let new = Running::start(
        Engine::builder(|_| Drainer::default())
            .listen(format!("tcp://{addr}"))
            .loops(2)
            .upgrade_socket(&path),
    );
    // build() returned: the old engine has stopped accepting.
    assert!(old.engine.is_draining());
    assert!(!new.engine.is_draining());
    wait_until("every old loop told", || {
        old_handler.drains.load(Ordering::Relaxed) == 2
    });
    // Old connections are still served; new ones go to the new engine.
    echo_round_trip(&mut lingering, b"still served while draining");
    echo_round_trip(&mut tcp_client(addr), b"new");
    wait_until("a connection on the new engine", || {
        new.engine.total_stats().connections_opened == 1
    });
    // The lingering connection keeps the old engine up until the deadline.
    old.join();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        read_to_end(&mut lingering).is_empty(),
        "closed at the deadline"
    );
    new.stop();
}

#[test]
fn udp_and_unix_listeners_go_over_too() {
    for reuseport in [false, true] {
        let dir = TempDir::new("upgrade-mixed");
        let path = dir.join("upgrade.sock");
        let unix = dir.join("echo.sock");
        let mut args = echo_args(&path, "tcp://127.0.0.1:0", reuseport);
        args.push("udp://127.0.0.1:0".into());
        args.push(format!("unix://{}", unix.display()));
        let mut old = Example::start("echo", &args, 3);
        let tcp = old.tcp_addr(0);
        let udp: std::net::SocketAddr = old.addrs[1]
            .strip_prefix("udp://")
            .unwrap()
            .parse()
            .unwrap();
        let mut held_unix = unix_client(&unix);
        echo_round_trip(&mut held_unix, b"old, over unix");
        let mut next_args = echo_args(&path, &format!("tcp://{tcp}"), reuseport);
        next_args.push(format!("udp://{udp}"));
        next_args.push(format!("unix://{}", unix.display()));
        let next = Example::start("echo", &next_args, 3);
        assert_eq!(next.addrs, old.addrs, "the same addresses, taken over");
        // The old process still serves its Unix connection, then goes.
        echo_round_trip(&mut held_unix, b"still served while draining");
        drop(held_unix);
        assert!(old.wait_exit(PATIENCE).expect("drained and gone").success());
        assert!(
            unix.exists(),
            "the old process leaves the socket file to the new one"
        );
        echo_round_trip(&mut tcp_client(tcp), b"tcp after the upgrade");
        echo_round_trip(&mut unix_client(&unix), b"unix after the upgrade");
        let u = udp_client();
        udp_round_trip(&u, udp, b"udp after the upgrade");
        next.stop();
        assert!(
            !unix.exists(),
            "the last process removes the file it served"
        );
    }
}

#[test]
fn garbage_on_the_control_socket_is_refused_and_changes_nothing() {
    use nix::sys::socket::{
        connect, recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
    };
    use std::os::fd::AsRawFd;
    let dir = TempDir::new("upgrade-garbage");
    let path = dir.join("upgrade.sock");
    let server = Running::start(
        Engine::builder(|_| Drainer::default())
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .upgrade_socket(&path),
    );
    let addr = server.tcp_addr(0);
    echo_round_trip(&mut tcp_client(addr), b"before");
    let fds_before = fd_count();
    let control = || {
        let s = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(s.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        s
    };
    // A client that connects and leaves at once is just forgotten.
    drop(control());
    for junk in [
        &b"GET / HTTP/1.1"[..],
        b"HELLO ringloop-upgrade/0",
        &[0xff; 300][..],
    ] {
        let s = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(s.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        send(s.as_raw_fd(), junk, MsgFlags::empty()).unwrap();
        let mut buf = [0u8; 256];
        let n = recv(s.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(reply.starts_with("REFUSED"), "{reply:?}");
    }
    assert!(!server.engine.is_draining());
    echo_round_trip(&mut tcp_client(addr), b"after");
    wait_until("no descriptor kept for the bad requests", || {
        fd_count() <= fds_before
    });
    // A real upgrade still works afterwards.
    let next = Running::start(
        Engine::builder(|_| Drainer::default())
            .listen(format!("tcp://{addr}"))
            .loops(1)
            .upgrade_socket(&path),
    );
    assert!(server.engine.is_draining());
    server.join();
    echo_round_trip(&mut tcp_client(addr), b"upgraded");
    next.stop();
}
