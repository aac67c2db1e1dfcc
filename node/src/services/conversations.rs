//! The conversations service: direct messages between the two people of a listing, before
//! and during a trade (SPEC §13), with signed delivered and read receipts, first-contact
//! stamps, per-sender limits and blocks.
//!
//! It owns signing our messages and receipts, their delivery (directly over
//! `/jangteo/dm/1` when the other node answers, else sealed into the connected relays'
//! mailboxes, retried with backoff for at most [`DELIVERY_LIFETIME_MS`]), taking what
//! others send (verified before anything else, so a forged copy never stands for the real
//! one; refused unstored, the sender charged an offense where the message is a signed lie),
//! and the threads, their messages and unread counts in the store, each change one batch.
//! Trades are the trades service's: this one only asks it which trades two people share.
//! It talks to the swarm only through the network [`Client`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use jangteo_protocol::message::{DirectMessage, Receipt, ReceiptStatus, check_text, thread_id};
use jangteo_protocol::{
    FieldError, Kind, ListingId, Object, ObjectId, PublicKey, SignedObject, public_key_from_peer_id,
};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::{Mutex, broadcast, mpsc, watch};

use crate::NodeEvent;
use crate::api::types::{
    BlockChange, BlockedView, ChatMessageView, MessageSent, MessageStatus, ThreadSummary,
    ThreadView,
};
use crate::clock::now_ms;
use crate::error::StoreError;
use crate::net::{Client, DmRequest, DmResponse, InboundDm};
use crate::services::trades::{DirectMail, Trades};
use crate::store::conversations::{CONTACT, INDEX, MESSAGE, OUTBOUND, THREAD};
use crate::store::{ChatWrite, Store, chat_key};

/// Mailbox items for this service waiting to be handled.
pub const DIRECT_MAIL_QUEUE: usize = 64;
/// How often the outbound queue is looked at.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(3);
/// How long one delivery attempt may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// First wait before a queued message is sent again; it doubles per attempt.
pub const RETRY_BACKOFF_MIN_MS: u64 = 3_000;
/// Longest wait between two attempts.
pub const RETRY_BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;
/// Age after which a message still queued fails: the relays' mailbox retention.
pub const DELIVERY_LIFETIME_MS: u64 = 14 * 24 * 3600 * 1000;
/// Most outbound records one retry pass looks at.
pub const OUTBOUND_PASS_MAX: usize = 4096;
/// Most messages a thread holds; past it the other side is refused (and we cannot write).
pub const THREAD_MESSAGES_MAX: u32 = 10_000;
/// Most threads the inbox lists.
pub const INBOX_MAX: usize = 10_000;
/// Messages a key may send us before we ever wrote to it or traded with it: past this it
/// waits for an answer (each first contact also cost it a stamp).
pub const STRANGER_MESSAGES_MAX: u32 = 20;
/// Messages one key may send us per [`SENDER_RATE_WINDOW`], whoever it is.
pub const SENDER_RATE_MAX: u32 = 60;
/// Window of the per-sender limit.
pub const SENDER_RATE_WINDOW: Duration = Duration::from_secs(60);
/// Keys whose rate is tracked at once; the oldest windows are forgotten first.
pub const SENDER_RATE_KEYS_MAX: usize = 4096;

/// Why a conversation operation, or a delivery from a peer, was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// No such thread or listing here.
    #[error("{0}")]
    NotFound(String),
    /// An id is malformed.
    #[error("{0}")]
    BadId(String),
    /// A field is invalid.
    #[error("invalid message: {0}")]
    Invalid(#[from] FieldError),
    /// Refused for a reason of policy (first contact without a stamp, limits).
    #[error("{0}")]
    Refused(String),
    /// Refused because this node blocked the other person (unblock them to write).
    #[error("{0}")]
    Blocked(String),
    /// Not now: try again later.
    #[error("{0}")]
    Busy(String),
    /// The sender delivered a signed lie (a forged signature, a replayed message, a receipt
    /// for messages never sent, an invalid object).
    #[error("{0}")]
    Offense(String),
    /// Store failure.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A task failed.
    #[error("{0}")]
    Internal(String),
}

/// A thread's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ThreadRecord {
    listing: String,
    peer: String,
    #[serde(default)]
    trade: Option<String>,
    created_at: u64,
    updated_at: u64,
    #[serde(default)]
    last: Option<String>,
    #[serde(default)]
    last_text: String,
    unread: u32,
    /// Arrival number of the next message.
    next: u32,
}

/// A message's record.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MessageRecord {
    id: String,
    from: String,
    mine: bool,
    text: String,
    at: u64,
    #[serde(default)]
    photos: Vec<String>,
    #[serde(default)]
    trade: Option<String>,
    status: MessageStatus,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    relays: Vec<String>,
    /// Theirs: whether the person opened the thread since it came.
    #[serde(default)]
    read: bool,
    /// Whether it carried a first-contact stamp.
    #[serde(default)]
    stamped: bool,
    /// The envelope, hex.
    envelope: String,
}

/// A message or receipt of ours still to deliver.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outbound {
    /// The thread and arrival number of a message; None for a receipt.
    #[serde(default)]
    message: Option<(String, u32)>,
    to: String,
    object: String,
    attempts: u32,
    created_at: u64,
    next_attempt: u64,
    #[serde(default)]
    mailbox: Vec<String>,
}

