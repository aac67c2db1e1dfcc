//! Conversations in the page: the chats inbox (each thread with its peer, listing, last
//! message, time and unread count), a conversation's page (opening it marks it read, which
//! sends the other side a signed `read` receipt, and marks its message notifications read),
//! the chat panel that the listing and trade
//! pages show for the thread of their listing and people, and blocking.
//!
//! Sending goes through the conversations service as `/v1/conversations…` does (`ask` from
//! a listing, `say` in a held thread, `write` from a trade's page); the service stamps a
//! first contact, signs and delivers. A refusal is shown in the page's language next to the
//! send box, with what was typed kept. Holds no rule of its own.

use askama::Template;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::post::{PARTS_MAX, Photo, read_photo, read_text, store_photos};
use super::{Chrome, Page, csrf_refused, error_page, local_path, render, short_peer, when};
use crate::api::types::{
    MarkRead, MessageSent, MessageStatus, NotificationKind, NotificationsQuery, ThreadSummary,
    ThreadView,
};
use crate::services::conversations::ChatError;
use crate::web::WebState;
use crate::web::i18n::{Messages, fill};
use crate::web::photos::sniff_image;
use jangteo_protocol::blob::MAX_BLOB_BYTES;
use jangteo_protocol::message::MESSAGE_PHOTOS_MAX;
use jangteo_protocol::message::thread_id;
use jangteo_protocol::{ListingId, public_key_from_peer_id};

/// Longest text the send box takes (the protocol's limit; the service checks it).
pub const CHAT_TEXT_MAX: usize = jangteo_protocol::message::MESSAGE_TEXT_MAX_CHARS;

/// One message as shown in a chat.
#[derive(Debug, Clone)]
pub struct ChatLine {
    /// Message id.
    pub id: String,
    /// Whether I wrote it.
    pub mine: bool,
    /// The text, as written (escaped by the template).
    pub text: String,
    /// When, as people say it.
    pub when: String,
    /// queued, delivered, read or failed (a CSS class); empty for theirs.
    pub status_key: &'static str,
    /// The status's name.
    pub status: &'static str,
    /// Which relay holds it, or why it failed.
    pub note: String,
    /// Its photos: blob ids (shown as thumbnails, fetched from the nodes that hold them when
    /// first looked at) and their alt texts.
    pub photos: Vec<(String, String)>,
}

/// The chat panel of a listing, a trade or a conversation's page.
#[derive(Debug, Clone)]
pub struct ChatPanel {
    /// The panel's heading.
    pub title: &'static str,
    /// The thread's id (the page's script follows its events).
    pub thread: String,
    /// Whether the thread is held here (a link to its page).
    pub held: bool,
    /// Where the send box posts.
    pub action: String,
    /// The messages, oldest first.
    pub lines: Vec<ChatLine>,
    /// What was typed, when a send was refused.
    pub draft: String,
    /// Why the send was refused.
    pub error: Option<String>,
    /// Whether I blocked the other person.
    pub blocked: bool,
    /// The other person's peer id.
    pub peer: String,
    /// Longest text the box takes.
    pub max: usize,
    /// Messages this page marked read (taken off the header's badge).
    pub cleared: u64,
}

impl ChatPanel {
    /// The header of a page showing this panel: its badge without what the panel read.
    pub fn chrome(&self, mut c: Chrome) -> Chrome {
        c.unread_messages = c.unread_messages.saturating_sub(self.cleared);
        c
    }
}

fn lines(t: &Messages, v: &ThreadView) -> Vec<ChatLine> {
    v.messages
        .iter()
        .map(|m| {
            let (status_key, status) = match m.status {
                MessageStatus::Received => ("", ""),
                MessageStatus::Queued => ("queued", t.msg_queued),
                MessageStatus::Delivered => ("delivered", t.msg_delivered),
                MessageStatus::Read => ("read", t.msg_read),
                MessageStatus::Failed => ("failed", t.msg_failed),
            };
            let note = match m.status {
                MessageStatus::Queued if !m.relays.is_empty() => m
                    .relays
                    .iter()
                    .map(|r| fill(t.msg_held_by, &[("relay", &short_peer(r))]))
                    .collect::<Vec<_>>()
                    .join(", "),
                // The network's own words for why it waits or failed.
                MessageStatus::Queued | MessageStatus::Failed => {
                    m.reason.clone().unwrap_or_default()
                }
                _ => String::new(),
            };
            ChatLine {
                id: m.id.clone(),
                mine: m.mine,
                text: m.text.clone(),
                when: when(t, m.at),
                status_key,
                status,
                note,
                photos: m
                    .photos
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (p.clone(), fill(t.msg_photo, &[("n", &(i + 1).to_string())])))
                    .collect(),
            }
        })
        .collect()
}

