//! Catch-up between peers: set reconciliation over each shard's (timestamp, id) items.

pub mod reconcile;
