//! Shared state of the router.

use std::sync::Arc;

use crate::config::ApiConfig;
use crate::service::NodeService;
use crate::streams::EventStreams;

/// What every handler gets: the node, the HTTP settings, and the event streams' book-keeping
/// (slots, connections waiting for their auth frame, the token of each stream).
#[derive(Clone)]
pub struct AppState {
    pub(crate) service: Arc<dyn NodeService>,
    pub(crate) cfg: Arc<ApiConfig>,
    pub(crate) event_streams: Arc<EventStreams>,
}

impl AppState {
    pub fn new(service: Arc<dyn NodeService>, cfg: ApiConfig) -> Self {
        Self {
            service,
            event_streams: EventStreams::new(cfg.max_event_streams, cfg.max_pending_event_streams),
            cfg: Arc::new(cfg),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}
