//! `/tokenim/chunk/1.0.0`: file data on its own request-response protocol, so that bulk
//! transfers never wait behind (or hold up) chat messages on `/tokenim/msg`. Requests name a
//! chunk-list root (and an index); answers are checked by the asker against the root or the
//! chunk's id, so a source is never trusted.

use std::collections::HashMap;
use std::io;

use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol, request_response};
use prost::Message;
use tokio::sync::oneshot;
use tracing::debug;

use super::handle::{DeliverError, ServerSlot};
use super::wire::pb::{ChunkRequest, ChunkResponse, chunk_response};

pub(super) const PROTOCOL: StreamProtocol = StreamProtocol::new("/tokenim/chunk/1.0.0");

/// Largest request a relay reads: a put of a chunk list (as large as an answer).
const MAX_PUT_BYTES: usize = MAX_RESPONSE_BYTES + 128;
/// Largest request any other node reads (a root and an index): puts are for relays only, so a
/// peer cannot make a personal node buffer megabytes per stream.
const MAX_ASK_BYTES: usize = 128;
/// Largest answer: a chunk list of 2 GiB in 256 KiB chunks is 272 KiB; this allows files of
/// about 30 GiB at that chunk size (the node's size limit is lower by default).
pub(super) const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

impl ChunkResponse {
    pub fn data(bytes: Vec<u8>) -> Self {
        Self {
            kind: Some(chunk_response::Kind::Data(bytes)),
        }
    }

    pub fn missing(why: impl Into<String>) -> Self {
        Self {
            kind: Some(chunk_response::Kind::Missing(why.into())),
        }
    }

    pub fn done() -> Self {
        Self {
            kind: Some(chunk_response::Kind::Done(true)),
        }
    }

    pub fn busy(why: impl Into<String>) -> Self {
        Self {
            kind: Some(chunk_response::Kind::Busy(why.into())),
        }
    }
}

async fn read_frame<T, M>(io: &mut T, max: usize) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: Message + Default,
{
    let mut len: u64 = 0;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8; 1];
        io.read_exact(&mut b).await?;
        len |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("chunk frame of {len} bytes over the limit of {max}"),
        ));
    }
    // Grows as bytes arrive: a peer that claims a large frame and stalls costs what it sent.
    let mut buf = Vec::new();
    io.take(len as u64).read_to_end(&mut buf).await?;
    if buf.len() != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    M::decode(buf.as_slice()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(
    io: &mut T,
    msg: &impl Message,
) -> io::Result<()> {
    io.write_all(&msg.encode_length_delimited_to_vec()).await?;
    io.close().await
}

#[derive(Debug, Clone)]
pub(crate) struct Codec {
    max_request: usize,
}

impl Codec {
    /// A relay reads puts; other nodes only asks.
    pub(super) fn new(relay: bool) -> Self {
        Self {
            max_request: if relay { MAX_PUT_BYTES } else { MAX_ASK_BYTES },
        }
    }
}

impl request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = ChunkRequest;
    type Response = ChunkResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<ChunkRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_request).await
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ChunkResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, MAX_RESPONSE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: ChunkRequest,
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
        res: ChunkResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &res).await
    }
}

type PendingChunk = BoxFuture<
    'static,
    (
        request_response::ResponseChannel<ChunkResponse>,
        ChunkResponse,
    ),
>;

type Reply = oneshot::Sender<Result<ChunkResponse, DeliverError>>;

/// The swarm task's chunk traffic: requests it answers through the files service, and the
/// answers its own requests wait for.
#[derive(Default)]
pub(super) struct ChunkTraffic {
    pub(super) server: ServerSlot,
    pub(super) answering: FuturesUnordered<PendingChunk>,
    waiting: HashMap<request_response::OutboundRequestId, Reply>,
}

impl ChunkTraffic {
    pub(super) fn request(
        &mut self,
        rr: &mut request_response::Behaviour<Codec>,
        peer: PeerId,
        addrs: Vec<libp2p::Multiaddr>,
        request: ChunkRequest,
        reply: Reply,
    ) {
        let id = rr.send_request_with_addresses(&peer, request, addrs);
        self.waiting.insert(id, reply);
    }

    pub(super) fn on_event(
        &mut self,
        rr: &mut request_response::Behaviour<Codec>,
        event: request_response::Event<ChunkRequest, ChunkResponse>,
    ) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => match self.server.get() {
                Some(server) => {
                    let answer = server.serve(peer, request);
                    self.answering
                        .push(Box::pin(async move { (channel, answer.await) }));
                }
                None => {
                    let _ = rr.send_response(channel, ChunkResponse::missing("no files here"));
                }
            },
            Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(tx) = self.waiting.remove(&request_id) {
                    let _ = tx.send(Ok(response));
                }
            }
            Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(tx) = self.waiting.remove(&request_id) {
                    let _ = tx.send(Err(DeliverError::Unreachable(error.to_string())));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound chunk request failed");
            }
            Event::ResponseSent { .. } => {}
        }
    }
}
