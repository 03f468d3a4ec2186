//! TLS connections on the io_uring driver: their ciphertext arrives as the
//! ring's receive completions, in its provided buffers, and is decrypted
//! there, in place; their records leave through the ring's sends.
//!
//! A `tls://` connection on io_uring is attached to the ring like a plain
//! stream (`ConnEntry::ring_sends`): a multishot receive fills provided
//! buffers, and each completion the loop takes ([`Driver::recv`]) goes
//! through the session ([`EventLoop::deliver_tls`]) without a copy of the
//! ciphertext; the buffer goes back to the kernel once the session is done
//! with it (a record cut short is kept by the session, as on epoll). The
//! session's sink queues every record (handshake flights, alerts,
//! application data, `close_notify`) instead of writing it, and settling
//! the connection hands the queue to the ring with the turn's other sends.
//! So a TLS connection costs the same system calls as a plain one: none of
//! its own, only its share of the turn's one `io_uring_enter`.
//!
//! A handshake's last flight (TLS 1.3's session tickets, queued when the
//! client's `Finished` arrives) and the handler's reply to plaintext that
//! came with that `Finished` leave in one send ([`EventLoop::open_tls`]):
//! one send in flight per connection would otherwise make the reply wait
//! for the tickets' completion, a turn of its own.
//!
//! Owns only this read step, the opening's held sends and the hand-back of
//! sends before a close; the
//! session is [`crate::tls`]'s, the handshake and the read path through the
//! session are `tls_io.rs`'s. Never reads a socket itself.
//!
//! [`Driver::recv`]: super::driver::Driver::recv

use std::io;
use std::os::fd::AsFd;

use super::driver::Driver;
use super::entry::{ConnEntry, Stamp};
use super::EventLoop;
use crate::actors::slab::SlotKey;
use crate::handler::EventHandler;
use crate::id::ConnId;
use crate::reason::{Action, CloseReason};
use crate::runtime::message::Completion;
use crate::stats::bump;

impl<H: EventHandler> EventLoop<H> {
    /// Takes the next receive completion of a TLS connection attached to
    /// the ring and passes it through the session to the handler. Returns
    /// the bytes received, or `None` when nothing was waiting or the
    /// connection stopped reading or closed.
    pub(super) fn read_tls_completed(&mut self, key: SlotKey) -> Option<usize> {
        let entry = self.conns.get_mut(key)?;
        let mut got = match self.driver.recv(entry.fd.as_fd()) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
            Err(e) => {
                self.close_conn(key, CloseReason::from_io(e));
                return None;
            }
        };
        let n = got.len();
        if n == 0 {
            self.driver.release(got);
            self.tls_end_of_stream(key);
            return None;
        }
        entry.last_read_ms = Stamp::at(self.now_ms);
        bump(&self.engine.slot(self.index).counters().bytes_in, n as u64);
        match got.owned_bytes_mut() {
            // Decrypted where the kernel put it.
            Some(input) => self.deliver_tls(key, input),
            None => {
                // Not attached after all (read into the driver's buffer):
                // the session needs the bytes apart from the driver.
                let mut input = self.driver.bytes(&got).to_vec();
                self.deliver_tls(key, &mut input);
            }
        }
        self.driver.release(got);
        Some(n)
    }
}

impl<H: EventHandler> EventLoop<H> {
    /// Opens a TLS connection whose handshake just completed. When
    /// `plaintext` follows in the same input, its sends are held back
    /// through `on_open` (nothing goes to the ring yet); the caller then
    /// delivers the plaintext and calls [`EventLoop::send_held`], so the
    /// handshake's last flight and the handler's reply leave together.
    pub(super) fn open_tls(
        &mut self,
        key: SlotKey,
        done: Option<Completion<ConnId>>,
        plaintext: bool,
    ) {
        self.driver.hold_sends(plaintext);
        self.open(key, done);
        self.driver.hold_sends(false);
    }

    /// After [`EventLoop::open_tls`] held sends back and the plaintext was
    /// delivered: hands what still waits to the ring (a settle after
    /// `on_traffic` did already if the handler wrote; not if it did not).
    pub(super) fn send_held(&mut self, key: SlotKey) {
        if self
            .conns
            .get(key)
            .is_some_and(|e| e.ring_sends && e.outbound.has_unlent())
        {
            self.settle(key, Action::None);
        }
    }
}

/// Before a connection whose sends go through the ring is dropped: what
/// the ring sent leaves its queue, and with no send in flight the rest may
/// be written directly (best effort, as on epoll); with one in flight,
/// writing would overtake it, so the rest stays unwritten.
pub(super) fn take_ring_sends<S>(driver: &mut Driver, entry: &mut ConnEntry<S>) {
    if entry.ring_sends {
        let sent = driver.take_sent(entry.fd.as_fd());
        entry.outbound.consume(sent);
        entry.ring_sends = driver.send_in_flight(entry.fd.as_fd());
    }
}
