//! End-to-end Noise sessions, sans-IO: push frames in with [`Sessions::open`], get frames out
//! of [`Sessions::seal`]; the caller moves the bytes and persists [`Sessions::peer_state`].
//!
//! # Protocol
//!
//! * Pattern `Noise_IK_25519_ChaChaPoly_BLAKE2s`, prologue `tokenim/v1`. snow runs the
//!   handshake (ring for ChaChaPoly, snow's default resolver for X25519 and BLAKE2s); transport
//!   encryption is done here so that its state can be serialised.
//! * **Sessions are unidirectional** (store-and-forward with offline peers): data from A to B
//!   only travels on sessions A initiated; B writes to A on sessions B initiated.
//! * **Init** (IK message 1) carries a message, so every message sent before B answers is
//!   self-contained and readable by B whenever it comes online. Each init uses a fresh
//!   ephemeral key and two fresh random 16-byte ids: `init_id`, in clear in the frame header
//!   (and repeated inside, binding it), and `reply_id`, inside the encryption only. Its payload
//!   (`HandshakePayload`) holds the sender's [`PublicIdentity`] — the sender appears only
//!   inside the encryption — and must match the Noise static key that sent it.
//! * **Response** (IK message 2, empty padded payload): B writes it as soon as it reads an
//!   init ([`Opened::reply`]; the node sends it back to A like any message) and keeps the
//!   receive key. Its header carries the init's `reply_id`, not its `init_id`: a relay or
//!   gossip peer that sees both frames (B's mailbox and A's) cannot pair them by id, so it
//!   cannot link the two mailboxes that way. A finds the pending init by `reply_id`, keeps the
//!   send key and uses **transport** frames from then on. A keeps at most `max_pending`
//!   outstanding inits per peer, in memory only (snow's `HandshakeState` cannot be serialised:
//!   losing them on restart costs another handshake, never a message). A response for an
//!   unknown init is an error ([`CryptoError::UnknownSession`]), never a panic; a response
//!   older than the current send session is ignored.
//! * B keeps at most `max_inbound` receive sessions per peer, ordered by the initiator's
//!   `(created_at, sequence)`; beyond that, the oldest that has carried no transport frame is
//!   dropped, else the oldest (forward secrecy). A burst of inits therefore never pushes out
//!   the session in use, whose frames may still be queued behind them in a mailbox. An init older than all of
//!   a full set is delivered but gets no session and no response, so a replayed old init can
//!   never displace live sessions; a replay of an init whose session is held is rejected
//!   ([`CryptoError::Replay`]).
//! * **Transport**: raw Noise split `k1` (initiator → responder), ChaCha20-Poly1305 with the Noise
//!   nonce encoding (4 zero bytes + u64 LE counter) and empty AD, explicit 8-byte nonce on the
//!   wire, a sliding replay window (`replay_window` nonces) on the receiver: out-of-order and
//!   lost frames are fine, duplicates within the window are rejected. A frame older than the
//!   window (it waited in a mailbox behind many newer ones) is still opened, marked
//!   [`Opened::late`]: the caller dedups it by its inner id. The transport session id
//!   is derived from the handshake hash, so nobody can create a session that collides with
//!   another's, and it does not link transport frames to their init.
//! * **Re-handshake ratchet** (post-compromise security): once the send session has carried
//!   `rekey_after_messages` messages or is `rekey_after_secs` old, the next `seal` is a new IK
//!   init (fresh ephemeral on both sides). Until its response arrives the old session carries
//!   the following messages (another init goes every `rekey_after_messages` in case one is
//!   lost), so a peer that is offline for long gets transport frames, not a handshake per
//!   message (as a Signal sending chain goes on until the peer answers). The response
//!   replaces the old send key. Past twice the age limit the old key is dropped unanswered and
//!   every message is an init until the peer answers.
//! * **The peer table is bounded** against strangers: anyone can make identities and send inits,
//!   so peers the caller has not marked as known ([`Sessions::set_known`]: its contacts) live
//!   in a pool of at most `max_strangers`, the least recently active evicted first (memory only)
//!   to make room. Room for a new peer is only ever taken from strangers, never from a known
//!   peer; `max_peers` bounds the whole table, so when only known peers are left a new peer is
//!   refused ([`CryptoError::TooManyPeers`]). An evicted peer loses its sessions and pending
//!   inits: its next transport frame is [`CryptoError::UnknownSession`] and the next message
//!   starts a new handshake.
//! * **Frames** are `kind (1=init, 2=response, 3=transport) || id (16) || [nonce u64 BE] ||
//!   noise message`, the id being the `init_id`, the `reply_id` or the transport session id;
//!   the plaintext is `u32 BE length || payload || zero padding` so that the frame is exactly
//!   one size bucket long (512, 2048, 8192, 32768, 65536).
//! * **What the clear header still links:** the transport session id and the explicit nonce
//!   are the same (resp. counting up) in every transport frame of one session, so whoever sees
//!   them (the recipient's relays, the mesh) can tell which envelopes of a mailbox came over
//!   one session, i.e. from one sender, and how many. Hiding them would need either trial
//!   decryption against every receive session (unbounded work per frame, chosen by strangers)
//!   or per-frame ids looked up in a table of ids precomputed per session (memory per session ×
//!   window, and late frames beyond it lost); `docs/security.md` argues it as accepted.
//!
//! # Caller duties
//!
//! * Persist [`Sessions::peer_state`] after every `seal`/`open` and **before sending** the
//!   frame `seal` returned: a send nonce must never be reused after a crash.
//! * A transport frame can become undecryptable (its receive session was dropped after enough
//!   newer handshakes): delivery must retry by sealing the message again (same inner id, dedup
//!   happens on the inner id), not by resending the old frame.
//! * Session state holds secret keys: store it like the identity secret.
//! * Mark contacts with [`Sessions::set_known`] from a signal a stranger cannot produce (a
//!   contact the user added or wrote to), and at start after restoring: restored peers count as
//!   strangers until marked, so a contact pushed out while restoring must be restored again.

