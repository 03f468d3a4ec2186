//! The event-loop actor: owns a poller, a mailbox, the connections it was
//! given and its own handler instance, and runs every callback for them.
//!
//! Nothing else ever touches a loop's connections: other threads reach them
//! only through messages (see [`crate::handle`]). A loop never blocks except
//! in its poller, and never on another actor's mailbox.
//!
//! # One turn
//!
//! ```text
//!   park: announce, re-check mailbox ──▶ epoll_wait (doorbell fd included)
//!     │
//!     ├─▶ I/O events: writable → flush queue; readable → read once into the
//!     │               loop buffer → on_traffic; EOF/error → close
//!     ├─▶ messages (up to a budget): accepted sockets → on_open; writes,
//!     │               wakes, closes from handles; closures to run
//!     ├─▶ retry requests this loop made to full lanes
//!     └─▶ ticker (loop 0, if enabled) ──▶ back to park
//! ```

use std::io;
use std::os::fd::AsFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::actors::slab::{Slab, SlotKey};
use crate::actors::Mailbox;
use crate::conn::{Conn, ConnEntry, LoopRef};
use crate::engine::{Engine, EngineShared};
use crate::error::{Error, Result};
use crate::handle::ConnId;
use crate::handler::{Action, CloseReason, EventHandler, LoopContext};
use crate::message::LoopMessage;
use crate::options::{KeepAlive, Options};
use crate::sys::poller::{Event, Events, Interest, Poller};
use crate::sys::{io as sysio, socket};

const DOORBELL: u64 = u64::MAX;
/// Most messages handled per turn, so I/O is never starved by a flood.
const MESSAGE_BUDGET: usize = 1024;
const MIN_EVENTS: usize = 128;
const MAX_EVENTS: usize = 4096;

/// Socket settings applied to every connection a loop adopts.
struct ConnSettings {
    write_cap: usize,
    nodelay: bool,
    keepalive: Option<KeepAlive>,
    recv_buffer: Option<usize>,
    send_buffer: Option<usize>,
}

pub(crate) struct EventLoop<H: EventHandler> {
    index: usize,
    handler: H,
    ctx: LoopContext,
    poller: Poller,
    events: Events,
    ready: Vec<Event>,
    mailbox: Mailbox<LoopMessage>,
    inbox: Vec<LoopMessage>,
    conns: Slab<ConnEntry<H::State>>,
    read_buf: Vec<u8>,
    engine: Arc<EngineShared>,
    settings: ConnSettings,
    next_tick: Option<Instant>,
}

/// Runs a handler callback; a panic is caught and logged instead of killing
/// the loop (and every other connection on it).
fn guarded<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            log::error!("event handler panicked in {what}");
            None
        }
    }
}

/// What a [`Conn`] needs from its loop, borrowed field by field so that the
/// handler and the connection table can be borrowed mutably beside it.
fn loop_ref<'a>(
    index: usize,
    settings: &ConnSettings,
    engine: &'a Arc<EngineShared>,
) -> LoopRef<'a> {
    LoopRef {
        loop_index: index as u32,
        write_cap: settings.write_cap,
        engine,
    }
}

fn handler_panicked() -> CloseReason {
    CloseReason::Error(io::Error::other("the event handler panicked"))
}

impl<H: EventHandler> EventLoop<H> {
    pub(crate) fn new(
        index: usize,
        handler: H,
        mailbox: Mailbox<LoopMessage>,
        engine: Engine,
        options: &Options,
    ) -> Result<Self> {
        let poller = Poller::new().map_err(|e| Error::io("create a loop's poller", e))?;
        let doorbell = mailbox.doorbell();
        let interest = if doorbell.needs_drain() {
            Interest::READABLE
        } else {
            Interest::READABLE.edge_triggered()
        };
        poller
            .add(doorbell.as_fd(), DOORBELL, interest)
            .map_err(|e| Error::io("register a loop's doorbell", e))?;
        let shared = engine.shared.clone();
        Ok(Self {
            index,
            handler,
            ctx: LoopContext { index, engine },
            poller,
            events: Events::with_capacity(MIN_EVENTS),
            ready: Vec::with_capacity(MIN_EVENTS),
            mailbox,
            inbox: Vec::new(),
            conns: Slab::new(),
            read_buf: vec![0; options.read_buffer_size],
            engine: shared,
            settings: ConnSettings {
                write_cap: options.write_buffer_cap,
                nodelay: options.tcp_nodelay,
                keepalive: options.tcp_keepalive,
                recv_buffer: options.recv_buffer_size,
                send_buffer: options.send_buffer_size,
            },
            next_tick: (options.ticker && index == 0).then(Instant::now),
        })
    }

