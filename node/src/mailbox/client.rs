//! The personal node's side of relay mailboxes: storing envelopes at a recipient's home
//! relays when it cannot be reached directly, and draining this node's own mailbox from its
//! home relays (register by challenge, page through, hand each page to [`Ingest`], ack).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::PeerId;
use tokenim_crypto::{CustodyReceipt, Envelope, Identity, MAX_BATCH_IDS, MailboxId, MessageId};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::protocol::{MAX_PAGE, MAX_STORE_BATCH, RelayRoute, relay_key_of};
use crate::net::wire::{self, MAX_BATCH_BYTES, RejectCode, pb};
use crate::net::{DeliverError, NetworkHandle};
use crate::time::now_secs;

/// Where drained mailbox pages go: the delivery core, which this layer does not name.
pub(crate) trait Ingest: Send + Sync + 'static {
    /// Opens and stores `envelopes` fetched from `relay`; for each, whether the relay may
    /// delete it (stored, duplicate, or never readable) or must keep it (failed for now).
    fn ingest(&self, relay: PeerId, envelopes: Vec<Vec<u8>>) -> BoxFuture<'_, Vec<bool>>;
}

/// How long a relay's store batcher waits for more envelopes before it stops.
const BATCHER_IDLE: Duration = Duration::from_secs(30);

struct Pending {
    envelope: Vec<u8>,
    /// The recipient's write grant for its mailbox (a batch carries one).
    grant: Vec<u8>,
    id: MessageId,
    reply: oneshot::Sender<Option<CustodyReceipt>>,
}

/// Coalesces envelopes bound for the same relay and mailbox into `store` batches (one stream,
/// one write and one signature per batch). Nothing waits to fill a batch: the first envelope
/// goes at once, and whatever queues while a batch is in flight makes the next one.
#[derive(Default)]
pub(crate) struct StoreBatches {
    senders: Mutex<HashMap<(PeerId, MailboxId), mpsc::Sender<Pending>>>,
}

impl std::fmt::Debug for StoreBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreBatches").finish_non_exhaustive()
    }
}

impl StoreBatches {
    /// Stores `envelope` at `relay` in the next batch; the receipt if it verified.
    async fn store(
        &self,
        net: &NetworkHandle,
        relay: &RelayRoute,
        mailbox: MailboxId,
        id: MessageId,
        envelope: Vec<u8>,
        grant: Vec<u8>,
    ) -> Option<CustodyReceipt> {
        let (reply, answer) = oneshot::channel();
        let mut pending = Pending {
            envelope,
            grant,
            id,
            reply,
        };
        // A batcher that just stopped for idleness refuses; start a fresh one.
        for _ in 0..2 {
            let tx = {
                let mut senders = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
                match senders.get(&(relay.peer, mailbox)) {
                    Some(tx) if !tx.is_closed() => tx.clone(),
                    _ => {
                        senders.retain(|_, tx| !tx.is_closed());
                        let (tx, rx) = mpsc::channel(MAX_STORE_BATCH);
                        tokio::spawn(run_batcher(net.clone(), relay.clone(), mailbox, rx));
                        senders.insert((relay.peer, mailbox), tx.clone());
                        tx
                    }
                }
            };
            match tx.send(pending).await {
                Ok(()) => return answer.await.ok().flatten(),
                Err(mpsc::error::SendError(p)) => pending = p,
            }
        }
        None
    }
}

async fn run_batcher(
    net: NetworkHandle,
    relay: RelayRoute,
    mailbox: MailboxId,
    mut rx: mpsc::Receiver<Pending>,
) {
    let Some(key) = relay_key_of(&relay.peer) else {
        return;
    };
    let mut carry = None;
    // A relay that said its disk is full gets nothing from this batcher until it said when.
    let mut refused_until: Option<tokio::time::Instant> = None;
    loop {
        let first = match carry.take() {
            Some(p) => p,
            None => match tokio::time::timeout(BATCHER_IDLE, rx.recv()).await {
                Ok(Some(p)) => p,
                Ok(None) => return,
                Err(_) => {
                    // Refuse new work, then finish what was queued meanwhile.
                    rx.close();
                    match rx.try_recv() {
                        Ok(p) => p,
                        Err(_) => return,
                    }
                }
            },
        };
        let mut bytes = first.envelope.len();
        let mut batch = vec![first];
        while batch.len() < MAX_STORE_BATCH {
            let Ok(p) = rx.try_recv() else { break };
            if bytes + p.envelope.len() > MAX_BATCH_BYTES || p.grant != batch[0].grant {
                carry = Some(p);
                break;
            }
            bytes += p.envelope.len();
            batch.push(p);
        }
        if refused_until.is_some_and(|t| tokio::time::Instant::now() < t) {
            // No receipt; each envelope's own retry backoff brings it back later.
            for p in batch {
                let _ = p.reply.send(None);
            }
            continue;
        }
        match store_batch(&net, &relay, &key, &mailbox, &batch).await {
            Stored::Full(wait) => {
                debug!(relay = %relay.peer, ?wait, "relay disk full; backing off");
                refused_until = Some(tokio::time::Instant::now() + wait);
                for p in batch {
                    let _ = p.reply.send(None);
                }
            }
            // A batch is stored whole or not at all, so one envelope the relay refuses, or a
            // quota the batch overruns as a whole, would fail the others too: try each alone.
            Stored::Refused if batch.len() > 1 => {
                for p in batch {
                    let alone = std::slice::from_ref(&p);
                    let receipt = store_batch(&net, &relay, &key, &mailbox, alone).await;
                    let _ = p.reply.send(receipt.receipt());
                }
            }
            stored => {
                let receipt = stored.receipt();
                for p in batch {
                    let _ = p.reply.send(receipt.clone());
                }
            }
        }
    }
}

