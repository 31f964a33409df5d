//! Invite links: an admin signs a `tokenim-group:` URI (expiry, use count, its own card as
//! where to send the join); whoever holds it signs a join and sends it there; that member
//! applies it, welcomes the joiner and tells the others. Following a link is the joiner's
//! consent to the group, so its welcome is taken from a member who is not a contact.

use tokenim_crypto::InnerKind;
use tokenim_crypto::group::Invite;

use crate::delivery::Delivery;
use crate::delivery::error::DeliveryError;
use crate::delivery::ids::IdentityKey;

impl Delivery {
    /// A signed invite link to `group` (admins and the owner).
    pub(in crate::delivery) async fn create_invite(
        &mut self,
        group: [u8; 32],
        expires_at: u64,
        max_uses: u32,
    ) -> Result<String, DeliveryError> {
        self.first_device_only()?;
        let card = self.my_card().await?;
        let g = self
            .groups
            .get(&group)
            .ok_or_else(|| DeliveryError::NotFound(format!("group {}", hex::encode(group))))?;
        let invite = g
            .log
            .create_invite_with_contact(&self.me, expires_at, max_uses, &card)
            .map_err(|e| DeliveryError::NotAllowed(e.to_string()))?;
        Ok(invite.to_uri())
    }

    /// Follows an invite link: sends a signed join to the member it names; the group arrives
    /// with that member's welcome.
    pub(in crate::delivery) async fn join_group(
        &mut self,
        uri: String,
    ) -> Result<[u8; 32], DeliveryError> {
        self.first_device_only()?;
        let now = self.clock.now_secs();
        let invite = Invite::from_uri(&uri, now)
            .map_err(|e| DeliveryError::Invalid(format!("invite link: {e}")))?;
        let id = invite.group().0;
        if self.groups.get(&id).is_some() {
            return Ok(id);
        }
        let card = super::super::parse_stored_card(invite.contact())
            .map_err(|e| DeliveryError::InvalidCard(format!("invite link's card: {e}")))?;
        if card.identity.identity_key != invite.inviter() {
            return Err(DeliveryError::Invalid(
                "invite link names another member".into(),
            ));
        }
        let join = invite
            .join(&self.me, now)
            .map_err(|e| DeliveryError::Invalid(e.to_string()))?;
        let mine = self.my_card().await?;
        self.groups.expect_welcome(id, card.clone());
        let inner = super::group::control(
            InnerKind::GroupChange,
            join.to_bytes(),
            &mine,
            self.clock.now_ms(),
        );
        self.queue_control(&card, &inner)?;
        tracing::debug!(inviter = %IdentityKey(invite.inviter()), "join sent");
        Ok(id)
    }
}
