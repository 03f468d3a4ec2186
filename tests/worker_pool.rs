//! Issue 4, the worker pool: panics are contained, submitting never blocks a
//! loop, the shutdown policies (finish or cancel queued jobs) and their place
//! in the engine's ordered shutdown, joining, and stopping from a job.

mod common;

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use crossbeam_channel::{bounded, unbounded};
use ringloop::{Action, ConnHandle, Engine, Error, PoolShutdown, SubmitError, WorkerPool};

/// An engine with nothing to serve but its worker pool.
fn pool_engine(workers: usize, capacity: usize, policy: PoolShutdown) -> Running {
    Running::start(
        Hooks::<()>::new()
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .workers(workers)
            .job_queue_capacity(capacity)
            .pool_shutdown(policy),
    )
}

#[test]
fn a_panicking_job_is_caught_and_its_worker_keeps_serving() {
    let server = pool_engine(1, 16, PoolShutdown::Finish);
    let (tx, rx) = unbounded();
    let t = tx.clone();
    server
        .engine
        .submit(move || t.send(thread::current().id()).unwrap())
        .unwrap();
    let before = rx.recv_timeout(PATIENCE).unwrap();
    server
        .engine
        .submit(|| panic!("a worker-pool job panics on purpose"))
        .unwrap();
    for _ in 0..3 {
        let t = tx.clone();
        server
            .engine
            .submit(move || t.send(thread::current().id()).unwrap())
            .unwrap();
    }
    for _ in 0..3 {
        let after = rx.recv_timeout(PATIENCE).expect("the pool stopped serving");
        assert_eq!(after, before, "the same worker carries on");
    }
    server.stop();
}

