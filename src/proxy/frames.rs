//! Frame I/O for the forwarder: whole multipart messages in and out of a socket without
//! waiting, replies to clients through the ROUTER, and the sockets' liveness options.

use crate::config::ProxySettings;
use std::time::Duration;
use zmq::{Message, Socket};

/// The bytes of a one-frame reply; `None` for a multipart one.
pub fn single(reply: &[Message]) -> Option<Vec<u8>> {
    match reply {
        [frame] => Some(frame.to_vec()),
        _ => None,
    }
}

/// Receives one whole multipart message without waiting; `None` when there is none.
pub fn recv(socket: &Socket) -> zmq::Result<Option<Vec<Message>>> {
    let mut frames = Vec::with_capacity(4);
    loop {
        let mut frame = Message::new();
        // Only the first frame can be missing: the rest of a message arrives with it.
        let flags = if frames.is_empty() { zmq::DONTWAIT } else { 0 };
        match socket.recv(&mut frame, flags) {
            Ok(()) => {}
            Err(zmq::Error::EAGAIN) if frames.is_empty() => return Ok(None),
            Err(e) => return Err(e),
        }
        let more = frame.get_more();
        frames.push(frame);
        if !more {
            return Ok(Some(frames));
        }
    }
}

/// Sends a multipart message without waiting. `Some(frames)` back when the socket could not
/// take it now (its queue is full); once the first frame is accepted the rest always is.
pub fn send(socket: &Socket, frames: Vec<Message>) -> zmq::Result<Option<Vec<Message>>> {
    let last = frames.len() - 1;
    let mut frames = frames.into_iter().enumerate().peekable();
    while let Some((i, frame)) = frames.next() {
        let flags = zmq::DONTWAIT | if i < last { zmq::SNDMORE } else { 0 };
        if i == 0 {
            // Keep a copy of the first frame: a refused send consumes the message.
            let first = Message::from(&frame[..]);
            match socket.send(frame, flags) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => {
                    let mut back = vec![first];
                    back.extend(frames.map(|(_, f)| f));
                    return Ok(Some(back));
                }
                Err(e) => return Err(e),
            }
        } else {
            socket.send(frame, flags)?;
        }
    }
    Ok(None)
}

/// Sends `envelope + reply` to a client through the ROUTER. `false` when the client is
/// gone (EHOSTUNREACH under ROUTER_MANDATORY) or not reading (its queue is full).
pub fn reply(frontend: &Socket, envelope: Vec<Message>, reply: Vec<Message>) -> zmq::Result<bool> {
    let mut frames = envelope;
    frames.extend(reply);
    match send(frontend, frames) {
        Ok(None) => Ok(true),
        Ok(Some(_)) | Err(zmq::Error::EHOSTUNREACH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Liveness of a peer: it must answer heartbeats, and finish its handshake, within
/// `heartbeat_timeout`. (A frozen agent's kernel still accepts TCP connections; only the
/// handshake timeout notices that nobody is behind them.)
pub fn set_heartbeat(socket: &Socket, settings: &ProxySettings) -> zmq::Result<()> {
    let timeout = millis(settings.heartbeat_timeout);
    socket.set_heartbeat_ivl(millis(settings.heartbeat_interval))?;
    socket.set_heartbeat_timeout(timeout)?;
    socket.set_handshake_ivl(timeout)?;
    // Ask the peer to drop us too if our heartbeats stop (e.g. the proxy froze).
    socket.set_heartbeat_ttl(timeout)
}

pub fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}
