//! Sender keys (in the spirit of Signal's): one encryption per group message, whatever the
//! number of members. Sans-IO like [`crate::session`]: bytes in, bytes out; the caller moves
//! the frames and distributions and persists [`GroupCipher::to_bytes`].
//!
//! # Protocol (the wire format is specified in `proto/tokenim/v1/group_keys.proto`)
//!
//! * Each member has, per group and per **epoch**, a sending chain: a 32-byte chain key
//!   ratcheted once per message (`message_key = HMAC-SHA256(chain, 0x01)`,
//!   `next chain = HMAC-SHA256(chain, 0x02)`) and a fresh Ed25519 signing key pair.
//! * A member hands its chain key (at its current iteration) and the signing public key to each
//!   other member in a [`SenderKeyDistribution`], over the pairwise Noise sessions (the caller
//!   does that, and checks that the session's sender is [`SenderKeyDistribution::sender`] and a
//!   member). A member who joins later gets the current iteration: it cannot read older
//!   messages.
//! * A **group frame** is laid out like a 1:1 transport frame: `0x03 || key_id (16) ||
//!   iteration (u64 BE) || ChaCha20-Poly1305(message key, padded(signature || plaintext))`,
//!   one size bucket long. `key_id` is derived from the group, the sender, the epoch and the
//!   signing public key: it names one sender's epoch to those holding its distribution and
//!   nothing to anyone else (not the group, not the sender). The Ed25519 signature (by the
//!   epoch's signing key, over the key id, iteration, frame length and plaintext) is inside the
//!   encryption. Every member can decrypt and re-encrypt a sender's frames, but only the
//!   sender can sign them: a member cannot forge another member's message.
//! * **Out of order, lost and replayed frames:** a receiver derives the keys of the messages it
//!   skips over and keeps at most [`MAX_SKIPPED_KEYS`] of them per sender epoch (the lowest
//!   evicted first); a frame more than [`MAX_FORWARD`] iterations ahead of its chain is refused.
//!   Each message key is used once: a second frame at the same iteration is a
//!   [`CryptoError::Replay`]; one older than the keys kept is [`CryptoError::SenderKeyTooOld`].
//!   Nothing is changed until a frame has decrypted *and* its signature verified, so a member
//!   holding the chain key cannot burn another sender's message keys with forged frames. The
//!   chain keys met on the walk to a frame far ahead are cached every 64 steps (memory only,
//!   dropped as the chain passes them), so frames forged by whoever saw a clear key id cost
//!   the receiver at most 64 HMAC steps each after the first, not 2,000.
//! * **Removal means removal:** [`GroupCipher::rotate`] starts a new epoch with a fresh random
//!   chain key and signing key (not derived from anything older). After a member is removed,
//!   every remaining member calls [`GroupCipher::forget_member`] and `rotate`, and sends its
//!   new distribution to the remaining members only; frames sealed from then on do not open
//!   with anything the removed member holds. Receivers keep the newest
//!   [`MAX_EPOCHS_PER_SENDER`] epochs of each sender, so frames sealed just before a rotation
//!   still open.
//!
//! # Caller duties
//!
//! * Persist [`GroupCipher::to_bytes`] after every `seal` (**before sending** the frame: a
//!   message key must never be reused after a crash), `open`, `rotate` and
//!   `add_distribution`. The state holds secret keys: store it like the identity secret.
//! * Route frames: [`frame_key_id`] reads a frame's key id and [`GroupCipher::holds_key`] tells
//!   whether a group holds it; a 1:1 transport frame has the same shape, so try the groups
//!   before [`crate::Sessions::open`] (or after it fails with `UnknownSession`).
//! * A member that lost its group state starts over at epoch 0, which the others refuse as
//!   [`CryptoError::StaleSenderKey`] once they hold newer epochs of it: it must be removed and
//!   added again.

mod chain;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use ed25519_dalek::Signature;
use prost::Message as _;
use rand::rngs::ChaCha20Rng;
use rand::{Rng as _, SeedableRng as _, TryRng as _};
use zeroize::{Zeroize, Zeroizing};

