//! Counting what the allocator hands out, for INFO's `used_memory`.
//!
//! Redis reports the bytes its allocator has handed out and not taken
//! back; so does concord, by wrapping the global allocator (mimalloc, see
//! `main.rs`) in [`Counting`]. Every thread adds to one of a few
//! cache-line-sized shards, so the count costs an uncontended atomic add
//! per allocation rather than a shared cache line bouncing between cores;
//! a block freed by another thread than the one that allocated it makes
//! one shard go down and another up, and only the sum means anything.
//!
//! This figure is not what `maxmemory` limits: it includes the raft log
//! held in memory, client buffers and caches that differ from node to
//! node. `maxmemory` limits the dataset as every replica sizes it (see
//! `state::memory`).

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};

const SHARDS: usize = 16;

#[repr(align(128))]
struct Shard(AtomicI64);

static COUNTS: [Shard; SHARDS] = [const { Shard(AtomicI64::new(0)) }; SHARDS];
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

thread_local! {
    // Const-initialized and without a destructor: usable from inside the
    // allocator at any point of a thread's life.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn shard() -> &'static AtomicI64 {
    let at = SHARD.with(|s| {
        let mut at = s.get();
        if at == usize::MAX {
            at = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
            s.set(at);
        }
        at
    });
    &COUNTS[at].0
}

/// A global allocator that counts the bytes `A` has handed out.
pub struct Counting<A>(pub A);

unsafe impl<A: GlobalAlloc> GlobalAlloc for Counting<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { self.0.alloc(layout) };
        if !p.is_null() {
            shard().fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { self.0.alloc_zeroed(layout) };
        if !p.is_null() {
            shard().fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { self.0.dealloc(ptr, layout) };
        shard().fetch_sub(layout.size() as i64, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            shard().fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
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
    let sum: i64 = COUNTS.iter().map(|s| s.0.load(Ordering::Relaxed)).sum();
    Some(sum.max(0) as u64)
}