/// What this node knows of a contact.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Contact {
    /// Messages taken from them.
    #[serde(default)]
    received: u32,
    /// Messages we wrote to them.
    #[serde(default)]
    sent: u32,
    /// Whether they acknowledged a message of ours (so they know us).
    #[serde(default)]
    acknowledged: bool,
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn parse<T: for<'a> Deserialize<'a>>(b: &[u8]) -> Option<T> {
    serde_json::from_slice(b).ok()
}

fn thread_key(t: &ObjectId) -> Vec<u8> {
    chat_key(THREAD, &[&t.0])
}

fn message_key(t: &ObjectId, n: u32) -> Vec<u8> {
    chat_key(MESSAGE, &[&t.0, &n.to_be_bytes()])
}

fn index_key(m: &ObjectId) -> Vec<u8> {
    chat_key(INDEX, &[&m.0])
}

fn outbound_key(m: &ObjectId) -> Vec<u8> {
    chat_key(OUTBOUND, &[&m.0])
}

fn contact_key(k: &PublicKey) -> Vec<u8> {
    chat_key(CONTACT, &[&k.0])
}

fn backoff_ms(attempts: u32) -> u64 {
    RETRY_BACKOFF_MIN_MS
        .saturating_mul(1u64 << attempts.saturating_sub(1).min(20))
        .min(RETRY_BACKOFF_MAX_MS)
}

/// Order of our messages' statuses: a receipt only ever moves a message forward.
fn rank(s: MessageStatus) -> u8 {
    match s {
        MessageStatus::Queued | MessageStatus::Failed | MessageStatus::Received => 0,
        MessageStatus::Delivered => 1,
        MessageStatus::Read => 2,
    }
}

/// Whether `bytes` is `peer`'s signed `delivered` (or `read`) receipt naming `message`.
fn receipt_for(bytes: &[u8], peer: &str, message: &ObjectId) -> bool {
    let Ok((signed, Object::Receipt(r))) = jangteo_protocol::verify_object(bytes, now_ms()) else {
        return false;
    };
    signed.envelope().author.peer_id() == peer && r.messages.contains(message)
}

/// What taking a delivery gave.
enum Taken {
    /// A message stored (or held already): our signed `delivered` receipt for it.
    Message(Vec<u8>),
    /// A receipt applied.
    Receipt,
}

/// The conversations service.
#[derive(Debug, Clone)]
pub struct Conversations {
    key: Arc<SigningKey>,
    me: PublicKey,
    store: Arc<Store>,
    network: Client,
    events: broadcast::Sender<NodeEvent>,
    trades: Trades,
    /// Serializes writes of threads on this node.
    lock: Arc<Mutex<()>>,
    /// Set while a retry pass runs.
    retrying: Arc<AtomicBool>,
    /// Messages being delivered: passes running at once (a timed one, one per peer that
    /// just connected) take each once, so none is deposited twice.
    delivering: Arc<crate::services::mailbox::InFlightItems>,
    /// Messages per sender key in its current window.
    rates: Arc<std::sync::Mutex<HashMap<PublicKey, (Instant, u32)>>>,
}

impl Conversations {
    /// A service acting with `key`.
    pub fn new(
        key: Arc<SigningKey>,
        store: Arc<Store>,
        network: Client,
        events: broadcast::Sender<NodeEvent>,
        trades: Trades,
    ) -> Self {
        let me = PublicKey(key.verifying_key().to_bytes());
        Self {
            key,
            me,
            store,
            network,
            events,
            trades,
            lock: Arc::new(Mutex::new(())),
            retrying: Arc::new(AtomicBool::new(false)),
            delivering: Arc::default(),
            rates: Arc::new(std::sync::Mutex::new(HashMap::new())),
        }
    }

    // --- reading the store ------------------------------------------------------------

    fn thread_rec(&self, t: &ObjectId) -> Result<Option<ThreadRecord>, ChatError> {
        Ok(self.store.chat_get(&thread_key(t))?.and_then(|b| parse(&b)))
    }

    fn message_at(&self, t: &ObjectId, n: u32) -> Result<Option<MessageRecord>, ChatError> {
        Ok(self
            .store
            .chat_get(&message_key(t, n))?
            .and_then(|b| parse(&b)))
    }

    fn locate(&self, m: &ObjectId) -> Result<Option<(ObjectId, u32)>, ChatError> {
        Ok(self.store.chat_get(&index_key(m))?.and_then(|b| {
            let t: [u8; 32] = b.get(..32)?.try_into().ok()?;
            let n = u32::from_be_bytes(b.get(32..36)?.try_into().ok()?);
            Some((ObjectId(t), n))
        }))
    }

    fn contact(&self, k: &PublicKey) -> Result<Contact, ChatError> {
        Ok(self
            .store
            .chat_get(&contact_key(k))?
            .and_then(|b| parse(&b))
            .unwrap_or_default())
    }

    fn outbound(&self, id: &ObjectId) -> Result<Option<Outbound>, ChatError> {
        Ok(self
            .store
            .chat_get(&outbound_key(id))?
            .and_then(|b| parse(&b)))
    }

    fn messages(&self, t: &ObjectId) -> Result<Vec<(u32, MessageRecord)>, ChatError> {
        Ok(self
            .store
            .chat_scan(&chat_key(MESSAGE, &[&t.0]), THREAD_MESSAGES_MAX as usize)?
            .into_iter()
            .filter_map(|(k, v)| {
                let n = u32::from_be_bytes(k.get(33..37)?.try_into().ok()?);
                Some((n, parse(&v)?))
            })
            .collect())
    }

