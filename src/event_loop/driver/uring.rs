//! The completion driver: one io_uring per loop ([`Ring`]) with a provided
//! buffer ring, plus an epoll instance for what still needs readiness.
//!
//! * **Stream connections** (TCP, Unix, TLS too; no PROXY header
//!   pending) are *attached* to the ring ([`Ring::attach`]: the loop's
//!   `ConnEntry` keeps owning the descriptor) and read by a multishot
//!   receive into the buffer ring. Each completion's [`RecvBuf`] waits in
//!   the connection's stash until the loop asks [`Driver::recv`]; the loop
//!   hands the handler a slice of it and copies only what stays unread
//!   (a TLS connection's session decrypts it in place first, see
//!   `event_loop/tls_ring.rs`).
//!   Dropping the `RecvBuf` ([`Driver::release`]) gives it back to the
//!   kernel.
//! * **The loop's own listeners** (one loop, or reuseport mode; not the
//!   acceptor thread's, which has no ring) accept through the ring: a
//!   multishot accept per listener, whose connections wait in the driver
//!   until the loop's accept path takes them with their peer address
//!   ([`Completion::accept_from`]), under the same limits and pauses as on
//!   epoll (a pause cancels the accept; the backlog holds the rest). Not
//!   in an engine with an upgrade socket: there the backlog is shared with
//!   the next process, and a connection the ring accepted just before the
//!   listeners go over could be neither admitted here nor handed over, so
//!   those listeners stay with epoll (`Driver::keep_listeners_on_epoll`).
//! * **TCP connects** (dials) go through the ring too
//!   ([`Completion::connect`]): the completion is the loop's writable event
//!   and carries the outcome, so no `connect`, `epoll_ctl` or `SO_ERROR`
//!   call of our own.
//! * **Everything else** (UDP sockets, Unix connects in progress,
//!   PROXY-header reads, and write readiness of any connection whose
//!   queue is not empty) is registered with the embedded epoll instance,
//!   whose descriptor the ring polls with a multishot poll; only when that
//!   fires does the driver make an `epoll_wait` with a zero timeout. A turn
//!   is thus one `io_uring_enter` that submits what the last turn queued
//!   and waits: for the sends' completions plus a batch of receives, which
//!   follows how many connections had input in the last wait, bounded by
//!   the kernel's min-wait (100 µs: after it, whatever came ends the wait;
//!   see `plan_wait` and `next_batch`). Below a batch of `PLAIN_BELOW`
//!   (a few busy connections) the wait is for the first completion with
//!   no near timer (`plain_wait`: a timer 100 µs away costs ~6.5 µs of
//!   CPU on a virtual machine), a turn with sends then taking a second
//!   enter to sleep. A lone connection is answered at once, an idle loop
//!   sleeps, and a busy one makes one enter per many messages
//!   (benches/uring_batch.sh).
//! * The mailbox's doorbell (an eventfd) is read through the ring.
//!
//! The stash is level-triggered: a connection whose stash is not empty and
//! whose reading is wanted is announced at every wait (one readable event
//! per stashed completion), so nothing is lost when the loop reads one
//! completion per event; a paused connection's stash waits for the loop to
//! want reading again. Closing (`deregister`) cancels the receive by
//! operation, drops the stash (the buffers go back to the kernel) and lets
//! the loop close the descriptor at once: the kernel keeps its own
//! reference to the socket until the cancellation completes, and the ring
//! never submits anything for a closed source again.
//!
//! **Sends** of an attached connection go through the ring too: its writes
//! are only queued (`ConnEntry::ring_sends`), settling the connection hands
//! the queue's oldest bytes to [`Completion::submit_sends`] (one send in
//! flight per connection; the ring resumes short sends itself), and the
//! send's completion comes back as a writable event after which the loop
//! takes the sent bytes off the queue ([`Completion::take_sent`]). The bytes
//! are *lent*, not copied: the queue's front chunk itself moves into the
//! ring, which owns it until the send's final completion (also across a
//! close or the engine's stop) and then gives it to the loop's
//! [`buffer_pool`](crate::buffer_pool), from which the next write's chunk
//! comes: a busy connection cycles through the same few blocks. The queue
//! keeps counting lent bytes until then, so back-pressure, graceful closes
//! and the write timeout see what is really unsent. Every send of a turn
//! goes to the kernel with the turn's one `io_uring_enter`. A write of
//! at least 512 bytes of the callback's own input, with nothing queued, is
//! not even copied into the queue: the provided buffer it arrived in is
//! the send ([`Completion::send_received`], `event_loop/forward.rs`).
//!
//! **No `SEND_ZC`.** Zero-copy sends (`IORING_OP_SEND_ZC`) are not used:
//! measured on this project's loopback (`cargo bench --bench send_zc`,
//! benches/results/ubuf-20261205.md), they cost 1.8-1.9x the process CPU
//! per message of a plain send at 16 KiB and 1.2-1.3x at 64 KiB, and
//! deliver fewer messages per second (median 0.81x at 16 KiB, 0.57x at
//! 64 KiB): loopback delivery copies the pages anyway, and each send adds
//! a notification completion before its buffer may be reused. There is no
//! size on loopback where it pays; over a real NIC it may, which would
//! need a benchmark on one before a threshold can be chosen.
//!
//! **Before a close** the driver submits what is queued in the ring for
//! the connection's descriptor (its last send, a receive armed this turn):
//! an entry that names a descriptor must reach the kernel while that
//! number still names the same socket, never one opened after the loop
//! closed it. Nothing else costs the close a system call: the
//! cancellations name operations, not the descriptor, and go with the
//! turn's one `io_uring_enter` (the kernel holds the socket until they
//! complete, so its end of stream goes out then).
//!
//! Owns the ring, the stash and which descriptor is whose; never interprets
//! payload bytes and never frees a buffer the kernel may still write (the
//! [`Ring`] guarantees that, also when the loop stops).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use super::super::token::LoopToken;
use super::epoll::Readiness;
use super::stash::{Stash, StashNodes};
use crate::actors::Doorbell;
use crate::buffer::OutboundQueue;
use crate::sys::poller::{Event, Interest, Token};
use crate::sys::socket;
use crate::sys::uring::bufring::{BufRingConfig, RecvBuf};
use crate::sys::uring::ring::{Event as RingEvent, Ring, RingConfig, SourceId};

