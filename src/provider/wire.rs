//! The provider wire format, acomm's, so that peers in any language interoperate:
//! a frame is a 4-byte big-endian length and that many bytes of UTF-8 JSON.
//!
//! Three messages travel in frames: a [`Request`] (caller → provider), the
//! provider's immediate [`Ack`] on the same connection, and the handler's
//! [`Response`], sent to the request's [`ResponseHook`] (which answers it with
//! an [`Ack`] of its own, as acomm's tracker does).
//!
//! Invariants: a frame is read whole or not at all, and never beyond the
//! reader's maximum size; a [`Request`] only exists with a non-empty id and
//! task and a usable response hook, so whoever holds one can answer it.

mod hook;
mod message;

pub use hook::{HookError, ResponseHook};
pub use message::{Ack, InvalidRequest, Refusal, Request, RequestId, Response};

use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::bytes::{Bytes, BytesMut};
use tokio_util::codec::{
    Decoder, Encoder, Framed, LengthDelimitedCodec, LengthDelimitedCodecError,
};

/// The largest frame read or written unless configured otherwise (4 MiB):
/// requests and responses are small JSON documents, and a length header is
/// trusted only this far before the bytes it announces are buffered.
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// A connection speaking the wire format.
pub type Frames<S> = Framed<S, FrameCodec>;

/// Frames `io` with the wire format, refusing frames longer than `max_frame`
/// bytes (in either direction).
pub fn framed<S: AsyncRead + AsyncWrite>(io: S, max_frame: usize) -> Frames<S> {
    Framed::new(io, FrameCodec::new(max_frame))
}

/// Sends `msg` as one frame.
pub async fn send<S, T>(frames: &mut Frames<S>, msg: &T) -> Result<(), WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: Serialize + ?Sized,
{
    let json = serde_json::to_vec(msg).map_err(|source| WireError::Encode { source })?;
    frames.send(Bytes::from(json)).await
}

/// Receives one frame and decodes it as a `T`; `None` when the peer closed the
/// connection between frames.
pub async fn receive<S, T>(frames: &mut Frames<S>) -> Result<Option<T>, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: DeserializeOwned,
{
    match receive_frame(frames).await? {
        None => Ok(None),
        Some(frame) => decode(&frame).map(Some),
    }
}

/// Receives one frame undecoded; `None` when the peer closed the connection
/// between frames.
pub async fn receive_frame<S>(frames: &mut Frames<S>) -> Result<Option<BytesMut>, WireError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    frames.next().await.transpose()
}

/// Decodes one frame's JSON as a `T`.
pub fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(frame).map_err(|source| WireError::Decode { source })
}

