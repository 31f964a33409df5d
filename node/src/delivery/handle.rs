//! The cloneable handle to the delivery task: commands over a bounded channel, answers over
//! oneshots.

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use libp2p::PeerId;
use tokenim_crypto::DeviceList;
use tokenim_store::{ContactRecord, MessageRecord};
use tokio::sync::{mpsc, oneshot};

use super::devices::HistoryScope;
use super::error::DeliveryError;
use super::groups::GroupEdit;
use super::ids::{IdentityKey, MessageId};
use super::requests::Consent;
use crate::mailbox::Ingest;

#[derive(Debug)]
pub(super) enum Msg {
    Send {
        to: IdentityKey,
        body: String,
        attachments: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<MessageRecord, DeliveryError>>,
    },
    MarkRead {
        id: MessageId,
        reply: oneshot::Sender<Result<MessageRecord, DeliveryError>>,
    },
    Consent {
        peer: IdentityKey,
        consent: Consent,
        reply: oneshot::Sender<Result<Option<ContactRecord>, DeliveryError>>,
    },
    MyCard {
        reply: oneshot::Sender<Result<String, DeliveryError>>,
    },
    CreateGroup {
        name: String,
        members: Vec<IdentityKey>,
        reply: oneshot::Sender<Result<[u8; 32], DeliveryError>>,
    },
    ChangeGroup {
        group: [u8; 32],
        edit: GroupEdit,
        reply: oneshot::Sender<Result<(), DeliveryError>>,
    },
    CreateInvite {
        group: [u8; 32],
        expires_at: u64,
        max_uses: u32,
        reply: oneshot::Sender<Result<String, DeliveryError>>,
    },
    JoinGroup {
        uri: String,
        reply: oneshot::Sender<Result<[u8; 32], DeliveryError>>,
    },
    SendGroup {
        group: [u8; 32],
        body: String,
        attachments: Vec<Vec<u8>>,
        reply: oneshot::Sender<Result<MessageRecord, DeliveryError>>,
    },
    Devices {
        reply: oneshot::Sender<Result<DeviceList, DeliveryError>>,
    },
    LinkDevice {
        ttl_secs: u64,
        history: HistoryScope,
        reply: oneshot::Sender<Result<(String, u64), DeliveryError>>,
    },
    JoinAccount {
        uri: String,
        name: String,
        reply: oneshot::Sender<Result<DeviceList, DeliveryError>>,
    },
    RevokeDevice {
        device: [u8; 32],
        reply: oneshot::Sender<Result<DeviceList, DeliveryError>>,
    },
    /// A page fetched from a home relay's mailbox; the reply says which envelopes to ack.
    Ingest {
        relay: PeerId,
        envelopes: Vec<Vec<u8>>,
        reply: oneshot::Sender<Vec<bool>>,
    },
}

/// Sends, marks read and hands out this node's card; cheap to clone. The delivery task ends
/// when the last handle is gone.
#[derive(Debug, Clone)]
pub struct DeliveryHandle {
    pub(super) tx: mpsc::Sender<Msg>,
}

