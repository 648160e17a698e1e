//! `subscribe-logs`: streams the log history, then live lines, to one connection.
//!
//! The stream is its own task with its own outbound budget, so however long the history
//! and however slow the reader, only this task waits; requests and deliveries go on.
//! When it falls too far behind the live feed it skips lines rather than holding the
//! logging thread back.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use super::outbound::{Frame, Outbound};
use super::protocol::log_frame;
use super::stop::{stop_pair, Stop, StopHandle};
use crate::logs::{LogEntry, LogSubscription};

pub struct LogStream {
    stop: StopHandle,
    task: JoinHandle<()>,
}

impl LogStream {
    pub fn start(feed: LogSubscription, out: Outbound) -> LogStream {
        let (stop, stopped) = stop_pair();
        let task = tokio::spawn(stream_loop(feed, out, stopped));
        LogStream { stop, task }
    }

    pub async fn stop(self) {
        self.stop.stop();
        let _ = self.task.await;
    }
}

/// Requirements: WS-0018
async fn stream_loop(feed: LogSubscription, out: Outbound, mut stop: Stop) {
    let LogSubscription { history, mut live } = feed;
    for entry in history {
        if !send(&entry, &out, &mut stop).await {
            return;
        }
    }
    loop {
        match stop.until(live.recv()).await {
            None | Some(Err(RecvError::Closed)) => return,
            Some(Err(RecvError::Lagged(_))) => continue,
            Some(Ok(entry)) => {
                if !send(&entry, &out, &mut stop).await {
                    return;
                }
            }
        }
    }
}

/// Queues one log frame; false when the stream should end.
async fn send(entry: &Arc<LogEntry>, out: &Outbound, stop: &mut Stop) -> bool {
    let Some(Ok(permit)) = stop.until(Arc::clone(&out.logs).acquire_owned()).await else {
        return false;
    };
    let frame = Frame::text(log_frame(entry), Some(permit));
    matches!(stop.until(out.frames.send(frame)).await, Some(Ok(())))
}
