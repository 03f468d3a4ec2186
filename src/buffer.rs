//! [`OutboundQueue`]: the bytes a connection has been asked to write but the
//! socket has not taken yet.
//!
//! Owns only byte storage and the bookkeeping of partial writes; it never
//! touches a socket (the event loop hands its slices to `writev`). Byte order
//! is always preserved. An empty queue holds no heap memory, so an idle
//! connection costs only the queue's header: one pointer (its bookkeeping
//! is boxed while something is queued, and the boxes of emptied queues are
//! reused on the loop's thread, so queueing allocates nothing in steady
//! state). Its chunks come from and go back to the loop's
//! [`buffer_pool`](crate::buffer_pool).
//!
//! A completion driver (io_uring) takes the oldest bytes out with
//! [`OutboundQueue::lend`] (the front chunk itself when it can, so nothing is
//! copied) and owns them until the send completes; the queue keeps counting
//! them until [`OutboundQueue::consume`] says they went.

use std::collections::VecDeque;
use std::io::IoSlice;

use crate::buffer_pool;

/// Most slices handed to one `writev`.
pub(crate) const MAX_IOV: usize = 64;

/// Largest chunk (larger writes are split): offsets into a chunk then fit
/// the `u32` fields of the bookkeeping.
const MAX_CHUNK: usize = 1 << 30;

/// Capacity of the buffer a small write into an empty queue gets (see
/// `Queue::push`); larger writes, and writes behind others, use the pool.
const SMALL_CHUNK: usize = buffer_pool::SMALL;

/// Most emptied bookkeeping boxes a loop thread keeps for reuse.
const SPARE_QUEUES: usize = 256;
/// An emptied queue whose chunk list grew past this many entries is freed
/// rather than kept (a spare should not pin a burst's memory).
const SPARE_MAX_CHUNKS: usize = 16;

thread_local! {
    /// Emptied queues' boxes, for the next connection that queues bytes.
    #[allow(clippy::vec_box)] // whole boxes move in and out of queues
    static SPARES: std::cell::RefCell<Vec<Box<Queue>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The bytes a connection has been asked to write and the socket has not
/// taken yet: nothing at all (one null pointer) while it is empty, which is
/// what every idle connection is.
#[derive(Debug, Default)]
pub(crate) struct OutboundQueue {
    /// `Some` exactly while bytes are queued or lent (`len > 0`).
    inner: Option<Box<Queue>>,
}

#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of `chunks[0]` already written.
    head: u32,
    /// Unwritten bytes: in all chunks, plus those lent.
    len: usize,
    /// Bytes [`lend`](Self::lend) handed out and [`consume`](Self::consume)
    /// has not taken off yet: the oldest of `len`, no longer in `chunks`.
    lent: u32,
}

