//! The `/tokenim/msg/1.0.0` request-response protocol: protobuf messages framed by an
//! unsigned-varint length, with a hard size limit checked before any allocation. A frame's
//! buffer grows only as its bytes arrive, and inbound requests being read share one budget of
//! bytes, so peers that claim large frames and stall cost the node what they sent.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use prost::Message;

/// Generated from `node/proto/tokenim/v1/wire.proto`.
#[allow(missing_docs, missing_debug_implementations, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/tokenim.v1.rs"));
}

pub use pb::{Accepted, Deliver, RejectCode, Rejected, Request, Response};

pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/tokenim/msg/1.0.0");

/// Most envelope bytes in one `store` request or one mailbox page.
pub const MAX_BATCH_BYTES: usize = 512 * 1024;

/// How long a sender refused with `STORAGE_FULL` is asked to wait: space comes back as owners
/// drain (seconds to minutes), and a sender that waits this long costs a full node nothing.
pub const STORAGE_FULL_RETRY_SECS: u32 = 10;

/// Largest frame accepted on the wire: a full batch or page plus protobuf framing (a few
/// bytes of tag, length and sequence number per envelope, and a receipt).
pub const MAX_FRAME_BYTES: usize = MAX_BATCH_BYTES + 16 * 1024;
const _: () = assert!(MAX_BATCH_BYTES >= tokenim_crypto::MAX_ENVELOPE_BYTES);

impl Response {
    pub fn accepted(duplicate: bool) -> Self {
        Self {
            kind: Some(pb::response::Kind::Accepted(Accepted { duplicate })),
        }
    }

    pub fn rejected(code: RejectCode, detail: impl Into<String>) -> Self {
        Self::rejected_retry_after(code, detail, 0)
    }

    /// `STORAGE_FULL`: the disk is full; the sender waits [`STORAGE_FULL_RETRY_SECS`].
    pub fn storage_full() -> Self {
        Self::rejected_retry_after(
            RejectCode::StorageFull,
            "disk full; retry later",
            STORAGE_FULL_RETRY_SECS,
        )
    }

    /// A refusal that asks the sender to wait `secs` before the next request of the kind.
    pub fn rejected_retry_after(code: RejectCode, detail: impl Into<String>, secs: u32) -> Self {
        Self {
            kind: Some(pb::response::Kind::Rejected(Rejected {
                code: code as i32,
                detail: detail.into(),
                retry_after_secs: secs,
            })),
        }
    }
}

impl Request {
    pub fn deliver(envelope: Vec<u8>) -> Self {
        Self {
            kind: Some(pb::request::Kind::Deliver(Deliver { envelope })),
        }
    }

    pub fn link(request: Vec<u8>, device_card: String) -> Self {
        Self {
            kind: Some(pb::request::Kind::Link(pb::Link {
                request,
                device_card,
            })),
        }
    }
}

/// Bytes that all inbound requests being read at once may hold, across every connection: a
/// node reads a full 528 KiB frame in milliseconds, so honest peers rarely have more than a
/// few in flight, and sixty of them fit; an attacker who sends parts of frames and stalls pins
/// no more than this (each stalled stream also costs a yamux stream and a task, bounded by
/// the connection and per-connection stream limits).
pub const READ_BUDGET_BYTES: usize = 32 << 20;

/// A frame's buffer is allocated when its first bytes arrive, this small, and doubles as more
/// arrive, in steps of at most `MAX_GROWTH`: it never holds more than twice what arrived
/// (at least `MIN_GROWTH`), nor more than `MAX_GROWTH` beyond it.
const MIN_GROWTH: usize = 1024;
const MAX_GROWTH: usize = 64 * 1024;
/// The most a read takes before the buffer exists.
const FIRST_READ: usize = 64;

/// The bytes that frames being read may hold, shared by every clone of a [`Codec`] (libp2p
/// clones the codec into each connection and each stream). A read that cannot get budget for
/// its next step fails its stream rather than allocate.
#[derive(Debug, Clone)]
pub struct ReadBudget {
    left: Arc<AtomicUsize>,
    total: usize,
}

impl ReadBudget {
    pub fn new(bytes: usize) -> Self {
        Self {
            left: Arc::new(AtomicUsize::new(bytes)),
            total: bytes,
        }
    }

    /// Bytes held by frames being read right now.
    pub fn in_use(&self) -> usize {
        self.total - self.left.load(Ordering::Acquire)
    }

    fn take(&self, bytes: usize) -> bool {
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                left.checked_sub(bytes)
            })
            .is_ok()
    }

    fn give(&self, bytes: usize) {
        self.left.fetch_add(bytes, Ordering::AcqRel);
    }
}

impl Default for ReadBudget {
    fn default() -> Self {
        Self::new(READ_BUDGET_BYTES)
    }
}

