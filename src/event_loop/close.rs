//! Closing connections: `on_close` and the release of the socket, graceful
//! closes that flush first (and closes for a TLS error, open or in its
//! handshake, that wait for what is queued before their alert, and, on
//! io_uring, closes asked from another thread that wait for a send in
//! flight, so that what is queued behind it, a `close_notify` or an alert,
//! is not lost), and lingering closes that drain the peer.
//!
//! Owns the end of an opened connection; it must never run `on_close` twice
//! nor close the descriptor before `on_close` ran.

use std::io;
use std::os::fd::AsFd;

use super::entry::{Lingering, Phase, WriteSide};
use super::tls_ring::take_ring_sends;
use super::{guarded, loop_ref, EventLoop};
use crate::actors::slab::SlotKey;
use crate::conn::Conn;
use crate::error::Error;
use crate::handler::EventHandler;
use crate::reason::{Action, CloseReason};
use crate::sys::socket;

impl<H: EventHandler> EventLoop<H> {
    /// Runs `on_close` once, flushes what it can, releases the socket.
    pub(super) fn close_conn(&mut self, key: SlotKey, reason: CloseReason) {
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if entry.is_connecting() {
            // Never opened: the dial fails instead (no close callback).
            let error = match reason {
                CloseReason::Shutdown => Error::EngineStopped,
                other => Error::io("connect", io::Error::other(other.to_string())),
            };
            self.fail_dial(key, error);
            return;
        }
        if entry.awaiting_header() {
            // Never opened: no close callback.
            self.refuse_unopened(key, reason);
            return;
        }
        if entry.phase.handshaking() {
            // Never opened either: no on_close, the handshake failed (for
            // the TLS error whose alert was going out, if it was).
            let reason = match entry.phase.closing() {
                Some(_) => entry.take_lingering_reason(),
                None => reason,
            };
            self.fail_handshake(key, reason);
            return;
        }
        let leftover = std::mem::take(&mut entry.inbound);
        let handler = &mut self.handler;
        let (action, side) = {
            let mut conn = Conn::new(&leftover, &mut self.conns, key, &lp);
            let action = guarded("on_close", || handler.on_close(&mut conn, &reason));
            (action, conn.take_side_effects())
        };
        if let Some(Action::Shutdown) = action {
            self.engine.request_stop();
        }
        let Some(mut entry) = self.conns.remove(key) else {
            return;
        };
        if !matches!(
            reason,
            CloseReason::Reset | CloseReason::Error(_) | CloseReason::Tls(_)
        ) {
            entry.tls_close_notify(&lp);
        }
        // io_uring: what the ring sent leaves the queue; with nothing in
        // flight the rest may be written directly, as on epoll.
        take_ring_sends(&mut self.driver, &mut entry);
        if !entry.outbound.is_empty()
            && !matches!(reason, CloseReason::Reset | CloseReason::Error(_))
        {
            // Best effort: whatever the socket takes right now.
            let _ = entry.flush_queue(&lp);
        }
        if let Some(held) = self.deferred.remove(&key) {
            // Held for back-pressure: written if the queue got out whole,
            // else the connection closed before they drained.
            let delivered = entry.outbound.is_empty();
            for (done, result) in held {
                done.complete(if delivered {
                    result
                } else {
                    Err(Error::ConnectionClosed)
                });
            }
        }
        self.driver.deregister(entry.fd.as_fd());
        let fed_by = entry.overrides.as_ref().and_then(|o| o.fed_by);
        let held = entry.budget_held;
        drop(entry); // closes the fd, after on_close, never before
        self.count_buffered(held, 0);
        self.engine.slot(self.index).remove_connection();
        if let Some(feeder) = fed_by {
            // Its relay target is gone: it may be read again.
            self.settle(feeder, Action::None);
        }
        self.apply_side_effects(key, side);
    }

    /// A close asked from another thread (`ConnHandle::close`): at once,
    /// with a best-effort flush, unless the connection's sends go through
    /// the io_uring driver and one is in flight. Then what is queued behind
    /// that send (replies to earlier messages, a TLS `close_notify`) cannot
    /// be written directly without overtaking it, and would be lost; so the
    /// close waits for the queue to go out, as a graceful close (bounded by
    /// the drain timeout), which is what epoll's direct flush delivers.
    pub(super) fn close_requested(&mut self, key: SlotKey) {
        self.close_behind_ring_send(key, CloseReason::Requested);
    }

