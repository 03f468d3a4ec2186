//! The connected clients, for Redis's `CLIENT LIST` and `CLIENT ID`.
//!
//! One table for the whole server, locked only when a client connects or
//! disconnects and when somebody lists them. What changes per command (the
//! last command and when it ran) lives in each client's own [`Activity`],
//! written with relaxed atomic stores by the loop serving the client, once
//! per read rather than once per command, so serving commands takes no lock.
//! Behind a PROXY protocol balancer `addr` is the real client (what
//! `Conn::peer_addr` says) and `laddr` the server's socket.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::commands::Argv;
use super::resp;

/// The longest command name kept for `cmd=` (longer ones are cut).
const CMD_BYTES: usize = 16;

/// What a client did last: when (ms since the table's start) and which
/// command (lower case, NUL-padded, in two words).
#[derive(Debug, Default)]
pub struct Activity {
    last_ms: AtomicU64,
    cmd: [AtomicU64; 2],
}

impl Activity {
    /// Records `name` as the last command, run at `now_ms`.
    pub fn record(&self, name: &[u8], now_ms: u64) {
        let mut bytes = [0u8; CMD_BYTES];
        let n = name.len().min(CMD_BYTES);
        bytes[..n].copy_from_slice(&name[..n]);
        bytes.make_ascii_lowercase();
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        // Relaxed: a snapshot for CLIENT LIST; a torn read shows a mix of
        // two recent commands at worst.
        self.cmd[0].store(word(0), Ordering::Relaxed);
        self.cmd[1].store(word(1), Ordering::Relaxed);
        self.last_ms.store(now_ms, Ordering::Relaxed);
    }

    fn cmd(&self) -> String {
        let mut bytes = [0u8; CMD_BYTES];
        for (i, w) in self.cmd.iter().enumerate() {
            // Relaxed: see `record`.
            bytes[i * 8..i * 8 + 8].copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(CMD_BYTES);
        match end {
            0 => "NULL".to_string(),
            _ => String::from_utf8_lossy(&bytes[..end]).into_owned(),
        }
    }
}

struct Client {
    addr: String,
    laddr: String,
    fd: i32,
    opened_ms: u64,
    activity: Arc<Activity>,
}

/// Every connected client.
pub struct Clients {
    epoch: Instant,
    next_id: AtomicU64,
    table: Mutex<BTreeMap<u64, Client>>,
}

impl Default for Clients {
    fn default() -> Self {
        Clients {
            epoch: Instant::now(),
            next_id: AtomicU64::new(1),
            table: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Clients {
    /// Milliseconds since the table was made (the clock of `Activity`).
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Registers a client; returns its id and its activity record.
    pub fn add(&self, addr: String, laddr: String, fd: i32) -> (u64, Arc<Activity>) {
        // Relaxed: only uniqueness matters.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity::default());
        let now = self.now_ms();
        activity.last_ms.store(now, Ordering::Relaxed);
        let client = Client {
            addr,
            laddr,
            fd,
            opened_ms: now,
            activity: activity.clone(),
        };
        self.lock().insert(id, client);
        (id, activity)
    }

    /// Forgets client `id`.
    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Client>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `CLIENT LIST`, in Redis's format (the fields ringloop knows).
    pub fn list(&self) -> String {
        let now = self.now_ms();
        let mut text = String::new();
        for (id, c) in self.lock().iter() {
            // Relaxed: see `Activity::record`.
            let last = c.activity.last_ms.load(Ordering::Relaxed);
            text.push_str(&format!(
                "id={id} addr={} laddr={} fd={} name= age={} idle={} flags=N db=0 cmd={}\n",
                c.addr,
                c.laddr,
                c.fd,
                now.saturating_sub(c.opened_ms) / 1000,
                now.saturating_sub(last) / 1000,
                c.activity.cmd()
            ));
        }
        text
    }

    /// Runs a `CLIENT` command for client `me`.
    pub fn command(&self, me: u64, argv: Argv<'_>, out: &mut Vec<u8>) {
        let sub = argv.get(1).to_ascii_lowercase();
        match (sub.as_slice(), argv.len()) {
            (b"list", 2) => resp::bulk(out, self.list().as_bytes()),
            (b"id", 2) => resp::int(out, me as i64),
            (b"list" | b"id", _) => resp::error(out, "ERR syntax error"),
            _ => resp::error(
                out,
                &format!(
                    "ERR unknown subcommand '{}'. Try CLIENT LIST or CLIENT ID.",
                    String::from_utf8_lossy(&sub[..sub.len().min(64)])
                ),
            ),
        }
    }
}

/// Whether `name` is `CLIENT` (any case).
pub fn is_client(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"client")
}
