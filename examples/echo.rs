//! Echo server: writes every byte it receives straight back.
//!
//! ```text
//! cargo run --release --example echo -- [ADDR ...] [--loops N] [--lb rr|lc|hash] [--reuseport] [--et | --lt]
//!     [--acceptor-thread]
//!     [--tls-cert PATH --tls-key PATH]
//! ```
//! `ADDR` is a URL such as `tcp://127.0.0.1:9000` (the default),
//! `udp://127.0.0.1:9001`, `unix:///tmp/echo.sock` or `tls://127.0.0.1:9443`
//! (TLS, with the PEM certificate chain and key given by `--tls-cert` and
//! `--tls-key`); any mix may be given.
//! `--lb` picks the load balancer (round-robin, least-connections, source
//! hash), `--reuseport` gives every loop its own listener, `--et` asks for
//! edge-triggered I/O (the default on epoll; asking makes `auto` choose
//! epoll), `--lt` for level-triggered I/O on epoll, `--acceptor-thread`
//! hands connections over from an acceptor thread even with one loop (which
//! otherwise accepts itself).
//! Stops cleanly on Ctrl-C.

mod common;

use ringloop::{Action, Conn, Datagram, Engine, EventHandler, LoadBalancer};

struct Echo;

impl EventHandler for Echo {
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        // Zero-copy: the bytes are still in the loop's read buffer, and go
        // straight to the socket unless it is busy.
        let data = conn.read_all();
        match conn.write(data) {
            Ok(_) => Action::None,
            Err(_) => Action::Close,
        }
    }

    fn on_datagram(&mut self, dgram: &mut Datagram<'_>) -> Action {
        // `udp://` listeners: each datagram back to its sender.
        let _ = dgram.reply(dgram.payload());
        Action::None
    }
}

fn main() {
    let args = common::Args::parse(
        "echo [ADDR ...] [--loops N] [--lb rr|lc|hash] [--reuseport] [--et | --lt] [--acceptor-thread] [--tls-cert PATH --tls-key PATH]",
        &["lb", "tls-cert", "tls-key"],
        &["reuseport", "et", "lt", "acceptor-thread"],
    );
    let lb = match args.text("lb").unwrap_or("rr") {
        "rr" => LoadBalancer::RoundRobin,
        "lc" => LoadBalancer::LeastConnections,
        "hash" => LoadBalancer::SourceAddrHash,
        other => {
            eprintln!("error: --lb takes rr, lc or hash, not {other:?}");
            std::process::exit(2)
        }
    };
    let mut builder = Engine::builder(|_| Echo)
        .load_balancer(lb)
        .reuse_port(args.switch("reuseport"))
        .acceptor_thread(args.switch("acceptor-thread"));
    if args.switch("et") && args.switch("lt") {
        eprintln!("error: --et and --lt exclude each other");
        std::process::exit(2)
    }
    // Neither switch: the engine's default (edge-triggered on epoll).
    if args.switch("et") || args.switch("lt") {
        builder = builder.edge_triggered(args.switch("et"));
    }
    for addr in args.addrs_with_datagrams_or("tcp://127.0.0.1:9000") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    let builder = common::with_tls(&args, &[], builder);
    common::serve("echo", builder);
}
