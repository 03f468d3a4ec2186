//! A layer-4 TCP proxy: every client connection gets its own backend
//! connection, dialled onto the same loop, and bytes are relayed both ways
//! with no cross-thread hop.
//!
//! ```text
//! cargo run --release --example proxy -- --listen tcp://127.0.0.1:8000 --backend tcp://127.0.0.1:9000 [--loops N]
//! # terminate TLS (the stunnel / HAProxy `bind … ssl crt` use):
//! cargo run --release --example proxy -- --listen tls://127.0.0.1:8443 --tls-cert cert.pem --tls-key key.pem --backend tcp://127.0.0.1:9000
//! # originate TLS to the backend, verified against a CA:
//! cargo run --release --example proxy -- --listen tcp://127.0.0.1:8000 --backend tls://127.0.0.1:9443 --backend-ca ca.pem
//! ```
//! (Listen addresses may also be given as positional URLs.) TLS on either
//! side is done in the loop (rustls); the relay, half-close (as
//! `close_notify` then FIN) and back-pressure work the same, on plaintext.
//!
//! - **Same loop**: the client's `on_open` dials the backend with
//!   [`Conn::dial`]; the backend starts with state `Backend { client }`, and
//!   both sides then relay with [`Conn::write_to`] (a direct write, no message).
//! - **Half-close**: when one side closes its write half, the proxy keeps the
//!   other direction open ([`EventHandler::on_read_closed`] returns `None`)
//!   and forwards the FIN with [`Conn::shutdown_write_of`]; each connection
//!   closes once both of its halves are done.
//! - **Back-pressure**: the two sides are linked ([`Conn::link`]): when one
//!   side's outbound queue passes its high-water mark, the other side is not
//!   read until it drains, so a slow reader cannot grow the proxy's memory.
//! - **Failures**: a backend that refuses ([`EventHandler::on_dial_error`]) or
//!   dies closes its client; a client that leaves closes its backend; other
//!   connections are untouched.
//!
//! # What it bounds
//!
//! - **Half-closed relays**, as HAProxy's `client-fin` and `server-fin`: once
//!   either direction of a client connection is closed, it is closed after
//!   `--client-fin-ms` (default 30 s) with no byte moving on it; a backend
//!   connection likewise after `--server-fin-ms` (30 s). A relay whose one
//!   side stopped sending and whose other side never finishes cannot be held
//!   for good.
//! - **Memory per relay**: a few tens of KiB each way (the engine's water
//!   marks pause the side that fills the other), plus at most 1 MiB of early
//!   bytes sent before the backend connects; the engine's buffer budget
//!   bounds the total.
//! - **Slow peers**: the engine's write timeout (60 s without progress)
//!   drops a side that stops reading; its partner goes with it.
//! - **Its own configuration**: the backend must be a stream address
//!   (`tcp://` or `unix://`) and must not be one of the proxy's own listen
//!   addresses (which would relay every connection to itself until the fd
//!   limit); either is refused at start, with exit status 2.

mod common;

use std::time::Duration;

use ringloop::{
    Action, CloseReason, Conn, ConnId, Engine, Error, EventHandler, ListenAddr, LoopContext,
    SockAddr, Timeouts, Transport,
};

/// Bytes a client may send before its backend is connected.
const EARLY_BYTES_LIMIT: usize = 1 << 20;

/// Which side of a relay a connection is.
enum Side {
    /// A client; `backend` is set once the backend connects; `eof` records a
    /// half-close read before then, to forward once the early bytes are.
    Client { backend: Option<ConnId>, eof: bool },
    /// A backend dialled for `client`.
    Backend { client: ConnId },
}

struct Proxy {
    backend: String,
    /// Timeouts of client connections (`half_closed` is client-fin).
    client: Timeouts,
    /// Timeouts of backend connections (`half_closed` is server-fin).
    server: Timeouts,
}

impl EventHandler for Proxy {
    type State = Side;

    fn on_open(&mut self, conn: &mut Conn<'_, Side>) -> Action {
        match conn.state() {
            // An accepted client: dial its backend onto this loop.
            None => {
                let me = conn.id();
                let _ = conn.set_timeouts(self.client);
                conn.set_state(Side::Client {
                    backend: None,
                    eof: false,
                });
                match conn.dial(&self.backend, Side::Backend { client: me }) {
                    Ok(()) => Action::None,
                    Err(e) => {
                        eprintln!("proxy: bad backend address: {e}");
                        Action::Close
                    }
                }
            }
            // The backend connected: tell the client, link them, and relay
            // whatever the client sent meanwhile.
            Some(Side::Backend { client }) => {
                let (client, me) = (*client, conn.id());
                let _ = conn.set_timeouts(self.server);
                match conn.state_of_mut(client) {
                    Ok(Some(Side::Client { backend, .. })) => *backend = Some(me),
                    _ => return Action::Close, // the client left already
                }
                if conn.link(client).is_err() {
                    return Action::Close;
                }
                let _ = conn.engine().handle(client).wake();
                Action::None
            }
            Some(Side::Client { .. }) => Action::None,
        }
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, Side>) -> Action {
        let (peer, forward_fin) = match conn.state() {
            // `eof`: the client half-closed before its backend connected;
            // forward the FIN after the early bytes (this call is the wake
            // the backend sends once connected).
            Some(Side::Client {
                backend: Some(b),
                eof,
            }) => (*b, *eof),
            Some(Side::Backend { client }) => (*client, false),
            _ => {
                // The backend is not connected yet: keep the bytes, within reason.
                return if conn.inbound_buffered() > EARLY_BYTES_LIMIT {
                    Action::Close
                } else {
                    Action::None
                };
            }
        };
        let data = conn.read_all();
        if conn.write_to(peer, data).is_err() {
            return Action::Close;
        }
        if forward_fin && conn.shutdown_write_of(peer).is_err() {
            return Action::Close;
        }
        Action::None
    }

