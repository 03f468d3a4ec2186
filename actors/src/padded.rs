//! [`CachePadded`]: keeps a value alone on its cache line(s).
//!
//! Owns only the alignment wrapper. The producer's and the consumer's cursors of
//! a ring live in separate `CachePadded` fields so that a write by one core does
//! not invalidate the line the other core is reading ("false sharing").

use std::ops::{Deref, DerefMut};

/// A value aligned to 128 bytes.
///
/// 128 rather than 64: on x86-64 the spatial prefetcher pulls cache lines in
/// adjacent pairs, and on aarch64 (Apple, Neoverse) lines are 128 bytes.
///
/// ```
/// use ringloop_actors::CachePadded;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// // Two counters written by different threads: padded, they share no cache line.
/// let counters = [CachePadded::new(AtomicU64::new(0)), CachePadded::new(AtomicU64::new(0))];
/// counters[0].fetch_add(1, Ordering::Relaxed); // derefs to the value
/// assert_eq!(std::mem::align_of_val(&counters[0]), 128);
/// ```
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(T);

impl<T> CachePadded<T> {
    /// Wraps `value`.
    ///
    /// ```
    /// use ringloop_actors::CachePadded;
    /// let p = CachePadded::new(7u64);
    /// assert_eq!(*p, 7);
    /// assert_eq!(std::mem::align_of_val(&p), 128);
    /// ```
    pub const fn new(value: T) -> Self {
        Self(value)
    }
}

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
