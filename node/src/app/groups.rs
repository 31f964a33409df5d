//! Groups as the local API sees them: views built from the stored logs; creating a group and
//! sending to it go through the delivery core, which owns the sender keys.

use tokenim_api::ServiceError;
use tokenim_api::types::{
    GroupEdit as ApiEdit, GroupMemberView, GroupView, InviteView, JoinView, MessagePage,
    MessageQuery, MessageView,
};
use tokenim_crypto::Identity;
use tokenim_crypto::group::{GroupId, GroupLog, Role};
use tokenim_store::{GroupRecord, Store};

use super::contacts::Contacts;
use super::errors::store_error as store_err;
use super::views;
use crate::delivery::{DeliveryHandle, GroupEdit, IdentityKey};

type ServiceResult<T> = Result<T, ServiceError>;

/// The parts of the service that groups need.
pub(super) struct Groups<'a> {
    pub(super) store: &'a Store,
    pub(super) delivery: &'a DeliveryHandle,
    pub(super) identity: &'a Identity,
    pub(super) contacts: Contacts<'a>,
}

fn parse_id(id: &str) -> ServiceResult<[u8; 32]> {
    id.trim()
        .parse::<GroupId>()
        .map(|g| g.0)
        .map_err(|_| ServiceError::NotFound(format!("group {id}")))
}

impl Groups<'_> {
    fn record(&self, id: &str) -> ServiceResult<GroupRecord> {
        self.store
            .get_group(&parse_id(id)?)
            .map_err(store_err)?
            .ok_or_else(|| ServiceError::NotFound(format!("group {id}")))
    }

    fn view(&self, r: &GroupRecord) -> ServiceResult<GroupView> {
        let log = GroupLog::from_bytes(&r.log)
            .map_err(|e| ServiceError::Internal(format!("stored group log: {e}")))?;
        let me = crate::delivery::account_key(self.store, self.identity.public().identity_key);
        let members = log
            .members()
            .into_iter()
            .map(|(key, role)| {
                let name = self
                    .store
                    .get_contact(&key)
                    .ok()
                    .flatten()
                    .and_then(|c| c.name);
                GroupMemberView {
                    address: views::address_of(&key),
                    role: role.as_str().to_owned(),
                    name,
                }
            })
            .collect();
        Ok(GroupView {
            id: hex::encode(r.id),
            name: log.name().to_owned(),
            members,
            role: log.role_of(&me).map_or("none", |r| r.as_str()).to_owned(),
        })
    }

    pub(super) async fn create_group(
        &self,
        name: String,
        members: Vec<String>,
    ) -> ServiceResult<GroupView> {
        let mut keys = Vec::new();
        for m in &members {
            let c = self.contacts.resolve(m)?;
            if c.identity_key == self.identity.public().identity_key {
                return Err(ServiceError::BadRequest(
                    "the creator is a member already".into(),
                ));
            }
            if !keys.contains(&IdentityKey(c.identity_key)) {
                keys.push(IdentityKey(c.identity_key));
            }
        }
        let id = self.delivery.create_group(name, keys).await?;
        self.view(&self.record(&hex::encode(id))?)
    }

    pub(super) async fn change_group(
        &self,
        id: String,
        edit: ApiEdit,
    ) -> ServiceResult<Option<GroupView>> {
        let group = self.record(&id)?.id;
        let key = |a: &str| -> ServiceResult<IdentityKey> {
            Ok(IdentityKey(views::parse_address(a)?.identity_key()))
        };
        let edit = match edit {
            ApiEdit::Add { member } => {
                GroupEdit::Add(IdentityKey(self.contacts.resolve(&member)?.identity_key))
            }
            ApiEdit::Remove { member } => GroupEdit::Remove(key(&member)?),
            ApiEdit::SetRole { member, role } => GroupEdit::SetRole(
                key(&member)?,
                role.parse::<Role>().map_err(|_| {
                    ServiceError::BadRequest("`role` is member, admin or owner".into())
                })?,
            ),
            ApiEdit::Rename { name } => GroupEdit::Rename(name),
            ApiEdit::Leave => GroupEdit::Leave,
        };
        self.delivery.change_group(group, edit).await?;
        match self.store.get_group(&group).map_err(store_err)? {
            Some(r) => Ok(Some(self.view(&r)?)),
            None => Ok(None),
        }
    }

    pub(super) async fn create_invite(
        &self,
        id: String,
        expires_in_secs: u64,
        max_uses: u32,
    ) -> ServiceResult<InviteView> {
        let group = self.record(&id)?.id;
        let expires_at = crate::time::now_secs() + expires_in_secs;
        let uri = self
            .delivery
            .create_invite(group, expires_at, max_uses)
            .await?;
        Ok(InviteView {
            uri,
            expires_at: expires_at * 1000,
        })
    }

    pub(super) async fn join(&self, invite: String) -> ServiceResult<JoinView> {
        let group = self.delivery.join_group(invite).await?;
        Ok(JoinView {
            group: hex::encode(group),
        })
    }

    pub(super) async fn list_groups(&self) -> ServiceResult<Vec<GroupView>> {
        let records = self.store.list_groups().map_err(store_err)?;
        records.iter().map(|r| self.view(r)).collect()
    }

    pub(super) async fn get_group(&self, id: String) -> ServiceResult<GroupView> {
        self.view(&self.record(&id)?)
    }

    pub(super) fn id_of(&self, id: &str) -> ServiceResult<[u8; 32]> {
        Ok(self.record(id)?.id)
    }

    pub(super) async fn send_group_message(
        &self,
        id: String,
        body: String,
    ) -> ServiceResult<MessageView> {
        let group = self.record(&id)?.id;
        let record = self.delivery.send_group(group, body).await?;
        Ok(views::message(&record))
    }

    pub(super) async fn list_group_messages(
        &self,
        id: String,
        query: MessageQuery,
    ) -> ServiceResult<MessagePage> {
        let group = self.record(&id)?.id;
        let cursor = views::parse_cursor(query.cursor.as_deref())?;
        let (messages, next) = self
            .store
            .list_messages(Some(&group), query.limit as usize, cursor.as_ref())
            .map_err(store_err)?;
        Ok(MessagePage {
            messages: messages
                .iter()
                .map(|m| views::with_files(self.store, views::message(m)))
                .collect(),
            next_cursor: next.map(|c| c.to_string()),
        })
    }
}
