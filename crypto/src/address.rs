//! User addresses: bech32m (BIP-350) with human-readable part `tim`, of the 32-byte Ed25519
//! identity key, e.g. `tim1...` (62 characters).
//!
//! Why bech32m: its checksum detects every error of up to 4 characters in strings this short, so
//! a typo gives an error and never another valid address; and it is case-insensitive and
//! free of look-alike characters (1, b, i, o).

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::{CheckedHrpstring, UncheckedHrpstring};
use bech32::{Bech32m, Hrp};

use crate::error::{CryptoError, Result};

/// The address human-readable part.
pub const ADDRESS_HRP: &str = "tim";

/// A user address: the identity key, shown as bech32m text.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Ord, PartialOrd)]
pub struct Address([u8; 32]);

impl Address {
    /// The address of an Ed25519 identity key.
    pub fn from_identity_key(k: [u8; 32]) -> Self {
        Address(k)
    }

    /// The Ed25519 identity key this address encodes.
    pub fn identity_key(&self) -> [u8; 32] {
        self.0
    }
}

fn hrp() -> Hrp {
    Hrp::parse_unchecked(ADDRESS_HRP)
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        bech32::encode_lower_to_fmt::<Bech32m, _>(f, hrp(), &self.0).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Address {
    type Err = CryptoError;

    fn from_str(s: &str) -> Result<Self> {
        let unchecked =
            UncheckedHrpstring::new(s).map_err(|e| CryptoError::AddressMalformed(e.to_string()))?;
        let found = unchecked.hrp();
        if found != hrp() {
            return Err(CryptoError::AddressPrefix {
                found: found.to_lowercase(),
            });
        }
        if unchecked.validate_checksum::<Bech32m>().is_err() {
            return Err(CryptoError::AddressChecksum);
        }
        let checked = CheckedHrpstring::new::<Bech32m>(s)
            .map_err(|e| CryptoError::AddressMalformed(e.to_string()))?;
        // 32 bytes take 52 characters (260 bits): the 4 spare bits must be zero, otherwise two
        // strings would name the same key.
        let data_chars = checked.data_part_ascii_no_checksum().len();
        let bytes: Vec<u8> = checked.byte_iter().collect();
        if bytes.len() != 32 || data_chars != 52 {
            return Err(CryptoError::AddressLength { found: bytes.len() });
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes);
        let canonical = Address(key);
        if !canonical.to_string().eq_ignore_ascii_case(s) {
            return Err(CryptoError::AddressMalformed(
                "non-zero padding bits".into(),
            ));
        }
        Ok(canonical)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_case() {
        let a = Address::from_identity_key([3; 32]);
        let s = a.to_string();
        assert!(s.starts_with("tim1"));
        assert_eq!(s.len(), 62);
        assert_eq!(s.parse::<Address>().unwrap(), a);
        assert_eq!(s.to_uppercase().parse::<Address>().unwrap(), a);
        assert_eq!(format!("{a:?}"), s);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), a);
    }

    #[test]
    fn distinct_errors() {
        let a = Address::from_identity_key([3; 32]).to_string();
        // wrong prefix (valid bech32m for another hrp)
        let other = bech32::encode::<Bech32m>(Hrp::parse("bc").unwrap(), &[3; 32]).unwrap();
        assert!(matches!(
            other.parse::<Address>(),
            Err(CryptoError::AddressPrefix { found }) if found == "bc"
        ));
        // wrong length
        let short = bech32::encode::<Bech32m>(hrp(), &[3; 20]).unwrap();
        assert!(matches!(
            short.parse::<Address>(),
            Err(CryptoError::AddressLength { found: 20 })
        ));
        // bech32 (not bech32m) checksum
        let old = bech32::encode::<bech32::Bech32>(hrp(), &[3; 32]).unwrap();
        assert!(matches!(
            old.parse::<Address>(),
            Err(CryptoError::AddressChecksum)
        ));
        // typo
        let mut t = a.clone().into_bytes();
        t[10] = if t[10] == b'q' { b'p' } else { b'q' };
        assert!(matches!(
            String::from_utf8(t).unwrap().parse::<Address>(),
            Err(CryptoError::AddressChecksum)
        ));
        // garbage
        assert!(matches!(
            "hello world".parse::<Address>(),
            Err(CryptoError::AddressMalformed(_))
        ));
        assert!(matches!(
            "".parse::<Address>(),
            Err(CryptoError::AddressMalformed(_))
        ));
    }
}