/// Submission entries per loop (the completion queue gets four times more).
const RING_ENTRIES: u32 = 512;
/// Most provided buffers per loop. The ring starts with a block of 16 and
/// grows with demand up to this (see `bufring`); the kernel walks it in
/// order, so every provided buffer ends up touched: this times the buffer
/// size bounds the resident cost of a busy loop (528 KiB at the largest);
/// a loop without receives for a while gives those pages back
/// (`sys::uring::release`).
///
/// Small on purpose: the kernel takes buffers in the order they came back,
/// so a buffer is written again only after all the others were, and the
/// echo's send copies out of the buffer its receive just filled. 256
/// buffers of 16.5 KiB (4.1 MiB) cycled through more than this machine's
/// L2 and both copies ran cold: at 100 × 16 KiB the send's copy
/// (`_copy_from_iter`) was 15.4 % of the server's samples, 6.6 % with 32
/// buffers (epoll, one hot buffer: 3.2 %); server CPU per message 5.56 →
/// 4.88 µs of kernel time, and 3.63 → 3.29 at 1,000 × 512
/// (benches/results/u14-session9-20261205.md). A burst of more ready
/// connections than buffers costs re-armed receives (`ENOBUFS`), no data.
const BUFFERS: u16 = 32;
/// Overrides [`BUFFERS`] (a power of two, 1 to 32,768): for tests that
/// want the buffer ring to run dry, and for tuning.
const BUFFERS_ENV: &str = "RINGLOOP_URING_BUFFERS";
/// Most bytes of small queued chunks copied into one send (a pool class:
/// the gathering buffer is reused too).
const MAX_GATHER: usize = crate::buffer_pool::MAX_CLASS;
/// Bounds of one provided buffer (the loop's `read_buffer_size`, clamped).
/// The largest holds a whole TLS record (16 KiB of plaintext and its
/// overhead: at most 16,645 bytes), so a TLS session decrypts a full
/// record where it landed instead of joining two buffers' pieces in a
/// copy (measured: a third less server CPU per 16 KiB TLS message, see
/// benches/results/tlsu-session6-20261205.md).
const MIN_BUF: usize = 4096;
const MAX_BUF: usize = 16 * 1024 + 512;

/// A listener of the loop's own, accepting through the ring.
struct RingListener {
    id: SourceId,
    raw: RawFd,
    token: u64,
    /// The loop wants connections (not paused for a limit or exhaustion).
    wanted: bool,
    /// A multishot accept is in the ring (until its final completion).
    armed: bool,
    /// What the kernel accepted (or the error that ended the multishot),
    /// waiting for the loop's accept path to take it.
    accepted: VecDeque<io::Result<OwnedFd>>,
}

/// What a receive completion left for the loop.
enum Stashed {
    Bytes(RecvBuf),
    Eof,
    Failed(io::Error),
}

/// What the driver keeps about a connection attached to the ring, beside
/// the ring's own slot for it (same index): only what the ring does not
/// know. Its id is the ring's ([`Ring::source_at`]), whether a send is in
/// flight too ([`Ring::sending`]); a finished connect's outcome waits in
/// [`Completion::connected`]. Kept small on purpose: every idle connection
/// pays for it (see the size test below).
struct Source {
    /// The loop's token, encoded (what its events carry).
    token: Token,
    /// Completions not yet taken by the loop, in arrival order.
    stash: Stash<Stashed>,
    /// Bytes the ring sent that the loop has not taken off the queue yet
    /// (at most the one lent buffer: `OutboundQueue` lends at most
    /// `MAX_CHUNK` < 4 GiB bytes at a time).
    sent: u32,
    /// The loop wants it read (its multishot receive is armed or re-arming).
    reading: bool,
    /// Registered with the epoll instance for write readiness.
    in_epoll: bool,
    /// In `announce` (so it is listed once).
    listed: bool,
    /// The end of stream was taken: later receives say so again.
    ended: bool,
}

pub(crate) struct Completion {
    /// Declared first: dropped (cancelling and waiting for everything in
    /// flight) before the epoll descriptor it polls is closed.
    ring: Ring,
    readiness: Readiness,
    /// By ring slot index.
    sources: Vec<Option<Source>>,
    /// The nodes of every source's stash.
    stashed: StashNodes<Stashed>,
    /// Connects through the ring that finished, by ring slot index, with
    /// their outcome (until the loop takes it; few at a time).
    connected: Vec<(u32, io::Result<()>)>,
    /// Sends that failed, by ring slot index, with the error (until the
    /// loop takes it at the error event: the send consumed the socket's
    /// pending error, so `SO_ERROR` no longer has it).
    send_failed: Vec<(u32, io::Error)>,
    /// Descriptor number -> ring slot index + 1 (0: not attached).
    by_fd: Vec<u32>,
    /// Sources with stashed completions to announce.
    announce: Vec<u32>,
    spare: Vec<u32>,
    events: Vec<RingEvent>,
    /// The last readiness poll reported events: poll again before sleeping.
    readiness_pending: bool,
    /// The loop's own listeners (few: a linear search is the fastest).
    listeners: Vec<RingListener>,
    /// Receive completions the next wait gathers before it returns (see
    /// [`plan_wait`] and [`next_batch`]).
    batch: usize,
    /// Its bound ([`MAX_BATCH`], or [`BATCH_ENV`]'s).
    batch_cap: usize,
    /// Below this batch a wait is [`plain_wait`] ([`PLAIN_BELOW`], or
    /// [`PLAIN_BELOW_ENV`]'s; 0: never).
    plain_below: usize,
    /// Connections with input that had none stashed, in the last wait.
    newly_received: usize,
    /// A connection's queue waits behind a send submitted this turn (see
    /// [`wait_for_sends`]); the turn's wait clears it.
    queued_behind_send: bool,
    /// An echoed input is sent from its provided buffer
    /// (`event_loop/forward.rs`); [`FORWARD_ENV`] `0` turns it off.
    forward: bool,
}

