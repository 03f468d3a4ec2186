//! No descriptor outlives a client engine, whatever its dials did: opened,
//! refused, timed out, failed at once, pending at stop, enrolled. Alone in
//! its own test binary, so no other test opens or closes descriptors while it
//! counts.

mod common;

use std::time::Duration;

use common::*;
use ringloop::{Action, Conn, Engine, EventHandler};

/// Dials whatever the test asks for from a callback, with `Conn::dial`.
struct Dialer {
    targets: Vec<String>,
}

impl EventHandler for Dialer {
    type State = ();
    fn on_traffic(&mut self, conn: &mut Conn<'_, ()>) -> Action {
        if conn.inbound_buffered() == 0 {
            for t in &self.targets {
                let _ = conn.dial(t, ());
            }
        } else {
            conn.read_all();
        }
        Action::None
    }
}

#[test]
fn a_client_engine_leaves_no_descriptor_behind() {
    let server = Running::start(
        Engine::builder(|_| Echo)
            .listen("tcp://127.0.0.1:0")
            .loops(1),
    );
    let good = format!("tcp://{}", server.tcp_addr(0));
    let hole = BlackHole::new().expect("a black hole on loopback");
    let dir = TempDir::new("client-fd-leak");
    let refused = format!("tcp://{}", closed_tcp_port());
    let timed_out = format!("tcp://{}", hole.addr);
    let missing = format!("unix://{}", dir.join("nobody.sock").display());
    let before = fd_count();
    for round in 0..3 {
        let targets = vec![
            good.clone(),
            refused.clone(),
            timed_out.clone(),
            missing.clone(),
        ];
        let client = Running::start(
            Engine::builder(move |_| Dialer {
                targets: targets.clone(),
            })
            .loops(2)
            .connect_timeout(Duration::from_millis(100)),
        );
        let e = &client.engine;
        let opened: Vec<_> = (0..4)
            .map(|_| e.dial(&good).wait_timeout(PATIENCE).unwrap().unwrap())
            .collect();
        for h in &opened {
            assert_eq!(h.write(b"ping".to_vec()).wait().unwrap(), 4);
        }
        let enrolled = e
            .enroll(tcp_client(server.tcp_addr(0)))
            .wait_timeout(PATIENCE)
            .unwrap()
            .unwrap();
        for target in [&refused, &timed_out, &missing] {
            assert!(e.dial(target).wait_timeout(PATIENCE).unwrap().is_err());
        }
        // Dials from a callback: one succeeds, three fail.
        opened[0].wake().unwrap();
        wait_until("the dial made from a callback", || {
            e.connection_count() == 6
        });
        opened[1].close().unwrap();
        enrolled.close().unwrap();
        // Some left connecting at stop.
        let pending: Vec<_> = (0..2).map(|_| e.dial(&timed_out)).collect();
        if round == 2 {
            std::thread::sleep(Duration::from_millis(20));
        }
        client.stop();
        for p in pending {
            assert!(p.wait_timeout(PATIENCE).is_some());
        }
    }
    // The server (in this process too) closes its side once it sees EOF.
    wait_until("the server to close its side", || {
        server.engine.connection_count() == 0
    });
    assert_eq!(fd_count(), before, "descriptors leaked");
    server.stop();
}
