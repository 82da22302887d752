//! Messages from async code to a thread that sleeps in `zmq::poll`.
//!
//! `zmq::poll` can also watch a plain file descriptor. A message is put on a std channel and
//! then one byte is written to a Unix socket pair whose other end the thread polls, so it
//! wakes at once — and no ZMQ socket ever leaves its thread. Both ends are non-blocking: a
//! full wake pipe only means the thread has wake-ups pending already. The proxy's
//! forwarders receive commands this way, the orchestrator's socket thread its replies.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender};

/// The sending half; cheap to clone, so many tasks can send.
pub struct WakeSender<T> {
    tx: Sender<T>,
    wake: std::sync::Arc<UnixStream>,
}

impl<T> Clone for WakeSender<T> {
    fn clone(&self) -> Self {
        WakeSender {
            tx: self.tx.clone(),
            wake: self.wake.clone(),
        }
    }
}

/// The receiving half, owned by the polling thread.
pub struct WakeReceiver<T> {
    rx: Receiver<T>,
    wake: UnixStream,
}

/// A connected pair.
///
/// # Errors
/// When the OS cannot create a socket pair (descriptor limits).
pub fn channel<T>() -> std::io::Result<(WakeSender<T>, WakeReceiver<T>)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let (tx, rx) = mpsc::channel();
    Ok((
        WakeSender {
            tx,
            wake: std::sync::Arc::new(a),
        },
        WakeReceiver { rx, wake: b },
    ))
}

impl<T> WakeSender<T> {
    /// Queues `message` and wakes the thread. Returns `false` if the thread is gone.
    pub fn send(&self, message: T) -> bool {
        if self.tx.send(message).is_err() {
            return false;
        }
        match (&*self.wake).write(&[1]) {
            Ok(_) => true,
            // The pipe is full of earlier wake-ups: the thread will wake anyway.
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }
}

impl<T> WakeReceiver<T> {
    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Takes every queued message (clearing pending wake-ups first, so none is missed).
    pub fn drain(&self) -> Vec<T> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.rx.try_iter().collect()
    }
}
