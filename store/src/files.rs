//! File transfers as the node keeps them: one record per file (uploaded here, or offered by a
//! peer in a message), the link from a message to its attachments, and the lookup of an
//! uploaded file by the root of its chunk list (how peers ask for its chunks). The chunks
//! themselves live in files on disk beside the database (the node's `files/` directory).

use prost::Message;

use crate::Result;
use crate::backend::Cf;
use crate::error::corrupt;
use crate::keys::{concat, prefix_end};
use crate::store::Store;

const RECORD: u8 = b'f';
const ATTACHMENT: u8 = b'm';
const ROOT: u8 = b'r';

/// Where a file stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileState {
    /// Uploaded by a local app: sealed on disk, ready to attach.
    Uploaded,
    /// Offered by a peer; not being fetched (above the automatic limit, or not asked for).
    Offered,
    /// Being fetched (or waiting to resume).
    Downloading,
    /// Every chunk here and the whole file verified.
    Complete,
    /// Gave up; `error` says why.
    Failed,
}

impl FileState {
    /// Stable lowercase name, as used by the local API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Offered => "offered",
            Self::Downloading => "downloading",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }

    fn code(self) -> u32 {
        match self {
            Self::Uploaded => 1,
            Self::Offered => 2,
            Self::Downloading => 3,
            Self::Complete => 4,
            Self::Failed => 5,
        }
    }

    fn from_code(c: u32) -> Option<Self> {
        Some(match c {
            1 => Self::Uploaded,
            2 => Self::Offered,
            3 => Self::Downloading,
            4 => Self::Complete,
            5 => Self::Failed,
            _ => return None,
        })
    }
}

/// One file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// Local id (random), the API's file id.
    pub id: [u8; 16],
    /// Uploaded here (true) or offered by a peer.
    pub outgoing: bool,
    /// The encoded manifest (it holds the file's key: the store keeps secrets as it keeps
    /// session state).
    pub manifest: Vec<u8>,
    pub name: String,
    pub mime: String,
    pub size: u64,
    pub sha256: [u8; 32],
    /// Root of the chunk list.
    pub root: [u8; 32],
    pub state: FileState,
    /// Chunks in the file.
    pub chunks: u32,
    /// Incoming: every chunk below this index is on disk and checked.
    pub next_chunk: u32,
    /// Incoming: who offered it (identity key).
    pub peer: [u8; 32],
    /// Incoming: where to fetch it (multiaddrs ending in `/p2p/<peer id>`).
    pub sources: Vec<String>,
    /// The message it came with or went out with, if any yet.
    pub message: Option<[u8; 16]>,
    /// Why it failed, or why it last stalled.
    pub error: String,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct FilePb {
    #[prost(bool, tag = "1")]
    outgoing: bool,
    #[prost(bytes = "vec", tag = "2")]
    manifest: Vec<u8>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    mime: String,
    #[prost(uint64, tag = "5")]
    size: u64,
    #[prost(bytes = "vec", tag = "6")]
    sha256: Vec<u8>,
    #[prost(bytes = "vec", tag = "7")]
    root: Vec<u8>,
    #[prost(uint32, tag = "8")]
    state: u32,
    #[prost(uint32, tag = "9")]
    chunks: u32,
    #[prost(uint32, tag = "10")]
    next_chunk: u32,
    #[prost(bytes = "vec", tag = "11")]
    peer: Vec<u8>,
    #[prost(string, repeated, tag = "12")]
    sources: Vec<String>,
    #[prost(bytes = "vec", optional, tag = "13")]
    message: Option<Vec<u8>>,
    #[prost(string, tag = "14")]
    error: String,
    #[prost(uint64, tag = "15")]
    created_at_ms: u64,
    #[prost(uint64, tag = "16")]
    updated_at_ms: u64,
}

const WHAT: &str = "file record";

fn array<const N: usize>(field: &str, v: &[u8]) -> Result<[u8; N]> {
    <[u8; N]>::try_from(v).map_err(|_| corrupt(WHAT, format!("{field}: {} bytes", v.len())))
}

