//! Local-storage serialisation of a [`GroupCipher`], `tokenim.v1.GroupCipherState`.

use std::collections::{BTreeMap, HashMap};

use prost::Message as _;
use rand::SeedableRng as _;
use rand::rngs::ChaCha20Rng;
use zeroize::{Zeroize, Zeroizing};

use super::chain::{self, OwnChain, RecvChain};
use super::{GroupCipher, MAX_EPOCHS_PER_SENDER, MAX_SENDERS, MAX_SKIPPED_KEYS};
use crate::error::{CryptoError, Result};
use crate::pb;
use crate::sign;

const STATE_VERSION: u32 = 1;
const W: &str = "group cipher state";

pub(super) fn encode(g: &GroupCipher) -> Zeroizing<Vec<u8>> {
    let mut senders: Vec<_> = g.senders.iter().collect();
    // Deterministic bytes for equal state (HashMap order is not).
    senders.sort_by_key(|(k, _)| **k);
    let mut p = pb::GroupCipherState {
        version: STATE_VERSION,
        group: g.group.to_vec(),
        me: g.me.to_vec(),
        own: Some(pb::OwnSenderKeyState {
            epoch: g.own.epoch,
            iteration: g.own.iteration,
            chain_key: g.own.chain.to_vec(),
            signing_secret: g.own.signing.to_bytes().to_vec(),
        }),
        senders: senders
            .into_iter()
            .flat_map(|(sender, chains)| {
                chains.iter().map(|c| pb::SenderKeyState {
                    sender: sender.to_vec(),
                    epoch: c.epoch,
                    iteration: c.iteration,
                    chain_key: c.chain.to_vec(),
                    signing_key: c.signing.to_bytes().to_vec(),
                    floor: c.floor,
                    skipped: c
                        .skipped
                        .iter()
                        .map(|(&iteration, k)| pb::SkippedMessageKey {
                            iteration,
                            key: k.to_vec(),
                        })
                        .collect(),
                })
            })
            .collect(),
    };
    let out = Zeroizing::new(p.encode_to_vec());
    wipe(&mut p);
    out
}

pub(super) fn decode(bytes: &[u8], seed: [u8; 32]) -> Result<GroupCipher> {
    let mut p = pb::GroupCipherState::decode(bytes).map_err(|e| CryptoError::malformed(W, e))?;
    let r = from_pb(&p, seed);
    wipe(&mut p);
    r
}

fn from_pb(p: &pb::GroupCipherState, seed: [u8; 32]) -> Result<GroupCipher> {
    if p.version != STATE_VERSION {
        return Err(CryptoError::UnsupportedVersion {
            what: W,
            version: p.version,
        });
    }
    let group = sign::array(&p.group, W, "group")?;
    let me = sign::array(&p.me, W, "me")?;
    let own = p
        .own
        .as_ref()
        .ok_or_else(|| CryptoError::malformed(W, "missing own chain"))?;
    let signing_secret = Zeroizing::new(sign::array(&own.signing_secret, W, "signing_secret")?);
    let own = OwnChain::new(
        &group,
        &me,
        own.epoch,
        own.iteration,
        Zeroizing::new(sign::array(&own.chain_key, W, "chain_key")?),
        &signing_secret,
    );
    let mut senders: HashMap<[u8; 32], Vec<RecvChain>> = HashMap::new();
    let mut index = HashMap::new();
    for s in &p.senders {
        let sender = sign::array(&s.sender, W, "sender")?;
        if sender == me {
            return Err(CryptoError::malformed(W, "our own chain among the senders"));
        }
        let signing_key = sign::array(&s.signing_key, W, "signing_key")?;
        let c = RecvChain {
            epoch: s.epoch,
            key_id: chain::key_id(&group, &sender, s.epoch, &signing_key),
            signing: sign::verifying_key(&signing_key, "sender signing")?,
            iteration: s.iteration,
            chain: Zeroizing::new(sign::array(&s.chain_key, W, "chain_key")?),
            floor: s.floor,
            skipped: skipped(s)?,
            checkpoints: BTreeMap::new(),
        };
        if index.insert(c.key_id, sender).is_some() {
            return Err(CryptoError::malformed(W, "duplicate sender key"));
        }
        let chains = senders.entry(sender).or_default();
        if chains.iter().any(|o| o.epoch == c.epoch) {
            return Err(CryptoError::malformed(W, "duplicate sender epoch"));
        }
        let pos = chains.partition_point(|o| o.epoch < c.epoch);
        chains.insert(pos, c);
        if chains.len() > MAX_EPOCHS_PER_SENDER {
            return Err(CryptoError::malformed(W, "too many epochs of one sender"));
        }
    }
    if senders.len() > MAX_SENDERS {
        return Err(CryptoError::malformed(W, "too many senders"));
    }
    Ok(GroupCipher {
        group,
        me,
        rng: ChaCha20Rng::from_seed(seed),
        own,
        senders,
        index,
    })
}

/// The skipped keys of one chain: between its floor and its iteration, ascending, bounded.
fn skipped(s: &pb::SenderKeyState) -> Result<BTreeMap<u32, chain::Secret>> {
    if s.floor > s.iteration || s.iteration == u32::MAX {
        return Err(CryptoError::malformed(W, "chain position out of range"));
    }
    if s.skipped.len() > MAX_SKIPPED_KEYS {
        return Err(CryptoError::malformed(W, "too many skipped keys"));
    }
    let mut out = BTreeMap::new();
    for k in &s.skipped {
        if k.iteration < s.floor || k.iteration >= s.iteration {
            return Err(CryptoError::malformed(W, "skipped key out of range"));
        }
        let key = Zeroizing::new(sign::array(&k.key, W, "skipped key")?);
        if out.insert(k.iteration, key).is_some() {
            return Err(CryptoError::malformed(W, "duplicate skipped key"));
        }
    }
    Ok(out)
}

fn wipe(p: &mut pb::GroupCipherState) {
    if let Some(o) = p.own.as_mut() {
        o.chain_key.zeroize();
        o.signing_secret.zeroize();
    }
    for s in &mut p.senders {
        s.chain_key.zeroize();
        for k in &mut s.skipped {
            k.key.zeroize();
        }
    }
}
