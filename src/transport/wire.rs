//! The peer wire format: length-prefixed frames.
//!
//! `[len u32 BE][kind u8][payload]`, `len` counting kind and payload. A
//! connection opens with a handshake that names the cluster and both node
//! ids and proves, both ways, that each side holds the cluster's key (see
//! `tcp.rs`): `Hello` (connector: who it is, who it wants, a nonce),
//! `Challenge` (acceptor: its nonce and its proof), `Proof` (connector).
//! Until it completes, a receiver accepts nothing else.
//! Messages larger than [`CHUNK`] travel as `Chunk` frames and are
//! reassembled by the receiver up to [`MAX_MESSAGE`]: one big entry never
//! needs one giant frame, and a frame header can never make the receiver
//! allocate more than [`MAX_FRAME`].
//!
//! A snapshot travels as a file, never whole in memory on either side: a
//! `SnapshotHead` frame carries the raft `MsgSnapshot` (its data empty)
//! and the file's length, and `Chunk` frames of that total carry the
//! file, which the receiver writes to disk as they come.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub const MAGIC: [u8; 4] = *b"CNCD";
/// 2: the hello carries a nonce and is answered by a challenge.
pub const VERSION: u8 = 2;
/// Nonce and proof sizes of the handshake.
pub const NONCE: usize = 16;
pub const PROOF: usize = 32;
/// Largest frame accepted.
pub const MAX_FRAME: usize = 2 * 1024 * 1024;
/// Messages above this size are sent in chunks of this size.
pub const CHUNK: usize = 1024 * 1024;
/// Largest reassembled message (a snapshot of the whole state).
pub const MAX_MESSAGE: u64 = 4 * 1024 * 1024 * 1024;

const HELLO: u8 = 1;
const RAFT: u8 = 2;
const CHUNKED: u8 = 3;
const FORWARD: u8 = 4;
const FORWARD_REPLY: u8 = 5;
const CHALLENGE: u8 = 6;
const PROOF_KIND: u8 = 7;
const SNAPSHOT_HEAD: u8 = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    Hello {
        cluster: u64,
        from: u64,
        to: u64,
        nonce: [u8; NONCE],
    },
    /// The acceptor's answer to a hello: its nonce, and its proof that it
    /// holds the cluster key.
    Challenge {
        nonce: [u8; NONCE],
        proof: [u8; PROOF],
    },
    /// The connector's proof that it holds the cluster key.
    Proof([u8; PROOF]),
    /// One protobuf-encoded raft `Message`.
    Raft(Bytes),
    /// Part of a message of `total` bytes, starting at `offset`.
    Chunk {
        total: u64,
        offset: u64,
        data: Bytes,
    },
    /// A `MsgSnapshot` whose file (of `file_len` bytes) follows as
    /// `Chunk` frames.
    SnapshotHead { file_len: u64, message: Bytes },
    /// A client request relayed to the leader.
    Forward { id: u64, body: Bytes },
    /// The leader's answer to a relayed request.
    ForwardReply { id: u64, body: Bytes },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME}")]
    FrameTooLarge(usize),
    #[error("empty frame")]
    Empty,
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    #[error("bad magic: not a concord peer")]
    BadMagic,
    #[error("peer speaks wire version {0}, this node {VERSION}")]
    Version(u8),
    #[error("chunk at {offset} of a {total}-byte message is out of order or too large")]
    BadChunk { total: u64, offset: u64 },
}

