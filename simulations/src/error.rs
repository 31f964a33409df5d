use tokenim_node::NodeError;

/// Everything that can stop a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("scenario: {0}")]
    Scenario(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("node {index}: {source}")]
    Node {
        index: usize,
        #[source]
        source: NodeError,
    },
    #[error("node {index}: {message}")]
    Service { index: usize, message: String },
    #[error("plot {0}: {1}")]
    Plot(String, String),
    #[error("writing json: {0}")]
    Json(#[from] serde_json::Error),
}
