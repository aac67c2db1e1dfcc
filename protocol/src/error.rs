//! Errors of the protocol crate: why bytes could not be decoded, why a signature failed,
//! and which field of an object broke which rule.

use thiserror::Error;

/// The bytes are not a well-formed object of this protocol version.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Not CBOR at all, or truncated.
    #[error("malformed CBOR: {0}")]
    Cbor(String),
    /// CBOR, but not in the deterministic encoding (order, lengths, integer widths).
    #[error("CBOR is not in deterministic (canonical) form")]
    NotCanonical,
    /// A CBOR feature objects never use.
    #[error("CBOR {0} is not allowed")]
    Forbidden(&'static str),
    /// Nested deeper than any object needs.
    #[error("CBOR nested too deeply")]
    TooDeep,
    /// A required field is absent.
    #[error("{0}: missing")]
    Missing(&'static str),
    /// A field has the wrong CBOR type.
    #[error("{field}: expected {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it should have been.
        expected: &'static str,
    },
    /// A field this version does not know.
    #[error("{0}: unknown field")]
    UnknownField(String),
    /// The whole object is larger than allowed.
    #[error("object is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// Size seen.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The envelope names a kind this version does not know.
    #[error("unknown object kind {0:?}")]
    UnknownKind(String),
    /// An optional field is present but empty: leave it out instead (one meaning, one
    /// encoding).
    #[error("{0}: an empty value must be left out, not sent")]
    EmptyOptional(&'static str),
}

impl DecodeError {
    /// The stable error code SPEC §10 names (the same in every implementation).
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Cbor(_) => "malformed-cbor",
            DecodeError::NotCanonical => "not-canonical",
            DecodeError::Forbidden(_) => "forbidden-cbor",
            DecodeError::TooDeep => "too-deep",
            DecodeError::Missing(_) => "missing-field",
            DecodeError::WrongType { .. } => "wrong-type",
            DecodeError::UnknownField(_) => "unknown-field",
            DecodeError::TooLarge { .. } => "too-large",
            DecodeError::UnknownKind(_) => "unknown-kind",
            DecodeError::EmptyOptional(_) => "empty-optional",
        }
    }
}

/// A field of an object breaks one of the protocol's rules.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The field, as named in SPEC.md (and in the CLI's flags).
    pub field: &'static str,
    /// What is wrong and what is allowed.
    pub reason: String,
}

impl FieldError {
    /// Builds a field error.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }

    /// The field is dated further in the future than the clock skew allowance permits,
    /// by the checking node's clock.
    pub fn dated_in_future(field: &'static str) -> Self {
        Self::new(field, DATED_IN_FUTURE)
    }

    /// Whether the error depends on the checking node's clock (see
    /// [`FieldError::dated_in_future`]): another node, or this one later, may accept the
    /// same bytes, so the sender is not provably at fault.
    pub fn is_clock_dependent(&self) -> bool {
        self.reason == DATED_IN_FUTURE
    }
}

const DATED_IN_FUTURE: &str = "dated in the future";

/// Why an incoming object was refused.
#[derive(Debug, Error)]
pub enum ObjectError {
    /// Could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The signature does not verify for the claimed author and kind.
    #[error("bad signature")]
    BadSignature,
    /// The author key is not a valid (or is a weak) ed25519 key.
    #[error("bad author key")]
    BadAuthorKey,
    /// Decoded and signed, but a field is invalid.
    #[error("invalid {0}")]
    Invalid(#[from] FieldError),
}

impl ObjectError {
    /// The stable error code of SPEC §10: a decode error's code, `bad-signature`,
    /// `bad-author-key`, or `invalid:<field>` for a field that breaks a rule.
    pub fn code(&self) -> String {
        match self {
            ObjectError::Decode(e) => e.code().to_owned(),
            ObjectError::BadSignature => "bad-signature".to_owned(),
            ObjectError::BadAuthorKey => "bad-author-key".to_owned(),
            ObjectError::Invalid(f) => format!("invalid:{}", f.field),
        }
    }

    /// Whether the refusal depends on the checking node's clock rather than on the bytes
    /// alone (an object dated in the future): other nodes may accept it, so whoever
    /// forwarded it is not at fault.
    pub fn is_clock_dependent(&self) -> bool {
        matches!(self, ObjectError::Invalid(f) if f.is_clock_dependent())
    }
}
