//! HTTP/1.1 plaintext server by TechEmpower's rules: `GET /plaintext` (and
//! `/`) answers `Hello, World!` with `Server`, `Date`, `Content-Type` and
//! `Content-Length`, with keep-alive and pipelining.
//!
//! ```text
//! cargo run --release --example http -- [ADDR ...] [--loops N]
//! curl -i http://127.0.0.1:8080/plaintext
//! wrk -t1 -c256 -d5s http://127.0.0.1:8080/plaintext
//! ```
//! `ADDR` is a URL such as `tcp://127.0.0.1:8080` (the default) or
//! `unix:///tmp/http.sock`. Stops cleanly on Ctrl-C.
//!
//! The handler, its request parser and the cached `Date` are in
//! `examples/http_server/mod.rs` (shared with `tests/http.rs`); its module
//! documentation explains the design.

mod common;
mod http_server;

fn main() {
    let args = common::Args::parse("http [ADDR ...] [--loops N]", &[], &[]);
    let mut builder = http_server::builder();
    for addr in args.addrs_or("tcp://127.0.0.1:8080") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    common::serve("http", builder);
}