use self::chain::{OwnChain, RecvChain, Secret};
use crate::envelope::{LARGEST_BUCKET, bucket_for};
use crate::error::{CryptoError, Result};
use crate::pb;
use crate::session::frame::{self, KIND_TRANSPORT, LEN_PREFIX, TAG_LEN, TRANSPORT_HEADER};
use crate::session::transport;
use crate::sign::{self, CTX_GROUP_FRAME};

/// Length of a sender key id (the clear id of one sender's epoch in a frame header).
pub const KEY_ID_LEN: usize = 16;
/// Skipped message keys kept per sender epoch; the oldest are dropped beyond.
pub const MAX_SKIPPED_KEYS: usize = 2000;
/// How many iterations a frame may be ahead of its chain.
pub const MAX_FORWARD: u32 = 2000;
/// Epochs kept per sender: the newest, and the one before for frames still in flight.
pub const MAX_EPOCHS_PER_SENDER: usize = 2;
/// Senders held per group (a bound against bugs: the caller admits members only).
pub const MAX_SENDERS: usize = 10_000;
const SIGNATURE_LEN: usize = 64;
/// Bytes of a group frame that are not plaintext.
pub const GROUP_FRAME_OVERHEAD: usize = TRANSPORT_HEADER + LEN_PREFIX + SIGNATURE_LEN + TAG_LEN;
/// The largest plaintext [`GroupCipher::seal`] takes.
pub const MAX_GROUP_PLAINTEXT: usize = LARGEST_BUCKET - GROUP_FRAME_OVERHEAD;
const DIST_VERSION: u32 = 1;
const WD: &str = "sender key distribution";

/// One member's sending chain at one epoch, for the other members. Holds a secret (the chain
/// key), wiped on drop; `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SenderKeyDistribution {
    group: [u8; 32],
    sender: [u8; 32],
    epoch: u32,
    iteration: u32,
    chain_key: Secret,
    signing_key: [u8; 32],
}

impl fmt::Debug for SenderKeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SenderKeyDistribution")
            .field("group", &hex::encode(&self.group[..8]))
            .field("sender", &hex::encode(&self.sender[..8]))
            .field("epoch", &self.epoch)
            .field("iteration", &self.iteration)
            .finish_non_exhaustive()
    }
}

impl SenderKeyDistribution {
    /// Encodes `tokenim.v1.SenderKeyDistribution`, to send inside a pairwise session.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut p = pb::SenderKeyDistribution {
            version: DIST_VERSION,
            group: self.group.to_vec(),
            sender: self.sender.to_vec(),
            epoch: self.epoch,
            iteration: self.iteration,
            chain_key: self.chain_key.to_vec(),
            signing_key: self.signing_key.to_vec(),
        };
        let out = Zeroizing::new(p.encode_to_vec());
        p.chain_key.zeroize();
        out
    }

    /// Decodes and checks a distribution (field lengths, a valid signing key, an iteration a
    /// frame can have).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let mut p =
            pb::SenderKeyDistribution::decode(bytes).map_err(|e| CryptoError::malformed(WD, e))?;
        let r = Self::from_pb(&p);
        p.chain_key.zeroize();
        r
    }

    fn from_pb(p: &pb::SenderKeyDistribution) -> Result<Self> {
        if p.version != DIST_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: WD,
                version: p.version,
            });
        }
        if p.iteration == u32::MAX {
            return Err(CryptoError::malformed(WD, "chain exhausted"));
        }
        let d = SenderKeyDistribution {
            group: sign::array(&p.group, WD, "group")?,
            sender: sign::array(&p.sender, WD, "sender")?,
            epoch: p.epoch,
            iteration: p.iteration,
            chain_key: Zeroizing::new(sign::array(&p.chain_key, WD, "chain_key")?),
            signing_key: sign::array(&p.signing_key, WD, "signing_key")?,
        };
        sign::verifying_key(&d.signing_key, "sender signing")?;
        Ok(d)
    }

    /// The member whose chain this is (its identity key).
    pub fn sender(&self) -> [u8; 32] {
        self.sender
    }

    /// The group.
    pub fn group(&self) -> [u8; 32] {
        self.group
    }

    /// The sender's epoch.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The first iteration this distribution can read.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The key id that this sender's frames of this epoch carry.
    pub fn key_id(&self) -> [u8; KEY_ID_LEN] {
        chain::key_id(&self.group, &self.sender, self.epoch, &self.signing_key)
    }
}

