//! Continuous client load for the deployment tests: clients that keep
//! connecting, echoing chunks of a deterministic stream for about a second
//! and closing, recording every failure with when its connection started.
//! Mounted with `#[path]` by the tests that need it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::stream_bytes;

/// How long each load client keeps its connection.
pub const CONN_LIFE: Duration = Duration::from_millis(1000);

/// A failed connection.
#[derive(Clone, Debug)]
pub struct Failure {
    pub started: Instant,
    pub failed: Instant,
    pub error: String,
}

/// What the clients did.
#[derive(Default)]
pub struct Load {
    pub stop: AtomicBool,
    pub connections: AtomicU64,
    pub bytes: AtomicU64,
    /// Each failure: when its connection started, when it failed, why.
    pub errors: Mutex<Vec<Failure>>,
}

impl Load {
    /// Starts `n` clients against `addr`.
    pub fn start(addr: SocketAddr, n: u64) -> (Arc<Load>, Vec<std::thread::JoinHandle<()>>) {
        let load = Arc::new(Load::default());
        let clients = (0..n)
            .map(|seed| {
                let load = load.clone();
                std::thread::spawn(move || client(addr, seed, load))
            })
            .collect();
        (load, clients)
    }

    /// Stops the clients and returns every failure.
    pub fn finish(&self, clients: Vec<std::thread::JoinHandle<()>>) -> Vec<Failure> {
        self.stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        self.errors.lock().unwrap().clone()
    }
}

/// One client: connects, echoes chunks for `CONN_LIFE`, closes; again and
/// again until told to stop.
fn client(addr: SocketAddr, seed: u64, load: Arc<Load>) {
    let mut round = 0u64;
    while !load.stop.load(Ordering::Relaxed) {
        round += 1;
        let started = Instant::now();
        if let Err(e) = one_connection(addr, seed * 1_000_000 + round, &load) {
            load.errors.lock().unwrap().push(Failure {
                started,
                failed: Instant::now(),
                error: e,
            });
        }
    }
}

fn one_connection(addr: SocketAddr, seed: u64, load: &Load) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    let started = Instant::now();
    let mut offset = 0u64;
    while started.elapsed() < CONN_LIFE {
        let len = 512 + (seed.wrapping_add(offset) % 3584) as usize;
        let data = stream_bytes(seed, offset, len);
        s.write_all(&data).map_err(|e| format!("write: {e}"))?;
        let mut got = vec![0; len];
        s.read_exact(&mut got).map_err(|e| format!("read: {e}"))?;
        if got != data {
            return Err(format!("bytes differ at offset {offset}"));
        }
        offset += len as u64;
        std::thread::sleep(Duration::from_millis(20));
    }
    load.connections.fetch_add(1, Ordering::Relaxed);
    load.bytes.fetch_add(offset, Ordering::Relaxed);
    Ok(())
}
