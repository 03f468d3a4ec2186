//! The key space: one store shared by every loop, split into [`SHARDS`]
//! shards, each a `Mutex` around a SwissTable and its expiry timers.
//!
//! A key's 64-bit SipHash (std's `RandomState`, keyed per process, so
//! collisions cannot be forced from the network) is computed once per
//! command: bits 40..46 pick the shard, the same hash finds the key in the
//! shard's table (which uses the low bits and the top 7), and it is stored
//! with the entry so the table never rehashes keys when it grows.
//!
//! Single-key commands lock one shard. Commands over several keys (MSET,
//! MGET) lock every shard they touch, in ascending order, before reading or
//! writing any of them, which makes MSET atomic and MGET a consistent
//! snapshot; FLUSHALL locks all shards in the same order. Every locker takes
//! shards in ascending order and holds none while waiting for a lower one, so
//! there is no deadlock. Nothing panics while a lock is held, and a poisoned
//! lock would still be used (`into_inner`): the table stays consistent at
//! every step.
//!
//! # Expiry
//!
//! Times are milliseconds on a monotonic clock started with the store
//! (never 0, so `expires == 0` means "no expiry"). An expired key is removed
//! the first time a command looks at it (lazy expiry), and loop 0's ticker
//! calls [`Store::purge_expired`] every [`PURGE_EVERY`] to remove the ones
//! nobody looks at (active expiry). For that each shard keeps a min-heap of
//! (deadline, hash) pairs: a purge pops the due ones and removes the entry
//! with that hash whose deadline is still that one. Pairs left stale by an
//! overwrite or PERSIST are simply skipped when popped, and the heap is
//! rebuilt from the table if stale pairs ever outnumber live ones.

use std::cmp::Reverse;
use std::collections::hash_map::RandomState;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hashbrown::HashTable;

/// Shards of the key space (a power of two).
pub const SHARDS: usize = 64;
/// How often loop 0 purges expired keys.
pub const PURGE_EVERY: Duration = Duration::from_millis(100);
/// Most keys one purge removes from one shard (the rest wait for the next
/// purge, or for a command to touch them).
const PURGE_BUDGET: usize = 2_000;

/// The key space.
pub struct Store {
    shards: Box<[Shard]>,
    hasher: RandomState,
    epoch: Instant,
}

/// One shard, alone on its cache lines.
#[repr(align(128))]
struct Shard(Mutex<Table>);

#[derive(Default)]
struct Table {
    entries: HashTable<Entry>,
    timers: Timers,
}

#[derive(Default)]
struct Timers {
    /// (deadline, hash) of keys given an expiry, soonest first.
    deadlines: BinaryHeap<Reverse<(u64, u64)>>,
    /// Entries that currently have an expiry.
    volatile: usize,
}

struct Entry {
    hash: u64,
    key: Box<[u8]>,
    value: Vec<u8>,
    /// Deadline in store milliseconds, 0 for none.
    expires: u64,
}

/// When a SET applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Condition {
    /// Always.
    Always,
    /// NX: only if the key does not exist.
    IfAbsent,
    /// XX: only if it exists.
    IfPresent,
}

/// What a SET does to the key's expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTtl {
    /// Remove it (plain SET).
    Clear,
    /// KEEPTTL.
    Keep,
    /// Expire at this store time (see [`Store::deadline`]).
    At(u64),
}

/// EXPIRE's NX / XX / GT / LT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpireIf {
    /// Always.
    Always,
    /// NX: only if the key has no expiry.
    NoExpiry,
    /// XX: only if it has one.
    HasExpiry,
    /// GT: only if the new deadline is later (no expiry counts as infinite).
    Later,
    /// LT: only if the new deadline is sooner.
    Sooner,
}

/// A key's time to live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ttl {
    /// No such key.
    Missing,
    /// The key does not expire.
    Persistent,
    /// Milliseconds left.
    Millis(u64),
}

/// Why INCR failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncrError {
    /// The value is not a 64-bit decimal integer.
    NotInteger,
    /// The result would not fit in 64 bits.
    Overflow,
}

/// Reads the clock at most once per command, and only if an expiry matters.
struct Now<'a> {
    store: &'a Store,
    value: u64,
}

impl Now<'_> {
    fn get(&mut self) -> u64 {
        if self.value == 0 {
            self.value = self.store.now();
        }
        self.value
    }
}

impl Timers {
    /// Sets `entry`'s deadline (0: none), keeping the count and the heap.
    fn set(&mut self, entry: &mut Entry, at: u64) {
        match (entry.expires != 0, at != 0) {
            (false, true) => self.volatile += 1,
            (true, false) => self.volatile -= 1,
            _ => {}
        }
        entry.expires = at;
        if at != 0 {
            self.deadlines.push(Reverse((at, entry.hash)));
        }
    }

