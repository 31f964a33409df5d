//! API token records as the store keeps them (the secret only as its SHA-256 hash).

use tokenim_api::{Scope, ServiceError, ServiceResult, TokenRecord};
use tokenim_store::Store;

use super::errors::store_error as store_err;

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

pub(super) fn lookup(store: &Store, id: &str) -> ServiceResult<Option<TokenRecord>> {
    Ok(store
        .get_token(id)
        .map_err(store_err)?
        .map(token_from_store))
}

pub(super) fn create(store: &Store, record: &TokenRecord) -> ServiceResult<()> {
    if store.get_token(&record.id).map_err(store_err)?.is_some() {
        return Err(ServiceError::Conflict("token id already exists".into()));
    }
    store.put_token(&token_to_store(record)).map_err(store_err)
}

pub(super) fn list(store: &Store) -> ServiceResult<Vec<TokenRecord>> {
    Ok(store
        .list_tokens()
        .map_err(store_err)?
        .into_iter()
        .map(token_from_store)
        .collect())
}

pub(super) fn revoke(store: &Store, id: &str) -> ServiceResult<()> {
    if store.delete_token(id).map_err(store_err)? {
        Ok(())
    } else {
        Err(ServiceError::NotFound(format!("token {id}")))
    }
}