/// All sender-key state of one group for the local member: its own sending chain and the
/// chains of the other members it was given.
pub struct GroupCipher {
    group: [u8; 32],
    me: [u8; 32],
    rng: ChaCha20Rng,
    own: OwnChain,
    /// Each sender's chains, ascending epoch, at most [`MAX_EPOCHS_PER_SENDER`].
    senders: HashMap<[u8; 32], Vec<RecvChain>>,
    /// Key id → sender.
    index: HashMap<[u8; KEY_ID_LEN], [u8; 32]>,
}

impl fmt::Debug for GroupCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupCipher")
            .field("group", &hex::encode(&self.group[..8]))
            .field("epoch", &self.own.epoch)
            .field("iteration", &self.own.iteration)
            .field("senders", &self.senders.len())
            .finish_non_exhaustive()
    }
}

fn os_seed() -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::SysRng
        .try_fill_bytes(seed.as_mut())
        .expect("OS random number generator failed");
    seed
}

impl GroupCipher {
    /// A fresh own sending chain (epoch 0) and no other member's; randomness from the OS.
    ///
    /// # Panics
    /// If the OS random number generator fails.
    pub fn new(group: [u8; 32], me: [u8; 32]) -> Self {
        Self::with_seed(group, me, *os_seed())
    }

    /// Deterministic randomness (chain and signing keys) from `seed`: for tests, known-answer
    /// vectors and simulations only. Never in production.
    pub fn with_seed(group: [u8; 32], me: [u8; 32], seed: [u8; 32]) -> Self {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let own = fresh_chain(&mut rng, &group, &me, 0);
        GroupCipher {
            group,
            me,
            rng,
            own,
            senders: HashMap::new(),
            index: HashMap::new(),
        }
    }

    /// The group.
    pub fn group(&self) -> [u8; 32] {
        self.group
    }

    /// The local member's identity key.
    pub fn me(&self) -> [u8; 32] {
        self.me
    }

    /// Our current epoch.
    pub fn epoch(&self) -> u32 {
        self.own.epoch
    }

