//! The outbound side of a connection: one writer task owns the socket's sink and sends
//! what the session, its subscriptions and its log stream queue for it.
//!
//! Nothing is ever dropped here. Responses wait for room in the bounded queue, which in
//! turn makes the session stop reading requests from a client that stops reading
//! replies. Deliveries and log lines also need a permit from their own budget, which the
//! writer returns only once the frame is on the socket: a slow reader therefore pauses
//! its subscriptions (messages stay unlocked in their queue) and can never fill the
//! queue so far that a response has nowhere to go.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::SplitSink;
use futures_util::SinkExt;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use warp::ws::{Message, WebSocket};

/// Frames the outbound queue holds, responses, deliveries and log lines together.
pub const QUEUE_FRAMES: usize = 512;
/// Deliveries of one connection that may be queued or being written at once.
pub const DELIVERY_BUDGET: usize = 128;
/// Log lines of one connection that may be queued or being written at once.
pub const LOG_BUDGET: usize = 64;
/// How long a closing connection may take to flush what is queued for it.
pub const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// One frame in send order, and the budget permit (if any) it gives back once written.
pub struct Frame {
    pub message: Message,
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Frame {
    pub fn text(text: String, permit: Option<OwnedSemaphorePermit>) -> Frame {
        Frame { message: Message::text(text), permit }
    }

    /// A close that follows every frame queued before it; the writer stops after it.
    pub fn close(code: u16, reason: &'static str) -> Frame {
        Frame { message: Message::close_with(code, reason), permit: None }
    }
}

/// Control frames jump the queue: a ping must not wait behind 512 deliveries, and a
/// connection that stopped answering pings is closed without flushing its backlog.
#[derive(Debug)]
pub enum Control {
    Ping,
    Close { code: u16, reason: &'static str },
}

/// The handles through which anything queues frames for one connection.
#[derive(Clone)]
pub struct Outbound {
    pub frames: mpsc::Sender<Frame>,
    pub deliveries: Arc<Semaphore>,
    pub logs: Arc<Semaphore>,
}

/// Starts the writer task; returns the frame handles and the control channel.
/// Requirements: WS-0020
pub fn spawn_writer(
    sink: SplitSink<WebSocket, Message>,
) -> (Outbound, mpsc::Sender<Control>, tokio::task::JoinHandle<()>) {
    let (frames, frames_rx) = mpsc::channel(QUEUE_FRAMES);
    let (control, control_rx) = mpsc::channel(4);
    let task = tokio::spawn(write_loop(sink, frames_rx, control_rx));
    let outbound = Outbound {
        frames,
        deliveries: Arc::new(Semaphore::new(DELIVERY_BUDGET)),
        logs: Arc::new(Semaphore::new(LOG_BUDGET)),
    };
    (outbound, control, task)
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut frames: mpsc::Receiver<Frame>,
    mut control: mpsc::Receiver<Control>,
) {
    let mut control_open = true;
    loop {
        let message = tokio::select! {
            biased;
            c = control.recv(), if control_open => match c {
                Some(Control::Ping) => Message::ping(Vec::new()),
                Some(Control::Close { code, reason }) => {
                    let _ = sink.send(Message::close_with(code, reason)).await;
                    break;
                }
                None => {
                    control_open = false;
                    continue;
                }
            },
            f = frames.recv() => match f {
                Some(Frame { message, permit }) => {
                    let closing = message.is_close();
                    if sink.send(message).await.is_err() {
                        return;
                    }
                    // Only now, with the frame on the socket, does its budget come back.
                    drop(permit);
                    if closing {
                        break;
                    }
                    continue;
                }
                None => break,
            },
        };
        if sink.send(message).await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
