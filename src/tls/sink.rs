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

#[cfg(test)]
mod tests {
    use std::io::{IoSlice, Read};
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    use super::sink;
    use crate::buffer::OutboundQueue;
    use crate::sys;

    fn bytes(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// Reads everything the socket holds into `got` while writing the
    /// queue to it, as the loop's flush does, until the queue is empty.
    fn drain(from: &mut UnixStream, to: &UnixStream, queue: &mut OutboundQueue, got: &mut Vec<u8>) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            loop {
                match from.read(&mut buf) {
                    Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                    _ => break,
                }
            }
            if queue.is_empty() {
                return;
            }
            let mut slices = [IoSlice::new(&[]); 8];
            let n = queue.slices(&mut slices);
            match sys::io::writev(to.as_fd(), &slices[..n]) {
                Ok(sent) => queue.consume(sent),
                Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock),
            }
        }
    }

    /// The partial-write branches, on a socket with a small send buffer
    /// whose peer does not read while the sink writes: a gathered write
    /// cut inside its first part and inside its second, a plain write cut
    /// short, and writes while bytes are queued (queued behind them, never
    /// written first); what the socket did not take goes out, in order,
    /// nothing lost or sent twice.
    #[test]
    fn what_the_socket_does_not_take_is_queued_in_order() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_nonblocking(true).unwrap();
        sys::socket::set_send_buffer_size(ours.as_fd(), 4096).unwrap();
        let mut queue = OutboundQueue::default();
        let mut expect = Vec::new();
        let mut got = Vec::new();

        // Cut inside `first`.
        let (first, buf) = (bytes(1, 300_000), bytes(2, 1000));
        let mut to = sink(ours.as_fd(), &mut queue, 16 * 1024, true);
        to.put_after(&first, &buf).unwrap();
        let sent = to.written;
        assert!(sent > 0 && sent < first.len(), "{sent} of the first part");
        // Queued bytes go first: these are queued, none written.
        to.put(&bytes(3, 10)).unwrap();
        to.put_after(&bytes(4, 20), &bytes(5, 30)).unwrap();
        assert_eq!(to.written, sent, "nothing overtakes the queue");
        assert_eq!(queue.len(), first.len() + buf.len() + 60 - sent);
        for part in [first, buf, bytes(3, 10), bytes(4, 20), bytes(5, 30)] {
            expect.extend(part);
        }
        drain(&mut peer, &ours, &mut queue, &mut got);

        // Cut inside `buf`.
        let (first, buf) = (bytes(6, 100), bytes(7, 300_000));
        let mut to = sink(ours.as_fd(), &mut queue, 16 * 1024, true);
        to.put_after(&first, &buf).unwrap();
        let sent = to.written;
        assert!(
            sent > first.len() && sent < first.len() + buf.len(),
            "{sent}"
        );
        assert_eq!(queue.len(), first.len() + buf.len() - sent);
        expect.extend(first);
        expect.extend(buf);
        drain(&mut peer, &ours, &mut queue, &mut got);

        // A plain write cut short, and one into a full socket.
        let mut to = sink(ours.as_fd(), &mut queue, 16 * 1024, true);
        to.put(&bytes(8, 300_000)).unwrap();
        let sent = to.written;
        assert!(sent > 0 && sent < 300_000, "{sent}");
        expect.extend(bytes(8, 300_000));
        drain(&mut peer, &ours, &mut queue, &mut got);
        let mut filled = 0;
        while let Ok(n) = sys::io::write(ours.as_fd(), &[9; 4096]) {
            filled += n;
        }
        expect.extend(std::iter::repeat_n(9, filled));
        let mut to = sink(ours.as_fd(), &mut queue, 16 * 1024, true);
        to.put_after(&bytes(10, 500), &bytes(11, 500)).unwrap();
        assert_eq!(to.written, 0);
        assert_eq!(queue.len(), 1000);
        expect.extend(bytes(10, 500));
        expect.extend(bytes(11, 500));
        drain(&mut peer, &ours, &mut queue, &mut got);
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "the stream differs");
    }

    /// A sink that may not write (the io_uring driver's) queues all.
    #[test]
    fn a_sink_that_may_not_write_queues_everything_in_order() {
        let (ours, mut peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_nonblocking(true).unwrap();
        let mut queue = OutboundQueue::default();
        let mut to = sink(ours.as_fd(), &mut queue, 16 * 1024, false);
        to.put_after(&bytes(1, 70_000), &bytes(2, 5)).unwrap();
        to.put(&bytes(3, 7)).unwrap();
        assert_eq!(to.written, 0);
        assert_eq!(queue.len(), 70_012);
        let mut got = Vec::new();
        drain(&mut peer, &ours, &mut queue, &mut got);
        assert!(got == [bytes(1, 70_000), bytes(2, 5), bytes(3, 7)].concat());
    }
}
