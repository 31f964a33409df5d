//! Conversions from store records to the API's views and events.

use libp2p::PeerId;
use tokenim_api::types::{self as api, Event};
use tokenim_crypto::Address;
use tokenim_store::{Direction, MessageRecord, MessageState};

pub fn address_of(identity_key: &[u8; 32]) -> String {
    Address::from_identity_key(*identity_key).to_string()
}

pub fn state(s: MessageState) -> api::MessageState {
    match s {
        MessageState::Queued | MessageState::Sent => api::MessageState::Queued,
        MessageState::Stored => api::MessageState::Stored,
        MessageState::Delivered => api::MessageState::Delivered,
        MessageState::Read => api::MessageState::Read,
        MessageState::Failed => api::MessageState::Failed,
        MessageState::Received => api::MessageState::Received,
    }
}

pub fn message(m: &MessageRecord) -> api::MessageView {
    let incoming = m.direction == Direction::Incoming;
    api::MessageView {
        id: hex::encode(m.id),
        direction: if incoming {
            api::Direction::Incoming
        } else {
            api::Direction::Outgoing
        },
        from: address_of(&m.from),
        to: address_of(&m.to),
        body: m.body.clone(),
        state: state(m.state),
        sent_at: m.sent_at_ms,
        received_at: incoming.then_some(m.received_at_ms),
        read_at: (m.state == MessageState::Read).then_some(m.updated_at_ms),
        stored_by: m.relays,
    }
}

pub fn message_event(m: &MessageRecord) -> Event {
    Event::Message {
        message: message(m),
    }
}

pub fn state_event(m: &MessageRecord) -> Event {
    Event::MessageState {
        id: hex::encode(m.id),
        state: state(m.state),
        stored_by: m.relays,
        at: m.updated_at_ms,
    }
}

pub fn peer_event(peer: &PeerId, connected: bool) -> Event {
    let peer_id = peer.to_string();
    if connected {
        Event::PeerConnected { peer_id }
    } else {
        Event::PeerDisconnected { peer_id }
    }
}
