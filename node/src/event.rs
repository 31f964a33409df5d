//! What the node tells its embedder: new messages, state changes, peers, mailbox syncs.
//! Every layer emits these into an [`EventSink`] that the app layer provides (it turns them
//! into the local API's events at once, with no task or buffer of its own).

use std::sync::Arc;

use libp2p::PeerId;
use tokenim_store::MessageRecord;

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A message entered a conversation: received, or accepted from a local app.
    Message(MessageRecord),
    /// A group was joined or its membership changed.
    GroupUpdated([u8; 32]),
    /// A stranger wrote: the message is held as a message request until the user decides.
    MessageRequest(MessageRecord),
    /// A sent message's delivery state moved forward, or a received one was read.
    MessageState(MessageRecord),
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// A device joined this account (on the first device: the new one; on a new device: itself).
    DeviceLinked([u8; 32]),
    /// A device was taken off this account's list.
    DeviceRevoked([u8; 32]),
    /// A history hand-off moved on: `done` of `total` messages queued for `device` (on the
    /// first device) or taken from it (`receiving`, on the new device).
    SyncProgress {
        device: [u8; 32],
        done: u32,
        total: u32,
        receiving: bool,
    },
    /// A message brought a file (recorded, not fetched yet).
    FileOffered([u8; 16]),
    /// A download moved on: `done` of `total` bytes are here and checked.
    FileProgress {
        id: [u8; 16],
        done: u64,
        total: u64,
    },
    /// A download finished and the whole file was verified.
    FileCompleted([u8; 16]),
    /// A download gave up.
    FileFailed {
        id: [u8; 16],
        error: String,
    },
    /// This node's mailbox at a home relay was drained.
    MailboxSynced {
        relay: PeerId,
        drained: u64,
    },
}

/// Where node events go. Emitting never blocks.
pub(crate) trait EventSink: Send + Sync + 'static {
    fn emit(&self, event: NodeEvent);
    /// Whether anyone listens: events that cost work to build may be skipped when not.
    fn listening(&self) -> bool;
}

/// A cloneable handle to the node's event sink.
#[derive(Clone)]
pub(crate) struct Events(Arc<dyn EventSink>);

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    pub(crate) fn new(sink: impl EventSink) -> Self {
        Self(Arc::new(sink))
    }

    pub(crate) fn emit(&self, event: NodeEvent) {
        self.0.emit(event);
    }

    pub(crate) fn listening(&self) -> bool {
        self.0.listening()
    }
}

/// Tests listen on a broadcast of the events themselves.
#[cfg(test)]
impl EventSink for tokio::sync::broadcast::Sender<NodeEvent> {
    fn emit(&self, event: NodeEvent) {
        let _ = self.send(event);
    }

    fn listening(&self) -> bool {
        self.receiver_count() > 0
    }
}