    fn on_read_closed(&mut self, conn: &mut Conn<'_, Side>) -> Action {
        let peer = match conn.state_mut() {
            Some(Side::Client {
                backend: Some(b), ..
            }) => *b,
            Some(Side::Backend { client }) => *client,
            Some(Side::Client { backend: None, eof }) => {
                // The backend is not connected yet: forward the FIN once it
                // is (and the early bytes with it); keep this side open.
                *eof = true;
                return Action::None;
            }
            None => return Action::Close,
        };
        // Forward the FIN; keep this side open for the other direction.
        match conn.shutdown_write_of(peer) {
            Ok(()) => Action::None,
            Err(_) => Action::Close,
        }
    }

    fn on_close(&mut self, conn: &mut Conn<'_, Side>, reason: &CloseReason) -> Action {
        if matches!(reason, CloseReason::Eof) {
            // Both halves finished normally; the peer finishes on its own.
            return Action::None;
        }
        let peer = match conn.state() {
            Some(Side::Client {
                backend: Some(b), ..
            }) => Some(*b),
            Some(Side::Backend { client }) => Some(*client),
            _ => None,
        };
        if let Some(peer) = peer {
            // A reset, an error, a timeout or a local close takes the peer along.
            let _ = conn.close_other(peer);
        }
        Action::None
    }

    fn on_dial_error(&mut self, ctx: &mut LoopContext, state: Side, error: &Error) -> Action {
        if let Side::Backend { client } = state {
            eprintln!("proxy: backend {}: {error}", self.backend);
            let _ = ctx.engine().handle(client).close();
        }
        Action::None
    }
}

/// Why `backend` cannot serve a proxy listening on `listen`, if it cannot.
fn refuse_backend(backend: &str, listen: &[String]) -> Option<String> {
    let backend = match ListenAddr::parse(backend) {
        Ok(addr) => addr,
        Err(e) => return Some(e.to_string()),
    };
    if !matches!(backend.transport(), Transport::Tcp | Transport::Unix) {
        return Some(format!(
            "backend {backend} is not a stream address (tcp:// or unix://)"
        ));
    }
    let same = |listen: &SockAddr| match (listen, backend.sock_addr()) {
        (SockAddr::Inet(l), SockAddr::Inet(b)) => {
            l.port() == b.port()
                && (l.ip() == b.ip() || l.ip().is_unspecified() || b.ip().is_unspecified())
        }
        (SockAddr::Unix(Some(l)), SockAddr::Unix(Some(b))) => l == b,
        _ => false,
    };
    if let SockAddr::Inet(b) = backend.sock_addr() {
        if b.port() == 0 {
            return Some(format!("backend {backend} has no port"));
        }
    }
    listen
        .iter()
        .filter_map(|l| ListenAddr::parse(l).ok())
        .find(|l| l.transport() == backend.transport() && same(l.sock_addr()))
        .map(|l| format!("backend {backend} is this proxy's own listen address {l}"))
}

fn main() {
    let args = common::Args::parse(
        "proxy --listen tcp://127.0.0.1:PORT --backend tcp://127.0.0.1:PORT [--loops N] \
         [--client-fin-ms MS] [--server-fin-ms MS] [--tls-cert PATH --tls-key PATH] [--backend-ca PATH]",
        &["listen", "backend", "client-fin-ms", "server-fin-ms", "tls-cert", "tls-key", "backend-ca"],
        &[],
    );
    let Some(backend) = args.text("backend").map(str::to_string) else {
        eprintln!("error: --backend is required");
        std::process::exit(2)
    };
    let mut addrs = args.addrs.clone();
    if let Some(listen) = args.text("listen") {
        addrs.push(listen.to_string());
    }
    if addrs.is_empty() {
        addrs.push("tcp://127.0.0.1:8000".into());
    }
    if let Some(why) = refuse_backend(&backend, &addrs) {
        eprintln!("proxy: {why}");
        std::process::exit(2)
    }
    let fin = |flag: &str| {
        Timeouts::default().half_closed(Duration::from_millis(args.number(flag, 30_000).max(1)))
    };
    let (client, server) = (fin("client-fin-ms"), fin("server-fin-ms"));
    let mut builder = Engine::builder(move |_| Proxy {
        backend: backend.clone(),
        client,
        server,
    });
    for addr in addrs {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    let builder = common::with_tls(&args, &[], builder);
    common::serve("proxy", builder);
}
