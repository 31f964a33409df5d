//! Per-peer session state and its (local-storage) serialisation, `tokenim.v1.PeerState`.

use std::collections::VecDeque;

use prost::Message as _;
use snow::HandshakeState;
use zeroize::{Zeroize, Zeroizing};

use super::frame::ID_LEN;
use super::transport::ReplayWindow;
use crate::error::{CryptoError, Result};
use crate::identity::PublicIdentity;
use crate::pb;
use crate::sign;

const STATE_VERSION: u32 = 1;
const W: &str = "peer state";

/// A session we initiated and send on.
pub(crate) struct SendSession {
    pub(crate) id: [u8; ID_LEN],
    pub(crate) key: Zeroizing<[u8; 32]>,
    pub(crate) next_nonce: u64,
    pub(crate) created_at: u64,
    pub(crate) sent: u64,
    /// Per-peer init counter value of the init that made it (0 after a restore).
    pub(crate) seq: u64,
}

/// A session the peer initiated, that we receive on.
pub(crate) struct RecvSession {
    pub(crate) id: [u8; ID_LEN],
    pub(crate) init_id: [u8; ID_LEN],
    pub(crate) key: Zeroizing<[u8; 32]>,
    /// (initiator's created_at, initiator's sequence): orders the peer's sessions.
    pub(crate) order: (u64, u64),
    pub(crate) window: ReplayWindow,
}

/// An init we sent and whose response we wait for (memory only: snow cannot serialise it).
pub(crate) struct Pending {
    /// The id its response carries (sent inside the encrypted init, never in clear with it).
    pub(crate) reply_id: [u8; ID_LEN],
    pub(crate) hs: HandshakeState,
    pub(crate) created_at: u64,
    pub(crate) seq: u64,
}

pub(crate) struct Peer {
    pub(crate) identity: PublicIdentity,
    pub(crate) send: Option<SendSession>,
    /// Sorted by `order`, oldest first.
    pub(crate) inbound: Vec<RecvSession>,
    /// Oldest first.
    pub(crate) pending: VecDeque<Pending>,
    /// Counter for the `sequence` of our inits to this peer.
    pub(crate) init_seq: u64,
    pub(crate) last_active: u64,
    /// (last activity, table tick): orders peers by recency, also within one second (memory
    /// only; set by the table when the peer is inserted or active).
    pub(crate) activity: (u64, u64),
}

impl Peer {
    pub(crate) fn new(identity: PublicIdentity, now: u64) -> Self {
        Peer {
            identity,
            send: None,
            inbound: Vec::new(),
            pending: VecDeque::new(),
            init_seq: 0,
            last_active: now,
            activity: (now, 0),
        }
    }

    /// Inserts keeping `inbound` sorted.
    pub(crate) fn insert_inbound(&mut self, s: RecvSession) {
        let pos = self.inbound.partition_point(|o| o.order <= s.order);
        self.inbound.insert(pos, s);
    }

    pub(crate) fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut p = pb::PeerState {
            version: STATE_VERSION,
            peer: Some(self.identity.to_pb()),
            send: self.send.as_ref().map(|s| pb::SendSessionState {
                session_id: s.id.to_vec(),
                key: s.key.to_vec(),
                next_nonce: s.next_nonce,
                created_at: s.created_at,
                sent: s.sent,
            }),
            inbound: self
                .inbound
                .iter()
                .map(|r| pb::RecvSessionState {
                    session_id: r.id.to_vec(),
                    init_id: r.init_id.to_vec(),
                    key: r.key.to_vec(),
                    created_at: r.order.0,
                    sequence: r.order.1,
                    highest_plus_one: r.window.highest_plus_one,
                    window: r
                        .window
                        .bitmap
                        .iter()
                        .flat_map(|w| w.to_le_bytes())
                        .collect(),
                    window_bits: r.window.bits() as u32,
                })
                .collect(),
            last_active: self.last_active,
        };
        let out = Zeroizing::new(p.encode_to_vec());
        wipe(&mut p);
        out
    }

    /// Decodes persisted state (no pending handshakes: those live in memory only). Keeps at
    /// most `max_inbound` receive sessions (the newest).
    pub(crate) fn decode(bytes: &[u8], max_inbound: usize) -> Result<Peer> {
        let mut p = pb::PeerState::decode(bytes).map_err(|e| CryptoError::malformed(W, e))?;
        let r = Self::from_pb(&p, max_inbound);
        wipe(&mut p);
        r
    }

    fn from_pb(p: &pb::PeerState, max_inbound: usize) -> Result<Peer> {
        if p.version != STATE_VERSION {
            return Err(CryptoError::UnsupportedVersion {
                what: W,
                version: p.version,
            });
        }
        let identity = PublicIdentity::from_pb(
            p.peer
                .as_ref()
                .ok_or_else(|| CryptoError::malformed(W, "missing peer"))?,
        )?;
        identity.verify()?;
        let mut peer = Peer::new(identity, p.last_active);
        if let Some(s) = &p.send {
            peer.send = Some(SendSession {
                id: sign::array(&s.session_id, W, "session_id")?,
                key: Zeroizing::new(sign::array(&s.key, W, "key")?),
                next_nonce: s.next_nonce,
                created_at: s.created_at,
                sent: s.sent,
                seq: 0,
            });
        }
        for r in &p.inbound {
            let bits = u64::from(r.window_bits);
            if bits == 0 || bits % 64 != 0 || bits > ReplayWindow::MAX_BITS {
                return Err(CryptoError::malformed(W, "bad window size"));
            }
            if r.window.len() as u64 != bits / 8 {
                return Err(CryptoError::malformed(W, "window length mismatch"));
            }
            let bitmap = r
                .window
                .chunks_exact(8)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(c);
                    u64::from_le_bytes(w)
                })
                .collect();
            let s = RecvSession {
                id: sign::array(&r.session_id, W, "session_id")?,
                init_id: sign::array(&r.init_id, W, "init_id")?,
                key: Zeroizing::new(sign::array(&r.key, W, "key")?),
                order: (r.created_at, r.sequence),
                window: ReplayWindow {
                    highest_plus_one: r.highest_plus_one,
                    bitmap,
                },
            };
            if peer.inbound.iter().any(|o| o.id == s.id) {
                return Err(CryptoError::malformed(W, "duplicate session id"));
            }
            peer.insert_inbound(s);
        }
        let excess = peer.inbound.len().saturating_sub(max_inbound);
        peer.inbound.drain(..excess);
        Ok(peer)
    }
}

fn wipe(p: &mut pb::PeerState) {
    if let Some(s) = p.send.as_mut() {
        s.key.zeroize();
    }
    for r in &mut p.inbound {
        r.key.zeroize();
    }
}
