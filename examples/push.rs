//! Push server: a background thread sends a timestamp line to every connected
//! client every `--interval-ms`, through connection handles; clients need not
//! send anything.
//!
//! ```text
//! cargo run --release --example push -- [ADDR ...] [--loops N] [--interval-ms 1000]
//! ```
//!
//! Connections speak lines (`Framed` with a `LineCodec`). Handlers register
//! each connection's `FrameHandle` in a shared table on open and remove it
//! on close; the pusher thread walks the table and sends each client the
//! line as a frame, encoded with the connection's codec (no `\n` appended
//! by hand). A handle whose connection closed in between is refused by its
//! loop (stale generation), so a push never reaches the wrong client.
//! Ctrl-C stops the engine, and the pusher thread stops with it.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringloop::codec::{FrameCloseReason, FrameConn, FrameHandle, FrameHandler, Framed, LineCodec};
use ringloop::{Action, ConnId, Engine, EngineHandle};

type Clients = Arc<Mutex<HashMap<ConnId, FrameHandle>>>;

struct Push {
    clients: Clients,
}

impl FrameHandler for Push {
    type State = ();

    fn on_open(&mut self, conn: &mut FrameConn<'_, ()>) -> Action {
        let frames = conn.frame_handle();
        self.clients.lock().unwrap().insert(conn.id(), frames);
        Action::None
    }

    fn on_frame(&mut self, _conn: &mut FrameConn<'_, ()>, _line: &[u8]) -> Action {
        Action::None // clients only listen
    }

    fn on_close(&mut self, conn: &mut FrameConn<'_, ()>, _reason: FrameCloseReason<'_>) -> Action {
        self.clients.lock().unwrap().remove(&conn.id());
        Action::None
    }
}

fn pusher(engine: EngineHandle, clients: Clients, interval: Duration) {
    let mut tick = 0u64;
    while !engine.is_stopping() {
        std::thread::sleep(interval);
        tick += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = format!(
            "tick {tick} at {}.{:06}",
            now.as_secs(),
            now.subsec_micros()
        );
        let targets: Vec<FrameHandle> = clients.lock().unwrap().values().cloned().collect();
        for frames in targets {
            // try_: a client too slow to keep up skips a tick instead of
            // making the pusher wait.
            let _ = frames.try_send_frame(line.as_bytes());
        }
    }
}

fn main() {
    let args = common::Args::parse(
        "push [ADDR ...] [--loops N] [--interval-ms MS]",
        &["interval-ms"],
        &[],
    );
    let interval = Duration::from_millis(args.number("interval-ms", 1000).max(1));
    let clients: Clients = Arc::default();
    let table = clients.clone();
    // Lines from clients are ignored, but are still bounded: a peer that
    // sends 1 KiB without a newline is disconnected.
    let codec = match LineCodec::builder().max_frame_length(1024).build() {
        Ok(codec) => codec,
        Err(e) => {
            eprintln!("push: {e}");
            std::process::exit(1)
        }
    };
    let mut builder = Engine::builder(move |_| {
        Framed::new(
            codec.clone(),
            Push {
                clients: table.clone(),
            },
        )
    });
    for addr in args.addrs_or("tcp://127.0.0.1:9000") {
        builder = builder.listen(addr);
    }
    if let Some(n) = args.loops {
        builder = builder.loops(n);
    }
    let server = match common::deploy(builder).build() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("push: {e}");
            std::process::exit(1)
        }
    };
    let engine = server.handle();
    if let Err(e) = ringloop::stop_on_signals(&engine) {
        eprintln!("push: {e}");
        std::process::exit(1)
    }
    for addr in engine.local_addrs() {
        println!(
            "push listening on {addr} with {} loops on {}",
            engine.loop_count(),
            engine.backend()
        );
    }
    let thread = std::thread::spawn({
        let engine = engine.clone();
        move || pusher(engine, clients, interval)
    });
    let result = server.run();
    let _ = thread.join();
    match result {
        Ok(()) => println!("push stopped"),
        Err(e) => {
            eprintln!("push: {e}");
            std::process::exit(1)
        }
    }
}
