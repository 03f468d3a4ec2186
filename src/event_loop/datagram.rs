//! Datagrams on this loop's UDP sockets: one `on_datagram` per datagram.
//!
//! Owns only the receive side of unconnected UDP sockets; it must never
//! keep state for a datagram's sender beyond its callback.

use std::io;
use std::os::fd::AsFd;

use super::{guarded, loop_ref, EventLoop, DATAGRAM_BATCH};
use crate::datagram::Datagram;
use crate::handler::EventHandler;
use crate::reason::Action;
use crate::stats::bump;
use crate::sys::io as sysio;

impl<H: EventHandler> EventLoop<H> {
    /// Reads datagrams from UDP socket `i`: one `on_datagram` each.
    pub(super) fn receive_datagrams(&mut self, i: usize) {
        for _ in 0..DATAGRAM_BATCH {
            let Some((fd, listener)) = self.udp.get(i) else {
                return;
            };
            let (n, peer) = match sysio::recv_from(fd.as_fd(), &mut self.read_buf) {
                Ok(got) => got,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; they
                    // concern one peer, not the socket.
                    log::debug!("UDP receive on loop {}: {e}", self.index);
                    continue;
                }
            };
            bump(&self.engine.slot(self.index).counters().bytes_in, n as u64);
            let lp = loop_ref(self.index, &self.settings, &self.engine, self.now_ms);
            let handler = &mut self.handler;
            let payload = &self.read_buf[..n];
            let mut dgram = Datagram::new(payload, fd.as_fd(), peer, i as u32, *listener, &lp);
            if let Some(Action::Shutdown) =
                guarded("on_datagram", || handler.on_datagram(&mut dgram))
            {
                self.engine.request_stop();
            }
        }
    }
}