    /// Accounts for an entry leaving the table.
    fn forget(&mut self, entry: &Entry) {
        if entry.expires != 0 {
            self.volatile -= 1;
        }
    }
}

/// The live entry for `key`, removing it first if it has expired. A free
/// function over the table's two halves, so that the entry it returns (which
/// borrows `entries`) can be used together with `timers`.
fn live<'t>(
    entries: &'t mut HashTable<Entry>,
    timers: &mut Timers,
    hash: u64,
    key: &[u8],
    now: &mut Now<'_>,
) -> Option<&'t mut Entry> {
    match entries.find_entry(hash, |e| e.hash == hash && *e.key == *key) {
        Err(_) => None,
        Ok(occupied) => {
            let expires = occupied.get().expires;
            if expires != 0 && expires <= now.get() {
                let (entry, _) = occupied.remove();
                timers.forget(&entry);
                None
            } else {
                Some(occupied.into_mut())
            }
        }
    }
}

impl Table {
    fn live(&mut self, hash: u64, key: &[u8], now: &mut Now<'_>) -> Option<&mut Entry> {
        live(&mut self.entries, &mut self.timers, hash, key, now)
    }

    fn insert(&mut self, hash: u64, key: &[u8], value: Vec<u8>, expires: u64) {
        let mut entry = Entry {
            hash,
            key: key.into(),
            value,
            expires: 0,
        };
        self.timers.set(&mut entry, expires);
        self.entries.insert_unique(hash, entry, |e| e.hash);
    }

    /// Removes `key` if it is live; returns whether it was.
    fn remove(&mut self, hash: u64, key: &[u8], now: &mut Now<'_>) -> bool {
        match self
            .entries
            .find_entry(hash, |e| e.hash == hash && *e.key == *key)
        {
            Err(_) => false,
            Ok(occupied) => {
                let (entry, _) = occupied.remove();
                self.timers.forget(&entry);
                entry.expires == 0 || entry.expires > now.get()
            }
        }
    }

    /// SET on a locked shard; `old` sees the previous live value.
    #[allow(clippy::too_many_arguments)] // SET has that many inputs
    fn set(
        &mut self,
        hash: u64,
        key: &[u8],
        value: &[u8],
        cond: Condition,
        ttl: SetTtl,
        now: &mut Now<'_>,
        old: &mut dyn FnMut(Option<&[u8]>),
    ) -> bool {
        let Table { entries, timers } = self;
        match live(entries, timers, hash, key, now) {
            Some(entry) => {
                old(Some(&entry.value));
                if cond == Condition::IfAbsent {
                    return false;
                }
                replace_value(&mut entry.value, value);
                match ttl {
                    SetTtl::Keep => {}
                    SetTtl::Clear => timers.set(entry, 0),
                    SetTtl::At(at) => timers.set(entry, at),
                }
                true
            }
            None => {
                old(None);
                if cond == Condition::IfPresent {
                    return false;
                }
                let at = match ttl {
                    SetTtl::At(at) => at,
                    _ => 0,
                };
                self.insert(hash, key, value.to_vec(), at);
                true
            }
        }
    }

    fn clear(&mut self) {
        // Fresh tables: FLUSHALL gives the memory back.
        self.entries = HashTable::new();
        self.timers = Timers::default();
    }
}

/// Overwrites a value, reusing its allocation when the size is close.
fn replace_value(value: &mut Vec<u8>, new: &[u8]) {
    if value.capacity() >= new.len() && value.capacity() <= 2 * new.len() + 64 {
        value.clear();
        value.extend_from_slice(new);
    } else {
        *value = new.to_vec();
    }
}

