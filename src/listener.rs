//! The accept loop under the HTTP server, with the cap on open connections.
//!
//! Each accepted connection takes a permit of a semaphore and holds it until hyper drops
//! the connection. A connection that finds no permit is not served: it gets a short
//! `503 too_many_connections` reply written by hand and is closed, so a client learns why
//! instead of waiting in the kernel's backlog. Refusals have their own small budget; past
//! it a connection is closed without a reply.
//!
//! With an idle timeout, a connection on which no byte moves for that long is closed: its
//! next read or write fails. Bytes received and bytes handed to the socket push the
//! deadline back, and so does a client taking bytes that waited in the socket for it: a
//! full socket signals room only once a good part of it has drained, so a client that
//! reads slowly may keep the server's writes waiting for longer than the timeout. That
//! frees the permits of silent sockets, of requests left half-sent and of clients that
//! stopped reading their replies.

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

/// The idle deadline of one connection.
struct Idle {
    timeout: Duration,
    deadline: Pin<Box<Sleep>>,
    /// When bytes last moved. The deadline catches up with it only when it passes: moving
    /// it at every read and write would take the timer's lock twice a request.
    last_active: Instant,
    /// Bytes the socket held for the client when the deadline last passed with some
    /// there: the deadline is granted again only if the client has taken some since.
    unsent: Option<usize>,
}

impl Idle {
    fn new(timeout: Duration) -> Idle {
        let deadline = Box::pin(tokio::time::sleep(timeout));
        Idle { timeout, deadline, last_active: Instant::now(), unsent: None }
    }

    /// Bytes moved: the timeout starts over.
    fn active(&mut self) {
        self.last_active = Instant::now();
        self.unsent = None;
    }

    /// For a read or write that has to wait: true once the connection has been idle for
    /// the timeout. Until then the deadline wakes the task.
    /// Requirements: SYS-0031
    fn expired(&mut self, cx: &mut Context<'_>, stream: &TcpStream) -> bool {
        while self.deadline.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            let due = self.last_active + self.timeout;
            if due > now {
                self.deadline.as_mut().reset(due);
                continue;
            }
            match unsent_bytes(stream) {
                Some(left) if left > 0 && self.unsent.is_none_or(|before| left < before) => {
                    self.last_active = now;
                    self.unsent = Some(left);
                    self.deadline.as_mut().reset(now + self.timeout);
                }
                _ => return true,
            }
        }
        false
    }
}

/// Bytes written to `stream` that the client has not acknowledged yet, where the system
/// says (Linux: `SIOCOUTQ`).
fn unsent_bytes(stream: &TcpStream) -> Option<usize> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let mut bytes: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ on a TCP socket) writes one int through the pointer,
        // and the descriptor is the stream's own, open for as long as `stream` lives.
        let rc = unsafe { libc::ioctl(stream.as_raw_fd(), libc::TIOCOUTQ, &mut bytes) };
        (rc == 0).then(|| usize::try_from(bytes).unwrap_or(0))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        None
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
        let Conn { stream, idle, .. } = &mut *self;
        let poll = Pin::new(&mut *stream).poll_read(cx, buf);
        let Some(idle) = idle else { return poll };
        match poll {
            Poll::Ready(Ok(())) if buf.filled().len() > before => idle.active(),
            Poll::Pending if idle.expired(cx, stream) => {
                tracing::debug!("connection closed: idle timeout");
                return Poll::Ready(Err(idle_timeout()));
            }
            _ => {}
        }
        poll
    }
}

fn idle_timeout() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "idle timeout")
}

impl Conn {
    /// Passes a write's outcome on, noting the bytes it moved, or fails it once the
    /// connection has been idle for the timeout.
    fn watch_write(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let Some(idle) = &mut self.idle else { return poll };
        match poll {
            Poll::Ready(Ok(n)) if n > 0 => idle.active(),
            Poll::Pending if idle.expired(cx, &self.stream) => {
                tracing::debug!("connection closed: idle timeout, replies not read");
                return Poll::Ready(Err(idle_timeout()));
            }
            _ => {}
        }
        poll
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
        Pin::new(&mut self.stream).poll_flush(cx)
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