/// What one frame being read holds of a budget (none: unbudgeted); given back when dropped,
/// also when the read is abandoned (a timed-out or reset stream drops its future).
struct Held<'a> {
    budget: Option<&'a ReadBudget>,
    bytes: usize,
}

impl<'a> Held<'a> {
    fn new(budget: Option<&'a ReadBudget>) -> Self {
        Self { budget, bytes: 0 }
    }

    fn grow(&mut self, bytes: usize) -> io::Result<()> {
        if let Some(budget) = self.budget {
            if !budget.take(bytes) {
                return Err(io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!(
                        "frames being read hold the whole read budget of {} bytes; stream refused",
                        budget.total
                    ),
                ));
            }
            self.bytes += bytes;
        }
        Ok(())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(budget) = self.budget {
            budget.give(self.bytes);
        }
    }
}

/// Codec for [`libp2p::request_response`]: one length-prefixed protobuf per direction.
/// Inbound requests are read within a [`ReadBudget`] shared by all clones; responses (to
/// requests this node chose to send) are read the same incremental way, unbudgeted.
#[derive(Debug, Clone, Default)]
pub struct Codec {
    requests: ReadBudget,
}

impl Codec {
    pub fn new(requests: ReadBudget) -> Self {
        Self { requests }
    }
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, Some(&self.requests)).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, None).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Request,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

async fn write_frame<T, M>(io: &mut T, msg: &M) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
    M: Message,
{
    let len = msg.encoded_len();
    if len > MAX_FRAME_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "frame exceeds size limit",
        ));
    }
    io.write_all(&msg.encode_length_delimited_to_vec()).await?;
    io.close().await
}

async fn read_frame<T, M>(io: &mut T, budget: Option<&ReadBudget>) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: Message + Default,
{
    let len = read_len(io).await?;
    let mut held = Held::new(budget);
    let mut buf = Vec::new();
    read_body(io, len, &mut buf, &mut held).await?;
    M::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// The length prefix, checked against [`MAX_FRAME_BYTES`].
async fn read_len<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<usize> {
    let len = read_varint(io).await?;
    match usize::try_from(len) {
        Ok(len) if len <= MAX_FRAME_BYTES => Ok(len),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds limit of {MAX_FRAME_BYTES}"),
        )),
    }
}

/// Reads exactly `len` bytes into `buf`, which is allocated only once bytes arrive and then
/// grows with them (see `MIN_GROWTH`), each step taken from `held`'s budget first: a peer
/// that claims a large frame and stalls makes the node hold what it sent, not what it claimed.
async fn read_body<T: AsyncRead + Unpin + Send>(
    io: &mut T,
    len: usize,
    buf: &mut Vec<u8>,
    held: &mut Held<'_>,
) -> io::Result<()> {
    buf.clear();
    let mut filled = 0;
    while filled < len {
        let n = if filled == 0 {
            // The first bytes land on the stack: a stream that stalls after its length
            // prefix holds no buffer at all.
            let mut first = [0u8; FIRST_READ];
            let n = read_some(io, &mut first[..len.min(FIRST_READ)]).await?;
            if n > 0 {
                grow(buf, len, held)?;
                buf[..n].copy_from_slice(&first[..n]);
            }
            n
        } else {
            if filled == buf.len() {
                grow(buf, len, held)?;
            }
            read_some(io, &mut buf[filled..]).await?
        };
        if n == 0 {
            buf.truncate(filled);
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("frame truncated: stream ended after {filled} of {len} bytes"),
            ));
        }
        filled += n;
    }
    Ok(())
}

/// Grows a full `buf` by its next step towards `len`, budget first.
fn grow(buf: &mut Vec<u8>, len: usize, held: &mut Held<'_>) -> io::Result<()> {
    let have = buf.len();
    let step = have.clamp(MIN_GROWTH, MAX_GROWTH).min(len - have);
    held.grow(step)?;
    buf.reserve_exact(step);
    buf.resize(have + step, 0);
    Ok(())
}

/// One read, retried when interrupted (as `read_exact` does).
async fn read_some<T: AsyncRead + Unpin + Send>(io: &mut T, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match io.read(buf).await {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

async fn read_varint<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<u64> {
    let mut value = 0u64;
    for (i, shift) in (0..64).step_by(7).enumerate() {
        let mut byte = [0u8; 1];
        if read_some(io, &mut byte).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                if i == 0 {
                    "stream ended before a frame".to_string()
                } else {
                    format!("frame length prefix truncated after {i} bytes")
                },
            ));
        }
        // The tenth byte holds bit 63 only, and ends the prefix.
        if shift == 63 && byte[0] > 1 {
            break;
        }
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "frame length prefix over 64 bits",
    ))
}

#[cfg(test)]
mod tests;