    /// The actor's thread body: serves until the engine stops, then closes
    /// every connection.
    pub(crate) fn run(mut self) -> Result<()> {
        if let Some(Action::Shutdown) = guarded("on_boot", || self.handler.on_boot(&mut self.ctx)) {
            self.engine.request_stop();
        }
        let outcome = self.serve();
        self.shutdown();
        outcome
    }

    fn serve(&mut self) -> Result<()> {
        while !self.engine.loops_stopping() {
            let timeout = self
                .next_tick
                .map(|t| t.saturating_duration_since(Instant::now()));
            let (poller, events) = (&self.poller, &mut self.events);
            self.mailbox
                .park_with(|may_block| {
                    poller.wait(
                        events,
                        if may_block {
                            timeout
                        } else {
                            Some(Duration::ZERO)
                        },
                    )
                })
                .map_err(|e| Error::io("wait for events", e))?;
            self.process_events();
            self.process_messages();
            self.engine.flush_loop_overflow();
            self.tick();
        }
        Ok(())
    }

    // ----- I/O -----

    fn process_events(&mut self) {
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(self.events.iter());
        if ready.len() == self.events.capacity() && ready.len() < MAX_EVENTS {
            self.events = Events::with_capacity(ready.len() * 2);
        }
        for event in &ready {
            if event.token == DOORBELL {
                if self.mailbox.doorbell().needs_drain() {
                    let _ = self.mailbox.doorbell().drain();
                }
                continue;
            }
            self.on_io(*event);
        }
        self.ready = ready;
    }

    fn on_io(&mut self, event: Event) {
        let key = SlotKey::from_token(event.token);
        let Some(entry) = self.conns.get_mut(key) else {
            return; // an event for a connection closed earlier this turn
        };
        if event.error {
            let reason = match socket::take_error(entry.fd.as_fd()) {
                Ok(Some(e)) => CloseReason::from_io(e),
                Ok(None) => CloseReason::Error(io::Error::other("socket error")),
                Err(e) => CloseReason::from_io(e),
            };
            self.close_conn(key, reason);
            return;
        }
        if event.writable && !entry.outbound.is_empty() {
            if let Err(e) = entry.flush_queue() {
                self.close_conn(key, CloseReason::from_io(e));
                return;
            }
        }
        if (event.readable || event.read_closed) && !entry.read_closed {
            self.read(key);
            return;
        }
        if event.hangup {
            // Both directions are gone: nothing queued can be delivered.
            let reason = if entry.outbound.is_empty() {
                CloseReason::Eof
            } else {
                CloseReason::Reset
            };
            self.close_conn(key, reason);
            return;
        }
        self.settle(key, Action::None);
    }