/// Why a frame could not be read, written or decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed.
    #[error("connection failed")]
    Io {
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A frame (announced by its header, or about to be sent) is longer than
    /// the maximum.
    #[error("frame longer than the maximum of {max} bytes")]
    FrameTooLarge {
        /// The maximum frame length in bytes.
        max: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame ({received} bytes of it received)")]
    Truncated {
        /// How many bytes of the unfinished frame (header or body) arrived.
        received: usize,
    },
    /// A frame is not the JSON message expected.
    #[error("frame is not the JSON message expected")]
    Decode {
        /// What serde_json refused.
        #[source]
        source: serde_json::Error,
    },
    /// A message could not be encoded as JSON.
    #[error("message cannot be encoded as JSON")]
    Encode {
        /// What serde_json refused.
        #[source]
        source: serde_json::Error,
    },
}

impl From<std::io::Error> for WireError {
    fn from(source: std::io::Error) -> Self {
        WireError::Io { source }
    }
}

/// acomm's framing: [`LengthDelimitedCodec`] with a 4-byte big-endian length
/// that counts the body only, with errors a caller can match on (an oversized
/// frame, a frame cut short) instead of generic I/O errors.
#[derive(Debug)]
pub struct FrameCodec {
    inner: LengthDelimitedCodec,
    max_frame: usize,
    /// A header was read and its body has not fully arrived.
    in_body: bool,
}

impl FrameCodec {
    /// A codec refusing frames longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        let inner = LengthDelimitedCodec::builder()
            .length_field_length(4)
            .big_endian()
            .max_frame_length(max_frame)
            .new_codec();
        Self {
            inner,
            max_frame,
            in_body: false,
        }
    }

    fn classify(&self, error: std::io::Error) -> WireError {
        let too_large = error
            .get_ref()
            .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
        if too_large {
            WireError::FrameTooLarge {
                max: self.max_frame,
            }
        } else {
            WireError::Io { source: error }
        }
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        let before = src.len();
        let frame = self.inner.decode(src).map_err(|e| self.classify(e))?;
        // The inner codec consumes a header as soon as it is whole and keeps
        // the body's length to itself: a shrunk buffer without a frame means a
        // body is now awaited.
        if frame.is_some() {
            self.in_body = false;
        } else if src.len() < before {
            self.in_body = true;
        }
        Ok(frame)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<BytesMut>, WireError> {
        match self.decode(buf)? {
            Some(frame) => Ok(Some(frame)),
            None if buf.is_empty() && !self.in_body => Ok(None),
            None => Err(WireError::Truncated {
                received: buf.len(),
            }),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = WireError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), WireError> {
        self.inner.encode(item, dst).map_err(|e| self.classify(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    /// Feeds `bytes` to a fresh codec in the chunks given, then ends the stream.
    fn decode_chunks(chunks: &[&[u8]], max: usize) -> Result<Vec<Vec<u8>>, WireError> {
        let mut codec = FrameCodec::new(max);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(frame) = codec.decode(&mut buf)? {
                frames.push(frame.to_vec());
            }
        }
        while let Some(frame) = codec.decode_eof(&mut buf)? {
            frames.push(frame.to_vec());
        }
        Ok(frames)
    }

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(body.len())
            .expect("test frames are small")
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(body);
        out
    }

    #[tokio::test]
    async fn a_message_is_a_big_endian_length_then_its_json() {
        let (client, mut server) = duplex(1024);
        let mut frames = framed(client, DEFAULT_MAX_FRAME);
        send(&mut frames, &json!({"id": "1"})).await.expect("send");
        let mut bytes = vec![0; 4 + 8];
        server.read_exact(&mut bytes).await.expect("read");
        assert_eq!(bytes, frame(br#"{"id":"1"}"#.as_slice())[..12]);
        assert_eq!(&bytes[..4], &[0, 0, 0, 10]);
    }

    #[tokio::test]
    async fn messages_round_trip_and_a_close_between_frames_is_none() {
        let (client, server) = duplex(1024);
        let mut sender = framed(client, DEFAULT_MAX_FRAME);
        let mut receiver = framed(server, DEFAULT_MAX_FRAME);
        send(&mut sender, &json!({"n": 1})).await.expect("send 1");
        send(&mut sender, &json!({"n": 2})).await.expect("send 2");
        drop(sender);
        let first: Option<Value> = receive(&mut receiver).await.expect("first");
        let second: Option<Value> = receive(&mut receiver).await.expect("second");
        let end: Option<Value> = receive(&mut receiver).await.expect("end");
        assert_eq!(first, Some(json!({"n": 1})));
        assert_eq!(second, Some(json!({"n": 2})));
        assert_eq!(end, None);
    }

    #[tokio::test]
    async fn a_frame_that_is_not_the_json_expected_is_a_decode_error() {
        let (client, mut server) = duplex(1024);
        let mut receiver = framed(client, DEFAULT_MAX_FRAME);
        server.write_all(&frame(b"not json")).await.expect("write");
        let error = receive::<_, Value>(&mut receiver)
            .await
            .expect_err("not JSON");
        assert!(matches!(error, WireError::Decode { .. }), "{error:?}");
    }

    #[tokio::test]
    async fn a_message_longer_than_the_maximum_is_not_sent() {
        let (client, _server) = duplex(1024);
        let mut sender = framed(client, 8);
        let error = send(&mut sender, &json!({"long": "enough"}))
            .await
            .expect_err("too long");
        assert!(
            matches!(error, WireError::FrameTooLarge { max: 8 }),
            "{error:?}"
        );
    }

    #[test]
    fn a_header_announcing_more_than_the_maximum_is_refused_before_its_body() {
        let header = 9u32.to_be_bytes();
        let error = decode_chunks(&[&header], 8).expect_err("too long");
        assert!(
            matches!(error, WireError::FrameTooLarge { max: 8 }),
            "{error:?}"
        );
    }

    #[test]
    fn a_frame_cut_short_is_truncated_wherever_it_is_cut() {
        let whole = frame(b"{\"id\":\"1\"}");
        for cut in 1..whole.len() {
            let error = decode_chunks(&[&whole[..cut]], DEFAULT_MAX_FRAME).expect_err("cut short");
            let expected = if cut < 4 { cut } else { cut - 4 };
            assert!(
                matches!(error, WireError::Truncated { received } if received == expected),
                "cut at {cut}: {error:?}"
            );
        }
    }

    #[test]
    fn an_empty_stream_and_an_empty_frame_are_not_errors() {
        assert_eq!(
            decode_chunks(&[], 8).expect("empty stream"),
            Vec::<Vec<u8>>::new()
        );
        assert_eq!(
            decode_chunks(&[&frame(b"")], 8).expect("empty frame"),
            vec![Vec::<u8>::new()]
        );
    }

    proptest! {
        /// However the bytes arrive, the same whole frames come out.
        #[test]
        fn frames_are_read_whole_however_the_bytes_arrive(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..5),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        ) {
            let stream: Vec<u8> = bodies.iter().flat_map(|body| frame(body)).collect();
            let mut points: Vec<usize> = cuts.iter().map(|cut| cut.index(stream.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for point in points {
                chunks.push(&stream[start..point]);
                start = point;
            }
            chunks.push(&stream[start..]);
            prop_assert_eq!(decode_chunks(&chunks, 64).expect("whole frames"), bodies);
        }
    }
}
