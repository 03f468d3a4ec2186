//! A loop that owns its listeners (one loop, or reuseport mode) accepts
//! through io_uring on the io_uring driver (a multishot accept per
//! listener, TCP and Unix) instead of watching them with its epoll
//! instance; on epoll it watches them with epoll. Checked from the outside:
//! `/proc/self/fdinfo` of every epoll instance of the process lists the
//! descriptors it watches (`tfd:` lines), and `SO_ACCEPTCONN` tells which
//! descriptors are listeners. One test in this binary, so the only
//! listeners in the process are the ones it starts.
//!
//! With an upgrade socket the listeners stay with epoll on both drivers
//! (their backlog is shared with the next process).
//!
//! What accepting does (limits, out-of-descriptor pauses, the balancers,
//! reuseport, a stop) is tested by the rest of the suite, which runs once
//! on each driver (tests/emfile.rs, limits.rs, modes.rs, inline_accept.rs).

mod common;

use std::collections::HashSet;
use std::os::fd::BorrowedFd;

use common::*;
use ringloop::{Backend, Engine};

/// The descriptors of this process that are listening sockets bound to
/// TCP `port` or Unix `path` (the engine's listeners, not its upgrade
/// socket).
fn listening_fds(port: u16, path: &std::path::Path) -> HashSet<i32> {
    use nix::sys::socket::{getsockname, getsockopt, sockopt, SockaddrStorage};
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&fd| {
            // SAFETY: only asks the kernel about the number; a descriptor
            // closed meanwhile makes getsockopt fail, which is a `false`.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            if !getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false) {
                return false;
            }
            let Ok(local) = getsockname::<SockaddrStorage>(fd) else {
                return false;
            };
            let tcp = local.as_sockaddr_in().is_some_and(|a| a.port() == port);
            let unix = local
                .as_unix_addr()
                .and_then(|u| u.path())
                .is_some_and(|p| p == path);
            tcp || unix
        })
        .collect()
}

/// Every descriptor watched by an epoll instance of this process.
fn epoll_watched_fds() -> HashSet<i32> {
    let mut watched = HashSet::new();
    for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_epoll = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().contains("eventpoll"));
        if !is_epoll {
            continue;
        }
        let info = format!("/proc/self/fdinfo/{}", entry.file_name().to_string_lossy());
        let Ok(text) = std::fs::read_to_string(info) else {
            continue;
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("tfd:") {
                if let Some(fd) = rest.split_whitespace().next().and_then(|n| n.parse().ok()) {
                    watched.insert(fd);
                }
            }
        }
    }
    watched
}

#[test]
fn on_io_uring_a_loop_accepts_through_the_ring_not_through_epoll() {
    let mut backends = vec![Backend::Epoll];
    if uring_available() {
        backends.push(Backend::IoUring);
    }
    for backend in backends {
        // (reuseport, an upgrade socket)
        for (reuse_port, upgradable) in [(false, false), (true, false), (false, true)] {
            let dir = TempDir::new("uring-accept");
            let loops = if reuse_port { 2 } else { 1 };
            let mut builder = Engine::builder(|_| Echo)
                .listen("tcp://127.0.0.1:0")
                .listen(format!("unix://{}", dir.join("echo.sock").display()))
                .backend(backend)
                .loops(loops)
                .reuse_port(reuse_port);
            if upgradable {
                builder = builder.upgrade_socket(dir.join("upgrade.sock"));
            }
            let server = Running::start(builder);
            // Connections are accepted and served on both listeners.
            for _ in 0..3 {
                echo_round_trip(&mut tcp_client(server.tcp_addr(0)), b"over tcp");
                echo_round_trip(&mut unix_client(&server.unix_path(1)), b"over unix");
            }
            let listeners = listening_fds(server.tcp_addr(0).port(), &server.unix_path(1));
            // TCP and Unix, one per loop with reuseport (the Unix one is
            // shared: one socket, each loop holding a duplicate or not).
            assert!(listeners.len() >= 2, "{backend:?}: listeners {listeners:?}");
            let watched = epoll_watched_fds();
            let in_epoll: Vec<_> = listeners.intersection(&watched).collect();
            match backend {
                // With an upgrade socket the backlog is shared with the next
                // process: the listeners stay with epoll.
                Backend::IoUring if !upgradable => assert!(
                    in_epoll.is_empty(),
                    "reuseport {reuse_port}: listeners {in_epoll:?} are still watched by epoll"
                ),
                // TCP and Unix each watched (an engine with an upgrade
                // socket also keeps unwatched copies for the handoff).
                _ => assert!(
                    in_epoll.len() >= 2,
                    "{backend:?}, reuseport {reuse_port}, upgradable {upgradable}: \
                     epoll watches {in_epoll:?} of {listeners:?}"
                ),
            }
            server.stop();
        }
    }
}
