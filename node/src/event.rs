//! What the node tells its embedder: new messages, state changes, peers, mailbox syncs.
//! Every layer may emit these; the app layer turns them into the local API's events.

use libp2p::PeerId;
use tokenim_store::MessageRecord;

/// Capacity of the event broadcast; a subscriber further behind is told it lagged.
pub(crate) const EVENT_BUFFER: usize = 1024;

#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A message entered a conversation: received, or accepted from a local app.
    Message(MessageRecord),
    /// A sent message's delivery state moved forward, or a received one was read.
    MessageState(MessageRecord),
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// This node's mailbox at a home relay was drained.
    MailboxSynced {
        relay: PeerId,
        drained: u64,
    },
}
