//! Messages from other threads: accepted sockets, writes, wakes, closes,
//! dials and tasks, applied in the order they arrive per sender.
//!
//! Owns the mailbox side of the loop; it must never block on a sender.

use std::os::fd::AsFd;

use super::entry::{ConnEntry, Stamp};
use super::io::Fresh;
use super::{guarded, loop_ref, EventLoop, MESSAGE_BUDGET};
use crate::actors::slab::SlotKey;
use crate::conn::send_datagram;
use crate::error::{Error, Result};
use crate::handler::EventHandler;
use crate::id::ConnId;
use crate::reason::{Action, CloseReason};
use crate::runtime::message::{initial_state, Completion, LoopMessage};
use crate::stats::bump;

impl<H: EventHandler> EventLoop<H> {
    pub(super) fn process_messages(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        // Skips the lanes when the turn's park found them empty and no
        // sender rang since (the common turn of a loop busy with I/O): what
        // came after the park's re-check is found by the next park's, which
        // then does not sleep (see `Mailbox::drain_after_park`).
        let n = self
            .mailbox
            .drain_after_park(MESSAGE_BUDGET, |m| inbox.push(m));
        if n > 0 {
            bump(&self.engine.slot(self.index).counters().messages, n as u64);
            for message in inbox.drain(..) {
                self.handle_message(message);
            }
        }
        self.inbox = inbox;
    }

    pub(super) fn conn_key(&self, id: ConnId) -> Option<SlotKey> {
        let key = id.key();
        (id.loop_index as usize == self.index && self.conns.get(key).is_some()).then_some(key)
    }

    pub(super) fn handle_message(&mut self, message: LoopMessage) {
        match message {
            LoopMessage::Accepted {
                fd,
                peer,
                listener,
                is_tcp,
                admission,
            } => {
                if self.engine.loops_stopping() {
                    // Accepted just before the stop reached the acceptor:
                    // closed unopened, and the handler told, as for one
                    // that was waiting for its PROXY header.
                    drop(fd);
                    self.engine.slot(self.index).remove_connection();
                    self.report_rejection(&peer, CloseReason::Shutdown);
                    return;
                }
                self.admit(fd, peer, listener, is_tcp, admission);
            }
            LoopMessage::Write { id, data, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
                    let entry = self.conns.get_mut(key).expect("checked by conn_key");
                    let result = entry.write_owned(data, &lp);
                    self.complete_write(key, done, result);
                }
            },
            LoopMessage::Writev { id, bufs, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
                    let entry = self.conns.get_mut(key).expect("checked by conn_key");
                    let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
                    let result = entry.writev_bytes(&refs, &lp);
                    self.complete_write(key, done, result);
                }
            },
            LoopMessage::SendTo {
                socket,
                peer,
                data,
                done,
            } => match self.udp.get(socket as usize) {
                Some((fd, _)) => done.complete(send_datagram(fd.as_fd(), &data, &peer)),
                None => done.complete(Err(Error::ConnectionClosed)),
            },
            LoopMessage::Dial {
                addr,
                done,
                tls,
                state,
            } => match initial_state(state) {
                Ok(state) => self.start_dial(*addr, state, Some(done), tls),
                Err(e) => done.complete(Err(e)),
            },
            LoopMessage::Enroll { fd, done, state } => match initial_state(state) {
                Ok(state) => self.enroll(fd, state, done),
                Err(e) => done.complete(Err(e)),
            },
            LoopMessage::Wake { id } => {
                if let Some(key) = self.conn_key(id) {
                    self.woken(key);
                }
            }
            LoopMessage::Close { id, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    self.close_requested(key);
                    done.complete(Ok(()));
                }
            },
            LoopMessage::Reading { id, on } => {
                if let Some(key) = self.conn_key(id) {
                    let entry = self.conns.get_mut(key).expect("checked by conn_key");
                    if on && entry.user_paused {
                        // Held-back input starts its incomplete-input clock afresh.
                        entry.input_since_ms = Stamp::at(self.now_ms);
                    }
                    entry.user_paused = !on;
                    let waiting = on && !entry.inbound.is_empty();
                    if on && self.settings.edge_triggered {
                        // No new edge will come for bytes already waiting.
                        self.continue_io.push_back(key);
                    }
                    if waiting {
                        self.traffic(key, 0);
                    } else {
                        self.settle(key, Action::None);
                    }
                }
            }
            LoopMessage::Execute(task) => {
                let ctx = &mut self.ctx;
                guarded("an executed task", || task(ctx));
            }
            LoopMessage::Stop => {}
        }
    }

    /// Runs `on_wake` for a wake (over the input waiting unread, if any;
    /// nothing new is read). One call per wake message: wakes are not
    /// merged.
    fn woken(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get(key) else {
            return;
        };
        let (queued, paused) = (entry.outbound.len(), entry.user_paused);
        let Some((action, side, _)) =
            self.run_on_input(key, Fresh::Scratch(0), "on_wake", |h, conn| h.on_wake(conn))
        else {
            return;
        };
        let mut held_input = false;
        if let Some(entry) = self.conns.get(key) {
            let resumed = paused && !entry.user_paused;
            if resumed && self.settings.edge_triggered {
                // Resumed: no new edge will come for bytes already waiting.
                self.continue_io.push_back(key);
            }
            // Resumed with input already read: no read will bring it back.
            held_input = resumed && !entry.inbound.is_empty();
            if entry.outbound.len() > queued {
                // Replies past the high-water mark stop the reading, as
                // after `on_traffic` (see `settle`).
                self.input_key = Some(key);
            }
        }
        self.after_callback(key, action, side);
        self.input_key = None;
        let still_reading = |e: &ConnEntry<H::State>| !e.user_paused && e.close_reason.is_none();
        if held_input && self.conns.get(key).is_some_and(still_reading) {
            // As `ConnHandle::resume_reading` does (`Reading` above).
            self.traffic(key, 0);
        }
    }

    /// Answers an async write once applied, or holds the answer while its
    /// connection is over the high-water mark: the writer feels the
    /// back-pressure.
    pub(super) fn complete_write(
        &mut self,
        key: SlotKey,
        done: Completion<usize>,
        result: Result<usize>,
    ) {
        self.settle(key, Action::None);
        match self.conns.get(key) {
            Some(entry) if entry.under_pressure() && result.is_ok() => {
                self.deferred.entry(key).or_default().push((done, result));
            }
            Some(_) => done.complete(result),
            // Closed while applying it (a write error, or back-pressure).
            None => done.complete(result.and(Err(Error::ConnectionClosed))),
        }
    }
}
