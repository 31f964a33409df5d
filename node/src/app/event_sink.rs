//! Where node events go: to apps listening on the API (as API events, with a message's
//! files), and to the files service (files offered in messages, and sent messages with files
//! that relays hold).

use tokenim_store::Store;
use tokio::sync::broadcast;

use super::views;
use crate::event::{EventSink, NodeEvent};
use crate::files::FileNotice;

/// Depth of the API's event broadcast; a subscriber further behind is told it lagged.
pub(super) const EVENT_BUFFER: usize = 1024;

/// Offered files waiting for the files service to look at them; beyond, an offer waits for
/// an app to ask for the file.
pub(super) const OFFER_BUFFER: usize = 1024;

/// Node events become API events as they are emitted, while an app listens; offered files go
/// to the files service.
pub(super) struct ApiEvents {
    pub(super) api: broadcast::Sender<tokenim_api::types::Event>,
    pub(super) offers: tokio::sync::mpsc::Sender<FileNotice>,
    pub(super) store: Store,
}

impl EventSink for ApiEvents {
    fn emit(&self, event: NodeEvent) {
        match &event {
            NodeEvent::FileOffered(id) => {
                let _ = self.offers.try_send(FileNotice::Offered(*id));
                return;
            }
            // Left at the recipient's relays: so are its files, if any.
            NodeEvent::MessageState(m)
                if m.state == tokenim_store::MessageState::Stored
                    && m.direction == tokenim_store::Direction::Outgoing
                    && !m.group =>
            {
                let _ = self.offers.try_send(FileNotice::Stored {
                    message: m.id,
                    to: m.to,
                });
            }
            _ => {}
        }
        if self.api.receiver_count() > 0
            && let Some(mut ev) = views::event(&event)
        {
            if let tokenim_api::types::Event::Message { message } = &mut ev
                && matches!(event, NodeEvent::Message(_))
            {
                *message = views::with_files(&self.store, message.clone());
            }
            let _ = self.api.send(ev);
        }
    }

    fn listening(&self) -> bool {
        self.api.receiver_count() > 0
    }
}
