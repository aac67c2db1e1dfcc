//! Blobs (listing images): content-addressed, fetched in chunks, each chunk verifiable on
//! arrival.
//!
//! A blob is cut into chunks of [`CHUNK_BYTES`] (the last may be shorter). Its *manifest* is
//! `size (u64, big-endian) || blake3(chunk 0) || blake3(chunk 1) || …`, and the blob id is
//! `blake3("jangteo/v1/blob" || manifest)`. A fetcher first gets the manifest (checked against
//! the id), then each chunk (checked against its hash in the manifest), so a peer that lies is
//! caught at the first bad chunk, and nothing unverified is ever kept.

use crate::ids::ObjectId;

pub use crate::limits::{CHUNK_BYTES, MAX_BLOB_BYTES, MAX_CHUNKS, MAX_MANIFEST_BYTES};

const DOMAIN: &[u8] = b"jangteo/v1/blob";

/// Why blob bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    /// Empty or over the size limit.
    #[error("a blob must be 1 byte to {MAX_BLOB_BYTES} bytes; this one is {0}")]
    Size(usize),
    /// The manifest does not hash to the id, or is malformed.
    #[error("manifest does not match the blob id")]
    BadManifest,
    /// A chunk does not hash to its manifest entry (or has the wrong length).
    #[error("chunk {0} does not match the manifest")]
    BadChunk(usize),
}

/// A blob's manifest: its size and the hash of each chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Total size in bytes.
    pub size: u64,
    /// blake3 of each chunk.
    pub chunks: Vec<[u8; 32]>,
}

impl Manifest {
    /// Builds the manifest of `data`.
    pub fn of(data: &[u8]) -> Result<Self, BlobError> {
        if data.is_empty() || data.len() > MAX_BLOB_BYTES {
            return Err(BlobError::Size(data.len()));
        }
        Ok(Self {
            size: data.len() as u64,
            chunks: data
                .chunks(CHUNK_BYTES)
                .map(|c| *blake3::hash(c).as_bytes())
                .collect(),
        })
    }

    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 32 * self.chunks.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out
    }

    /// The blob id.
    pub fn id(&self) -> ObjectId {
        let mut h = blake3::Hasher::new();
        h.update(DOMAIN);
        h.update(&self.encode());
        ObjectId(*h.finalize().as_bytes())
    }

    /// Decodes a manifest received for `id`, checking it hashes to `id` and is consistent.
    pub fn decode_for(id: &ObjectId, bytes: &[u8]) -> Result<Self, BlobError> {
        if bytes.len() < 8 + 32
            || bytes.len() > MAX_MANIFEST_BYTES
            || !(bytes.len() - 8).is_multiple_of(32)
        {
            return Err(BlobError::BadManifest);
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&bytes[..8]);
        let m = Self {
            size: u64::from_be_bytes(size),
            chunks: bytes[8..]
                .chunks(32)
                .map(|c| {
                    let mut a = [0u8; 32];
                    a.copy_from_slice(c);
                    a
                })
                .collect(),
        };
        let size = usize::try_from(m.size).map_err(|_| BlobError::BadManifest)?;
        if size == 0 || size > MAX_BLOB_BYTES || size.div_ceil(CHUNK_BYTES) != m.chunks.len() {
            return Err(BlobError::BadManifest);
        }
        if m.id() != *id {
            return Err(BlobError::BadManifest);
        }
        Ok(m)
    }

    /// The length chunk `i` must have.
    pub fn chunk_len(&self, i: usize) -> usize {
        let size = self.size as usize;
        if i + 1 < self.chunks.len() {
            CHUNK_BYTES
        } else {
            size - CHUNK_BYTES * (self.chunks.len() - 1)
        }
    }

    /// Checks chunk `i`.
    pub fn verify_chunk(&self, i: usize, bytes: &[u8]) -> Result<(), BlobError> {
        let want = self.chunks.get(i).ok_or(BlobError::BadChunk(i))?;
        if bytes.len() != self.chunk_len(i) || blake3::hash(bytes).as_bytes() != want {
            return Err(BlobError::BadChunk(i));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_roundtrip_and_chunk_checks() {
        let data: Vec<u8> = (0..(CHUNK_BYTES * 2 + 1000))
            .map(|i| (i % 251) as u8)
            .collect();
        let m = Manifest::of(&data).expect("manifest");
        assert_eq!(m.chunks.len(), 3);
        let id = m.id();
        assert_eq!(Manifest::decode_for(&id, &m.encode()).expect("decodes"), m);
        for (i, c) in data.chunks(CHUNK_BYTES).enumerate() {
            m.verify_chunk(i, c).expect("chunk");
        }
        let mut bad = data[CHUNK_BYTES..2 * CHUNK_BYTES].to_vec();
        bad[7] ^= 1;
        assert_eq!(m.verify_chunk(1, &bad), Err(BlobError::BadChunk(1)));
        assert_eq!(m.verify_chunk(2, &data[..10]), Err(BlobError::BadChunk(2)));
        // A manifest for another id, or tampered, is refused.
        let mut enc = m.encode();
        enc[20] ^= 1;
        assert_eq!(Manifest::decode_for(&id, &enc), Err(BlobError::BadManifest));
        let other = Manifest::of(b"other").expect("m").id();
        assert_eq!(
            Manifest::decode_for(&other, &m.encode()),
            Err(BlobError::BadManifest)
        );
    }

    #[test]
    fn size_limits() {
        assert_eq!(Manifest::of(&[]), Err(BlobError::Size(0)));
        let big = vec![0u8; MAX_BLOB_BYTES + 1];
        assert_eq!(Manifest::of(&big), Err(BlobError::Size(MAX_BLOB_BYTES + 1)));
        Manifest::of(&big[..MAX_BLOB_BYTES]).expect("at the limit");
    }
}
