use thiserror::Error;
use tokenim_store::StoreError;

/// Why the delivery core refused a request. The app layer alone maps these to API errors.
#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error("unknown contact: {0}")]
    UnknownContact(String),
    /// The peer is a message request or blocked: only contacts are written to.
    #[error("{0}")]
    NotAContact(String),
    /// The group's rules do not let this node make that change.
    #[error("{0}")]
    NotAllowed(String),
    #[error("invalid contact card: {0}")]
    InvalidCard(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("message too large: {size} bytes, at most {max}")]
    MessageTooLarge { size: usize, max: usize },
    /// Too many undelivered messages; a retry after some have gone out will succeed.
    #[error("outbox is full ({queued} undelivered messages); retry later")]
    OutboxFull { queued: usize },
    #[error("{0}")]
    Invalid(String),
    /// A node this request needed could not be reached.
    #[error("unreachable: {0}")]
    Unreachable(String),
    #[error("the node is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("internal: {0}")]
    Internal(String),
}

impl DeliveryError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}