pub(crate) mod frame;
mod noise;
mod state;
pub(crate) mod transport;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use prost::Message as _;
use rand::rngs::ChaCha20Rng;
use rand::{Rng as _, SeedableRng as _, TryRng as _};
use zeroize::{Zeroize, Zeroizing};

pub use noise::{NOISE_PROLOGUE, NOISE_PROTOCOL};

use self::frame::{
    HANDSHAKE_HEADER, ID_LEN, KIND_INIT, KIND_RESPONSE, KIND_TRANSPORT, RESPONSE_LEN,
    RESPONSE_PLAINTEXT, TAG_LEN, TRANSPORT_HEADER,
};
use self::state::{Peer, Pending, RecvSession, SendSession};
use self::transport::ReplayWindow;
use crate::error::{CryptoError, Result};
use crate::identity::{Identity, PublicIdentity};
use crate::message::{self, MAX_INNER_BYTES};
use crate::pb::{self, InnerMessage};

/// Limits and re-handshake policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Start a new handshake after this many messages on one send session.
    pub rekey_after_messages: u64,
    /// Start a new handshake when the send session is this old (seconds).
    pub rekey_after_secs: u64,
    /// Outstanding inits kept per peer (memory only).
    pub max_pending: usize,
    /// Receive sessions kept per peer (oldest dropped: forward secrecy).
    pub max_inbound: usize,
    /// Replay window in nonces (rounded up to a multiple of 64, at most 65536).
    pub replay_window: u64,
    /// Peers held in memory, known and strangers together. Room for a new peer is taken from
    /// strangers only: when only known peers are left, a new peer is refused
    /// ([`CryptoError::TooManyPeers`]); use [`Sessions::forget_peer`] to make room.
    pub max_peers: usize,
    /// Strangers (peers not marked with [`Sessions::set_known`]) held in memory: a new one
    /// beyond this evicts the least recently active stranger (memory only).
    pub max_strangers: usize,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            rekey_after_messages: 1000,
            rekey_after_secs: 86_400,
            max_pending: 8,
            max_inbound: 4,
            replay_window: 1024,
            max_peers: 100_000,
            max_strangers: 4096,
        }
    }
}

