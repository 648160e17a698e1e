//! Push delivery for one (connection, queue) subscription.
//!
//! The task consumes a message only when it may send it right away: the subscription has
//! credit, the connection's delivery budget has a permit and the outbound queue has a
//! slot reserved. Otherwise the message stays in its queue, unlocked, for anyone. With
//! nothing to consume it sleeps on `Engine::wait_available`, so a publish wakes it at
//! once instead of on the next poll.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::outbound::{Frame, Outbound};
use super::protocol::deliver_frame;
use super::stop::{stop_pair, Stop, StopHandle};
use crate::engine::{Engine, EngineError};

/// Lock duration of a WebSocket delivery, as in 0.15.0.
const LOCK_SECS: u64 = 30;
/// Pause after a failed consume, so a failing store is not hammered.
const RETRY_AFTER_ERROR: Duration = Duration::from_millis(500);
/// Longest single sleep on `wait_available`; wake-ups come from the engine, this only
/// bounds how long a missing one could cost.
// Limitation: a renew that shortens a lock wakes no waiter, so a subscriber parked on
// that lock's old deadline sees the earlier expiry up to this long late.
const WAIT_CAP: Duration = Duration::from_secs(1);
/// Most messages one consume of a subscription takes.
const MAX_PER_CONSUME: usize = 32;

/// Remaining deliveries of a subscription; `None` is unlimited.
/// Requirements: WS-0010, WS-0011
pub struct Credits {
    remaining: Mutex<Option<u64>>,
    added: Notify,
}

impl Credits {
    fn new(initial: Option<u64>) -> Credits {
        Credits { remaining: Mutex::new(initial), added: Notify::new() }
    }

    /// Adds credit and resumes a paused subscription; ignored when unlimited.
    pub fn add(&self, n: u64) {
        if let Some(left) = self.remaining.lock().as_mut() {
            *left = left.saturating_add(n);
        }
        self.added.notify_one();
    }

    async fn wait_positive(&self) {
        // `notify_one` keeps a permit when nobody waits yet, so credit added between the
        // check and the wait is not missed.
        while *self.remaining.lock() == Some(0) {
            self.added.notified().await;
        }
    }

    /// How many deliveries the client allows right now.
    fn allowance(&self) -> usize {
        match *self.remaining.lock() {
            None => usize::MAX,
            Some(left) => usize::try_from(left).unwrap_or(usize::MAX),
        }
    }

    fn spend(&self, n: usize) {
        if let Some(left) = self.remaining.lock().as_mut() {
            *left = left.saturating_sub(n as u64);
        }
    }
}

/// A running subscription: its credit, and the handles to stop it.
pub struct Subscription {
    pub credits: Arc<Credits>,
    stop: StopHandle,
    task: JoinHandle<()>,
}

impl Subscription {
    pub fn start(
        engine: Arc<Engine>,
        conn_id: Arc<str>,
        queue: String,
        credits: Option<u64>,
        out: Outbound,
    ) -> Subscription {
        let credits = Arc::new(Credits::new(credits));
        let (stop, stopped) = stop_pair();
        let task =
            tokio::spawn(deliver_loop(engine, conn_id, queue, Arc::clone(&credits), out, stopped));
        Subscription { credits, stop, task }
    }

    /// Stops delivering; returns once no consume of this subscription is in flight.
    pub async fn stop(self) {
        self.signal_stop();
        self.join().await;
    }

    /// Asks the task to stop without waiting for it (see [`Subscription::join`]).
    pub fn signal_stop(&self) {
        self.stop.stop();
    }

    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Requirements: WS-0010, WS-0014
async fn deliver_loop(
    engine: Arc<Engine>,
    conn_id: Arc<str>,
    queue: String,
    credits: Arc<Credits>,
    out: Outbound,
    mut stop: Stop,
) {
    loop {
        if stop.until(credits.wait_positive()).await.is_none() {
            return;
        }
        let Some(Ok(budget)) = stop.until(Arc::clone(&out.deliveries).acquire_owned()).await else {
            return;
        };
        let Some(Ok(slot)) = stop.until(out.frames.clone().reserve_owned()).await else {
            return;
        };
        let mut grants = vec![(slot, budget)];
        // Taking several messages per consume makes one durable write lock them all,
        // instead of one write per delivery; never more than the client allowed and
        // the connection has room for right now.
        let wanted = credits.allowance().min(MAX_PER_CONSUME);
        while grants.len() < wanted {
            let Ok(budget) = Arc::clone(&out.deliveries).try_acquire_owned() else { break };
            let Ok(slot) = out.frames.clone().try_reserve_owned() else { break };
            grants.push((slot, budget));
        }

        let outcome = engine.consume(&queue, &conn_id, LOCK_SECS, grants.len(), Duration::ZERO);
        let batch = match outcome.await {
            Ok(batch) => batch,
            // Deleted under us: a later publish may create it again, so keep waiting.
            Err(EngineError::QueueNotFound(_)) => Vec::new(),
            Err(err) => {
                drop(grants);
                tracing::warn!(queue = %queue, error = %err, "websocket consume failed");
                if stop.until(tokio::time::sleep(RETRY_AFTER_ERROR)).await.is_none() {
                    return;
                }
                continue;
            }
        };
        if !batch.is_empty() {
            credits.spend(batch.len());
            for (delivery, (slot, budget)) in batch.iter().zip(grants) {
                slot.send(Frame::text(deliver_frame(delivery), Some(budget)));
            }
            continue;
        }

        // `wait_available` rechecks the queue once armed, so a publish that landed
        // since the empty consume returns at once instead of being missed.
        drop(grants);
        let deadline = Instant::now() + WAIT_CAP;
        if stop.until(engine.wait_available(&queue, deadline)).await.is_none() {
            return;
        }
    }
}
