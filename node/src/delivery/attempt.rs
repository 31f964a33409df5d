//! What a delivery attempt reports back to the delivery task.

use tokenim_crypto::CustodyReceipt;

use super::ids::{IdentityKey, OutboxId};
use crate::net::DeliverError;
use crate::net::wire;

pub(super) struct Attempt {
    pub(super) outbox_id: OutboxId,
    pub(super) peer: IdentityKey,
    pub(super) outcome: Outcome,
}

pub(super) enum Outcome {
    /// The recipient's node answered (or could not be reached and it has no relays).
    Direct(Result<wire::Response, DeliverError>),
    /// The recipient's node was unreachable; these home relays signed for the envelope.
    Relayed(Vec<CustodyReceipt>),
}
