//! `Envelope::decode_checked` on arbitrary bytes: never panics, and what it accepts is
//! self-consistent and re-encodes to an equal envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tokenim_crypto::{BUCKETS, Envelope, message_id};

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::decode_checked(data) {
        assert_eq!(env.id(), message_id(&env.ciphertext));
        assert!(BUCKETS.contains(&env.ciphertext.len()));
        env.mailbox().expect("checked mailbox");
        let again = Envelope::decode_checked(&env.encode_to_vec()).expect("re-encoding decodes");
        assert_eq!(again, env);
    }
});
