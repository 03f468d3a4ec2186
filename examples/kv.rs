//! A Redis-protocol (RESP2) key-value server: strings with expiry, pipelining,
//! inline commands; works with `redis-cli` and `redis-benchmark`.
//!
//! ```text
//! cargo run --release --example kv -- [ADDR ...] [--loops N] [--max-bulk BYTES] [--maxclients N]
//! redis-cli -p 6379 set greeting hello
//! redis-benchmark -p 6379 -t set,get,incr -P 16 -n 1000000 -q
//! ```
//! `ADDR` is a URL such as `tcp://127.0.0.1:6379` (the default) or
//! `unix:///tmp/kv.sock`. `--max-bulk` caps a bulk string (Redis'
//! `proto-max-bulk-len`; 128 MiB by default), and the engine's input cap and
//! buffer budget follow it; `--maxclients` caps connected clients (10,000).
//! What it bounds is listed in `examples/kv_server/mod.rs`. Stops cleanly on
//! Ctrl-C.
//!
//! The handler, parser, commands and store are in `examples/kv_server/`
//! (shared with `tests/kv.rs`); its module documentation explains the design:
//! one key space shared by every loop, in 64 mutex-protected shards, with
//! lazy expiry plus an active purge on loop 0's ticker.

mod common;
mod kv_server;

use std::sync::Arc;

fn main() {
    let args = common::Args::parse(
        "kv [ADDR ...] [--loops N] [--max-bulk BYTES] [--maxclients N]",
        &["max-bulk", "maxclients"],
        &[],
    );
    let default = kv_server::Limits::default();
    let mut limits =
        kv_server::Limits::for_max_bulk(args.number("max-bulk", default.max_bulk as u64) as usize);
    limits.max_clients = args.number("maxclients", default.max_clients as u64) as usize;
    let mut builder = kv_server::builder(Arc::new(kv_server::Store::new()), limits);
    for addr in args.addrs_or("tcp://127.0.0.1:6379") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    common::serve("kv", builder);
}