impl FileRecord {
    fn to_bytes(&self) -> Vec<u8> {
        FilePb {
            outgoing: self.outgoing,
            manifest: self.manifest.clone(),
            name: self.name.clone(),
            mime: self.mime.clone(),
            size: self.size,
            sha256: self.sha256.to_vec(),
            root: self.root.to_vec(),
            state: self.state.code(),
            chunks: self.chunks,
            next_chunk: self.next_chunk,
            peer: self.peer.to_vec(),
            sources: self.sources.clone(),
            message: self.message.map(|m| m.to_vec()),
            error: self.error.clone(),
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
        }
        .encode_to_vec()
    }

    fn from_bytes(id: [u8; 16], b: &[u8]) -> Result<Self> {
        let p = FilePb::decode(b).map_err(|e| corrupt(WHAT, e.to_string()))?;
        Ok(Self {
            id,
            outgoing: p.outgoing,
            manifest: p.manifest,
            name: p.name,
            mime: p.mime,
            size: p.size,
            sha256: array("sha256", &p.sha256)?,
            root: array("root", &p.root)?,
            state: FileState::from_code(p.state)
                .ok_or_else(|| corrupt(WHAT, format!("state {}", p.state)))?,
            chunks: p.chunks,
            next_chunk: p.next_chunk,
            peer: array("peer", &p.peer)?,
            sources: p.sources,
            message: p.message.map(|m| array("message", &m)).transpose()?,
            error: p.error,
            created_at_ms: p.created_at_ms,
            updated_at_ms: p.updated_at_ms,
        })
    }
}

pub(crate) fn record_key(id: &[u8; 16]) -> Vec<u8> {
    concat(&[&[RECORD], id])
}

pub(crate) fn attachment_key(message: &[u8; 16], file: &[u8; 16]) -> Vec<u8> {
    concat(&[&[ATTACHMENT], message, file])
}

pub(crate) fn root_key(root: &[u8; 32], file: &[u8; 16]) -> Vec<u8> {
    concat(&[&[ROOT], root, file])
}

/// The operations that write `f` (its record, and its attachment and root rows).
pub(crate) fn rows(f: &FileRecord) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut rows = vec![(record_key(&f.id), f.to_bytes())];
    if let Some(m) = &f.message {
        rows.push((attachment_key(m, &f.id), Vec::new()));
    }
    if f.outgoing {
        rows.push((root_key(&f.root, &f.id), Vec::new()));
    }
    rows
}

/// The keys to delete with `f`.
pub(crate) fn keys(f: &FileRecord) -> Vec<Vec<u8>> {
    rows(f).into_iter().map(|(k, _)| k).collect()
}

fn ids_under(store: &Store, prefix: &[u8]) -> Result<Vec<[u8; 16]>> {
    let end = prefix_end(prefix);
    let mut out = Vec::new();
    store.scan_each(Cf::Files, prefix, end.as_deref(), |k, _| {
        out.push(array("key", &k[k.len() - 16..])?);
        Ok(())
    })?;
    Ok(out)
}

impl Store {
    pub fn get_file(&self, id: &[u8; 16]) -> Result<Option<FileRecord>> {
        self.be()
            .get(Cf::Files, &record_key(id))?
            .map(|v| FileRecord::from_bytes(*id, &v))
            .transpose()
    }

    /// Every file, in id order.
    pub fn list_files(&self) -> Result<Vec<FileRecord>> {
        let prefix = [RECORD];
        let end = prefix_end(&prefix);
        let mut out = Vec::new();
        self.scan_each(Cf::Files, &prefix, end.as_deref(), |k, v| {
            out.push(FileRecord::from_bytes(array("key", &k[1..])?, &v)?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The files attached to message `id`.
    pub fn files_of_message(&self, id: &[u8; 16]) -> Result<Vec<FileRecord>> {
        let mut out = Vec::new();
        for f in ids_under(self, &concat(&[&[ATTACHMENT], id]))? {
            if let Some(r) = self.get_file(&f)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// An uploaded file by the root of its chunk list.
    pub fn file_by_root(&self, root: &[u8; 32]) -> Result<Option<FileRecord>> {
        match ids_under(self, &concat(&[&[ROOT], root]))?.first() {
            Some(id) => self.get_file(id),
            None => Ok(None),
        }
    }
}
