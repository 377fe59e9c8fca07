//! The coordinator's half of a worker session as gRPC frames, each lease
//! piece handed to HTTP/2 as the shared slice it already is. tonic's own
//! encoder copies every message into a buffer of its own first: a 4K
//! frame's leases are about 235 MB, and that copy was 8% of a
//! coordinator's CPU. HTTP/2 then writes a piece's memory to the socket
//! without copying it either (h2 hands data of 256 bytes or more to a
//! vectored write as it is).

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::HeaderMap;
use http_body::{Body, Frame};
use prost::Message;
use prost::bytes::{BufMut, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint};
use tokio_stream::Stream;
use tonic::Status;

use crate::pb::coordinator_message::Body as Down;
use crate::pb::{Chunk, CoordinatorMessage};
use crate::{Bytes, MAX_MESSAGE_BYTES};

/// A lease piece at least this long is a frame of its own; a shorter one
/// is copied with its message (h2 would copy it anyway).
const SHARED_FROM: usize = 4096;

/// `CoordinatorMessage.lease_chunk`'s field number in `dreamfarm.proto`.
const LEASE_CHUNK_FIELD: u32 = 3;

/// `Chunk.data`'s field number in `dreamfarm.proto`.
const CHUNK_DATA_FIELD: u32 = 2;

/// gRPC's length prefix: a compression flag and the message's length.
const PREFIX_BYTES: usize = 5;

/// `message` as gRPC's length-prefixed form: one buffer, or for a lease
/// piece the buffer up to its data, then the data itself, uncopied. The
/// bytes are prost's, in prost's order (a chunk's `lease_id`, then its
/// `data`), so a worker reads the same message either way.
pub fn grpc_frames(message: CoordinatorMessage) -> Result<(Bytes, Option<Bytes>), Status> {
    let len = message.encoded_len();
    match message.body {
        Some(Down::LeaseChunk(chunk)) if chunk.data.len() >= SHARED_FROM => {
            let chunk_len = chunk.encoded_len();
            let Chunk { lease_id, data } = chunk;
            let mut buf = prefixed(len, len - data.len())?;
            encode_key(LEASE_CHUNK_FIELD, WireType::LengthDelimited, &mut buf);
            encode_varint(chunk_len as u64, &mut buf);
            let head = Chunk {
                lease_id,
                data: Bytes::new(),
            };
            head.encode_raw(&mut buf);
            encode_key(CHUNK_DATA_FIELD, WireType::LengthDelimited, &mut buf);
            encode_varint(data.len() as u64, &mut buf);
            Ok((buf.freeze(), Some(data)))
        }
        body => {
            let mut buf = prefixed(len, len)?;
            CoordinatorMessage { body }.encode_raw(&mut buf);
            Ok((buf.freeze(), None))
        }
    }
}

/// A buffer holding the length prefix of a `len`-byte message, with room
/// for the `room` bytes of it that will be copied in.
fn prefixed(len: usize, room: usize) -> Result<BytesMut, Status> {
    if len > MAX_MESSAGE_BYTES {
        return Err(Status::out_of_range(format!(
            "a message of {len} bytes is over the limit of {MAX_MESSAGE_BYTES}"
        )));
    }
    let mut buf = BytesMut::with_capacity(PREFIX_BYTES + room);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    Ok(buf)
}

/// The response body of a `Session` call: the coordinator's messages as
/// [`grpc_frames`], then the status as trailers (OK when the messages end,
/// or the error that ended them), as tonic's own body ends a call.
#[derive(Debug)]
pub struct SessionBody<S> {
    messages: S,
    /// A lease piece still to send after its head.
    piece: Option<Bytes>,
    /// Whether the trailers have gone.
    ended: bool,
}

impl<S> SessionBody<S> {
    /// The body that sends `messages`.
    pub fn new(messages: S) -> Self {
        Self {
            messages,
            piece: None,
            ended: false,
        }
    }
}

