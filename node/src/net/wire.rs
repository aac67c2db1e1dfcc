//! The wire types of the node's request-response protocols (trade, sync, blob, mailbox), their
//! protocol names and the size caps of every request and response.
//!
//! These types are the bytes on the wire (CBOR through libp2p's request-response codec);
//! `protocol/SPEC.md` documents them from these definitions. Changing a field changes the
//! protocol. This module holds no state and does no I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

/// The kad protocol name; our own so we never join the public IPFS DHT.
pub const KAD_PROTOCOL: &str = "/jangteo/kad/1.0.0";
/// The identify protocol version string.
pub const IDENTIFY_VERSION: &str = "/jangteo/1.0.0";
/// The catch-up sync protocol name.
pub const SYNC_PROTOCOL: &str = "/jangteo/sync/1";
/// The trade message protocol name.
pub const TRADE_PROTOCOL: &str = "/jangteo/trade/1";
/// The relay mailbox protocol name.
pub const MAILBOX_PROTOCOL: &str = "/jangteo/mailbox/1";
/// Blob fetch protocol.
pub const BLOB_PROTOCOL: &str = "/jangteo/blob/1";
/// The bulk transfer protocol: a fresh node's first copy of a shard, in large pages
/// (SPEC §8.9).
pub const BULK_PROTOCOL: &str = "/jangteo/bulk/1";
/// Direct message protocol (messages and their receipts).
pub const DM_PROTOCOL: &str = "/jangteo/dm/1";
/// Largest direct message request (one envelope and framing) or response.
pub const DM_MAX_BYTES: u64 = (jangteo_protocol::MAX_OBJECT_BYTES + 1024) as u64;

/// Largest sync request accepted.
pub const SYNC_REQUEST_MAX_BYTES: u64 = 64 * 1024;
/// Largest sync response accepted (a page plus framing).
pub const SYNC_RESPONSE_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// Most objects in one sync response page.
pub const SYNC_PAGE_MAX_OBJECTS: usize = 512;
/// Most bytes of objects in one sync response page.
pub const SYNC_PAGE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most ids one fetch asks for.
pub const FETCH_IDS_MAX: usize = 512;
/// Largest bulk request (a shard name and a cursor, with framing).
pub const BULK_REQUEST_MAX_BYTES: u64 = 1024;
/// Most bytes of objects in one bulk page.
pub const BULK_PAGE_MAX_BYTES: usize = 4 * 1024 * 1024;
/// Most objects in one bulk page.
pub const BULK_PAGE_MAX_OBJECTS: usize = 8192;
/// Largest bulk response accepted (a page plus its framing: a few bytes per object).
pub const BULK_RESPONSE_MAX_BYTES: u64 = (BULK_PAGE_MAX_BYTES + 16 * BULK_PAGE_MAX_OBJECTS) as u64;
/// Bytes of a bulk cursor: the last item sent, its timestamp (8 bytes, big-endian) then
/// its id (32 bytes).
pub const BULK_CURSOR_BYTES: usize = 40;
/// How long a bulk request may take.
pub const BULK_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest trade request (a whole chain) or response.
pub const TRADE_MESSAGE_MAX_BYTES: u64 = 512 * 1024;
/// Largest mailbox request (one sealed item and framing).
pub const MAILBOX_REQUEST_MAX_BYTES: u64 =
    (jangteo_protocol::mailbox::SEALED_MAX_BYTES + 4096) as u64;
/// Most items returned by one mailbox fetch.
pub const MAILBOX_FETCH_ITEMS: usize = 64;
/// Most bytes returned by one mailbox fetch.
pub const MAILBOX_FETCH_BYTES: usize = 4 * 1024 * 1024;
/// Largest mailbox response (a fetch page and framing).
pub const MAILBOX_RESPONSE_MAX_BYTES: u64 = (MAILBOX_FETCH_BYTES + 64 * 1024) as u64;
/// Largest blob request.
pub const BLOB_REQUEST_MAX_BYTES: u64 = 1024;
/// Largest blob response (one chunk and framing).
pub const BLOB_RESPONSE_MAX_BYTES: u64 = (jangteo_protocol::blob::CHUNK_BYTES + 4096) as u64;

/// How long a sync request may take.
pub const SYNC_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a trade, mailbox or blob request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Streams of one protocol open at once on one connection.
pub const STREAMS_PER_PROTOCOL: usize = 16;

/// A trade delivery: the whole chain the sender holds (offer first is not required), so the
/// receiver can check the new message even if it missed earlier ones.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TradeRequest {
    /// Envelope bytes of trade messages, all of one trade.
    pub messages: Vec<ByteBuf>,
}

