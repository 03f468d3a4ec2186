//! Push server: a background thread sends a timestamp line to every connected
//! client every `--interval-ms`, through connection handles; clients need not
//! send anything.
//!
//! ```text
//! cargo run --release --example push -- [ADDR ...] [--loops N] [--interval-ms 1000]
//! ```
//!
//! Handlers register each connection's handle in a shared table on open and
//! remove it on close; the pusher thread walks the table. A handle whose
//! connection closed in between is refused by its loop (stale generation),
//! so a push never reaches the wrong client. Ctrl-C stops the engine, and the
//! pusher thread stops with it.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringloop::{Action, CloseReason, Conn, ConnHandle, ConnId, Engine, EventHandler};

type Clients = Arc<Mutex<HashMap<ConnId, ConnHandle>>>;

struct Push {
    clients: Clients,
}

impl EventHandler for Push {
    type State = ();

    fn on_open(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        let handle = conn.handle();
        self.clients.lock().unwrap().insert(handle.id(), handle);
        Action::None
    }

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        conn.discard(usize::MAX); // clients only listen
        Action::None
    }

    fn on_close(&mut self, conn: &mut Conn<'_, ()>, _reason: &CloseReason) -> Action {
        self.clients.lock().unwrap().remove(&conn.handle().id());
        Action::None
    }
}

fn pusher(engine: Engine, clients: Clients, interval: Duration) {
    let mut tick = 0u64;
    while !engine.is_stopping() {
        std::thread::sleep(interval);
        tick += 1;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let line = format!(
            "tick {tick} at {}.{:06}\n",
            now.as_secs(),
            now.subsec_micros()
        );
        let targets: Vec<ConnHandle> = clients.lock().unwrap().values().cloned().collect();
        for handle in targets {
            // try_: a client too slow to keep up skips a tick instead of
            // making the pusher wait.
            let _ = handle.try_async_write(line.clone().into_bytes());
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
    let mut builder = Engine::builder(move |_| Push {
        clients: table.clone(),
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
    let engine = server.engine();
    if let Err(e) = ringloop::stop_on_signals(&engine) {
        eprintln!("push: {e}");
        std::process::exit(1)
    }
    for addr in engine.local_addrs() {
        println!(
            "push listening on {addr} with {} loops",
            engine.loop_count()
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