impl Completion {
    pub(crate) fn new(recv_buffer: usize) -> io::Result<Completion> {
        let buf_size = recv_buffer.clamp(MIN_BUF, MAX_BUF) as u32;
        let count = std::env::var(BUFFERS_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u16>().ok())
            .filter(|n| n.is_power_of_two())
            .unwrap_or(BUFFERS);
        let mut ring = Ring::new(RingConfig {
            entries: RING_ENTRIES,
            buffers: BufRingConfig {
                count,
                buf_size,
                group: 0,
            },
            min_wait: env_number(BATCH_ENV) != Some(0),
            defer_taskrun: env_number(DEFER_ENV) != Some(0),
            fixed_files: match env_number(FIXED_ENV) {
                Some(n) if n > 0 => crate::sys::uring::fixed::default_size(),
                _ => 0,
            },
            ..RingConfig::default()
        })?;
        let readiness = Readiness::new()?;
        ring.watch_readiness(readiness.poller().as_fd())?;
        Ok(Completion {
            ring,
            readiness,
            sources: Vec::new(),
            stashed: StashNodes::new(),
            connected: Vec::new(),
            send_failed: Vec::new(),
            by_fd: Vec::new(),
            announce: Vec::new(),
            spare: Vec::new(),
            events: Vec::new(),
            readiness_pending: false,
            listeners: Vec::new(),
            batch: 1,
            batch_cap: env_number(BATCH_ENV).unwrap_or(MAX_BATCH),
            plain_below: env_number(PLAIN_BELOW_ENV).unwrap_or(PLAIN_BELOW),
            newly_received: 0,
            queued_behind_send: false,
            forward: env_number(FORWARD_ENV) != Some(0),
        })
    }

    /// Whether the loop offers received buffers to the callbacks' writes
    /// (see [`Completion::send_received`]): unless turned off, while at
    /// most three quarters of the buffer ring's capacity is held. A send
    /// from a received buffer holds it until the peer takes the bytes, so
    /// peers that read slowly could otherwise hold every buffer and starve
    /// the loop's other connections; past this, writes are copied into
    /// the queue (releasing the buffer at once), as with `0`.
    #[inline]
    pub(crate) fn forwards(&self) -> bool {
        let bufs = self.ring.buffers();
        self.forward && bufs.lent() < bufs.capacity() / 4 * 3
    }

    pub(crate) fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    pub(crate) fn readiness_mut(&mut self) -> &mut Readiness {
        &mut self.readiness
    }

    /// The eventfd doorbell is read through the ring (a pipe doorbell,
    /// which must be drained by the loop, stays with epoll).
    pub(crate) fn register_doorbell(&mut self, doorbell: &Doorbell) -> io::Result<()> {
        if doorbell.needs_drain() {
            return self.readiness.register_doorbell(doorbell);
        }
        let fd = doorbell.as_fd().try_clone_to_owned()?;
        self.ring.watch_doorbell(fd)
    }

    fn source_index(&self, fd: BorrowedFd<'_>) -> Option<usize> {
        let raw = usize::try_from(fd.as_raw_fd()).ok()?;
        match self.by_fd.get(raw) {
            Some(&i) if i > 0 => Some(i as usize - 1),
            _ => None,
        }
    }

    fn source_mut(&mut self, fd: BorrowedFd<'_>) -> Option<&mut Source> {
        let i = self.source_index(fd)?;
        self.sources.get_mut(i)?.as_mut()
    }

