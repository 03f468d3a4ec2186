//! [`SocketSink`]: where a TLS connection's ciphertext goes.
//!
//! Owns handing records to the socket, or to the connection's outbound
//! queue behind what is already queued (always to the queue for a
//! connection whose sends go through the io_uring driver: the loop hands
//! the queue to the ring when it settles the connection). It never encrypts
//! and never keeps bytes itself.

use std::io::{self, IoSlice};
use std::os::fd::BorrowedFd;

use crate::buffer::OutboundQueue;
use crate::sys;

/// Where ciphertext goes: straight to the socket while the connection has
/// nothing queued, into its outbound queue otherwise (and for whatever the
/// socket does not take). It always takes everything, so rustls never keeps
/// ciphertext, and byte order is kept.
pub(crate) struct SocketSink<'a> {
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) queue: &'a mut OutboundQueue,
    pub(crate) cap: usize,
    /// Writing to the socket is allowed (`false`: the connection's sends go
    /// through the io_uring driver, so every record is queued for it).
    pub(crate) direct: bool,
    /// Bytes the socket took.
    pub(crate) written: usize,
}

impl SocketSink<'_> {
    /// Sends `buf` (one write while nothing is queued) and queues what the
    /// socket does not take: it always takes everything.
    pub(crate) fn put(&mut self, buf: &[u8]) -> io::Result<()> {
        let sent = self.write_direct(|fd| sys::io::write(fd, buf))?;
        self.written += sent;
        if sent < buf.len() {
            self.queue.push(&buf[sent..], self.cap);
        }
        Ok(())
    }

    /// Sends `first` and then `buf` as [`put`](Self::put) would send them
    /// one after the other, but in one gathered write while nothing is
    /// queued: a handshake's last flight (the session tickets) and the
    /// first records sealed after it leave in one system call, not two.
    /// Empty slices are skipped.
    pub(crate) fn put_after(&mut self, first: &[u8], buf: &[u8]) -> io::Result<()> {
        if first.is_empty() || buf.is_empty() {
            return match (first.is_empty(), buf.is_empty()) {
                (true, true) => Ok(()),
                (true, false) => self.put(buf),
                _ => self.put(first),
            };
        }
        let sent =
            self.write_direct(|fd| sys::io::writev(fd, &[IoSlice::new(first), IoSlice::new(buf)]))?;
        self.written += sent;
        if sent < first.len() {
            self.queue.push(&first[sent..], self.cap);
            self.queue.push(buf, self.cap);
        } else if sent - first.len() < buf.len() {
            self.queue.push(&buf[sent - first.len()..], self.cap);
        }
        Ok(())
    }

    /// Runs `write` on the socket when writing to it is allowed and nothing
    /// is queued (bytes must not overtake the queue); the bytes it took, 0
    /// when it was not run or the socket was full.
    fn write_direct(
        &self,
        write: impl FnOnce(BorrowedFd<'_>) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if !self.direct || !self.queue.is_empty() {
            return Ok(0);
        }
        match write(self.fd) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
            result => result,
        }
    }
}

/// A sink for a connection's socket and queue; `direct`: it may write to
/// the socket (see [`SocketSink::direct`]).
pub(crate) fn sink<'a>(
    fd: BorrowedFd<'a>,
    queue: &'a mut OutboundQueue,
    cap: usize,
    direct: bool,
) -> SocketSink<'a> {
    SocketSink {
        fd,
        queue,
        cap,
        direct,
        written: 0,
    }
}
