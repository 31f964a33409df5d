//! `ContactCard::from_uri` on arbitrary text, on arbitrary signed-card bytes, and on arbitrary
//! card bodies inside a well-formed container: never panics, never accepts an unsigned card.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tokenim_crypto::{ContactCard, pb};

fn uri(bytes: &[u8]) -> String {
    format!("tokenim:{}", URL_SAFE_NO_PAD.encode(bytes))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = ContactCard::from_uri(s, 0);
    }
    let _ = ContactCard::from_uri(&uri(data), 0);
    // A body with a made-up signature reaches the body checks but must never be accepted.
    let signed = pb::SignedContactCard {
        version: 1,
        card: data.to_vec(),
        signature: vec![0; 64],
    };
    assert!(ContactCard::from_uri(&uri(&signed.encode_to_vec()), 0).is_err());
});
