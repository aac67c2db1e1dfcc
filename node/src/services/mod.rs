//! The node's services: each owns one capability and talks to the swarm through a
//! [`crate::net::Client`].

pub mod alerts;
pub mod blobs;
pub mod conversations;
pub mod listings;
pub mod mailbox;
pub mod moderation;
pub mod reputation;
pub mod search;
pub mod thumbs;
pub mod trades;
