//! io_uring groundwork for the completion driver (issue 14): probing the
//! kernel, one ring per loop with a provided buffer ring, and operations whose
//! buffers the ring owns until their completions arrive.
//!
//! Owns every `io_uring_setup`, `io_uring_enter` and `io_uring_register` call
//! of the crate, the memory the kernel may write into (the provided buffers) or
//! read from (the send buffers, connect addresses, timeouts, the doorbell's
//! 8-byte buffer) and the descriptors operations target. It never interprets
//! payload bytes, never keeps protocol state about connections beyond what an
//! operation in flight needs, never frees memory the kernel may still touch,
//! and never panics on a completion the kernel sends.
//!
//! * [`probe`]: does `io_uring_setup` work here, and does the kernel have every
//!   operation the driver needs? A typed answer ([`probe::Unsupported`] names
//!   the missing feature) so the loop falls back to epoll with one log line,
//!   and a simulated refusal for tests.
//! * [`bufring`]: the provided buffer ring of one loop (ring-mapped,
//!   `IORING_REGISTER_PBUF_RING`). A completion hands out a
//!   [`RecvBuf`](bufring::RecvBuf), an owned view of the bytes that gives the
//!   buffer back to the kernel when dropped.
//! * [`release`]: when an idle loop gives its receive buffers' pages back.
//! * [`ring`]: the [`Ring`](ring::Ring): sources (descriptors the ring owns),
//!   multishot accept, multishot receive with buffer select, sends of owned
//!   buffers, connect with a timeout, the doorbell read, cancellation, and
//!   teardown.
//! * [`user_data`]: what a completion is for (source index, operation kind,
//!   generation), packed into the 64-bit `user_data`.
//!
//! # How the completion driver sits behind the loop's driver seam
//!
//! The event loop (issue 12) talks to a driver through a seam written for two
//! kinds of driver: a readiness driver (epoll: "this descriptor can be read",
//! then the loop calls `read`) and a completion driver (io_uring: "these bytes
//! arrived", the read already happened). The completion driver is a
//! [`Ring`](ring::Ring) per loop, created on the loop's thread (it is `!Send`),
//! and one loop turn is:
//!
//! 1. the loop queues what the last turn produced: sends, re-arms, closes,
//!    connects (each only fills submission entries, no system call);
//! 2. [`Ring::submit_and_wait`](ring::Ring::submit_and_wait) makes **one**
//!    `io_uring_enter` that submits them all and waits for at least one
//!    completion or the timer wheel's next deadline (or
//!    [`Ring::submit_and_wait_batch`](ring::Ring::submit_and_wait_batch):
//!    for a batch of them, bounded by the kernel's min-wait; the ring is
//!    set up with deferred task running, so the kernel wakes the thread
//!    only when the batch is complete or the min-wait ends);
//! 3. [`Ring::complete`](ring::Ring::complete) turns the completion queue into
//!    [`Event`](ring::Event)s the loop dispatches to its connections.
//!
//! **Who owns which buffer when.** Receive buffers belong to the ring's
//! [`bufring::BufRing`]: the kernel picks one when bytes arrive, the completion
//! moves it into a [`RecvBuf`](bufring::RecvBuf) the loop owns, and dropping
//! the `RecvBuf` gives it back to the kernel. An idle connection therefore
//! holds no buffer at all; only connections with unread bytes do. Send buffers
//! are moved into the ring ([`Ring::send`](ring::Ring::send) takes a `Vec<u8>`
//! or a `RecvBuf`) and stay owned by the source's slot until the send's
//! completion arrives; bytes sent while a send is in flight are appended to one
//! queued buffer per connection and go out as a single send when the first
//! completes (one send in flight per connection keeps the byte order and makes
//! short sends easy to resume). Connect addresses and timeouts live in a box in
//! the slot until both the connect's and the timeout's completions arrive; the
//! doorbell's 8-byte buffer lives in the ring.
//!
//! **Closing and dropping.** [`Ring::close`](ring::Ring::close) cancels every
//! operation on the source and keeps the descriptor and the buffers until the
//! last completion for it arrives; only then is the descriptor closed and the
//! slot reused (with a new generation, so nothing meant for the old connection
//! can reach a new one). Dropping the [`Ring`](ring::Ring) cancels everything
//! in flight and waits (bounded) for the completions; if the kernel has not
//! answered within the bound, the buffers are leaked rather than freed: a leak
//! is a bug we can see, a use-after-free is not.
//!
//! **Handler reads without an extra copy.** The readiness loop reads into the
//! connection's inbound buffer and hands the handler a slice of it. On io_uring
//! the loop hands the handler a slice of the [`RecvBuf`](bufring::RecvBuf)
//! directly; only the bytes the handler leaves unconsumed are copied into the
//! connection's inbound buffer (the `RecvBuf` must go back to the kernel soon,
//! or the ring runs dry). An echo-style handler that writes back what it read
//! can move the `RecvBuf` itself into [`Ring::send`](ring::Ring::send): no copy
//! at all.
//!
//! **Exhaustion.** When every provided buffer is lent out, a multishot receive
//! completes with `ENOBUFS` and stops. No byte is lost (they stay in the
//! socket); the ring remembers the source as starved and re-arms it at the next
//! [`Ring::submit_and_wait`](ring::Ring::submit_and_wait) once buffers have
//! come back.
//!
//! **Back-pressure.** [`Ring::pause_recv`](ring::Ring::pause_recv) cancels a
//! connection's multishot receive; later bytes wait in the socket (and its
//! receive window slows the peer) until the loop arms the receive again: the
//! counterpart of dropping read interest on epoll.
//!
//! **Edge-triggered mode has no meaning here.** There is no readiness to be
//! told about once or repeatedly: a multishot receive posts a completion for
//! every arrival until it is cancelled or runs out of buffers. The loop's
//! `edge_triggered` option only applies to the epoll driver.
//!
//! **Timeouts.** The loop's timer wheel stays the source of read, write and
//! idle timeouts; the ring only bounds how long `submit_and_wait` sleeps.
//! Connect timeouts are a linked timeout on the connect itself, so a connection
//! that never answers costs no timer-wheel entry and no wake-up.

#![allow(unsafe_code)]
// the io_uring ABI: shared rings, raw descriptors, kernel-written memory
// The loop's completion driver (event_loop/driver/uring.rs) uses attached
// sources, multishot receive, sends, pause, close, the doorbell and the
// readiness poll; multishot accept and connects are driven only by
// tests/uring.rs so far (the loop accepts and connects through readiness on
// both drivers).
#![allow(dead_code)]

pub(crate) mod bufring;
pub(crate) mod fixed;
pub(crate) mod probe;
pub(crate) mod release;
pub(crate) mod ring;
pub(crate) mod user_data;