/// The result of [`Sessions::open`].
pub struct Opened {
    /// Who sent the frame (authenticated by Noise, identity signature verified).
    pub from: PublicIdentity,
    /// The message; `None` for a handshake response.
    pub inner: Option<InnerMessage>,
    /// A handshake-response frame that the node must send back to `from`.
    pub reply: Option<Vec<u8>>,
    /// A transport frame older than the replay window (it waited behind many newer ones, e.g.
    /// in a mailbox): authentic, but not checked against replays. The caller must dedup it by
    /// its inner id, and refuse it when it is older than what its dedup memory covers.
    pub late: bool,
}

impl fmt::Debug for Opened {
    // The message body is plaintext: never print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opened")
            .field("from", &self.from.address())
            .field("inner_id", &self.inner.as_ref().map(|m| hex::encode(&m.id)))
            .field("reply", &self.reply.as_ref().map(Vec::len))
            .field("late", &self.late)
            .finish()
    }
}

/// All session state of the local identity with all peers.
pub struct Sessions {
    policy: SessionPolicy,
    rng: ChaCha20Rng,
    peers: HashMap<[u8; 32], Peer>,
    /// Receive session id → peer identity key.
    recv_index: HashMap<[u8; ID_LEN], [u8; 32]>,
    /// Reply id of a pending init (what its response will carry) → peer identity key.
    pending_index: HashMap<[u8; ID_LEN], [u8; 32]>,
    /// Peers the caller marked as known (its contacts), held or not: never evicted.
    known: HashSet<[u8; 32]>,
    /// The held peers that are not known, by `Peer::activity`: the first is evicted first.
    strangers: BTreeMap<(u64, u64), [u8; 32]>,
    /// Orders activity within one second.
    tick: u64,
}

