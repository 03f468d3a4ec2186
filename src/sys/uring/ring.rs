//! One io_uring per loop, with its provided buffer ring, the descriptors its
//! operations target (sources) and every buffer the kernel may touch.
//!
//! The caller hands descriptors over with [`Ring::adopt`] and gets a
//! [`SourceId`] (slot index + generation). Operations only fill submission
//! entries; [`Ring::submit_and_wait`] submits everything queued since the last
//! call and waits, in one `io_uring_enter`; [`Ring::complete`] turns the
//! completions into [`Event`]s.
//!
//! The rules that keep the kernel's view of memory sound:
//!
//! * every buffer, address or timespec an entry points at lives in a heap
//!   block owned by the source's slot (or the ring), whose address does not
//!   change when the slot table grows, until the operation's **final**
//!   completion arrives;
//! * a slot, its descriptor and its buffers are released only when its last
//!   operation has completed ([`Ring::close`] cancels them first), so neither
//!   a descriptor number nor a slot is reused while the kernel may still act
//!   on the old one;
//! * dropping the ring cancels everything and waits, bounded, for the
//!   completions; past the bound it leaks instead of freeing.
//!
//! Never panics on a completion: unknown or stale `user_data` is counted
//! ([`RingStats::stale`]) and dropped, and a selected buffer always goes back
//! to the buffer ring.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::libc;
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

use super::bufring::{BufRing, BufRingConfig, RecvBuf};
use super::fixed::{on_target, FixedFiles, Target};
use super::release::{IdleRelease, RELEASE_AFTER};
use super::user_data::{OpKind, UserData, GENERATION_MASK, NO_SOURCE};

/// How a [`Ring`] is sized.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingConfig {
    /// Submission queue entries (a power of two; the kernel rounds up). The
    /// completion queue gets four times as many.
    pub(crate) entries: u32,
    /// The provided buffer ring.
    pub(crate) buffers: BufRingConfig,
    /// How long dropping the ring waits for cancelled operations to complete
    /// before it leaks their buffers instead of freeing them.
    pub(crate) teardown_bound: Duration,
    /// Use the kernel's bounded batch wait ([`Ring::submit_and_wait_batch`],
    /// `IORING_FEAT_MIN_TIMEOUT`, Linux 6.12) where it has it. `false`
    /// waits as on a kernel without it (tests simulate one so).
    pub(crate) min_wait: bool,
    /// Set the ring up with deferred task running where the kernel has it
    /// (see `build_uring`); `false` starts at cooperative task running
    /// (for measuring what deferring buys).
    pub(crate) defer_taskrun: bool,
    /// After how long without a receive the pages of returned receive
    /// buffers are given back (`super::release`); `None`: never. Only a
    /// ring with deferred task running releases (elsewhere the kernel may
    /// fill a buffer while it is being released).
    pub(crate) release_idle_after: Option<Duration>,
    /// Entries of the registered file table (`super::fixed`): a source
    /// whose slot index is below it names its table entry, not its
    /// descriptor; `0` (the default): no table. Refused by the kernel: no
    /// table (one log line). `super::fixed::default_size` is the size to
    /// ask for.
    pub(crate) fixed_files: u32,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            entries: 256,
            buffers: BufRingConfig::default(),
            teardown_bound: Duration::from_secs(5),
            min_wait: true,
            defer_taskrun: true,
            release_idle_after: Some(RELEASE_AFTER),
            fixed_files: 0,
        }
    }
}

/// The overall timeout of a batched wait the caller gave none: the kernel
/// ends a min-wait at its own end when the wait has no overall timeout
/// (its "no general timeout, we are done"), which would wake an idle loop
/// every `min_wait`. An hour is far from the kernel's "no limit".
const BATCH_WAIT_FOREVER: Duration = Duration::from_secs(3600);

/// A descriptor owned by a [`Ring`]: slot index and the slot's generation.
/// An id whose slot has since been released (and maybe reused) is refused by
/// every operation with `NotFound`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SourceId {
    index: u32,
    generation: u32,
}

impl SourceId {
    /// The slot index (stable while the source lives; reused after release).
    pub(crate) fn index(self) -> u32 {
        self.index
    }

    fn user_data(self, kind: OpKind) -> u64 {
        UserData::new(self.index, self.generation, kind).encode()
    }
}

/// Bytes handed to [`Ring::send`]: the ring owns them until the send's
/// completion arrives.
pub(crate) enum OutBuf {
    /// Bytes the caller produced.
    Owned(Vec<u8>),
    /// Bytes received into a provided buffer, sent back without a copy (the
    /// buffer returns to the kernel once the send completes).
    Recv(RecvBuf),
}

impl OutBuf {
    fn as_slice(&self) -> &[u8] {
        match self {
            OutBuf::Owned(v) => v,
            OutBuf::Recv(b) => b,
        }
    }
}

impl From<Vec<u8>> for OutBuf {
    fn from(v: Vec<u8>) -> Self {
        OutBuf::Owned(v)
    }
}

impl From<RecvBuf> for OutBuf {
    fn from(b: RecvBuf) -> Self {
        OutBuf::Recv(b)
    }
}

impl fmt::Debug for OutBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutBuf::Owned(v) => write!(f, "OutBuf::Owned({} bytes)", v.len()),
            OutBuf::Recv(b) => write!(f, "OutBuf::Recv({b:?})"),
        }
    }
}

/// What the completions of one [`Ring::complete`] call mean for the caller.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum Event {
    /// The multishot accept on `listener` produced a connection (non-blocking,
    /// close-on-exec).
    Accepted {
        /// The listener's source.
        listener: SourceId,
        /// The new connection, owned by the caller (adopt it to use the ring).
        fd: OwnedFd,
    },
    /// The multishot accept on `listener` stopped (for instance `EMFILE`);
    /// call [`Ring::accept_multishot`] again when it should resume.
    AcceptEnded {
        /// The listener's source.
        listener: SourceId,
        /// Why, when it was an error.
        error: Option<io::Error>,
    },
    /// Bytes arrived.
    Received {
        /// The connection.
        source: SourceId,
        /// The bytes; dropping them gives the buffer back to the kernel.
        buf: RecvBuf,
    },
    /// The peer closed its side; the receive is disarmed.
    Eof {
        /// The connection.
        source: SourceId,
    },
    /// The receive failed and is disarmed.
    RecvFailed {
        /// The connection.
        source: SourceId,
        /// The kernel's error.
        error: io::Error,
    },
    /// A send completed `bytes`; `queued` bytes are still waiting or in flight.
    Sent {
        /// The connection.
        source: SourceId,
        /// Bytes this completion sent.
        bytes: usize,
        /// Bytes not yet sent.
        queued: usize,
    },
    /// A send failed; everything queued on the connection was discarded.
    SendFailed {
        /// The connection.
        source: SourceId,
        /// The kernel's error.
        error: io::Error,
    },
    /// A connect finished: `TimedOut` when its timeout fired first.
    Connected {
        /// The socket.
        source: SourceId,
        /// The outcome.
        result: io::Result<()>,
    },
    /// The doorbell rang (at least once since the last time).
    Doorbell,
    /// The descriptor watched with [`Ring::watch_readiness`] is readable.
    Readiness,
    /// A closed source's last operation completed: its descriptor is closed
    /// and its buffers are freed.
    Released {
        /// The source that was closed.
        source: SourceId,
    },
}

