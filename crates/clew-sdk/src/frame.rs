//! The TCP request frame: a payload with trace context (and any other string headers)
//! in front of it.
//!
//! ```text
//! u32 big-endian header length H | H bytes: JSON object of string values
//! u32 big-endian payload length P | P bytes: the payload, opaque
//! ```
//!
//! The header is small JSON so that a frame is readable in a packet capture and other
//! languages can produce it with their standard library; the payload stays opaque bytes
//! so the application keeps its own encoding. Both lengths are checked against limits
//! before anything is allocated, so a corrupt or hostile length cannot exhaust memory.

use std::collections::BTreeMap;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Context;
use crate::propagation::{extract_context, inject_context};

/// The largest header accepted (64 KiB: W3C caps tracestate at 512 bytes and baggage at
/// 8 KiB, so this leaves room for application headers).
pub const MAX_HEADER_LEN: u32 = 64 * 1024;
/// The largest payload accepted by default (16 MiB).
pub const MAX_PAYLOAD_LEN: u32 = 16 * 1024 * 1024;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "frame header of {len} bytes exceeds the {max}-byte limit (is the peer speaking this protocol?)"
    )]
    HeaderTooLarge { len: u32, max: u32 },
    #[error("frame payload of {len} bytes exceeds the {max}-byte limit")]
    PayloadTooLarge { len: u32, max: u32 },
    #[error("frame header is not a JSON object of strings: {0}")]
    BadHeader(serde_json::Error),
    #[error("incomplete frame: {needed} more bytes needed")]
    Incomplete { needed: usize },
    #[error("the connection closed in the middle of a frame")]
    Truncated,
    #[error("frame part of {0} bytes does not fit a 32-bit length")]
    TooLong(usize),
}

/// One request or response on a TCP connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// `traceparent`, `tracestate`, `baggage`, and anything the application adds.
    pub headers: BTreeMap<String, String>,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            headers: BTreeMap::new(),
            payload: payload.into(),
        }
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.insert(key.into(), value.into());
        self
    }

    /// Writes `cx` (span and baggage) into the headers.
    pub fn inject(&mut self, cx: &Context) {
        inject_context(cx, &mut self.headers);
    }

    pub fn with_context(mut self, cx: &Context) -> Frame {
        self.inject(cx);
        self
    }

    /// The context that came with this frame (no span if absent or malformed).
    pub fn context(&self) -> Context {
        extract_context(&self.headers)
    }

    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let header = serde_json::to_vec(&self.headers).expect("a map of strings serializes");
        let header_len = len_u32(header.len())?;
        let payload_len = len_u32(self.payload.len())?;
        let mut out = Vec::with_capacity(8 + header.len() + self.payload.len());
        out.extend_from_slice(&header_len.to_be_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        Ok(out)
    }

    /// Reads one frame from the start of `bytes`, returning it and the bytes it took.
    /// [`FrameError::Incomplete`] says how many more bytes a partial frame needs.
    pub fn decode(bytes: &[u8]) -> Result<(Frame, usize), FrameError> {
        Frame::decode_limited(bytes, MAX_PAYLOAD_LEN)
    }

    pub fn decode_limited(bytes: &[u8], max_payload: u32) -> Result<(Frame, usize), FrameError> {
        let header_len = read_len(bytes, 0)?;
        check(header_len, MAX_HEADER_LEN, true)?;
        let header_end = 4 + header_len as usize;
        need(bytes, header_end + 4)?;
        let payload_len = read_len(bytes, header_end)?;
        check(payload_len, max_payload, false)?;
        let end = header_end + 4 + payload_len as usize;
        need(bytes, end)?;
        let headers = parse_header(&bytes[4..header_end])?;
        Ok((
            Frame {
                headers,
                payload: bytes[header_end + 4..end].to_vec(),
            },
            end,
        ))
    }

    /// Reads one frame. `Ok(None)` when the peer closed the connection cleanly before
    /// a new frame began; [`FrameError::Truncated`] when it closed in the middle of one.
    pub async fn read_from<R: AsyncRead + Unpin + ?Sized>(
        reader: &mut R,
    ) -> Result<Option<Frame>, FrameError> {
        Frame::read_limited(reader, MAX_PAYLOAD_LEN).await
    }

    pub async fn read_limited<R: AsyncRead + Unpin + ?Sized>(
        reader: &mut R,
        max_payload: u32,
    ) -> Result<Option<Frame>, FrameError> {
        let mut len = [0u8; 4];
        let mut filled = 0;
        while filled < 4 {
            let n = reader.read(&mut len[filled..]).await?;
            if n == 0 {
                return if filled == 0 {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
            filled += n;
        }
        let header_len = u32::from_be_bytes(len);
        check(header_len, MAX_HEADER_LEN, true)?;
        let mut header = vec![0u8; header_len as usize];
        read_exact(reader, &mut header).await?;
        read_exact(reader, &mut len).await?;
        let payload_len = u32::from_be_bytes(len);
        check(payload_len, max_payload, false)?;
        let mut payload = vec![0u8; payload_len as usize];
        read_exact(reader, &mut payload).await?;
        Ok(Some(Frame {
            headers: parse_header(&header)?,
            payload,
        }))
    }

    pub async fn write_to<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        writer: &mut W,
    ) -> Result<(), FrameError> {
        writer.write_all(&self.encode()?).await?;
        writer.flush().await?;
        Ok(())
    }
}

fn len_u32(len: usize) -> Result<u32, FrameError> {
    u32::try_from(len).map_err(|_| FrameError::TooLong(len))
}

fn need(bytes: &[u8], len: usize) -> Result<(), FrameError> {
    if bytes.len() < len {
        Err(FrameError::Incomplete {
            needed: len - bytes.len(),
        })
    } else {
        Ok(())
    }
}

fn read_len(bytes: &[u8], at: usize) -> Result<u32, FrameError> {
    need(bytes, at + 4)?;
    Ok(u32::from_be_bytes(
        bytes[at..at + 4].try_into().expect("4 bytes"),
    ))
}

fn check(len: u32, max: u32, header: bool) -> Result<(), FrameError> {
    match (len > max, header) {
        (false, _) => Ok(()),
        (true, true) => Err(FrameError::HeaderTooLarge { len, max }),
        (true, false) => Err(FrameError::PayloadTooLarge { len, max }),
    }
}

fn parse_header(bytes: &[u8]) -> Result<BTreeMap<String, String>, FrameError> {
    serde_json::from_slice(bytes).map_err(FrameError::BadHeader)
}

async fn read_exact<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    buf: &mut [u8],
) -> Result<(), FrameError> {
    match reader.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(FrameError::Io(e)),
    }
}
