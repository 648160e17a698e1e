//! The accept loop under the HTTP server, with the cap on open connections.
//!
//! Each accepted connection takes a permit of a semaphore and holds it until hyper drops
//! the connection. A connection that finds no permit is not served: it gets a short
//! `503 too_many_connections` reply written by hand and is closed, so a client learns why
//! instead of waiting in the kernel's backlog. Refusals have their own small budget; past
//! it a connection is closed without a reply.
//!
//! With an idle timeout, a connection that sends nothing for that long is closed: its
//! read fails once the deadline, pushed back by every byte received, passes. That frees
//! the permits of silent sockets and of requests left half-sent. A connection whose
//! writes make no progress for that long (a client that stopped reading its replies) is
//! closed the same way, by its write failing.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, Stream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};

use crate::slots::{Slot, Slots};

/// Refusal replies being written at once; more connections over the cap are just closed.
const MAX_REFUSALS_IN_FLIGHT: usize = 64;
/// How long a refusal may take, reading the request included.
const REFUSAL_TIME: Duration = Duration::from_secs(2);
/// Pause after a failed accept (out of file descriptors, say) before the next one.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// Least time between two WARN lines about failed accepts: a lasting failure repeats
/// every `ACCEPT_BACKOFF` and would flood the log.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(10);

/// A connection that holds its permit (if the cap is on) for as long as it lives.
pub struct Conn {
    stream: TcpStream,
    _slot: Slot,
    idle: Option<Idle>,
}

/// The deadlines of one connection.
struct Idle {
    timeout: Duration,
    /// For reads: pushed back by every byte received.
    deadline: Pin<Box<Sleep>>,
    /// For writes: set when a write finds the socket full, and only counts while writes
    /// keep finding it full.
    write_deadline: Pin<Box<Sleep>>,
    write_waiting: bool,
}

impl Idle {
    fn new(timeout: Duration) -> Idle {
        Idle {
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            write_deadline: Box::pin(tokio::time::sleep(timeout)),
            write_waiting: false,
        }
    }

    /// Passes a write's outcome on, unless writes have waited for the client to read for
    /// the whole timeout: that write then fails, and with it the connection.
    /// Requirements: SYS-0031
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.write_waiting = false;
            return poll;
        }
        if !self.write_waiting {
            self.write_waiting = true;
            self.write_deadline.as_mut().reset(Instant::now() + self.timeout);
        }
        if self.write_deadline.as_mut().poll(cx).is_ready() {
            tracing::debug!("connection closed: the client stopped reading");
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "write stalled")));
        }
        Poll::Pending
    }
}

struct Accepting {
    listener: TcpListener,
    slots: Arc<Slots>,
    refusals: Arc<Semaphore>,
    idle_timeout: Option<Duration>,
}

/// The stream of accepted connections hyper serves, each holding one of `slots`. It
/// never yields an error: hyper would stop serving at the first one, so accept failures
/// are logged and retried.
/// Requirements: SYS-0024, SYS-0027, SYS-0031
pub fn incoming(
    listener: TcpListener,
    slots: Arc<Slots>,
    idle_timeout: Option<Duration>,
) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
    let state = Accepting {
        listener,
        slots,
        refusals: Arc::new(Semaphore::new(MAX_REFUSALS_IN_FLIGHT)),
        idle_timeout,
    };
    stream::unfold(state, |state| async move {
        let conn = state.next().await;
        Some((Ok(conn), state))
    })
}

impl Accepting {
    async fn next(&self) -> Conn {
        let mut last_warn: Option<Instant> = None;
        let mut unlogged = 0u64;
        loop {
            let stream = match self.listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    if last_warn.is_none_or(|at| at.elapsed() >= ACCEPT_WARN_EVERY) {
                        let failures_since_last = unlogged;
                        tracing::warn!(cause = %err, failures_since_last, "accept failed");
                        last_warn = Some(Instant::now());
                        unlogged = 0;
                    } else {
                        unlogged += 1;
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            // As warp's own listener does: replies are small and must not wait for more.
            let _ = stream.set_nodelay(true);
            let Some(slot) = self.slots.take() else {
                self.refuse(stream);
                continue;
            };
            let idle = self.idle_timeout.map(Idle::new);
            return Conn { stream, _slot: slot, idle };
        }
    }

    fn refuse(&self, stream: TcpStream) {
        // DEBUG, not WARN: under a flood this would be one line per connection; the count
        // is in /metrics (qrusty_refused_connections_total).
        tracing::debug!(limit = self.slots.limit(), "connection refused: the limit is reached");
        // Limitation: past MAX_REFUSALS_IN_FLIGHT refusals at once, a connection over the
        // cap is closed without a reply.
        let Ok(slot) = self.refusals.clone().try_acquire_owned() else { return };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_TIME, write_refusal(stream)).await;
            drop(slot);
        });
    }
}

/// The reply a connection over the cap gets.
pub fn refusal() -> String {
    let body =
        r#"{"error":"too many open connections; retry later","code":"too_many_connections"}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads what the client sent first (closing a socket with unread bytes resets it, and
/// the client would see a reset instead of the reply), answers, and closes.
async fn write_refusal(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf)).await;
    if stream.write_all(refusal().as_bytes()).await.is_ok() {
        let _ = stream.shutdown().await;
        // Let the client read the reply before the socket goes away.
        let drain = async { while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {} };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = Pin::new(&mut this.stream).poll_read(cx, buf);
        let Some(idle) = &mut this.idle else { return poll };
        match poll {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                idle.deadline.as_mut().reset(Instant::now() + idle.timeout);
                Poll::Ready(Ok(()))
            }
            Poll::Pending if idle.deadline.as_mut().poll(cx).is_ready() => {
                tracing::debug!("connection closed: idle timeout");
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")))
            }
            other => other,
        }
    }
}

impl Conn {
    fn watch_write<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match &mut self.idle {
            Some(idle) => idle.watch_write(cx, poll),
            None => poll,
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch_write(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.stream).poll_flush(cx);
        self.watch_write(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: SYS-0027
    #[test]
    fn the_refusal_is_well_formed_http_with_a_json_body() {
        let text = refusal();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let length: usize =
            head.lines().find_map(|l| l.strip_prefix("content-length: ")).unwrap().parse().unwrap();
        assert_eq!(length, body.len());
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "too_many_connections");
    }
}
