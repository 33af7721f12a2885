//! Bodies as frames: data split off the connection's read buffer as it arrives (no copy),
//! in the message's framing — a length, chunked (RFC 9112 §7.1, with trailers), or until the
//! connection closes.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::parse::{self, BodyLength};

/// The longest chunk-size line accepted (size, extensions, CRLF). Extensions are ignored;
/// the bound keeps a client from making the proxy buffer an endless line.
const MAX_CHUNK_LINE: usize = 4096;

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The framing is malformed (a bad chunk size, missing CRLF, bad trailers).
    Invalid(String),
    /// The connection ended before the body did.
    Incomplete,
    /// Reading or writing the connection failed.
    Io(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Invalid(why) => write!(f, "malformed body: {why}"),
            BodyError::Incomplete => f.write_str("connection closed before the body ended"),
            BodyError::Io(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for BodyError {}

fn invalid(why: &str) -> BodyError {
    BodyError::Invalid(why.to_string())
}

/// What the next step of decoding produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// More bytes are needed.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then a blank line.
    Trailers,
}

/// Decodes one body from a connection's read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoder {
    Length(u64),
    Chunked(Chunk),
    Eof,
    Done,
}

impl Decoder {
    pub fn new(len: BodyLength) -> Self {
        match len {
            BodyLength::Empty | BodyLength::Length(0) => Decoder::Done,
            BodyLength::Length(n) => Decoder::Length(n),
            BodyLength::Chunked => Decoder::Chunked(Chunk::Size),
            BodyLength::Eof => Decoder::Eof,
        }
    }

    pub fn is_done(&self) -> bool {
        *self == Decoder::Done
    }

    /// Bytes left, for a body of known length.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// The next frame from `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, BodyError> {
        match self {
            Decoder::Done => Ok(Decoded::End),
            Decoder::Length(n) => {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let take = usize::try_from(*n).unwrap_or(usize::MAX).min(buf.len());
                *n -= take as u64;
                if *n == 0 {
                    *self = Decoder::Done;
                }
                Ok(Decoded::Data(buf.split_to(take).freeze()))
            }
            Decoder::Eof => {
                if buf.is_empty() {
                    Ok(Decoded::NeedMore)
                } else {
                    Ok(Decoded::Data(buf.split().freeze()))
                }
            }
            Decoder::Chunked(state) => {
                let (next, out) = chunked(*state, buf)?;
                *self = next;
                Ok(out)
            }
        }
    }

    /// The connection has ended: only a close-delimited body ends with it.
    pub fn at_eof(&mut self) -> Result<Decoded, BodyError> {
        match self {
            Decoder::Eof | Decoder::Done => {
                *self = Decoder::Done;
                Ok(Decoded::End)
            }
            _ => Err(BodyError::Incomplete),
        }
    }
}

/// One step of the chunked decoder: the next state and what it produced.
fn chunked(mut state: Chunk, buf: &mut BytesMut) -> Result<(Decoder, Decoded), BodyError> {
    loop {
        match state {
            Chunk::Size => {
                let Some(line_end) = buf
                    .windows(2)
                    .take(MAX_CHUNK_LINE)
                    .position(|w| w == b"\r\n")
                else {
                    if buf.len() >= MAX_CHUNK_LINE {
                        return Err(invalid("chunk-size line too long"));
                    }
                    return Ok((Decoder::Chunked(state), Decoded::NeedMore));
                };
                let size = chunk_size(&buf[..line_end])?;
                let _ = buf.split_to(line_end + 2);
                state = if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                };
            }
            Chunk::Data(n) => {
                if buf.is_empty() {
                    return Ok((Decoder::Chunked(state), Decoded::NeedMore));
                }
                let take = usize::try_from(n).unwrap_or(usize::MAX).min(buf.len());
                let left = n - take as u64;
                let next = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                let data = buf.split_to(take).freeze();
                return Ok((Decoder::Chunked(next), Decoded::Data(data)));
            }
            Chunk::DataEnd => {
                if buf.len() < 2 {
                    if buf.first().is_some_and(|b| *b != b'\r') {
                        return Err(invalid("chunk data not followed by CRLF"));
                    }
                    return Ok((Decoder::Chunked(state), Decoded::NeedMore));
                }
                if &buf[..2] != b"\r\n" {
                    return Err(invalid("chunk data not followed by CRLF"));
                }
                let _ = buf.split_to(2);
                state = Chunk::Size;
            }
            Chunk::Trailers => {
                if buf.starts_with(b"\r\n") {
                    let _ = buf.split_to(2);
                    return Ok((Decoder::Done, Decoded::End));
                }
                if buf.len() < 2 {
                    return Ok((Decoder::Chunked(state), Decoded::NeedMore));
                }
                return match parse::trailers(buf) {
                    Ok(Some(map)) => Ok((Decoder::Done, Decoded::Trailers(map))),
                    Ok(None) => Ok((Decoder::Chunked(state), Decoded::NeedMore)),
                    Err(e) => Err(BodyError::Invalid(format!("trailers: {e}"))),
                };
            }
        }
    }
}

/// A chunk-size line without its CRLF: hex digits, then optional extensions (`;...`),
/// which are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, BodyError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(invalid("missing chunk size"));
    }
    // 16 hex digits fill a u64; leading zeros beyond that are still a valid number, but no
    // honest sender writes them.
    if digits > 16 {
        return Err(invalid("chunk size too large"));
    }
    let mut size = 0u64;
    for b in &line[..digits] {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        size = (size << 4) | u64::from(d);
    }
    let rest = line[digits..].trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return Err(invalid("invalid chunk size"));
    }
    // Extensions: visible characters, spaces and tabs only (no bare CR or LF, no NUL).
    if rest
        .iter()
        .any(|b| !(b.is_ascii_graphic() || *b == b' ' || *b == b'\t' || *b >= 0x80))
    {
        return Err(invalid("invalid chunk extension"));
    }
    Ok(size)
}

#[cfg(test)]
pub(crate) fn decode_all(
    len: BodyLength,
    input: &[u8],
) -> Result<(Vec<u8>, Option<HeaderMap>), BodyError> {
    let mut d = Decoder::new(len);
    let mut buf = BytesMut::from(input);
    let (mut data, mut trailers) = (Vec::new(), None);
    loop {
        match d.decode(&mut buf)? {
            Decoded::Data(b) => data.extend_from_slice(&b),
            Decoded::Trailers(t) => trailers = Some(t),
            Decoded::End => return Ok((data, trailers)),
            Decoded::NeedMore => match d.at_eof()? {
                Decoded::End => return Ok((data, trailers)),
                _ => return Err(BodyError::Incomplete),
            },
        }
    }
}
