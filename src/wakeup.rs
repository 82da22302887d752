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

/// A [`WakeSender`] with a bound on the messages waiting: a sender never blocks, and a full
/// queue gives the message back. The receiving thread calls [`Backlog::taken`] for each
/// message it takes off.
pub struct BoundedSender<T> {
    tx: WakeSender<T>,
    backlog: Backlog,
    capacity: usize,
}

impl<T> Clone for BoundedSender<T> {
    fn clone(&self) -> Self {
        BoundedSender {
            tx: self.tx.clone(),
            backlog: self.backlog.clone(),
            capacity: self.capacity,
        }
    }
}

/// How many messages of a [`BoundedSender`] wait.
#[derive(Clone, Default)]
pub struct Backlog(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Backlog {
    /// One message was taken off the queue.
    pub fn taken(&self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl<T> BoundedSender<T> {
    /// Bounds `tx` at `capacity` messages; the [`Backlog`] is for the receiving thread.
    pub fn new(tx: WakeSender<T>, capacity: usize) -> (BoundedSender<T>, Backlog) {
        let backlog = Backlog::default();
        let sender = BoundedSender {
            tx,
            backlog: backlog.clone(),
            capacity,
        };
        (sender, backlog)
    }

    /// Queues `message`; gives it back when `capacity` messages wait already. (A thread
    /// that is gone takes the message with it.)
    pub fn offer(&self, message: T) -> Result<(), T> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.backlog.0.fetch_add(1, SeqCst) >= self.capacity {
            self.backlog.taken();
            return Err(message);
        }
        if !self.tx.send(message) {
            self.backlog.taken();
        }
        Ok(())
    }
}

/// What a worker thread's queue carries: work, or the order to stop.
pub enum Job<T> {
    Work(Box<T>),
    Stop,
}

/// The producers' end of a worker's bounded queue: they offer work; only the worker's owner
/// sends [`Job::Stop`], on the queue's [`WakeSender`].
pub struct WorkSender<T>(BoundedSender<Job<T>>);

impl<T> Clone for WorkSender<T> {
    fn clone(&self) -> Self {
        WorkSender(self.0.clone())
    }
}

impl<T> WorkSender<T> {
    /// Bounds `tx` at `capacity` jobs; the [`Backlog`] is for the worker.
    pub fn new(tx: WakeSender<Job<T>>, capacity: usize) -> (WorkSender<T>, Backlog) {
        let (sender, backlog) = BoundedSender::new(tx, capacity);
        (WorkSender(sender), backlog)
    }

    /// Queues `work`; gives it back when the queue is full.
    pub fn offer(&self, work: T) -> Result<(), Box<T>> {
        self.0
            .offer(Job::Work(Box::new(work)))
            .map_err(|job| match job {
                Job::Work(w) => w,
                Job::Stop => unreachable!("only work is offered"),
            })
    }
}
