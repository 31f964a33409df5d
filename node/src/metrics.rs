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
    pub outbox_depth: Gauge,
    pub relay_stored: Counter,
    pub relay_acked: Counter,
    pub acks_rejected: Counter,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("tokenim");
        r.register(
            "messages_sent",
            "Messages accepted from local apps",
            m.messages_sent.clone(),
        );
        r.register(
            "messages_received",
            "New messages stored in the inbox",
            m.messages_received.clone(),
        );
        r.register(
            "messages_delivered",
            "Sends confirmed by the recipient",
            m.messages_delivered.clone(),
        );
        r.register(
            "messages_failed",
            "Sends given up (expired or rejected)",
            m.messages_failed.clone(),
        );
        r.register(
            "delivery_attempts",
            "Delivery requests sent to peers",
            m.delivery_attempts.clone(),
        );
        r.register(
            "envelopes_in",
            "Envelopes received from peers",
            m.envelopes_in.clone(),
        );
        r.register(
            "envelopes_rejected",
            "Envelopes refused (malformed, foreign, undecryptable)",
            m.envelopes_rejected.clone(),
        );
        r.register(
            "outbox_depth",
            "Outbox entries not yet confirmed",
            m.outbox_depth.clone(),
        );
        m
    }
}