    /// Reads once into the loop buffer and hands the bytes to the handler.
    fn read(&mut self, key: SlotKey) {
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        match sysio::read(entry.fd.as_fd(), &mut self.read_buf) {
            Ok(0) => {
                // The peer closed its side: finish writing, then close.
                entry.read_closed = true;
                self.settle(key, Action::None);
            }
            Ok(n) => self.traffic(key, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => self.close_conn(key, CloseReason::from_io(e)),
        }
    }

    /// Runs `on_traffic` over leftover + `fresh` bytes of the loop buffer.
    fn traffic(&mut self, key: SlotKey, fresh: usize) {
        let lp = loop_ref(self.index, &self.settings, &self.engine);
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let handler = &mut self.handler;
        let fresh = &self.read_buf[..fresh];
        let leftover = std::mem::take(&mut entry.inbound);
        let action;
        if leftover.is_empty() {
            // Zero-copy: the handler reads the loop's buffer directly.
            let consumed;
            {
                let mut conn = Conn::new(fresh, entry, key, &lp);
                action = guarded("on_traffic", || handler.on_traffic(&mut conn));
                consumed = conn.consumed();
            }
            if consumed < fresh.len() {
                entry.inbound = fresh[consumed..].to_vec();
            }
        } else {
            let mut buf = leftover;
            buf.extend_from_slice(fresh);
            let consumed;
            {
                let mut conn = Conn::new(&buf, entry, key, &lp);
                action = guarded("on_traffic", || handler.on_traffic(&mut conn));
                consumed = conn.consumed();
            }
            if consumed < buf.len() {
                buf.drain(..consumed);
                entry.inbound = buf;
            }
        }
        match action {
            Some(action) => self.settle(key, action),
            None => self.close_conn(key, handler_panicked()),
        }
    }

    /// After a callback or I/O: apply the action, close if due, otherwise make
    /// the poller interest match what the connection needs.
    fn settle(&mut self, key: SlotKey, action: Action) {
        match action {
            Action::Close => {
                if let Some(entry) = self.conns.get_mut(key) {
                    entry.close_with(CloseReason::Local);
                }
            }
            Action::Shutdown => self.engine.request_stop(),
            _ => {}
        }
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(reason) = entry.close_reason.take() {
            self.close_conn(key, reason);
            return;
        }
        if entry.read_closed && entry.outbound.is_empty() {
            self.close_conn(key, CloseReason::Eof);
            return;
        }
        let want_write = !entry.outbound.is_empty();
        let want_read = !entry.read_closed;
        if want_write != entry.write_armed || want_read != entry.read_armed {
            let interest = Interest {
                readable: want_read,
                writable: want_write,
                edge: false,
            };
            if let Err(e) = self.poller.modify(entry.fd.as_fd(), key.token(), interest) {
                self.close_conn(key, CloseReason::from_io(e));
                return;
            }
            entry.write_armed = want_write;
            entry.read_armed = want_read;
        }
    }

    /// Runs `on_close` once, flushes what it can, releases the socket.
    fn close_conn(&mut self, key: SlotKey, reason: CloseReason) {
        let lp = loop_ref(self.index, &self.settings, &self.engine);
        let Some(entry) = self.conns.get_mut(key) else {
            return;
        };
        let handler = &mut self.handler;
        let leftover = std::mem::take(&mut entry.inbound);
        let action = {
            let mut conn = Conn::new(&leftover, entry, key, &lp);
            guarded("on_close", || handler.on_close(&mut conn, &reason))
        };
        if let Some(Action::Shutdown) = action {
            self.engine.request_stop();
        }
        let Some(mut entry) = self.conns.remove(key) else {
            return;
        };
        if !entry.outbound.is_empty()
            && !matches!(reason, CloseReason::Reset | CloseReason::Error(_))
        {
            // Best effort: whatever the socket takes right now.
            let _ = entry.flush_queue();
        }
        let _ = self.poller.delete(entry.fd.as_fd());
        drop(entry); // closes the fd, after on_close, never before
                     // Relaxed: a counter.
        self.engine.loops[self.index]
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    // ----- messages -----

    fn process_messages(&mut self) {
        let mut inbox = std::mem::take(&mut self.inbox);
        self.mailbox.drain(MESSAGE_BUDGET, |m| inbox.push(m));
        for message in inbox.drain(..) {
            self.handle_message(message);
        }
        self.inbox = inbox;
    }

    fn conn_key(&self, id: ConnId) -> Option<SlotKey> {
        let key = id.key();
        (id.loop_index as usize == self.index && self.conns.get(key).is_some()).then_some(key)
    }

    fn handle_message(&mut self, message: LoopMessage) {
        match message {
            LoopMessage::Accepted {
                fd,
                peer,
                listener,
                is_tcp,
            } => {
                if self.engine.loops_stopping() {
                    // Relaxed: a counter; the socket closes as `fd` drops.
                    self.engine.loops[self.index]
                        .connections
                        .fetch_sub(1, Ordering::Relaxed);
                    return;
                }
                self.adopt(ConnEntry::new(fd, peer, listener, is_tcp));
            }
            LoopMessage::Write { id, data, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    let cap = self.settings.write_cap;
                    let entry = self.conns.get_mut(key).expect("checked by conn_key");
                    done.complete(entry.write_owned(data, cap));
                    self.settle(key, Action::None);
                }
            },
            LoopMessage::Writev { id, bufs, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    let cap = self.settings.write_cap;
                    let entry = self.conns.get_mut(key).expect("checked by conn_key");
                    let refs: Vec<&[u8]> = bufs.iter().map(Vec::as_slice).collect();
                    done.complete(entry.writev_bytes(&refs, cap));
                    self.settle(key, Action::None);
                }
            },
            LoopMessage::Wake { id } => {
                if let Some(key) = self.conn_key(id) {
                    self.traffic(key, 0);
                }
            }
            LoopMessage::Close { id, done } => match self.conn_key(id) {
                None => done.complete(Err(Error::ConnectionClosed)),
                Some(key) => {
                    self.close_conn(key, CloseReason::Requested);
                    done.complete(Ok(()));
                }
            },
            LoopMessage::Execute(task) => {
                let ctx = &mut self.ctx;
                guarded("an executed task", || task(ctx));
            }
            LoopMessage::Stop => {}
        }
    }

