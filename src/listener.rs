//! [`Listener`]: one bound, listening socket of the engine.
//!
//! Owns the listening fd and, for Unix sockets, the socket file, which it
//! removes when dropped. It must never accept (the acceptor does that).

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use crate::addr::{ListenAddr, SockAddr, Transport};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::sys;

pub(crate) struct Listener {
    pub(crate) fd: OwnedFd,
    /// The address actually bound (the real port when port 0 was asked for).
    pub(crate) addr: ListenAddr,
    unix_path: Option<PathBuf>,
}

impl Listener {
    /// Binds and listens on `addr` with the engine's socket options.
    pub(crate) fn bind(addr: &ListenAddr, options: &Options) -> Result<Self> {
        let listen = sys::socket::ListenOptions {
            reuse_addr: options.reuse_addr,
            reuse_port: false,
            backlog: options.listen_backlog,
            recv_buffer: options.recv_buffer_size,
            send_buffer: options.send_buffer_size,
        };
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
            (Transport::Udp, _) => Err(Error::Unsupported("UDP listeners are not served yet")),
            _ => Err(Error::invalid_address(
                &addr.to_string(),
                "address does not match its scheme",
            )),
        }
    }

    pub(crate) fn is_tcp(&self) -> bool {
        self.addr.transport() == Transport::Tcp
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