/// With one worker parked in a job and a queue of one, a handler's second
/// submit is handed back at once (the loop answers the client meanwhile),
/// and the job it gets back is intact.
#[test]
fn submit_from_a_handler_never_blocks_and_hands_the_job_back_when_full() {
    let (started_tx, started_rx) = unbounded();
    let (release_tx, release_rx) = unbounded::<()>();
    let (ran_tx, ran_rx) = unbounded();
    let server = Running::start(
        Hooks::<()>::new()
            .on_traffic(move |conn| {
                let engine = conn.engine();
                let mut reply = Vec::new();
                match conn.read_all() {
                    b"block" => {
                        let (started, release) = (started_tx.clone(), release_rx.clone());
                        let r = engine.submit(move || {
                            started.send(()).unwrap();
                            release.recv_timeout(PATIENCE).unwrap();
                        });
                        reply.extend_from_slice(if r.is_ok() { b"ok;" } else { b"err;" });
                    }
                    b"fill" => {
                        let ran = ran_tx.clone();
                        let r = engine.submit(move || ran.send("queued").unwrap());
                        reply.extend_from_slice(if r.is_ok() { b"ok;" } else { b"err;" });
                        let ran = ran_tx.clone();
                        match engine.submit(move || ran.send("handed back").unwrap()) {
                            Ok(()) => reply.extend_from_slice(b"accepted;"),
                            Err(e) => {
                                reply.extend_from_slice(if e.is_full() {
                                    b"full;"
                                } else {
                                    b"stopped;"
                                });
                                (e.into_job())(); // the very job, runnable here
                            }
                        }
                    }
                    _ => reply.extend_from_slice(b"?;"),
                }
                let _ = conn.write(&reply);
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(1)
            .workers(1)
            .job_queue_capacity(1),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let expect = |s: &mut std::net::TcpStream, what: &str| {
        let mut got = vec![0u8; what.len()];
        s.read_exact(&mut got).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), what);
    };
    s.write_all(b"block").unwrap();
    expect(&mut s, "ok;");
    started_rx.recv_timeout(PATIENCE).unwrap();
    s.write_all(b"fill").unwrap();
    // The loop answers while the worker is still parked: nothing waited.
    expect(&mut s, "ok;full;");
    assert_eq!(ran_rx.recv_timeout(PATIENCE).unwrap(), "handed back");
    assert_eq!(server.engine.worker_pool().unwrap().queued(), 1);
    release_tx.send(()).unwrap();
    assert_eq!(ran_rx.recv_timeout(PATIENCE).unwrap(), "queued");
    server.stop();
}

/// `submit_wait` waits for room on an ordinary thread, but on a loop thread
/// it must not: there it behaves like `submit`.
#[test]
fn submit_wait_never_waits_on_a_loop_thread() {
    let server = pool_engine(1, 1, PoolShutdown::Finish);
    let pool = server.engine.worker_pool().unwrap().clone();
    let (started_tx, started_rx) = unbounded();
    let (release_tx, release_rx) = unbounded::<()>();
    pool.submit(move || {
        started_tx.send(()).unwrap();
        release_rx.recv_timeout(PATIENCE).unwrap();
    })
    .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    pool.submit(|| {}).unwrap(); // the queue is full now
    let (answer_tx, answer_rx) = bounded(1);
    let p = pool.clone();
    server
        .engine
        .execute(0, move |_| {
            let r = p.submit_wait(|| {});
            answer_tx.send(r.map_err(|e| e.is_full())).unwrap();
        })
        .unwrap();
    assert_eq!(
        answer_rx
            .recv_timeout(PATIENCE)
            .expect("the loop was blocked"),
        Err(true)
    );
    // An ordinary thread waits for room instead, and gets in once there is.
    let (done_tx, done_rx) = bounded(1);
    let p = pool.clone();
    let waiter = thread::spawn(move || {
        p.submit_wait(move || done_tx.send(()).unwrap())
            .map_err(|e| e.is_full())
    });
    release_tx.send(()).unwrap();
    assert_eq!(waiter.join().unwrap(), Ok(()));
    done_rx.recv_timeout(PATIENCE).unwrap();
    server.stop();
}

/// `PoolShutdown::Finish`: jobs still queued when the engine stops all run,
/// in the order queued, before the loops close, so their writes reach the
/// client before it sees the close.
#[test]
fn finish_runs_every_queued_job_and_their_writes_reach_the_client() {
    let (handle_tx, handle_rx) = unbounded();
    let reasons = Arc::new(std::sync::Mutex::new(Vec::new()));
    let r = reasons.clone();
    let server = Running::start(
        Hooks::<()>::new()
            .on_open(move |conn| {
                handle_tx.send(conn.handle()).unwrap();
                Action::None
            })
            .on_close(move |_, reason| {
                r.lock().unwrap().push(reason_kind(reason));
                Action::None
            })
            .builder()
            .listen("tcp://127.0.0.1:0")
            .loops(2)
            .workers(1)
            .pool_shutdown(PoolShutdown::Finish),
    );
    let mut s = tcp_client(server.tcp_addr(0));
    let handle: ConnHandle = handle_rx.recv_timeout(PATIENCE).unwrap();
    let engine = server.engine.clone();
    // The one worker stays in this job until the stop has begun.
    let e = engine.clone();
    engine
        .submit(move || {
            let deadline = Instant::now() + PATIENCE;
            while !e.is_stopping() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(1));
            }
        })
        .unwrap();
    const JOBS: usize = 20;
    let ran = Arc::new(std::sync::Mutex::new(Vec::new()));
    for i in 0..JOBS {
        let (handle, ran) = (handle.clone(), ran.clone());
        engine
            .submit(move || {
                ran.lock().unwrap().push(i);
                handle.async_write(format!("job{i:02};"), |_| {}).unwrap();
            })
            .unwrap();
    }
    server.stop();
    assert_eq!(*ran.lock().unwrap(), (0..JOBS).collect::<Vec<_>>());
    let got = read_to_end(&mut s);
    let expected: String = (0..JOBS).map(|i| format!("job{i:02};")).collect();
    assert_eq!(String::from_utf8_lossy(&got), expected);
    assert_eq!(*reasons.lock().unwrap(), ["shutdown"]);
}

