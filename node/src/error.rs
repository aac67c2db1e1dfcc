//! Error types of the node, one enum per area.

use thiserror::Error;

/// Failures of the local store.
#[derive(Debug, Error)]
pub enum StoreError {
    /// RocksDB reported an error.
    #[error("store: {0}")]
    Rocks(#[from] rocksdb::Error),
    /// Data on disk does not have the expected shape.
    #[error("store is corrupt: {0}")]
    Corrupt(&'static str),
    /// A writer panicked while holding the write lock.
    #[error("store write lock poisoned")]
    Poisoned,
    /// A write lost a race with another write (the caller may try again).
    #[error("store: {0}")]
    Conflict(String),
}

/// Failures starting or running a node.
#[derive(Debug, Error)]
pub enum NodeError {
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// File system failure with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The identity key file is unusable.
    #[error(
        "identity key {0}: not a 32-byte ed25519 secret key; move it away to create a new identity"
    )]
    BadKey(String),
    /// libp2p could not be set up.
    #[error("network: {0}")]
    Network(String),
    /// A listen or bootstrap address is not a valid multiaddr.
    #[error("bad address {0:?}: {1}")]
    Address(String, String),
    /// The search index could not be opened or rebuilt.
    #[error("search index: {0}")]
    Search(String),
    /// The network task has stopped.
    #[error("the network task has stopped")]
    NetworkStopped,
}
