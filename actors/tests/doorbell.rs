//! The doorbell with real file descriptors, both kinds: ring, wait, drain,
//! coalescing, timeouts and a pipe rung far past its buffer size.
// Real threads and real file descriptors: these do not run under loom's
// model types (see `loom_*.rs` for the models).
#![cfg(not(loom))]

mod common;

use std::time::Duration;

use common::{within, HANG};
use ringloop_actors::{Doorbell, DoorbellKind};

const KINDS: [DoorbellKind; 2] = [DoorbellKind::EventFd, DoorbellKind::Pipe];

#[test]
fn kind_and_needs_drain() {
    let eventfd = Doorbell::new(DoorbellKind::EventFd).unwrap();
    assert_eq!(eventfd.kind(), DoorbellKind::EventFd);
    assert!(!eventfd.needs_drain());
    let pipe = Doorbell::new(DoorbellKind::Pipe).unwrap();
    assert_eq!(pipe.kind(), DoorbellKind::Pipe);
    assert!(pipe.needs_drain());
    // Linux has eventfd, so Auto picks it; never reports Auto itself.
    let auto = Doorbell::new(DoorbellKind::Auto).unwrap();
    assert_eq!(auto.kind(), DoorbellKind::EventFd);
}

#[test]
fn ring_then_wait_zero_is_true_once() {
    for kind in KINDS {
        let bell = Doorbell::new(kind).unwrap();
        bell.ring().unwrap();
        assert!(bell.wait(Some(Duration::ZERO)).unwrap(), "{kind:?}");
        // `wait` drained it: a second wait finds nothing.
        assert!(!bell.wait(Some(Duration::ZERO)).unwrap(), "{kind:?}");
    }
}

#[test]
fn drain_reports_and_clears_a_ring() {
    for kind in KINDS {
        let bell = Doorbell::new(kind).unwrap();
        assert!(!bell.drain().unwrap(), "{kind:?}: fresh bell is not rung");
        bell.ring().unwrap();
        assert!(bell.drain().unwrap(), "{kind:?}");
        assert!(!bell.drain().unwrap(), "{kind:?}");
        assert!(!bell.wait(Some(Duration::ZERO)).unwrap(), "{kind:?}");
    }
}

#[test]
fn many_rings_coalesce_into_one_wake() {
    for kind in KINDS {
        let bell = Doorbell::new(kind).unwrap();
        for _ in 0..1000 {
            bell.ring().unwrap();
        }
        assert!(bell.wait(Some(Duration::ZERO)).unwrap(), "{kind:?}");
        assert!(!bell.wait(Some(Duration::ZERO)).unwrap(), "{kind:?}");
        assert!(!bell.drain().unwrap(), "{kind:?}");
    }
}

#[test]
fn wait_times_out_with_false() {
    for kind in KINDS {
        let bell = Doorbell::new(kind).unwrap();
        assert!(
            !bell.wait(Some(Duration::from_millis(20))).unwrap(),
            "{kind:?}"
        );
        // Sub-millisecond timeouts are rounded up, not turned into errors.
        assert!(
            !bell.wait(Some(Duration::from_nanos(1))).unwrap(),
            "{kind:?}"
        );
    }
}

#[test]
fn rung_far_past_the_pipe_buffer_without_draining() {
    // A pipe holds 64 KiB by default: 100,000 one-byte rings overflow it. A
    // full pipe is already readable, so the extra rings must succeed quietly
    // (not error, not block), and one drain must empty it completely.
    for kind in KINDS {
        within(HANG, move || {
            let bell = Doorbell::new(kind).unwrap();
            for i in 0..100_000 {
                bell.ring()
                    .unwrap_or_else(|e| panic!("{kind:?}: ring {i} failed: {e}"));
            }
            assert!(bell.wait(Some(Duration::ZERO)).unwrap(), "{kind:?}");
            assert!(
                !bell.wait(Some(Duration::ZERO)).unwrap(),
                "{kind:?}: not fully drained"
            );
            // And it still works afterwards.
            bell.ring().unwrap();
            assert!(bell.drain().unwrap(), "{kind:?}");
        });
    }
}

#[test]
fn ring_from_another_thread_wakes_a_blocked_wait() {
    for kind in KINDS {
        within(HANG, move || {
            let bell = std::sync::Arc::new(Doorbell::new(kind).unwrap());
            for _ in 0..20 {
                let ringer = {
                    let bell = bell.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(2));
                        bell.ring().unwrap();
                    })
                };
                // No timeout: only the ring can end this wait.
                assert!(bell.wait(None).unwrap(), "{kind:?}");
                ringer.join().unwrap();
            }
        });
    }
}

#[test]
fn as_fd_is_the_readable_end() {
    use std::os::fd::AsFd;
    for kind in KINDS {
        let bell = Doorbell::new(kind).unwrap();
        let readable = |bell: &Doorbell| {
            let mut fds = [nix::poll::PollFd::new(
                bell.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap() == 1
        };
        assert!(!readable(&bell), "{kind:?}");
        bell.ring().unwrap();
        assert!(readable(&bell), "{kind:?}");
        assert!(bell.drain().unwrap());
        assert!(!readable(&bell), "{kind:?}");
    }
}