/// The unread `message` notifications of `thread` are marked read: the person is reading
/// the conversation they point to (as a chat app clears its chat notifications).
async fn mark_message_notifications_read(w: &WebState, thread: &str) {
    let a = w.api.alerts.clone();
    let thread = thread.to_owned();
    let marked = tokio::task::spawn_blocking(move || {
        let q = NotificationsQuery {
            unread: Some(true),
            limit: Some(crate::services::alerts::NOTIFICATIONS_LIST_MAX),
        };
        let ids: Vec<u64> = a
            .notifications(&q)?
            .notifications
            .into_iter()
            .filter(|n| {
                n.kind == NotificationKind::Message && n.thread.as_deref() == Some(thread.as_str())
            })
            .map(|n| n.id)
            .collect();
        if !ids.is_empty() {
            a.mark_read(&MarkRead { ids, all: false })?;
        }
        Ok::<_, crate::services::alerts::AlertError>(())
    })
    .await;
    if let Ok(Err(e)) = marked {
        tracing::warn!(error = %e, "could not mark the conversation's notifications read");
    }
}

/// The thread of `listing` between me and `peer`, read (when it has unread messages, this
/// marks them read and sends the receipts, since the person now sees them), or `None`
/// when there is no such thread here yet.
/// With the view, how many messages opening it marked read.
async fn open_thread(w: &WebState, thread: &str) -> Result<Option<(ThreadView, u64)>, ChatError> {
    let c = w.api.conversations.clone();
    let id = thread.to_owned();
    let v = tokio::task::spawn_blocking(move || c.view(&id))
        .await
        .map_err(|e| ChatError::Internal(e.to_string()))?;
    if v.is_ok() {
        mark_message_notifications_read(w, thread).await;
    }
    match v {
        Ok(v) if v.unread > 0 => {
            let read = w.api.conversations.read(thread).await?;
            Ok(Some((read, u64::from(v.unread))))
        }
        Ok(v) => Ok(Some((v, 0))),
        Err(ChatError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether I blocked `peer` (false for what is not a peer id).
pub async fn peer_blocked(w: &WebState, peer: &str) -> bool {
    let Some(key) = public_key_from_peer_id(peer) else {
        return false;
    };
    let store = w.api.store.clone();
    tokio::task::spawn_blocking(move || store.is_blocked(&key).unwrap_or(false))
        .await
        .unwrap_or(false)
}

/// The thread id of `listing` between me and `peer`, if both ids are well formed.
pub fn thread_of(me: &str, listing: &str, peer: &str) -> Option<String> {
    let lid = ListingId::from_hex(listing)?;
    let a = public_key_from_peer_id(me)?;
    let b = public_key_from_peer_id(peer)?;
    Some(thread_id(&lid, &a, &b).to_hex())
}

/// What was typed and why it was refused, for a panel shown again.
pub type Draft = Option<(String, String)>;

/// The chat panel of `listing` between me and `peer`, posting to `action`.
pub async fn panel(
    w: &WebState,
    page: &Page,
    (listing, peer): (&str, &str),
    title: &'static str,
    action: String,
    draft: Draft,
) -> ChatPanel {
    let thread = thread_of(&page.me, listing, peer).unwrap_or_default();
    let view = match open_thread(w, &thread).await {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(thread = %thread, error = %e, "could not open the conversation");
            None
        }
    };
    let (draft, error) = match draft {
        Some((d, e)) => (d, Some(e)),
        None => (String::new(), None),
    };
    ChatPanel {
        title,
        held: view.is_some(),
        cleared: view.as_ref().map_or(0, |(_, n)| *n),
        lines: view
            .as_ref()
            .map(|(v, _)| lines(page.t, v))
            .unwrap_or_default(),
        thread,
        action,
        draft,
        error,
        blocked: peer_blocked(w, peer).await,
        peer: peer.to_owned(),
        max: CHAT_TEXT_MAX,
    }
}

/// The send box's fields when sent urlencoded (text alone).
#[derive(Debug, Deserialize)]
struct TextForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    text: String,
}

/// What was wrong with the photos of a send, as received.
#[derive(Debug, Clone)]
enum PhotoProblem {
    /// More than a message carries.
    TooMany,
    /// Larger than a blob may be: its file name.
    TooLarge(String),
}

/// The send box's form: the text, and the photos the page's multipart form carries (a
/// form sent urlencoded carries text alone). Reading never fails: what could not be read
/// is said in the panel.
#[derive(Debug, Default)]
pub struct SendForm {
    csrf: String,
    text: String,
    photos: Vec<Photo>,
    problem: Option<PhotoProblem>,
    /// The body could not be read as a form (too large, malformed).
    unreadable: bool,
}

impl SendForm {
    /// The text as the protocol holds it: a textarea's CRLF as LF, outer blanks trimmed.
    pub fn text(&self) -> String {
        self.text.replace("\r\n", "\n").trim().to_owned()
    }

    /// The text as typed (kept in the box when the send is refused).
    pub fn typed(&self) -> &str {
        &self.text
    }

    /// Whether the token is missing or wrong. A body that could not be read as a form has
    /// none either: it is refused by [`send`](Self::send) instead, with the reason in the
    /// panel.
    pub fn forged(&self, page: &Page) -> bool {
        !self.unreadable && !page.session.csrf_ok(&self.csrf)
    }

    /// Stores the photos and sends the text with them through `send` (the conversations
    /// service's `ask`, `say` or `write`). On refusal: the status and what the panel says.
    pub async fn send<F, Fut>(
        &mut self,
        w: &WebState,
        t: &Messages,
        send: F,
    ) -> Result<MessageSent, (StatusCode, String)>
    where
        F: FnOnce(String, Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<MessageSent, ChatError>>,
    {
        let photos = self
            .photos(w, t)
            .await
            .map_err(|why| (StatusCode::BAD_REQUEST, why))?;
        send(self.text(), photos)
            .await
            .map_err(|e| (refused_status(&e), t.chat_error(&e)))
    }

    async fn read_multipart(mut mp: Multipart) -> Self {
        let mut f = Self::default();
        let mut parts = 0;
        loop {
            let mut field = match mp.next_field().await {
                Ok(Some(field)) => field,
                Ok(None) => return f,
                Err(_) => break,
            };
            parts += 1;
            if parts > PARTS_MAX {
                break;
            }
            let name = field.name().unwrap_or("").to_owned();
            match name.as_str() {
                "photos" => {
                    let file = field.file_name().unwrap_or("").to_owned();
                    match read_photo(&mut field).await {
                        Err(()) => break,
                        Ok(None) => f.problem = Some(PhotoProblem::TooLarge(file)),
                        Ok(Some(bytes)) if bytes.is_empty() => {}
                        Ok(Some(_)) if f.photos.len() == MESSAGE_PHOTOS_MAX => {
                            f.problem = Some(PhotoProblem::TooMany);
                        }
                        Ok(Some(bytes)) => f.photos.push(Photo { name: file, bytes }),
                    }
                }
                field_name => {
                    let Ok(text) = read_text(&mut field).await else {
                        break;
                    };
                    match field_name {
                        "csrf" => f.csrf = text,
                        "text" => f.text = text,
                        _ => {}
                    }
                }
            }
        }
        f.unreadable = true;
        f
    }

    /// The photos, checked and stored as blobs: their ids, or what to say in the panel.
    async fn photos(&mut self, w: &WebState, t: &Messages) -> Result<Vec<String>, String> {
        if self.unreadable {
            return Err(t.err_form.to_owned());
        }
        let mb = (MAX_BLOB_BYTES / (1024 * 1024)).to_string();
        match &self.problem {
            Some(PhotoProblem::TooMany) => {
                return Err(fill(
                    t.err_photo_count,
                    &[("n", &MESSAGE_PHOTOS_MAX.to_string())],
                ));
            }
            Some(PhotoProblem::TooLarge(name)) => {
                return Err(fill(t.err_photo_size, &[("name", name), ("mb", &mb)]));
            }
            None => {}
        }
        if let Some(p) = self.photos.iter().find(|p| sniff_image(&p.bytes).is_none()) {
            return Err(fill(t.err_photo_type, &[("name", &p.name)]));
        }
        store_photos(w, t, std::mem::take(&mut self.photos)).await
    }
}

impl<S: Send + Sync> FromRequest<S> for SendForm {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let multipart = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("multipart/form-data"));
        if multipart {
            return Ok(match Multipart::from_request(req, state).await {
                Ok(mp) => Self::read_multipart(mp).await,
                Err(_) => Self {
                    unreadable: true,
                    ..Self::default()
                },
            });
        }
        Ok(
            match axum::Form::<TextForm>::from_request(req, state).await {
                Ok(axum::Form(f)) => Self {
                    csrf: f.csrf,
                    text: f.text,
                    ..Self::default()
                },
                Err(_) => Self {
                    unreadable: true,
                    ..Self::default()
                },
            },
        )
    }
}

