//! The provided buffer ring of one loop: up to `count` buffers of `buf_size`
//! bytes, lent to the kernel through a ring-mapped buffer ring
//! (`IORING_REGISTER_PBUF_RING`, Linux 5.19).
//!
//! **Lazy.** The ring is registered with room for `count` buffers, but
//! buffers are allocated and provided in blocks of [`BLOCK`] as demand
//! shows: one block at first, another whenever all of those provided are
//! out of the kernel's hands at once ([`BufRing::wants_more`]) or a receive
//! starved, until `count`. The kernel walks the ring in order, so every
//! provided buffer ends up touched: provided buffers are resident memory,
//! and a loop that never has more than a few receives pending keeps only a
//! block. Blocks are never withdrawn (the kernel may pick any provided
//! buffer at any time); they are freed with the ring.
//!
//! **Released when idle.** What a burst made resident need not stay so: the
//! pages of buffers that came back since the last release can be given back
//! to the system ([`BufRing::release_returned`], `MADV_DONTNEED` on each
//! block's page-aligned memory, skipping lent buffers). The buffers stay
//! provided; the kernel's next write into one faults in a fresh zero page.
//! That is only sound while the kernel writes into no buffer and every
//! buffer it filled has been taken, which the owning
//! [`Ring`](super::ring::Ring) guarantees (and decides when: after the loop
//! has been quiet a while, see [`IdleRelease`](super::release::IdleRelease)).
//!
//! The kernel picks a buffer when bytes arrive for a receive armed with
//! buffer select and names it in the completion; [`BufRing::take`] turns that
//! into a [`RecvBuf`], an owned view of the bytes, and dropping the `RecvBuf`
//! writes the buffer back into the ring for the kernel to use again. Nothing
//! else hands buffers back, so a buffer is either the kernel's (in the ring)
//! or exactly one `RecvBuf`'s.
//!
//! Owns the buffer memory and the ring entries. Never frees either while
//! registered with a ring that may still select from it: the owning
//! [`Ring`](super::ring::Ring) unregisters first, or leaks the memory
//! ([`BufRing::leak`]) when it cannot be sure the kernel is done.

use std::alloc::{self, Layout};
use std::cell::Cell;
use std::ffi::c_void;
use std::fmt;
use std::io;
use std::ops::Deref;
use std::ptr::{self, NonNull};
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::IoUring;

/// The kernel's `struct io_uring_buf`. In the ring's first entry the last
/// two bytes (`resv`) are the shared tail.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<BufEntry>() == 16);

/// Offset of the tail (`struct io_uring_buf_ring.tail`) from the ring's start.
const TAIL_OFFSET: usize = 14;

/// The most buffers one ring may hold (a kernel limit).
pub(crate) const MAX_BUFFERS: u16 = 1 << 15;

/// Buffers allocated and provided together (fewer when the ring holds fewer).
pub(crate) const BLOCK: u16 = 16;

/// The size of a provided buffer ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BufRingConfig {
    /// How many buffers: a power of two, at most [`MAX_BUFFERS`].
    pub(crate) count: u16,
    /// Bytes per buffer: one receive completion carries at most this much.
    pub(crate) buf_size: u32,
    /// The buffer group id receives name.
    pub(crate) group: u16,
}

impl Default for BufRingConfig {
    /// 1,024 buffers of 4 KiB (4 MiB per loop), group 0.
    fn default() -> Self {
        BufRingConfig {
            count: 1024,
            buf_size: 4096,
            group: 0,
        }
    }
}

/// The memory both the ring and every outstanding [`RecvBuf`] point into.
struct Shared {
    /// `count` entries, page-aligned, read by the kernel.
    entries: NonNull<BufEntry>,
    entries_layout: Layout,
    /// `count / block` slabs of `block * buf_size` bytes (rounded up to
    /// whole pages), written by the kernel; null until mapped, in order
    /// (block `i` holds buffer ids `i * block ..`). Each is its own
    /// anonymous mapping: page-aligned, zero and lazily backed, so a
    /// buffer costs memory only once written into, and its pages can be
    /// given back without touching anyone else's.
    slabs: Box<[Cell<*mut u8>]>,
    /// Bytes per slab mapping (a multiple of the page size).
    slab_bytes: usize,
    /// Per slab, one bit per buffer (bit `bid % block`): lent to a
    /// [`RecvBuf`] now.
    lent_bits: Box<[Cell<u16>]>,
    /// Per slab, one bit per buffer: came back from a [`RecvBuf`] since the
    /// last release (its pages may be resident and are not needed).
    returned_bits: Box<[Cell<u16>]>,
    /// Some `returned_bits` are set.
    returned_any: Cell<bool>,
    /// Buffers per slab (a power of two dividing `count`, at most 16).
    block: u16,
    /// `log2(block)`: a buffer id's slab is `bid >> block_shift`.
    block_shift: u32,
    count: u16,
    buf_size: u32,
    /// Buffers allocated and provided so far (ids `0..provided`).
    provided: Cell<u16>,
    /// The next tail to publish (our producer index).
    tail: Cell<u16>,
    /// Buffers the kernel has handed out that have not come back.
    lent: Cell<u32>,
}

