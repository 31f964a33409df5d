//! The local API's file routes and attachments, on the files service.

use futures::{StreamExt, TryStreamExt};
use tokenim_api::types::{FileList, FileView, MessageView};
use tokenim_api::{ByteStream, FileDownload, ServiceError, ServiceResult};
use tokenim_store::FileState;

use super::config::Config;
use super::errors::store_error;
use super::service::Service;
use super::views;
use crate::delivery::IdentityKey;
use crate::error::NodeError;
use crate::event::Events;
use crate::files::{FileError, FileNotice, FileSettings, Files, HoldLimits, Upload};
use crate::metrics::Metrics;
use crate::net::NetworkHandle;

/// Starts the files service with the node's settings (on a relay, holding files for its
/// mailboxes too).
pub(super) fn start(
    cfg: &Config,
    store: tokenim_store::Store,
    dir: std::path::PathBuf,
    net: &NetworkHandle,
    events: &Events,
    metrics: &Metrics,
    notices: tokio::sync::mpsc::Receiver<FileNotice>,
) -> Result<Files, NodeError> {
    let settings = FileSettings {
        max_size: cfg.limits.max_file_bytes,
        auto_download: cfg.limits.auto_download_bytes,
        hold: cfg.relay.enabled.then_some(HoldLimits {
            quota: cfg.relay.file_quota_bytes,
            retention_secs: cfg.relay.file_retention_secs,
        }),
        ..FileSettings::default()
    };
    Files::start(
        store,
        dir,
        net.clone(),
        events.clone(),
        settings,
        metrics.clone(),
        notices,
    )
    .map_err(|e| NodeError::Config(format!("files: {e}")))
}

impl From<FileError> for ServiceError {
    fn from(e: FileError) -> Self {
        match e {
            FileError::NotFound(m) => Self::NotFound(format!("file {m}")),
            FileError::Invalid(m) => Self::BadRequest(m),
            FileError::TooLarge { .. } => Self::PayloadTooLarge(e.to_string()),
            FileError::Conflict(m) => Self::Conflict(m),
            FileError::DiskFull(_) => Self::Unavailable(e.to_string()),
            FileError::Io(m) => Self::Internal(m),
            FileError::Store(s) => store_error(s),
        }
    }
}

fn parse_id(id: &str) -> ServiceResult<[u8; 16]> {
    let mut out = [0u8; 16];
    hex::decode_to_slice(id.trim(), &mut out)
        .map_err(|_| ServiceError::NotFound(format!("file {id}")))?;
    Ok(out)
}

impl Service {
    /// Stops the running downloads (at shutdown).
    pub(super) fn stop_files(&self) {
        if let Some(f) = &self.files {
            f.stop();
        }
    }

    fn files(&self) -> ServiceResult<&Files> {
        self.files
            .as_ref()
            .ok_or_else(|| ServiceError::Unavailable("this node keeps no files".into()))
    }

    pub(super) async fn upload_file(
        &self,
        name: String,
        mime: String,
        length: Option<u64>,
        body: ByteStream,
    ) -> ServiceResult<FileView> {
        let files = self.files()?;
        let max = files.settings().max_size;
        if let Some(len) = length.filter(|l| *l > max) {
            return Err(FileError::TooLarge { size: len, max }.into());
        }
        let body = body.map_ok(|b| b.to_vec()).boxed();
        let record = files.upload(Upload { name, mime, body }).await?;
        Ok(views::file(&record))
    }

    pub(super) fn list_files(&self) -> ServiceResult<FileList> {
        let service = self.files()?;
        Ok(FileList {
            files: service.list()?.iter().map(views::file).collect(),
            max_file_bytes: service.settings().max_size,
        })
    }

    pub(super) fn file_status(&self, id: &str) -> ServiceResult<FileView> {
        Ok(views::file(&self.files()?.get(&parse_id(id)?)?))
    }

    pub(super) fn download_file(&self, id: &str) -> ServiceResult<FileView> {
        Ok(views::file(&self.files()?.download(parse_id(id)?)?))
    }

    pub(super) fn delete_file(&self, id: &str) -> ServiceResult<()> {
        Ok(self.files()?.delete(parse_id(id)?)?)
    }

    pub(super) fn read_file(
        &self,
        id: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> ServiceResult<FileDownload> {
        let body = self.files()?.read(parse_id(id)?, range)?;
        Ok(FileDownload {
            name: body.name,
            mime: body.mime,
            size: body.size,
            start: body.start,
            end: body.end,
            body: body.stream.map_ok(tokenim_api::Bytes::from).boxed(),
        })
    }

    /// The manifests of uploads to attach, by the ids an app gave.
    fn manifests(&self, ids: &[String]) -> ServiceResult<Vec<[u8; 16]>> {
        if ids.len() > tokenim_crypto::MAX_ATTACHMENTS {
            return Err(ServiceError::BadRequest(format!(
                "at most {} attachments",
                tokenim_crypto::MAX_ATTACHMENTS
            )));
        }
        ids.iter().map(|i| parse_id(i)).collect()
    }

    /// Sends `body` (to a contact, or to `group`) with the uploads `attachments`, and links
    /// the files to the message.
    pub(super) async fn send_with_files(
        &self,
        to: Result<IdentityKey, [u8; 32]>,
        body: String,
        attachments: Vec<String>,
    ) -> ServiceResult<MessageView> {
        let files = self.files()?;
        let mut uploads = Vec::new();
        for id in self.manifests(&attachments)? {
            let f = files.get(&id)?;
            if f.state != FileState::Uploaded {
                return Err(ServiceError::Conflict(format!(
                    "file {} is not an upload of this node",
                    hex::encode(id)
                )));
            }
            uploads.push(f);
        }
        let manifests = uploads.iter().map(|f| f.manifest.clone()).collect();
        let record = match to {
            Ok(contact) => self.delivery.send_with(contact, body, manifests).await?,
            Err(group) => {
                self.delivery
                    .send_group_with(group, body, manifests)
                    .await?
            }
        };
        let mut txn = self.store.txn();
        for mut f in uploads {
            if f.message.is_none() {
                f.message = Some(record.id);
                txn = txn.put_file(&f);
            }
        }
        txn.commit().map_err(store_error)?;
        Ok(views::with_files(&self.store, views::message(&record)))
    }
}
