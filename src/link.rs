//! A link to the orchestrator (and the reverse deliverer's to legacy): a DEALER
//! that refuses to queue for a peer it is not connected to (`ZMQ_IMMEDIATE`, so an outage shows at the first
//! send), with heartbeats to notice one that froze; requests and replies as
//! `["", body]`. The deliverer, the shadow reader, the primary writer and the backfill's
//! sender each own one, on their own thread.

use serde_json::Value;

/// A DEALER connected to `endpoint`.
///
/// # Errors
/// The socket cannot be created or the endpoint is invalid.
pub fn connect(ctx: &zmq::Context, endpoint: &str) -> zmq::Result<zmq::Socket> {
    let socket = ctx.socket(zmq::DEALER)?;
    socket.set_linger(0)?;
    socket.set_immediate(true)?;
    socket.set_heartbeat_ivl(1_000)?;
    socket.set_heartbeat_timeout(3_000)?;
    socket.connect(endpoint)?;
    Ok(socket)
}

/// Sends one request without waiting.
///
/// # Errors
/// `EAGAIN` when there is no connection (or its queue is full); any other ZMQ error.
pub fn send(socket: &zmq::Socket, body: &[u8]) -> zmq::Result<()> {
    socket.send("", zmq::SNDMORE | zmq::DONTWAIT)?;
    socket.send(body, zmq::DONTWAIT)
}

/// Every answer waiting on the socket: `Ok((request_id, reply))`, or `Err(())` for one that
/// is not JSON (it cannot be matched with its request). An answer that names no request id
/// is left out. A receive failure is logged (with the agent and the thread's `role`) and
/// ends the round.
pub fn answers(
    socket: &zmq::Socket,
    agent: &str,
    role: &'static str,
) -> Vec<Result<(String, Value), ()>> {
    let mut out = Vec::new();
    loop {
        match receive(socket) {
            Ok(None) => return out,
            Ok(Some(Err(()))) => out.push(Err(())),
            Ok(Some(Ok(reply))) => {
                if let Some(rid) = reply.get("request_id").and_then(Value::as_str) {
                    out.push(Ok((rid.to_owned(), reply)));
                }
            }
            Err(e) => {
                tracing::error!(agent, role, "receiving answers: {e}");
                return out;
            }
        }
    }
}

/// One reply, if one is waiting: `Some(Ok(json))`, or `Some(Err(()))` for one that is not
/// JSON.
fn receive(socket: &zmq::Socket) -> zmq::Result<Option<Result<Value, ()>>> {
    let frames = match socket.recv_multipart(zmq::DONTWAIT) {
        Ok(frames) => frames,
        Err(zmq::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    };
    let parsed = frames
        .last()
        .and_then(|body| serde_json::from_slice::<Value>(body).ok());
    Ok(Some(parsed.ok_or(())))
}

/// What woke a thread sleeping in [`wait`].
pub struct Ready {
    /// Answers are waiting on the socket.
    pub replies: bool,
    /// Messages are waiting on the wake pipe.
    pub woken: bool,
}

/// Sleeps until the socket has answers, the wake pipe `wake` is readable, or `until`
/// passes (never, without it). A poll failure is logged (with the agent and the thread's
/// `role`) and reported as nothing ready, after a short pause so that a persistent one
/// cannot spin the thread.
pub fn wait(
    socket: &zmq::Socket,
    wake: std::os::fd::RawFd,
    until: Option<std::time::Instant>,
    agent: &str,
    role: &'static str,
) -> Ready {
    let timeout = until.map_or(-1, |d| {
        d.saturating_duration_since(std::time::Instant::now())
            .as_millis() as i64
            + 1
    });
    let mut items = [
        socket.as_poll_item(zmq::POLLIN),
        zmq::PollItem::from_fd(wake, zmq::POLLIN),
    ];
    match zmq::poll(&mut items, timeout) {
        Ok(_) | Err(zmq::Error::EINTR) => Ready {
            replies: items[0].is_readable(),
            woken: items[1].is_readable(),
        },
        Err(e) => {
            tracing::error!(agent, role, "polling the orchestrator socket: {e}");
            std::thread::sleep(std::time::Duration::from_millis(100));
            Ready {
                replies: false,
                woken: false,
            }
        }
    }
}
