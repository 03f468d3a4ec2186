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
//! The pairing is [`Relay`]'s (see [`ringloop::relay`]); this file says only
//! where the backend is and which timeouts each side gets.
//!
//! - **Same loop**: each client's backend is dialled onto the client's loop,
//!   and both sides relay with direct writes (no message, no thread hop).
//! - **Half-close**: when one side closes its write half, the other
//!   direction stays open and the FIN is forwarded; each connection closes
//!   once both of its halves are done.
//! - **Back-pressure**: the two sides are linked: when one side's outbound
//!   queue passes its high-water mark, the other side is not read until it
//!   drains, so a slow reader cannot grow the proxy's memory.
//! - **Failures**: a backend that refuses or dies closes its client; a
//!   client that leaves closes its backend; other connections are untouched.
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

use ringloop::relay::{Backend, Relay, RelayHandler, Relayed};
use ringloop::{
    Action, Conn, ConnId, Engine, Error, ListenAddr, LoopContext, SockAddr, Timeouts, Transport,
};

struct Proxy {
    backend: String,
    /// Timeouts of client connections (`half_closed` is client-fin).
    client: Timeouts,
    /// Timeouts of backend connections (`half_closed` is server-fin).
    server: Timeouts,
}

impl RelayHandler for Proxy {
    type State = ();

    fn backend(&mut self, client: &mut Conn<'_, Relayed<()>>) -> Option<Backend<'_>> {
        let _ = client.set_timeouts(self.client);
        Some(Backend::new(&self.backend))
    }

    fn on_backend_open(&mut self, backend: &mut Conn<'_, Relayed<()>>) -> Action {
        let _ = backend.set_timeouts(self.server);
        Action::None
    }

    fn on_dial_error(&mut self, _ctx: &mut LoopContext, _client: ConnId, error: &Error) {
        eprintln!("proxy: backend {}: {error}", self.backend);
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
    common::refuse_datagrams(&addrs);
    if let Some(why) = refuse_backend(&backend, &addrs) {
        eprintln!("proxy: {why}");
        std::process::exit(2)
    }
    let fin = |flag: &str| {
        Timeouts::default().half_closed(Duration::from_millis(args.number(flag, 30_000).max(1)))
    };
    let (client, server) = (fin("client-fin-ms"), fin("server-fin-ms"));
    let mut builder = Engine::builder(move |_| {
        Relay::new(Proxy {
            backend: backend.clone(),
            client,
            server,
        })
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
