//! Proof-of-work stamps (SPEC §12): hashcash over a 32-byte subject, so that what a free key
//! can send costs CPU time that every node can check with one hash.
//!
//! A stamp is a `u64` nonce. Its work hash is blake3 in key-derivation mode under a context
//! string naming what is stamped, over `subject || nonce` (nonce as 8 little-endian bytes).
//! The stamp is worth the number of leading zero bits of that hash. The subject is chosen by
//! the kind that carries the stamp (for example the hash of its body without the stamp), so a
//! stamp cannot be moved to another object, and contexts keep one kind's work from counting
//! for another.
//!
//! Difficulties are chosen where stamps are required, not here; finding a stamp of `bits`
//! bits takes 2^`bits` work hashes on average.

/// Context of the stamp on a first-contact direct message.
pub const MESSAGE_CONTEXT: &str = "jangteo 2026-11 stamp message v1";
/// Context of the stamp on a listing version.
pub const LISTING_CONTEXT: &str = "jangteo 2026-11 stamp listing v1";
/// Context of the stamp on an attestation.
pub const ATTESTATION_CONTEXT: &str = "jangteo 2026-11 stamp attestation v1";

/// Highest difficulty a rule may ask for: beyond this no honest sender could pay.
pub const MAX_BITS: u32 = 40;

/// Why a stamp does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// The stamp's work is below what the rule asks.
    #[error("stamp too cheap: {got} bits of work, {needed} needed")]
    TooCheap {
        /// Leading zero bits of the stamp's work hash.
        got: u32,
        /// The difficulty asked for.
        needed: u32,
    },
}

/// Computes work hashes of one subject under one context; the prefix is hashed once.
#[derive(Clone, Debug)]
pub struct Worker {
    base: blake3::Hasher,
}

impl Worker {
    /// A worker for `subject` under `context`.
    pub fn new(context: &str, subject: &[u8; 32]) -> Self {
        let mut base = blake3::Hasher::new_derive_key(context);
        base.update(subject);
        Self { base }
    }

    /// The work hash of `nonce`.
    pub fn hash(&self, nonce: u64) -> [u8; 32] {
        let mut h = self.base.clone();
        h.update(&nonce.to_le_bytes());
        *h.finalize().as_bytes()
    }

    /// Leading zero bits of `nonce`'s work hash.
    pub fn bits(&self, nonce: u64) -> u32 {
        leading_zero_bits(&self.hash(nonce))
    }

    /// Tries the nonces `start..start + tries` in order and returns the first worth at least
    /// `bits`, or `None` when none is (callers that must stay responsive search in slices).
    pub fn search(&self, bits: u32, start: u64, tries: u64) -> Option<u64> {
        let end = start.saturating_add(tries);
        (start..end).find(|&n| self.bits(n) >= bits)
    }
}

/// Leading zero bits of a hash, most significant bit of byte 0 first.
pub fn leading_zero_bits(hash: &[u8; 32]) -> u32 {
    let mut bits = 0;
    for &b in hash {
        if b == 0 {
            bits += 8;
        } else {
            return bits + b.leading_zeros();
        }
    }
    bits
}

/// The work, in leading zero bits, of `nonce` as a stamp on `subject` under `context`.
pub fn work(context: &str, subject: &[u8; 32], nonce: u64) -> u32 {
    Worker::new(context, subject).bits(nonce)
}

/// Checks that `nonce` is a stamp of at least `needed` bits on `subject` under `context`:
/// one hash, whatever the difficulty.
pub fn check(context: &str, subject: &[u8; 32], nonce: u64, needed: u32) -> Result<(), StampError> {
    let got = work(context, subject, nonce);
    if got >= needed {
        Ok(())
    } else {
        Err(StampError::TooCheap { got, needed })
    }
}