/// Counters of one ring, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RingStats {
    /// `io_uring_enter` calls.
    pub(crate) enters: u64,
    /// Submission entries the kernel accepted.
    pub(crate) submitted: u64,
    /// Completions processed.
    pub(crate) completions: u64,
    /// Multishot receives stopped by an empty buffer ring (`ENOBUFS`).
    pub(crate) starved: u64,
    /// Starved receives re-armed after buffers came back.
    pub(crate) rearmed: u64,
    /// Completions dropped because their `user_data` named no live operation.
    pub(crate) stale: u64,
    /// Receive buffers whose pages were given back while the loop was idle
    /// (`super::release`).
    pub(crate) released: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotState {
    Free,
    Open,
    /// Closed by the caller; waits for its operations' completions.
    Closing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RecvState {
    Idle,
    /// Armed, or wanted armed again once a pause's cancellation completes.
    Armed,
    /// Stopped by `ENOBUFS`; re-armed when buffers come back.
    Starved,
    /// [`Ring::pause_recv`] cancelled it; the cancellation has not completed.
    Pausing,
}

/// The connection's outgoing bytes: at most one send in flight.
#[derive(Default)]
struct Outbound {
    /// The buffer the kernel is sending from.
    in_flight: Option<OutBuf>,
    /// Bytes of `in_flight` already sent (short sends resume here).
    sent: usize,
    /// Bytes sent while a send was in flight, to go out next as one send.
    queued: Vec<u8>,
}

impl Outbound {
    /// Drops everything (a failed or cancelled send, a close); owned
    /// buffers go back to the loop's pool once the kernel is done with them
    /// (callers only come here after the send's final completion, or with
    /// none in flight).
    fn recycle(&mut self) {
        let Outbound {
            in_flight, queued, ..
        } = mem::take(self);
        if let Some(OutBuf::Owned(v)) = in_flight {
            crate::buffer_pool::give(v);
        }
        crate::buffer_pool::give(queued);
    }

    fn is_empty(&self) -> bool {
        self.in_flight.is_none() && self.queued.is_empty()
    }

    fn pending(&self) -> usize {
        self.in_flight
            .as_ref()
            .map_or(0, |b| b.as_slice().len().saturating_sub(self.sent))
            + self.queued.len()
    }
}

/// A connect in flight: the kernel reads the address and the timespec.
struct ConnectOp {
    addr: SockaddrStorage,
    timeout: types::Timespec,
    has_timer: bool,
    result: Option<i32>,
    timer: Option<i32>,
}

/// One source. Every connection on the ring has one for its whole life, and
/// an idle one has nothing in flight: what operations need is boxed, and
/// the rest is packed (see the size test below).
struct Slot {
    /// The descriptor's number (owned or not).
    raw: RawFd,
    generation: u32,
    state: SlotState,
    /// The ring owns the descriptor ([`Ring::adopt`]) and closes it when
    /// the slot is released (see `Drop`); `false` for a source the caller
    /// owns ([`Ring::attach`]).
    owned: bool,
    /// The descriptor is installed in the registered file table at the
    /// slot's index (`super::fixed`); removed by the close.
    fixed: bool,
    /// Operations submitted whose final completion has not arrived (a few
    /// at most: a receive, a send, a connect and its timer, cancellations).
    in_flight: u16,
    recv: RecvState,
    accept_armed: bool,
    /// Its outgoing bytes, while it has any (boxed: an idle connection
    /// pays one pointer, not the 64 bytes of an [`Outbound`]; the boxes are
    /// reused through [`Ring::spare_out`], so a send allocates nothing).
    out: Option<Box<Outbound>>,
    connect: Option<Box<ConnectOp>>,
}

impl Slot {
    fn vacant() -> Slot {
        Slot {
            raw: -1,
            generation: 0,
            state: SlotState::Free,
            owned: false,
            fixed: false,
            in_flight: 0,
            recv: RecvState::Idle,
            accept_armed: false,
            out: None,
            connect: None,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: `owned` says the slot took this descriptor over from
            // an `OwnedFd` (`open_source`) and nothing else closes it; the
            // flag is cleared so it is closed once. A slot whose operations
            // may still be in flight is never dropped (the ring releases a
            // slot after its last completion, or leaks it on teardown).
            drop(unsafe { OwnedFd::from_raw_fd(self.raw) });
            self.owned = false;
        }
    }
}

/// The eventfd read through the ring: a poll linked to an 8-byte read, so a
/// non-blocking eventfd (which a plain read would answer with `EAGAIN`) works.
///
/// The poll posts nothing when it succeeds (`CQE_SKIP_SUCCESS`); when it
/// fails (cancelled, say), the kernel fails the linked read *without* a
/// completion of its own. So the pair owes exactly one completion: the read's
/// or the poll's failure. Each arming has its own generation, so a completion
/// from an earlier pair can never settle the current one.
struct Doorbell {
    fd: OwnedFd,
    /// Boxed: the kernel writes here, and the ring may move.
    buf: Box<[u8; 8]>,
    armed: bool,
    generation: u32,
}

/// One io_uring with its provided buffer ring. `!Send`: create it on the
/// thread that drives it.
pub(crate) struct Ring {
    uring: IoUring,
    bufs: BufRing,
    slots: Vec<Slot>,
    free: Vec<u32>,
    starved: VecDeque<SourceId>,
    released: Vec<SourceId>,
    doorbell: Option<Doorbell>,
    /// The descriptor polled by [`Ring::watch_readiness`], while armed.
    readiness: Option<RawFd>,
    readiness_armed: bool,
    /// Final completions still owed by the kernel (all kinds).
    in_flight: u64,
    /// Sends queued since the last `io_uring_enter` (see
    /// [`Ring::sends_queued`]).
    sends_queued: usize,
    /// Slots with an entry naming their descriptor (a receive, a send, a
    /// connect) queued since the submission queue was last emptied (see
    /// [`Ring::queued_for`]); a slot may be listed more than once.
    unsubmitted: Vec<u32>,
    tearing_down: bool,
    cqes: Vec<(u64, i32, u32)>,
    stats: RingStats,
    teardown_bound: Duration,
    /// Empty [`Outbound`] boxes of sources with nothing to send, for the
    /// next source that sends (at most [`SPARE_OUT`]; boxed: they move
    /// into slots whole).
    #[allow(clippy::vec_box)]
    spare_out: Vec<Box<Outbound>>,
    /// The kernel bounds batched waits (see [`RingConfig::min_wait`]).
    min_wait: bool,
    /// When idle receive buffers are released (see `super::release`).
    release: IdleRelease,
    /// The last `io_uring_enter` that waited ended at its timeout.
    timed_out: bool,
    /// The registered file table (possibly none).
    fixed: FixedFiles,
}

/// Most empty [`Outbound`] boxes a ring keeps for reuse.
const SPARE_OUT: usize = 256;

impl Ring {
    /// Sets up the ring and registers its buffer ring.
    pub(crate) fn new(config: RingConfig) -> io::Result<Ring> {
        let (uring, deferred) = build_uring(config.entries, config.defer_taskrun)?;
        let bufs = BufRing::register(&uring, config.buffers)?;
        let min_wait = config.min_wait && uring.params().is_feature_min_timeout();
        // Without deferred task running the kernel may fill a buffer at any
        // system call of this thread (or an interrupt's return), also in the
        // middle of a release: never release there.
        let release = IdleRelease::new(config.release_idle_after.filter(|_| deferred));
        let fixed = FixedFiles::register(&uring.submitter(), config.fixed_files);
        Ok(Ring {
            fixed,
            min_wait,
            release,
            timed_out: false,
            uring,
            bufs,
            slots: Vec::new(),
            free: Vec::new(),
            starved: VecDeque::new(),
            released: Vec::new(),
            doorbell: None,
            readiness: None,
            readiness_armed: false,
            in_flight: 0,
            sends_queued: 0,
            unsubmitted: Vec::new(),
            tearing_down: false,
            cqes: Vec::new(),
            stats: RingStats::default(),
            teardown_bound: config.teardown_bound,
            spare_out: Vec::new(),
        })
    }

    /// Takes ownership of `fd` for operations on it.
    pub(crate) fn adopt(&mut self, fd: OwnedFd) -> SourceId {
        let raw = fd.as_raw_fd();
        self.open_source(raw, Some(fd))
    }

    /// Operations on a descriptor the caller keeps owning (the event loop's
    /// connections own theirs). The caller must keep `fd` open while the
    /// source is open and call [`Ring::close`] before closing it: closing
    /// cancels by operation (not by descriptor), so the descriptor may be
    /// closed right after, while the kernel still holds its own reference
    /// to the socket until the cancellations complete; only an entry that
    /// names the descriptor and is still queued ([`Ring::queued_for`])
    /// must reach the kernel first (a submit), or it would act on whatever
    /// the number names by then.
    pub(crate) fn attach(&mut self, fd: BorrowedFd<'_>) -> SourceId {
        self.open_source(fd.as_raw_fd(), None)
    }

    /// A free slot (or a new one), opened for descriptor `raw`, owned or not.
    fn open_source(&mut self, raw: RawFd, owned: Option<OwnedFd>) -> SourceId {
        let index = match self.free.pop() {
            Some(index) => index,
            None => {
                self.slots.push(Slot::vacant());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.raw = raw;
        // The slot owns it from here (closed by `Slot`'s drop).
        slot.owned = owned.map(IntoRawFd::into_raw_fd).is_some();
        slot.fixed = self.fixed.install(&self.uring.submitter(), index, raw);
        slot.state = SlotState::Open;
        SourceId {
            index,
            generation: slot.generation,
        }
    }

    /// Polls `fd` (an epoll descriptor, say) for input with a multishot
    /// poll: [`Event::Readiness`] each time it becomes readable, re-armed
    /// when the kernel ends the multishot. The caller keeps `fd` open for
    /// the ring's lifetime.
    pub(crate) fn watch_readiness(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        self.readiness = Some(fd.as_raw_fd());
        self.arm_readiness()
    }

    /// The descriptor of a live source.
    pub(crate) fn fd(&self, id: SourceId) -> Option<BorrowedFd<'_>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation || slot.state != SlotState::Open {
            return None;
        }
        // SAFETY: an owned slot's descriptor stays open until the slot is
        // released, which needs `&mut self`: not while this borrow lives.
        slot.owned
            .then(|| unsafe { BorrowedFd::borrow_raw(slot.raw) })
    }

    /// Whether live source `id`'s operations name its registered file
    /// table entry (`super::fixed`) rather than its descriptor.
    pub(crate) fn is_fixed(&self, id: SourceId) -> bool {
        self.open_slot_ref(id).is_some_and(|s| s.fixed)
    }

    /// Entries of the registered file table (0: none, refused or not asked).
    pub(crate) fn fixed_files(&self) -> u32 {
        self.fixed.capacity()
    }

    /// Counters since the ring was made.
    pub(crate) fn stats(&self) -> RingStats {
        self.stats
    }

    /// Sends queued since the last `io_uring_enter`: the completions the
    /// next enter will most likely post at once (a loopback or otherwise
    /// writable socket takes the bytes inline, during the submit), which a
    /// caller that wants to sleep until something *else* happens adds to the
    /// completions it waits for.
    pub(crate) fn sends_queued(&self) -> usize {
        self.sends_queued
    }

    /// Operations whose final completion has not arrived yet.
    pub(crate) fn in_flight(&self) -> u64 {
        self.in_flight
    }

    /// The provided buffer ring (capacity, buffers lent out).
    pub(crate) fn buffers(&self) -> &BufRing {
        &self.bufs
    }

    /// Bytes queued or in flight on `id`.
    pub(crate) fn pending_send(&self, id: SourceId) -> usize {
        self.open_slot_ref(id)
            .and_then(|s| s.out.as_deref())
            .map_or(0, Outbound::pending)
    }

    /// The live source in slot `index`, if one is open there (a caller
    /// that keeps its own record per slot index needs not store the id).
    pub(crate) fn source_at(&self, index: u32) -> Option<SourceId> {
        let slot = self.slots.get(index as usize)?;
        (slot.state == SlotState::Open).then_some(SourceId {
            index,
            generation: slot.generation,
        })
    }

    /// A send of `id` is in flight (until its final completion).
    pub(crate) fn sending(&self, id: SourceId) -> bool {
        self.open_slot_ref(id)
            .and_then(|s| s.out.as_deref())
            .is_some_and(|o| o.in_flight.is_some())
    }

    /// Arms a multishot accept on a listening socket. Already armed: nothing.
    pub(crate) fn accept_multishot(&mut self, listener: SourceId) -> io::Result<()> {
        let (fd, slot) = self.open_slot(listener)?;
        if slot.accept_armed {
            return Ok(());
        }
        let entry = on_target!(fd, t => opcode::AcceptMulti::new(t)
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build())
        .user_data(listener.user_data(OpKind::Accept));
        self.push_for(listener, &[entry], 1)?;
        self.slots[listener.index as usize].accept_armed = true;
        Ok(())
    }

    /// Stops accepting on `listener` (a limit, or running out of
    /// descriptors): cancels its multishot accept, whose final completion
    /// ([`Event::AcceptEnded`], `ECANCELED`) says when it stopped; the
    /// kernel's backlog holds new connections meanwhile. Not armed: nothing.
    pub(crate) fn pause_accept(&mut self, listener: SourceId) -> io::Result<()> {
        let (_, slot) = self.open_slot(listener)?;
        if !slot.accept_armed {
            return Ok(());
        }
        self.cancel_op(listener, OpKind::Accept)
    }

    /// Queues the cancellation of `id`'s operations of `kind` (its own
    /// completion is owed too).
    fn cancel_op(&mut self, id: SourceId, kind: OpKind) -> io::Result<()> {
        let target = types::CancelBuilder::user_data(id.user_data(kind)).all();
        let cancel = opcode::AsyncCancel2::new(target)
            .build()
            .user_data(UserData::new(NO_SOURCE, 0, OpKind::Cancel).encode());
        self.push(&[cancel])?;
        self.in_flight += 1;
        Ok(())
    }

    /// Arms a multishot receive into the buffer ring. Already armed (or
    /// starved, waiting for buffers): nothing. While a pause is being
    /// cancelled, it is re-armed as soon as the cancellation completes.
    pub(crate) fn recv_multishot(&mut self, id: SourceId) -> io::Result<()> {
        let group = self.bufs.group();
        let (fd, slot) = self.open_slot(id)?;
        match slot.recv {
            RecvState::Idle => {}
            RecvState::Pausing => {
                slot.recv = RecvState::Armed;
                return Ok(());
            }
            RecvState::Armed | RecvState::Starved => return Ok(()),
        }
        let entry = on_target!(fd, t => opcode::RecvMulti::new(t, group).build())
            .user_data(id.user_data(OpKind::Recv));
        self.push_for(id, &[entry], 1)?;
        self.slots[id.index as usize].recv = RecvState::Armed;
        Ok(())
    }

    /// Stops reading `id` (back-pressure): cancels its multishot receive.
    /// Bytes already received are still delivered; later ones wait in the
    /// socket until [`Ring::recv_multishot`] arms it again.
    pub(crate) fn pause_recv(&mut self, id: SourceId) -> io::Result<()> {
        let (_, slot) = self.open_slot(id)?;
        match slot.recv {
            RecvState::Idle | RecvState::Pausing => return Ok(()),
            // Not in flight: forgetting it is enough (the starved list skips
            // sources that are no longer starved).
            RecvState::Starved => {
                slot.recv = RecvState::Idle;
                return Ok(());
            }
            RecvState::Armed => {}
        }
        self.cancel_op(id, OpKind::Recv)?;
        self.slots[id.index as usize].recv = RecvState::Pausing;
        Ok(())
    }

    /// Sends `buf` on `id`. With no send in flight it goes out as it is (no
    /// copy); otherwise its bytes are queued behind the one in flight and go
    /// out together when it completes. Only fills a submission entry: the
    /// next [`Ring::submit_and_wait`] submits it.
    ///
    /// One look-up of the slot for the whole send (it was three: the
    /// liveness check, the box, the entry). Never inlined:
    /// `benches/callgrind.sh` counts the messages an io_uring echo sent by
    /// the calls of this function.
    #[inline(never)]
    pub(crate) fn send(&mut self, id: SourceId, buf: impl Into<OutBuf>) -> io::Result<()> {
        let buf = buf.into();
        let Some(slot) = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation && s.state == SlotState::Open)
        else {
            return Err(closed_source());
        };
        if buf.as_slice().is_empty() {
            return Ok(());
        }
        let fd = target(id.index, slot);
        let out = match &mut slot.out {
            Some(out) => out,
            none => none.insert(self.spare_out.pop().unwrap_or_default()),
        };
        if out.in_flight.is_some() {
            out.queued.extend_from_slice(buf.as_slice());
            return Ok(());
        }
        out.sent = 0;
        // The bytes' address does not change when `buf` moves into the
        // slot's box (a `Vec`'s heap block, a provided buffer).
        let entry = send_entry(fd, out.in_flight.insert(buf).as_slice(), id);
        if let Err(e) = self.push_for(id, &[entry], 1) {
            // Nothing went into the ring: no completion will ever end this
            // send, so the slot must not say one is in flight (the buffer
            // goes back now, as after a completion).
            if let Some(out) = self.slots[id.index as usize].out.as_deref_mut() {
                out.in_flight = None;
            }
            return Err(e);
        }
        self.sends_queued += 1;
        Ok(())
    }

    /// Connects socket `id` to `addr`, giving up after `timeout` (a linked
    /// timeout: the connect is cancelled and reported `TimedOut`). One connect
    /// per source at a time (`AlreadyExists` otherwise).
    pub(crate) fn connect(
        &mut self,
        id: SourceId,
        addr: SocketAddr,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let (fd, slot) = self.open_slot(id)?;
        if slot.connect.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a connect is already in flight on this socket",
            ));
        }
        let op = Box::new(ConnectOp {
            addr: SockaddrStorage::from(addr),
            timeout: types::Timespec::from(timeout.unwrap_or_default()),
            has_timer: timeout.is_some(),
            result: None,
            timer: None,
        });
        let connect = on_target!(fd, t => opcode::Connect::new(t, op.addr.as_ptr(), op.addr.len())
            .build())
        .user_data(id.user_data(OpKind::Connect));
        let pushed = if op.has_timer {
            let timer = opcode::LinkTimeout::new(&op.timeout)
                .build()
                .user_data(id.user_data(OpKind::ConnectTimeout));
            self.push_for(id, &[connect.flags(squeue::Flags::IO_LINK), timer], 2)
        } else {
            self.push_for(id, &[connect], 1)
        };
        // The box moves into the slot; its heap address (which the entries
        // point at) does not change.
        if pushed.is_ok() {
            self.slots[id.index as usize].connect = Some(op);
        }
        pushed
    }

    /// Reads the mailbox's doorbell (an eventfd, blocking or not) through the
    /// ring: [`Event::Doorbell`] each time it rang, re-armed automatically.
    /// The ring keeps `fd` (pass a duplicate of the mailbox's).
    pub(crate) fn watch_doorbell(&mut self, fd: OwnedFd) -> io::Result<()> {
        if self.doorbell.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the ring already watches a doorbell",
            ));
        }
        self.doorbell = Some(Doorbell {
            fd,
            buf: Box::new([0; 8]),
            armed: false,
            generation: 0,
        });
        self.arm_doorbell()
    }

    /// Whether an entry naming `id`'s descriptor (a receive, a send, a
    /// connect) is queued and not yet submitted: then the descriptor of an
    /// attached source must not be closed before the next submit. (May say
    /// `true` for a slot index reused since; never `false` wrongly.)
    pub(crate) fn queued_for(&self, id: SourceId) -> bool {
        self.unsubmitted.contains(&id.index)
    }

    /// Closes source `id`: cancels its operations and discards bytes not yet
    /// sent. The descriptor and the buffers stay alive until the last
    /// completion arrives; then [`Event::Released`] reports the slot free.
    pub(crate) fn close(&mut self, id: SourceId) -> io::Result<()> {
        let (_, slot) = self.open_slot(id)?;
        slot.state = SlotState::Closing;
        if let Some(out) = slot.out.as_mut() {
            out.queued = Vec::new();
        }
        let (fd, operations, fixed) = (slot.raw, slot.in_flight, slot.fixed);
        if fixed {
            self.remove_fixed(id)?;
        }
        if operations == 0 {
            if !fixed {
                self.release(id.index);
            }
            return Ok(());
        }
        let slot = &self.slots[id.index as usize];
        if !slot.owned {
            // Attached: the caller closes the descriptor right after, so
            // cancel by operation (the descriptor number may be reused).
            let kinds = [
                (
                    OpKind::Recv,
                    matches!(slot.recv, RecvState::Armed | RecvState::Pausing),
                ),
                (
                    OpKind::Send,
                    slot.out.as_ref().is_some_and(|o| o.in_flight.is_some()),
                ),
                (OpKind::Connect, slot.connect.is_some()),
                (OpKind::Accept, slot.accept_armed),
            ];
            let cancels: Vec<squeue::Entry> = kinds
                .iter()
                .filter(|(_, in_flight)| *in_flight)
                .map(|&(kind, _)| {
                    opcode::AsyncCancel2::new(
                        types::CancelBuilder::user_data(id.user_data(kind)).all(),
                    )
                    .build()
                    .user_data(UserData::new(NO_SOURCE, 0, OpKind::Cancel).encode())
                })
                .collect();
            self.push(&cancels)?;
            self.in_flight += cancels.len() as u64;
            return Ok(());
        }
        let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::fd(types::Fd(fd)).all())
            .build()
            .user_data(UserData::new(NO_SOURCE, 0, OpKind::Cancel).encode());
        self.push(&[cancel])?;
        self.in_flight += 1;
        Ok(())
    }

    /// Queues the removal of closing source `id`'s registered file table
    /// entry, owed like one of its operations: the slot (and so the entry)
    /// is reused only after it completed. It does not name the descriptor,
    /// so it needs no submit before the caller closes an attached one (the
    /// table's own reference keeps the socket until the removal runs).
    fn remove_fixed(&mut self, id: SourceId) -> io::Result<()> {
        let entry = FixedFiles::removal(id.index)?.user_data(id.user_data(OpKind::FileRemoval));
        self.push(&[entry])?;
        let slot = &mut self.slots[id.index as usize];
        slot.fixed = false;
        slot.in_flight = slot.in_flight.saturating_add(1);
        self.in_flight += 1;
        Ok(())
    }

    /// Submits everything queued and waits until `want` completions are
    /// ready or `timeout` passes (`None`: no limit), in one `io_uring_enter`.
    /// With nothing to submit and `want == 0`, makes no system call. Returns
    /// how many entries the kernel accepted.
    pub(crate) fn submit_and_wait(
        &mut self,
        want: usize,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.rearm_starved()?;
        let timeout = self.release.bound(self.bufs.has_returned(), timeout);
        // Deferred task work (a completion the kernel has not posted yet)
        // is only run by an enter that gets events: not idle then.
        let sq = self.uring.submission();
        let idle = sq.is_empty() && !sq.cq_overflow() && !sq.taskrun();
        drop(sq);
        if want == 0 && idle {
            return Ok(0);
        }
        self.enter(want, None, timeout)
    }

    /// Whether [`Ring::submit_and_wait_batch`] bounds its wait for a batch
    /// (the kernel's min-wait, `IORING_FEAT_MIN_TIMEOUT`).
    pub(crate) fn batches_waits(&self) -> bool {
        self.min_wait
    }

    /// Submits everything queued, then waits for `batch` completions (at
    /// least 1), but once `min_wait` has passed returns as soon as any
    /// completion is ready (one already there then ends the wait; with
    /// none it waits on for the first); never longer than `timeout`
    /// (`None`: no limit). One `io_uring_enter`. Without the kernel's
    /// min-wait ([`Ring::batches_waits`] is `false`) `min_wait` is ignored
    /// and this is `submit_and_wait(batch, timeout)`: callers choose
    /// `batch` knowing that.
    pub(crate) fn submit_and_wait_batch(
        &mut self,
        batch: usize,
        min_wait: Duration,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.rearm_starved()?;
        let timeout = self.release.bound(self.bufs.has_returned(), timeout);
        let min_wait = self.min_wait.then_some(min_wait);
        self.enter(batch.max(1), min_wait, timeout)
    }

    /// Turns every completion ready now into events appended to `events`;
    /// returns how many were appended.
    pub(crate) fn complete(&mut self, events: &mut Vec<Event>) -> usize {
        let before = events.len();
        for source in self.released.drain(..) {
            events.push(Event::Released { source });
        }
        let mut cqes = mem::take(&mut self.cqes);
        cqes.extend(
            self.uring
                .completion()
                .map(|c| (c.user_data(), c.result(), c.flags())),
        );
        let mut received = false;
        for &(user_data, result, flags) in &cqes {
            received |= cqueue::buffer_select(flags).is_some();
            self.dispatch(user_data, result, flags, events);
        }
        cqes.clear();
        self.cqes = cqes;
        let pending = self.bufs.has_returned();
        if self
            .release
            .after_wait(pending, received, self.timed_out, Instant::now)
        {
            self.release_idle_buffers();
        }
        if self.bufs.wants_more() {
            // Every provided buffer is held at once: grow before the kernel
            // runs dry (see bufring's module doc).
            self.bufs.grow();
        }
        for source in self.released.drain(..) {
            events.push(Event::Released { source });
        }
        events.len() - before
    }

    // ---- internals -------------------------------------------------------

    /// Gives the pages of the receive buffers that came back since the last
    /// release back to the system (see `super::release`); called only
    /// when the release rule says so, which it does only on a ring with
    /// deferred task running.
    fn release_idle_buffers(&mut self) {
        // Every completion read (none naming a buffer waits in the queue or
        // the kernel's overflow list); otherwise try again after the next
        // quiet period.
        let clean = self.uring.completion().is_empty() && !self.uring.submission().cq_overflow();
        if !clean {
            return;
        }
        // SAFETY: with deferred task running (the release rule is `None`
        // for any other ring, see `Ring::new`) the kernel writes into
        // provided buffers only while this thread is inside `io_uring_enter`
        // (receives run as task work there, or inline at submit), and it
        // is not now; every buffer it filled was named by a completion, all
        // of which have been read (`clean`) and taken by `dispatch`.
        let released = unsafe { self.bufs.release_returned() };
        self.stats.released += u64::from(released);
    }

    fn open_slot_ref(&self, id: SourceId) -> Option<&Slot> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation && s.state == SlotState::Open)
    }

    /// What the operations of a live source name, and its slot, or
    /// `NotFound`.
    fn open_slot(&mut self, id: SourceId) -> io::Result<(Target, &mut Slot)> {
        let slot = self
            .slots
            .get_mut(id.index as usize)
            .filter(|s| s.generation == id.generation && s.state == SlotState::Open)
            .ok_or_else(closed_source)?;
        Ok((target(id.index, slot), slot))
    }

    /// Queues entries, making room with a submit when the queue is full.
    /// Linked entries go in together or not at all (`push_multiple` checks
    /// the room for all of them first): one look at the queue when there
    /// is room, the common case.
    fn push(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        // SAFETY: every pointer in these entries is to memory the ring owns
        // until the operation's final completion (module rules): send bytes
        // and connect ops in the source's slot (heap blocks that do not move),
        // the doorbell's boxed buffer, the buffer ring. Slots are released
        // and the ring is freed only after those completions (or leaked).
        if unsafe { self.uring.submission().push_multiple(entries) }.is_ok() {
            return Ok(());
        }
        self.enter(0, None, None)?;
        // SAFETY: as above.
        unsafe { self.uring.submission().push_multiple(entries) }.map_err(|_| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                "io_uring submission queue full after a submit",
            )
        })
    }

    /// [`Ring::push`] for operations of source `id`, `finals` of which will
    /// post a final completion.
    fn push_for(&mut self, id: SourceId, entries: &[squeue::Entry], finals: u32) -> io::Result<()> {
        self.push(entries)?;
        self.unsubmitted.push(id.index);
        let slot = &mut self.slots[id.index as usize];
        slot.in_flight = slot
            .in_flight
            .saturating_add(u16::try_from(finals).unwrap_or(u16::MAX));
        self.in_flight += u64::from(finals);
        Ok(())
    }

    /// Submits a send of the unsent rest of the source's in-flight buffer.
    fn push_send(&mut self, id: SourceId) -> io::Result<()> {
        let slot = &self.slots[id.index as usize];
        let fd = target(id.index, slot);
        let Some((buf, sent)) = slot
            .out
            .as_deref()
            .and_then(|o| Some((o.in_flight.as_ref()?, o.sent)))
        else {
            return Ok(());
        };
        let rest = buf.as_slice().get(sent..).unwrap_or_default();
        let entry = send_entry(fd, rest, id);
        self.push_for(id, &[entry], 1)?;
        self.sends_queued += 1;
        Ok(())
    }

    fn arm_doorbell(&mut self) -> io::Result<()> {
        let Some(bell) = self.doorbell.as_mut() else {
            return Ok(());
        };
        if bell.armed || self.tearing_down {
            return Ok(());
        }
        let fd = bell.fd.as_raw_fd();
        let generation = bell.generation.wrapping_add(1) & GENERATION_MASK;
        let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .flags(squeue::Flags::IO_LINK | squeue::Flags::SKIP_SUCCESS)
            .user_data(UserData::new(NO_SOURCE, generation, OpKind::DoorbellPoll).encode());
        let read = opcode::Read::new(types::Fd(fd), bell.buf.as_mut_ptr(), 8)
            .build()
            .user_data(UserData::new(NO_SOURCE, generation, OpKind::Doorbell).encode());
        self.push(&[poll, read])?;
        // The pair owes one completion (see `Doorbell`).
        self.in_flight += 1;
        if let Some(bell) = self.doorbell.as_mut() {
            bell.armed = true;
            bell.generation = generation;
        }
        Ok(())
    }

    fn arm_readiness(&mut self) -> io::Result<()> {
        let Some(fd) = self.readiness else {
            return Ok(());
        };
        if self.readiness_armed || self.tearing_down {
            return Ok(());
        }
        let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(UserData::new(NO_SOURCE, 0, OpKind::Readiness).encode());
        self.push(&[poll])?;
        self.in_flight += 1;
        self.readiness_armed = true;
        Ok(())
    }

    fn on_readiness(&mut self, res: i32, flags: u32, events: &mut Vec<Event>) {
        if res >= 0 {
            events.push(Event::Readiness);
        }
        if cqueue::more(flags) {
            return;
        }
        self.readiness_armed = false;
        self.in_flight = self.in_flight.saturating_sub(1);
        if res < 0 && res != -libc::ECANCELED {
            log::warn!(
                "io_uring: the readiness poll ended: {}; re-arming",
                io::Error::from_raw_os_error(-res)
            );
            // Report it: the caller polls its readiness descriptor once
            // rather than miss an edge.
            events.push(Event::Readiness);
        }
        if res != -libc::ECANCELED {
            if let Err(e) = self.arm_readiness() {
                log::error!("io_uring: cannot re-arm the readiness poll: {e}");
            }
        }
    }

    /// Re-arms receives stopped by `ENOBUFS`, as many as there are buffers.
    fn rearm_starved(&mut self) -> io::Result<()> {
        if !self.starved.is_empty() {
            // Demand beyond what is provided: more buffers, if it may grow.
            // Also when some came back since: the kernel ran dry while
            // they were held (a send from a received buffer holds it until
            // the send's completion is reaped, after the receives of the
            // same wait), and would again at the next such wait.
            self.bufs.grow();
        }
        let mut budget = self.bufs.available();
        while budget > 0 {
            let Some(id) = self.starved.pop_front() else {
                break;
            };
            let Some(slot) = self
                .slots
                .get_mut(id.index as usize)
                .filter(|s| s.generation == id.generation && s.state == SlotState::Open)
            else {
                continue;
            };
            if slot.recv != RecvState::Starved {
                continue;
            }
            slot.recv = RecvState::Idle;
            if let Err(e) = self.recv_multishot(id) {
                self.slots[id.index as usize].recv = RecvState::Starved;
                self.starved.push_front(id);
                return Err(e);
            }
            self.stats.rearmed += 1;
            budget -= 1;
        }
        Ok(())
    }

    /// One `io_uring_enter`: submits what is queued and waits for `want`
    /// completions, at most `timeout`; with `min_wait` (only when the
    /// kernel has it) for any completion once that has passed.
    fn enter(
        &mut self,
        want: usize,
        min_wait: Option<Duration>,
        timeout: Option<Duration>,
    ) -> io::Result<usize> {
        self.stats.enters += 1;
        self.sends_queued = 0;
        self.timed_out = false;
        let submitter = self.uring.submitter();
        let result = match (min_wait, timeout) {
            (Some(min), _) if want > 0 => {
                let ts = types::Timespec::from(timeout.unwrap_or(BATCH_WAIT_FOREVER));
                // At least 1 µs: 0 would mean "no min-wait".
                let usec = u32::try_from(min.as_micros()).unwrap_or(u32::MAX).max(1);
                let args = types::SubmitArgs::new().timespec(&ts).min_wait_usec(usec);
                submitter.submit_with_args(want, &args)
            }
            (_, Some(t)) if want > 0 => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                submitter.submit_with_args(want, &args)
            }
            _ => submitter.submit_and_wait(want),
        };
        if self.uring.submission().is_empty() {
            self.unsubmitted.clear();
        }
        match result {
            Ok(n) => {
                self.stats.submitted += n as u64;
                Ok(n)
            }
            // ETIME: the wait timed out; EINTR: a signal; EBUSY: completions
            // are backed up and must be reaped first. None is a failure.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                self.timed_out = e.raw_os_error() == Some(libc::ETIME);
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    fn dispatch(&mut self, raw: u64, res: i32, flags: u32, events: &mut Vec<Event>) {
        self.stats.completions += 1;
        // A selected buffer goes back to the ring whatever happens below.
        let buf = cqueue::buffer_select(flags)
            .and_then(|bid| self.bufs.take(bid, u32::try_from(res).unwrap_or(0)));
        let Some(ud) = UserData::decode(raw) else {
            self.stats.stale += 1;
            log::warn!("io_uring: completion with unknown user_data {raw:#x} dropped");
            return;
        };
        match ud.kind {
            OpKind::Cancel => {
                self.in_flight = self.in_flight.saturating_sub(1);
                return;
            }
            OpKind::DoorbellPoll | OpKind::Doorbell => {
                self.on_doorbell(ud, res, events);
                return;
            }
            OpKind::Readiness => {
                self.on_readiness(res, flags, events);
                return;
            }
            _ => {}
        }
        let index = ud.index as usize;
        let live = self
            .slots
            .get(index)
            .is_some_and(|s| s.generation == ud.generation && s.state != SlotState::Free);
        if !live {
            self.stats.stale += 1;
            log::warn!("io_uring: completion for a released source dropped ({ud:?})");
            return;
        }
        let more = cqueue::more(flags);
        let is_final = match ud.kind {
            OpKind::Recv | OpKind::Accept => !more,
            _ => true,
        };
        let source = SourceId {
            index: ud.index,
            generation: ud.generation,
        };
        let closing = self.tearing_down || self.slots[index].state == SlotState::Closing;
        if is_final {
            self.slots[index].in_flight = self.slots[index].in_flight.saturating_sub(1);
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        match ud.kind {
            OpKind::Recv => self.on_recv(source, res, is_final, closing, buf, events),
            OpKind::Accept => self.on_accept(source, res, is_final, closing, events),
            OpKind::Send => self.on_send(source, res, closing, events),
            OpKind::Connect | OpKind::ConnectTimeout => {
                self.on_connect(source, ud.kind, res, closing, events)
            }
            // The entry stays installed only if the kernel refused to empty
            // it, which it does not for an entry it installed.
            OpKind::FileRemoval if res < 0 => log::warn!(
                "io_uring: removing fixed file {}: {}",
                ud.index,
                io::Error::from_raw_os_error(-res)
            ),
            _ => {}
        }
        let slot = &self.slots[index];
        if slot.state == SlotState::Closing && slot.in_flight == 0 {
            self.release(ud.index);
        }
    }

    fn on_doorbell(&mut self, ud: UserData, res: i32, events: &mut Vec<Event>) {
        let Some(bell) = self
            .doorbell
            .as_mut()
            .filter(|b| b.armed && b.generation == ud.generation)
        else {
            self.stats.stale += 1;
            return;
        };
        if ud.kind == OpKind::DoorbellPoll && res >= 0 {
            return; // not expected (success is skipped), and not the end
        }
        bell.armed = false;
        self.in_flight = self.in_flight.saturating_sub(1);
        if res == 8 && ud.kind == OpKind::Doorbell {
            events.push(Event::Doorbell);
        } else if res != -libc::EAGAIN {
            // Cancelled (teardown) or broken: do not spin on it.
            if res != -libc::ECANCELED {
                log::error!(
                    "io_uring: doorbell read failed: {}; cross-thread wake-ups stop",
                    io::Error::from_raw_os_error(-res)
                );
            }
            return;
        }
        if let Err(e) = self.arm_doorbell() {
            log::error!("io_uring: cannot re-arm the doorbell read: {e}");
        }
    }

    fn on_recv(
        &mut self,
        source: SourceId,
        res: i32,
        is_final: bool,
        closing: bool,
        buf: Option<RecvBuf>,
        events: &mut Vec<Event>,
    ) {
        let slot = &mut self.slots[source.index as usize];
        // Armed: the caller wants it running (also after a pause it took back).
        let wanted = slot.recv == RecvState::Armed;
        if is_final {
            slot.recv = RecvState::Idle;
        }
        if closing {
            return; // `buf` drops here: back to the kernel
        }
        if res > 0 {
            match buf {
                Some(buf) => events.push(Event::Received { source, buf }),
                None => {
                    self.stats.stale += 1;
                    log::warn!("io_uring: receive of {res} bytes without a buffer dropped");
                }
            }
        } else if res == 0 {
            events.push(Event::Eof { source });
            return;
        } else if res == -libc::ENOBUFS {
            if wanted {
                slot.recv = RecvState::Starved;
                self.starved.push_back(source);
                self.stats.starved += 1;
            }
            return;
        } else if res != -libc::ECANCELED {
            events.push(Event::RecvFailed {
                source,
                error: io::Error::from_raw_os_error(-res),
            });
            return;
        }
        // Bytes, or the end of a pause: if the multishot ended while the
        // caller wants it (the kernel may end it on a full completion queue;
        // a pause may have been taken back), keep reading.
        if is_final && wanted {
            if let Err(error) = self.recv_multishot(source) {
                events.push(Event::RecvFailed { source, error });
            }
        }
    }

    fn on_accept(
        &mut self,
        listener: SourceId,
        res: i32,
        is_final: bool,
        closing: bool,
        events: &mut Vec<Event>,
    ) {
        if res >= 0 {
            // SAFETY: a successful accept returns a new descriptor that
            // nothing else owns; wrapping it makes sure it is closed.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            if !closing {
                events.push(Event::Accepted { listener, fd });
            }
        }
        if is_final {
            self.slots[listener.index as usize].accept_armed = false;
            if !closing {
                events.push(Event::AcceptEnded {
                    listener,
                    error: (res < 0).then(|| io::Error::from_raw_os_error(-res)),
                });
            }
        }
    }

    fn on_send(&mut self, source: SourceId, res: i32, closing: bool, events: &mut Vec<Event>) {
        let index = source.index as usize;
        // Out of the slot while it is worked on; back in if it still holds
        // bytes, otherwise to the spares.
        let Some(mut out) = self.slots[index].out.take() else {
            return; // no send of this source: stale
        };
        if closing {
            out.recycle();
            self.spare(out);
            return;
        }
        if res <= 0 {
            let error = if res == 0 {
                io::Error::from(io::ErrorKind::WriteZero)
            } else {
                io::Error::from_raw_os_error(-res)
            };
            out.recycle();
            self.spare(out);
            events.push(Event::SendFailed { source, error });
            return;
        }
        let bytes = res as usize;
        out.sent += bytes;
        let total = out.in_flight.as_ref().map_or(0, |b| b.as_slice().len());
        if out.sent >= total {
            let done = out.in_flight.take();
            out.sent = 0;
            if !out.queued.is_empty() {
                // Reuse the finished buffer's allocation for the next queue.
                let mut spare = match done {
                    Some(OutBuf::Owned(mut v)) => {
                        v.clear();
                        v
                    }
                    _ => Vec::new(),
                };
                mem::swap(&mut spare, &mut out.queued);
                out.in_flight = Some(OutBuf::Owned(spare));
            } else if let Some(OutBuf::Owned(v)) = done {
                // Sent whole: the next write of the loop reuses it.
                crate::buffer_pool::give(v);
            }
        }
        let queued = out.pending();
        let resume = out.in_flight.is_some();
        events.push(Event::Sent {
            source,
            bytes,
            queued,
        });
        if !resume {
            self.spare(out);
            return;
        }
        self.slots[index].out = Some(out);
        if let Err(error) = self.push_send(source) {
            if let Some(mut out) = self.slots[index].out.take() {
                out.recycle();
                self.spare(out);
            }
            events.push(Event::SendFailed { source, error });
        }
    }

    /// Keeps an emptied [`Outbound`] box for the next source that sends.
    fn spare(&mut self, out: Box<Outbound>) {
        debug_assert!(out.is_empty());
        if self.spare_out.len() < SPARE_OUT {
            self.spare_out.push(out);
        }
    }

    fn on_connect(
        &mut self,
        source: SourceId,
        kind: OpKind,
        res: i32,
        closing: bool,
        events: &mut Vec<Event>,
    ) {
        let slot = &mut self.slots[source.index as usize];
        let Some(op) = slot.connect.as_mut() else {
            self.stats.stale += 1;
            return;
        };
        if kind == OpKind::Connect {
            op.result = Some(res);
        } else {
            op.timer = Some(res);
        }
        let Some(result) = op.result else { return };
        if op.has_timer && op.timer.is_none() {
            return;
        }
        let timed_out = op.timer == Some(-libc::ETIME);
        slot.connect = None;
        if closing {
            return;
        }
        let result = match result {
            0 => Ok(()),
            r if r == -libc::ECANCELED && timed_out => {
                Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            }
            r => Err(io::Error::from_raw_os_error(-r)),
        };
        events.push(Event::Connected { source, result });
    }

    /// Frees a closing slot whose operations have all completed.
    fn release(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        let source = SourceId {
            index,
            generation: slot.generation,
        };
        let generation = (slot.generation + 1) & GENERATION_MASK;
        // The old slot drops here (closing an owned descriptor).
        let out = mem::replace(slot, Slot::vacant()).out.take();
        slot.generation = generation;
        self.free.push(index);
        if let Some(mut out) = out {
            // Its last operation completed: nothing of it is in flight.
            out.recycle();
            self.spare(out);
        }
        self.released.push(source);
    }
}

