//! HTTP/1.1 plaintext server by TechEmpower's rules: `GET /plaintext` (and
//! `/`) answers `Hello, World!` with `Server`, `Date`, `Content-Type` and
//! `Content-Length`, with keep-alive and pipelining.
//!
//! ```text
//! cargo run --release --example http -- [ADDR ...] [--loops N]
//!     [--edge-triggered | --level-triggered] [--tls-cert PATH --tls-key PATH]
//! curl -i http://127.0.0.1:8080/plaintext
//! curl -i --cacert ca.pem https://localhost:8443/plaintext   # with tls://127.0.0.1:8443
//! wrk -t1 -c256 -d5s http://127.0.0.1:8080/plaintext
//! ```
//! `ADDR` is a URL such as `tcp://127.0.0.1:8080` (the default),
//! `unix:///tmp/http.sock` or `tls://127.0.0.1:8443` (HTTPS, with the PEM
//! certificate chain and key given by `--tls-cert` and `--tls-key`; ALPN
//! `http/1.1`).
//!
//! On epoll connections are served edge-triggered, the engine's default
//! ([`EngineBuilder::edge_triggered`](ringloop::EngineBuilder::edge_triggered)),
//! as tokio's are: a level-triggered socket goes back on epoll's ready list
//! each time it is reported and is polled again at the next wait whether or
//! not a new request came, one `tcp_poll` more per request in the kernel
//! when each connection has one request in flight. Measured idle, pinned,
//! 256 connections, one request per write (`HTTP_AB_PIN=1 benches/http_ab.sh
//! 1 5 ringloop "target/release/examples/http --level-triggered" tokio`):
//! 3.01 µs of server CPU per request edge-triggered against 3.21
//! level-triggered (tokio 3.29), p99 0.98 ms against 1.33.
//! `--level-triggered` serves level-triggered on epoll; `--edge-triggered`
//! asks for edge-triggered mode explicitly (which makes `auto` choose
//! epoll). On io_uring there is no such mode. Stops cleanly on Ctrl-C.
//!
//! The handler, its request parser and the cached `Date` are in
//! `examples/http_server/mod.rs` (shared with `tests/http.rs`); its module
//! documentation explains the design.

mod common;
mod http_server;

fn main() {
    let args = common::Args::parse(
        "http [ADDR ...] [--loops N] [--edge-triggered | --level-triggered] \
         [--tls-cert PATH --tls-key PATH]",
        &["tls-cert", "tls-key"],
        &["edge-triggered", "level-triggered"],
    );
    let mut builder = http_server::builder();
    for addr in args.addrs_or("tcp://127.0.0.1:8080") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    match (
        args.switch("edge-triggered"),
        args.switch("level-triggered"),
    ) {
        (true, true) => {
            eprintln!("error: --edge-triggered and --level-triggered exclude each other");
            std::process::exit(2)
        }
        (true, false) => builder = builder.edge_triggered(true),
        (false, true) => builder = builder.edge_triggered(false),
        // The engine's default: edge-triggered on epoll.
        (false, false) => {}
    }
    let builder = common::with_tls(&args, &[b"http/1.1"], builder);
    common::serve("http", builder);
}
