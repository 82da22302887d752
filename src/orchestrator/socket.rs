//! The orchestrator's ZMQ socket: a ROUTER on its own thread, so any number of REQ and
//! DEALER clients are served at once.
//!
//! The thread only moves frames. A request goes to the async dispatcher through a bounded
//! channel; when that channel is full the thread answers `rate_limit_exceeded` itself,
//! so overload is shed at once instead of queueing without bound. Replies come back through
//! a [`wakeup`](crate::wakeup) channel that wakes the thread's `zmq::poll`. Oversized and
//! multipart requests are answered here too, without being parsed.

use crate::api::{self, Action, ApiError, ErrorCode};
use crate::config::OrchestratorSettings;
use crate::metrics::OrchestratorMetrics;
use crate::wakeup::WakeReceiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{info, warn};
use zmq::Socket;

/// Messages larger than this are refused by libzmq itself (the peer is disconnected), so a
/// hostile client cannot make the process buffer gigabytes. Requests between
/// `max_request_bytes` and this get a proper `invalid_request` reply.
const HARD_MAX_MESSAGE: i64 = 64 * 1024 * 1024;
/// Messages taken per wake-up, so replies are not starved by a flood of requests.
const BATCH: usize = 256;

/// One message's frames and the sender's address.
type Received = (Vec<Vec<u8>>, Option<String>);

/// A request on its way to a handler.
pub struct Incoming {
    /// The routing frames (identity, and the empty delimiter if the client sent one).
    pub envelope: Vec<Vec<u8>>,
    pub body: Vec<u8>,
    pub received: Instant,
    /// The client's address, for the access log.
    pub peer: Option<String>,
}

/// What the async side sends to the socket thread.
pub enum ToSocket {
    Reply {
        envelope: Vec<Vec<u8>>,
        body: Vec<u8>,
    },
    /// Stop reading requests; exit once every handed-off request is answered or `grace`
    /// has passed.
    Drain { grace: Duration },
}

pub struct SocketThread {
    socket: Socket,
    control: WakeReceiver<ToSocket>,
    requests: Option<mpsc::Sender<Incoming>>,
    max_request_bytes: usize,
    metrics: Arc<OrchestratorMetrics>,
    /// Handed to the dispatcher and not answered yet.
    in_flight: usize,
    drain_deadline: Option<Instant>,
}

impl SocketThread {
    /// Creates and binds the socket; returns the bound endpoint.
    ///
    /// # Errors
    /// The bind failed (port taken, bad address).
    pub fn open(
        ctx: &zmq::Context,
        settings: &OrchestratorSettings,
        control: WakeReceiver<ToSocket>,
        requests: mpsc::Sender<Incoming>,
        metrics: Arc<OrchestratorMetrics>,
    ) -> zmq::Result<(SocketThread, String)> {
        let socket = ctx.socket(zmq::ROUTER)?;
        socket.set_linger(1000)?;
        socket.set_router_mandatory(true)?;
        socket.set_maxmsgsize(HARD_MAX_MESSAGE)?;
        socket.set_heartbeat_ivl(5000)?;
        socket.set_heartbeat_timeout(15_000)?;
        socket.set_sndhwm(100_000)?;
        socket.bind(settings.listen.as_str())?;
        let endpoint = socket
            .get_last_endpoint()?
            .unwrap_or_else(|_| settings.listen.to_string());
        let thread = SocketThread {
            socket,
            control,
            requests: Some(requests),
            max_request_bytes: settings.max_request_bytes,
            metrics,
            in_flight: 0,
            drain_deadline: None,
        };
        Ok((thread, endpoint))
    }

    /// Serves until a drain completes. The socket closes when `self` drops, on this thread.
    ///
    /// # Errors
    /// An unexpected ZMQ failure.
    pub fn run(mut self) -> zmq::Result<()> {
        loop {
            let now = Instant::now();
            if let Some(deadline) = self.drain_deadline
                && (self.in_flight == 0 || now >= deadline)
            {
                if self.in_flight > 0 {
                    warn!(
                        unanswered = self.in_flight,
                        "orchestrator: grace period over with requests unanswered"
                    );
                }
                return Ok(());
            }
            let accepting = self.drain_deadline.is_none();
            let timeout = self.drain_deadline.map_or(-1, |d| {
                d.saturating_duration_since(now).as_millis() as i64 + 1
            });
            let mut items = [
                self.socket.as_poll_item(if accepting {
                    zmq::POLLIN
                } else {
                    zmq::PollEvents::empty()
                }),
                zmq::PollItem::from_fd(self.control.fd(), zmq::POLLIN),
            ];
            match zmq::poll(&mut items, timeout) {
                Ok(_) => {}
                Err(zmq::Error::EINTR) => continue,
                Err(e) => return Err(e),
            }
            let (readable, control) = (items[0].is_readable(), items[1].is_readable());
            if control {
                self.on_control()?;
            }
            if readable && accepting {
                self.on_requests()?;
            }
        }
    }

