//! Dead-letter operations: list, redrive, purge.

use std::collections::HashSet;

use super::messages::{format_id, parse_id};
use super::record::Record;
use super::types::DeadLetterView;
use super::{validate_queue_name, Engine, Result};

impl Engine {
    /// Dead letters of a queue, oldest first.
    /// Requirements: DLV-0015
    pub fn dlq_list(&self, queue: &str, limit: usize) -> Result<Vec<DeadLetterView>> {
        validate_queue_name(queue)?;
        let cat = self.catalog.read();
        let Some(q) = cat.get(queue) else { return Ok(Vec::new()) };
        let now = self.clock.now_ms();
        let st = q.state.lock();
        // Expiry is exact: a lock past its deadline with its retries used up is listed as
        // the dead letter it is, although nothing has settled it yet (a read never writes).
        let settled = st.dead_letters().map(|d| (&d.msg, d.at_ms));
        // Payloads in the log are read under the queue's lock, which keeps a compaction
        // from moving them meanwhile.
        settled
            .chain(st.due_dead_letters(now))
            .take(limit)
            .map(|(m, at_ms)| {
                Ok(DeadLetterView {
                    id: format_id(&m.id),
                    payload: self.payload_text(&m.payload)?,
                    priority: m.priority.clone(),
                    retry_count: m.retry_count,
                    dead_lettered_at_ms: at_ms,
                })
            })
            .collect()
    }

    /// Moves dead letters (all, or the named ones) back to their original position with
    /// `retry_count` 0, honouring `allow_duplicates`: a dead letter whose payload is in the
    /// queue already stays where it is. Returns how many moved.
    /// Requirements: DLV-0016
    pub async fn dlq_redrive(&self, queue: &str, ids: Option<&[String]>) -> Result<u64> {
        let (pending, n) = self.with_queue(
            queue,
            || Ok(0),
            |txn| {
                let wanted: Vec<_> = match ids {
                    Some(ids) => ids.iter().filter_map(|s| parse_id(s)).collect(),
                    None => txn.state.dead_letters().map(|d| d.msg.id).collect(),
                };
                let check_dups = !txn.state.config.allow_duplicates;
                let mut taken_payloads = HashSet::new();
                let mut seen = HashSet::new();
                let qid = txn.qid();
                let mut recs = Vec::new();
                for id in wanted {
                    let Some(d) = txn.state.dead_letter(&id) else { continue };
                    if !seen.insert(id) {
                        continue;
                    }
                    // A queue without duplicates holds its payloads in RAM.
                    if let Some(p) = d.msg.payload.as_inline().filter(|_| check_dups) {
                        if txn.state.is_duplicate(p) || !taken_payloads.insert(p.clone()) {
                            continue;
                        }
                    }
                    recs.push(Record::Redriven { qid, id });
                }
                let n = recs.len() as u64;
                if n > 0 {
                    txn.emit(Record::Group(recs))?;
                }
                Ok(n)
            },
        )?;
        pending.wait().await?;
        Ok(n)
    }

    /// Requirements: DLV-0017
    pub async fn dlq_purge(&self, queue: &str) -> Result<u64> {
        let (pending, n) = self.with_queue(
            queue,
            || Ok(0),
            |txn| {
                let n = txn.state.dead_len();
                if n > 0 {
                    let qid = txn.qid();
                    txn.emit(Record::DeadLettersPurged { qid })?;
                }
                Ok(n)
            },
        )?;
        pending.wait().await?;
        Ok(n)
    }
}