/// Finds the lowest nonce worth at least `bits` on `subject` under `context`. Blocking; costs
/// 2^`bits` hashes on average (`bits` is clamped to [`MAX_BITS`]).
pub fn solve(context: &str, subject: &[u8; 32], bits: u32) -> u64 {
    let worker = Worker::new(context, subject);
    let bits = bits.min(MAX_BITS);
    let mut start = 0u64;
    loop {
        if let Some(n) = worker.search(bits, start, 1 << 20) {
            return n;
        }
        start += 1 << 20;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zero_bits_counts_across_bytes() {
        let mut h = [0xffu8; 32];
        assert_eq!(leading_zero_bits(&h), 0);
        h[0] = 0;
        h[1] = 0x10;
        assert_eq!(leading_zero_bits(&h), 11);
        assert_eq!(leading_zero_bits(&[0u8; 32]), 256);
    }

    #[test]
    fn solved_stamps_check_and_do_not_move() {
        let subject = [7u8; 32];
        let nonce = solve(MESSAGE_CONTEXT, &subject, 12);
        assert!(check(MESSAGE_CONTEXT, &subject, nonce, 12).is_ok());
        // The lowest such nonce: every smaller one is worth less.
        assert!((0..nonce).all(|n| work(MESSAGE_CONTEXT, &subject, n) < 12));
        // Another subject or another context makes it (almost surely) worthless; these
        // particular ones were checked to be below 12 bits.
        let mut other = subject;
        other[0] ^= 1;
        assert!(check(MESSAGE_CONTEXT, &other, nonce, 12).is_err());
        assert!(check(LISTING_CONTEXT, &subject, nonce, 12).is_err());
        assert_eq!(
            check(MESSAGE_CONTEXT, &subject, nonce, 40),
            Err(StampError::TooCheap {
                got: work(MESSAGE_CONTEXT, &subject, nonce),
                needed: 40
            })
        );
    }

    #[test]
    fn work_hash_is_derive_key_blake3_of_subject_and_nonce() {
        let subject = [1u8; 32];
        let mut input = subject.to_vec();
        input.extend_from_slice(&5u64.to_le_bytes());
        let expected = blake3::derive_key(LISTING_CONTEXT, &input);
        assert_eq!(Worker::new(LISTING_CONTEXT, &subject).hash(5), expected);
    }

    /// SPEC §3.1's vector: the stamp subject of vector 2's listing (seller key seed `02` ×
    /// 32) and the lowest 16-bit stamp on it; printed with `--nocapture` when SPEC differs.
    #[test]
    fn spec_listing_stamp_vector() {
        use ed25519_dalek::SigningKey;
        let seller = crate::PublicKey(SigningKey::from_bytes(&[2; 32]).verifying_key().to_bytes());
        let id = crate::ListingId::new(&seller, b"jangteo-vector-2");
        let subject = crate::listing::stamp_subject(&id, 1_767_225_600_001);
        let nonce = solve(LISTING_CONTEXT, &subject, 16);
        let hash = hex::encode(Worker::new(LISTING_CONTEXT, &subject).hash(nonce));
        let text = format!(
            "subject `{}`, stamp `{nonce}`, work hash `{hash}`",
            hex::encode(subject)
        );
        println!("{text}");
        let spec = include_str!("../SPEC.md");
        assert!(spec.contains(&text), "SPEC §3.1 should say: {text}");
    }

    /// SPEC §12's attestation vector (nonce, work hash), filled in from the printed values.
    const ATTESTATION_VECTOR: (u64, &str) = (
        8_412,
        "00004f3a76347ce75b73145e18e574f3f5cf122451d081df3a22ad6a77bd6140",
    );

    /// SPEC §12's vectors: the lowest 16-bit stamps on the subject `07` × 32.
    #[test]
    fn spec_stamp_vectors() {
        let subject = [7u8; 32];
        for (ctx, nonce, hash) in [
            (
                MESSAGE_CONTEXT,
                84_209,
                "0000bcd2550ba7a5669bdfd6d06d114118ae81d1074c2c3d2872dfec50eae9ea",
            ),
            (
                LISTING_CONTEXT,
                45_055,
                "00004317bf67713e9395bcd8a99e87c8c07b36d9e163aa3f75b59e59da21d028",
            ),
            (
                ATTESTATION_CONTEXT,
                ATTESTATION_VECTOR.0,
                ATTESTATION_VECTOR.1,
            ),
        ] {
            assert_eq!(solve(ctx, &subject, 16), nonce, "{ctx}");
            assert_eq!(hex::encode(Worker::new(ctx, &subject).hash(nonce)), hash);
        }
        let spec = include_str!("../SPEC.md");
        assert!(
            spec.contains("84209")
                && spec.contains("45055")
                && spec.contains("8412")
                && spec.contains(ATTESTATION_VECTOR.1),
            "SPEC §12 names the vectors"
        );
    }
}
