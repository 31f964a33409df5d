//! The node's overview views for the API: conversations, peers, relay stats.

use tokenim_api::types::{ConversationView, MailboxUsageView, PeerRole, PeerView, RelayStats};
use tokenim_api::{ServiceError, ServiceResult};
use tokenim_store::ContactState;

use super::errors::store_error as store_err;
use super::service::Service;
use super::views;
use crate::files::Files;
use crate::time::now_ms;

impl Service {
    pub(super) async fn conversations_view(&self) -> ServiceResult<Vec<ConversationView>> {
        let contacts = self.store.list_contacts().map_err(store_err)?;
        let mut out = Vec::new();
        for c in contacts
            .into_iter()
            .filter(|c| c.state == ContactState::Accepted)
        {
            let (last, _) = self
                .store
                .list_messages(Some(&c.identity_key), 1, None)
                .map_err(store_err)?;
            let unread = self.unread(&c.identity_key)?;
            let view = self.contacts().contact_view(&c);
            out.push(ConversationView {
                peer: view.address,
                name: view.name,
                display_name: view.display_name,
                last_message: last.first().map(views::message),
                unread,
            });
        }
        out.sort_by_key(|c| {
            std::cmp::Reverse(
                c.last_message
                    .as_ref()
                    .map_or(0, |m| m.received_at.unwrap_or(m.sent_at)),
            )
        });
        Ok(out)
    }

    pub(super) async fn peers_view(&self) -> ServiceResult<Vec<PeerView>> {
        let info = self
            .net
            .info()
            .await
            .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
        Ok(info
            .connected
            .into_iter()
            .map(|(peer, addrs)| PeerView {
                peer_id: peer.to_string(),
                addrs: addrs.iter().map(ToString::to_string).collect(),
                role: PeerRole::Unknown,
                user_address: None,
                connected_at: now_ms(),
            })
            .collect())
    }

    pub(super) async fn relay_stats_view(&self) -> ServiceResult<RelayStats> {
        if !self.is_relay {
            return Err(ServiceError::NotFound("this node is not a relay".into()));
        }
        let stats = self.store.mailbox_stats().map_err(store_err)?;
        let (held_files, held_file_bytes) = self
            .files
            .as_ref()
            .and_then(Files::held_stats)
            .unwrap_or_default();
        Ok(RelayStats {
            held_files,
            held_file_bytes,
            mailboxes: stats.mailboxes,
            stored_messages: stats.stored_messages,
            stored_bytes: stats.stored_bytes,
            disk_bytes: self.store.disk_usage().map_err(store_err)?,
            per_mailbox: stats
                .per_mailbox
                .into_iter()
                .map(|(id, u)| MailboxUsageView {
                    mailbox: hex::encode(id),
                    messages: u.messages,
                    bytes: u.bytes,
                })
                .collect(),
        })
    }
}
