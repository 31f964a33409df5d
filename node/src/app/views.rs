//! Conversions from records and node events to the local API's views and events.

use tokenim_api::types::{self as api, Event, SyncDirection};
use tokenim_crypto::Address;
use tokenim_store::{Direction, MemberState, MessageRecord, MessageState};

use crate::delivery::IdentityKey;
use crate::event::NodeEvent;

pub(crate) fn address_of(identity_key: &[u8; 32]) -> String {
    IdentityKey(*identity_key).address()
}

pub(crate) fn state(s: MessageState) -> api::MessageState {
    match s {
        MessageState::Queued | MessageState::Sent => api::MessageState::Queued,
        MessageState::Stored => api::MessageState::Stored,
        MessageState::Delivered => api::MessageState::Delivered,
        MessageState::Read => api::MessageState::Read,
        MessageState::Failed => api::MessageState::Failed,
        MessageState::Received => api::MessageState::Received,
    }
}

pub(crate) fn message(m: &MessageRecord) -> api::MessageView {
    let incoming = m.direction == Direction::Incoming;
    api::MessageView {
        id: hex::encode(m.id),
        direction: if incoming {
            api::Direction::Incoming
        } else {
            api::Direction::Outgoing
        },
        from: address_of(&m.from),
        to: if m.group && !incoming {
            hex::encode(m.to)
        } else {
            address_of(&m.to)
        },
        group: m.group.then(|| hex::encode(m.conversation)),
        body: m.body.clone(),
        state: state(m.state),
        sent_at: m.sent_at_ms,
        received_at: incoming.then_some(m.received_at_ms),
        read_at: (m.state == MessageState::Read).then_some(m.updated_at_ms),
        stored_by: m.relays,
        reached: (m.group && !incoming).then_some(m.reached),
        delivered_to: (m.group && !incoming).then_some(m.delivered_to),
        read_by: (m.group && !incoming).then_some(m.read_by),
        attachments: Vec::new(),
    }
}

/// `view` with the files its message carries.
pub(crate) fn with_files(
    store: &tokenim_store::Store,
    mut view: api::MessageView,
) -> api::MessageView {
    let mut id = [0u8; 16];
    if hex::decode_to_slice(&view.id, &mut id).is_ok()
        && let Ok(files) = store.files_of_message(&id)
    {
        view.attachments = files.iter().map(file).collect();
    }
    view
}

pub(crate) fn file(f: &tokenim_store::FileRecord) -> api::FileView {
    api::FileView {
        id: hex::encode(f.id),
        name: f.name.clone(),
        mime: f.mime.clone(),
        size: f.size,
        sha256: hex::encode(f.sha256),
        state: f.state.as_str().to_owned(),
        direction: if f.outgoing {
            api::Direction::Outgoing
        } else {
            api::Direction::Incoming
        },
        done_bytes: crate::files::Files::done_bytes(f),
        from: (!f.outgoing).then(|| address_of(&f.peer)),
        message: f.message.map(hex::encode),
        error: Some(f.error.clone()).filter(|e| !e.is_empty()),
    }
}

/// Each member's state of a sent group message.
pub(crate) fn members(m: &MessageRecord, rows: &[MemberState]) -> api::MessageMembers {
    api::MessageMembers {
        id: hex::encode(m.id),
        members: rows
            .iter()
            .map(|r| api::MemberStateView {
                address: address_of(&r.member),
                state: state(r.state),
                at: r.at_ms,
            })
            .collect(),
    }
}

/// The API's form of a node event.
pub(crate) fn event(ev: &NodeEvent) -> Option<Event> {
    Some(match ev {
        NodeEvent::Message(m) => Event::Message {
            message: message(m),
        },
        NodeEvent::MessageRequest(m) => Event::MessageRequest {
            message: message(m),
        },
        NodeEvent::MessageState(m) => Event::MessageState {
            id: hex::encode(m.id),
            state: state(m.state),
            stored_by: m.relays,
            reached: (m.group && m.direction == Direction::Outgoing).then_some(m.reached),
            delivered_to: (m.group && m.direction == Direction::Outgoing).then_some(m.delivered_to),
            read_by: (m.group && m.direction == Direction::Outgoing).then_some(m.read_by),
            at: m.updated_at_ms,
        },
        NodeEvent::PeerConnected(peer) => Event::PeerConnected {
            peer_id: peer.to_string(),
        },
        NodeEvent::PeerDisconnected(peer) => Event::PeerDisconnected {
            peer_id: peer.to_string(),
        },
        NodeEvent::GroupUpdated(id) => Event::GroupUpdated {
            group: hex::encode(id),
        },
        NodeEvent::DeviceLinked(d) => Event::DeviceLinked {
            device: hex::encode(d),
        },
        NodeEvent::DeviceRevoked(d) => Event::DeviceRevoked {
            device: hex::encode(d),
        },
        NodeEvent::SyncProgress {
            device,
            done,
            total,
            receiving,
        } => Event::SyncProgress {
            device: hex::encode(device),
            direction: if *receiving {
                SyncDirection::Receiving
            } else {
                SyncDirection::Sending
            },
            done: *done,
            total: *total,
        },
        NodeEvent::MailboxSynced { relay, drained } => Event::MailboxSynced {
            relay_peer_id: relay.to_string(),
            drained: *drained,
        },
        NodeEvent::FileOffered(_) => return None,
        NodeEvent::FileProgress { id, done, total } => Event::FileProgress {
            id: hex::encode(id),
            done: *done,
            total: *total,
        },
        NodeEvent::FileCompleted(id) => Event::FileCompleted {
            id: hex::encode(id),
        },
        NodeEvent::FileFailed { id, error } => Event::FileFailed {
            id: hex::encode(id),
            error: error.clone(),
        },
    })
}

pub(crate) fn home_relay(s: &crate::mailbox::HomeRelayStatus) -> api::HomeRelayView {
    api::HomeRelayView {
        addr: s.addr.clone(),
        peer_id: s.peer.to_string(),
        source: if s.from_config { "config" } else { "api" }.to_owned(),
        registered: s.registered,
        last_sync_at: s.last_sync_ms,
        last_error: s.last_error.clone(),
    }
}

pub(crate) fn parse_address(text: &str) -> Result<Address, tokenim_api::ServiceError> {
    text.trim()
        .parse::<Address>()
        .map_err(|e| tokenim_api::ServiceError::InvalidAddress(e.to_string()))
}

/// A `next_cursor` an app sent back; `bad_request` when it is not one.
pub(crate) fn parse_cursor(
    cursor: Option<&str>,
) -> Result<Option<tokenim_store::Cursor>, tokenim_api::ServiceError> {
    cursor
        .map(|c| {
            c.parse()
                .map_err(|_| tokenim_api::ServiceError::BadRequest("invalid cursor".into()))
        })
        .transpose()
}
