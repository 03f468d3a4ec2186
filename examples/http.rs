//! HTTP/1.1 plaintext server by TechEmpower's rules: `GET /plaintext` (and
//! `/`) answers `Hello, World!` with `Server`, `Date`, `Content-Type` and
//! `Content-Length`, with keep-alive and pipelining.
//!
//! ```text
//! cargo run --release --example http -- [ADDR ...] [--loops N] [--edge-triggered]
//!     [--tls-cert PATH --tls-key PATH]
//! curl -i http://127.0.0.1:8080/plaintext
//! curl -i --cacert ca.pem https://localhost:8443/plaintext   # with tls://127.0.0.1:8443
//! wrk -t1 -c256 -d5s http://127.0.0.1:8080/plaintext
//! ```
//! `ADDR` is a URL such as `tcp://127.0.0.1:8080` (the default),
//! `unix:///tmp/http.sock` or `tls://127.0.0.1:8443` (HTTPS, with the PEM
//! certificate chain and key given by `--tls-cert` and `--tls-key`; ALPN
//! `http/1.1`). `--edge-triggered` serves connections edge-triggered
//! ([`EngineBuilder::edge_triggered`](ringloop::EngineBuilder::edge_triggered);
//! level-triggered by default), for comparing the two modes' latency.
//! Stops cleanly on Ctrl-C.
//!
//! The handler, its request parser and the cached `Date` are in
//! `examples/http_server/mod.rs` (shared with `tests/http.rs`); its module
//! documentation explains the design.

mod common;
mod http_server;

fn main() {
    let args = common::Args::parse(
        "http [ADDR ...] [--loops N] [--edge-triggered] [--tls-cert PATH --tls-key PATH]",
        &["tls-cert", "tls-key"],
        &["edge-triggered"],
    );
    let mut builder = http_server::builder();
    for addr in args.addrs_or("tcp://127.0.0.1:8080") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    if args.switch("edge-triggered") {
        builder = builder.edge_triggered(true);
    }
    let builder = common::with_tls(&args, &[b"http/1.1"], builder);
    common::serve("http", builder);
}
