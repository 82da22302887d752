//! Commands from async code to a forwarding thread.
//!
//! The forwarding thread sleeps in `zmq::poll`, which can also watch a plain file
//! descriptor. A command is put on a std channel and then one byte is written to a Unix
//! socket pair whose other end the thread polls, so it wakes at once — and no ZMQ socket
//! ever leaves its thread. Both ends are non-blocking: a full wake pipe only means the
//! thread has wake-ups pending already.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::Duration;

/// What async code can ask of a forwarding thread.
#[derive(Debug)]
pub enum Command {
    /// Stop reading new requests, answer the ones in flight, and exit when none are left
    /// or `grace` has passed, whichever comes first.
    Drain { grace: Duration },
}

/// The sending half, held by the proxy's controller.
pub struct ControlSender {
    tx: Sender<Command>,
    wake: UnixStream,
}

/// The receiving half, owned by the forwarding thread.
pub struct ControlReceiver {
    rx: Receiver<Command>,
    wake: UnixStream,
}

/// A connected pair.
///
/// # Errors
/// When the OS cannot create a socket pair (descriptor limits).
pub fn channel() -> std::io::Result<(ControlSender, ControlReceiver)> {
    let (a, b) = UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    let (tx, rx) = mpsc::channel();
    Ok((
        ControlSender { tx, wake: a },
        ControlReceiver { rx, wake: b },
    ))
}

impl ControlSender {
    /// Queues `command` and wakes the thread. Returns `false` if the thread is gone.
    pub fn send(&self, command: Command) -> bool {
        if self.tx.send(command).is_err() {
            return false;
        }
        match (&self.wake).write(&[1]) {
            Ok(_) => true,
            // The pipe is full of earlier wake-ups: the thread will wake anyway.
            Err(e) if e.kind() == ErrorKind::WouldBlock => true,
            Err(_) => false,
        }
    }
}

impl ControlReceiver {
    /// The descriptor to poll for readability.
    pub fn fd(&self) -> RawFd {
        self.wake.as_raw_fd()
    }

    /// Takes every queued command (clearing pending wake-ups first, so none is missed).
    pub fn drain(&self) -> Vec<Command> {
        let mut buf = [0u8; 64];
        while matches!((&self.wake).read(&mut buf), Ok(n) if n > 0) {}
        self.rx.try_iter().collect()
    }
}