impl fmt::Debug for Sessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sessions")
            .field("policy", &self.policy)
            .field("peers", &self.peers.len())
            .field("strangers", &self.strangers.len())
            .field("known", &self.known.len())
            .field("recv_sessions", &self.recv_index.len())
            .field("pending_inits", &self.pending_index.len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// Empty state; ephemeral keys and ids from a CSPRNG seeded by the OS.
    ///
    /// # Panics
    /// If the OS random number generator fails.
    pub fn new(policy: SessionPolicy) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::SysRng
            .try_fill_bytes(seed.as_mut())
            .expect("OS random number generator failed");
        Self::with_seed(policy, *seed)
    }

    /// Deterministic randomness (ephemeral keys, ids) from `seed`: for tests, known-answer
    /// vectors and simulations only. Never in production: two runs with one seed reuse
    /// ephemeral keys.
    pub fn with_seed(policy: SessionPolicy, seed: [u8; 32]) -> Self {
        Sessions {
            policy,
            rng: ChaCha20Rng::from_seed(seed),
            peers: HashMap::new(),
            recv_index: HashMap::new(),
            pending_index: HashMap::new(),
            known: HashSet::new(),
            strangers: BTreeMap::new(),
            tick: 0,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &SessionPolicy {
        &self.policy
    }

    /// Marks a peer as known (a contact: never evicted to make room for another peer) or, with
    /// `false`, as a stranger again (it joins the stranger pool by its last activity, and the
    /// least recently active strangers beyond `max_strangers` are evicted, maybe this one).
    /// The mark holds whether or not the peer has state, until changed: the caller bounds the
    /// set (its contacts) and should mark only from signals a stranger cannot produce.
    pub fn set_known(&mut self, peer_identity_key: &[u8; 32], known: bool) {
        let key = *peer_identity_key;
        let changed = if known {
            self.known.insert(key)
        } else {
            self.known.remove(&key)
        };
        let Some(p) = self.peers.get(&key).filter(|_| changed) else {
            return;
        };
        if known {
            self.strangers.remove(&p.activity);
        } else {
            self.strangers.insert(p.activity, key);
            while self.strangers.len() > self.policy.max_strangers {
                self.evict_oldest_stranger();
            }
        }
    }

    /// Whether the peer is marked as known ([`Sessions::set_known`]).
    pub fn is_known(&self, peer_identity_key: &[u8; 32]) -> bool {
        self.known.contains(peer_identity_key)
    }

    /// Whether the table holds state for this peer (it may have been evicted, or never met).
    pub fn has_peer(&self, peer_identity_key: &[u8; 32]) -> bool {
        self.peers.contains_key(peer_identity_key)
    }

    /// Encrypts `inner` for `to`, returning a frame whose length is exactly a size bucket: a
    /// transport frame if a fresh send session exists, otherwise an init frame (a new handshake).
    pub fn seal(
        &mut self,
        me: &Identity,
        to: &PublicIdentity,
        inner: &InnerMessage,
        now_secs: u64,
    ) -> Result<Vec<u8>> {
        message::validate(inner)?;
        self.ensure_peer(to, now_secs)?;
        self.touch(&to.identity_key, now_secs);
        let policy = &self.policy;
        let peer = self
            .peers
            .get_mut(&to.identity_key)
            .ok_or(CryptoError::UnknownSession)?;
        let (every, max_age) = (policy.rekey_after_messages.max(1), policy.rekey_after_secs);
        if let Some(s) = peer.send.as_mut() {
            let age = now_secs.saturating_sub(s.created_at);
            let worn_out = age >= max_age.saturating_mul(2);
            if !worn_out {
                let due = s.sent >= every || age >= max_age;
                // A rekey init is out: carry on until its response arrives, sending another
                // init every `rekey_after_messages` in case that one is lost.
                let waiting = !peer.pending.is_empty() && s.sent % every != 0;
                if !due || waiting {
                    return seal_transport(s, inner);
                }
                // This message goes as the rekey init; the old session stays until answered.
                s.sent += 1;
            } else {
                // Forget the old key now; every message is an init until the peer answers.
                peer.send = None;
            }
        }
        let init_id: [u8; ID_LEN] = random(&mut self.rng);
        // The response comes back under this id, which only the responder learns: nobody
        // who sees both frames can pair them by their ids.
        let reply_id: [u8; ID_LEN] = random(&mut self.rng);
        let hs_seed: [u8; 32] = random(&mut self.rng);
        peer.init_seq += 1;
        let seq = peer.init_seq;
        let mut hs = noise::initiator(&me.dh_secret_bytes(), &to.dh_key, hs_seed)?;
        let payload = Zeroizing::new(
            pb::HandshakePayload {
                init_id: init_id.to_vec(),
                created_at: now_secs,
                sender: Some(me.public_ref().to_pb()),
                inner: Some(inner.clone()),
                sequence: seq,
                reply_id: reply_id.to_vec(),
            }
            .encode_to_vec(),
        );
        let frame_len =
            frame::init_frame_len(payload.len()).ok_or(CryptoError::MessageTooLarge {
                size: inner.encoded_len(),
                max: MAX_INNER_BYTES,
            })?;
        let plaintext = Zeroizing::new(frame::pad(&payload, frame::init_plaintext_len(frame_len)));
        let mut out = vec![0u8; frame_len];
        out[0] = KIND_INIT;
        out[1..HANDSHAKE_HEADER].copy_from_slice(&init_id);
        let n = hs
            .write_message(&plaintext, &mut out[HANDSHAKE_HEADER..])
            .map_err(noise::err)?;
        if HANDSHAKE_HEADER + n != frame_len {
            return Err(CryptoError::FrameMalformed("init length mismatch"));
        }
        peer.pending.push_back(Pending {
            reply_id,
            hs,
            created_at: now_secs,
            seq,
        });
        self.pending_index.insert(reply_id, to.identity_key);
        while peer.pending.len() > self.policy.max_pending.max(1) {
            if let Some(old) = peer.pending.pop_front() {
                self.pending_index.remove(&old.reply_id);
            }
        }
        Ok(out)
    }

    /// Decrypts a frame. `Opened::from` is verified: its `dh_key` is the Noise remote static
    /// key and its `dh_sig` is valid.
    pub fn open(&mut self, me: &Identity, frame: &[u8], now_secs: u64) -> Result<Opened> {
        let (kind, id) = frame::header(frame)?;
        match kind {
            KIND_INIT => self.open_init(me, id, frame, now_secs),
            KIND_RESPONSE => self.open_response(id, frame, now_secs),
            KIND_TRANSPORT => self.open_transport(id, frame, now_secs),
            k => Err(CryptoError::UnknownFrameKind(k)),
        }
    }

    /// Serialised persistent state for one peer (`tokenim.v1.PeerState`; contains keys).
    pub fn peer_state(&self, peer_identity_key: &[u8; 32]) -> Option<Zeroizing<Vec<u8>>> {
        self.peers.get(peer_identity_key).map(Peer::encode)
    }

    /// Loads what [`Sessions::peer_state`] returned, replacing the persisted part of that
    /// peer's state (in-memory pending inits survive if the peer's keys are unchanged).
    ///
    /// A new peer needs room like any other, and competes by its persisted last activity:
    /// a stranger less recently active than every stranger held in a full pool is not kept
    /// (`Ok`, as if evicted at once), so restoring many strangers in any order keeps the most
    /// recent ones; a peer for which only known peers would have to make room is refused
    /// ([`CryptoError::TooManyPeers`]).
    pub fn restore_peer(&mut self, bytes: &[u8]) -> Result<()> {
        let mut restored = Peer::decode(bytes, self.policy.max_inbound.max(1))?;
        let key = restored.identity.identity_key;
        for s in &restored.inbound {
            if self.recv_index.get(&s.id).is_some_and(|k| *k != key) {
                return Err(CryptoError::malformed("peer state", "session id collision"));
            }
        }
        if let Some(old) = self.peers.get_mut(&key) {
            if old.identity == restored.identity {
                restored.pending = std::mem::take(&mut old.pending);
                restored.init_seq = old.init_seq;
            }
        } else {
            let full = self.strangers.len() >= self.policy.max_strangers
                || self.peers.len() >= self.policy.max_peers;
            let oldest = self.strangers.first_key_value().map(|(a, _)| a.0);
            let stale =
                oldest.is_some_and(|t| restored.last_active < t) || self.policy.max_strangers == 0;
            if !self.known.contains(&key) && full && stale {
                return Ok(());
            }
            self.make_room(&key)?;
        }
        self.forget_peer(&key);
        for s in &restored.inbound {
            self.recv_index.insert(s.id, key);
        }
        for p in &restored.pending {
            self.pending_index.insert(p.reply_id, key);
        }
        let last_active = restored.last_active;
        self.insert_peer(restored, last_active);
        Ok(())
    }

    /// Forgets the send session to this peer (the peer reported it cannot decrypt on it), so
    /// the next `seal` starts a new handshake. Receive sessions and pending inits are kept.
    pub fn reset_send(&mut self, peer_identity_key: &[u8; 32]) {
        if let Some(p) = self.peers.get_mut(peer_identity_key) {
            p.send = None;
        }
    }

    /// Drops all state about a peer (memory only; delete its persisted state yourself). Its
    /// [`Sessions::set_known`] mark stays.
    pub fn forget_peer(&mut self, peer_identity_key: &[u8; 32]) {
        self.remove_peer_indexes(peer_identity_key);
        if let Some(p) = self.peers.remove(peer_identity_key) {
            self.strangers.remove(&p.activity);
        }
    }

    /// Identity keys of all peers with state, with their last activity (Unix seconds).
    pub fn peers(&self) -> impl Iterator<Item = (&[u8; 32], u64)> + '_ {
        self.peers.iter().map(|(k, p)| (k, p.last_active))
    }

    /// Whether an established send session to this peer exists (it may still be due for a
    /// re-handshake).
    pub fn has_send_session(&self, peer_identity_key: &[u8; 32]) -> bool {
        self.peers
            .get(peer_identity_key)
            .is_some_and(|p| p.send.is_some())
    }

    /// Number of outstanding (unanswered) inits to this peer.
    pub fn pending_inits(&self, peer_identity_key: &[u8; 32]) -> usize {
        self.peers
            .get(peer_identity_key)
            .map_or(0, |p| p.pending.len())
    }

    /// Number of receive sessions held for this peer.
    pub fn inbound_sessions(&self, peer_identity_key: &[u8; 32]) -> usize {
        self.peers
            .get(peer_identity_key)
            .map_or(0, |p| p.inbound.len())
    }

    /// Inserts a peer not held yet (room was made), ordered by `now` as its last activity.
    fn insert_peer(&mut self, mut peer: Peer, now: u64) {
        let key = peer.identity.identity_key;
        self.tick += 1;
        peer.activity = (now, self.tick);
        if !self.known.contains(&key) {
            self.strangers.insert(peer.activity, key);
        }
        self.peers.insert(key, peer);
    }

    /// Records activity of a held peer: it becomes the most recently active.
    fn touch(&mut self, key: &[u8; 32], now: u64) {
        let Some(p) = self.peers.get_mut(key) else {
            return;
        };
        self.tick += 1;
        let old = std::mem::replace(&mut p.activity, (now, self.tick));
        p.last_active = now;
        if self.strangers.remove(&old).is_some() {
            self.strangers.insert(p.activity, *key);
        }
    }

    /// Whether a new peer could get in: room is only ever taken from strangers.
    fn can_admit(&self, key: &[u8; 32]) -> bool {
        let stranger = !self.known.contains(key);
        if stranger && self.policy.max_strangers == 0 {
            return false;
        }
        self.peers.len() < self.policy.max_peers || !self.strangers.is_empty()
    }

    /// Makes room for the new peer `key`: evicts the least recently active strangers while the
    /// table, or for a stranger the stranger pool, is full; never evicts a known peer.
    fn make_room(&mut self, key: &[u8; 32]) -> Result<()> {
        if !self.can_admit(key) {
            return Err(CryptoError::TooManyPeers);
        }
        let stranger = !self.known.contains(key);
        while self.peers.len() >= self.policy.max_peers
            || (stranger && self.strangers.len() >= self.policy.max_strangers)
        {
            if !self.evict_oldest_stranger() {
                return Err(CryptoError::TooManyPeers);
            }
        }
        Ok(())
    }

    /// Drops the least recently active stranger (memory only); false if there is none.
    fn evict_oldest_stranger(&mut self) -> bool {
        match self.strangers.first_key_value() {
            Some((_, key)) => {
                let key = *key;
                self.forget_peer(&key);
                true
            }
            None => false,
        }
    }

    fn remove_peer_indexes(&mut self, key: &[u8; 32]) {
        if let Some(p) = self.peers.get(key) {
            for s in &p.inbound {
                self.recv_index.remove(&s.id);
            }
            for q in &p.pending {
                self.pending_index.remove(&q.reply_id);
            }
        }
    }

    /// Makes sure `who` (verified) is the identity on record for its key. A changed Noise key
    /// invalidates our send session and pending inits to the old key.
    fn ensure_peer(&mut self, who: &PublicIdentity, now: u64) -> Result<()> {
        match self.peers.get_mut(&who.identity_key) {
            Some(p) if p.identity == *who => Ok(()),
            Some(p) => {
                who.verify()?;
                if p.identity.dh_key != who.dh_key {
                    p.send = None;
                    for q in p.pending.drain(..) {
                        self.pending_index.remove(&q.reply_id);
                    }
                }
                p.identity = who.clone();
                Ok(())
            }
            None => {
                // Checked before the signature, and nothing is evicted for an invalid identity.
                if !self.can_admit(&who.identity_key) {
                    return Err(CryptoError::TooManyPeers);
                }
                who.verify()?;
                self.make_room(&who.identity_key)?;
                self.insert_peer(Peer::new(who.clone(), now), now);
                Ok(())
            }
        }
    }

    fn open_init(
        &mut self,
        me: &Identity,
        init_id: [u8; ID_LEN],
        frame: &[u8],
        now: u64,
    ) -> Result<Opened> {
        let mut hs = noise::responder(&me.dh_secret_bytes(), random(&mut self.rng))?;
        let mut buf = Zeroizing::new(vec![0u8; frame.len() - HANDSHAKE_HEADER]);
        let n = hs
            .read_message(&frame[HANDSHAKE_HEADER..], &mut buf)
            .map_err(noise::err)?;
        let payload = frame::unpad(&buf[..n])?;
        let mut hp = pb::HandshakePayload::decode(payload)
            .map_err(|e| CryptoError::malformed("handshake payload", e))?;
        if hp.init_id != init_id {
            return Err(CryptoError::FrameMalformed("init id differs from header"));
        }
        let reply_id: [u8; ID_LEN] =
            hp.reply_id.as_slice().try_into().map_err(|_| {
                CryptoError::malformed("handshake payload", "reply id is not 16 bytes")
            })?;
        let sender = PublicIdentity::from_pb(
            hp.sender
                .as_ref()
                .ok_or_else(|| CryptoError::malformed("handshake payload", "no sender"))?,
        )?;
        if hs.get_remote_static() != Some(&sender.dh_key[..]) {
            return Err(CryptoError::SenderMismatch);
        }
        let inner = hp
            .inner
            .take()
            .ok_or_else(|| CryptoError::malformed("handshake payload", "no message"))?;
        message::validate(&inner)?;
        self.ensure_peer(&sender, now)?;
        self.touch(&sender.identity_key, now);
        let max_inbound = self.policy.max_inbound.max(1);
        let window = self.policy.replay_window;
        let peer = self
            .peers
            .get_mut(&sender.identity_key)
            .ok_or(CryptoError::UnknownSession)?;
        if peer.inbound.iter().any(|s| s.init_id == init_id) {
            return Err(CryptoError::Replay);
        }
        let order = (hp.created_at, hp.sequence);
        let keep = peer.inbound.len() < max_inbound
            || peer.inbound.first().is_some_and(|o| order > o.order);
        if !keep {
            // Older than every session we hold: deliver, but no session and no response.
            return Ok(Opened {
                from: sender,
                inner: Some(inner),
                reply: None,
                late: false,
            });
        }
        let mut out = vec![0u8; RESPONSE_LEN];
        out[0] = KIND_RESPONSE;
        out[1..HANDSHAKE_HEADER].copy_from_slice(&reply_id);
        let pt = frame::pad(&[], RESPONSE_PLAINTEXT);
        hs.write_message(&pt, &mut out[HANDSHAKE_HEADER..])
            .map_err(noise::err)?;
        let (k1, mut k2) = hs.dangerously_get_raw_split();
        k2.zeroize();
        let id = noise::session_id(hs.get_handshake_hash());
        if self.recv_index.contains_key(&id) {
            return Err(CryptoError::Replay);
        }
        peer.insert_inbound(RecvSession {
            id,
            init_id,
            key: Zeroizing::new(k1),
            order,
            window: ReplayWindow::new(window),
        });
        self.recv_index.insert(id, sender.identity_key);
        while peer.inbound.len() > max_inbound {
            // A session that never carried a transport frame goes first: a burst of inits
            // (a re-handshake while this node was offline, drained from a mailbox) must not
            // push out the session whose frames are still queued behind them. This one stays.
            let victim = peer
                .inbound
                .iter()
                .position(|s| s.window.highest_plus_one == 0 && s.id != id)
                .unwrap_or(0);
            let old = peer.inbound.remove(victim);
            self.recv_index.remove(&old.id);
        }
        Ok(Opened {
            from: sender,
            inner: Some(inner),
            reply: Some(out),
            late: false,
        })
    }

    fn open_response(&mut self, reply_id: [u8; ID_LEN], frame: &[u8], now: u64) -> Result<Opened> {
        let key = *self
            .pending_index
            .get(&reply_id)
            .ok_or(CryptoError::UnknownSession)?;
        let peer = self
            .peers
            .get_mut(&key)
            .ok_or(CryptoError::UnknownSession)?;
        let pos = peer
            .pending
            .iter()
            .position(|p| p.reply_id == reply_id)
            .ok_or(CryptoError::UnknownSession)?;
        let mut buf = Zeroizing::new(vec![0u8; frame.len() - HANDSHAKE_HEADER]);
        // On failure snow rolls the handshake back, so a forged response cannot kill the
        // pending init.
        let n = peer.pending[pos]
            .hs
            .read_message(&frame[HANDSHAKE_HEADER..], &mut buf)
            .map_err(noise::err)?;
        let Some(mut p) = peer.pending.remove(pos) else {
            return Err(CryptoError::UnknownSession);
        };
        self.pending_index.remove(&reply_id);
        frame::unpad(&buf[..n])?;
        let (k1, mut k2) = p.hs.dangerously_get_raw_split();
        k2.zeroize();
        let id = noise::session_id(p.hs.get_handshake_hash());
        if peer.send.as_ref().is_none_or(|s| p.seq > s.seq) {
            peer.send = Some(SendSession {
                id,
                key: Zeroizing::new(k1),
                next_nonce: 0,
                created_at: p.created_at,
                sent: 1,
                seq: p.seq,
            });
            // Older inits can only lead to older sessions: stop waiting for them.
            let index = &mut self.pending_index;
            peer.pending.retain(|q| {
                let keep = q.seq > p.seq;
                if !keep {
                    index.remove(&q.reply_id);
                }
                keep
            });
        }
        let from = peer.identity.clone();
        self.touch(&key, now);
        Ok(Opened {
            from,
            inner: None,
            reply: None,
            late: false,
        })
    }

    fn open_transport(&mut self, id: [u8; ID_LEN], frame: &[u8], now: u64) -> Result<Opened> {
        let key = *self
            .recv_index
            .get(&id)
            .ok_or(CryptoError::UnknownSession)?;
        let peer = self
            .peers
            .get_mut(&key)
            .ok_or(CryptoError::UnknownSession)?;
        let s = peer
            .inbound
            .iter_mut()
            .find(|s| s.id == id)
            .ok_or(CryptoError::UnknownSession)?;
        let mut nonce = [0u8; 8];
        nonce.copy_from_slice(&frame[HANDSHAKE_HEADER..TRANSPORT_HEADER]);
        let nonce = u64::from_be_bytes(nonce);
        let late = match s.window.check(nonce) {
            Ok(()) => false,
            Err(CryptoError::NonceTooOld) => true,
            Err(e) => return Err(e),
        };
        // Not wiped afterwards: the plaintext goes to the caller anyway, and byte-wise volatile
        // wiping would cost a fifth of the time of an `open`.
        let mut buf = frame[TRANSPORT_HEADER..].to_vec();
        let plaintext = transport::open_in_place(&s.key, nonce, &mut buf)?;
        if !late {
            s.window.accept(nonce);
        }
        let from = peer.identity.clone();
        self.touch(&key, now);
        let payload = frame::unpad(plaintext)?;
        let inner = InnerMessage::decode(payload)
            .map_err(|e| CryptoError::malformed("inner message", e))?;
        message::validate(&inner)?;
        Ok(Opened {
            from,
            inner: Some(inner),
            reply: None,
            late,
        })
    }
}

