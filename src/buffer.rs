//! [`OutboundQueue`]: the bytes a connection has been asked to write but the
//! socket has not taken yet.
//!
//! Owns only byte storage and the bookkeeping of partial writes; it never
//! touches a socket (the event loop hands its slices to `writev`). Byte order
//! is always preserved. An empty queue holds no heap memory, so an idle
//! connection costs only the queue header.

use std::collections::VecDeque;
use std::io::IoSlice;

/// Most slices handed to one `writev`.
pub(crate) const MAX_IOV: usize = 64;

#[derive(Debug, Default)]
pub(crate) struct OutboundQueue {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of `chunks[0]` already written.
    head: usize,
    /// Unwritten bytes in all chunks.
    len: usize,
}

impl OutboundQueue {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a copy of `data`, coalescing small writes into blocks of at
    /// most `cap` bytes.
    pub(crate) fn push(&mut self, data: &[u8], cap: usize) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        // Never append to the head chunk once part of it was written: its
        // offset bookkeeping stays simple, and it is about to go anyway.
        let is_head = self.chunks.len() == 1 && self.head > 0;
        if let Some(last) = self.chunks.back_mut() {
            if !is_head && last.len() + data.len() <= cap {
                last.extend_from_slice(data);
                return;
            }
        }
        let mut chunk = Vec::with_capacity(data.len().max(cap.min(4096)));
        chunk.extend_from_slice(data);
        self.chunks.push_back(chunk);
    }

    /// Appends an owned buffer without copying it.
    pub(crate) fn push_owned(&mut self, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.chunks.push_back(data);
    }

    /// Fills `out` with slices of the unwritten bytes, oldest first; returns
    /// how many it filled.
    pub(crate) fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if n == out.len() {
                break;
            }
            let bytes = if i == 0 {
                &chunk[self.head..]
            } else {
                &chunk[..]
            };
            out[n] = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Marks `n` bytes as written.
    pub(crate) fn consume(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.len() - self.head;
            if n >= left {
                n -= left;
                self.head = 0;
                self.chunks.pop_front();
            } else {
                self.head += n;
                n = 0;
            }
        }
        if self.len == 0 {
            // Give the memory back: an idle connection holds no buffer.
            self.chunks = VecDeque::new();
            self.head = 0;
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
        assert_eq!(
            q.chunks.capacity(),
            0,
            "an empty queue must free its memory"
        );
    }

    #[test]
    fn coalesces_small_writes_up_to_cap() {
        let mut q = OutboundQueue::default();
        for _ in 0..100 {
            q.push(b"0123456789", 64);
        }
        assert_eq!(q.len(), 1000);
        assert!(q.chunks.iter().all(|c| c.len() <= 64));
        assert_eq!(q.chunks.len(), 1000usize.div_ceil(60));
    }
}
