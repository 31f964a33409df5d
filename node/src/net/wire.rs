//! The `/tokenim/msg/1.0.0` request-response protocol: protobuf messages framed by an
//! unsigned-varint length, with a hard size limit checked before any allocation.

use std::io;

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
        Self {
            kind: Some(pb::response::Kind::Rejected(Rejected {
                code: code as i32,
                detail: detail.into(),
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
}

/// Codec for [`libp2p::request_response`]: one length-prefixed protobuf per direction.
#[derive(Debug, Clone, Copy, Default)]
pub struct Codec;

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io).await
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

async fn read_frame<T, M>(io: &mut T) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: Message + Default,
{
    let len = read_varint(io).await?;
    if len > MAX_FRAME_BYTES as u64 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds limit of {MAX_FRAME_BYTES}"),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    io.read_exact(&mut buf).await?;
    M::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn read_varint<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        io.read_exact(&mut byte).await?;
        value |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "varint too long",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec as _;

    #[test]
    fn frames_round_trip_and_oversized_frames_are_refused() {
        futures::executor::block_on(async {
            let mut codec = Codec;
            let req = Request::deliver(vec![7; 1000]);
            let mut buf = futures::io::Cursor::new(Vec::new());
            codec
                .write_request(&PROTOCOL, &mut buf, req.clone())
                .await
                .expect("write");
            let mut rd = futures::io::Cursor::new(buf.into_inner());
            let back = codec.read_request(&PROTOCOL, &mut rd).await.expect("read");
            assert_eq!(back, req);

            // A length prefix above the limit is refused before allocating.
            let huge = prost::encoding::encode_varint;
            let mut bytes = Vec::new();
            huge((MAX_FRAME_BYTES + 1) as u64, &mut bytes);
            let mut rd = futures::io::Cursor::new(bytes);
            let err = codec
                .read_request(&PROTOCOL, &mut rd)
                .await
                .expect_err("too big");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);

            // Garbage never panics.
            let mut rd = futures::io::Cursor::new(vec![0x05, 0xff, 0xff, 0xff, 0xff, 0xff]);
            assert!(codec.read_request(&PROTOCOL, &mut rd).await.is_err());
            let mut rd = futures::io::Cursor::new(vec![0xff; 20]);
            assert!(codec.read_request(&PROTOCOL, &mut rd).await.is_err());
        });
    }
}
