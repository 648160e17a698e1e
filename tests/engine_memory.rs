//! Memory that the engine must give back: a queue whose messages are locked, expire and are
//! acked over and over holds the same memory after a thousand rounds as after ten.
//!
//! Its own test binary, with one test, so the allocation counter sees nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use qrusty::clock::ManualClock;
use qrusty::engine::*;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, AtomicOrdering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, AtomicOrdering::Relaxed);
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

async fn rounds(e: &Engine, n: usize) {
    let holder = Holder { consumer_id: "w".into(), lock_token: None };
    for i in 0..n {
        let batch = (0..3)
            .map(|k| NewMessage {
                priority: Priority::Num(1),
                payload: format!("m{i}-{k}"),
                max_retries: 9,
            })
            .collect();
        e.publish_batch("q", batch).await.unwrap();
        // Locks that are due at once: stats and the next consume walk the lock table up to
        // now, then the expiry removes the entries they walked over.
        let first = e.consume("q", "w", 0, 3, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 3);
        assert_eq!(e.queue_stats("q").unwrap().available, 3);
        let again = e.consume("q", "w", 30, 3, Duration::ZERO).await.unwrap();
        assert_eq!(again.len(), 3);
        let ids: Vec<String> = again.iter().map(|d| d.id.clone()).collect();
        let acked = e.ack_batch("q", &holder.consumer_id, &ids).await.unwrap();
        assert_eq!(acked.acked.len(), 3);
    }
}

// Verifies: DLV-0029
#[tokio::test(flavor = "current_thread")]
async fn expiring_locks_leak_no_memory() {
    let mut opts = EngineOptions::new(StorageConfig::Memory);
    opts.clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let e = Engine::open(opts).unwrap();
    rounds(&e, 200).await;
    let before = LIVE.load(AtomicOrdering::Relaxed);
    rounds(&e, 3000).await;
    let grown = LIVE.load(AtomicOrdering::Relaxed) - before;
    // A leaked lock-table node is about 50 bytes; the old range scans leaked four per round.
    assert!(grown < 64 * 1024, "3000 rounds kept {grown} more bytes");
}
