//! A cap on things clients hold at once (connections, WebSocket sessions, long polls),
//! with a count of the requests it refused for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// `limit` 0 means no cap: every `take` succeeds and holds nothing.
#[derive(Debug)]
pub struct Slots {
    free: Option<Arc<Semaphore>>,
    limit: usize,
    refused: AtomicU64,
}

/// What a successful `take` holds; the slot is given back when it drops.
pub type Slot = Option<OwnedSemaphorePermit>;

impl Slots {
    pub fn new(limit: usize) -> Arc<Slots> {
        let free = (limit > 0).then(|| Arc::new(Semaphore::new(limit)));
        Arc::new(Slots { free, limit, refused: AtomicU64::new(0) })
    }

    /// A slot, or `None` (counted as a refusal) when every one is taken.
    pub fn take(&self) -> Option<Slot> {
        let Some(free) = &self.free else { return Some(None) };
        match free.clone().try_acquire_owned() {
            Ok(permit) => Some(Some(permit)),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Requests refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// The three caps of one server, shared by the listener, the WebSocket route and the
/// long polls, and read by `/metrics`.
#[derive(Debug)]
pub struct ServerSlots {
    pub connections: Arc<Slots>,
    pub ws_sessions: Arc<Slots>,
    pub long_polls: Arc<Slots>,
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: SYS-0024
    #[test]
    fn a_full_cap_refuses_and_counts_until_a_slot_is_given_back() {
        let slots = Slots::new(1);
        let held = slots.take().expect("one slot");
        assert!(slots.take().is_none());
        assert_eq!(slots.refused(), 1);
        drop(held);
        assert!(slots.take().is_some());

        let open = Slots::new(0);
        assert!((0..10).all(|_| open.take().is_some()));
        assert_eq!(open.refused(), 0);
    }
}