impl Drop for Ring {
    /// Cancels everything in flight and waits (at most `teardown_bound`)
    /// for the completions, so no buffer is freed while the kernel may use
    /// it. Past the bound, leaks the buffers and descriptors instead.
    fn drop(&mut self) {
        log::debug!("io_uring teardown: {:?}, {:?}", self.stats, self.bufs);
        self.tearing_down = true;
        if self.in_flight > 0 {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any())
                .build()
                .user_data(UserData::new(NO_SOURCE, 0, OpKind::Cancel).encode());
            if self.push(&[cancel]).is_ok() {
                self.in_flight += 1;
            }
            let deadline = Instant::now() + self.teardown_bound;
            let mut events = Vec::new();
            while self.in_flight > 0 {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                let wait = (deadline - now).min(Duration::from_millis(100));
                if let Err(e) = self.enter(1, None, Some(wait)) {
                    log::error!("io_uring teardown: io_uring_enter failed: {e}");
                    break;
                }
                self.complete(&mut events);
                events.clear(); // accepted descriptors close, buffers go back
            }
        }
        if self.in_flight > 0 {
            log::error!(
                "io_uring teardown: {} operations still in flight after {:?}; \
                 leaking their buffers rather than freeing memory the kernel may use",
                self.in_flight,
                self.teardown_bound
            );
            self.bufs.leak();
            for slot in self.slots.drain(..) {
                mem::forget(slot);
            }
            mem::forget(self.doorbell.take());
        } else {
            if let Err(e) = self.bufs.unregister(&self.uring) {
                log::error!(
                    "io_uring teardown: unregistering the buffer ring failed: {e}; leaking it"
                );
                self.bufs.leak();
            }
            // Drops the table's references now: the kernel frees a closed
            // ring's resources later, in a worker, and a socket left in the
            // table would stay open until then.
            self.fixed.unregister(&self.uring.submitter());
        }
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("sources", &(self.slots.len() - self.free.len()))
            .field("in_flight", &self.in_flight)
            .field("buffers", &self.bufs)
            .field("stats", &self.stats)
            .finish()
    }
}

