//! `soak-server`: the ringloop server `harness soak` runs for minutes while
//! it mixes echo load, churn, slow readers, idle connections and resets.
//!
//! ```text
//! soak-server tcp://127.0.0.1:PORT [--loops 2] [--idle-timeout-ms 2000]
//!             [--high 1048576] [--low 262144]
//! ```
//!
//! It echoes, with an idle timeout on every connection, and outbound water
//! marks with the pause-reading back-pressure policy. A connection whose
//! first bytes are `PUSH <n>\n` instead gets `<n>` bytes of the soak stream
//! (seed 0, see `stream.rs`) from a thread writing through the connection's
//! handle, 64 KiB per `async_write`, each only after the previous one
//! completed: the contract under which back-pressure holds completions.
//!
//! It binds loopback addresses only, prints `soak-server listening on ADDR`,
//! its counters every 5 s (`stats: …`), ringloop's warnings and errors as
//! `log: LEVEL …`, and on SIGINT/SIGTERM stops gracefully and prints
//! `final: … warnings=N errors=N push_errors=N`, exiting 0 if the engine
//! stopped cleanly.

#[path = "../stream.rs"]
#[allow(dead_code)] // the server only writes the stream
mod stream;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ringloop::{
    Action, BackPressure, Conn, ConnHandle, Engine, EventHandler, SockAddr, Timeouts, WaterMarks,
};

/// Bytes per pusher write.
const PUSH_CHUNK: usize = 64 * 1024;

static WARNINGS: AtomicU64 = AtomicU64::new(0);
static ERRORS: AtomicU64 = AtomicU64::new(0);
static PUSH_ERRORS: AtomicU64 = AtomicU64::new(0);

/// Prints and counts ringloop's warnings and errors.
struct CountingLogger;

impl log::Log for CountingLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match record.level() {
            log::Level::Error => ERRORS.fetch_add(1, Ordering::Relaxed),
            _ => WARNINGS.fetch_add(1, Ordering::Relaxed),
        };
        println!("log: {} {}", record.level(), record.args());
    }
    fn flush(&self) {}
}

/// Echo, or a push for a `PUSH <n>\n` connection.
struct Soak;

impl EventHandler for Soak {
    /// Set once the connection's first bytes were looked at.
    type State = ();

    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        if conn.state().is_none() {
            let head = conn.peek(conn.inbound_buffered());
            if head.starts_with(b"PUSH ") {
                let Some(end) = head.iter().position(|&b| b == b'\n') else {
                    return Action::None; // the rest of the line is coming
                };
                let Some(total) = std::str::from_utf8(&head[5..end])
                    .ok()
                    .and_then(|s| s.trim().parse::<u64>().ok())
                else {
                    return Action::Close;
                };
                conn.discard(end + 1);
                conn.set_state(());
                let handle = conn.handle();
                let spawned = std::thread::Builder::new()
                    .name("soak-pusher".into())
                    .spawn(move || push(handle, total));
                return match spawned {
                    Ok(_) => Action::None,
                    Err(_) => Action::Close,
                };
            }
            conn.set_state(());
        }
        let data = conn.read_all();
        match conn.write(data) {
            Ok(_) => Action::None,
            Err(_) => Action::Close,
        }
    }
}

/// Writes `total` bytes of stream 0, one completed write at a time. A write
/// that fails (the client reset or went away) ends it.
fn push(handle: ConnHandle, total: u64) {
    let mut sent = 0u64;
    let mut chunk = vec![0u8; PUSH_CHUNK];
    while sent < total {
        let n = PUSH_CHUNK.min((total - sent) as usize);
        stream::fill(0, sent, &mut chunk[..n]);
        let (tx, rx) = mpsc::channel();
        let queued = handle.async_write(chunk[..n].to_vec(), move |r| {
            let _ = tx.send(r);
        });
        match (queued, rx.recv_timeout(Duration::from_secs(600))) {
            (Ok(()), Ok(Ok(_))) => sent += n as u64,
            _ => {
                PUSH_ERRORS.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}

struct Args {
    addr: String,
    loops: usize,
    idle_timeout: Duration,
    high: usize,
    low: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        addr: String::new(),
        loops: 2,
        idle_timeout: Duration::from_millis(2000),
        high: 1 << 20,
        low: 256 << 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|e| format!("{name} {v:?}: {e}"))
        };
        match arg.as_str() {
            "--loops" => args.loops = value("--loops")? as usize,
            "--idle-timeout-ms" => {
                args.idle_timeout = Duration::from_millis(value("--idle-timeout-ms")?)
            }
            "--high" => args.high = value("--high")? as usize,
            "--low" => args.low = value("--low")? as usize,
            a if a.starts_with("--") => return Err(format!("unknown option {a}")),
            a if args.addr.is_empty() => args.addr = a.to_string(),
            a => return Err(format!("unexpected argument {a:?}")),
        }
    }
    let sa: SocketAddr = args
        .addr
        .strip_prefix("tcp://")
        .ok_or("the address must be tcp://IP:PORT")?
        .parse()
        .map_err(|e| format!("{}: {e}", args.addr))?;
    if !sa.ip().is_loopback() {
        return Err("soak-server binds loopback addresses only".into());
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("soak-server: {e}\nusage: soak-server tcp://127.0.0.1:PORT [--loops 2] [--idle-timeout-ms 2000] [--high 1048576] [--low 262144]");
            return ExitCode::from(2);
        }
    };
    static LOGGER: CountingLogger = CountingLogger;
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Warn);

    let built = Engine::builder(|_| Soak)
        .listen(args.addr.as_str())
        .loops(args.loops)
        .timeouts(Timeouts::none().idle(args.idle_timeout))
        .write_water_marks(WaterMarks::new(args.high, args.low))
        .back_pressure(BackPressure::PauseReading)
        .build();
    let server = match built {
        Ok(s) => s,
        Err(e) => {
            eprintln!("soak-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = server.handle();
    if let Err(e) = ringloop::stop_on_signals(&engine) {
        eprintln!("soak-server: {e}");
        return ExitCode::FAILURE;
    }
    if let SockAddr::Inet(sa) = engine.local_addrs()[0].sock_addr() {
        println!("soak-server listening on tcp://{sa}");
    }
    {
        let engine = engine.clone();
        std::thread::spawn(move || {
            while !engine.is_stopping() {
                std::thread::sleep(Duration::from_secs(5));
                println!("stats: {}", engine.total_stats());
            }
        });
    }
    let outcome = server.run();
    println!(
        "final: {} | warnings={} errors={} push_errors={}",
        engine.total_stats(),
        WARNINGS.load(Ordering::Relaxed),
        ERRORS.load(Ordering::Relaxed),
        PUSH_ERRORS.load(Ordering::Relaxed)
    );
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak-server: {e}");
            ExitCode::FAILURE
        }
    }
}
