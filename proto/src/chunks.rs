//! Payloads of any size in pieces of at most [`CHUNK_BYTES`], and their
//! reassembly against the length the header announced.

use crate::{CHUNK_BYTES, WireError};

/// `bytes` cut into pieces of at most [`CHUNK_BYTES`] (none for an empty
/// payload), each made as it is taken: a payload streamed through this is
/// held once, not a second time in pieces.
pub fn split(bytes: Vec<u8>) -> impl Iterator<Item = Vec<u8>> {
    (0..bytes.len())
        .step_by(CHUNK_BYTES)
        .map(move |at| bytes[at..bytes.len().min(at + CHUNK_BYTES)].to_vec())
}

/// Collects the pieces of one payload of a known length.
#[derive(Debug)]
pub struct Assembler {
    expected: u64,
    buf: Vec<u8>,
}

impl Assembler {
    /// Expects `expected` bytes (announced by a header that was checked
    /// against the protocol's limits). Memory grows as bytes arrive, so an
    /// announced length alone cannot make the receiver allocate.
    pub fn new(expected: u64) -> Self {
        Self {
            expected,
            buf: Vec::new(),
        }
    }

    /// Adds a piece; refuses one that overruns the announced length or is
    /// bigger than a chunk.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), WireError> {
        let got = self.buf.len() as u64 + piece.len() as u64;
        if piece.len() > CHUNK_BYTES || got > self.expected {
            return Err(WireError::Length {
                expected: self.expected,
                got,
            });
        }
        self.buf.extend_from_slice(piece);
        Ok(())
    }

    /// Whether every announced byte has arrived.
    pub fn is_complete(&self) -> bool {
        self.buf.len() as u64 == self.expected
    }

    /// The payload, once complete.
    pub fn finish(self) -> Result<Vec<u8>, WireError> {
        if !self.is_complete() {
            return Err(WireError::Length {
                expected: self.expected,
                got: self.buf.len() as u64,
            });
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_reassemble() {
        let data: Vec<u8> = (0..(2 * CHUNK_BYTES + 5)).map(|i| i as u8).collect();
        let pieces: Vec<_> = split(data.clone()).collect();
        assert_eq!(pieces.len(), 3);
        let mut a = Assembler::new(data.len() as u64);
        for p in &pieces {
            assert!(!a.is_complete());
            a.push(p).unwrap();
        }
        assert_eq!(a.finish().unwrap(), data);
    }

    #[test]
    fn overruns_and_short_payloads_are_refused() {
        let mut a = Assembler::new(4);
        a.push(&[1, 2, 3]).unwrap();
        assert!(a.push(&[4, 5]).is_err());
        assert!(a.finish().is_err());
        assert!(
            Assembler::new(u64::MAX)
                .push(&vec![0; CHUNK_BYTES + 1])
                .is_err()
        );
    }
}
