//! The Redis-protocol (RESP2) key-value server behind `examples/kv.rs`,
//! shared with `tests/kv.rs` (which mounts this directory with `#[path]`).
//!
//! # Commands
//!
//! PING, ECHO, SET (EX, PX, NX, XX, KEEPTTL, GET), GET, DEL, EXISTS, INCR,
//! DECR, INCRBY, DECRBY, MSET, MGET, EXPIRE and PEXPIRE (NX, XX, GT, LT), TTL,
//! PTTL, DBSIZE, FLUSHALL, FLUSHDB, SELECT 0, QUIT, CLIENT LIST and CLIENT ID
//! (see `clients.rs`; behind a PROXY protocol balancer `addr=` is the real
//! client), and the `COMMAND` (with
//! COUNT, INFO and DOCS) and `CONFIG GET` replies that `redis-cli` and
//! `redis-benchmark` ask for. Requests are RESP arrays of bulk strings or
//! inline commands (`redis-cli`-style quoting), pipelined at will: every
//! complete command of a read is answered, in order, into one buffer written
//! once. Wrong arity, unknown commands and bad options get Redis' `-ERR`
//! replies and the connection carries on; framing that cannot be recovered
//! (a bad length, a missing `$`, a bulk string over the limit, an inline line
//! over 64 KiB) gets `-ERR Protocol error: ...` and a close, as in Redis.
//!
//! # Where the keys live
//!
//! Every loop's handler holds the same [`Store`]: one key space shared by
//! all loops, split into 64 mutex-protected shards (see `store.rs` for the
//! locking order, atomic MSET and expiry). The alternative, keys owned by
//! loops and commands forwarded between loop actors with `EngineHandle::execute`,
//! was rejected: with N loops a fraction (N−1)/N of commands would be remote,
//! each costing two cross-thread messages and a wake-up instead of one
//! uncontended lock (tens of nanoseconds), and pipelined replies would have
//! to be put back in order per connection. The shared store keeps a command
//! on the loop that read it, start to finish.
//!
//! # Expiry
//!
//! Lazy on access, plus an active purge run by loop 0's ticker every 100 ms
//! ([`builder`] turns the ticker on), so keys nobody reads still go away.
//!
//! # Limits: what it bounds
//!
//! - **Input**: bulk strings up to [`Limits::max_bulk`] (128 MiB by
//!   default, `--max-bulk` in the example), which `CONFIG GET
//!   proto-max-bulk-len` reports, checked on the `$<len>` header before any
//!   of the body is buffered; nothing is allocated from an announced length.
//!   One pending command may hold [`Limits::max_command`] (a max bulk plus 1
//!   MiB); the engine's own input cap (`max_inbound`) sits just above it, so
//!   the handler always answers first: a bulk over the limit gets `-ERR
//!   Protocol error: invalid bulk length` and a close, never a bare reset.
//! - **Errors before a close are not lost**: the engine's lingering close
//!   ([`LINGER`], as nginx does) flushes the error, shuts the write side and
//!   reads and discards what the client still sends (the rest of a refused
//!   bulk) until it closes, so its kernel does not answer with a reset that
//!   would destroy the error reply.
//! - **Output**: a connection whose unread replies pass
//!   [`Limits::max_output`] (twice `max_command`) is closed (the engine's
//!   `BackPressure::Close` policy with that high-water mark), so a client
//!   that pipelines without reading cannot exhaust memory.
//! - **All connections together** hold at most the engine's buffer budget
//!   (four times the input cap, at least 512 MiB): partial bulks from many
//!   clients are paused, then the largest closed.
//! - **Clients**: at most [`Limits::max_clients`] (10,000, Redis'
//!   `maxclients`); one more gets `-ERR max number of clients reached`.
//! - **Time**: a command must arrive whole within the engine's
//!   incomplete-input timeout (60 s without consuming a byte of it; a 128
//!   MiB bulk needs about 2 MB/s), and a client must take its replies
//!   within the write timeout (60 s without progress).

#![allow(dead_code)] // the example and the tests each use a subset

pub mod clients;
pub mod commands;
pub mod resp;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use ringloop::{
    Action, BackPressure, Conn, Engine, EngineBuilder, EventHandler, LoopContext, WaterMarks,
};

/// How long a closing connection may linger, draining what its client
/// still sends, so an error sent before the close is not lost to a reset.
pub const LINGER: Duration = Duration::from_secs(5);

pub use resp::Limits;
pub use store::Store;

use clients::{Activity, Clients};
use commands::{Argv, Flow};
use resp::{Frame, Parser};

/// Replies pending within one read are written out past this size.
const FLUSH_AT: usize = 256 * 1024;
/// Above this size the reply buffer is handed to the connection (no copy)
/// instead of copied into it.
const HAND_OVER: usize = 64 * 1024;