impl Frame {
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u32(0);
        match self {
            Frame::Hello {
                cluster,
                from,
                to,
                nonce,
            } => {
                out.put_u8(HELLO);
                out.put_slice(&MAGIC);
                out.put_u8(VERSION);
                out.put_u64(*cluster);
                out.put_u64(*from);
                out.put_u64(*to);
                out.put_slice(nonce);
            }
            Frame::Challenge { nonce, proof } => {
                out.put_u8(CHALLENGE);
                out.put_slice(nonce);
                out.put_slice(proof);
            }
            Frame::Proof(proof) => {
                out.put_u8(PROOF_KIND);
                out.put_slice(proof);
            }
            Frame::Raft(body) => {
                out.put_u8(RAFT);
                out.put_slice(body);
            }
            Frame::Chunk {
                total,
                offset,
                data,
            } => {
                out.put_u8(CHUNKED);
                out.put_u64(*total);
                out.put_u64(*offset);
                out.put_slice(data);
            }
            Frame::SnapshotHead { file_len, message } => {
                out.put_u8(SNAPSHOT_HEAD);
                out.put_u64(*file_len);
                out.put_slice(message);
            }
            Frame::Forward { id, body } => {
                out.put_u8(FORWARD);
                out.put_u64(*id);
                out.put_slice(body);
            }
            Frame::ForwardReply { id, body } => {
                out.put_u8(FORWARD_REPLY);
                out.put_u64(*id);
                out.put_slice(body);
            }
        }
        let len = (out.len() - start - 4) as u32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }

    /// Takes one frame off the front of `buf`; Ok(None) when incomplete.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(WireError::FrameTooLarge(len));
        }
        if len == 0 {
            return Err(WireError::Empty);
        }
        if buf.len() < 4 + len {
            buf.reserve(4 + len - buf.len());
            return Ok(None);
        }
        buf.advance(4);
        let mut body = buf.split_to(len).freeze();
        let kind = body.get_u8();
        let frame = match kind {
            HELLO => {
                if body.len() < 5 || body[..4] != MAGIC {
                    return Err(WireError::BadMagic);
                }
                body.advance(4);
                let version = body.get_u8();
                if version != VERSION {
                    return Err(WireError::Version(version));
                }
                if body.len() != 24 + NONCE {
                    return Err(WireError::Malformed("hello"));
                }
                let (cluster, from, to) = (body.get_u64(), body.get_u64(), body.get_u64());
                let mut nonce = [0u8; NONCE];
                body.copy_to_slice(&mut nonce);
                Frame::Hello {
                    cluster,
                    from,
                    to,
                    nonce,
                }
            }
            CHALLENGE => {
                if body.len() != NONCE + PROOF {
                    return Err(WireError::Malformed("challenge"));
                }
                let mut nonce = [0u8; NONCE];
                let mut proof = [0u8; PROOF];
                body.copy_to_slice(&mut nonce);
                body.copy_to_slice(&mut proof);
                Frame::Challenge { nonce, proof }
            }
            PROOF_KIND => {
                if body.len() != PROOF {
                    return Err(WireError::Malformed("proof"));
                }
                let mut proof = [0u8; PROOF];
                body.copy_to_slice(&mut proof);
                Frame::Proof(proof)
            }
            RAFT => Frame::Raft(body),
            CHUNKED => {
                if body.len() < 16 {
                    return Err(WireError::Malformed("chunk"));
                }
                let total = body.get_u64();
                let offset = body.get_u64();
                Frame::Chunk {
                    total,
                    offset,
                    data: body,
                }
            }
            SNAPSHOT_HEAD => {
                if body.len() < 8 {
                    return Err(WireError::Malformed("snapshot head"));
                }
                let file_len = body.get_u64();
                Frame::SnapshotHead {
                    file_len,
                    message: body,
                }
            }
            FORWARD | FORWARD_REPLY => {
                if body.len() < 8 {
                    return Err(WireError::Malformed("forward"));
                }
                let id = body.get_u64();
                if kind == FORWARD {
                    Frame::Forward { id, body }
                } else {
                    Frame::ForwardReply { id, body }
                }
            }
            other => return Err(WireError::UnknownKind(other)),
        };
        Ok(Some(frame))
    }
}

