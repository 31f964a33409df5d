//! Groups: encryption to many members with one seal per message.
//!
//! [`sender_key`] holds the sans-IO sender-key crypto (Signal-style), a sibling of the 1:1
//! session code in [`crate::session`], not part of it.

pub mod sender_key;