/// Largest body of a send: every photo a message carries at its largest, one more, and the
/// text.
pub const SEND_BODY_MAX: usize = (MESSAGE_PHOTOS_MAX + 1) * MAX_BLOB_BYTES + 64 * 1024;

/// Where a sent message's page goes back to: the panel on `path`.
pub fn after_send(path: &str) -> Response {
    Redirect::to(&format!("{path}#chat")).into_response()
}

/// The status code of a refused send.
fn refused_status(e: &ChatError) -> StatusCode {
    match e {
        ChatError::Invalid(_) | ChatError::BadId(_) => StatusCode::BAD_REQUEST,
        ChatError::NotFound(_) => StatusCode::NOT_FOUND,
        ChatError::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
        ChatError::Store(_) | ChatError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::CONFLICT,
    }
}

/// One conversation in the inbox, as shown.
#[derive(Debug, Clone)]
pub struct InboxRow {
    /// Thread id.
    pub thread: String,
    /// The other person's peer id.
    pub peer: String,
    /// "with 12D3Ko…x7Qa".
    pub with: String,
    /// Listing id.
    pub listing: String,
    /// The listing's title.
    pub title: String,
    /// The last message.
    pub last: String,
    /// When the thread last changed.
    pub when: String,
    /// Messages not read yet.
    pub unread: u32,
    /// "3 unread".
    pub unread_label: String,
}

