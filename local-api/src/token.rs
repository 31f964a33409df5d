//! API tokens: `tim_<id>_<secret>`, scopes, and the hashed record the node stores.
//!
//! The id (8 random bytes, hex) is public and used for lookup; the secret (32 random bytes, hex)
//! is shown once and only `sha256(secret)` is stored, compared in constant time.

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::types::{TokenView, UnixMillis};

pub const TOKEN_PREFIX: &str = "tim_";
pub const TOKEN_ID_BYTES: usize = 8;
pub const TOKEN_SECRET_BYTES: usize = 32;

/// What a token may do. `admin` implies every scope; `read` implies `metrics`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Read identity, contacts, conversations, messages (and mark them read), peers, events.
    Read,
    /// Send messages, add and remove contacts. Shows no message body but those it sends, and no
    /// contact name but those it gives.
    Send,
    /// Only the Prometheus metrics (for scrapers).
    Metrics,
    /// Everything, including token management.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Read, Scope::Send, Scope::Metrics, Scope::Admin];

    /// Whether holding `self` allows an action that needs `needed`.
    pub fn grants(self, needed: Scope) -> bool {
        self == needed || self == Scope::Admin || (self == Scope::Read && needed == Scope::Metrics)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Send => "send",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| format!("unknown scope {s:?} (expected read, send, metrics or admin)"))
    }
}

/// Whether any of `scopes` grants `needed`.
pub fn scopes_grant(scopes: &[Scope], needed: Scope) -> bool {
    scopes.iter().any(|s| s.grants(needed))
}

/// What the node stores per token. `secret_hash` is `hash_secret(secret)`; the secret itself is
/// never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Lowercase hex SHA-256 of the secret part of the token text.
    pub secret_hash: String,
    pub created_at: UnixMillis,
}

impl TokenRecord {
    /// Constant-time check of a presented secret against the stored hash.
    pub fn verify_secret(&self, secret: &str) -> bool {
        let presented = hash_secret(secret);
        bool::from(presented.as_bytes().ct_eq(self.secret_hash.as_bytes()))
    }

    pub fn view(&self) -> TokenView {
        TokenView {
            id: self.id.clone(),
            name: self.name.clone(),
            scopes: self.scopes.clone(),
            created_at: self.created_at,
        }
    }
}

/// The full token text. Debug-prints redacted and is wiped from memory when dropped; call
/// [`TokenText::expose`] to hand it to the user.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenText(Zeroizing<String>);

impl TokenText {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The text itself, for a caller that wipes it in turn (e.g. [`crate::CreatedToken`]).
    pub fn into_exposed(mut self) -> String {
        std::mem::take(&mut *self.0)
    }
}

impl std::fmt::Debug for TokenText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenText(<redacted>)")
    }
}

/// The two parts of a syntactically valid token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedToken<'a> {
    pub id: &'a str,
    pub secret: &'a str,
}

impl std::fmt::Debug for ParsedToken<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParsedToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Split `tim_<16 hex>_<64 hex>` (lowercase hex); `None` if it is not exactly that.
pub fn parse_token(text: &str) -> Option<ParsedToken<'_>> {
    let rest = text.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let is_hex = |s: &str, bytes: usize| {
        s.len() == bytes * 2 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    (is_hex(id, TOKEN_ID_BYTES) && is_hex(secret, TOKEN_SECRET_BYTES))
        .then_some(ParsedToken { id, secret })
}

/// Lowercase hex SHA-256 of the secret text.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new token from the thread CSPRNG, created now.
pub fn generate_token(name: &str, scopes: &[Scope]) -> (TokenText, TokenRecord) {
    generate_token_with(&mut rand::rng(), name, scopes, now_millis())
}