    /// Members whose chains we hold (any epoch).
    pub fn senders(&self) -> impl Iterator<Item = &[u8; 32]> + '_ {
        self.senders.keys()
    }

    /// Whether frames under `key_id` are for this group (see [`frame_key_id`]).
    pub fn holds_key(&self, key_id: &[u8; KEY_ID_LEN]) -> bool {
        self.index.contains_key(key_id)
    }

    /// Our chain at its current epoch and iteration, for the other members.
    pub fn my_distribution(&self) -> SenderKeyDistribution {
        SenderKeyDistribution {
            group: self.group,
            sender: self.me,
            epoch: self.own.epoch,
            iteration: self.own.iteration,
            chain_key: self.own.chain.clone(),
            signing_key: self.own.signing.verifying_key().to_bytes(),
        }
    }

    /// Every other member's chains as held now, each from its next unread iteration on: for
    /// another device of the local member, so that frames from here on open there too.
    pub fn held_distributions(&self) -> Vec<SenderKeyDistribution> {
        self.senders
            .iter()
            .flat_map(|(sender, chains)| {
                chains.iter().map(|c| SenderKeyDistribution {
                    group: self.group,
                    sender: *sender,
                    epoch: c.epoch,
                    iteration: c.iteration,
                    chain_key: c.chain.clone(),
                    signing_key: c.signing.to_bytes(),
                })
            })
            .collect()
    }

    /// Starts a new epoch: a fresh random chain key and signing key, nothing derived from the
    /// old ones. Send the result to every current member.
    pub fn rotate(&mut self) -> SenderKeyDistribution {
        let epoch = self.own.epoch.saturating_add(1);
        self.own = fresh_chain(&mut self.rng, &self.group, &self.me, epoch);
        self.my_distribution()
    }

    /// Takes a member's chain. The caller has checked that it came over a pairwise session from
    /// `d.sender()` and that the sender is a member. A distribution already held is a no-op; one
    /// for an epoch held under another key replaces it (the sender started over); one older
    /// than every epoch held when [`MAX_EPOCHS_PER_SENDER`] are is refused.
    pub fn add_distribution(&mut self, d: SenderKeyDistribution) -> Result<()> {
        if d.group != self.group {
            return Err(CryptoError::WrongGroup);
        }
        if d.sender == self.me {
            return Err(CryptoError::malformed(WD, "it is our own"));
        }
        let key_id = d.key_id();
        if self.index.contains_key(&key_id) {
            return Ok(());
        }
        let signing = sign::verifying_key(&d.signing_key, "sender signing")?;
        if !self.senders.contains_key(&d.sender) && self.senders.len() >= MAX_SENDERS {
            return Err(CryptoError::TooManySenders);
        }
        let chains = self.senders.entry(d.sender).or_default();
        if let Some(pos) = chains.iter().position(|c| c.epoch == d.epoch) {
            self.index.remove(&chains.remove(pos).key_id);
        } else if chains.len() >= MAX_EPOCHS_PER_SENDER && chains[0].epoch > d.epoch {
            return Err(CryptoError::StaleSenderKey);
        }
        let pos = chains.partition_point(|c| c.epoch < d.epoch);
        chains.insert(
            pos,
            RecvChain {
                epoch: d.epoch,
                key_id,
                signing,
                iteration: d.iteration,
                chain: d.chain_key.clone(),
                floor: d.iteration,
                skipped: BTreeMap::new(),
                checkpoints: BTreeMap::new(),
            },
        );
        self.index.insert(key_id, d.sender);
        while chains.len() > MAX_EPOCHS_PER_SENDER {
            self.index.remove(&chains.remove(0).key_id);
        }
        Ok(())
    }

    /// Drops every chain of `member` (removed from the group): its frames no longer open.
    pub fn forget_member(&mut self, member: &[u8; 32]) {
        for c in self.senders.remove(member).unwrap_or_default() {
            self.index.remove(&c.key_id);
        }
    }

    /// Encrypts and signs `plaintext` once for all members; the frame is exactly one size
    /// bucket long. Persist the state before sending the frame.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>> {
        let frame_len = bucket_for(GROUP_FRAME_OVERHEAD + plaintext.len()).ok_or(
            CryptoError::MessageTooLarge {
                size: plaintext.len(),
                max: MAX_GROUP_PLAINTEXT,
            },
        )?;
        let own = &mut self.own;
        let n = own.iteration;
        if n == u32::MAX {
            // About 4 billion messages in one epoch: rotate.
            return Err(CryptoError::NonceExhausted);
        }
        let signature = sign::sign(
            &own.signing,
            CTX_GROUP_FRAME,
            &[&signed_header(&own.key_id, n, frame_len), plaintext],
        );
        let mut out = Vec::with_capacity(frame_len);
        out.push(KIND_TRANSPORT);
        out.extend_from_slice(&own.key_id);
        out.extend_from_slice(&u64::from(n).to_be_bytes());
        out.extend_from_slice(&((SIGNATURE_LEN + plaintext.len()) as u32).to_be_bytes());
        out.extend_from_slice(&signature);
        out.extend_from_slice(plaintext);
        out.resize(frame_len - TAG_LEN, 0);
        let key = chain::message_key(&own.chain);
        let tag = transport::seal_in_place(&key, u64::from(n), &mut out[TRANSPORT_HEADER..]);
        out.extend_from_slice(&tag);
        own.chain = chain::next_chain(&own.chain);
        own.iteration = n + 1;
        Ok(out)
    }

    /// Decrypts and verifies a group frame; returns its sender and plaintext. The state changes
    /// only when the frame is authentic and new.
    pub fn open(&mut self, frame: &[u8]) -> Result<([u8; 32], Vec<u8>)> {
        let (key_id, n) = parse_header(frame)?;
        let sender = *self
            .index
            .get(&key_id)
            .ok_or(CryptoError::UnknownSenderKey)?;
        let chain = self
            .senders
            .get_mut(&sender)
            .and_then(|cs| cs.iter_mut().find(|c| c.key_id == key_id))
            .ok_or(CryptoError::UnknownSenderKey)?;
        let (key, advance) = chain.key_for(n)?;
        let mut buf = Zeroizing::new(frame[TRANSPORT_HEADER..].to_vec());
        let padded = transport::open_in_place(&key, u64::from(n), &mut buf)?;
        let payload = frame::unpad(padded)?;
        let (signature, plaintext) =
            payload
                .split_first_chunk::<SIGNATURE_LEN>()
                .ok_or(CryptoError::FrameMalformed(
                    "group payload without signature",
                ))?;
        chain
            .signing
            .verify_strict(
                &sign::signing_input(
                    CTX_GROUP_FRAME,
                    &[&signed_header(&key_id, n, frame.len()), plaintext],
                ),
                &Signature::from_bytes(signature),
            )
            .map_err(|_| CryptoError::BadSignature("group frame"))?;
        chain.commit(n, advance);
        Ok((sender, plaintext.to_vec()))
    }

    /// Encodes all state (`tokenim.v1.GroupCipherState`), secrets included: store it like the
    /// identity secret.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        state::encode(self)
    }

    /// Reads what [`GroupCipher::to_bytes`] wrote, checking every bound; fresh randomness
    /// (for later rotations) from the OS.
    ///
    /// # Panics
    /// If the OS random number generator fails.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        state::decode(bytes, *os_seed())
    }
}