/// Parses a value as INCR does: an optional `-`, then digits without a
/// leading zero (or just `0`), in range for `i64`.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty()
        || digits.len() > 19
        || (digits[0] == b'0' && (digits.len() > 1 || negative))
        || !digits.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Appends `n` in decimal.
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    let mut m = n.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (m % 10) as u8;
        m /= 10;
        if m == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store {
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(Table::default())))
                .collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Store time in milliseconds (never 0).
    pub fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    /// The store time `ms` milliseconds from now, if representable (as
    /// Redis, deadlines must stay within `i64` milliseconds).
    pub fn deadline(&self, ms: u64) -> Option<u64> {
        self.now()
            .checked_add(ms)
            .filter(|&at| at <= i64::MAX as u64)
    }

    fn hash(&self, key: &[u8]) -> (u64, usize) {
        let hash = self.hasher.hash_one(key);
        (hash, (hash >> 40) as usize & (SHARDS - 1))
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Table> {
        self.shards[shard]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn clock(&self) -> Now<'_> {
        Now {
            store: self,
            value: 0,
        }
    }

    /// Calls `f` with the live value of `key` (or `None`), under the lock.
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        let (hash, shard) = self.hash(key);
        let mut table = self.lock(shard);
        let mut now = self.clock();
        f(table.live(hash, key, &mut now).map(|e| &e.value[..]))
    }

    /// SET; returns whether the value was stored. `old` sees the previous
    /// live value (for SET ... GET).
    pub fn set(
        &self,
        key: &[u8],
        value: &[u8],
        cond: Condition,
        ttl: SetTtl,
        old: &mut dyn FnMut(Option<&[u8]>),
    ) -> bool {
        let (hash, shard) = self.hash(key);
        let mut now = self.clock();
        self.lock(shard)
            .set(hash, key, value, cond, ttl, &mut now, old)
    }

    /// DEL of one key; returns whether it existed.
    pub fn del(&self, key: &[u8]) -> bool {
        let (hash, shard) = self.hash(key);
        let mut now = self.clock();
        self.lock(shard).remove(hash, key, &mut now)
    }

    /// Whether `key` exists.
    pub fn exists(&self, key: &[u8]) -> bool {
        self.get(key, |v| v.is_some())
    }

    /// INCRBY: adds `delta` to the integer in `key` (0 if absent), keeping
    /// its expiry.
    pub fn incr_by(&self, key: &[u8], delta: i64) -> Result<i64, IncrError> {
        let (hash, shard) = self.hash(key);
        let mut table = self.lock(shard);
        let mut now = self.clock();
        match table.live(hash, key, &mut now) {
            Some(entry) => {
                let current = parse_i64(&entry.value).ok_or(IncrError::NotInteger)?;
                let new = current.checked_add(delta).ok_or(IncrError::Overflow)?;
                entry.value.clear();
                push_i64(&mut entry.value, new);
                Ok(new)
            }
            None => {
                let mut value = Vec::with_capacity(20);
                push_i64(&mut value, delta);
                table.insert(hash, key, value, 0);
                Ok(delta)
            }
        }
    }

    /// EXPIRE: gives `key` the deadline `at` (`None`: already past, which
    /// deletes it). Returns whether the key exists and the condition held.
    pub fn expire(&self, key: &[u8], at: Option<u64>, cond: ExpireIf) -> bool {
        let (hash, shard) = self.hash(key);
        let mut table = self.lock(shard);
        let mut now = self.clock();
        let current = match table.live(hash, key, &mut now) {
            None => return false,
            Some(entry) => entry.expires,
        };
        // No expiry counts as an infinite deadline; `None` as a past one.
        let new = at.unwrap_or(0);
        let holds = match cond {
            ExpireIf::Always => true,
            ExpireIf::NoExpiry => current == 0,
            ExpireIf::HasExpiry => current != 0,
            ExpireIf::Later => current != 0 && at.is_some() && new > current,
            ExpireIf::Sooner => current == 0 || at.is_none() || new < current,
        };
        if !holds {
            return false;
        }
        match at {
            Some(at) if at > now.get() => {
                let Table { entries, timers } = &mut *table;
                if let Some(entry) = entries.find_mut(hash, |e| e.hash == hash && *e.key == *key) {
                    timers.set(entry, at);
                }
            }
            _ => {
                table.remove(hash, key, &mut now);
            }
        }
        true
    }

    /// TTL / PTTL.
    pub fn ttl(&self, key: &[u8]) -> Ttl {
        let (hash, shard) = self.hash(key);
        let mut table = self.lock(shard);
        let mut now = self.clock();
        match table.live(hash, key, &mut now) {
            None => Ttl::Missing,
            Some(entry) if entry.expires == 0 => Ttl::Persistent,
            Some(entry) => Ttl::Millis(entry.expires - now.get()),
        }
    }

    /// Locks every shard `hashes` touch, in ascending order.
    fn lock_all_of(&self, hashes: &[(u64, usize)]) -> Vec<(usize, MutexGuard<'_, Table>)> {
        let mut shards: Vec<usize> = hashes.iter().map(|&(_, s)| s).collect();
        shards.sort_unstable();
        shards.dedup();
        shards.into_iter().map(|s| (s, self.lock(s))).collect()
    }

    fn guard<'g>(guards: &'g mut [(usize, MutexGuard<'_, Table>)], shard: usize) -> &'g mut Table {
        let i = guards
            .binary_search_by_key(&shard, |(s, _)| *s)
            .unwrap_or_else(|_| unreachable!("lock_all_of locked every shard it was given"));
        &mut guards[i].1
    }

    /// MSET: stores every pair atomically (later pairs win).
    pub fn mset(&self, pairs: &[(&[u8], &[u8])]) {
        let hashes: Vec<(u64, usize)> = pairs.iter().map(|(k, _)| self.hash(k)).collect();
        let mut guards = self.lock_all_of(&hashes);
        let mut now = self.clock();
        for (&(key, value), &(hash, shard)) in pairs.iter().zip(&hashes) {
            Self::guard(&mut guards, shard).set(
                hash,
                key,
                value,
                Condition::Always,
                SetTtl::Clear,
                &mut now,
                &mut |_| {},
            );
        }
    }

    /// MGET: calls `f` with each key's live value, in order, from one
    /// consistent snapshot.
    pub fn mget(&self, keys: &[&[u8]], mut f: impl FnMut(Option<&[u8]>)) {
        let hashes: Vec<(u64, usize)> = keys.iter().map(|k| self.hash(k)).collect();
        let mut guards = self.lock_all_of(&hashes);
        let mut now = self.clock();
        for (&key, &(hash, shard)) in keys.iter().zip(&hashes) {
            let table = Self::guard(&mut guards, shard);
            f(table.live(hash, key, &mut now).map(|e| &e.value[..]));
        }
    }

    /// Keys in the store (expired ones not yet purged included, as Redis).
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|s| self.lock(s).entries.len()).sum()
    }

    /// Whether the store holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// FLUSHALL: removes every key, atomically.
    pub fn clear(&self) {
        let mut guards: Vec<_> = (0..SHARDS).map(|s| self.lock(s)).collect();
        for table in &mut guards {
            table.clear();
        }
    }

    /// Removes keys whose deadline passed (up to a budget per shard); returns
    /// how many.
    pub fn purge_expired(&self) -> usize {
        let now = self.now();
        let mut removed = 0;
        for shard in 0..SHARDS {
            let mut table = self.lock(shard);
            let Table { entries, timers } = &mut *table;
            let mut budget = PURGE_BUDGET;
            while let Some(&Reverse((at, hash))) = timers.deadlines.peek() {
                if at > now || budget == 0 {
                    break;
                }
                timers.deadlines.pop();
                if let Ok(occupied) =
                    entries.find_entry(hash, |e| e.hash == hash && e.expires == at)
                {
                    let (entry, _) = occupied.remove();
                    timers.forget(&entry);
                    removed += 1;
                    budget -= 1;
                }
            }
            if timers.deadlines.len() > 2 * timers.volatile + 1024 {
                timers.deadlines = entries
                    .iter()
                    .filter(|e| e.expires != 0)
                    .map(|e| Reverse((e.expires, e.hash)))
                    .collect();
            }
        }
        removed
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn integers() {
        for (s, v) in [
            ("0", Some(0)),
            ("-1", Some(-1)),
            ("9223372036854775807", Some(i64::MAX)),
            ("-9223372036854775808", Some(i64::MIN)),
            ("9223372036854775808", None),
            ("-9223372036854775809", None),
            ("01", None),
            ("-0", None),
            ("+1", None),
            (" 1", None),
            ("", None),
            ("-", None),
            ("1a", None),
        ] {
            assert_eq!(parse_i64(s.as_bytes()), v, "{s:?}");
            if let Some(v) = v {
                let mut out = Vec::new();
                push_i64(&mut out, v);
                assert_eq!(out, s.as_bytes());
            }
        }
    }

    #[test]
    fn set_get_expire_purge() {
        let store = Store::new();
        let none = &mut |_: Option<&[u8]>| {};
        assert!(store.set(b"a", b"1", Condition::Always, SetTtl::Clear, none));
        assert!(!store.set(b"a", b"2", Condition::IfAbsent, SetTtl::Clear, none));
        assert!(!store.set(b"b", b"2", Condition::IfPresent, SetTtl::Clear, none));
        assert_eq!(
            store.get(b"a", |v| v.map(<[u8]>::to_vec)),
            Some(b"1".to_vec())
        );
        assert_eq!(store.incr_by(b"a", 41), Ok(42));
        assert_eq!(store.ttl(b"a"), Ttl::Persistent);
        assert_eq!(store.ttl(b"zz"), Ttl::Missing);
        let soon = store.deadline(1).unwrap();
        assert!(store.expire(b"a", Some(soon), ExpireIf::Always));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(store.len(), 1); // not looked at yet
        assert_eq!(store.purge_expired(), 1);
        assert!(store.is_empty());
        // Stale timers from overwrites are dropped by a rebuild.
        for _ in 0..5_000 {
            let at = store.deadline(3_600_000).unwrap();
            store.set(b"k", b"v", Condition::Always, SetTtl::At(at), none);
        }
        store.purge_expired();
        let shard = store.hash(b"k").1;
        assert!(store.lock(shard).timers.deadlines.len() <= 1);
        assert_eq!(store.lock(shard).timers.volatile, 1);
    }
}
