use thiserror::Error;

/// Errors of the node library. The binary wraps them in `anyhow` with context.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("already initialised: {0} exists (refusing to overwrite an identity)")]
    AlreadyInitialised(String),
    #[error("not initialised: {0} is missing; run `tokenim init` first")]
    NotInitialised(String),
    #[error("data directory {path}: {reason}")]
    DataDir { path: String, reason: String },
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error(transparent)]
    Crypto(#[from] tokenim_crypto::CryptoError),
    #[error(transparent)]
    Store(#[from] tokenim_store::StoreError),
    #[error("network: {0}")]
    Network(String),
    #[error("the node is shutting down")]
    ShuttingDown,
}