impl Shared {
    /// Writes buffer `bid` at the tail and publishes it to the kernel.
    fn provide(&self, bid: u16) {
        self.provide_at(bid, self.buffer(bid));
    }

    /// [`provide`](Self::provide) for a caller that knows the buffer's
    /// start already (`start` must be `self.buffer(bid)`).
    #[inline]
    fn provide_at(&self, bid: u16, start: *mut u8) {
        debug_assert_eq!(start, self.buffer(bid));
        let tail = self.tail.get();
        let index = usize::from(tail & (self.count - 1));
        let addr = start as u64;
        // SAFETY: `index < count`, so the entry is inside the allocation. The
        // kernel reads entries only between its head and the published tail,
        // and this slot is at the unpublished tail: nobody reads it now.
        // Fields are written through raw places (no reference), because in
        // entry 0 the kernel may read the neighbouring tail concurrently.
        unsafe {
            let entry = self.entries.as_ptr().add(index);
            ptr::addr_of_mut!((*entry).addr).write(addr);
            ptr::addr_of_mut!((*entry).len).write(self.buf_size);
            ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        let next = tail.wrapping_add(1);
        self.tail.set(next);
        // SAFETY: the tail is a naturally aligned u16 at byte 14 of the live,
        // page-aligned entry array, and it is only ever accessed atomically
        // (by us here, by the kernel with an acquire load).
        let shared_tail = unsafe {
            AtomicU16::from_ptr(self.entries.as_ptr().cast::<u8>().add(TAIL_OFFSET).cast())
        };
        // Release: the kernel's acquire load of the tail must see the entry.
        shared_tail.store(next, Ordering::Release);
    }

    /// The start of buffer `bid`, which must be provided (`bid < provided`,
    /// so its slab is allocated).
    fn buffer(&self, bid: u16) -> *mut u8 {
        let slab = self.slabs[usize::from(bid >> self.block_shift)].get();
        debug_assert!(!slab.is_null());
        // (`block` is a power of two: a mask, not a division.)
        let in_slab = bid & (self.block - 1);
        // SAFETY: the slab holds `block` buffers of `buf_size` bytes and
        // `in_slab < block`, so the offset is inside it.
        unsafe { slab.add(usize::from(in_slab) * self.buf_size as usize) }
    }

    /// Allocates the next slab and provides its buffers. `false`: all are
    /// provided already, or the allocation failed (the ring keeps working
    /// with what it has).
    fn grow(&self) -> bool {
        let provided = self.provided.get();
        if provided >= self.count {
            return false;
        }
        // SAFETY: a fresh private anonymous mapping (no address hint, no
        // descriptor) touches no existing memory; `slab_bytes > 0`. Its
        // pages are zero and cost nothing until the kernel writes into them.
        let slab = unsafe {
            nix::libc::mmap(
                ptr::null_mut(),
                self.slab_bytes,
                nix::libc::PROT_READ | nix::libc::PROT_WRITE,
                nix::libc::MAP_PRIVATE | nix::libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if slab == nix::libc::MAP_FAILED {
            log::warn!("io_uring: cannot allocate more receive buffers; keeping {provided}");
            return false;
        }
        let slab = slab.cast::<u8>();
        self.slabs[usize::from(provided >> self.block_shift)].set(slab);
        self.provided.set(provided + self.block);
        for bid in provided..provided + self.block {
            self.provide(bid);
        }
        true
    }

    /// The slab of buffer `bid` and its bit in that slab's masks.
    fn slab_bit(&self, bid: u16) -> (usize, u16) {
        (
            usize::from(bid >> self.block_shift),
            1 << (bid & (self.block - 1)),
        )
    }

    /// See [`BufRing::release_returned`]; same contract.
    unsafe fn release_returned(&self, page: usize) -> u32 {
        if !self.returned_any.replace(false) {
            return 0;
        }
        let mut released = 0;
        for (i, returned) in self.returned_bits.iter().enumerate() {
            let returned = returned.replace(0);
            let slab = self.slabs[i].get();
            if returned == 0 || slab.is_null() {
                continue;
            }
            let lent = self.lent_bits[i].get();
            released += (returned & !lent).count_ones();
            // Every run of buffers not lent, shrunk to whole pages (a page
            // shared with a lent buffer stays), the slab's end included.
            let mut bid = 0;
            while bid < self.block {
                if lent & (1 << bid) != 0 {
                    bid += 1;
                    continue;
                }
                let start = bid;
                while bid < self.block && lent & (1 << bid) == 0 {
                    bid += 1;
                }
                let from = (usize::from(start) * self.buf_size as usize).next_multiple_of(page);
                let to = if bid == self.block {
                    self.slab_bytes
                } else {
                    usize::from(bid) * self.buf_size as usize / page * page
                };
                if to > from {
                    // SAFETY: `[from, to)` lies inside this slab's mapping
                    // (`to <= slab_bytes`), is page-aligned, and holds only
                    // buffers no `RecvBuf` views (their lent bits are clear):
                    // buffers the kernel holds and, by the caller's contract,
                    // neither writes into now nor filled without our having
                    // taken them. Their contents are garbage; zero pages
                    // replace them on the next write.
                    let r = unsafe {
                        nix::libc::madvise(
                            slab.add(from).cast::<c_void>(),
                            to - from,
                            nix::libc::MADV_DONTNEED,
                        )
                    };
                    if r != 0 {
                        log::debug!(
                            "io_uring: releasing idle receive buffers: {}",
                            io::Error::last_os_error()
                        );
                    }
                }
            }
        }
        released
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the entries were allocated (in `register`) with exactly
        // this layout and every non-null slab mapped (in `grow`) with
        // exactly this length, and the last reference is going away: no
        // `RecvBuf` remains and the owning ring has unregistered them (or
        // leaked this `Shared` instead of dropping it).
        unsafe {
            alloc::dealloc(self.entries.as_ptr().cast(), self.entries_layout);
            for slab in self.slabs.iter().map(Cell::get).filter(|p| !p.is_null()) {
                nix::libc::munmap(slab.cast::<c_void>(), self.slab_bytes);
            }
        }
    }
}

/// The provided buffer ring of one loop. `!Send`: it belongs to the loop's
/// thread, as its [`RecvBuf`]s do.
pub(crate) struct BufRing {
    shared: Rc<Shared>,
    group: u16,
    registered: bool,
    /// The system page size (what releases are rounded to).
    page: usize,
}

impl BufRing {
    /// Registers a ring for `config.count` buffers with `uring` as buffer
    /// group `config.group`, and allocates and lends the kernel its first
    /// block of them.
    ///
    /// `InvalidInput` for a count that is not a power of two (or above
    /// [`MAX_BUFFERS`]) or a zero buffer size; the kernel's error if it
    /// refuses the registration (before 5.19: `EINVAL`).
    pub(crate) fn register(uring: &IoUring, config: BufRingConfig) -> io::Result<BufRing> {
        let BufRingConfig {
            count,
            buf_size,
            group,
        } = config;
        if !count.is_power_of_two() || count > MAX_BUFFERS || buf_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a provided buffer ring needs a power-of-two count up to {MAX_BUFFERS} \
                     and a non-zero buffer size (got {count} x {buf_size})"
                ),
            ));
        }
        let too_big = || io::Error::new(io::ErrorKind::InvalidInput, "buffer ring too large");
        let page = page_size();
        let entries_bytes = (usize::from(count) * std::mem::size_of::<BufEntry>()).max(page);
        let entries_layout = Layout::from_size_align(entries_bytes, page).map_err(|_| too_big())?;
        let block = BLOCK.min(count);
        let slab_bytes = usize::from(block)
            .checked_mul(buf_size as usize)
            .and_then(|b| b.checked_next_multiple_of(page))
            .filter(|&b| b <= isize::MAX as usize)
            .ok_or_else(too_big)?;
        let slabs = usize::from(count / block);
        // SAFETY: the layout has a non-zero size (count >= 1).
        let entries = unsafe { alloc::alloc_zeroed(entries_layout) };
        let Some(entries) = NonNull::new(entries.cast()) else {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        };
        let shared = Rc::new(Shared {
            entries,
            entries_layout,
            slabs: (0..slabs).map(|_| Cell::new(ptr::null_mut())).collect(),
            slab_bytes,
            lent_bits: (0..slabs).map(|_| Cell::new(0)).collect(),
            returned_bits: (0..slabs).map(|_| Cell::new(0)).collect(),
            returned_any: Cell::new(false),
            block,
            block_shift: block.trailing_zeros(),
            count,
            buf_size,
            provided: Cell::new(0),
            tail: Cell::new(0),
            lent: Cell::new(0),
        });
        // SAFETY: the entry array is page-aligned, `count` entries long, and
        // lives in `shared` until the ring unregisters it (`unregister`) or
        // leaks it (`leak`); `Drop for Ring` guarantees one of the two before
        // the memory can be freed.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                entries.as_ptr() as u64,
                count,
                group,
                0,
            )?;
        }
        if !shared.grow() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        Ok(BufRing {
            shared,
            group,
            registered: true,
            page,
        })
    }

    /// The buffer group id receives must name.
    pub(crate) fn group(&self) -> u16 {
        self.group
    }

    /// How many buffers the ring may hold (at most this many are provided).
    pub(crate) fn capacity(&self) -> u32 {
        u32::from(self.shared.count)
    }

    /// How many buffers are allocated and provided so far.
    pub(crate) fn provided(&self) -> u32 {
        u32::from(self.shared.provided.get())
    }

    /// Every provided buffer is out of the kernel's hands and the ring may
    /// grow: call [`BufRing::grow`].
    pub(crate) fn wants_more(&self) -> bool {
        let provided = self.shared.provided.get();
        provided < self.shared.count && self.lent() >= u32::from(provided)
    }

    /// Allocates and provides another block of buffers (see the module
    /// doc). `false`: the ring is full grown (or out of memory).
    pub(crate) fn grow(&self) -> bool {
        self.shared.grow()
    }

    /// Bytes per buffer.
    pub(crate) fn buf_size(&self) -> u32 {
        self.shared.buf_size
    }

    /// Buffers handed out to [`RecvBuf`]s and not yet back.
    pub(crate) fn lent(&self) -> u32 {
        self.shared.lent.get()
    }

    /// Buffers the kernel can pick right now.
    pub(crate) fn available(&self) -> u32 {
        self.provided() - self.lent()
    }

    /// Takes buffer `bid`, which a completion says holds `len` bytes, out of
    /// the kernel's hands. `None` (and the buffer stays where it is) for an id
    /// or a length this ring never provided: a completion from elsewhere.
    #[inline]
    pub(crate) fn take(&self, bid: u16, len: u32) -> Option<RecvBuf> {
        if bid >= self.shared.provided.get() || len > self.shared.buf_size {
            return None;
        }
        // (Non-null: `bid < provided`, so its slab is mapped.)
        let base = NonNull::new(self.shared.buffer(bid))?;
        self.shared.lent.set(self.shared.lent.get() + 1);
        let (slab, bit) = self.shared.slab_bit(bid);
        let lent = &self.shared.lent_bits[slab];
        lent.set(lent.get() | bit);
        Some(RecvBuf {
            shared: Rc::clone(&self.shared),
            base,
            bid,
            start: 0,
            end: len,
        })
    }

    /// Buffers came back since the last [`BufRing::release_returned`]: a
    /// release would give memory back.
    pub(crate) fn has_returned(&self) -> bool {
        self.shared.returned_any.get()
    }

    /// Buffers whose pages may be resident: lent now, or come back since
    /// the last release (a buffer never written into, or released since,
    /// costs nothing). What a release lowers.
    pub(crate) fn resident(&self) -> u32 {
        let s = &self.shared;
        s.lent_bits
            .iter()
            .zip(s.returned_bits.iter())
            .map(|(l, r)| (l.get() | r.get()).count_ones())
            .sum()
    }

    /// Gives the pages of every buffer that came back since the last call
    /// back to the system (`MADV_DONTNEED`), except those a lent buffer
    /// shares; the buffers stay provided. Returns how many buffers were
    /// released.
    ///
    /// # Safety
    ///
    /// While this runs, the kernel must not write into any buffer of this
    /// ring, and every buffer it has filled must have been taken
    /// ([`BufRing::take`]): no completion naming a buffer may be waiting
    /// unread. (A ring with deferred task running guarantees the first
    /// between two `io_uring_enter` calls of its thread; an empty
    /// completion queue without overflow the second.) Otherwise bytes the
    /// kernel wrote could be zeroed before they are read.
    pub(crate) unsafe fn release_returned(&self) -> u32 {
        // SAFETY: the caller's contract is the function's.
        unsafe { self.shared.release_returned(self.page) }
    }

    /// Withdraws the ring from the kernel. Afterwards the kernel selects no
    /// buffer from it; the memory is freed once the last [`RecvBuf`] is gone.
    pub(crate) fn unregister(&mut self, uring: &IoUring) -> io::Result<()> {
        if self.registered {
            uring.submitter().unregister_buf_ring(self.group)?;
            self.registered = false;
        }
        Ok(())
    }

    /// Gives up the memory without ever freeing it (a reference that is
    /// never dropped): for a teardown that could not confirm the kernel is
    /// done with it.
    pub(crate) fn leak(&self) {
        std::mem::forget(Rc::clone(&self.shared));
    }
}