/// Splits an encoded message into the frames that carry it.
pub fn message_frames(message: Bytes) -> Vec<Frame> {
    if message.len() <= CHUNK {
        return vec![Frame::Raft(message)];
    }
    let total = message.len() as u64;
    (0..message.len())
        .step_by(CHUNK)
        .map(|start| Frame::Chunk {
            total,
            offset: start as u64,
            data: message.slice(start..(start + CHUNK).min(message.len())),
        })
        .collect()
}

/// Reassembles chunked messages on one connection.
#[derive(Default)]
pub struct Reassembly {
    buf: Option<(u64, BytesMut)>,
}

impl Reassembly {
    /// Adds a chunk; returns the message when it is complete.
    pub fn add(
        &mut self,
        total: u64,
        offset: u64,
        data: Bytes,
    ) -> Result<Option<Bytes>, WireError> {
        let bad = WireError::BadChunk { total, offset };
        if total > MAX_MESSAGE || total == 0 {
            return Err(bad);
        }
        if offset == 0 {
            self.buf = Some((total, BytesMut::with_capacity(total.min(64 << 20) as usize)));
        }
        let Some((expected_total, buf)) = self.buf.as_mut() else {
            return Err(bad);
        };
        if *expected_total != total
            || buf.len() as u64 != offset
            || offset + data.len() as u64 > total
        {
            self.buf = None;
            return Err(bad);
        }
        buf.extend_from_slice(&data);
        if buf.len() as u64 == total {
            let (_, done) = self.buf.take().expect("present");
            return Ok(Some(done.freeze()));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split_anywhere() {
        let frames = vec![
            Frame::Hello {
                cluster: 7,
                from: 1,
                to: 2,
                nonce: [3; NONCE],
            },
            Frame::Challenge {
                nonce: [4; NONCE],
                proof: [5; PROOF],
            },
            Frame::Proof([6; PROOF]),
            Frame::Raft(Bytes::from_static(b"raft")),
            Frame::Chunk {
                total: 10,
                offset: 0,
                data: Bytes::from_static(b"0123"),
            },
            Frame::SnapshotHead {
                file_len: 1 << 33,
                message: Bytes::from_static(b"msg"),
            },
            Frame::Forward {
                id: 9,
                body: Bytes::from_static(b"op"),
            },
            Frame::ForwardReply {
                id: 9,
                body: Bytes::new(),
            },
        ];
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            let mut got = Vec::new();
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                got.push(f);
            }
            buf.extend_from_slice(&wire[cut..]);
            while let Some(f) = Frame::decode(&mut buf).unwrap() {
                got.push(f);
            }
            assert_eq!(got, frames, "cut at {cut}");
        }
    }

    #[test]
    fn garbage_is_rejected_without_allocating() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]);
        assert!(matches!(
            Frame::decode(&mut buf),
            Err(WireError::FrameTooLarge(_))
        ));
        let mut hello = BytesMut::new();
        Frame::Hello {
            cluster: 1,
            from: 1,
            to: 2,
            nonce: [0; NONCE],
        }
        .encode(&mut hello);
        hello[5] = b'X';
        assert_eq!(Frame::decode(&mut hello), Err(WireError::BadMagic));
        let mut unknown = BytesMut::from(&[0, 0, 0, 1, 99][..]);
        assert_eq!(Frame::decode(&mut unknown), Err(WireError::UnknownKind(99)));
    }

    #[test]
    fn big_messages_are_chunked_and_reassembled() {
        let message = Bytes::from(vec![7u8; CHUNK * 2 + 5]);
        let frames = message_frames(message.clone());
        assert_eq!(frames.len(), 3);
        let mut r = Reassembly::default();
        let mut out = None;
        for f in frames {
            let Frame::Chunk {
                total,
                offset,
                data,
            } = f
            else {
                panic!()
            };
            out = r.add(total, offset, data).unwrap();
        }
        assert_eq!(out.unwrap(), message);
        assert!(
            r.add(10, 5, Bytes::from_static(b"x")).is_err(),
            "a chunk out of order"
        );
    }
}
