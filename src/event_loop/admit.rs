//! The loop's side of admission: what happens to an accepted socket before
//! `on_open`. A source over its cap is refused; a connection on a PROXY
//! protocol listener waits (registered, unopened) for its header, which is
//! parsed by [`crate::proxy_protocol`]; then the connection opens with the
//! client's address, and the bytes that came after the header reach
//! `on_traffic` as usual.
//!
//! A connection refused here never opens: the handler hears of it through
//! [`EventHandler::on_reject`] with the reason, and nothing else is affected.
//! This module must never run `on_open` for a connection whose header is not
//! whole, nor lose a byte that followed the header.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use super::entry::{ConnEntry, Phase};
use super::{guarded, EventLoop};
use crate::actors::slab::SlotKey;
use crate::addr::SockAddr;
use crate::admission::Admission;
use crate::handler::EventHandler;
use crate::proxy_protocol::ProxyState;
use crate::proxy_protocol::{self, ProxyAddresses, ProxyCommand, ProxyHeaderError};
use crate::reason::{Action, CloseReason};
use crate::stats::bump;
use crate::sys::io as sysio;

impl<H: EventHandler> EventLoop<H> {
    /// Takes an accepted socket (counted in this loop's connections):
    /// refuses it, or adopts it, opening it now or once its PROXY header is in.
    pub(super) fn admit(
        &mut self,
        fd: OwnedFd,
        peer: SockAddr,
        listener: u16,
        is_tcp: bool,
        admission: Admission,
    ) {
        let ticket = match admission {
            Admission::OverSourceLimit => {
                drop(fd);
                self.engine.slot(self.index).remove_connection();
                self.report_rejection(&peer, CloseReason::SourceLimit);
                return;
            }
            Admission::Counted(ticket) => Some(ticket),
            Admission::Free => None,
        };
        let mut entry = ConnEntry::new(fd, peer, listener, is_tcp);
        if let Some(ticket) = ticket {
            entry.admitted.get_or_insert_with(Box::default).ticket = Some(*ticket);
        }
        if self.engine.deploy().is_proxied(listener) {
            let timeout = self.engine.deploy().header_timeout.as_millis();
            entry.phase = Phase::AwaitingHeader;
            entry.set_proxy(ProxyState::Awaiting {
                received: Vec::new(),
                deadline_ms: self.now_ms + timeout.min(u128::from(u32::MAX)) as u64,
            });
        }
        self.adopt(entry, None);
    }

    /// Reads what the socket has towards the PROXY header; opens the
    /// connection once it is whole, refuses it if it cannot be one.
    pub(super) fn read_proxy_header(&mut self, key: SlotKey) {
        loop {
            let Some(entry) = self.conns.get_mut(key) else {
                return;
            };
            let awaiting = entry.admitted.as_mut().and_then(|a| a.proxy.as_deref_mut());
            let Some(ProxyState::Awaiting { received, .. }) = awaiting else {
                return;
            };
            let n = match sysio::read(entry.fd.as_fd(), &mut self.read_buf) {
                Ok(0) => {
                    let received = received.len();
                    self.refuse_header(key, ProxyHeaderError::Truncated { received });
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.refuse_unopened(key, CloseReason::from_io(e));
                    return;
                }
            };
            bump(&self.engine.slot(self.index).counters().bytes_in, n as u64);
            received.extend_from_slice(&self.read_buf[..n]);
            match proxy_protocol::parse(received) {
                Ok(None) => {
                    // Edge-triggered: keep reading until the socket says it
                    // is dry (a short read is not enough: the peer's end may
                    // have come with these bytes, and no new edge reports it;
                    // one more read per header at most).
                    if !self.settings.edge_triggered {
                        return;
                    }
                }
                Ok(Some((header, used))) => {
                    let rest = received.split_off(used);
                    let balancer = entry.peer.clone();
                    if header.command == ProxyCommand::Proxy {
                        match &header.addresses {
                            ProxyAddresses::Inet { source, .. } => {
                                entry.peer = SockAddr::Inet(*source)
                            }
                            ProxyAddresses::Unix { source, .. } => {
                                entry.peer =
                                    SockAddr::Unix((!source.is_empty()).then(|| unix_path(source)))
                            }
                            _ => {}
                        }
                    }
                    entry.set_proxy(ProxyState::Received { header, balancer });
                    entry.phase = Phase::Open;
                    // On a tls:// listener what follows the header is the
                    // handshake: it goes through the session, not to the handler.
                    let mut handshake = if entry.tls.is_some() {
                        rest
                    } else {
                        entry.inbound = rest;
                        Vec::new()
                    };
                    entry.timer_tick = 0; // the header's deadline no longer applies
                    self.start_session(key, None);
                    if !handshake.is_empty() && self.conns.get(key).is_some() {
                        self.deliver_tls(key, &mut handshake);
                    }
                    let has_input = self.conns.get(key).is_some_and(|e| !e.inbound.is_empty());
                    if has_input && handshake.is_empty() {
                        self.traffic(key, 0);
                    }
                    if self.settings.edge_triggered && self.conns.get(key).is_some() {
                        // More may wait in the socket, with no new edge to come.
                        self.continue_io.push_back(key);
                    }
                    return;
                }
                Err(e) => {
                    self.refuse_header(key, e);
                    return;
                }
            }
        }
    }

    /// Closes a connection whose PROXY header failed, counting it.
    pub(super) fn refuse_header(&mut self, key: SlotKey, error: ProxyHeaderError) {
        self.engine.deploy().gate.count_proxy_refusal();
        self.refuse_unopened(key, CloseReason::ProxyHeader(error));
    }

    /// Closes a connection that never opened (no `on_close`) and reports it.
    pub(super) fn refuse_unopened(&mut self, key: SlotKey, reason: CloseReason) {
        let Some(entry) = self.conns.remove(key) else {
            return;
        };
        self.driver.deregister(entry.fd.as_fd());
        let peer = entry.peer.clone();
        drop(entry); // closes the socket and gives back its place
        self.engine.slot(self.index).remove_connection();
        self.report_rejection(&peer, reason);
    }

    /// The engine handed its listeners to a new process: close this loop's
    /// own (leaving Unix socket files to the new process), tell the handler;
    /// the connections go on as usual.
    pub(super) fn begin_upgrade_drain(&mut self) {
        self.upgrade_drain_seen = true;
        if self.listeners.close_for_upgrade(&mut self.driver) {
            self.engine.deploy().stopped_accepting();
        }
        // The new process reads the UDP sockets now (the same sockets: ours
        // are only our copies).
        for (fd, _) in self.udp.drain(..) {
            self.driver.deregister(fd.as_fd());
        }
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        if let Some(Action::Shutdown) = guarded("on_drain", || handler.on_drain(ctx)) {
            self.engine.request_stop();
        }
    }

    pub(super) fn report_rejection(&mut self, peer: &SockAddr, reason: CloseReason) {
        log::debug!("loop {}: refused {peer}: {reason}", self.index);
        let (ctx, handler) = (&mut self.ctx, &mut self.handler);
        guarded("on_reject", || handler.on_reject(ctx, peer, &reason));
    }
}

fn unix_path(bytes: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::path::Path::new(std::ffi::OsStr::from_bytes(bytes)).to_path_buf()
}
