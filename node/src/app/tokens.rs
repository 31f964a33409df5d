//! API token records as the store keeps them (the secret only as its SHA-256 hash).

use tokenim_api::{Scope, TokenRecord};

pub(crate) fn token_to_store(t: &TokenRecord) -> tokenim_store::TokenRecord {
    let mut secret_hash = [0u8; 32];
    // Our own hex from `hash_secret`; a malformed one would simply never verify.
    let _ = hex::decode_to_slice(&t.secret_hash, &mut secret_hash);
    tokenim_store::TokenRecord {
        id: t.id.clone(),
        name: t.name.clone(),
        scopes: t.scopes.iter().map(|s| s.as_str().to_string()).collect(),
        secret_hash,
        created_at: t.created_at,
    }
}

pub(crate) fn token_from_store(t: tokenim_store::TokenRecord) -> TokenRecord {
    TokenRecord {
        id: t.id,
        name: t.name,
        scopes: t
            .scopes
            .iter()
            .filter_map(|s| s.parse::<Scope>().ok())
            .collect(),
        secret_hash: hex::encode(t.secret_hash),
        created_at: t.created_at,
    }
}
