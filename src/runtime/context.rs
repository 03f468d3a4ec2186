//! The thread-local context: what the current thread is to ringloop — an
//! event loop of one engine (by [`EngineId`]), a worker-pool thread, or
//! neither — and, on a loop thread, the requests it made that found a lane
//! full (its overflow).
//!
//! Owns the one thread-local of the crate's runtime. A thread becomes a loop
//! or a worker only through an enter guard ([`enter_loop`],
//! [`enter_worker`]), and stops being one when the guard drops, even if the
//! thread unwinds. Engines are told apart by a `u64` id taken from a global
//! counter, never by an address that a later engine could reuse.
//!
//! It must never block and never run user code while the overflow is
//! borrowed: whatever could answer a completion (dropping a message) is
//! handed back to the caller to drop after the borrow ends.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which engine a loop thread serves: unique for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct EngineId(u64);

impl EngineId {
    /// A new id, never handed out before.
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // Relaxed: only uniqueness matters, which a read-modify-write gives.
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// What the current thread is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Other,
    Loop(EngineId),
    Worker,
}

struct Context {
    role: Cell<Role>,
    /// On a loop thread: its overflow, type-erased so this module needs to
    /// know nothing of messages (the router knows the type).
    overflow: RefCell<Option<Box<dyn Any>>>,
    /// The overflow may hold requests (set when one is held, cleared by a
    /// flush that leaves none): a loop's turn skips the flush without it.
    overflow_held: Cell<bool>,
}

#[cfg(not(loom))]
std::thread_local! {
    static CONTEXT: Context = const {
        Context {
            role: Cell::new(Role::Other),
            overflow: RefCell::new(None),
            overflow_held: Cell::new(false),
        }
    };
}

// loom runs its threads on one OS thread: a std thread-local would be
// shared between them.
#[cfg(loom)]
loom::thread_local! {
    static CONTEXT: Context = Context {
        role: Cell::new(Role::Other),
        overflow: RefCell::new(None),
        overflow_held: Cell::new(false),
    };
}

fn role() -> Role {
    // During thread teardown the context may be gone: the thread is then
    // no loop and no worker any more.
    CONTEXT.try_with(|c| c.role.get()).unwrap_or(Role::Other)
}

/// While alive, the current thread is a loop of engine `engine`.
/// Dropping it drops the overflow (answering each held request's
/// completion with "engine stopped") after the thread has stopped being a
/// loop, so those callbacks take the ordinary paths.
#[must_use = "the thread stops being a loop thread when the guard drops"]
pub(crate) struct LoopGuard {
    previous: Role,
    /// A guard belongs to the thread that entered.
    _not_send: PhantomData<*const ()>,
}

/// Makes the current thread a loop of engine `engine`, with `overflow`
/// (the router's per-target queues) as its overflow.
pub(crate) fn enter_loop(engine: EngineId, overflow: Box<dyn Any>) -> LoopGuard {
    let (previous, replaced) = CONTEXT.with(|c| {
        let replaced = c.overflow.replace(Some(overflow));
        (c.role.replace(Role::Loop(engine)), replaced)
    });
    // Outside the borrow (a thread entered twice): dropping held messages
    // runs completions.
    drop(replaced);
    LoopGuard {
        previous,
        _not_send: PhantomData,
    }
}

impl Drop for LoopGuard {
    fn drop(&mut self) {
        let left = CONTEXT
            .try_with(|c| {
                c.role.set(self.previous);
                c.overflow.borrow_mut().take()
            })
            .ok()
            .flatten();
        // Outside the borrow: dropping held messages runs completions.
        drop(left);
    }
}

/// While alive, the current thread is a worker-pool thread.
#[must_use = "the thread stops being a worker when the guard drops"]
pub(crate) struct WorkerGuard {
    previous: Role,
    _not_send: PhantomData<*const ()>,
}

/// Makes the current thread a worker-pool thread.
pub(crate) fn enter_worker() -> WorkerGuard {
    let previous = CONTEXT.with(|c| c.role.replace(Role::Worker));
    WorkerGuard {
        previous,
        _not_send: PhantomData,
    }
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let _ = CONTEXT.try_with(|c| c.role.set(self.previous));
    }
}