enum Stored {
    Receipt(CustodyReceipt),
    /// Refused for what the batch holds (an envelope, its size, a quota).
    Refused,
    /// The relay's disk is full: nothing to it for this long.
    Full(Duration),
    /// Unreachable, busy, or no valid receipt: the sender retries later.
    Failed,
}

impl Stored {
    fn receipt(self) -> Option<CustodyReceipt> {
        match self {
            Self::Receipt(r) => Some(r),
            Self::Refused | Self::Full(_) | Self::Failed => None,
        }
    }
}

/// One `store` request; a receipt when it covers the whole batch and verifies.
async fn store_batch(
    net: &NetworkHandle,
    relay: &RelayRoute,
    key: &[u8; 32],
    mailbox: &MailboxId,
    batch: &[Pending],
) -> Stored {
    let ids: Vec<MessageId> = batch.iter().map(|p| p.id).collect();
    let request = wire::Request {
        kind: Some(pb::request::Kind::Store(pb::StoreEnvelope {
            envelopes: batch.iter().map(|p| p.envelope.clone()).collect(),
            grant: batch.first().map(|p| p.grant.clone()).unwrap_or_default(),
        })),
    };
    match net.request(relay.peer, relay.addrs.clone(), request).await {
        Ok(wire::Response {
            kind: Some(pb::response::Kind::Stored(s)),
        }) => {
            // A receipt that does not verify is worth nothing: the relay did not sign for it.
            match CustodyReceipt::from_bytes(&s.receipt)
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    r.verify(key, mailbox, &ids)
                        .map(|()| r)
                        .map_err(|e| e.to_string())
                }) {
                Ok(receipt) => Stored::Receipt(receipt),
                Err(e) => {
                    warn!(relay = %relay.peer, "relay sent an invalid custody receipt: {e}");
                    Stored::Failed
                }
            }
        }
        Ok(other) => {
            debug!(relay = %relay.peer, ?other, "relay did not store");
            match other.kind {
                Some(pb::response::Kind::Rejected(r))
                    if r.code == RejectCode::StorageFull as i32 =>
                {
                    // Never less than a second, whatever the hint: a full relay is not asked
                    // again at once.
                    Stored::Full(Duration::from_secs(r.retry_after_secs.max(1).into()))
                }
                Some(pb::response::Kind::Rejected(r))
                    if matches!(
                        RejectCode::try_from(r.code),
                        Ok(RejectCode::Quota | RejectCode::Malformed | RejectCode::TooLarge)
                    ) =>
                {
                    Stored::Refused
                }
                _ => Stored::Failed,
            }
        }
        Err(e) => {
            debug!(relay = %relay.peer, ?e, "relay unreachable");
            Stored::Failed
        }
    }
}

