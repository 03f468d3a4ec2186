//! Echo server: writes every byte it receives straight back.
//!
//! ```text
//! cargo run --release --example echo -- [ADDR ...] [--loops N]
//! ```
//! `ADDR` is a URL such as `tcp://127.0.0.1:9000` (the default) or
//! `unix:///tmp/echo.sock`; several may be given. Stops cleanly on Ctrl-C.

mod common;

use ringloop::{Action, Conn, Engine, EventHandler};

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
}

fn main() {
    let args = common::Args::parse("echo [ADDR ...] [--loops N]", &[], &[]);
    let mut builder = Engine::builder(|_| Echo);
    for addr in args.addrs_or("tcp://127.0.0.1:9000") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    common::serve("echo", builder);
}