    /// Takes ownership of an accepted socket: options, registration, on_open.
    fn adopt(&mut self, entry: ConnEntry<H::State>) {
        self.apply_socket_options(&entry);
        let Some(key) = self.conns.insert(entry) else {
            log::error!("loop {} cannot hold more connections", self.index);
            self.engine.loops[self.index]
                .connections
                .fetch_sub(1, Ordering::Relaxed);
            return;
        };
        let entry = self.conns.get_mut(key).expect("just inserted");
        if let Err(e) = self
            .poller
            .add(entry.fd.as_fd(), key.token(), Interest::READABLE)
        {
            log::warn!("could not register a connection from {}: {e}", entry.peer);
            self.conns.remove(key);
            // Relaxed: a counter.
            self.engine.loops[self.index]
                .connections
                .fetch_sub(1, Ordering::Relaxed);
            return;
        }
        entry.read_armed = true;
        let lp = loop_ref(self.index, &self.settings, &self.engine);
        let handler = &mut self.handler;
        let entry = self.conns.get_mut(key).expect("just inserted");
        let action = {
            let mut conn = Conn::new(&[], entry, key, &lp);
            guarded("on_open", || handler.on_open(&mut conn))
        };
        match action {
            Some(action) => self.settle(key, action),
            None => self.close_conn(key, handler_panicked()),
        }
    }

    fn apply_socket_options(&self, entry: &ConnEntry<H::State>) {
        let fd = entry.fd.as_fd();
        let s = &self.settings;
        let mut results = Vec::new();
        if entry.is_tcp {
            results.push(("TCP_NODELAY", socket::set_nodelay(fd, s.nodelay)));
            if let Some(ka) = s.keepalive {
                results.push(("keepalive", socket::set_keepalive(fd, Some(ka.to_sys()))));
            }
        }
        if let Some(n) = s.recv_buffer {
            results.push(("SO_RCVBUF", socket::set_recv_buffer_size(fd, n)));
        }
        if let Some(n) = s.send_buffer {
            results.push(("SO_SNDBUF", socket::set_send_buffer_size(fd, n)));
        }
        for (what, result) in results {
            if let Err(e) = result {
                log::debug!(
                    "could not set {what} on a connection from {}: {e}",
                    entry.peer
                );
            }
        }
    }

    // ----- ticker and shutdown -----

    fn tick(&mut self) {
        let Some(due) = self.next_tick else { return };
        let now = Instant::now();
        if now < due {
            return;
        }
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        let (delay, action) = guarded("on_tick", || handler.on_tick(ctx))
            .unwrap_or((Duration::from_secs(1), Action::None));
        self.next_tick = Some(now + delay);
        if action == Action::Shutdown {
            self.engine.request_stop();
        }
    }

    fn shutdown(&mut self) {
        // Apply what was already queued (writes reach their connections before
        // those close); anything sent from now on is refused.
        for message in self.mailbox.close_and_drain() {
            self.handle_message(message);
        }
        for key in self.conns.keys() {
            self.close_conn(key, CloseReason::Shutdown);
        }
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        guarded("on_shutdown", || handler.on_shutdown(ctx));
        log::debug!("loop {} stopped", self.index);
    }
}
