//! The accept loop under the HTTP server, with the cap on open connections.
//!
//! Each accepted connection takes a permit of a semaphore and holds it until hyper drops
//! the connection. A connection that finds no permit is not served: it gets a short
//! `503 too_many_connections` reply written by hand and is closed, so a client learns why
//! instead of waiting in the kernel's backlog. Refusals have their own small budget; past
//! it a connection is closed without a reply.
//!
//! hyper answers a request it cannot parse by itself, with an empty body; on the way out
//! such a reply gets the JSON error body every other error carries.
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
    /// A reply of hyper's own given a JSON body (see `with_json_body`), and how much of it
    /// is written: hyper was told all of its own reply went out.
    rewritten: Option<(Vec<u8>, usize)>,
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
            // A timeout too large to add never passes: the sleep is capped at 30 years.
            let Some(due) = self.last_active.checked_add(self.timeout) else { return false };
            if due > now {
                self.deadline.as_mut().reset(due);
                continue;
            }
            match unsent_bytes(stream) {
                Some(left) if left > 0 && self.unsent.is_none_or(|before| left < before) => {
                    self.last_active = now;
                    self.unsent = Some(left);
                    let Some(due) = now.checked_add(self.timeout) else { return false };
                    self.deadline.as_mut().reset(due);
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
            return Conn { stream, _slot: slot, idle, rewritten: None };
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

impl Conn {
    /// Takes `buf`, about to be written, in place of a reply of hyper's own that lacks the
    /// JSON body; false for everything else.
    fn rewrite(&mut self, buf: &[u8]) -> bool {
        if self.rewritten.is_some() {
            return false;
        }
        self.rewritten = with_json_body(buf).map(|reply| (reply, 0));
        self.rewritten.is_some()
    }

    /// Writes what is left of a rewritten reply; Ready once it is all written (at once
    /// when there is none).
    fn write_rewritten(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((reply, written)) = &mut self.rewritten {
            if *written == reply.len() {
                break;
            }
            let poll = Pin::new(&mut self.stream).poll_write(cx, &reply[*written..]);
            match std::task::ready!(self.watch_write(cx, poll))? {
                0 => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                n => {
                    if let Some((_, written)) = &mut self.rewritten {
                        *written += n;
                    }
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.write_rewritten(cx))?;
        if self.rewrite(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.watch_write(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.write_rewritten(cx))?;
        // hyper writes a reply of its own as its head alone, in one slice.
        let mut slices = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(head), None) = (slices.next(), slices.next()) {
            if self.rewrite(head) {
                return Poll::Ready(Ok(head.len()));
            }
        }
        let poll = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.watch_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.write_rewritten(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.write_rewritten(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// hyper's own error heads hold a status line, content-length and date: about 100 bytes.
const MAX_OWN_HEAD: usize = 512;

/// hyper answers a request it cannot parse itself, before any route runs, and with an
/// empty body: a malformed request line or header (400), a URI too long (414), headers
/// too large (431). Such a reply, whole in `head`, is given the JSON body that every
/// other error carries (changes.md). `None` for anything else: every reply of the
/// server's own has a content-type.
/// Requirements: API-0003
fn with_json_body(head: &[u8]) -> Option<Vec<u8>> {
    // Every write passes through here, the rest of a large body again after each partial
    // write: what cannot be such a head is turned away before any scan of the bytes.
    if head.len() > MAX_OWN_HEAD || !head.starts_with(b"HTTP/1.") || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let text = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let (status_line, headers) = text.split_once("\r\n")?;
    let status = status_line.get("HTTP/1.x ".len()..)?;
    let (code, error) = match status.get(..4)? {
        "400 " => ("bad_request", "the request line or a header could not be parsed"),
        "414 " => ("uri_too_long", "the request URI is too long"),
        "431 " => ("headers_too_large", "the request headers are too large"),
        _ => return None,
    };
    let named = |line: &str, name: &str| {
        line.split_once(':').is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    };
    let headers: Vec<&str> = headers.split("\r\n").collect();
    let empty = headers.iter().any(|l| named(l, "content-length") && l.ends_with(": 0"));
    if !empty || headers.iter().any(|l| named(l, "content-type")) {
        return None;
    }
    let body = format!(r#"{{"error":"{error}","code":"{code}"}}"#);
    let mut reply = format!("{status_line}\r\ncontent-type: application/json\r\n");
    for line in headers.iter().filter(|l| !named(l, "content-length")) {
        reply.push_str(line);
        reply.push_str("\r\n");
    }
    reply.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    Some(reply.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Verifies: API-0003
    #[test]
    fn only_hyper_s_own_empty_error_replies_are_given_a_json_body() {
        let date = "date: Fri, 04 Dec 2026 19:00:09 GMT";
        let bare = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n{date}\r\n\r\n"
        );
        let reply = String::from_utf8(with_json_body(bare.as_bytes()).unwrap()).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("HTTP/1.1 431 Request Header Fields Too Large"));
        let lines: Vec<&str> = lines.collect();
        assert!(lines.contains(&"content-type: application/json") && lines.contains(&date));
        assert!(lines.contains(&format!("content-length: {}", body.len()).as_str()));
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "headers_too_large");

        // An HTTP/1.0 request's error is answered in HTTP/1.0.
        let old = "HTTP/1.0 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let reply = String::from_utf8(with_json_body(old.as_bytes()).unwrap()).unwrap();
        assert!(reply.starts_with("HTTP/1.0 400 Bad Request\r\ncontent-type: application/json"));
        assert!(reply.ends_with(r#""code":"bad_request"}"#), "{reply}");

        let long = format!(
            "HTTP/1.1 400 Bad Request\r\nx: {}\r\ncontent-length: 0\r\n\r\n",
            "a".repeat(600)
        );
        let left_alone = [
            // Longer than any head of hyper's own.
            long.as_str(),
            // Replies of the server's own carry a content-type, whatever their status.
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            // A body follows, or the head is not whole.
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            "{\"not\": \"a reply\"}",
        ];
        for text in left_alone {
            assert_eq!(with_json_body(text.as_bytes()), None, "{text}");
        }
    }

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
