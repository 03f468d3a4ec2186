//! [`Listener`]: one bound, listening socket of the engine.
//!
//! Owns the listening fd and, for Unix sockets, the socket file, which it
//! removes when dropped. It must never accept (the acceptor, or a loop
//! accepting inline, does that through `crate::accept`).

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use crate::addr::{ListenAddr, SockAddr, Transport};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::sys;

/// The sockets a loop serves by itself: its own listeners in reuseport mode
/// (it accepts on them inline) and its own UDP sockets. Each is paired with
/// its listen-address index.
#[derive(Default)]
pub(crate) struct LoopSockets {
    pub(crate) listeners: Vec<(Listener, u16)>,
    pub(crate) udp: Vec<(OwnedFd, u16)>,
}

pub(crate) struct Listener {
    pub(crate) fd: OwnedFd,
    /// The address actually bound (the real port when port 0 was asked for).
    pub(crate) addr: ListenAddr,
    unix_path: Option<PathBuf>,
}

impl Listener {
    /// Binds and listens on `addr` (a stream address) with the engine's
    /// socket options; `reuse_port` lets several loops bind the same port.
    /// A TCP listener carries the engine's `TCP_NODELAY`: the sockets it
    /// accepts inherit it (no `setsockopt` per connection).
    pub(crate) fn bind(addr: &ListenAddr, options: &Options, reuse_port: bool) -> Result<Self> {
        let listen = listen_options(options, reuse_port);
        match (addr.transport(), addr.sock_addr()) {
            (Transport::Tcp, SockAddr::Inet(sa)) => {
                let fd = sys::socket::tcp_listener(*sa, &listen)
                    .map_err(|e| Error::io("listen on a TCP address", e))?;
                let bound =
                    sys::socket::local_addr(fd.as_fd()).map_err(|e| Error::io("getsockname", e))?;
                Ok(Self {
                    fd,
                    addr: addr.with_sock_addr(bound),
                    unix_path: None,
                })
            }
            (Transport::Unix, SockAddr::Unix(Some(path))) => {
                let fd = sys::socket::unix_listener(path, &listen)
                    .map_err(|e| Error::io("listen on a Unix socket", e))?;
                Ok(Self {
                    fd,
                    addr: addr.clone(),
                    unix_path: Some(path.clone()),
                })
            }
            (Transport::Udp, _) => Err(Error::Unsupported("a UDP address has no listener")),
            _ => Err(Error::invalid_address(
                &addr.to_string(),
                "address does not match its scheme",
            )),
        }
    }

    /// Binds a UDP socket for one loop (always `SO_REUSEPORT`, so every
    /// loop can bind the same address and the kernel spreads datagrams).
    /// `first` is the engine's first socket on this address (the one that
    /// checks the port is free); the others join it.
    pub(crate) fn bind_udp(
        addr: &ListenAddr,
        options: &Options,
        first: bool,
    ) -> Result<(OwnedFd, ListenAddr)> {
        let SockAddr::Inet(sa) = addr.sock_addr() else {
            return Err(Error::invalid_address(
                &addr.to_string(),
                "UDP needs an IP address",
            ));
        };
        let mut sa = *sa;
        if first && !options.reuse_port {
            // Every loop binds the port with SO_REUSEPORT; outside reuseport
            // mode a port already in use must be refused (as TCP refuses it),
            // not silently shared. A plain bind tells, and picks port 0's port.
            let probe = sys::socket::udp_socket(sa, &udp_options(options, false))
                .map_err(|e| Error::io("bind a UDP socket", e))?;
            let bound =
                sys::socket::local_addr(probe.as_fd()).map_err(|e| Error::io("getsockname", e))?;
            if let SockAddr::Inet(b) = bound {
                sa = b;
            }
        }
        let fd = sys::socket::udp_socket(sa, &udp_options(options, true))
            .map_err(|e| Error::io("bind a UDP socket", e))?;
        let bound = sys::socket::local_addr(fd.as_fd()).map_err(|e| Error::io("getsockname", e))?;
        Ok((fd, addr.with_sock_addr(bound)))
    }

    /// Wraps a listening socket this process did not bind: inherited (a
    /// Unix socket's file then belongs to whoever made it) or handed over
    /// by the process it replaces (`owns_file`: the file is this process's
    /// to remove at exit, like one it bound).
    /// A TCP listener gets the engine's `TCP_NODELAY`, which the sockets it
    /// accepts inherit (see [`Listener::bind`]).
    pub(crate) fn adopt(fd: OwnedFd, addr: ListenAddr, owns_file: bool, options: &Options) -> Self {
        let unix_path = match addr.sock_addr() {
            SockAddr::Unix(Some(path)) if owns_file => Some(path.clone()),
            _ => None,
        };
        if addr.transport() == Transport::Tcp {
            if let Err(e) = sys::socket::set_nodelay(fd.as_fd(), options.tcp_nodelay) {
                log::warn!("could not set TCP_NODELAY on the listener {addr}: {e}");
            }
        }
        Self {
            fd,
            addr,
            unix_path,
        }
    }

    /// Gives up the Unix socket file: it will not be removed on drop (the
    /// socket went to another process, which serves the path now).
    pub(crate) fn keep_socket_file(&mut self) {
        self.unix_path = None;
    }

    pub(crate) fn is_tcp(&self) -> bool {
        self.addr.transport() == Transport::Tcp
    }
}

fn listen_options(options: &Options, reuse_port: bool) -> sys::socket::ListenOptions {
    sys::socket::ListenOptions {
        reuse_addr: options.reuse_addr,
        reuse_port,
        backlog: options.listen_backlog,
        recv_buffer: options.recv_buffer_size,
        send_buffer: options.send_buffer_size,
        nodelay: options.tcp_nodelay,
    }
}

/// UDP never gets `SO_REUSEADDR`: on a datagram socket it lets any other
/// socket share the port, which would silently split the traffic.
fn udp_options(options: &Options, reuse_port: bool) -> sys::socket::ListenOptions {
    sys::socket::ListenOptions {
        reuse_addr: false,
        ..listen_options(options, reuse_port)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Some(path) = &self.unix_path {
            if let Err(e) = std::fs::remove_file(path) {
                log::debug!("could not remove socket file {}: {e}", path.display());
            }
        }
    }
}