/// The error of an operation on a source that is closed (or never was).
#[cold]
fn closed_source() -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, "io_uring source closed or unknown")
}

/// The entry that sends `bytes` (all of them, or the first 4 GiB) on `fd`
/// for source `id`. The caller keeps `bytes` where they are until the
/// send's final completion.
#[inline]
fn send_entry(fd: Target, bytes: &[u8], id: SourceId) -> squeue::Entry {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    on_target!(fd, t => opcode::Send::new(t, bytes.as_ptr(), len)
        .flags(libc::MSG_NOSIGNAL)
        .build())
    .user_data(id.user_data(OpKind::Send))
}

/// What the operations of `slot`, at `index`, name (see `super::fixed`).
fn target(index: u32, slot: &Slot) -> Target {
    if slot.fixed {
        Target::Fixed(index)
    } else {
        Target::Fd(slot.raw)
    }
}

/// Sets up the io_uring: a completion queue four times the submission queue,
/// one issuer (the loop's thread) and deferred task running where the
/// kernel has them (Linux 6.1), else cooperative task running (5.19), plain
/// otherwise.
///
/// Deferred task running (`IORING_SETUP_DEFER_TASKRUN`) is what lets a
/// wait for several completions sleep through the first ones: the kernel
/// queues the work of an arrival (the receive itself) for the waiting
/// thread and wakes it only when enough has queued for the completions it
/// waits for (or a min-wait ends), instead of waking it at every arrival
/// to run that work. The work runs only inside an `io_uring_enter` that
/// gets events; the task-run flag (`IORING_SQ_TASKRUN`) tells
/// [`Ring::submit_and_wait`] when some is pending. The `bool` says whether
/// the ring got it (only such a ring releases idle receive buffers, see
/// [`RingConfig::release_idle_after`]).
fn build_uring(entries: u32, defer: bool) -> io::Result<(IoUring, bool)> {
    let cq = entries.saturating_mul(4);
    let deferred = || {
        IoUring::<squeue::Entry, cqueue::Entry>::builder()
            .setup_cqsize(cq)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(entries)
    };
    let cooperative = || {
        IoUring::<squeue::Entry, cqueue::Entry>::builder()
            .setup_cqsize(cq)
            .setup_coop_taskrun()
            .setup_single_issuer()
            .build(entries)
    };
    let plain = || {
        IoUring::<squeue::Entry, cqueue::Entry>::builder()
            .setup_cqsize(cq)
            .build(entries)
    };
    let refused =
        |r: &io::Result<IoUring>| matches!(r, Err(e) if e.raw_os_error() == Some(libc::EINVAL));
    let mut built = if defer {
        deferred()
    } else {
        Err(io::Error::from_raw_os_error(libc::EINVAL))
    };
    let with_deferred_taskrun = built.is_ok();
    if refused(&built) {
        built = cooperative();
    }
    if refused(&built) {
        built = plain();
    }
    built.map(|uring| (uring, with_deferred_taskrun))
}

#[cfg(test)]
mod size_tests {
    /// Issue 14's idle-memory budget (256 bytes per connection on io_uring,
    /// everything included): every source pays for its slot, and an idle
    /// one has nothing in flight, so what operations need is boxed. See
    /// also `event_loop::driver::uring`'s and `event_loop::entry`'s tests.
    #[test]
    fn a_slot_stays_small() {
        assert!(
            std::mem::size_of::<super::Slot>() <= 32,
            "Slot grew to {} bytes",
            std::mem::size_of::<super::Slot>()
        );
    }
}