    /// Whether `to` surely knows us, so our message needs no stamp: they wrote to us, took
    /// a message of ours, or hold a trade with us.
    fn known_to(&self, to: &PublicKey) -> Result<bool, ChatError> {
        let c = self.contact(to)?;
        Ok(c.received > 0
            || c.acknowledged
            || self.trades.trades_with(to).iter().any(|(_, _, held)| *held))
    }

    /// Whether a message from `from` may come without a stamp: we hold a trade with them,
    /// wrote to them, or took a message of theirs before.
    fn knows(&self, from: &PublicKey) -> Result<bool, ChatError> {
        let c = self.contact(from)?;
        Ok(c.received > 0 || c.sent > 0 || !self.trades.trades_with(from).is_empty())
    }

    /// Counts a message from `from` against its rate; false when over it.
    fn within_rate(&self, from: &PublicKey) -> bool {
        let Ok(mut r) = self.rates.lock() else {
            return false;
        };
        let now = Instant::now();
        if r.len() >= SENDER_RATE_KEYS_MAX && !r.contains_key(from) {
            r.retain(|_, (since, _)| now.duration_since(*since) < SENDER_RATE_WINDOW);
            if r.len() >= SENDER_RATE_KEYS_MAX {
                return false;
            }
        }
        let e = r.entry(*from).or_insert((now, 0));
        if now.duration_since(e.0) >= SENDER_RATE_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= SENDER_RATE_MAX
    }

    fn status_event(&self, thread: &ObjectId, m: &MessageRecord) {
        let _ = self.events.send(NodeEvent::MessageStatus {
            thread: thread.to_hex(),
            message: m.id.clone(),
            status: m.status,
            reason: m.reason.clone(),
        });
    }

    fn latest_trade(&self, peer: &PublicKey, listing: &ListingId) -> Option<ObjectId> {
        self.trades
            .trades_with(peer)
            .into_iter()
            .find(|(_, l, _)| l == listing)
            .map(|(t, _, _)| t)
    }

    fn title(&self, listing: &str) -> Option<String> {
        let lid = ListingId::from_hex(listing)?;
        self.store
            .listing(&lid)
            .ok()
            .flatten()
            .map(|l| l.listing.title)
    }

    // --- what the API asks ------------------------------------------------------------

    /// Asks the seller of a listing held here: starts or continues that conversation.
    pub async fn ask(
        &self,
        listing: &str,
        text: String,
        photos: Vec<String>,
    ) -> Result<MessageSent, ChatError> {
        let lid = ListingId::from_hex(listing)
            .ok_or_else(|| ChatError::BadId(format!("{listing:?} is not a listing id")))?;
        let held = self.store.listing(&lid)?.ok_or_else(|| {
            ChatError::NotFound(format!(
                "no listing {listing} on this node; search for it first"
            ))
        })?;
        if held.author == self.me {
            return Err(ChatError::Refused(
                "this is your own listing: a message to yourself".into(),
            ));
        }
        self.send(lid, held.author, text, photos).await
    }

    /// Writes in a conversation held here.
    pub async fn say(
        &self,
        thread: &str,
        text: String,
        photos: Vec<String>,
    ) -> Result<MessageSent, ChatError> {
        let (_, rec) = self.thread_named(thread)?;
        let lid =
            ListingId::from_hex(&rec.listing).ok_or(ChatError::Internal("thread record".into()))?;
        let peer = public_key_from_peer_id(&rec.peer)
            .ok_or(ChatError::Internal("thread record".into()))?;
        self.send(lid, peer, text, photos).await
    }

    /// Writes to `peer` about `listing` (the conversation of the two on it, held here or
    /// not): for a trade's page, where either party may write first.
    pub async fn write(
        &self,
        listing: &str,
        peer: &str,
        text: String,
        photos: Vec<String>,
    ) -> Result<MessageSent, ChatError> {
        let lid = ListingId::from_hex(listing)
            .ok_or_else(|| ChatError::BadId(format!("{listing:?} is not a listing id")))?;
        let to = public_key_from_peer_id(peer)
            .ok_or_else(|| ChatError::BadId(format!("{peer:?} is not a peer id")))?;
        self.send(lid, to, text, photos).await
    }

    fn thread_named(&self, thread: &str) -> Result<(ObjectId, ThreadRecord), ChatError> {
        let t = ObjectId::from_hex(thread).ok_or_else(|| {
            ChatError::BadId(format!("{thread:?} is not a thread id (64 hex digits)"))
        })?;
        let rec = self
            .thread_rec(&t)?
            .ok_or_else(|| ChatError::NotFound(format!("no conversation {thread} on this node")))?;
        Ok((t, rec))
    }

