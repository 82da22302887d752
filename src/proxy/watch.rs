//! Connection watching, off the forwarding thread.
//!
//! libzmq reports connection events through a monitor socket. Polling two more sockets on
//! the forwarding thread would cost every request a little (zmq_poll's work grows with its
//! item count, measured by `make bench`), and the events only feed metrics. So each agent
//! has a watcher thread owning the two monitor PAIR sockets. It connects them *before* the
//! forwarder starts monitoring (inproc allows connect before bind), so no early event is
//! lost, and it ends when both monitors report `MONITOR_STOPPED` (the forwarder closed its
//! sockets) or when told to.

use crate::metrics::{AgentMetrics, ConnectionEvent};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use tracing::{info, warn};
use zmq::{Socket, SocketEvent};

/// The events each side reports (plus `MONITOR_STOPPED`, to know when to end).
pub const FRONTEND_EVENTS: i32 = SocketEvent::ACCEPTED as i32
    | SocketEvent::DISCONNECTED as i32
    | SocketEvent::MONITOR_STOPPED as i32;
/// The link counts as up on a completed ZMTP handshake, not on TCP connect: the kernel
/// accepts connections for a frozen (SIGSTOPped) agent, which would then look alive.
pub const BACKEND_EVENTS: i32 = SocketEvent::HANDSHAKE_SUCCEEDED as i32
    | SocketEvent::DISCONNECTED as i32
    | SocketEvent::MONITOR_STOPPED as i32;

/// The inproc endpoints the forwarder's sockets must be monitored on.
pub struct MonitorEndpoints {
    pub frontend: String,
    pub backend: String,
}

/// A running watcher thread.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Watcher {
    /// Starts the watcher and returns once its sockets are connected.
    ///
    /// # Errors
    /// A socket could not be created or connected, or the thread not spawned.
    pub fn start(
        ctx: &zmq::Context,
        agent: &str,
        metrics: Arc<AgentMetrics>,
    ) -> anyhow::Result<(Watcher, MonitorEndpoints)> {
        let id = unique();
        let endpoints = MonitorEndpoints {
            frontend: format!("inproc://memshift-monitor-{agent}-frontend-{id}"),
            backend: format!("inproc://memshift-monitor-{agent}-backend-{id}"),
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let (ctx, name, flag) = (ctx.clone(), agent.to_owned(), stop.clone());
        let (front, back) = (endpoints.frontend.clone(), endpoints.backend.clone());
        let thread = std::thread::Builder::new()
            .name(format!("zmq-watch-{agent}"))
            .spawn(move || {
                let sockets = pair(&ctx, &front).and_then(|f| Ok((f, pair(&ctx, &back)?)));
                match sockets {
                    Ok((frontend, backend)) => {
                        let _ = ready_tx.send(Ok(()));
                        watch(&name, &frontend, &backend, &metrics, &flag);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })?;
        ready_rx.recv()??;
        Ok((Watcher { stop, thread }, endpoints))
    }

    /// Waits for the thread; call after the forwarder has closed its sockets. Tells the
    /// thread to stop in case a `MONITOR_STOPPED` never came, so this cannot hang.
    pub fn join(self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.thread.join().is_err() {
            warn!("a connection watcher panicked");
        }
    }
}

fn pair(ctx: &zmq::Context, endpoint: &str) -> zmq::Result<Socket> {
    let socket = ctx.socket(zmq::PAIR)?;
    socket.set_linger(0)?;
    socket.connect(endpoint)?;
    Ok(socket)
}

/// How often the stop flag is looked at when no event comes.
const STOP_CHECK_MS: i64 = 200;

fn watch(
    agent: &str,
    frontend: &Socket,
    backend: &Socket,
    metrics: &AgentMetrics,
    stop: &AtomicBool,
) {
    let (mut frontend_open, mut backend_open) = (true, true);
    while (frontend_open || backend_open) && !stop.load(Ordering::Relaxed) {
        let mut items = [
            frontend.as_poll_item(zmq::POLLIN),
            backend.as_poll_item(zmq::POLLIN),
        ];
        match zmq::poll(&mut items, STOP_CHECK_MS) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => {
                warn!(agent, "connection watcher stopped: {e}");
                return;
            }
        }
        let (front_ready, back_ready) = (items[0].is_readable(), items[1].is_readable());
        while front_ready && let Some(event) = recv_event(frontend) {
            match event {
                e if e == SocketEvent::ACCEPTED as u16 => metrics.client_connections.inc(),
                e if e == SocketEvent::DISCONNECTED as u16 => metrics.client_connections.dec(),
                e if e == SocketEvent::MONITOR_STOPPED as u16 => frontend_open = false,
                _ => {}
            }
        }
        while back_ready && let Some(event) = recv_event(backend) {
            match event {
                e if e == SocketEvent::HANDSHAKE_SUCCEEDED as u16 => {
                    info!(agent, "connected to the legacy agent");
                    metrics.connection_event(ConnectionEvent::Connected);
                    metrics.legacy_connected.set(1);
                }
                e if e == SocketEvent::DISCONNECTED as u16 => {
                    warn!(agent, "legacy agent disconnected");
                    metrics.connection_event(ConnectionEvent::Disconnected);
                    metrics.legacy_connected.set(0);
                }
                e if e == SocketEvent::MONITOR_STOPPED as u16 => backend_open = false,
                _ => {}
            }
        }
    }
}

/// The next queued monitor event id, without waiting. A monitor message is
/// `[u16 event id + u32 value, endpoint]`. (Compared as raw numbers: `SocketEvent::from_raw`
/// panics on an event it does not know.)
fn recv_event(monitor: &Socket) -> Option<u16> {
    let head = monitor.recv_bytes(zmq::DONTWAIT).ok()?;
    while monitor.get_rcvmore().unwrap_or(false) {
        let _ = monitor.recv_bytes(0);
    }
    (head.len() >= 2).then(|| u16::from_le_bytes([head[0], head[1]]))
}

/// A process-wide counter, so inproc names never collide (tests run many proxies).
fn unique() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