fn inbox_row(t: &Messages, s: ThreadSummary) -> InboxRow {
    InboxRow {
        with: fill(t.inbox_with, &[("peer", &short_peer(&s.peer))]),
        title: s
            .title
            .unwrap_or_else(|| t.inbox_listing_unknown.to_owned()),
        last: s.last.unwrap_or_default(),
        when: when(t, s.updated_at),
        unread_label: fill(t.badge_unread, &[("n", &s.unread.to_string())]),
        unread: s.unread,
        thread: s.thread,
        peer: s.peer,
        listing: s.listing,
    }
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxTemplate {
    c: Chrome,
    rows: Vec<InboxRow>,
}

/// Every conversation here, the latest first; `listing`: only those about it.
pub async fn threads(
    w: &WebState,
    listing: Option<String>,
) -> Result<Vec<ThreadSummary>, ChatError> {
    let c = w.api.conversations.clone();
    let all = tokio::task::spawn_blocking(move || c.inbox())
        .await
        .map_err(|e| ChatError::Internal(e.to_string()))??;
    Ok(match listing {
        Some(l) => all.into_iter().filter(|s| s.listing == l).collect(),
        None => all,
    })
}

/// The rows of the conversations about one of my listings (its page's list).
pub async fn rows_about(w: &WebState, t: &Messages, listing: &str) -> Vec<InboxRow> {
    threads(w, Some(listing.to_owned()))
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| inbox_row(t, s))
        .collect()
}

/// `GET /inbox`.
pub async fn inbox(State(w): State<WebState>, page: Page) -> Response {
    let t = page.t;
    match threads(&w, None).await {
        Ok(list) => render(
            StatusCode::OK,
            &InboxTemplate {
                c: Chrome::new(&page, t.inbox_title, "inbox"),
                rows: list.into_iter().map(|s| inbox_row(t, s)).collect(),
            },
        ),
        Err(e) => error_page(&page, StatusCode::INTERNAL_SERVER_ERROR, t.chat_error(&e)),
    }
}

#[derive(Template)]
#[template(path = "thread.html")]
struct ThreadTemplate {
    c: Chrome,
    peer: String,
    short: String,
    listing: String,
    title: String,
    trade: Option<String>,
    chat: ChatPanel,
}

