//! The cap on long polls: a `/consume` with `wait_seconds` that finds nothing takes a slot
//! for as long as it waits. With every slot taken it is answered at once with 429
//! `too_many_waiters`, so that idle consumers cannot pile up tasks and connections without
//! bound. A consume that finds a message, or asks for no wait, takes no slot.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::error::ApiError;
use crate::engine::{Delivery, Engine};

pub struct Waiters {
    /// `None`: no cap.
    slots: Option<Arc<Semaphore>>,
    limit: usize,
}

impl Waiters {
    /// `limit` 0 means no cap.
    pub fn new(limit: usize) -> Waiters {
        Waiters { slots: (limit > 0).then(|| Arc::new(Semaphore::new(limit))), limit }
    }

    /// `Engine::consume`, with the wait counted against the cap.
    /// Requirements: API-0031, SYS-0024
    pub async fn consume(
        &self,
        engine: &Engine,
        queue: &str,
        consumer_id: &str,
        timeout_secs: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, ApiError> {
        let Some(slots) = self.slots.as_ref().filter(|_| !wait.is_zero()) else {
            return Ok(engine.consume(queue, consumer_id, timeout_secs, max, wait).await?);
        };
        let got = engine.consume(queue, consumer_id, timeout_secs, max, Duration::ZERO).await?;
        if !got.is_empty() {
            return Ok(got);
        }
        let Ok(_slot) = slots.try_acquire() else {
            tracing::warn!(queue, limit = self.limit, "long poll refused: every slot is taken");
            return Err(ApiError::too_many_waiters(self.limit));
        };
        Ok(engine.consume(queue, consumer_id, timeout_secs, max, wait).await?)
    }
}
