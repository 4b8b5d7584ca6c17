//! Acknowledgements both ways: [`AckSender`] answers a client's event exactly
//! once; [`PendingAcks`] tracks the server's own emits that wait for the
//! client's answer, failing them on timeout or disconnect so nothing leaks.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::oneshot;

use super::packet;
use hubbub_engineio::{Frame, Session};

/// A client's answer to an event the server emitted with an ack.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    /// The ack's arguments (with binary placeholders).
    pub args: Vec<Value>,
    /// Binary attachments.
    pub binary: Vec<Bytes>,
}

/// Why an awaited ack did not come.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// No answer within the timeout.
    #[error("ack timed out")]
    Timeout,
    /// The socket disconnected first.
    #[error("socket disconnected before the ack")]
    Disconnected,
    /// The event could not be queued (slow or closed client).
    #[error("event could not be sent")]
    NotSent,
}

/// Answers one client event that asked for an ack. Consumed by sending, so a
/// client gets at most one answer per id.
#[derive(Debug)]
pub struct AckSender {
    session: Arc<Session>,
    nsp: Arc<str>,
    id: u64,
}

impl AckSender {
    pub(crate) fn new(session: Arc<Session>, nsp: Arc<str>, id: u64) -> Self {
        AckSender { session, nsp, id }
    }

    /// The ack id the client chose.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Sends the ack with JSON arguments.
    pub fn send(self, args: &[Value]) {
        self.send_binary(args, Vec::new());
    }

    /// Sends the ack with arguments referencing binary attachments.
    pub fn send_binary(self, args: &[Value], binary: Vec<Bytes>) {
        let kind = packet::ack_type(&binary);
        let text = packet::encode_message(kind, binary.len(), &self.nsp, Some(self.id), Some(args));
        let frames =
            std::iter::once(Frame::Text(text.into())).chain(binary.into_iter().map(Frame::Binary));
        let frames: Vec<Frame> = frames.collect();
        let _ = self.session.send_all(frames.into_iter());
    }
}

/// Acks the server waits for on one socket.
#[derive(Debug, Default)]
pub(crate) struct PendingAcks {
    next_id: u64,
    waiting: HashMap<u64, oneshot::Sender<AckResponse>>,
}

impl PendingAcks {
    /// Registers a new ack id.
    pub(crate) fn register(&mut self) -> (u64, oneshot::Receiver<AckResponse>) {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        self.waiting.insert(id, tx);
        (id, rx)
    }

    /// Delivers a client's ack; false when nobody waits for that id.
    pub(crate) fn resolve(&mut self, id: u64, response: AckResponse) -> bool {
        match self.waiting.remove(&id) {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }

    /// Forgets an id whose waiter gave up.
    pub(crate) fn forget(&mut self, id: u64) {
        self.waiting.remove(&id);
    }

    /// Fails every waiter (the socket disconnected).
    pub(crate) fn clear(&mut self) {
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketType;

    #[tokio::test]
    async fn acks_resolve_once_and_fail_on_clear() {
        let mut acks = PendingAcks::default();
        let (id, rx) = acks.register();
        let (id2, rx2) = acks.register();
        assert_ne!(id, id2);
        let resp = AckResponse {
            args: vec![Value::from(1)],
            binary: vec![],
        };
        assert!(acks.resolve(id, resp.clone()));
        assert!(!acks.resolve(id, resp.clone()));
        assert_eq!(rx.await.unwrap(), resp);
        acks.clear();
        assert!(rx2.await.is_err());
        assert_eq!(PacketType::Ack as u8, 3);
    }
}
