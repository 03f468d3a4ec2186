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
//! Owns only this read step, the sending of a handshake's last flight
//! that waited for the reply to the plaintext behind it
//! ([`EventLoop::send_opening_flight`], both drivers) and the hand-back of
//! sends before a close; the
//! session is [`crate::tls`]'s, the handshake and the read path through the
//! session are `tls_io.rs`'s. Never reads a socket itself.
//!
//! [`Driver::recv`]: super::driver::Driver::recv

use std::io;
use std::os::fd::AsFd;

use super::driver::Driver;
use super::entry::{ConnEntry, Stamp};
use super::{loop_ref, EventLoop};
use crate::actors::slab::SlotKey;
use crate::handler::EventHandler;
use crate::reason::{Action, CloseReason};
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
    /// After a handshake that ended with plaintext behind it (TLS 1.3: the
    /// client's `Finished` and its first request in one read), once
    /// `on_open` and `on_traffic` ran: sends what the session still holds
    /// of the handshake's last flight (the session tickets), unless the
    /// handler's reply already took it along (a write sends every record
    /// the session has, in order). Holding the flight until then makes the
    /// tickets and the reply leave in one write on epoll and one send on
    /// io_uring, where one send in flight per connection would otherwise
    /// make the reply wait for the tickets' completion, a turn of its own.
    pub(super) fn send_opening_flight(&mut self, key: SlotKey) {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if let Err(e) = entry.tls_send(&lp) {
            self.close_conn(key, CloseReason::from_io(e));
            return;
        }
        // Queued and not handed to the socket or the ring yet (the settle
        // after `on_traffic` ran before, or none ran).
        if entry.outbound.has_unlent() {
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
