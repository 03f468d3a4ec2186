//! No file descriptor outlives an engine. Alone in its own test binary, so no
//! other test opens or closes descriptors while it counts.

mod common;

use std::io::{Read, Write};

use common::*;
use ringloop::Engine;

#[test]
fn an_engine_leaves_no_descriptor_behind() {
    let before = fd_count();
    let dir = TempDir::new("fd-leak");
    for round in 0..3 {
        let sock = dir.join("s.sock");
        let server = Running::start(
            Engine::builder(|_| Echo)
                .listen("tcp://127.0.0.1:0")
                .listen(format!("unix://{}", sock.display()))
                .loops(2),
        );
        let addr = server.tcp_addr(0);
        let mut clients: Vec<_> = (0..50).map(|_| tcp_client(addr)).collect();
        for (i, c) in clients.iter_mut().enumerate() {
            echo_round_trip(c, &payload(i as u64 + round, 10_000));
        }
        // Half of them reset, half close normally, some stay open until stop.
        for (i, c) in clients.drain(..40).enumerate() {
            if i % 2 == 0 {
                reset_on_close(&c);
            }
        }
        let mut u = unix_client(&sock);
        u.write_all(b"ping").unwrap();
        let mut b = [0u8; 4];
        u.read_exact(&mut b).unwrap();
        // A handle kept beyond the engine's life must not pin a descriptor.
        server.stop();
        drop(clients);
        drop(u);
    }
    drop(dir);
    assert_eq!(fd_count(), before, "descriptors leaked");
}