    async fn send(
        &self,
        listing: ListingId,
        to: PublicKey,
        text: String,
        photos: Vec<String>,
    ) -> Result<MessageSent, ChatError> {
        if to == self.me {
            return Err(ChatError::Refused("a message to yourself".into()));
        }
        check_text(&text)?;
        if photos.len() > jangteo_protocol::message::MESSAGE_PHOTOS_MAX {
            return Err(FieldError::new("photos", "at most 4").into());
        }
        let photos = photos
            .iter()
            .map(|p| {
                ObjectId::from_hex(p)
                    .map(|o| o.0)
                    .ok_or_else(|| FieldError::new("photos", format!("{p:?} is not a blob id")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.store.is_blocked(&to)? {
            return Err(ChatError::Blocked(format!(
                "you blocked {}; unblock them to write",
                to.peer_id()
            )));
        }
        let thread = thread_id(&listing, &self.me, &to);
        let seen = self.thread_rec(&thread)?.and_then(|r| r.last);
        let mut m = DirectMessage {
            to,
            listing,
            trade: self.latest_trade(&to, &listing),
            at: now_ms(),
            text,
            seen: seen.as_deref().and_then(ObjectId::from_hex),
            photos,
            stamp: None,
        };
        m.validate(&self.me, now_ms())?;
        if !self.known_to(&to)? {
            // A first contact pays its stamp off the async runtime (about 0.4 s).
            let me = self.me;
            m = tokio::task::spawn_blocking(move || {
                m.solve_stamp(&me);
                m
            })
            .await
            .map_err(|e| ChatError::Internal(e.to_string()))?;
        }
        let obj = SignedObject::sign(Kind::Message, m.encode(), &self.key);
        let id = obj.id();
        {
            let _g = self.lock.lock().await;
            let now = now_ms();
            let mut rec = self.thread_rec(&thread)?.unwrap_or_else(|| ThreadRecord {
                listing: listing.to_hex(),
                peer: to.peer_id(),
                trade: None,
                created_at: now,
                updated_at: now,
                last: None,
                last_text: String::new(),
                unread: 0,
                next: 0,
            });
            if rec.next >= THREAD_MESSAGES_MAX {
                return Err(ChatError::Refused(format!(
                    "this conversation holds {THREAD_MESSAGES_MAX} messages, the most it may"
                )));
            }
            let n = rec.next;
            rec.next += 1;
            rec.updated_at = now;
            rec.last = Some(id.to_hex());
            rec.last_text = m.text.clone();
            if let Some(t) = m.trade {
                rec.trade = Some(t.to_hex());
            }
            let msg = MessageRecord {
                id: id.to_hex(),
                from: self.me.peer_id(),
                mine: true,
                text: m.text.clone(),
                at: m.at,
                photos: m.photos.iter().map(hex::encode).collect(),
                trade: m.trade.map(|t| t.to_hex()),
                status: MessageStatus::Queued,
                reason: Some("not sent yet".into()),
                relays: Vec::new(),
                read: false,
                stamped: m.stamp.is_some(),
                envelope: hex::encode(obj.bytes()),
            };
            let mut contact = self.contact(&to)?;
            contact.sent = contact.sent.saturating_add(1);
            let mut w = ChatWrite::default();
            w.put(thread_key(&thread), json(&rec));
            w.put(message_key(&thread, n), json(&msg));
            w.pin_photos(&id.0, &m.photos);
            w.put(index_key(&id), [&thread.0[..], &n.to_be_bytes()].concat());
            w.put(
                outbound_key(&id),
                json(&Outbound {
                    message: Some((thread.to_hex(), n)),
                    to: to.peer_id(),
                    object: msg.envelope.clone(),
                    attempts: 0,
                    created_at: now,
                    next_attempt: now,
                    mailbox: Vec::new(),
                }),
            );
            w.put(contact_key(&to), json(&contact));
            self.store.commit_chat(&w, true)?;
            self.status_event(&thread, &msg);
        }
        // The first attempt is made before answering, so the caller sees its outcome.
        self.deliver(&id).await;
        let (status, reason) =
            match self.message_at(&thread, self.locate(&id)?.map_or(0, |l| l.1))? {
                Some(r) => (r.status, r.reason),
                None => (MessageStatus::Queued, None),
            };
        Ok(MessageSent {
            thread: thread.to_hex(),
            message: id.to_hex(),
            status,
            reason,
        })
    }

    /// Every conversation, the latest first.
    pub fn inbox(&self) -> Result<Vec<ThreadSummary>, ChatError> {
        let mut out: Vec<ThreadSummary> = self
            .store
            .chat_scan(&[THREAD], INBOX_MAX)?
            .into_iter()
            .filter_map(|(k, v)| {
                let t: [u8; 32] = k.get(1..33)?.try_into().ok()?;
                let r: ThreadRecord = parse(&v)?;
                Some(ThreadSummary {
                    thread: hex::encode(t),
                    title: self.title(&r.listing),
                    peer: r.peer,
                    listing: r.listing,
                    trade: r.trade,
                    last: (!r.last_text.is_empty()).then_some(r.last_text),
                    updated_at: r.updated_at,
                    unread: r.unread,
                })
            })
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.updated_at));
        Ok(out)
    }

    /// One conversation with its history (does not mark it read).
    pub fn view(&self, thread: &str) -> Result<ThreadView, ChatError> {
        let (t, rec) = self.thread_named(thread)?;
        self.view_of(&t, rec)
    }

    fn view_of(&self, t: &ObjectId, rec: ThreadRecord) -> Result<ThreadView, ChatError> {
        let messages = self
            .messages(t)?
            .into_iter()
            .map(|(_, m)| ChatMessageView {
                id: m.id,
                from: m.from,
                mine: m.mine,
                text: m.text,
                at: m.at,
                photos: m.photos,
                trade: m.trade,
                status: m.status,
                reason: m.reason,
                relays: m.relays,
                stamped: m.stamped,
            })
            .collect();
        Ok(ThreadView {
            thread: t.to_hex(),
            title: self.title(&rec.listing),
            peer: rec.peer,
            listing: rec.listing,
            trade: rec.trade,
            unread: rec.unread,
            messages,
        })
    }

    /// Opens a conversation: marks the other person's messages read, tells them so with
    /// signed `read` receipts, and returns the history.
    pub async fn read(&self, thread: &str) -> Result<ThreadView, ChatError> {
        let (t, _) = self.thread_named(thread)?;
        let mut queued = Vec::new();
        let view = {
            let _g = self.lock.lock().await;
            let (_, mut rec) = self.thread_named(thread)?;
            let mut w = ChatWrite::default();
            let mut seen = Vec::new();
            for (n, mut m) in self.messages(&t)? {
                if !m.mine && !m.read {
                    m.read = true;
                    w.put(message_key(&t, n), json(&m));
                    if let Some(id) = ObjectId::from_hex(&m.id) {
                        seen.push(id);
                    }
                }
            }
            rec.unread = 0;
            w.put(thread_key(&t), json(&rec));
            let peer = public_key_from_peer_id(&rec.peer)
                .ok_or(ChatError::Internal("thread record".into()))?;
            let now = now_ms();
            for chunk in seen.chunks(jangteo_protocol::message::RECEIPT_MESSAGES_MAX) {
                let r = self.receipt(&peer, ReceiptStatus::Read, chunk.to_vec());
                w.put(
                    outbound_key(&r.id()),
                    json(&Outbound {
                        message: None,
                        to: peer.peer_id(),
                        object: hex::encode(r.bytes()),
                        attempts: 0,
                        created_at: now,
                        next_attempt: now,
                        mailbox: Vec::new(),
                    }),
                );
                queued.push(r.id());
            }
            self.store.commit_chat(&w, true)?;
            self.view_of(&t, rec)?
        };
        if !queued.is_empty() {
            let this = self.clone();
            tokio::spawn(async move {
                for id in queued {
                    this.deliver(&id).await;
                }
            });
        }
        Ok(view)
    }

    /// Blocks a key: its messages and offers are refused and its listings hidden here.
    pub fn block(&self, peer: &str, blocked: bool) -> Result<BlockChange, ChatError> {
        let key = public_key_from_peer_id(peer)
            .ok_or_else(|| ChatError::BadId(format!("{peer:?} is not a peer id")))?;
        if key == self.me && blocked {
            return Err(ChatError::Refused("you cannot block yourself".into()));
        }
        let changed = self.store.set_blocked(&key, blocked, now_ms())?;
        Ok(BlockChange {
            peer_id: key.peer_id(),
            blocked,
            changed,
        })
    }

    /// The keys blocked here, the latest first.
    pub fn blocked(&self) -> Result<Vec<BlockedView>, ChatError> {
        let mut v: Vec<BlockedView> = self
            .store
            .blocked()?
            .into_iter()
            .map(|(k, at)| BlockedView {
                peer_id: k.peer_id(),
                at,
            })
            .collect();
        v.sort_by_key(|b| std::cmp::Reverse(b.at));
        Ok(v)
    }

    fn receipt(
        &self,
        to: &PublicKey,
        status: ReceiptStatus,
        messages: Vec<ObjectId>,
    ) -> SignedObject {
        let r = Receipt {
            to: *to,
            at: now_ms(),
            status,
            messages,
        };
        SignedObject::sign(Kind::Receipt, r.encode(), &self.key)
    }

    // --- taking what others send ------------------------------------------------------

    /// Takes one envelope: from `peer` directly (it must be its author), or from a relay
    /// mailbox (`peer` None). The signature is checked first of all.
    async fn take(&self, peer: Option<PeerId>, bytes: &[u8]) -> Result<Taken, ChatError> {
        if bytes.len() > jangteo_protocol::MAX_OBJECT_BYTES {
            return Err(ChatError::Offense("object too large".into()));
        }
        let signed = SignedObject::decode_and_verify(bytes)
            .map_err(|e| ChatError::Offense(format!("forged or malformed: {e}")))?;
        let author = signed.envelope().author;
        if let Some(p) = peer
            && author.peer_id() != p.to_string()
        {
            return Err(ChatError::Offense(format!(
                "a direct message comes from its author; this one is signed by {}",
                author.peer_id()
            )));
        }
        let object = jangteo_protocol::decode_body(&signed, now_ms()).map_err(|e| {
            if e.is_clock_dependent() {
                ChatError::Refused(e.to_string())
            } else {
                ChatError::Offense(format!("invalid {}: {e}", signed.envelope().kind.name()))
            }
        })?;
        match object {
            Object::Message(m) => self
                .take_message(signed, m, peer.is_none())
                .await
                .map(Taken::Message),
            Object::Receipt(r) => self.take_receipt(&author, r).await.map(|()| Taken::Receipt),
            _ => Err(ChatError::Offense(
                "only messages and receipts travel on /jangteo/dm/1".into(),
            )),
        }
    }

    async fn take_message(
        &self,
        signed: SignedObject,
        m: DirectMessage,
        from_mailbox: bool,
    ) -> Result<Vec<u8>, ChatError> {
        let author = signed.envelope().author;
        if m.to != self.me {
            return Err(ChatError::Offense(
                "not addressed to this node (a message replayed to the wrong person)".into(),
            ));
        }
        if self.store.is_blocked(&author)? {
            return Err(ChatError::Refused(
                "blocked: this person does not take your messages".into(),
            ));
        }
        let id = signed.id();
        let thread = m.thread(&author);
        let receipt = self.receipt(&author, ReceiptStatus::Delivered, vec![id]);
        {
            let _g = self.lock.lock().await;
            // A duplicate changes nothing (its signature was checked before this).
            if self.locate(&id)?.is_some() {
                return Ok(receipt.bytes().to_vec());
            }
            let rec = self.thread_rec(&thread)?;
            if rec.is_none() {
                match self.store.listing(&m.listing)? {
                    Some(l) if l.author == self.me || l.author == author => {}
                    Some(_) => {
                        return Err(ChatError::Refused(format!(
                            "listing {} is by neither of you",
                            m.listing
                        )));
                    }
                    None => {
                        return Err(ChatError::Refused(format!(
                            "no listing {} on this node: a conversation is about a listing one of you posted",
                            m.listing
                        )));
                    }
                }
            }
            if !self.knows(&author)? {
                m.check_stamp(&author)
                    .map_err(|e| ChatError::Refused(format!("first contact: {e}")))?;
            }
            let mut contact = self.contact(&author)?;
            if contact.sent == 0
                && self.trades.trades_with(&author).is_empty()
                && contact.received >= STRANGER_MESSAGES_MAX
            {
                return Err(ChatError::Refused(format!(
                    "you wrote {STRANGER_MESSAGES_MAX} messages without an answer; wait for one"
                )));
            }
            if !self.within_rate(&author) {
                return Err(ChatError::Busy(format!(
                    "more than {SENDER_RATE_MAX} messages in {} s; try again later",
                    SENDER_RATE_WINDOW.as_secs()
                )));
            }
            let now = now_ms();
            let mut rec = rec.unwrap_or_else(|| ThreadRecord {
                listing: m.listing.to_hex(),
                peer: author.peer_id(),
                trade: None,
                created_at: now,
                updated_at: now,
                last: None,
                last_text: String::new(),
                unread: 0,
                next: 0,
            });
            if rec.next >= THREAD_MESSAGES_MAX {
                return Err(ChatError::Refused(format!(
                    "this conversation holds {THREAD_MESSAGES_MAX} messages, the most it may"
                )));
            }
            let n = rec.next;
            rec.next += 1;
            rec.updated_at = now;
            rec.unread = rec.unread.saturating_add(1);
            rec.last = Some(id.to_hex());
            rec.last_text = m.text.clone();
            if let Some(t) = m.trade {
                rec.trade = Some(t.to_hex());
            }
            let msg = MessageRecord {
                id: id.to_hex(),
                from: author.peer_id(),
                mine: false,
                text: m.text.clone(),
                at: m.at,
                photos: m.photos.iter().map(hex::encode).collect(),
                trade: m.trade.map(|t| t.to_hex()),
                status: MessageStatus::Received,
                reason: None,
                relays: Vec::new(),
                read: false,
                stamped: m.stamp.is_some(),
                envelope: hex::encode(signed.bytes()),
            };
            contact.received = contact.received.saturating_add(1);
            let mut w = ChatWrite::default();
            w.put(thread_key(&thread), json(&rec));
            w.put(message_key(&thread, n), json(&msg));
            w.pin_photos(&id.0, &m.photos);
            w.put(index_key(&id), [&thread.0[..], &n.to_be_bytes()].concat());
            w.put(contact_key(&author), json(&contact));
            if from_mailbox {
                // The sender is not here to take the receipt in an answer: queue it.
                w.put(
                    outbound_key(&receipt.id()),
                    json(&Outbound {
                        message: None,
                        to: author.peer_id(),
                        object: hex::encode(receipt.bytes()),
                        attempts: 0,
                        created_at: now,
                        next_attempt: now,
                        mailbox: Vec::new(),
                    }),
                );
            }
            let preview: String = m.text.chars().take(80).collect();
            let mut note = crate::api::types::NotificationView::new(
                crate::api::types::NotificationKind::Message,
                now,
                format!("message from {}: {preview}", author.peer_id()),
            );
            note.thread = Some(thread.to_hex());
            note.message = Some(id.to_hex());
            note.peer = Some(author.peer_id());
            note.listing = Some(m.listing.to_hex());
            note.trade = m.trade.map(|t| t.to_hex());
            let notes = self.store.commit_chat_notifying(&w, &[note], true)?;
            tracing::info!(thread = %thread, message = %id, from = %author.peer_id(), "direct message");
            let _ = self.events.send(NodeEvent::MessageReceived {
                thread: thread.to_hex(),
                message: id.to_hex(),
                from: author.peer_id(),
            });
            for n in notes {
                let _ = self.events.send(NodeEvent::Notification {
                    notification: Box::new(n),
                });
            }
        }
        if from_mailbox {
            let this = self.clone();
            let rid = receipt.id();
            tokio::spawn(async move { this.deliver(&rid).await });
        }
        Ok(receipt.bytes().to_vec())
    }

    async fn take_receipt(&self, author: &PublicKey, r: Receipt) -> Result<(), ChatError> {
        if r.to != self.me {
            return Err(ChatError::Offense(
                "a receipt not addressed to this node".into(),
            ));
        }
        let _g = self.lock.lock().await;
        let mut w = ChatWrite::default();
        let mut changed = Vec::new();
        let mut known = false;
        for mid in &r.messages {
            let Some((t, n)) = self.locate(mid)? else {
                continue;
            };
            let (Some(mut msg), Some(rec)) = (self.message_at(&t, n)?, self.thread_rec(&t)?) else {
                continue;
            };
            if !msg.mine || rec.peer != author.peer_id() {
                continue;
            }
            known = true;
            let new = match r.status {
                ReceiptStatus::Delivered => MessageStatus::Delivered,
                ReceiptStatus::Read => MessageStatus::Read,
            };
            if rank(new) > rank(msg.status) {
                msg.status = new;
                msg.reason = None;
                w.put(message_key(&t, n), json(&msg));
                changed.push((t, msg));
            }
            w.delete(outbound_key(mid));
        }
        if !known {
            return Err(ChatError::Offense(
                "a receipt for messages never sent to you".into(),
            ));
        }
        let mut c = self.contact(author)?;
        if !c.acknowledged {
            c.acknowledged = true;
            w.put(contact_key(author), json(&c));
        }
        self.store.commit_chat(&w, true)?;
        for (t, m) in &changed {
            self.status_event(t, m);
        }
        Ok(())
    }

    /// Answers a direct delivery from a peer, and whether it was an offense.
    pub async fn receive(&self, peer: Option<PeerId>, bytes: &[u8]) -> (DmResponse, bool) {
        match self.take(peer, bytes).await {
            Ok(Taken::Message(r)) => (DmResponse::Delivered(ByteBuf::from(r)), false),
            Ok(Taken::Receipt) => (DmResponse::Accepted, false),
            Err(ChatError::Busy(why)) => (DmResponse::Busy(why), false),
            Err(e @ ChatError::Offense(_)) => (DmResponse::Refused(e.to_string()), true),
            Err(e) => (DmResponse::Refused(e.to_string()), false),
        }
    }

    // --- delivering ours --------------------------------------------------------------

    /// Marks our message (by its outbound record) with `status` and `reason` unless a
    /// receipt moved it further, and writes the outbound record (`None`: delete it).
    fn record_attempt(
        &self,
        w: &mut ChatWrite,
        id: &ObjectId,
        o: &Outbound,
        keep: bool,
        status: MessageStatus,
        reason: Option<String>,
    ) -> Result<Option<(ObjectId, MessageRecord)>, ChatError> {
        if keep {
            w.put(outbound_key(id), json(o));
        } else {
            w.delete(outbound_key(id));
        }
        let Some((t, n)) = o
            .message
            .as_ref()
            .and_then(|(t, n)| Some((ObjectId::from_hex(t)?, *n)))
        else {
            return Ok(None);
        };
        let Some(mut m) = self.message_at(&t, n)? else {
            return Ok(None);
        };
        if rank(m.status) > rank(status)
            || (m.status == status && m.reason == reason && m.relays == o.mailbox)
        {
            return Ok(None);
        }
        m.status = status;
        m.reason = reason;
        m.relays = o.mailbox.clone();
        w.put(message_key(&t, n), json(&m));
        Ok(Some((t, m)))
    }

    /// One delivery attempt of one of our messages or receipts.
    /// Does nothing while another task delivers it.
    pub async fn deliver(&self, id: &ObjectId) {
        let Some(_working) = self.delivering.begin(id.0) else {
            return;
        };
        if let Err(e) = self.deliver_inner(id).await {
            tracing::warn!(message = %id, error = %e, "delivering a direct message");
        }
    }

    async fn deliver_inner(&self, id: &ObjectId) -> Result<(), ChatError> {
        let Some(mut o) = self.outbound(id)? else {
            return Ok(());
        };
        let now = now_ms();
        let bytes = hex::decode(&o.object).map_err(|e| ChatError::Internal(e.to_string()))?;
        let outcome = if now.saturating_sub(o.created_at) > DELIVERY_LIFETIME_MS {
            Err(format!(
                "not delivered within {} days",
                DELIVERY_LIFETIME_MS / 86_400_000
            ))
        } else if let Ok(peer) = o.to.parse::<PeerId>() {
            let to = &o.to;
            match tokio::time::timeout(
                DELIVERY_TIMEOUT,
                self.network.send_dm(
                    peer,
                    DmRequest {
                        object: ByteBuf::from(bytes.clone()),
                    },
                ),
            )
            .await
            {
                Ok(Ok(Ok(DmResponse::Delivered(r)))) if receipt_for(&r, &o.to, id) => Ok(None),
                Ok(Ok(Ok(DmResponse::Delivered(_)))) => Ok(Some(format!(
                    "{to} answered without a valid signed receipt"
                ))),
                Ok(Ok(Ok(DmResponse::Accepted))) => Ok(None),
                Ok(Ok(Ok(DmResponse::Refused(why)))) => Err(format!("{to} refused: {why}")),
                Ok(Ok(Ok(DmResponse::Busy(why)))) => Ok(Some(format!("{to} is busy: {why}"))),
                Ok(Ok(Err(e))) => Ok(Some(format!("{to} unreachable: {e}"))),
                Ok(Err(e)) => Ok(Some(e.to_string())),
                Err(_) => Ok(Some(format!(
                    "{to} did not answer within {DELIVERY_TIMEOUT:?}"
                ))),
            }
        } else {
            Err(format!("{} is not a peer id", o.to))
        };
        // Leave a sealed copy with the relays once, when the recipient cannot be reached.
        let outcome = match outcome {
            Ok(Some(why)) if o.mailbox.is_empty() => match self.deposit(&o.to, &bytes).await {
                Ok(relays) if !relays.is_empty() => {
                    o.mailbox = relays;
                    Ok(Some(why))
                }
                Ok(_) => Ok(Some(format!("{why}; no relay with mailboxes is connected"))),
                Err(e) => Ok(Some(format!("{why}; {e}"))),
            },
            other => other,
        };
        let _g = self.lock.lock().await;
        // A receipt may have settled it meanwhile.
        if self.outbound(id)?.is_none() {
            return Ok(());
        }
        let mut w = ChatWrite::default();
        let event = match outcome {
            Ok(None) => {
                if o.message.is_some()
                    && let Some(key) = public_key_from_peer_id(&o.to)
                {
                    let mut c = self.contact(&key)?;
                    if !c.acknowledged {
                        c.acknowledged = true;
                        w.put(contact_key(&key), json(&c));
                    }
                }
                self.record_attempt(&mut w, id, &o, false, MessageStatus::Delivered, None)?
            }
            Err(why) => {
                tracing::info!(message = %id, reason = %why, "direct message failed");
                self.record_attempt(&mut w, id, &o, false, MessageStatus::Failed, Some(why))?
            }
            Ok(Some(why)) => {
                o.attempts = o.attempts.saturating_add(1);
                o.next_attempt = now_ms().saturating_add(backoff_ms(o.attempts));
                let reason = if o.mailbox.is_empty() {
                    why
                } else {
                    format!(
                        "{} is offline; held in the mailbox of relay {}",
                        o.to,
                        o.mailbox.join(", ")
                    )
                };
                self.record_attempt(&mut w, id, &o, true, MessageStatus::Queued, Some(reason))?
            }
        };
        self.store.commit_chat(&w, true)?;
        if let Some((t, m)) = event {
            self.status_event(&t, &m);
        }
        Ok(())
    }

    /// Seals one envelope to `to` and leaves it with every connected relay; returns the
    /// relays that took it, or the reasons they gave.
    async fn deposit(&self, to: &str, object: &[u8]) -> Result<Vec<String>, String> {
        crate::services::mailbox::deposit(&self.network, to, &[object.to_vec()]).await
    }

    /// Sends what is due in the outbound queue, or everything addressed to `peer` (it just
    /// connected).
    pub async fn retry_queued(&self, peer: Option<String>) {
        let timed = peer.is_none();
        if timed && self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let now = now_ms();
        if let Ok(queue) = self.store.chat_scan(&[OUTBOUND], OUTBOUND_PASS_MAX) {
            for (k, v) in queue {
                let (Some(id), Some(o)) = (
                    k.get(1..33)
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .map(ObjectId),
                    parse::<Outbound>(&v),
                ) else {
                    continue;
                };
                if o.next_attempt <= now || peer.as_deref() == Some(o.to.as_str()) {
                    self.deliver(&id).await;
                }
            }
        }
        if timed {
            self.retrying.store(false, Ordering::Release);
        }
    }

    /// (threads, messages queued or unread) for status lines.
    pub fn counts(&self) -> Result<(usize, u64), ChatError> {
        let threads = self.store.chat_scan(&[THREAD], INBOX_MAX)?;
        let unread = threads
            .iter()
            .filter_map(|(_, v)| parse::<ThreadRecord>(v))
            .map(|r| u64::from(r.unread))
            .sum();
        Ok((threads.len(), unread))
    }

    /// Runs until `shutdown`: answers direct deliveries, takes what relays held for us,
    /// and retries the outbound queue on a timer and when a peer connects.
    pub async fn run(
        self,
        mut inbound: mpsc::Receiver<InboundDm>,
        mut mail: mpsc::Receiver<DirectMail>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut events = self.events.subscribe();
        let mut tick = tokio::time::interval(RETRY_INTERVAL);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(InboundDm { peer, request, channel, slot: _slot, .. }) = inbound.recv() => {
                    let (response, offense) = self.receive(Some(peer), &request.object).await;
                    tracing::debug!(peer = %peer, response = ?response, "direct delivery");
                    let _ = self
                        .network
                        .respond(crate::net::Response::Dm(channel, response))
                        .await;
                    if offense {
                        let _ = self.network.offense(peer).await;
                    }
                }
                Some((bytes, done)) = mail.recv() => {
                    let (response, _) = self.receive(None, &bytes).await;
                    tracing::info!(response = ?response, "direct message from a mailbox");
                    let _ = done.send(());
                }
                ev = events.recv() => {
                    if let Ok(NodeEvent::PeerConnected { peer }) = ev {
                        let this = self.clone();
                        tokio::spawn(async move { this.retry_queued(Some(peer)).await });
                    }
                }
                _ = tick.tick() => {
                    let this = self.clone();
                    tokio::spawn(async move { this.retry_queued(None).await });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_three_seconds_to_ten_minutes() {
        assert_eq!(backoff_ms(1), 3_000);
        assert_eq!(backoff_ms(2), 6_000);
        assert_eq!(backoff_ms(40), RETRY_BACKOFF_MAX_MS);
    }

    #[test]
    fn receipts_only_move_a_message_forward() {
        assert!(rank(MessageStatus::Read) > rank(MessageStatus::Delivered));
        assert!(rank(MessageStatus::Delivered) > rank(MessageStatus::Queued));
        assert_eq!(rank(MessageStatus::Failed), rank(MessageStatus::Queued));
    }
}
