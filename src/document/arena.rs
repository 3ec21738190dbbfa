//! Document bodies carved from shared chunks.
//!
//! The node sources make tens of thousands of small bodies a second, each kept
//! until its batch is delivered. One allocation and one free per body was an
//! eighth of the tail's CPU (docs/decisions.md §13); a [`BodyArena`] copies each
//! body into a shared chunk and splits it off as its own `Bytes`, so there is one
//! allocation and one free per chunk.

use bytes::{Bytes, BytesMut};

/// Bodies share chunks of this size (~15–20 documents each). A body bigger than
/// a quarter of it gets its own allocation, so a chunk never holds one large
/// body's leftovers. A body kept alive (retried, say) keeps its chunk alive: at
/// most 16 KiB.
pub const CHUNK: usize = 16 * 1024;

#[derive(Default)]
pub struct BodyArena {
    chunk: BytesMut,
}

impl BodyArena {
    pub fn new() -> Self {
        Self::default()
    }

    /// `body`, copied into the current chunk (a new one when it is full) or,
    /// when large, into an allocation of its own.
    pub fn carve(&mut self, body: &[u8]) -> Bytes {
        if body.len() > CHUNK / 4 {
            return Bytes::copy_from_slice(body);
        }
        if self.chunk.capacity() - self.chunk.len() < body.len() {
            self.chunk = BytesMut::with_capacity(CHUNK);
        }
        self.chunk.extend_from_slice(body);
        self.chunk.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_share_a_chunk_and_stay_intact() {
        let mut arena = BodyArena::new();
        let bodies: Vec<Vec<u8>> = (0..100).map(|i| vec![b'a' + (i % 26) as u8; 50 + i * 13]).collect();
        let carved: Vec<Bytes> = bodies.iter().map(|b| arena.carve(b)).collect();
        for (b, c) in bodies.iter().zip(&carved) {
            assert_eq!(&c[..], &b[..]);
        }
        // Neighbours in one chunk: the second starts where the first ends.
        assert_eq!(carved[0].as_ptr() as usize + carved[0].len(), carved[1].as_ptr() as usize);
        let big = arena.carve(&vec![b'z'; CHUNK]);
        assert_eq!(big.len(), CHUNK);
    }
}