/// Hands `envelope` to every relay, with the recipient's write `grant` (may be empty); returns
/// the receipts that verified. Nothing goes on the
/// shard topics from here: relays accept there only what a relay of their mesh signed, and
/// each relay that stores the envelope signs and publishes it for its mesh.
pub(crate) async fn store_at_relays(
    net: &NetworkHandle,
    batches: &StoreBatches,
    relays: &[RelayRoute],
    envelope: &[u8],
    grant: &[u8],
) -> Vec<CustodyReceipt> {
    let Ok(parsed) = Envelope::decode_checked(envelope) else {
        return Vec::new();
    };
    let (Ok(mailbox), id) = (parsed.mailbox(), parsed.id()) else {
        return Vec::new();
    };
    let requests = relays
        .iter()
        .map(|r| batches.store(net, r, mailbox, id, envelope.to_vec(), grant.to_vec()));
    futures::future::join_all(requests)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// Registers this node's mailbox at `relay` and drains it.
pub(crate) async fn sync_mailbox(
    net: NetworkHandle,
    ingest: &dyn Ingest,
    identity: std::sync::Arc<Identity>,
    relay: RelayRoute,
) -> Result<usize, String> {
    let relay_key = relay_key_of(&relay.peer).ok_or("relay peer id has no Ed25519 key")?;
    let ask = |kind| wire::Request { kind: Some(kind) };
    let challenge = match net
        .request(
            relay.peer,
            relay.addrs.clone(),
            ask(pb::request::Kind::GetChallenge(pb::GetChallenge {})),
        )
        .await
        .map_err(describe)?
    {
        wire::Response {
            kind: Some(pb::response::Kind::Challenge(c)),
        } => c.challenge,
        other => {
            return Err(format!(
                "unexpected answer to a challenge request: {other:?}"
            ));
        }
    };
    let mailbox_key = identity.mailbox_key(0);
    let proof = mailbox_key
        .sign_registration(&relay_key, &challenge, now_secs())
        .to_bytes();
    match net
        .request(
            relay.peer,
            Vec::new(),
            ask(pb::request::Kind::Register(pb::RegisterMailbox {
                registration: proof.clone(),
            })),
        )
        .await
        .map_err(describe)?
    {
        wire::Response {
            kind: Some(pb::response::Kind::Accepted(_)),
        } => {}
        other => return Err(format!("registration refused: {other:?}")),
    }
    let fetch = |after_seq| {
        let request = ask(pb::request::Kind::Fetch(pb::FetchMailbox {
            registration: proof.clone(),
            after_seq,
            limit: MAX_PAGE as u32,
        }));
        let net = net.clone();
        async move {
            match net
                .request(relay.peer, Vec::new(), request)
                .await
                .map_err(describe)?
            {
                wire::Response {
                    kind: Some(pb::response::Kind::Page(p)),
                } => Ok(p),
                other => Err(format!("fetch refused: {other:?}")),
            }
        }
    };
    // Three stages overlap: the next page is fetched while this one is opened and stored,
    // and the previous page's ack is answered meanwhile.
    let mut drained = 0;
    let mut acking = None;
    let mut page = fetch(0).await?;
    loop {
        let next = page
            .more
            .then(|| page.envelopes.last().map(|e| e.seq))
            .flatten();
        let envelopes: Vec<Vec<u8>> = page.envelopes.into_iter().map(|e| e.envelope).collect();
        let ids: Vec<Option<MessageId>> = envelopes
            .iter()
            .map(|e| Envelope::decode_checked(e).ok().map(|env| env.id()))
            .collect();
        let process = async {
            let verdicts = ingest.ingest(relay.peer, envelopes).await;
            ids.into_iter()
                .zip(verdicts)
                .filter_map(|(id, ack)| id.filter(|_| ack))
                .collect::<Vec<MessageId>>()
        };
        let prefetch = async {
            match next {
                Some(after) => Some(fetch(after).await),
                None => None,
            }
        };
        let previous_ack = async {
            if let Some(a) = acking.take() {
                a.await;
            }
        };
        let (done, fetched, ()) = tokio::join!(process, prefetch, previous_ack);
        drained += done.len();
        acking = Some(ack(&net, &identity, &relay, &relay_key, done));
        match fetched {
            Some(p) => page = p?,
            None => break,
        }
    }
    if let Some(a) = acking {
        a.await;
    }
    info!(relay = %relay.peer, drained, "mailbox synced");
    Ok(drained)
}

/// Tries of one ack a relay refuses for now (busy, or its disk momentarily refusing writes).
const ACK_TRIES: u32 = 3;

/// Tells `relay` to delete `ids` (signed by the mailbox key), in batches. A batch refused for
/// now is tried again after the wait the relay asks for (acks are what free a full relay).
pub(crate) async fn ack(
    net: &NetworkHandle,
    identity: &Identity,
    relay: &RelayRoute,
    relay_key: &[u8; 32],
    ids: Vec<[u8; 32]>,
) {
    let key = identity.mailbox_key(0);
    for chunk in ids.chunks(MAX_BATCH_IDS) {
        for attempt in 1..=ACK_TRIES {
            let ack = key.sign_ack(relay_key, chunk, now_secs());
            let request = wire::Request {
                kind: Some(pb::request::Kind::Ack(pb::AckMailbox {
                    ack: ack.to_bytes(),
                })),
            };
            let other = match net.request(relay.peer, relay.addrs.clone(), request).await {
                Ok(wire::Response {
                    kind: Some(pb::response::Kind::Acked(a)),
                }) => {
                    debug!(relay = %relay.peer, deleted = a.deleted, "acked");
                    break;
                }
                Ok(wire::Response {
                    kind: Some(pb::response::Kind::Rejected(r)),
                }) if attempt < ACK_TRIES
                    && matches!(
                        RejectCode::try_from(r.code),
                        Ok(RejectCode::StorageFull | RejectCode::RateLimited)
                    ) =>
                {
                    let wait = Duration::from_secs(r.retry_after_secs.max(1).into());
                    tokio::time::sleep(wait).await;
                    continue;
                }
                other => other,
            };
            warn!(relay = %relay.peer, ?other, "ack not taken; the relay keeps the envelopes until the next sync");
            break;
        }
    }
}

fn describe(e: DeliverError) -> String {
    format!("{e:?}")
}