    /// Attaches a stream connection: reads complete through the ring.
    pub(crate) fn register_stream(
        &mut self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<()> {
        let raw = usize::try_from(fd.as_raw_fd())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if interest.writable {
            self.readiness.register(fd, token, Interest::WRITABLE)?;
        }
        let id = self.ring.attach(fd);
        if interest.readable {
            if let Err(e) = self.ring.recv_multishot(id) {
                let _ = self.ring.close(id);
                if interest.writable {
                    self.readiness.deregister(fd);
                }
                return Err(e);
            }
        }
        let index = id.index() as usize;
        if self.sources.len() <= index {
            self.sources.resize_with(index + 1, || None);
        }
        if let Some(mut old) = self.sources[index].take() {
            // (Not expected: a closed source's record goes at its close.)
            while old.stash.pop_front(&mut self.stashed).is_some() {}
        }
        self.sources[index] = Some(Source {
            token: token.encode(),
            stash: Stash::new(),
            sent: 0,
            reading: interest.readable,
            in_epoll: interest.writable,
            listed: false,
            ended: false,
        });
        if self.by_fd.len() <= raw {
            self.by_fd.resize(raw + 1, 0);
        }
        self.by_fd[raw] = id.index() + 1;
        Ok(())
    }

    /// Arms or pauses the receive, and watches write readiness while the
    /// connection has bytes queued. `Ok(false)`: not an attached source.
    pub(crate) fn reregister(
        &mut self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        interest: Interest,
    ) -> io::Result<bool> {
        let Some(i) = self.source_index(fd) else {
            return Ok(false);
        };
        let Some(source) = self.sources.get_mut(i).and_then(Option::as_mut) else {
            return Ok(false);
        };
        let Some(id) = self.ring.source_at(i as u32) else {
            return Ok(false);
        };
        // Its sends complete through the ring: no write readiness needed.
        let _ = token;
        if interest.readable != source.reading {
            source.reading = interest.readable;
            if interest.readable {
                if !source.stash.is_empty() && !source.listed {
                    // Received while paused: announce it at the next wait.
                    source.listed = true;
                    self.announce.push(i as u32);
                }
                self.ring.recv_multishot(id)?;
            } else {
                self.ring.pause_recv(id)?;
            }
        }
        Ok(true)
    }

    /// Before the loop closes `fd`. `false`: not an attached source.
    pub(crate) fn deregister(&mut self, fd: BorrowedFd<'_>) -> bool {
        let Some(i) = self.source_index(fd) else {
            return false;
        };
        if let Some(raw) = usize::try_from(fd.as_raw_fd())
            .ok()
            .and_then(|r| self.by_fd.get_mut(r))
        {
            *raw = 0;
        }
        let Some(mut source) = self.sources.get_mut(i).and_then(Option::take) else {
            return true;
        };
        self.connected.retain(|(at, _)| *at as usize != i);
        self.send_failed.retain(|(at, _)| *at as usize != i);
        if source.in_epoll {
            self.readiness.deregister(fd);
        }
        if source
            .stash
            .iter(&self.stashed)
            .any(|s| matches!(s, Stashed::Bytes(_)))
        {
            // Input the loop never read: on epoll it would still be in the
            // socket, and closing would reset the connection. The ring has
            // drained the socket into its buffers, so ask for the reset.
            if let Err(e) = socket::set_linger_zero(fd) {
                log::debug!("io_uring: SO_LINGER before a close with unread input: {e}");
            }
        }
        // (Always found: the ring's slot stays open until this close.)
        let id = self.ring.source_at(i as u32);
        // The loop closes the descriptor next: an entry queued for it (a
        // receive, a send) must reach the kernel while its number still
        // names this socket, never one opened after. Only then is a submit
        // of its own needed; the cancellations name operations, not the
        // descriptor, and go with the turn's one `io_uring_enter` (the
        // kernel keeps the socket until they complete).
        let submit = id.is_some_and(|id| self.ring.queued_for(id));
        if let Some(Err(e)) = id.map(|id| self.ring.close(id)) {
            // Not fatal: the ring releases the slot when its operations end.
            log::warn!("io_uring: closing a connection's operations failed: {e}");
        }
        if submit {
            if let Err(e) = self.ring.submit_and_wait(0, None) {
                log::warn!("io_uring: submitting before a close failed: {e}");
            }
        }
        // Its buffers go back to the kernel.
        while source.stash.pop_front(&mut self.stashed).is_some() {}
        true
    }

    /// Starts accepting on listener `fd` through the ring (a multishot
    /// accept); its connections are announced as readable events for
    /// `token`.
    pub(crate) fn add_listener(&mut self, fd: BorrowedFd<'_>, token: u64) -> io::Result<()> {
        let id = self.ring.attach(fd);
        if let Err(e) = self.ring.accept_multishot(id) {
            let _ = self.ring.close(id);
            return Err(e);
        }
        self.listeners.push(RingListener {
            id,
            raw: fd.as_raw_fd(),
            token,
            wanted: true,
            armed: true,
            accepted: VecDeque::new(),
        });
        Ok(())
    }

    fn listener_mut(&mut self, fd: BorrowedFd<'_>) -> Option<&mut RingListener> {
        let raw = fd.as_raw_fd();
        self.listeners.iter_mut().find(|l| l.raw == raw)
    }

    /// Accepting on or paused: pausing cancels the multishot accept (the
    /// backlog holds new connections); resuming re-arms it once what was
    /// already accepted has been taken.
    pub(crate) fn listen(&mut self, fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
        let Some(l) = self.listener_mut(fd) else {
            return Ok(());
        };
        l.wanted = on;
        let (id, armed, drained) = (l.id, l.armed, l.accepted.is_empty());
        if on && !armed && drained {
            self.ring.accept_multishot(id)?;
            if let Some(l) = self.listener_mut(fd) {
                l.armed = true;
            }
        } else if !on && armed {
            self.ring.pause_accept(id)?;
        }
        Ok(())
    }

    /// Before the listener is closed: cancels its accept; connections the
    /// kernel accepted and the loop did not take are closed.
    pub(crate) fn remove_listener(&mut self, fd: BorrowedFd<'_>) {
        let raw = fd.as_raw_fd();
        let Some(at) = self.listeners.iter().position(|l| l.raw == raw) else {
            return;
        };
        let l = self.listeners.swap_remove(at);
        if let Err(e) = self.ring.close(l.id) {
            log::warn!("io_uring: closing a listener's accept failed: {e}");
        }
        // The cancellation must reach the kernel while the descriptor
        // number still names this listener.
        if let Err(e) = self.ring.submit_and_wait(0, None) {
            log::warn!("io_uring: submitting before a listener's close failed: {e}");
        }
    }

    /// The next connection the ring accepted on `fd`, with its peer's
    /// address (`getpeername`: a multishot accept has no per-connection
    /// address buffer); `Ok(None)` when none is waiting (the multishot
    /// accept is re-armed then, if it ended and the loop still wants).
    pub(crate) fn accept_from(
        &mut self,
        fd: BorrowedFd<'_>,
    ) -> io::Result<Option<(OwnedFd, crate::addr::SockAddr)>> {
        loop {
            let Some(l) = self.listener_mut(fd) else {
                return Ok(None);
            };
            match l.accepted.pop_front() {
                Some(Ok(conn)) => match socket::peer_addr(conn.as_fd()) {
                    Ok(peer) => return Ok(Some((conn, peer))),
                    // Reset before we asked: as good as ECONNABORTED.
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENOTCONN) => continue,
                    Err(e) => return Err(e),
                },
                Some(Err(e))
                    if matches!(
                        e.raw_os_error(),
                        Some(nix::libc::EINTR | nix::libc::ECONNABORTED)
                    ) =>
                {
                    continue
                }
                Some(Err(e)) => return Err(e),
                None => {
                    if l.wanted && !l.armed {
                        let id = l.id;
                        l.armed = true;
                        if let Err(e) = self.ring.accept_multishot(id) {
                            if let Some(l) = self.listener_mut(fd) {
                                l.armed = false;
                            }
                            return Err(e);
                        }
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn on_accept(&mut self, listener: SourceId, got: Option<io::Result<OwnedFd>>, ended: bool) {
        let Some(at) = self.listeners.iter().position(|l| l.id == listener) else {
            return; // removed meanwhile: a descriptor closes here
        };
        let l = &mut self.listeners[at];
        match got {
            Some(Err(e)) if e.raw_os_error() == Some(nix::libc::ECANCELED) => {}
            Some(got) => l.accepted.push_back(got),
            None => {}
        }
        if ended {
            l.armed = false;
            // A pause taken back before its cancellation completed.
            if l.wanted && l.accepted.is_empty() {
                l.armed = true;
                if let Err(e) = self.ring.accept_multishot(listener) {
                    l.armed = false;
                    l.accepted.push_back(Err(e));
                }
            }
        }
    }

    /// Connects TCP socket `fd` to `addr` through the ring; its completion
    /// comes back as a writable event for `token` (with `error` set when it
    /// failed), after which [`Completion::connect_result`] tells the outcome.
    /// The loop's wheel keeps the connect timeout (a timeout deregisters,
    /// which cancels the connect).
    pub(crate) fn connect(
        &mut self,
        fd: BorrowedFd<'_>,
        token: LoopToken,
        addr: std::net::SocketAddr,
    ) -> io::Result<()> {
        self.register_stream(fd, token, Interest::NONE)?;
        let Some(id) = self
            .source_index(fd)
            .and_then(|i| self.ring.source_at(i as u32))
        else {
            return Err(io::ErrorKind::NotFound.into());
        };
        if let Err(e) = self.ring.connect(id, addr, None) {
            self.deregister(fd);
            return Err(e);
        }
        Ok(())
    }

    /// The outcome of a connect through the ring on `fd`, once it finished.
    pub(crate) fn connect_result(&mut self, fd: BorrowedFd<'_>) -> Option<io::Result<()>> {
        let i = self.source_index(fd)? as u32;
        let at = self.connected.iter().position(|(at, _)| *at == i)?;
        Some(self.connected.swap_remove(at).1)
    }

    /// Why the last send through the ring on `fd` failed, once its error
    /// event came (`None` for any other socket: ask `SO_ERROR`).
    pub(crate) fn send_error(&mut self, fd: BorrowedFd<'_>) -> Option<io::Error> {
        let i = self.source_index(fd)? as u32;
        let at = self.send_failed.iter().position(|(at, _)| *at == i)?;
        Some(self.send_failed.swap_remove(at).1)
    }

    /// Drops the input stashed for `fd` that the loop has not read (a stop
    /// discards it so the close ends the stream rather than resetting it).
    pub(crate) fn discard_unread(&mut self, fd: BorrowedFd<'_>) {
        let Some(i) = self.source_index(fd) else {
            return;
        };
        if let Some(source) = self.sources.get_mut(i).and_then(Option::as_mut) {
            source
                .stash
                .retain(|s| !matches!(s, Stashed::Bytes(_)), &mut self.stashed);
        }
    }

    /// The next completion stashed for `fd`, if it is attached: bytes,
    /// the end of stream (`Ok(None)`), a failure, or `WouldBlock`.
    pub(crate) fn take(&mut self, fd: BorrowedFd<'_>) -> Option<io::Result<Option<RecvBuf>>> {
        let i = self.source_index(fd)?;
        let source = self.sources.get_mut(i)?.as_mut()?;
        Some(match source.stash.pop_front(&mut self.stashed) {
            Some(Stashed::Bytes(buf)) => Ok(Some(buf)),
            Some(Stashed::Eof) => {
                // Later receives see the end again, as on a socket.
                source.ended = true;
                Ok(None)
            }
            Some(Stashed::Failed(e)) => Err(e),
            None if source.ended => Ok(None),
            None => Err(io::ErrorKind::WouldBlock.into()),
        })
    }

    /// The driver's record of source `id`, if `id` is still the live
    /// source of its slot (a completion for a closed one finds nothing).
    fn live(&mut self, id: SourceId) -> Option<&mut Source> {
        if self.ring.source_at(id.index()) != Some(id) {
            return None;
        }
        self.sources
            .get_mut(id.index() as usize)
            .and_then(Option::as_mut)
    }

    /// Hands the connection's oldest queued bytes to the ring, unless a
    /// send is already in flight (its completion brings the loop back
    /// here). The queue lends them ([`OutboundQueue::lend`]: its front
    /// chunk itself when it can, no copy) and keeps counting them until
    /// [`Completion::take_sent`] says they went; the ring owns the buffer
    /// until the send's final completion and then gives it to the loop's
    /// buffer pool. `Ok(true)`: a send started.
    pub(crate) fn submit_sends(
        &mut self,
        fd: BorrowedFd<'_>,
        queue: &mut OutboundQueue,
    ) -> io::Result<bool> {
        let Some(id) = self
            .source_index(fd)
            .and_then(|i| self.ring.source_at(i as u32))
        else {
            return Ok(false);
        };
        if self.ring.sending(id) {
            // Its completion brings the loop back here; if that send goes
            // with this turn's submit, the wait must not sleep past it.
            self.queued_behind_send |= queue.has_unlent() && self.ring.queued_for(id);
            return Ok(false);
        }
        // Nothing while bytes sent are not taken off yet: the completion's
        // writable event consumes them, then settles here again.
        let Some(bytes) = queue.lend(MAX_GATHER) else {
            return Ok(false);
        };
        if let Err(e) = self.ring.send(id, bytes) {
            queue.abandon_lent();
            return Err(e);
        }
        Ok(true)
    }

    /// Sends `buf` (received on this ring) on `fd`, which has nothing
    /// queued: the bytes the loop's queue counts as lent
    /// (`OutboundQueue::push_lent`), sent without a copy; the ring gives
    /// the buffer back to the kernel after the send's final completion.
    pub(crate) fn send_received(&mut self, fd: BorrowedFd<'_>, buf: RecvBuf) -> io::Result<()> {
        let Some(id) = self
            .source_index(fd)
            .and_then(|i| self.ring.source_at(i as u32))
        else {
            return Err(io::ErrorKind::NotFound.into());
        };
        self.ring.send(id, buf)
    }

    /// Bytes sent since the last call (the loop consumes them from the
    /// queue); 0 for a source not attached.
    pub(crate) fn take_sent(&mut self, fd: BorrowedFd<'_>) -> usize {
        self.source_mut(fd)
            .map_or(0, |s| std::mem::take(&mut s.sent) as usize)
    }

    /// A send is in the ring for `fd`.
    pub(crate) fn send_in_flight(&self, fd: BorrowedFd<'_>) -> bool {
        self.source_index(fd)
            .and_then(|i| self.ring.source_at(i as u32))
            .is_some_and(|id| self.ring.sending(id))
    }

    fn stash(&mut self, id: SourceId, item: Stashed) {
        let index = id.index() as usize;
        let stashed = &mut self.stashed;
        let Some(source) = self.sources.get_mut(index).and_then(Option::as_mut) else {
            return; // closed meanwhile: a RecvBuf goes back to the kernel
        };
        if self.ring.source_at(id.index()) != Some(id) {
            return; // (the ring reuses a slot only after its last completion)
        }
        if matches!(
            source.stash.back(stashed),
            Some(Stashed::Eof | Stashed::Failed(_))
        ) {
            return; // nothing follows an end
        }
        source.stash.push_back(item, stashed);
        if !source.listed {
            source.listed = true;
            self.announce.push(index as u32);
            self.newly_received += 1;
        }
    }

    /// Submits what the turn queued and waits (one `io_uring_enter`), then
    /// appends the turn's events to `ready`.
    pub(crate) fn wait(
        &mut self,
        ready: &mut Vec<Event>,
        timeout: Option<Duration>,
    ) -> io::Result<()> {
        let leftovers = self.announce.iter().any(|&i| {
            self.sources[i as usize]
                .as_ref()
                .is_some_and(|s| s.reading && !s.stash.is_empty())
        }) || self
            .listeners
            .iter()
            .any(|l| l.wanted && !l.accepted.is_empty());
        // A level-triggered source the last poll reported may still be
        // ready, and the epoll descriptor wakes the ring's poll only for
        // new events: ask epoll again before sleeping.
        let mut polled_readiness = false;
        if std::mem::take(&mut self.readiness_pending) {
            let before = ready.len();
            self.readiness.wait(ready, Some(Duration::ZERO))?;
            self.readiness_pending = ready.len() > before;
            polled_readiness = true;
        }
        let timeout = if leftovers || self.readiness_pending {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let sends = self.ring.sends_queued();
        let behind_send = std::mem::take(&mut self.queued_behind_send);
        let plan = choose_wait(
            timeout,
            sends,
            behind_send,
            self.batch,
            self.plain_below,
            self.ring.batches_waits(),
        );
        match plan {
            Wait::Each { want, timeout } => self.ring.submit_and_wait(want, timeout)?,
            Wait::Batch {
                want,
                min_wait,
                timeout,
            } => self.ring.submit_and_wait_batch(want, min_wait, timeout)?,
        };
        self.ring.complete(&mut self.events);
        self.newly_received = 0;
        let mut poll_readiness = false;
        let mut events = std::mem::take(&mut self.events);
        for event in events.drain(..) {
            match event {
                RingEvent::Received { source, buf } => self.stash(source, Stashed::Bytes(buf)),
                RingEvent::Eof { source } => self.stash(source, Stashed::Eof),
                RingEvent::RecvFailed { source, error } => {
                    self.stash(source, Stashed::Failed(error))
                }
                RingEvent::Readiness => poll_readiness = true,
                RingEvent::Sent {
                    source,
                    bytes,
                    queued,
                } => {
                    let _ = queued; // the ring knows (`Ring::sending`)
                    if let Some(s) = self.live(source) {
                        // At most the one lent buffer (see `Source::sent`).
                        s.sent = s.sent.saturating_add(bytes as u32);
                        ready.push(sent_event(s.token, false));
                    }
                }
                RingEvent::SendFailed { source, error } => {
                    if let Some(s) = self.live(source) {
                        ready.push(sent_event(s.token, true));
                        self.send_failed.push((source.index(), error));
                    }
                }
                RingEvent::Doorbell => ready.push(readable(LoopToken::Doorbell)),
                RingEvent::Connected { source, result } => {
                    if let Some(s) = self.live(source) {
                        let failed = result.is_err();
                        ready.push(sent_event(s.token, failed));
                        self.connected.push((source.index(), result));
                    }
                }
                RingEvent::Accepted { listener, fd } => {
                    self.on_accept(listener, Some(Ok(fd)), false)
                }
                RingEvent::AcceptEnded { listener, error } => {
                    self.on_accept(listener, error.map(Err), true)
                }
                // Released slots, and operations this driver does not use.
                _ => {}
            }
        }
        self.events = events;
        self.batch = next_batch(self.batch, self.newly_received, self.batch_cap);
        if poll_readiness && !(polled_readiness && self.readiness_pending) {
            let before = ready.len();
            self.readiness.wait(ready, Some(Duration::ZERO))?;
            self.readiness_pending |= ready.len() > before;
        }
        // A listener with connections waiting is announced at every wait
        // until the loop has taken them (it takes a bounded batch per event).
        for l in &self.listeners {
            if l.wanted && !l.accepted.is_empty() {
                ready.push(Event::new(l.token, Event::READABLE));
            }
        }
        // One readable event per stashed completion of every source the
        // loop reads; the others stay listed until it does.
        let mut listed = std::mem::take(&mut self.announce);
        let mut keep = std::mem::take(&mut self.spare);
        for i in listed.drain(..) {
            let Some(source) = self.sources[i as usize].as_mut() else {
                continue;
            };
            if source.stash.is_empty() {
                source.listed = false;
                continue;
            }
            keep.push(i);
            if source.reading {
                let event = readable_token(source.token);
                ready.extend(std::iter::repeat(event).take(source.stash.len(&self.stashed)));
            }
        }
        self.announce = keep;
        self.spare = listed;
        Ok(())
    }
}

/// How many completions the turn's one `io_uring_enter` waits for, and how
/// long, given the loop's `timeout` and the `sends` it submits.
///
/// A writable socket takes a send's bytes during the submit, so the sends'
/// completions are posted before the enter starts waiting: waiting for one
/// completion would return at once, and the loop would need a second enter
/// (a turn with nothing but those completions) to sleep until the next
/// receive. Waiting for `1 + sends` makes the one enter submit and sleep.
/// A send that cannot complete at once (a full socket buffer: its peer
/// reads slowly) would hold the wake-up back until one more completion,
/// so such a wait is bounded by [`SEND_GRACE`]; shorter than the loop's
/// timeout is always allowed (the loop just turns again).
fn wait_past_sends(timeout: Option<Duration>, sends: usize) -> (usize, Option<Duration>) {
    match timeout {
        Some(Duration::ZERO) => (0, timeout),
        _ if sends == 0 => (1, timeout),
        _ => (
            1 + sends,
            Some(timeout.map_or(SEND_GRACE, |t| t.min(SEND_GRACE))),
        ),
    }
}

/// How the turn's one `io_uring_enter` waits when a connection's queue
/// waits behind one of the sends it submits (a second write of the turn
/// after the first went to the ring: a TLS handshake's last flight, then
/// the handler's first reply). Waiting past the sends, as [`plan_wait`]
/// does, would hold those bytes back until the next receive, and when the
/// peer waits for them nothing comes until [`SEND_GRACE`] or the min-wait
/// ends the wait (a timer wake-up per TLS handshake). So wait only for the
/// sends' completions: posted during the submit, they end the enter at
/// once, and the loop hands the rest to the ring in the next one. A send
/// that cannot complete at once bounds the wait by [`SEND_GRACE`], as in
/// [`wait_past_sends`].
fn wait_for_sends(timeout: Option<Duration>, sends: usize) -> Wait {
    if sends == 0 || timeout == Some(Duration::ZERO) {
        let (want, timeout) = wait_past_sends(timeout, sends);
        return Wait::Each { want, timeout };
    }
    Wait::Each {
        want: sends,
        timeout: Some(timeout.map_or(SEND_GRACE, |t| t.min(SEND_GRACE))),
    }
}

/// The turn's wait: below a receive batch of `plain_below` a
/// [`plain_wait`] (no near timer; a poll stays a poll), otherwise
/// [`wait_for_sends`] when bytes wait behind a send of this turn, else
/// [`plan_wait`].
fn choose_wait(
    timeout: Option<Duration>,
    sends: usize,
    behind_send: bool,
    batch: usize,
    plain_below: usize,
    min_wait: bool,
) -> Wait {
    if batch < plain_below && timeout != Some(Duration::ZERO) {
        plain_wait(timeout)
    } else if behind_send {
        wait_for_sends(timeout, sends)
    } else {
        plan_wait(timeout, sends, batch, min_wait)
    }
}

/// How one turn's `io_uring_enter` waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Until `want` completions, at most `timeout` ([`wait_past_sends`]).
    Each {
        want: usize,
        timeout: Option<Duration>,
    },
    /// Until `want` completions, but once `min_wait` has passed until any
    /// (the kernel's min-wait, [`Ring::submit_and_wait_batch`]); at most
    /// `timeout`.
    Batch {
        want: usize,
        min_wait: Duration,
        timeout: Option<Duration>,
    },
}

/// How the turn's one `io_uring_enter` waits, given the loop's `timeout`,
/// the `sends` it submits, the receive `batch` to gather, and whether the
/// kernel bounds a batched wait (`min_wait`).
///
/// Why batch: on loopback a message's receive completes moments after the
/// last reply left, so a wait that returns at the first completion makes a
/// turn (an enter, a wake-up) per one or two messages. A batched wait asks
/// for the sends' own completions (posted during the submit, see
/// [`wait_past_sends`]) plus `batch` more, and once [`BATCH_WAIT`] has
/// passed returns with whatever has come: latency is bounded by it, and
/// a loop with nothing to do still sleeps until its timeout (the kernel
/// wakes the thread only when the batch is complete or the min-wait ends;
/// see `build_uring` in `ring.rs`). A lone connection (`batch` 1) is
/// answered at once. Without the kernel's min-wait: [`wait_past_sends`].
fn plan_wait(timeout: Option<Duration>, sends: usize, batch: usize, min_wait: bool) -> Wait {
    // Waiting for one (nothing sent, a batch of 1) needs no min-wait: the
    // first completion ends it anyway (an idle loop sleeps in a plain wait).
    if timeout == Some(Duration::ZERO) || !min_wait || sends + batch <= 1 {
        let (want, timeout) = wait_past_sends(timeout, sends);
        return Wait::Each { want, timeout };
    }
    Wait::Batch {
        want: sends + batch.max(1),
        min_wait: BATCH_WAIT,
        timeout,
    }
}

/// A wait for the first completion, bounded only by the loop's `timeout`
/// (for a receive batch below [`PLAIN_BELOW`]). It holds no
/// completion back and arms no near timer: [`plan_wait`]'s min-wait and
/// [`SEND_GRACE`] each make the kernel start a timer 100 µs away whenever
/// the wait sleeps, which on a virtual machine reprograms the CPU's timer
/// twice through the hypervisor (~6.5 µs of CPU per sleep against ~0.4 µs
/// for a far timer, `benches/timer_cost.sh`). The price: the sends'
/// completions, posted during the submit, end the enter at once, so a turn
/// with sends takes a second enter to sleep. A send that cannot complete at
/// once needs no grace: its completion alone ends the wait.
/// benches/results/hs-session10-20261205.md: full TLS handshakes on
/// io_uring (2 clients) cost 0.955× tokio-rustls with a bound of 4, 1.129×
/// without, at 0.76 more enters per handshake.
fn plain_wait(timeout: Option<Duration>) -> Wait {
    Wait::Each { want: 1, timeout }
}

/// The next wait's receive batch, from this one's: `got` connections
/// received (each counted once per wait). More than waited for (they
/// arrived while the kernel ran the batch's work): others are busy too,
/// gather that many next time. Fewer (the min-wait ended it): what came
/// is what a min-wait gathers. Bounded by `cap`. A lone connection never
/// brings more than one, so its batch stays 1 and it waits for no one.
fn next_batch(batch: usize, got: usize, cap: usize) -> usize {
    if got > batch {
        got.min(cap.max(1))
    } else if got < batch {
        got.max(1)
    } else {
        batch
    }
}

/// The longest a batched wait holds back completions that have arrived
/// (see [`plan_wait`]): as long as [`SEND_GRACE`].
const BATCH_WAIT: Duration = SEND_GRACE;

/// Most connections' receives one wait gathers (see [`next_batch`]): a
/// quarter of the buffer ring, so a batch never starves it.
const MAX_BATCH: usize = BUFFERS as usize / 4;

/// Overrides [`MAX_BATCH`], for tuning; `0` turns batched waits off, as on
/// a kernel without min-wait (tests simulate one with it).
const BATCH_ENV: &str = "RINGLOOP_URING_BATCH";

/// A receive batch below this waits with [`plain_wait`] (no min-wait, no
/// send grace): a few connections gain little from a batch, and every
/// sleep of a batched wait arms a timer 100 µs away (see [`plain_wait`]).
/// benches/results/uw-session10-20261205.md: full TLS handshakes 0.97×
/// tokio-rustls (1.12× with batched waits), a lone echo connection 0.72×
/// the CPU per message, 50-1,000 connections unchanged (batched either way).
const PLAIN_BELOW: usize = 4;

/// Overrides [`PLAIN_BELOW`]; `0`: never a plain wait (every wait batched
/// or past the sends, as before session 10), for measuring.
const PLAIN_BELOW_ENV: &str = "RINGLOOP_URING_PLAIN_BELOW";

/// `0` sets the ring up without deferred task running (cooperative task
/// running instead), for measuring what deferring buys.
const DEFER_ENV: &str = "RINGLOOP_URING_DEFER";

/// `1` gives the ring a registered file table (`sys/uring/fixed.rs`: a
/// connection's operations name its table entry, not its descriptor).
/// Off by default: on the loaded machine it was measured at par, not
/// better (fget/fput leave the profile, the table's own lookups take most
/// of their place, and each connection pays an `io_uring_register`); see
/// benches/results/u1k-fixed-files-20261205.md. `benches/uring_cpu.sh`'s
/// `io-uring-fixed` server compares it.
const FIXED_ENV: &str = "RINGLOOP_URING_FIXED";

/// `0` turns off sending echoed input from its provided buffer (every
/// write is then copied into the connection's queue), for measuring what
/// it saves (benches/uring_cpu.sh).
const FORWARD_ENV: &str = "RINGLOOP_URING_FORWARD";

/// A number from environment variable `name`, if set and valid.
fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.trim().parse().ok()
}

/// The longest a turn's wait may be held back by a send of that turn that
/// did not complete at once (see [`wait_past_sends`]): the next event is
/// delivered at most this late, and only in that case. When every send
/// completed at once and nothing else comes, the sends' own completions
/// (the loop takes the bytes off the queues) are what waits this long.
/// Timers never wait: the loop's timeout is kept when it is shorter.
const SEND_GRACE: Duration = Duration::from_micros(100);

/// A send completed (`failed`: with an error): the loop takes the bytes
/// off the connection's queue (or closes it).
fn sent_event(token: Token, failed: bool) -> Event {
    let error = if failed { Event::ERROR } else { 0 };
    Event::new(token, Event::WRITABLE | error)
}

fn readable(token: LoopToken) -> Event {
    readable_token(token.encode())
}

fn readable_token(token: Token) -> Event {
    Event::new(token, Event::READABLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14: at most 256 bytes of memory per idle connection on
    /// io_uring, everything included (benches/uring.sh measures it). An
    /// attached connection pays for this record, the ring's slot
    /// (`sys::uring::ring`'s size test) and the loop's `ConnEntry`
    /// (`event_loop::entry`'s); growing any of them needs a reason and a new
    /// measurement.
    #[test]
    fn an_attached_connection_record_stays_small() {
        assert!(
            std::mem::size_of::<Option<super::Source>>() <= 24,
            "Source grew to {} bytes",
            std::mem::size_of::<Option<super::Source>>()
        );
    }

    const CAP: usize = 64;

    #[test]
    fn a_lone_connection_keeps_a_batch_of_one() {
        let mut batch = 1;
        for _ in 0..10 {
            batch = next_batch(batch, 1, CAP);
            assert_eq!(batch, 1);
        }
    }

    #[test]
    fn the_batch_grows_to_what_came_and_shrinks_to_what_a_min_wait_gathered() {
        assert_eq!(next_batch(1, 7, CAP), 7, "more came than waited for");
        assert_eq!(next_batch(7, 7, CAP), 7, "as many as waited for");
        assert_eq!(next_batch(7, 3, CAP), 3, "the min-wait ended it");
        assert_eq!(next_batch(7, 0, CAP), 1, "only sends or a timer");
        assert_eq!(next_batch(7, 500, CAP), CAP, "bounded");
        assert_eq!(next_batch(1, 5, 0), 1, "a zero cap still waits for one");
    }

    #[test]
    fn a_batched_wait_asks_for_the_sends_and_the_batch_bounded_by_the_min_wait() {
        let t = Some(Duration::from_secs(1));
        assert_eq!(
            plan_wait(t, 3, 5, true),
            Wait::Batch {
                want: 8,
                min_wait: BATCH_WAIT,
                timeout: t
            }
        );
        assert_eq!(
            plan_wait(None, 0, 1, true),
            Wait::Each {
                want: 1,
                timeout: None
            },
            "an idle loop waits for one, without a timeout"
        );
        assert_eq!(
            plan_wait(None, 1, 1, true),
            Wait::Batch {
                want: 2,
                min_wait: BATCH_WAIT,
                timeout: None
            },
            "a send and the next receive"
        );
    }

    #[test]
    fn a_plain_wait_ends_at_the_first_completion_and_arms_no_near_timer() {
        for timeout in [None, Some(Duration::from_secs(10))] {
            assert_eq!(
                plain_wait(timeout),
                Wait::Each { want: 1, timeout },
                "only the loop's own timeout bounds it"
            );
        }
    }

    #[test]
    fn below_the_plain_bound_no_wait_arms_a_near_timer_and_from_it_waits_batch() {
        let t = Some(Duration::from_secs(10));
        let near = |w: Wait| match w {
            Wait::Batch { .. } => true,
            Wait::Each { timeout, .. } => timeout.is_some_and(|t| t <= SEND_GRACE),
        };
        for batch in 1..PLAIN_BELOW {
            for (sends, behind) in [(0, false), (1, false), (3, false), (1, true), (2, true)] {
                for timeout in [None, t] {
                    let w = choose_wait(timeout, sends, behind, batch, PLAIN_BELOW, true);
                    assert_eq!(
                        w,
                        Wait::Each { want: 1, timeout },
                        "batch {batch} sends {sends}"
                    );
                    assert!(!near(w));
                }
            }
            assert_eq!(
                choose_wait(Some(Duration::ZERO), 2, true, batch, PLAIN_BELOW, true),
                Wait::Each {
                    want: 0,
                    timeout: Some(Duration::ZERO)
                },
                "a poll stays a poll"
            );
        }
        assert_eq!(
            choose_wait(t, 2, false, PLAIN_BELOW, PLAIN_BELOW, true),
            Wait::Batch {
                want: 2 + PLAIN_BELOW,
                min_wait: BATCH_WAIT,
                timeout: t
            },
            "from the bound on, a batched wait"
        );
        assert_eq!(
            choose_wait(t, 2, true, PLAIN_BELOW, PLAIN_BELOW, true),
            wait_for_sends(t, 2),
            "bytes behind a send, from the bound on"
        );
        assert_eq!(
            choose_wait(t, 1, false, 1, 0, true),
            plan_wait(t, 1, 1, true),
            "a bound of 0 (RINGLOOP_URING_PLAIN_BELOW=0): never plain"
        );
    }

    #[test]
    fn bytes_queued_behind_a_send_of_this_turn_end_the_wait_at_the_sends() {
        let t = Some(Duration::from_secs(1));
        assert_eq!(
            wait_for_sends(t, 2),
            Wait::Each {
                want: 2,
                timeout: Some(SEND_GRACE)
            },
            "only the sends' completions, no receive, no min-wait"
        );
        assert_eq!(
            wait_for_sends(Some(Duration::from_micros(10)), 1),
            Wait::Each {
                want: 1,
                timeout: Some(Duration::from_micros(10))
            },
            "a shorter timeout of the loop stays"
        );
        assert_eq!(
            wait_for_sends(Some(Duration::ZERO), 1),
            Wait::Each {
                want: 0,
                timeout: Some(Duration::ZERO)
            },
            "a poll stays a poll"
        );
        assert_eq!(
            wait_for_sends(t, 0),
            Wait::Each {
                want: 1,
                timeout: t
            }
        );
    }

    #[test]
    fn a_poll_never_waits_and_without_min_wait_each_completion_ends_the_wait() {
        assert_eq!(
            plan_wait(Some(Duration::ZERO), 3, 5, true),
            Wait::Each {
                want: 0,
                timeout: Some(Duration::ZERO)
            }
        );
        // A kernel without min-wait: the sends and one more, the sends'
        // grace bounding the wait (the batch is ignored: nothing would
        // bound a wait for it).
        assert_eq!(
            plan_wait(None, 3, 5, false),
            Wait::Each {
                want: 4,
                timeout: Some(SEND_GRACE)
            }
        );
        assert_eq!(
            plan_wait(None, 0, 5, false),
            Wait::Each {
                want: 1,
                timeout: None
            }
        );
    }
}
