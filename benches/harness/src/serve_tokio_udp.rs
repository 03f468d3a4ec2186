//! The tokio UDP echo peer: `recv_from` into a buffer, `send_to` it back.
//!
//! With a `current_thread` runtime it is tokio's own example: one socket, one
//! task. With N worker threads it binds N sockets to the same port with
//! `SO_REUSEPORT` and runs one task per socket, so the kernel spreads the
//! peers over them the way it does over ringloop's per-loop UDP sockets (one
//! shared socket would leave all but one worker idle).

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::socket::{
    bind, setsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrStorage,
};
use tokio::net::UdpSocket;
use tokio::signal::unix::{signal, SignalKind};

use crate::serve_tokio::Runtime;
use crate::Result;

/// Largest datagram echoed (the most a UDP datagram over IPv4 can carry).
const MAX_DATAGRAM: usize = 65_536;

/// Serves until SIGINT or SIGTERM.
pub fn run(addr: SocketAddr, runtime: Runtime) -> Result<()> {
    let sockets = if runtime.current_thread {
        1
    } else {
        runtime.threads
    };
    // Bind before the runtime starts; the first bind picks the port when 0 is asked for.
    let first = bind_reuseport(addr)?;
    let bound = first.local_addr()?;
    let mut std_sockets = vec![first];
    for _ in 1..sockets {
        std_sockets.push(bind_reuseport(bound)?);
    }
    let rt = runtime.build()?;
    rt.block_on(async move {
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut tasks = Vec::new();
        for s in std_sockets {
            let socket = UdpSocket::from_std(s)?;
            tasks.push(tokio::spawn(echo(socket)));
        }
        println!(
            "tokio udp echo listening on udp://{bound} ({}, {sockets} socket(s) with SO_REUSEPORT)",
            runtime.describe()
        );
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        eprintln!("tokio udp echo: signal received, stopping");
        for t in tasks {
            t.abort();
        }
        Ok::<(), crate::BoxError>(())
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

fn bind_reuseport(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    let family = if addr.is_ipv4() {
        AddressFamily::Inet
    } else {
        AddressFamily::Inet6
    };
    let fd: OwnedFd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(addr),
    )?;
    Ok(std::net::UdpSocket::from(fd))
}

async fn echo(socket: UdpSocket) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            // ICMP errors from earlier sends surface here; they concern one peer.
            Err(_) => continue,
        };
        let _ = socket.send_to(&buf[..n], peer).await;
    }
}