/// [`generate_token`] with an explicit RNG and clock, for tests and reproducible tooling.
/// Scopes are sorted and deduplicated.
pub fn generate_token_with<R: CryptoRng + ?Sized>(
    rng: &mut R,
    name: &str,
    scopes: &[Scope],
    created_at: UnixMillis,
) -> (TokenText, TokenRecord) {
    let mut id = [0u8; TOKEN_ID_BYTES];
    let mut secret = Zeroizing::new([0u8; TOKEN_SECRET_BYTES]);
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut *secret);
    let id = hex::encode(id);
    // Written once into a buffer of the final size, so no copy of the secret is left behind
    // by a reallocation; the buffer is wiped with the `TokenText`.
    let secret_len = 2 * TOKEN_SECRET_BYTES;
    let mut text = Zeroizing::new(String::with_capacity(
        TOKEN_PREFIX.len() + id.len() + 1 + secret_len,
    ));
    text.push_str(TOKEN_PREFIX);
    text.push_str(&id);
    text.push('_');
    for b in secret.iter() {
        for nibble in [b >> 4, b & 0xf] {
            text.push(char::from(b"0123456789abcdef"[usize::from(nibble)]));
        }
    }
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    let record = TokenRecord {
        secret_hash: hash_secret(&text[text.len() - secret_len..]),
        id,
        name: name.to_owned(),
        scopes,
        created_at,
    };
    (TokenText(text), record)
}

pub(crate) fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn seeded() -> rand::rngs::StdRng {
        rand::rngs::StdRng::seed_from_u64(7)
    }

    #[test]
    fn generated_token_parses_and_verifies() {
        let (text, record) = generate_token_with(&mut seeded(), "bot", &[Scope::Send], 5);
        let parsed = parse_token(text.expose()).expect("generated token parses");
        assert_eq!(parsed.id, record.id);
        assert!(record.verify_secret(parsed.secret));
        assert!(!record.verify_secret(&"0".repeat(64)));
        assert_eq!(text.expose().len(), 4 + 16 + 1 + 64);
    }

    #[test]
    fn the_secret_is_the_hex_of_the_random_bytes_in_a_buffer_written_once() {
        let (text, _) = generate_token_with(&mut seeded(), "bot", &[Scope::Send], 5);
        fn fill<R: CryptoRng>(rng: &mut R, buf: &mut [u8]) {
            rng.fill_bytes(buf);
        }
        let mut rng = seeded();
        let (mut id, mut secret) = ([0u8; TOKEN_ID_BYTES], [0u8; TOKEN_SECRET_BYTES]);
        fill(&mut rng, &mut id);
        fill(&mut rng, &mut secret);
        let want = format!("{TOKEN_PREFIX}{}_{}", hex::encode(id), hex::encode(secret));
        assert_eq!(text.expose(), want);
        // Sized exactly: pushing the text never reallocated (which would leave a copy behind).
        assert_eq!(text.0.capacity(), want.len());
        assert_eq!(text.into_exposed(), want);
    }

    #[test]
    fn different_seeds_give_different_tokens() {
        let (a, _) = generate_token_with(&mut seeded(), "a", &[Scope::Read], 0);
        let mut other = rand::rngs::StdRng::seed_from_u64(8);
        let (b, _) = generate_token_with(&mut other, "a", &[Scope::Read], 0);
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let id = "0123456789abcdef";
        let secret = "ab".repeat(32);
        assert!(parse_token(&format!("tim_{id}_{secret}")).is_some());
        for bad in [
            String::new(),
            format!("tok_{id}_{secret}"),
            format!("tim_{id}{secret}"),
            format!("tim_{id}_{secret}0"),
            format!("tim_{}_{secret}", &id[1..]),
            format!("tim_{id}_{}", secret.to_uppercase()),
            format!("tim_{id}_{secret}_x"),
            format!("tim_{id}_{}é", &secret[..62]),
        ] {
            assert!(parse_token(&bad).is_none(), "accepted {bad:?}");
        }
    }

    #[test]
    fn scopes_imply_as_documented() {
        assert!(Scope::Admin.grants(Scope::Send));
        assert!(Scope::Admin.grants(Scope::Metrics));
        assert!(Scope::Read.grants(Scope::Metrics));
        assert!(!Scope::Read.grants(Scope::Send));
        assert!(!Scope::Send.grants(Scope::Read));
        assert!(!Scope::Metrics.grants(Scope::Read));
        assert!(!Scope::Send.grants(Scope::Admin));
        assert_eq!("admin".parse::<Scope>(), Ok(Scope::Admin));
        assert!("root".parse::<Scope>().is_err());
    }

    #[test]
    fn debug_never_shows_secret() {
        let (text, _) = generate_token_with(&mut seeded(), "bot", &[Scope::Send], 5);
        let parsed = parse_token(text.expose()).expect("parses");
        assert!(!format!("{text:?}").contains(parsed.secret));
        assert!(!format!("{parsed:?}").contains(parsed.secret));
    }
}