impl OutboundQueue {
    pub(crate) fn len(&self) -> usize {
        self.inner.as_ref().map_or(0, |q| q.len)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Bytes wait that no send holds yet (queued behind the lent ones).
    pub(crate) fn has_unlent(&self) -> bool {
        self.inner.as_ref().is_some_and(|q| q.len > q.lent as usize)
    }

    /// The bookkeeping, made (or taken from the spares) on first use.
    fn queue(&mut self) -> &mut Queue {
        self.inner.get_or_insert_with(|| {
            SPARES
                .try_with(|s| s.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_default()
        })
    }

    /// Appends a copy of `data`, coalescing small writes into blocks of at
    /// most `cap` bytes.
    pub(crate) fn push(&mut self, data: &[u8], cap: usize) {
        if !data.is_empty() {
            self.queue().push(data, cap);
        }
    }

    /// Appends an owned buffer without copying it.
    pub(crate) fn push_owned(&mut self, data: Vec<u8>) {
        if !data.is_empty() {
            self.queue().push_owned(data);
        }
    }

    /// Moves the oldest unsent bytes out for a send that owns them until it
    /// completes; they keep counting in [`len`](Self::len) until
    /// [`consume`](Self::consume). `None` while bytes are lent (one send at
    /// a time keeps the order) or when nothing is queued.
    ///
    /// The front chunk goes out as it is, without a copy, when it is whole
    /// and either alone or at least a pool class in size; smaller chunks
    /// are gathered (copied) into one pooled buffer of at most `max` bytes,
    /// so many small writes still leave in one send.
    pub(crate) fn lend(&mut self, max: usize) -> Option<Vec<u8>> {
        self.inner.as_mut()?.lend(max)
    }

    /// Counts `n` bytes sent from memory the queue never held (a received
    /// buffer sent back as it is) as queued and lent: nothing else may be
    /// queued or lent (`false`, and nothing counted, otherwise). They
    /// leave as lent bytes do, by [`consume`](Self::consume) or
    /// [`abandon_lent`](Self::abandon_lent).
    pub(crate) fn push_lent(&mut self, n: usize) -> bool {
        if !self.is_empty() || n == 0 || n > MAX_CHUNK {
            return false;
        }
        let q = self.queue();
        q.len = n;
        q.lent = n as u32; // at most MAX_CHUNK
        true
    }

    /// Forgets the lent bytes: the send that owned them failed or was
    /// cancelled, so they will never be consumed.
    pub(crate) fn abandon_lent(&mut self) {
        if let Some(q) = self.inner.as_mut() {
            q.abandon_lent();
        }
        self.free_if_empty();
    }

    /// Fills `out` with slices of the unwritten bytes, oldest first; returns
    /// how many it filled (none while bytes are lent).
    pub(crate) fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        self.inner.as_ref().map_or(0, |q| q.slices(out))
    }

    /// Marks `n` bytes as written.
    pub(crate) fn consume(&mut self, n: usize) {
        if let Some(q) = self.inner.as_mut() {
            q.consume(n);
        }
        self.free_if_empty();
    }

    /// Gives the bookkeeping back once nothing is queued or lent: an idle
    /// connection holds no memory for its queue.
    fn free_if_empty(&mut self) {
        if self.inner.as_ref().is_some_and(|q| q.len == 0) {
            if let Some(mut q) = self.inner.take() {
                q.head = 0;
                q.lent = 0;
                if q.chunks.capacity() <= SPARE_MAX_CHUNKS {
                    // (Chunks are gone already: `len == 0`.)
                    q.chunks.clear();
                    let _ = SPARES.try_with(|s| {
                        let mut s = s.borrow_mut();
                        if s.len() < SPARE_QUEUES {
                            s.push(q);
                        }
                    });
                }
            }
        }
    }
}

impl Queue {
    fn push(&mut self, data: &[u8], cap: usize) {
        if data.is_empty() {
            return;
        }
        if data.len() > MAX_CHUNK {
            for piece in data.chunks(MAX_CHUNK) {
                self.push(piece, cap);
            }
            return;
        }
        self.len += data.len();
        // Never append to the head chunk once part of it was written: its
        // offset bookkeeping stays simple, and it is about to go anyway.
        let is_head = self.chunks.len() == 1 && self.head > 0;
        if let Some(last) = self.chunks.back_mut() {
            if !is_head && last.len() + data.len() <= cap {
                if last.len() + data.len() > last.capacity()
                    && last.capacity() < buffer_pool::MIN_CLASS
                {
                    // A small chunk outgrown (more replies of the same
                    // turn): its bytes move into a pooled one, once,
                    // instead of the small one growing step by step.
                    let mut pooled = buffer_pool::take(
                        (last.len() + data.len()).max(cap.min(buffer_pool::MIN_CLASS)),
                    );
                    pooled.extend_from_slice(last);
                    *last = pooled;
                }
                last.extend_from_slice(data);
                return;
            }
        }
        // A small write into an empty queue (a reply waiting for the
        // ring, or for a socket that was full) gets a small buffer of its
        // own, not a pooled 4 KiB one: after a burst of such replies the
        // freed pool chunks would leave 4 KiB holes among the connections'
        // long-lived allocations that the allocator cannot return.
        let mut chunk = if self.chunks.is_empty() && data.len() <= SMALL_CHUNK {
            buffer_pool::take_small()
        } else {
            buffer_pool::take(data.len().max(cap.min(buffer_pool::MIN_CLASS)))
        };
        chunk.extend_from_slice(data);
        self.chunks.push_back(chunk);
    }

