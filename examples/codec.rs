//! Framed echo server: speaks length-prefixed frames (a 4-byte big-endian
//! length, then the payload) and sends every frame back re-encoded.
//!
//! ```text
//! cargo run --release --example codec -- [ADDR ...] [--loops N]
//! ```
//! `ADDR` is a URL such as `tcp://127.0.0.1:9000` (the default) or
//! `unix:///tmp/codec.sock`; several may be given. Stops cleanly on Ctrl-C.
//!
//! A peer announcing a frame over the maximum (8 MiB) is disconnected as
//! soon as its header arrives, and the reason is logged:
//!
//! ```text
//! printf '\0\0\0\5hello' | nc -q1 127.0.0.1 9000 | xxd      # the frame, echoed
//! printf '\xff\xff\xff\xff' | nc -q1 127.0.0.1 9000         # refused
//! ```

mod common;

use ringloop::codec::{FrameCloseReason, FrameConn, FrameHandler, Framed, LengthFieldCodec};
use ringloop::{Action, Engine};

struct Echo;

impl FrameHandler for Echo {
    type State = ();

    fn on_frame(&mut self, conn: &mut FrameConn<'_, ()>, frame: &[u8]) -> Action {
        // `frame` is the payload, still in the loop's read buffer.
        match conn.write_frame(frame) {
            Ok(()) => Action::None,
            Err(_) => Action::Close,
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
    let args = common::Args::parse("codec [ADDR ...] [--loops N]", &[], &[]);
    // 4-byte big-endian length field, stripped from decoded frames and
    // prepended to encoded ones; frames up to 8 MiB.
    let codec = match LengthFieldCodec::builder().length_field_length(4).build() {
        Ok(codec) => codec,
        Err(e) => {
            eprintln!("codec: {e}");
            std::process::exit(1)
        }
    };
    let mut builder = Engine::builder(move |_| Framed::new(codec, Echo));
    for addr in args.addrs_or("tcp://127.0.0.1:9000") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    common::serve("codec", builder);
}