    fn on_control(&mut self) -> zmq::Result<()> {
        for message in self.control.drain() {
            match message {
                ToSocket::Reply { envelope, body } => {
                    self.in_flight = self.in_flight.saturating_sub(1);
                    self.metrics.in_flight.dec();
                    self.send(&envelope, &body)?;
                }
                ToSocket::Drain { grace } => {
                    info!(in_flight = self.in_flight, "orchestrator: draining");
                    // Dropping the sender lets the dispatcher finish once the queue is empty.
                    self.requests = None;
                    self.drain_deadline = Some(Instant::now() + grace);
                }
            }
        }
        Ok(())
    }

    fn on_requests(&mut self) -> zmq::Result<()> {
        for _ in 0..BATCH {
            let Some((frames, peer)) = self.recv()? else {
                return Ok(());
            };
            self.on_request(frames, peer)?;
        }
        Ok(())
    }

    /// One whole message, or `None` when none is waiting.
    fn recv(&self) -> zmq::Result<Option<Received>> {
        let mut first = match self.socket.recv_msg(zmq::DONTWAIT) {
            Ok(m) => m,
            Err(zmq::Error::EAGAIN) => return Ok(None),
            Err(e) => return Err(e),
        };
        let peer = first.gets("Peer-Address").map(str::to_owned);
        let mut more = first.get_more();
        let mut frames = vec![first.to_vec()];
        while more {
            let m = self.socket.recv_msg(0)?;
            more = m.get_more();
            frames.push(m.to_vec());
        }
        Ok(Some((frames, peer)))
    }

    fn on_request(&mut self, mut frames: Vec<Vec<u8>>, peer: Option<String>) -> zmq::Result<()> {
        let received = Instant::now();
        // The envelope is everything up to the empty delimiter; a DEALER that sends no
        // delimiter has only its identity as envelope and is answered the same way.
        let split = frames
            .iter()
            .skip(1)
            .position(Vec::is_empty)
            .map_or(1, |i| i + 2);
        let body_frames = frames.split_off(split.min(frames.len()));
        let envelope = frames;
        let body = match <[Vec<u8>; 1]>::try_from(body_frames) {
            Ok([body]) => body,
            Err(_) => {
                let err = ApiError::invalid("a request is exactly one frame of JSON");
                return self.refuse(&envelope, &api::Echo::default(), &err, received);
            }
        };
        if body.len() > self.max_request_bytes {
            let err = ApiError::invalid(format!(
                "request of {} bytes is larger than the limit of {} bytes",
                body.len(),
                self.max_request_bytes
            ))
            .with("max_request_bytes", self.max_request_bytes);
            return self.refuse(&envelope, &api::Echo::default(), &err, received);
        }
        let Some(requests) = &self.requests else {
            return Ok(());
        };
        let incoming = Incoming {
            envelope,
            body,
            received,
            peer,
        };
        match requests.try_send(incoming) {
            Ok(()) => {
                self.in_flight += 1;
                self.metrics.in_flight.inc();
                Ok(())
            }
            Err(TrySendError::Full(incoming) | TrySendError::Closed(incoming)) => {
                let echo = api::peek_echo(&incoming.body);
                let err = ApiError::new(
                    ErrorCode::RateLimitExceeded,
                    "the orchestrator is at capacity; retry later",
                )
                .with("retryable", true);
                self.refuse(&incoming.envelope, &echo, &err, received)
            }
        }
    }

    /// Answers a request here, without a handler.
    fn refuse(
        &self,
        envelope: &[Vec<u8>],
        echo: &api::Echo,
        err: &ApiError,
        received: Instant,
    ) -> zmq::Result<()> {
        let action = echo.action.as_str().and_then(Action::from_name);
        self.metrics
            .request(action, Some(err.code), received.elapsed().as_secs_f64());
        self.send(envelope, &api::error(echo, err))
    }

    fn send(&self, envelope: &[Vec<u8>], body: &[u8]) -> zmq::Result<()> {
        let mut result = Ok(());
        for frame in envelope {
            result = self.socket.send(&frame[..], zmq::SNDMORE | zmq::DONTWAIT);
            if result.is_err() {
                break;
            }
        }
        if result.is_ok() {
            result = self.socket.send(body, zmq::DONTWAIT);
        }
        match result {
            Ok(()) => Ok(()),
            // The client has gone (EHOSTUNREACH with ROUTER_MANDATORY) or its queue is full.
            Err(zmq::Error::EHOSTUNREACH | zmq::Error::EAGAIN) => {
                self.metrics.undeliverable.inc();
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
