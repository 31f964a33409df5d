//! TokenIM's own counters, registered in the same Prometheus registry as libp2p's.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Default)]
pub struct Metrics {
    pub messages_sent: Counter,
    pub messages_received: Counter,
    pub messages_delivered: Counter,
    pub messages_failed: Counter,
    pub delivery_attempts: Counter,
    pub envelopes_in: Counter,
    pub envelopes_rejected: Counter,
    pub envelopes_dropped: Counter,
    pub outbox_depth: Gauge,
    pub relay_queue: Gauge,
    pub relay_held_files: Gauge,
    pub relay_held_file_bytes: Gauge,
    pub relay_stored: Counter,
    pub relay_acked: Counter,
    pub relay_expired: Counter,
    pub relay_pushes_skipped: Counter,
    pub acks_rejected: Counter,
    pub requests: Gauge,
    pub requests_dropped: Counter,
    pub from_blocked: Counter,
    pub gossip_unvouched: Counter,
    pub file_chunks_served: Counter,
    pub file_chunks_fetched: Counter,
    pub file_chunks_refused: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("tokenim");
        let counters = [
            (
                "messages_sent",
                "Messages accepted from local apps",
                &m.messages_sent,
            ),
            (
                "file_chunks_served",
                "File chunks sent to peers that asked",
                &m.file_chunks_served,
            ),
            (
                "file_chunks_fetched",
                "File chunks fetched, checked and written",
                &m.file_chunks_fetched,
            ),
            (
                "file_chunks_refused",
                "File chunks fetched that did not match their id (fetched again)",
                &m.file_chunks_refused,
            ),
            (
                "messages_received",
                "New messages stored in the inbox",
                &m.messages_received,
            ),
            (
                "messages_delivered",
                "Sends confirmed by the recipient",
                &m.messages_delivered,
            ),
            (
                "messages_failed",
                "Sends given up (expired or rejected)",
                &m.messages_failed,
            ),
            (
                "delivery_attempts",
                "Delivery requests sent to peers",
                &m.delivery_attempts,
            ),
            (
                "envelopes_in",
                "Envelopes received from peers",
                &m.envelopes_in,
            ),
            (
                "envelopes_rejected",
                "Envelopes refused (malformed, foreign, undecryptable)",
                &m.envelopes_rejected,
            ),
            (
                "envelopes_dropped",
                "Envelopes that opened but can never be stored (dropped, so they hold nothing back)",
                &m.envelopes_dropped,
            ),
            (
                "requests_dropped",
                "Strangers' messages dropped: their request was full, or pushed out by newer ones",
                &m.requests_dropped,
            ),
            (
                "from_blocked",
                "Envelopes from blocked peers, dropped unread",
                &m.from_blocked,
            ),
            (
                "relay_stored",
                "Envelopes stored in mailboxes (relay role)",
                &m.relay_stored,
            ),
            (
                "relay_acked",
                "Mailbox envelopes deleted on the owner's ack",
                &m.relay_acked,
            ),
            (
                "relay_expired",
                "Mailbox envelopes deleted at their expiry",
                &m.relay_expired,
            ),
            (
                "relay_pushes_skipped",
                "New envelopes not pushed to their connected owner (too many pushes at once); \
                 the owner's next sync fetches them",
                &m.relay_pushes_skipped,
            ),
            (
                "acks_rejected",
                "Acks refused (malformed, forged, replayed, foreign)",
                &m.acks_rejected,
            ),
            (
                "gossip_unvouched",
                "Envelopes on the shard topics refused because no relay of this relay's mesh \
                 signed them within the time window (plain peers, relays outside the mesh, replays)",
                &m.gossip_unvouched,
            ),
        ];
        for (name, help, counter) in counters {
            r.register(name, help, counter.clone());
        }
        r.register(
            "outbox_depth",
            "Outbox entries not yet confirmed",
            m.outbox_depth.clone(),
        );
        r.register(
            "requests",
            "Message requests from strangers waiting for the user",
            m.requests.clone(),
        );
        r.register(
            "relay_queue",
            "Relay requests and gossip waiting for a relay thread",
            m.relay_queue.clone(),
        );
        r.register(
            "relay_held_files",
            "Files senders left at this relay for its mailboxes",
            m.relay_held_files.clone(),
        );
        r.register(
            "relay_held_file_bytes",
            "Bytes of the files left at this relay",
            m.relay_held_file_bytes.clone(),
        );
        m
    }
}
