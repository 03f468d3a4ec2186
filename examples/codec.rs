//! Framed echo server: speaks length-prefixed frames (a 4-byte big-endian
//! length, then the payload) and sends every frame back re-encoded.
//!
//! ```text
//! cargo run --release --example codec -- [ADDR ...] [--loops N] [--half-frame-ms MS] [--pool]
//! ```
//! `ADDR` is a URL such as `tcp://127.0.0.1:9000` (the default) or
//! `unix:///tmp/codec.sock`; several may be given. Stops cleanly on Ctrl-C.
//!
//! With `--pool` it is an RPC server's skeleton: each frame is answered on
//! the worker pool, and the worker sends the reply as a frame through the
//! connection's `FrameHandle` (encoded with the connection's codec, no
//! header written by hand). Replies stay in order: reading is paused while
//! a connection's job runs, and the worker resumes it after sending, so the
//! frames that arrived meanwhile wait (in the kernel, and decoded lazily
//! in the server) instead of piling up as jobs.
//!
//! # What it bounds
//!
//! - **Frame size**: at most 8 MiB on the wire, *the 4-byte header
//!   included*, so a payload is at most 8 MiB − 4 bytes (8,388,604). A peer
//!   announcing more is disconnected as soon as its header arrives, and the
//!   reason is logged.
//! - **Half-sent frames**: a frame must arrive whole within
//!   `--half-frame-ms` (default 30 s) of its first byte; a peer that stops
//!   halfway (or trickles) is closed. The partial frame waits unconsumed in
//!   the connection, so the engine's incomplete-input timeout does this, and
//!   the engine's buffer budget bounds what all half-sent frames hold
//!   together.
//! - **Peers that do not read** their echoes: reading stops at the engine's
//!   water marks (a few tens of KiB queued) and the write timeout (60 s
//!   without progress) drops them.
//!
//! ```text
//! printf '\0\0\0\5hello' | nc -q1 127.0.0.1 9000 | xxd      # the frame, echoed
//! printf '\xff\xff\xff\xff' | nc -q1 127.0.0.1 9000         # refused
//! ```

mod common;

use ringloop::codec::{FrameCloseReason, FrameConn, FrameHandler, Framed, LengthFieldCodec};
use std::time::Duration;

use ringloop::codec::DEFAULT_MAX_FRAME_LENGTH;
use ringloop::{Action, Engine, Timeouts};

struct Echo {
    /// Answer on the worker pool instead of on the loop.
    pool: bool,
}

impl FrameHandler for Echo {
    type State = ();

    fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
        if !self.pool {
            // `frame` is the payload, still in the loop's read buffer.
            return match conn.write_frame(frame) {
                Ok(()) => Action::None,
                Err(_) => Action::Close,
            };
        }
        let frames = conn.frame_handle();
        let request = frame.to_vec();
        let job = move || {
            // The blocking work would go here. The reply is encoded on this
            // worker with the connection's codec; reading resumes after it.
            let sent = frames.send_frame(&request, |_| {});
            if sent.is_ok() {
                let _ = frames.resume_reading();
            }
        };
        match conn.engine().submit(job) {
            Ok(()) => {
                conn.pause_reading(); // one job in flight per connection
                Action::None
            }
            Err(e) if e.is_full() => {
                let _ = conn.write_frame(b"busy");
                Action::None
            }
            Err(_) => Action::None, // stopping: the connection closes soon
        }
    }

    fn on_close(&mut self, conn: &mut FrameConn<'_, ()>, reason: FrameCloseReason<'_>) -> Action {
        if let FrameCloseReason::Codec(e) = reason {
            eprintln!("codec: dropped {}: {e}", conn.peer_addr());
        }
        Action::None
    }
}

fn main() {
    let args = common::Args::parse(
        "codec [ADDR ...] [--loops N] [--half-frame-ms MS] [--pool]",
        &["half-frame-ms"],
        &["pool"],
    );
    let pool = args.switch("pool");
    let half_frame = Duration::from_millis(args.number("half-frame-ms", 30_000).max(1));
    // 4-byte big-endian length field, stripped from decoded frames and
    // prepended to encoded ones; frames up to 8 MiB on the wire, header
    // included.
    let codec = LengthFieldCodec::builder()
        .length_field_length(4)
        .max_frame_length(DEFAULT_MAX_FRAME_LENGTH)
        .build();
    let codec = match codec {
        Ok(codec) => codec,
        Err(e) => {
            eprintln!("codec: {e}");
            std::process::exit(1)
        }
    };
    let mut builder = Engine::builder(move |_| Framed::new(codec, Echo { pool }))
        .timeouts(Timeouts::default().incomplete(half_frame));
    for addr in args.addrs_or("tcp://127.0.0.1:9000") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    common::serve("codec", builder);
}
