//! Framing: a 4-byte unsigned big-endian length, then that many bytes of UTF-8 JSON.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The default limit on one frame: 32 MiB.
///
/// The largest legitimate frames are Python `BatchCommand`s: at most 1 500 spans per
/// request, a few hundred bytes each, plus `stack` tags (up to 50 frames of ~150 bytes)
/// on slow spans, which comes to a few MiB in the worst realistic case. 32 MiB leaves an
/// order of magnitude of headroom while keeping what one connection can make the agent
/// buffer bounded; bodies are read incrementally, so a lying length prefix alone does not
/// allocate the limit.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 32 << 20;

const LENGTH_PREFIX_BYTES: usize = 4;
/// Growth beyond this is paid for by bytes that actually arrived.
const INITIAL_BODY_CAPACITY: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the connection between frames: the normal end of a connection.
    #[error("connection closed")]
    Closed,
    #[error("connection closed in the middle of a frame ({got} of {expected} bytes received)")]
    Truncated { expected: usize, got: usize },
    #[error(
        "frame of {length} bytes exceeds the limit of {limit} bytes (raise the agent's max frame size if such requests are legitimate)"
    )]
    TooLarge { length: usize, limit: usize },
    #[error("reading or writing a frame failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads the length prefix of the next frame; [`FrameError::Closed`] on a clean end.
pub async fn read_length<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<usize, FrameError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let mut filled = 0;
    while filled < LENGTH_PREFIX_BYTES {
        match reader.read(&mut prefix[filled..]).await? {
            0 if filled == 0 => return Err(FrameError::Closed),
            0 => {
                return Err(FrameError::Truncated {
                    expected: LENGTH_PREFIX_BYTES,
                    got: filled,
                });
            }
            n => filled += n,
        }
    }
    let length = u32::from_be_bytes(prefix) as usize;
    if length > max_frame_bytes {
        return Err(FrameError::TooLarge {
            length,
            limit: max_frame_bytes,
        });
    }
    Ok(length)
}

/// Reads a frame body of `length` bytes.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    length: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut body = Vec::with_capacity(length.min(INITIAL_BODY_CAPACITY));
    let got = reader.take(length as u64).read_to_end(&mut body).await?;
    if got < length {
        return Err(FrameError::Truncated {
            expected: length,
            got,
        });
    }
    Ok(body)
}

/// Reads one whole frame.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max_frame_bytes: usize,
) -> Result<Vec<u8>, FrameError> {
    let length = read_length(reader, max_frame_bytes).await?;
    read_body(reader, length).await
}

/// Writes one frame in a single write, so a frame is never interleaved with another.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
) -> Result<(), FrameError> {
    let length = u32::try_from(payload.len()).map_err(|_| FrameError::TooLarge {
        length: payload.len(),
        limit: u32::MAX as usize,
    })?;
    let mut frame = Vec::with_capacity(LENGTH_PREFIX_BYTES + payload.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(payload);
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"{\"a\":1}").await.unwrap();
        write_frame(&mut wire, b"").await.unwrap();
        assert_eq!(&wire[..4], &[0, 0, 0, 7]);
        let mut reader = &wire[..];
        assert_eq!(read_frame(&mut reader, 100).await.unwrap(), b"{\"a\":1}");
        assert_eq!(read_frame(&mut reader, 100).await.unwrap(), b"");
        assert!(matches!(
            read_frame(&mut reader, 100).await,
            Err(FrameError::Closed)
        ));
    }

    #[tokio::test]
    async fn truncation_and_oversize_are_told_apart() {
        let mut reader: &[u8] = &[0, 0];
        assert!(matches!(
            read_frame(&mut reader, 100).await,
            Err(FrameError::Truncated {
                expected: 4,
                got: 2
            })
        ));
        let mut reader: &[u8] = &[0, 0, 0, 10, b'{'];
        assert!(matches!(
            read_frame(&mut reader, 100).await,
            Err(FrameError::Truncated {
                expected: 10,
                got: 1
            })
        ));
        let mut reader: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut reader, 100).await,
            Err(FrameError::TooLarge {
                length: 4_294_967_295,
                limit: 100
            })
        ));
    }
}
