//! Reading a file for an app: the chunks a byte range covers, read and opened one at a time
//! (nothing else is held in memory); only uploads and verified downloads are readable.

use futures::StreamExt;
use tokenim_crypto::file::{FileManifest, open_chunk};
use tokenim_store::FileState;

use super::{ByteStream, FileError, Files, disk};

/// A file's bytes `start..end` (end exclusive), streamed.
pub(crate) struct FileBody {
    pub(crate) name: String,
    pub(crate) mime: String,
    pub(crate) size: u64,
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) stream: ByteStream,
}

impl Files {
    /// `range`: the first byte and the last (inclusive, as HTTP `Range` says), if any.
    pub(crate) fn read(
        &self,
        id: [u8; 16],
        range: Option<(u64, Option<u64>)>,
    ) -> Result<FileBody, FileError> {
        let f = self.get(&id)?;
        if !matches!(f.state, FileState::Uploaded | FileState::Complete) {
            return Err(FileError::Conflict(format!(
                "file {} is {}: not all of it is here and verified yet",
                hex::encode(id),
                f.state.as_str()
            )));
        }
        let manifest = FileManifest::from_bytes(&f.manifest, u64::MAX)
            .map_err(|e| FileError::Io(format!("stored manifest: {e}")))?;
        let (start, end) = match range {
            None => (0, f.size),
            Some((s, last)) => {
                let end = last.map_or(f.size, |l| l.saturating_add(1).min(f.size));
                if s >= end {
                    return Err(FileError::Invalid(format!(
                        "range {s}-{} outside a file of {} bytes",
                        last.map_or(String::new(), |l| l.to_string()),
                        f.size
                    )));
                }
                (s, end)
            }
        };
        let chunk = u64::from(manifest.chunk_size());
        let count = manifest.chunk_count();
        let enc = disk::enc_path(&self.0.dir, &id);
        let first = u32::try_from(start / chunk).unwrap_or(u32::MAX);
        let stream = futures::stream::unfold(first, move |index| {
            let enc = enc.clone();
            let manifest = manifest.clone();
            async move {
                let chunk_start = u64::from(index) * chunk;
                if chunk_start >= end || index >= count {
                    return None;
                }
                let out = async {
                    let len = manifest
                        .chunk_len(index)
                        .ok_or_else(|| std::io::Error::other("chunk past the last"))?;
                    let at = disk::offset(manifest.chunk_size(), index);
                    let sealed = disk::read_at(enc, at, len)
                        .await
                        .map_err(std::io::Error::other)?;
                    let last = index + 1 == count;
                    let plain = open_chunk(manifest.key(), index, last, &sealed)
                        .map_err(std::io::Error::other)?;
                    let from = start.saturating_sub(chunk_start) as usize;
                    let to = ((end - chunk_start) as usize).min(plain.len());
                    let mut plain = plain;
                    plain.truncate(to);
                    plain.drain(..from.min(to));
                    Ok(plain)
                }
                .await;
                Some((out, index + 1))
            }
        });
        Ok(FileBody {
            name: f.name,
            mime: f.mime,
            size: f.size,
            start,
            end,
            stream: stream.boxed(),
        })
    }
}