/// The key id in a frame's header, to find the group whose [`GroupCipher::holds_key`] it.
/// `None` when the bytes are not shaped like a group (or 1:1 transport) frame.
pub fn frame_key_id(frame: &[u8]) -> Option<[u8; KEY_ID_LEN]> {
    parse_header(frame).ok().map(|(id, _)| id)
}

fn parse_header(frame: &[u8]) -> Result<([u8; KEY_ID_LEN], u32)> {
    let (kind, key_id) = frame::header(frame)?;
    if kind != KIND_TRANSPORT {
        return Err(CryptoError::UnknownFrameKind(kind));
    }
    let mut n = [0u8; 8];
    n.copy_from_slice(&frame[1 + KEY_ID_LEN..TRANSPORT_HEADER]);
    // The last iteration a chain can reach is u32::MAX - 1 (seal refuses beyond).
    let n = u32::try_from(u64::from_be_bytes(n))
        .ok()
        .filter(|&n| n < u32::MAX)
        .ok_or(CryptoError::FrameMalformed("group iteration out of range"))?;
    Ok((key_id, n))
}

/// What the signature covers between its context and the plaintext: key id, iteration (u64
/// BE), frame length (u32 BE).
fn signed_header(key_id: &[u8; KEY_ID_LEN], n: u32, frame_len: usize) -> [u8; KEY_ID_LEN + 12] {
    let mut out = [0u8; KEY_ID_LEN + 12];
    out[..KEY_ID_LEN].copy_from_slice(key_id);
    out[KEY_ID_LEN..KEY_ID_LEN + 8].copy_from_slice(&u64::from(n).to_be_bytes());
    out[KEY_ID_LEN + 8..].copy_from_slice(&(frame_len as u32).to_be_bytes());
    out
}

fn fresh_chain(rng: &mut ChaCha20Rng, group: &[u8; 32], me: &[u8; 32], epoch: u32) -> OwnChain {
    let mut chain = Zeroizing::new([0u8; 32]);
    let mut signing = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(chain.as_mut());
    rng.fill_bytes(signing.as_mut());
    OwnChain::new(group, me, epoch, 0, chain, &signing)
}

#[cfg(test)]
mod tests;
