//! Uploads: an app's bytes, sealed chunk by chunk as they stream in, appended to the file's
//! `.enc`; only one chunk is held in memory. A body over the limit is refused before its
//! excess is stored, and a failed upload leaves nothing behind.

use futures::StreamExt;
use tokenim_crypto::file::{DEFAULT_CHUNK_SIZE, FileSealer, check_file_name, check_mime};
use tokenim_store::{FileRecord, FileState};
use tokio::io::AsyncWriteExt;

use super::{ByteStream, FileError, Files, Upload, disk};

fn now_ms() -> u64 {
    crate::time::now_ms()
}

impl Files {
    pub(crate) async fn upload(&self, upload: Upload) -> Result<FileRecord, FileError> {
        let Upload { name, mime, body } = upload;
        check_file_name(&name).map_err(|e| FileError::Invalid(format!("file name: {e}")))?;
        check_mime(&mime).map_err(|e| FileError::Invalid(format!("file type: {e}")))?;
        let id: [u8; 16] = rand::random();
        let result = self.seal_upload(id, &name, &mime, body).await;
        if result.is_err() {
            disk::remove(&self.0.dir, &id);
        }
        result
    }

    async fn seal_upload(
        &self,
        id: [u8; 16],
        name: &str,
        mime: &str,
        mut body: ByteStream,
    ) -> Result<FileRecord, FileError> {
        let max = self.0.settings.max_size;
        let chunk = DEFAULT_CHUNK_SIZE as usize;
        let mut sealer = FileSealer::new(DEFAULT_CHUNK_SIZE)
            .map_err(|e| FileError::Io(format!("file key: {e}")))?;
        let path = disk::enc_path(&self.0.dir, &id);
        let mut out = tokio::io::BufWriter::new(
            tokio::fs::File::create(&path)
                .await
                .map_err(|e| FileError::io("creating a file", &e))?,
        );
        let mut buf: Vec<u8> = Vec::with_capacity(chunk);
        let mut size: u64 = 0;
        while let Some(part) = body.next().await {
            let part = part.map_err(|e| FileError::Invalid(format!("upload interrupted: {e}")))?;
            size += part.len() as u64;
            if size > max {
                return Err(FileError::TooLarge { size, max });
            }
            let mut rest: &[u8] = &part;
            while !rest.is_empty() {
                let take = (chunk - buf.len()).min(rest.len());
                buf.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                if buf.len() == chunk {
                    let (_, sealed) = sealer
                        .push(&buf)
                        .map_err(|e| FileError::Invalid(e.to_string()))?;
                    out.write_all(&sealed)
                        .await
                        .map_err(|e| FileError::io("writing a file", &e))?;
                    buf.clear();
                }
            }
        }
        // The last chunk is the short one (empty when the size is a multiple of the chunk).
        let (_, sealed) = sealer
            .push(&buf)
            .map_err(|e| FileError::Invalid(e.to_string()))?;
        out.write_all(&sealed)
            .await
            .map_err(|e| FileError::io("writing a file", &e))?;
        out.flush()
            .await
            .map_err(|e| FileError::io("writing a file", &e))?;
        out.get_ref()
            .sync_data()
            .await
            .map_err(|e| FileError::io("flushing a file", &e))?;
        let (manifest, list) = sealer
            .finish(name, mime)
            .map_err(|e| FileError::Invalid(e.to_string()))?;
        disk::write(disk::list_path(&self.0.dir, &id), list.to_bytes()).await?;
        let now = now_ms();
        let record = FileRecord {
            id,
            outgoing: true,
            manifest: manifest.to_bytes().to_vec(),
            name: name.to_owned(),
            mime: mime.to_owned(),
            size: manifest.size(),
            sha256: *manifest.sha256(),
            root: *manifest.root(),
            state: FileState::Uploaded,
            chunks: manifest.chunk_count(),
            next_chunk: manifest.chunk_count(),
            peer: [0; 32],
            sources: Vec::new(),
            message: None,
            error: String::new(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        self.0.store.txn().put_file(&record).commit_durable()?;
        Ok(record)
    }
}