impl<S> Body for SessionBody<S>
where
    S: Stream<Item = Result<CoordinatorMessage, Status>> + Unpin,
{
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        if let Some(piece) = this.piece.take() {
            return Poll::Ready(Some(Ok(Frame::data(piece))));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        let status = match ready!(Pin::new(&mut this.messages).poll_next(cx)) {
            Some(Ok(message)) => match grpc_frames(message) {
                Ok((head, piece)) => {
                    this.piece = piece;
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                Err(status) => status,
            },
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        this.ended = true;
        let mut trailers = HeaderMap::new();
        Poll::Ready(Some(
            status
                .add_header(&mut trailers)
                .map(|()| Frame::trailers(trailers)),
        ))
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.piece.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::{LeaseStart, Revoke};

    /// What tonic's encoder sends for `message`.
    fn as_tonic_sends(message: &CoordinatorMessage) -> Vec<u8> {
        let body = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn joined((head, piece): (Bytes, Option<Bytes>)) -> Vec<u8> {
        let mut out = head.to_vec();
        out.extend_from_slice(piece.as_deref().unwrap_or_default());
        out
    }

    fn chunk(lease_id: u64, data: Bytes) -> CoordinatorMessage {
        CoordinatorMessage {
            body: Some(Down::LeaseChunk(Chunk { lease_id, data })),
        }
    }

    #[test]
    fn the_frames_are_the_bytes_tonic_would_send() {
        let data: Bytes = (0..crate::CHUNK_BYTES).map(|i| (i * 7) as u8).collect();
        let mut messages = vec![
            CoordinatorMessage {
                body: Some(Down::Revoke(Revoke { lease_id: 9 })),
            },
            CoordinatorMessage {
                body: Some(Down::LeaseStart(LeaseStart {
                    lease_id: 3,
                    model: "googlenet".into(),
                    width: 1100,
                    ..Default::default()
                })),
            },
            CoordinatorMessage { body: None },
        ];
        // Around the split, with lease ids of one byte and of ten.
        for len in [0, 1, SHARED_FROM - 1, SHARED_FROM, 200_000, data.len()] {
            for lease_id in [0, 1, u64::MAX] {
                messages.push(chunk(lease_id, data.slice(..len)));
            }
        }
        for message in messages {
            let expected = as_tonic_sends(&message);
            let frames = grpc_frames(message.clone()).unwrap();
            assert_eq!(joined(frames), expected, "{message:?}");
            let decoded = CoordinatorMessage::decode(&expected[PREFIX_BYTES..]).unwrap();
            assert_eq!(decoded, message);
        }
    }

    #[test]
    fn a_lease_piece_goes_out_as_its_own_memory() {
        let data: Bytes = vec![5; SHARED_FROM].into();
        let (head, piece) = grpc_frames(chunk(4, data.clone())).unwrap();
        let piece = piece.expect("a piece of its own");
        assert_eq!(piece.as_ptr(), data.as_ptr(), "the piece was copied");
        assert_eq!(piece.len(), data.len());
        assert!(head.len() < 32, "the head holds {} bytes", head.len());
        let small = grpc_frames(chunk(4, data.slice(..SHARED_FROM - 1))).unwrap();
        assert!(small.1.is_none(), "a short piece travels with its message");
    }

    #[test]
    fn a_message_over_the_limit_is_refused() {
        let data: Bytes = vec![0; MAX_MESSAGE_BYTES].into();
        let status = grpc_frames(chunk(1, data)).unwrap_err();
        assert_eq!(status.code(), tonic::Code::OutOfRange);
    }

    /// The frames of a body, polled to its end.
    async fn frames_of<S>(body: SessionBody<S>) -> Vec<Frame<Bytes>>
    where
        S: Stream<Item = Result<CoordinatorMessage, Status>> + Unpin,
    {
        let mut body = std::pin::pin!(body);
        let mut frames = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
            frames.push(frame.unwrap());
        }
        assert!(body.is_end_stream());
        frames
    }

    fn status_of(frame: &Frame<Bytes>) -> (String, String) {
        let trailers = frame.trailers_ref().expect("trailers last");
        let read = |name: &str| {
            trailers
                .get(name)
                .map_or("", |v| v.to_str().unwrap())
                .to_string()
        };
        (read("grpc-status"), read("grpc-message"))
    }

    #[tokio::test]
    async fn a_body_sends_each_message_then_the_status() {
        let data: Bytes = vec![1; 3 * SHARED_FROM].into();
        let messages = vec![
            Ok(chunk(1, data.clone())),
            Ok(CoordinatorMessage {
                body: Some(Down::Revoke(Revoke { lease_id: 1 })),
            }),
        ];
        let frames = frames_of(SessionBody::new(tokio_stream::iter(messages.clone()))).await;
        assert_eq!(frames.len(), 4, "head, piece, revoke, trailers");
        let sent: Vec<u8> = frames[..3]
            .iter()
            .flat_map(|f| f.data_ref().unwrap().to_vec())
            .collect();
        let expected: Vec<u8> = messages
            .iter()
            .flat_map(|m| as_tonic_sends(m.as_ref().unwrap()))
            .collect();
        assert_eq!(sent, expected);
        assert_eq!(status_of(&frames[3]), ("0".into(), String::new()));

        let ended = vec![
            Ok(chunk(2, Bytes::new())),
            Err(Status::unavailable("dropped for missing heartbeats")),
            Ok(chunk(3, Bytes::new())),
        ];
        let frames = frames_of(SessionBody::new(tokio_stream::iter(ended))).await;
        assert_eq!(
            frames.len(),
            2,
            "the message before the error, then its status"
        );
        let (code, message) = status_of(&frames[1]);
        assert_eq!(code, (tonic::Code::Unavailable as i32).to_string());
        assert!(message.contains("missing%20heartbeats"), "{message}");
    }
}