/// Counts its drops: a cancelled job is dropped without running.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// `PoolShutdown::Cancel`: jobs still queued when the pool shuts down are
/// dropped unrun.
#[test]
fn cancel_drops_queued_jobs_unrun() {
    let server = pool_engine(1, 1 << 16, PoolShutdown::Cancel);
    let engine = server.engine.clone();
    let pool = engine.worker_pool().unwrap().clone();
    // The one worker stays in this job until the pool refuses new jobs,
    // which it does only once the cancel policy is in force. (Its probes
    // are no-op jobs, cancelled too; they start only once the stop has, so
    // they cannot fill the queue.)
    let (p, e) = (pool.clone(), engine.clone());
    let (started_tx, started_rx) = unbounded();
    pool.submit(move || {
        started_tx.send(()).unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !e.is_stopping() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        while Instant::now() < deadline {
            match p.submit(|| {}) {
                Err(e) if !e.is_full() => return,
                _ => thread::sleep(Duration::from_millis(1)),
            }
        }
    })
    .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    const JOBS: usize = 10;
    let (ran, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    for _ in 0..JOBS {
        let ran = ran.clone();
        let guard = DropCount(dropped.clone());
        pool.submit(move || {
            let _guard = guard;
            ran.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    server.stop();
    assert_eq!(ran.load(Ordering::SeqCst), 0, "a cancelled job ran");
    assert_eq!(
        dropped.load(Ordering::SeqCst),
        JOBS,
        "every job was dropped"
    );
    let late = engine.submit(|| {}).unwrap_err();
    assert!(!late.is_full());
}

thread_local! {
    static EXIT_GUARD: std::cell::RefCell<Option<DropCount>> = const { std::cell::RefCell::new(None) };
}

/// `EngineHandle::stop` returns only once every worker thread has exited.
#[test]
fn stop_joins_the_worker_threads() {
    const WORKERS: usize = 3;
    let server = pool_engine(WORKERS, 64, PoolShutdown::Finish);
    let exited = Arc::new(AtomicUsize::new(0));
    // One job per worker, held together by a barrier so each worker runs
    // one; each leaves a guard that counts when its thread exits.
    let barrier = Arc::new(Barrier::new(WORKERS + 1));
    for _ in 0..WORKERS {
        let (barrier, exited) = (barrier.clone(), exited.clone());
        server
            .engine
            .submit(move || {
                EXIT_GUARD.with(|g| *g.borrow_mut() = Some(DropCount(exited)));
                barrier.wait();
            })
            .unwrap();
    }
    barrier.wait();
    assert_eq!(server.engine.worker_pool().unwrap().workers(), WORKERS);
    let engine = server.engine.clone();
    server.stop();
    assert_eq!(
        exited.load(Ordering::SeqCst),
        WORKERS,
        "a worker outlived stop"
    );
    let late = engine.submit(|| {}).unwrap_err();
    assert!(!late.is_full());
    assert_eq!(late.to_string(), "the worker pool is shut down");
}

#[test]
fn a_job_that_stops_the_engine_does_not_deadlock() {
    let server = pool_engine(2, 64, PoolShutdown::Finish);
    let (tx, rx) = bounded(1);
    let engine = server.engine.clone();
    server
        .engine
        .submit(move || {
            engine.stop(); // returns at once on a worker thread
            tx.send(true).unwrap()
        })
        .unwrap();
    assert!(rx.recv_timeout(PATIENCE).expect("stop() blocked the job"));
    server.join_within_patience();
}

#[test]
fn pool_settings_are_checked() {
    for (workers, capacity) in [(0, 16), (4097, 16), (1, 0)] {
        let r = WorkerPool::new(workers, capacity, PoolShutdown::Finish);
        assert!(
            matches!(r, Err(Error::InvalidConfig(_))),
            "{workers} workers, capacity {capacity}: {r:?}"
        );
    }
    let build = |workers, capacity| {
        Engine::builder(|_| Hooks::<()>::new())
            .listen("tcp://127.0.0.1:0")
            .workers(workers)
            .job_queue_capacity(capacity)
            .build()
            .map(drop)
    };
    assert!(matches!(build(0, 16), Err(Error::InvalidConfig(_))));
    assert!(matches!(build(1, 0), Err(Error::InvalidConfig(_))));
    assert!(build(1, 1).is_ok());
}

#[test]
fn a_standalone_pool_finishes_its_queue_on_shutdown() {
    let pool = WorkerPool::new(2, 8, PoolShutdown::Finish).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    for _ in 0..50 {
        let done = done.clone();
        pool.submit_wait(move || {
            thread::sleep(Duration::from_micros(100));
            done.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    pool.shutdown();
    assert_eq!(done.load(Ordering::SeqCst), 50);
    assert!(pool.submit(|| {}).is_err());
    pool.shutdown(); // idempotent
}

#[test]
fn pool_types_have_the_documented_bounds() {
    fn send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    fn send_error<T: Send + std::error::Error + 'static>() {}
    send_sync_clone::<WorkerPool>();
    send_error::<SubmitError>();
    fn copy_send_sync<T: Copy + Send + Sync + Default + 'static>() {}
    copy_send_sync::<PoolShutdown>();
}

// ----- shutdown racing jobs that use the pool -----

/// The state letter of thread `tid` of this process (`R`, `S`, `D`, ...).
fn thread_state(tid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Waits until thread `tid` sleeps (it is then parked in a blocking call).
fn wait_until_asleep(tid: i32) {
    wait_until("the thread to block", || thread_state(tid) == Some('S'));
}

/// One worker, a queue of one: job A runs, job B fills the queue. Another
/// thread shuts the pool down; with the queue full its exit markers must
/// wait for room. Only then does A submit one more job: the submit must be
/// refused at once, not wait for the shutdown that waits for A.
#[test]
fn a_job_submitting_while_the_pool_shuts_down_with_a_full_queue_does_not_deadlock() {
    let pool = WorkerPool::new(1, 1, PoolShutdown::Finish).unwrap();
    let (started_tx, started_rx) = unbounded();
    let (go_tx, go_rx) = unbounded::<()>();
    let (answer_tx, answer_rx) = unbounded();
    let p = pool.clone();
    pool.submit(move || {
        started_tx.send(()).unwrap();
        go_rx.recv_timeout(PATIENCE).unwrap();
        let r = p.submit(|| {});
        answer_tx.send(r.map_err(|e| e.is_full())).unwrap();
    })
    .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    pool.submit(|| {}).unwrap(); // job B: the queue is full
    let (tid_tx, tid_rx) = unbounded();
    let (shut_tx, shut_rx) = unbounded();
    let p = pool.clone();
    thread::spawn(move || {
        tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
        p.shutdown();
        shut_tx.send(()).unwrap();
    });
    wait_until_asleep(tid_rx.recv_timeout(PATIENCE).unwrap());
    go_tx.send(()).unwrap();
    let answer = answer_rx
        .recv_timeout(PATIENCE)
        .expect("the job's submit blocked behind the shutdown");
    assert_eq!(answer, Err(false), "refused: the pool is shutting down");
    shut_rx
        .recv_timeout(PATIENCE)
        .expect("shutdown never finished");
}

/// A job shuts down its own pool while the queue is full (the docs allow a
/// worker to call `shutdown`: it does not join).
#[test]
fn a_job_shutting_down_its_own_pool_with_a_full_queue_does_not_deadlock() {
    let pool = WorkerPool::new(1, 1, PoolShutdown::Finish).unwrap();
    let (started_tx, started_rx) = unbounded();
    let (go_tx, go_rx) = unbounded::<()>();
    let (done_tx, done_rx) = unbounded();
    let p = pool.clone();
    pool.submit(move || {
        started_tx.send(()).unwrap();
        go_rx.recv_timeout(PATIENCE).unwrap();
        p.shutdown();
        done_tx.send(()).unwrap();
    })
    .unwrap();
    started_rx.recv_timeout(PATIENCE).unwrap();
    let (ran_tx, ran_rx) = unbounded();
    pool.submit(move || ran_tx.send(()).unwrap()).unwrap(); // the queue is full
    go_tx.send(()).unwrap();
    done_rx
        .recv_timeout(PATIENCE)
        .expect("shutdown from a job deadlocked");
    ran_rx
        .recv_timeout(PATIENCE)
        .expect("Finish runs the queued job");
    pool.shutdown(); // joins
}