/// `true` on any engine's event-loop thread.
pub(crate) fn on_any_loop() -> bool {
    matches!(role(), Role::Loop(_))
}

/// `true` on one of `engine`'s event-loop threads.
pub(crate) fn on_loop_of(engine: EngineId) -> bool {
    role() == Role::Loop(engine)
}

/// `true` on a worker-pool thread.
pub(crate) fn on_worker() -> bool {
    role() == Role::Worker
}

/// Whether this thread's overflow may hold requests (see
/// [`set_overflow_held`]); `false` off a loop thread.
#[inline]
pub(crate) fn overflow_held() -> bool {
    CONTEXT.try_with(|c| c.overflow_held.get()).unwrap_or(false)
}

/// Records whether this thread's overflow may hold requests: `true` when
/// one is held, `false` once a flush left none. Only a hint for skipping
/// an empty flush, so it may say `true` of an empty overflow, never
/// `false` of one that holds something.
#[inline]
pub(crate) fn set_overflow_held(held: bool) {
    let _ = CONTEXT.try_with(|c| c.overflow_held.set(held));
}

/// Runs `f` on this thread's overflow (of type `T`) with `value`, if this
/// is one of `engine`'s loop threads and the overflow is not already in use
/// further up this thread's stack; otherwise hands `value` back.
pub(crate) fn with_overflow<T: 'static, V, R>(
    engine: EngineId,
    value: V,
    f: impl FnOnce(&mut T, V) -> R,
) -> Result<R, V> {
    if !on_loop_of(engine) {
        return Err(value);
    }
    let mut value = Some(value);
    let mut f = Some(f);
    let done = CONTEXT.try_with(|c| {
        let mut overflow = c.overflow.try_borrow_mut().ok()?;
        let overflow = overflow.as_mut()?.downcast_mut::<T>()?;
        let f = f.take().expect("called once");
        Some(f(overflow, value.take().expect("taken once")))
    });
    match done {
        Ok(Some(r)) => Ok(r),
        _ => Err(value.take().expect("not taken when f did not run")),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_loop_guard_marks_the_thread_until_dropped() {
        let (a, b) = (EngineId::next(), EngineId::next());
        assert_ne!(a, b);
        assert!(!on_any_loop());
        {
            let _guard = enter_loop(a, Box::new(Vec::<u32>::new()));
            assert!(on_any_loop() && on_loop_of(a) && !on_loop_of(b));
            assert_eq!(with_overflow(a, 7, |o: &mut Vec<u32>, v| o.push(v)), Ok(()));
            // Another engine, or the wrong type: the value comes back.
            assert_eq!(with_overflow(b, 8, |o: &mut Vec<u32>, v| o.push(v)), Err(8));
            assert_eq!(with_overflow(a, 9, |o: &mut Vec<u8>, v| o.push(v)), Err(9));
            // Nested use (a completion sending from inside a send) is refused,
            // never a panic.
            let nested = with_overflow(a, (), |_: &mut Vec<u32>, ()| {
                with_overflow(a, 1, |o: &mut Vec<u32>, v| o.push(v))
            });
            assert_eq!(nested, Ok(Err(1)));
        }
        assert!(!on_any_loop());
        assert_eq!(with_overflow(a, 3, |o: &mut Vec<u32>, v| o.push(v)), Err(3));
    }

    #[test]
    fn a_worker_guard_restores_what_the_thread_was() {
        assert!(!on_worker());
        {
            let _w = enter_worker();
            assert!(on_worker() && !on_any_loop());
        }
        assert!(!on_worker());
    }

    #[test]
    fn a_loop_guard_is_left_even_when_the_thread_unwinds() {
        let engine = EngineId::next();
        let unwound = std::panic::catch_unwind(|| {
            let _guard = enter_loop(engine, Box::new(()));
            panic!("a handler panicked");
        });
        assert!(unwound.is_err());
        assert!(!on_loop_of(engine));
    }
}