impl DeliveryHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, DeliveryError>>) -> Msg,
    ) -> Result<T, DeliveryError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| DeliveryError::ShuttingDown)?;
        rx.await.map_err(|_| DeliveryError::ShuttingDown)?
    }

    /// Seals a text message to a contact and queues it; answered once it is stored.
    pub async fn send(
        &self,
        to: IdentityKey,
        body: String,
    ) -> Result<MessageRecord, DeliveryError> {
        self.send_with(to, body, Vec::new()).await
    }

    /// A text with files: each attachment an encoded manifest of an upload.
    pub async fn send_with(
        &self,
        to: IdentityKey,
        body: String,
        attachments: Vec<Vec<u8>>,
    ) -> Result<MessageRecord, DeliveryError> {
        self.call(|reply| Msg::Send {
            to,
            body,
            attachments,
            reply,
        })
        .await
    }

    pub async fn mark_read(&self, id: MessageId) -> Result<MessageRecord, DeliveryError> {
        self.call(|reply| Msg::MarkRead { id, reply }).await
    }

    /// Carries out the user's decision about a peer (a message request, a contact, a blocked
    /// peer); the peer's record as it now stands (`None` when it was forgotten).
    pub async fn consent(
        &self,
        peer: IdentityKey,
        consent: Consent,
    ) -> Result<Option<ContactRecord>, DeliveryError> {
        self.call(|reply| Msg::Consent {
            peer,
            consent,
            reply,
        })
        .await
    }

    /// Creates a group with these accepted contacts as members; its id.
    pub async fn create_group(
        &self,
        name: String,
        members: Vec<IdentityKey>,
    ) -> Result<[u8; 32], DeliveryError> {
        self.call(|reply| Msg::CreateGroup {
            name,
            members,
            reply,
        })
        .await
    }

    /// Changes a group's membership, name or roles, and tells its members.
    pub async fn change_group(
        &self,
        group: [u8; 32],
        edit: GroupEdit,
    ) -> Result<(), DeliveryError> {
        self.call(|reply| Msg::ChangeGroup { group, edit, reply })
            .await
    }

    /// A signed invite link to a group (`tokenim-group:` URI).
    pub async fn create_invite(
        &self,
        group: [u8; 32],
        expires_at: u64,
        max_uses: u32,
    ) -> Result<String, DeliveryError> {
        self.call(|reply| Msg::CreateInvite {
            group,
            expires_at,
            max_uses,
            reply,
        })
        .await
    }

    /// Follows an invite link: the join goes out; the group arrives with a member's welcome.
    pub async fn join_group(&self, uri: String) -> Result<[u8; 32], DeliveryError> {
        self.call(|reply| Msg::JoinGroup { uri, reply }).await
    }

    /// Seals a text once for a group's members and queues it; answered once it is stored.
    pub async fn send_group(
        &self,
        group: [u8; 32],
        body: String,
    ) -> Result<MessageRecord, DeliveryError> {
        self.send_group_with(group, body, Vec::new()).await
    }

    /// A group text with files.
    pub async fn send_group_with(
        &self,
        group: [u8; 32],
        body: String,
        attachments: Vec<Vec<u8>>,
    ) -> Result<MessageRecord, DeliveryError> {
        self.call(|reply| Msg::SendGroup {
            group,
            body,
            attachments,
            reply,
        })
        .await
    }

    /// This node's current contact card as a `tokenim:` URI.
    pub async fn my_card(&self) -> Result<String, DeliveryError> {
        self.call(|reply| Msg::MyCard { reply }).await
    }

    /// The account's device list (this node alone before any link).
    pub async fn devices(&self) -> Result<DeviceList, DeliveryError> {
        self.call(|reply| Msg::Devices { reply }).await
    }

    /// A one-time `tokenim-link:` URI for a new device, and when it expires (unix seconds).
    pub async fn link_device(
        &self,
        ttl_secs: u64,
        history: HistoryScope,
    ) -> Result<(String, u64), DeliveryError> {
        self.call(|reply| Msg::LinkDevice {
            ttl_secs,
            history,
            reply,
        })
        .await
    }

    /// Joins this node to the account that issued `uri` (a link offer).
    pub async fn join_account(
        &self,
        uri: String,
        name: String,
    ) -> Result<DeviceList, DeliveryError> {
        self.call(|reply| Msg::JoinAccount { uri, name, reply })
            .await
    }

    /// Takes a device off the account (on its first device).
    pub async fn revoke_device(&self, device: [u8; 32]) -> Result<DeviceList, DeliveryError> {
        self.call(|reply| Msg::RevokeDevice { device, reply }).await
    }

    /// For the mailbox layer's drains, without keeping the delivery task alive.
    pub(crate) fn ingest_weak(&self) -> Arc<dyn Ingest> {
        Arc::new(WeakIngest(self.tx.downgrade()))
    }
}

struct WeakIngest(mpsc::WeakSender<Msg>);

impl Ingest for WeakIngest {
    fn ingest(&self, relay: PeerId, envelopes: Vec<Vec<u8>>) -> BoxFuture<'_, Vec<bool>> {
        async move {
            let n = envelopes.len();
            let Some(tx) = self.0.upgrade() else {
                return vec![false; n];
            };
            let (reply, rx) = oneshot::channel();
            let msg = Msg::Ingest {
                relay,
                envelopes,
                reply,
            };
            if tx.send(msg).await.is_err() {
                return vec![false; n];
            }
            rx.await.unwrap_or_else(|_| vec![false; n])
        }
        .boxed()
    }
}