fn seal_transport(s: &mut SendSession, inner: &InnerMessage) -> Result<Vec<u8>> {
    let len = inner.encoded_len();
    let frame_len = frame::transport_frame_len(len).ok_or(CryptoError::MessageTooLarge {
        size: len,
        max: MAX_INNER_BYTES,
    })?;
    if s.next_nonce == u64::MAX {
        return Err(CryptoError::NonceExhausted);
    }
    let nonce = s.next_nonce;
    let mut out = Vec::with_capacity(frame_len);
    out.push(KIND_TRANSPORT);
    out.extend_from_slice(&s.id);
    out.extend_from_slice(&nonce.to_be_bytes());
    out.extend_from_slice(&(len as u32).to_be_bytes());
    inner
        .encode(&mut out)
        .map_err(|e| CryptoError::malformed("inner message", e))?;
    out.resize(frame_len - TAG_LEN, 0);
    let tag = transport::seal_in_place(&s.key, nonce, &mut out[TRANSPORT_HEADER..]);
    out.extend_from_slice(&tag);
    s.next_nonce += 1;
    s.sent += 1;
    Ok(out)
}

fn random<const N: usize>(rng: &mut ChaCha20Rng) -> [u8; N] {
    let mut out = [0u8; N];
    rng.fill_bytes(&mut out);
    out
}

#[cfg(test)]
mod tests;