    fn push_owned(&mut self, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if data.len() > MAX_CHUNK {
            // (Copied: only for writes of over a gigabyte.)
            for piece in data.chunks(MAX_CHUNK) {
                self.push_owned(piece.to_vec());
            }
            return;
        }
        self.len += data.len();
        self.chunks.push_back(data);
    }

    fn lend(&mut self, max: usize) -> Option<Vec<u8>> {
        if self.lent > 0 || self.len == 0 {
            return None;
        }
        let front = self.chunks.front()?;
        if self.head == 0 && (self.chunks.len() == 1 || front.len() >= buffer_pool::MIN_CLASS) {
            let chunk = self.chunks.pop_front()?;
            self.lent = chunk.len() as u32; // at most MAX_CHUNK
            return Some(chunk);
        }
        let mut out = buffer_pool::take(self.len.min(max.max(1)));
        let room = out.capacity().min(max.max(1));
        while out.len() < room {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let rest = &front[self.head as usize..];
            let n = rest.len().min(room - out.len());
            out.extend_from_slice(&rest[..n]);
            if n == rest.len() {
                self.head = 0;
                if let Some(done) = self.chunks.pop_front() {
                    buffer_pool::give(done);
                }
            } else {
                self.head += n as u32; // n < rest.len() <= MAX_CHUNK
            }
        }
        self.lent = out.len() as u32; // at most max(MAX_CLASS, capacity)
        Some(out)
    }

    fn abandon_lent(&mut self) {
        self.len -= self.lent as usize;
        self.lent = 0;
    }

    fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        if self.lent > 0 {
            // Written now, these bytes would overtake the lent ones (or
            // leave a hole, if their send failed).
            return 0;
        }
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if n == out.len() {
                break;
            }
            let bytes = if i == 0 {
                &chunk[self.head as usize..]
            } else {
                &chunk[..]
            };
            out[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    fn consume(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        n = n.min(self.len);
        self.len -= n;
        let from_lent = n.min(self.lent as usize);
        self.lent -= from_lent as u32;
        n -= from_lent;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.len() - self.head as usize;
            if n >= left {
                n -= left;
                self.head = 0;
                if let Some(done) = self.chunks.pop_front() {
                    buffer_pool::give(done);
                }
            } else {
                self.head += n as u32; // n < left <= MAX_CHUNK
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(q: &OutboundQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = q.slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn keeps_order_across_partial_consumes() {
        let mut q = OutboundQueue::default();
        let mut expected = Vec::new();
        for i in 0..50u8 {
            let data = vec![i; (i as usize * 37) % 300 + 1];
            expected.extend_from_slice(&data);
            if i % 3 == 0 {
                q.push_owned(data);
            } else {
                q.push(&data, 1024);
            }
            if i % 7 == 0 {
                let n = q.len() / 3;
                q.consume(n);
                expected.drain(..n);
            }
        }
        assert_eq!(q.len(), expected.len());
        assert_eq!(collect(&q), expected);
        q.consume(q.len());
        assert!(q.is_empty());
        assert!(q.inner.is_none(), "an empty queue must free its memory");
    }

    #[test]
    fn coalesces_small_writes_up_to_cap() {
        let mut q = OutboundQueue::default();
        for _ in 0..100 {
            q.push(b"0123456789", 64);
        }
        assert_eq!(q.len(), 1000);
        let chunks = &q.inner.as_ref().expect("bytes queued").chunks;
        assert!(chunks.iter().all(|c| c.len() <= 64));
        assert_eq!(chunks.len(), 1000usize.div_ceil(60));
    }

    #[test]
    fn a_small_reply_gets_a_small_buffer_that_moves_to_a_pooled_one_when_outgrown() {
        let mut q = OutboundQueue::default();
        q.push(b"+OK\r\n", 64 * 1024);
        let chunks = &q.inner.as_ref().expect("bytes queued").chunks;
        assert_eq!(chunks.len(), 1);
        assert!(
            chunks[0].capacity() < buffer_pool::MIN_CLASS,
            "not a pooled 4 KiB chunk"
        );
        // More replies of the same turn: one chunk, now a pooled one, in order.
        let mut expected = b"+OK\r\n".to_vec();
        for i in 0..100u8 {
            q.push(&[i; 10], 64 * 1024);
            expected.extend_from_slice(&[i; 10]);
        }
        let chunks = &q.inner.as_ref().expect("bytes queued").chunks;
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].capacity() >= buffer_pool::MIN_CLASS);
        assert_eq!(collect(&q), expected);
        // Behind others, or too big to be small: the pool as before.
        let mut q = OutboundQueue::default();
        q.push(&[1u8; SMALL_CHUNK + 1], 64 * 1024);
        let chunks = &q.inner.as_ref().expect("bytes queued").chunks;
        assert!(chunks[0].capacity() >= buffer_pool::MIN_CLASS);
    }

    #[test]
    fn lends_the_front_chunk_without_a_copy_and_counts_it_until_consumed() {
        let mut q = OutboundQueue::default();
        q.push(&[7u8; 16 * 1024], 64 * 1024);
        let front = q.inner.as_ref().expect("bytes queued").chunks[0].as_ptr();
        let lent = q.lend(64 * 1024).expect("bytes to lend");
        assert_eq!(lent.as_ptr(), front, "the chunk itself, not a copy");
        assert_eq!(lent.len(), 16 * 1024);
        assert_eq!(q.len(), 16 * 1024, "lent bytes still count");
        assert!(q.lend(64 * 1024).is_none(), "one send at a time");
        assert!(!q.has_unlent(), "all of it is lent");
        // Written meanwhile: a new chunk, behind the lent bytes.
        q.push(b"later", 64 * 1024);
        assert!(q.has_unlent(), "bytes wait behind the lent ones");
        assert!(collect(&q).is_empty(), "nothing may overtake lent bytes");
        q.consume(1000);
        assert_eq!(q.len(), 16 * 1024 - 1000 + 5);
        q.consume(16 * 1024 - 1000);
        assert_eq!(q.lend(64 * 1024).as_deref(), Some(&b"later"[..]));
        q.consume(5);
        assert!(q.is_empty());
    }

    #[test]
    fn gathers_small_chunks_into_one_send_in_order() {
        let mut q = OutboundQueue::default();
        let mut expected = Vec::new();
        for i in 0..40u8 {
            let data = vec![i; 100 + i as usize];
            expected.extend_from_slice(&data);
            q.push_owned(data);
        }
        let total = q.len();
        let mut got = Vec::new();
        while let Some(buf) = q.lend(1000) {
            assert!(buf.len() <= 1000);
            got.extend_from_slice(&buf);
            q.consume(buf.len());
        }
        assert_eq!(got.len(), total);
        assert_eq!(got, expected);
        assert!(q.is_empty());
    }

    #[test]
    fn abandoned_lent_bytes_leave_the_count() {
        let mut q = OutboundQueue::default();
        q.push(b"in flight", 64);
        let _lent = q.lend(64).unwrap();
        q.push(b"next", 64);
        assert!(collect(&q).is_empty());
        q.abandon_lent();
        assert_eq!(q.len(), 4);
        assert_eq!(collect(&q), b"next");
    }

    /// Every connection has a queue, and an idle one's is empty: issue
    /// 14's budget (256 bytes per idle connection, everything included)
    /// has room for one pointer here.
    #[test]
    fn the_header_stays_one_pointer() {
        assert_eq!(
            std::mem::size_of::<OutboundQueue>(),
            std::mem::size_of::<usize>()
        );
    }

    #[test]
    fn an_emptied_queue_is_reused_not_reallocated() {
        let mut q = OutboundQueue::default();
        q.push(b"one", 64);
        let first = q.inner.as_deref().map(|b| b as *const Queue);
        q.consume(3);
        assert!(q.is_empty() && q.inner.is_none());
        let mut other = OutboundQueue::default();
        other.push(b"two", 64);
        assert_eq!(
            other.inner.as_deref().map(|b| b as *const Queue),
            first,
            "the spare box is taken again"
        );
        assert_eq!(other.len(), 3);
        assert_eq!(collect(&other), b"two");
    }
}
