//! A stop signal for a connection's background tasks.
//!
//! Tasks stop only at their waiting points (`Stop::until`), never in the middle of an
//! engine call: a consume that was cut off after locking a message would leave it locked
//! to a frame nobody sends.

use std::future::Future;

use tokio::sync::watch;

/// Held by whoever may stop the task(s).
pub struct StopHandle(watch::Sender<bool>);

/// Held by the task(s); cheap to clone.
#[derive(Clone)]
pub struct Stop(watch::Receiver<bool>);

pub fn stop_pair() -> (StopHandle, Stop) {
    let (tx, rx) = watch::channel(false);
    (StopHandle(tx), Stop(rx))
}

impl StopHandle {
    pub fn stop(&self) {
        self.0.send_replace(true);
    }
}

impl Stop {
    /// Runs `fut` unless a stop comes first (or the handle is gone): `None` then.
    pub async fn until<F: Future>(&mut self, fut: F) -> Option<F::Output> {
        tokio::select! {
            biased;
            _ = self.0.wait_for(|stopped| *stopped) => None,
            out = fut => Some(out),
        }
    }
}