impl fmt::Debug for BufRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BufRing")
            .field("group", &self.group)
            .field("capacity", &self.capacity())
            .field("provided", &self.provided())
            .field("buf_size", &self.buf_size())
            .field("lent", &self.lent())
            .finish()
    }
}

/// Bytes a receive completion delivered, in a provided buffer. Dropping it
/// gives the buffer back to the kernel. It can be kept (the connection holds
/// unconsumed bytes), consumed in parts ([`RecvBuf::advance`]) or moved into a
/// send ([`OutBuf::Recv`](super::ring::OutBuf::Recv)) so an echo copies nothing.
pub(crate) struct RecvBuf {
    shared: Rc<Shared>,
    /// The buffer's start (`shared.buffer(bid)`, kept: every view of the
    /// bytes and the hand-back need it, and a slab never moves while
    /// `shared` lives).
    base: NonNull<u8>,
    bid: u16,
    start: u32,
    end: u32,
}

impl RecvBuf {
    /// The buffer id the kernel picked.
    pub(crate) fn bid(&self) -> u16 {
        self.bid
    }

    /// Marks the first `n` bytes as consumed (all of them if `n` is larger).
    pub(crate) fn advance(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.start = self.start.saturating_add(n).min(self.end);
    }

    /// Keeps only the first `n` unconsumed bytes (all of them if `n` is
    /// larger): a send of part of what arrived.
    pub(crate) fn truncate(&mut self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.end = self.start.saturating_add(n).min(self.end);
    }