/// An engine builder serving `store` with `limits`, ticker on (loop 0
/// purges expired keys). Add addresses and loops, then build.
pub fn builder(store: Arc<Store>, limits: Limits) -> EngineBuilder<Kv> {
    // A client whose unread replies pass the output cap is closed by the
    // engine's back-pressure (rather than merely no longer read).
    let marks = WaterMarks::new(limits.max_output, limits.max_output / 4);
    // The engine's input cap just above the handler's, so the handler's
    // `-ERR` comes first; a budget that fits a few such commands.
    let max_inbound = limits.max_command.saturating_add(64 << 10);
    let budget = max_inbound.saturating_mul(4).max(512 << 20);
    let clients = Arc::new(Clients::default());
    Engine::builder(move |_| Kv::new(store.clone(), limits.clone(), clients.clone()))
        .ticker(true)
        .write_water_marks(marks)
        .back_pressure(BackPressure::Close)
        .max_inbound(max_inbound)
        .buffer_budget(budget)
        .lingering_close(Some(LINGER))
}

/// One loop's handler.
pub struct Kv {
    store: Arc<Store>,
    limits: Limits,
    clients: Arc<Clients>,
    /// Replies of the current read.
    out: Vec<u8>,
    /// Unquoted arguments of an inline command.
    scratch: Vec<u8>,
}

/// Per-connection state: the command being parsed, and the client's entry
/// in the client table.
#[derive(Debug, Default)]
pub struct KvConn {
    parser: Parser,
    client: Option<(u64, Arc<Activity>)>,
}

impl Kv {
    /// A handler over `store`.
    pub fn new(store: Arc<Store>, limits: Limits, clients: Arc<Clients>) -> Kv {
        Kv {
            store,
            limits,
            clients,
            out: Vec::with_capacity(16 * 1024),
            scratch: Vec::new(),
        }
    }

    /// Sends what `out` holds.
    fn flush(&mut self, conn: &mut Conn<'_, KvConn>) -> bool {
        let sent = if self.out.len() > HAND_OVER {
            let out = std::mem::replace(&mut self.out, Vec::with_capacity(16 * 1024));
            conn.write_vec(out)
        } else {
            let sent = conn.write(&self.out);
            self.out.clear();
            sent
        };
        sent.is_ok()
    }
}

impl EventHandler for Kv {
    type State = KvConn;

    fn on_open(&mut self, conn: &mut Conn<'_, KvConn>) -> Action {
        if conn.engine().connection_count() > self.limits.max_clients {
            let _ = conn.write(b"-ERR max number of clients reached\r\n");
            return Action::Close;
        }
        let laddr = conn
            .local_addr()
            .map_or_else(|_| "?".into(), |a| a.to_string());
        let fd = conn.raw_fd().unwrap_or(-1);
        let client = self.clients.add(conn.peer_addr().to_string(), laddr, fd);
        conn.set_state(KvConn {
            client: Some(client),
            ..KvConn::default()
        });
        Action::None
    }

    fn on_close(&mut self, conn: &mut Conn<'_, KvConn>, _reason: &ringloop::CloseReason) -> Action {
        if let Some((id, _)) = conn.take_state().and_then(|st| st.client) {
            self.clients.remove(id);
        }
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, KvConn>) -> Action {
        let input = conn.peek(usize::MAX);
        let mut st = conn.take_state().unwrap_or_default();
        let mut pos = 0;
        let mut flow = Flow::Continue;
        let mut now_ms = None;
        self.out.clear();
        while flow == Flow::Continue {
            let rest = &input[pos..];
            match st.parser.parse(rest, &self.limits, &mut self.scratch) {
                Frame::Incomplete => break,
                Frame::Skip(len) => pos += len,
                Frame::Command { len, inline } => {
                    let base = if inline { &self.scratch[..] } else { rest };
                    let argv = Argv::new(base, st.parser.args());
                    let name = argv.get(0);
                    let me = st.client.as_ref().map_or(0, |(id, activity)| {
                        let now = *now_ms.get_or_insert_with(|| self.clients.now_ms());
                        activity.record(name, now);
                        *id
                    });
                    flow = if clients::is_client(name) {
                        self.clients.command(me, argv, &mut self.out);
                        Flow::Continue
                    } else {
                        commands::execute(&self.store, &self.limits, argv, &mut self.out)
                    };
                    pos += len;
                }
                Frame::Error(msg) => {
                    resp::error(&mut self.out, &msg);
                    flow = Flow::Close;
                }
            }
            if self.out.len() >= FLUSH_AT && !self.flush(conn) {
                return Action::Close;
            }
            if conn.outbound_buffered() + self.out.len() > self.limits.max_output {
                // The peer does not read its replies: drop it rather than
                // buffer without end.
                self.out.clear();
                return Action::Close;
            }
        }
        if flow == Flow::Close {
            pos = input.len(); // nothing after QUIT or a framing error is read
        }
        conn.discard(pos);
        conn.set_state(st);
        if !self.out.is_empty() && !self.flush(conn) {
            return Action::Close;
        }
        match flow {
            Flow::Continue => Action::None,
            Flow::Close => Action::Close,
        }
    }

    fn on_tick(&mut self, _ctx: &mut LoopContext) -> (Duration, Action) {
        self.store.purge_expired();
        (store::PURGE_EVERY, Action::None)
    }
}