/// The answer to a [`TradeRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TradeResponse {
    /// Verified, stored (synced) and applied.
    Accepted,
    /// Not now (rate limit, queue full): the sender tries again later.
    Busy(String),
    /// Refused, with the reason.
    Refused(String),
}

/// A direct message or a receipt, sent by its author to its recipient.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DmRequest {
    /// The envelope bytes of one `message` or `receipt`.
    pub object: ByteBuf,
}

/// The answer to a [`DmRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DmResponse {
    /// A message was stored (synced): here is the recipient's signed `delivered` receipt.
    Delivered(ByteBuf),
    /// A receipt was taken.
    Accepted,
    /// Not now (rate limit, queue full): the sender tries again later.
    Busy(String),
    /// Refused, with the reason.
    Refused(String),
}

/// A request to a relay's mailbox. Fetch and ack act on the mailbox of the requesting peer
/// (the connection authenticates it), so nobody can read or delete another's items.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MailboxRequest {
    /// Hold a sealed item for the key `to`.
    Put {
        /// Recipient's ed25519 key.
        to: ByteBuf,
        /// The sealed item.
        sealed: ByteBuf,
    },
    /// Send me what waits for me.
    Fetch,
    /// I have these; delete them.
    Ack {
        /// Item ids.
        ids: Vec<ByteBuf>,
    },
}

/// A relay's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MailboxResponse {
    /// Held.
    Stored,
    /// Items waiting: (id, sealed).
    Items(Vec<(ByteBuf, ByteBuf)>),
    /// Done.
    Done,
    /// Refused, with the reason.
    Refused(String),
}

/// A request for part of a blob.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlobRequest {
    /// The manifest (size and chunk hashes).
    Manifest {
        /// Blob id (32 bytes).
        id: ByteBuf,
    },
    /// One chunk.
    Chunk {
        /// Blob id (32 bytes).
        id: ByteBuf,
        /// Chunk index.
        index: u32,
    },
}

/// The answer to a [`BlobRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BlobResponse {
    /// The manifest bytes.
    Manifest(ByteBuf),
    /// The chunk bytes.
    Chunk(ByteBuf),
    /// Not held here.
    NotFound,
    /// Refused (rate limit, bad request).
    Refused(String),
}

/// A catch-up request (see `reconcile`): one round of range-based set reconciliation of a
/// shard, or objects by id.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncRequest {
    /// A reconciliation message about one shard: `listings/<category>` or `attestations`.
    Reconcile {
        /// The shard.
        shard: String,
        /// The negentropy message (at most `reconcile::FRAME_MAX_BYTES`).
        msg: ByteBuf,
    },
    /// The objects with these ids (at most [`FETCH_IDS_MAX`]).
    Fetch {
        /// Object ids, 32 bytes each.
        ids: Vec<ByteBuf>,
    },
}

/// The answer to a [`SyncRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SyncResponse {
    /// The responder's reconciliation message.
    Reconciled {
        /// The negentropy reply.
        msg: ByteBuf,
    },
    /// Objects asked for (exact bytes); `next` is the first id not sent when the page was
    /// full.
    Objects {
        /// Envelope bytes, each verified again by the receiver.
        objects: Vec<ByteBuf>,
        /// The first id left out, when the page was full.
        next: Option<ByteBuf>,
    },
    /// Refused, with the reason (rate limit, bad request, store error).
    Refused(String),
}

/// A bulk request: how much a peer holds, or the next page of one shard.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BulkRequest {
    /// How many objects each shard holds.
    Counts,
    /// The objects of `shard` after `after`, in (timestamp, id) order.
    Page {
        /// The shard, as sync names it (`listings/<category>`, `attestations`, `reports`).
        shard: String,
        /// The cursor of the previous page ([`BULK_CURSOR_BYTES`]); None for the first.
        after: Option<ByteBuf>,
    },
}

/// The answer to a [`BulkRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum BulkResponse {
    /// Objects held per shard: (shard name, count).
    Counts(Vec<(String, u64)>),
    /// One page: at most [`BULK_PAGE_MAX_OBJECTS`] objects and [`BULK_PAGE_MAX_BYTES`] of
    /// them, in order; `next` is the cursor to ask with for the rest (None: the shard ends).
    Page {
        /// Envelope bytes, each verified by the receiver.
        objects: Vec<ByteBuf>,
        /// The cursor after the last object sent, when more follow.
        next: Option<ByteBuf>,
    },
    /// Not now (other bulk sessions, a byte budget spent): reconcile instead, or later.
    Busy(String),
    /// Refused, with the reason (bad request, store error).
    Refused(String),
}
