//! Counting what the allocator hands out, for INFO's `used_memory`.
//!
//! Redis reports the bytes its allocator has handed out and not taken
//! back; so does concord, by wrapping the global allocator (mimalloc, see
//! `main.rs`) in [`Counting`]. Each of the first [`SHARDS`] threads owns a
//! cache-line-sized counter that only it writes, with a plain load and
//! store (no locked instruction: an allocation costs a few cycles more,
//! not a contended or even an uncontended atomic add); threads past those
//! share one counter with atomic adds (blocking-pool threads that come and
//! go, never the hot ones, which start first). A block freed by another
//! thread than the one that allocated it makes one counter go down and
//! another up: only the sum means anything.
//!
//! This figure is not what `maxmemory` limits: it includes the raft log
//! held in memory, client buffers and caches that differ from node to
//! node. `maxmemory` limits the dataset as every replica sizes it (see
//! `state::memory`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Threads with a counter of their own; the rest share [`SHARED`].
pub const SHARDS: usize = 64;

#[repr(align(128))]
struct Shard(AtomicI64);

static COUNTS: [Shard; SHARDS] = [const { Shard(AtomicI64::new(0)) }; SHARDS];
static SHARED: Shard = Shard(AtomicI64::new(0));
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialized and without a destructor: usable from inside the
    // allocator at any point of a thread's life.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Adds `delta` to this thread's counter.
fn count(delta: i64) {
    let at = SHARD.with(|s| {
        let mut at = s.get();
        if at == usize::MAX {
            at = NEXT_SHARD.fetch_add(1, Ordering::Relaxed);
            s.set(at);
        }
        at
    });
    match COUNTS.get(at) {
        // Only this thread writes its counter: no read-modify-write needed.
        Some(own) => own
            .0
            .store(own.0.load(Ordering::Relaxed) + delta, Ordering::Relaxed),
        None => {
            SHARED.0.fetch_add(delta, Ordering::Relaxed);
        }
    }
}

/// A global allocator that counts the bytes `A` has handed out.
pub struct Counting<A>(pub A);

unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            count(layout.size() as i64);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) };
        count(-(layout.size() as i64));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            count(new_size as i64 - layout.size() as i64);
        }
        p
    }
}

/// Marks the counting allocator as the global one (`main` calls it), so
/// [`allocated_bytes`] means something.
pub fn mark_installed() {
    INSTALLED.store(true, Ordering::Relaxed);
}

/// The bytes handed out and not freed, if the counting allocator is the
/// global one (the `concord` binary); None in a process that did not
/// install it (unit tests).
pub fn allocated_bytes() -> Option<u64> {
    if !INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    let sum: i64 = COUNTS
        .iter()
        .chain(std::iter::once(&SHARED))
        .map(|s| s.0.load(Ordering::Relaxed))
        .sum();
    Some(sum.max(0) as u64)
}

// The function below is mimalloc's: link it into every binary of the
// crate, tests included, not only those that install it.
extern crate mimalloc as _;

extern "C" {
    fn mi_collect(force: bool);
}

/// How often [`collect`] lets mimalloc tidy the calling thread's heap.
pub const COLLECT_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Lets mimalloc free the calling thread's empty pages and give back to
/// the system what was freed more than its purge delay ago, at most once
/// per [`COLLECT_EVERY`]. The raft driver calls it on its tick.
///
/// mimalloc does that work only when the thread that owns the pages is
/// next busy allocating: after a bulk load, the load's freed log batches
/// and temporaries stayed resident on a node that then went quiet (see
/// docs/benchmarks.md, "Memory per key"). A shorter purge delay does it
/// too, but costs throughput under load; this costs one pass over the
/// driver's pages a second.
pub fn collect(now: Instant) {
    LAST_COLLECT.with(|last| {
        if last.get().is_some_and(|t| now < t + COLLECT_EVERY) {
            return;
        }
        last.set(Some(now));
        // SAFETY: a request to mimalloc about the calling thread's own heap
        // (a no-op in a process whose allocator is another).
        unsafe { mi_collect(false) };
    });
}
