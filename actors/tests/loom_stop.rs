//! loom model of an actor stopping while requests are sent to it, as an
//! event loop does at shutdown: the owner serves a turn, then
//! `close_and_drain`s its mailbox (answering every request it gets) and drops
//! it, while a producer keeps sending. Each request carries a completion that
//! must run exactly once, whichever way the request ends: completed by the
//! owner (delivered), completed by the producer (handed back in an `Err`), or
//! answered by its own `Drop` (left in a ring, dropped with it). And a
//! request whose send returned `Ok` before the owner started to close must
//! be delivered, not dropped.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test -p ringloop-actors --release --test loom_stop`
#![cfg(loom)]

use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use ringloop_actors::{Mailbox, MailboxConfig, TrySendError};

const REQUESTS: usize = 3;

/// What the model observes, shared by both threads.
struct Tally {
    /// How many times each request's completion ran.
    runs: [AtomicUsize; REQUESTS],
    /// How many completions ran from `Drop` (the ring dropped the request).
    dropped: AtomicUsize,
    /// Set by the producer once a send of that request returned `Ok`.
    sent: [AtomicBool; REQUESTS],
}

/// A request with a completion: `complete` answers it; dropping it
/// unanswered answers it too ("engine stopped"), like ringloop's
/// `Completion`.
struct Request {
    id: usize,
    tally: Arc<Tally>,
    answered: bool,
}

impl Request {
    fn complete(mut self) {
        self.answered = true;
        self.tally.runs[self.id].fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        if !self.answered {
            self.tally.runs[self.id].fetch_add(1, Ordering::SeqCst);
            self.tally.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The producer opens its own lane on its own thread (as a worker does on
/// its first send), so the owner may close before ever adopting it; it
/// sends three requests into a lane of two, completing those handed back.
///
/// Mutations caught (each checked by hand):
/// * removing the loop in `ring::Shared::drop` that drops the messages left
///   between `head` and `tail`: a request the producer pushed after the
///   owner's `close_and_drain` (its `is_closed` check passed just before the
///   close) is never answered ("completion ran 0 times");
/// * `Mailbox::close` not adopting the lanes still in the registry (dropping
///   `pending` instead of `self.lanes.extend(pending)`): a request sent with
///   `Ok` before the close is dropped with its ring instead of delivered.
#[test]
fn every_completion_runs_exactly_once_when_the_owner_stops() {
    loom::model(|| {
        let tally = Arc::new(Tally {
            runs: std::array::from_fn(|_| AtomicUsize::new(0)),
            dropped: AtomicUsize::new(0),
            sent: std::array::from_fn(|_| AtomicBool::new(false)),
        });
        let config = MailboxConfig::new().lane_capacity(2);
        let mut mailbox = Mailbox::<Request>::with_config(config).unwrap();
        let first_lane = mailbox.sender();
        let producer = {
            let tally = tally.clone();
            thread::spawn(move || {
                let mut lane = first_lane.clone();
                drop(first_lane);
                let mut handed_back = Vec::new();
                for id in 0..REQUESTS {
                    let request = Request {
                        id,
                        tally: tally.clone(),
                        answered: false,
                    };
                    match lane.try_send(request) {
                        Ok(()) => tally.sent[id].store(true, Ordering::SeqCst),
                        Err(TrySendError::Full(r) | TrySendError::Closed(r)) => {
                            handed_back.push(r.id);
                            r.complete();
                        }
                    }
                }
                handed_back
            })
        };
        let mut delivered = Vec::new();
        // One turn of service...
        mailbox.drain(usize::MAX, |r| {
            delivered.push(r.id);
            r.complete();
        });
        // ...then the stop: what was sent by now must come out.
        let sent_before_close: Vec<usize> = (0..REQUESTS)
            .filter(|&id| tally.sent[id].load(Ordering::SeqCst))
            .collect();
        for r in mailbox.close_and_drain() {
            delivered.push(r.id);
            r.complete();
        }
        drop(mailbox);
        let handed_back = producer.join().unwrap();

        for id in sent_before_close {
            assert!(
                delivered.contains(&id),
                "request {id} was sent before the close but not delivered"
            );
        }
        for id in 0..REQUESTS {
            let runs = tally.runs[id].load(Ordering::SeqCst);
            assert_eq!(runs, 1, "request {id}'s completion ran {runs} times");
        }
        let dropped = tally.dropped.load(Ordering::SeqCst);
        assert_eq!(delivered.len() + handed_back.len() + dropped, REQUESTS);
    });
}

/// The same race, asking more: every request is answered once the owner has
/// stopped (closed, drained and dropped its mailbox), while the producer's
/// lane is still alive. ringloop needs this: its handles send through
/// per-thread lanes that live as long as the thread, so a thread that sends
/// a request and then blocks on its answer (`ConnHandle::write(..).wait()`)
/// must not depend on its own lane being dropped.
///
/// It fails: the producer passes the `is_closed` check, the owner closes,
/// drains (nothing yet) and drops the mailbox, then the producer's push lands
/// in the ring (its consumer end was alive at the check), and nobody answers
/// the request until the producer drops its `Sender`.
#[test]
fn every_request_is_answered_once_the_owner_is_gone_while_the_sender_lives() {
    loom::model(|| {
        let tally = Arc::new(Tally {
            runs: std::array::from_fn(|_| AtomicUsize::new(0)),
            dropped: AtomicUsize::new(0),
            sent: std::array::from_fn(|_| AtomicBool::new(false)),
        });
        let mut mailbox =
            Mailbox::<Request>::with_config(MailboxConfig::new().lane_capacity(2)).unwrap();
        let mut lane = mailbox.sender();
        let producer = {
            let tally = tally.clone();
            thread::spawn(move || {
                let request = Request {
                    id: 0,
                    tally,
                    answered: false,
                };
                if let Err(e) = lane.try_send(request) {
                    e.into_inner().complete();
                }
                lane // kept alive: the thread would go on using it
            })
        };
        for r in mailbox.close_and_drain() {
            r.complete();
        }
        drop(mailbox);
        let lane = producer.join().unwrap();
        let runs = tally.runs[0].load(Ordering::SeqCst);
        assert_eq!(runs, 1, "the request is unanswered while its sender lives");
        drop(lane);
    });
}