async fn thread_page(
    w: &WebState,
    page: &Page,
    thread: &str,
    status: StatusCode,
    draft: Draft,
) -> Response {
    let t = page.t;
    let (v, cleared) = match open_thread(w, thread).await {
        Ok(Some(v)) => v,
        Ok(None) | Err(ChatError::BadId(_)) => {
            return error_page(page, StatusCode::NOT_FOUND, t.error_not_found.to_owned());
        }
        Err(e) => return error_page(page, StatusCode::INTERNAL_SERVER_ERROR, t.chat_error(&e)),
    };
    let (draft, error) = match draft {
        Some((d, e)) => (d, Some(e)),
        None => (String::new(), None),
    };
    let short = short_peer(&v.peer);
    let chat = ChatPanel {
        title: t.chat_label,
        thread: v.thread.clone(),
        held: true,
        action: format!("/inbox/{}", v.thread),
        lines: lines(t, &v),
        draft,
        error,
        blocked: peer_blocked(w, &v.peer).await,
        peer: v.peer.clone(),
        max: CHAT_TEXT_MAX,
        cleared,
    };
    render(
        status,
        &ThreadTemplate {
            c: chat.chrome(Chrome::new(
                page,
                fill(t.thread_title, &[("peer", &short)]),
                "inbox",
            )),
            chat,
            short,
            title: v
                .title
                .clone()
                .unwrap_or_else(|| t.inbox_listing_unknown.to_owned()),
            peer: v.peer,
            listing: v.listing,
            trade: v.trade,
        },
    )
}

/// `GET /inbox/{thread}`: the conversation, which the person now reads (their messages
/// are marked read and the other side gets the receipt).
pub async fn thread(State(w): State<WebState>, page: Page, Path(thread): Path<String>) -> Response {
    thread_page(&w, &page, &thread, StatusCode::OK, None).await
}

/// `POST /inbox/{thread}`: writes in the conversation.
pub async fn say(
    State(w): State<WebState>,
    page: Page,
    Path(thread): Path<String>,
    mut f: SendForm,
) -> Response {
    if f.forged(&page) {
        return csrf_refused(&page);
    }
    let sent = f
        .send(&w, page.t, |text, photos| {
            w.api.conversations.say(&thread, text, photos)
        })
        .await;
    match sent {
        Ok(MessageSent { thread, .. }) => after_send(&format!("/inbox/{thread}")),
        Err((status, why)) => {
            let draft = Some((f.typed().to_owned(), why));
            thread_page(&w, &page, &thread, status, draft).await
        }
    }
}

/// The block and unblock forms.
#[derive(Debug, Deserialize)]
pub struct BlockForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    peer: String,
    /// The confirmation box (blocking only).
    #[serde(default)]
    confirm: Option<String>,
    #[serde(default)]
    next: String,
}

async fn change_block(w: &WebState, page: &Page, f: BlockForm, blocked: bool) -> Response {
    if !page.session.csrf_ok(&f.csrf) {
        return csrf_refused(page);
    }
    if blocked && f.confirm.as_deref() != Some("yes") {
        return error_page(
            page,
            StatusCode::BAD_REQUEST,
            page.t.block_must_confirm.to_owned(),
        );
    }
    let c = w.api.conversations.clone();
    let peer = f.peer.trim().to_owned();
    match tokio::task::spawn_blocking(move || c.block(&peer, blocked)).await {
        Ok(Ok(_)) => Redirect::to(local_path(&f.next)).into_response(),
        Ok(Err(e)) => error_page(page, refused_status(&e), page.t.chat_error(&e)),
        Err(e) => error_page(
            page,
            StatusCode::INTERNAL_SERVER_ERROR,
            fill(page.t.error_internal, &[("reason", &e.to_string())]),
        ),
    }
}

/// `POST /block`: blocks a person (the form's box must be ticked), then goes back.
pub async fn block(
    State(w): State<WebState>,
    page: Page,
    axum::Form(f): axum::Form<BlockForm>,
) -> Response {
    change_block(&w, &page, f, true).await
}

/// `POST /unblock`: unblocks a person, then goes back.
pub async fn unblock(
    State(w): State<WebState>,
    page: Page,
    axum::Form(f): axum::Form<BlockForm>,
) -> Response {
    change_block(&w, &page, f, false).await
}