    /// A TLS error, on an open connection or during the handshake: closes
    /// at once if the alert the session owes the peer went out with
    /// everything before it; else the alert, queued behind bytes not yet
    /// written (a send in the ring, or a queue the socket did not take, such
    /// as a handshake flight larger than the sockets hold), waits for them
    /// (bounded by the drain timeout, as
    /// [`close_requested`](Self::close_requested), and a handshake by its
    /// own timeout too), and the connection
    /// closes once its queue is out, without lingering. Closing at once
    /// would lose the alert: a direct write on io_uring would overtake the
    /// send in flight, and on either driver the socket takes no more now.
    /// A failed handshake ends as one ([`fail_handshake`]) once written.
    ///
    /// [`fail_handshake`]: Self::fail_handshake
    pub(super) fn close_for_tls_error(&mut self, key: SlotKey, error: rustls::Error) {
        self.close_behind_ring_send(key, CloseReason::Tls(error));
    }

    /// Closes `key` for `reason` now, or once its queue went out (the
    /// connection is `Closing`, reading stops, the drain timeout bounds
    /// the wait): for a TLS error whenever bytes are queued (its alert is
    /// among them), else when its sends go through the io_uring driver and
    /// one is in flight (writing the rest directly would overtake the send,
    /// and dropping it would lose it).
    fn close_behind_ring_send(&mut self, key: SlotKey, reason: CloseReason) {
        let waits = self.conns.get(key).is_some_and(|e| match reason {
            CloseReason::Tls(_) => e.tls_alert_waits(),
            _ => e.ring_sends && e.phase.has_opened() && self.driver.send_in_flight(e.fd.as_fd()),
        });
        if !waits {
            self.close_conn(key, reason);
            return;
        }
        if let Some(entry) = self.conns.get_mut(key) {
            entry.close_with(reason);
        }
        self.settle(key, Action::None);
    }

    /// Closes `key` after a graceful close flushed its queue: at once, or,
    /// with lingering enabled and the peer possibly still sending, after
    /// shutting the write side and draining the peer's input.
    pub(super) fn finish_graceful_close(&mut self, key: SlotKey, reason: CloseReason) {
        // A TLS error's close (its alert out) never lingers, as one whose
        // alert went out at once (`close_for_tls_error`).
        let linger_ms = self
            .settings
            .linger_ms
            .filter(|_| !matches!(reason, CloseReason::Tls(_)));
        let Some(linger_ms) = linger_ms else {
            self.close_conn(key, reason);
            return;
        };
        let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let mut lingers =
            !entry.read_closed() && !entry.is_datagram && self.drain_deadline.is_none();
        if lingers && entry.tls.is_some() {
            // close_notify goes out before the FIN. Written here, directly,
            // only with nothing of this connection in the ring (order); if
            // it cannot all go now, close without lingering instead (the
            // close writes what it can and then closes).
            entry.tls_close_notify(&lp);
            take_ring_sends(&mut self.driver, entry);
            lingers = !entry.ring_sends && matches!(entry.flush_queue(&lp), Ok(true));
        }
        let lingers = lingers && socket::shutdown_write(entry.fd.as_fd()).is_ok();
        if !lingers {
            self.close_conn(key, reason);
            return;
        }
        entry.write_side = WriteSide::Shut;
        let deadline_ms = self.now_ms + linger_ms;
        entry.phase = Phase::Lingering(Box::new(Lingering {
            reason,
            deadline_ms,
            handshake: false,
        }));
        self.timeouts_in_use = true;
        entry.timer_tick = self.wheel.schedule(key, deadline_ms);
        if self.settings.edge_triggered {
            // Input already waiting brings no new edge.
            self.continue_io.push_back(key);
        }
        self.settle(key, Action::None);
    }

    /// Reads and discards a lingering connection's input; closes it at the
    /// peer's end of stream (or an error).
    pub(super) fn drain_lingering(&mut self, key: SlotKey) {
        for _ in 0..16 {
            let Some(entry) = self.conns.get_mut(key) else {
                return;
            };
            let driver = &mut self.driver;
            let got = driver.recv(entry.fd.as_fd()).map(|got| {
                let n = got.len();
                driver.release(got);
                n
            });
            match got {
                Ok(n) if n > 0 => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                _ => {
                    let reason = entry.take_lingering_reason();
                    self.close_conn(key, reason);
                    return;
                }
            }
        }
        if self.settings.edge_triggered {
            self.continue_io.push_back(key);
        }
    }
}