    /// The unconsumed bytes.
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        let len = (self.end - self.start) as usize;
        // SAFETY: `base` is buffer `bid`'s start in a slab that `shared`
        // keeps mapped, and `end <= buf_size` was checked in `take`.
        // The kernel wrote these bytes before posting the completion we read
        // (the completion queue's acquire load orders them), and it cannot
        // select this buffer again before `drop` provides it back.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr().add(self.start as usize), len) }
    }
}

impl RecvBuf {
    /// The unconsumed bytes, to change in place (a TLS record is decrypted
    /// where it landed).
    #[inline]
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = (self.end - self.start) as usize;
        // SAFETY: as in `as_slice`; and the buffer is this `RecvBuf`'s alone
        // until `drop` provides it back (the kernel does not write a buffer
        // it has not been given, and no other `RecvBuf` names this `bid`),
        // so `&mut self` makes this the only reference to these bytes.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr().add(self.start as usize), len) }
    }
}

impl Deref for RecvBuf {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        let s = &self.shared;
        s.lent.set(s.lent.get() - 1);
        let (slab, bit) = s.slab_bit(self.bid);
        s.lent_bits[slab].set(s.lent_bits[slab].get() & !bit);
        s.returned_bits[slab].set(s.returned_bits[slab].get() | bit);
        s.returned_any.set(true);
        s.provide_at(self.bid, self.base.as_ptr());
    }
}

impl fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvBuf")
            .field("bid", &self.bid)
            .field("len", &self.len())
            .finish()
    }
}

/// The system page size (the buffer ring's required alignment).
fn page_size() -> usize {
    // SAFETY: sysconf reads a constant and touches no memory of ours.
    let size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}
