//! The cap on long polls: a `/consume` with `wait_seconds` that finds nothing takes a slot
//! for as long as it waits. With every slot taken it is answered at once with 429
//! `too_many_waiters`, so that idle consumers cannot pile up tasks and connections without
//! bound. A consume that finds a message, or asks for no wait, takes no slot.

use std::sync::Arc;
use std::time::Duration;

use super::error::ApiError;
use crate::engine::{Delivery, Engine};
use crate::slots::Slots;

pub struct Waiters {
    slots: Arc<Slots>,
}

impl Waiters {
    pub fn new(slots: Arc<Slots>) -> Waiters {
        Waiters { slots }
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
        if self.slots.limit() == 0 || wait.is_zero() {
            return Ok(engine.consume(queue, consumer_id, timeout_secs, max, wait).await?);
        }
        let got = engine.consume(queue, consumer_id, timeout_secs, max, Duration::ZERO).await?;
        if !got.is_empty() {
            return Ok(got);
        }
        let Some(_slot) = self.slots.take() else {
            // DEBUG: one line per refused poll would flood the log; /metrics counts them.
            tracing::debug!(queue, limit = self.slots.limit(), "long poll refused: no slot");
            return Err(ApiError::too_many_waiters(self.slots.limit()));
        };
        Ok(engine.consume(queue, consumer_id, timeout_secs, max, wait).await?)
    }
}
