//! `GET /v1/events`: what happens in the node, live, as server-sent events.
//!
//! Owns the public stream: the node's [`NodeEvent`]s turned into [`EventView`]s (the
//! internal type never travels), a sequence number per stream in each event's `id:`,
//! keep-alive comments, an explicit `lagged` event when a subscriber falls behind, the kind
//! filter, and the cap on concurrent subscribers ([`EVENT_SUBSCRIBERS_MAX`]). [`stream`]
//! builds the response, so another route (the web page, behind its cookie) serves the same
//! stream behind its own auth. It changes nothing and keeps no history (no replay: a client
//! that connects again reads the state again), and every stream ends when the node shuts
//! down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use futures::StreamExt;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, watch};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::NodeEvent;
use crate::api::ApiState;
use crate::api::error::{ApiError, ApiQuery};
#[allow(unused_imports)]
use crate::api::types::ErrorBody;
use crate::api::types::{
    ErrorCode, EventKind, EventView, EventsQuery, HolePunchOutcome, SyncStatusName, TradeStateName,
};

/// Streams open at once, all routes together; one more is refused with 503 `busy`.
pub const EVENT_SUBSCRIBERS_MAX: usize = 64;
/// How often an idle stream sends a keep-alive comment (`: keep-alive`).
pub const EVENT_KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Longest `kinds` filter read (every kind, comma-separated, is far shorter).
pub const EVENT_FILTER_MAX_BYTES: usize = 512;

/// Where streams come from: the node's event channel, the cap on subscribers, and the
/// shutdown signal that ends them. Cheap to clone; every clone shares the cap.
#[derive(Debug, Clone)]
pub struct EventFeed {
    events: broadcast::Sender<NodeEvent>,
    subscribers: Arc<Semaphore>,
    max: usize,
    shutdown: watch::Receiver<bool>,
    peer_id: String,
}

impl EventFeed {
    /// A feed of `events` for the node `peer_id`, taking at most [`EVENT_SUBSCRIBERS_MAX`]
    /// subscribers; streams end when `shutdown` turns true.
    pub fn new(
        events: broadcast::Sender<NodeEvent>,
        shutdown: watch::Receiver<bool>,
        peer_id: String,
    ) -> Self {
        Self::with_limit(events, shutdown, peer_id, EVENT_SUBSCRIBERS_MAX)
    }

    /// The same with another cap.
    pub fn with_limit(
        events: broadcast::Sender<NodeEvent>,
        shutdown: watch::Receiver<bool>,
        peer_id: String,
        max: usize,
    ) -> Self {
        Self {
            events,
            subscribers: Arc::new(Semaphore::new(max)),
            max,
            shutdown,
            peer_id,
        }
    }

    /// Streams open now.
    pub fn subscribers(&self) -> usize {
        self.max
            .saturating_sub(self.subscribers.available_permits())
    }

    /// A new subscription: `subscribed` first, then what happens from now on that `filter`
    /// admits, each with its sequence number (1, 2, ...). Refused with 503 `busy` when
    /// [`EVENT_SUBSCRIBERS_MAX`] streams are open; the place is freed when the stream is
    /// dropped.
    pub fn subscribe(
        &self,
        filter: EventFilter,
    ) -> Result<impl Stream<Item = (u64, EventView)> + Send + use<>, ApiError> {
        let permit = self.subscribers.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Busy,
                format!(
                    "{} event streams are open already, the most this node serves at once; \
                         close one or try again later",
                    self.max
                ),
            )
        })?;
        let first = EventView::Subscribed {
            peer_id: self.peer_id.clone(),
            kinds: filter.kinds(),
        };
        let sub = Subscription {
            rx: self.events.subscribe(),
            shutdown: self.shutdown.clone(),
            filter,
            first: Some(first),
            seq: 0,
            _permit: permit,
        };
        Ok(futures::stream::unfold(sub, |mut sub| async move {
            let view = sub.next().await?;
            sub.seq += 1;
            Some(((sub.seq, view), sub))
        }))
    }
}

/// Which kinds a stream sends (`subscribed` and `lagged` always).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    only: Option<Vec<EventKind>>,
}

impl EventFilter {
    /// Every kind.
    pub fn all() -> Self {
        Self::default()
    }

    /// From the `kinds` parameter: comma-separated kind names; absent means every kind. An
    /// empty or unknown name is refused with 400 `bad_query`, naming the kinds there are.
    pub fn parse(kinds: Option<&str>) -> Result<Self, ApiError> {
        let Some(list) = kinds else {
            return Ok(Self::all());
        };
        let bad =
            |message: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadQuery, message);
        if list.len() > EVENT_FILTER_MAX_BYTES {
            return Err(bad(format!(
                "kinds is {} bytes long, more than the {EVENT_FILTER_MAX_BYTES} it may be",
                list.len()
            )));
        }
        let mut only = Vec::new();
        for name in list.split(',').map(str::trim) {
            let Some(kind) = EventKind::from_name(name) else {
                let known: Vec<&str> = EventKind::ALL.iter().map(|k| k.as_str()).collect();
                let shown: String = name.chars().take(40).collect();
                return Err(bad(format!(
                    "unknown event kind {shown:?} in kinds; the kinds are: {}",
                    known.join(", ")
                )));
            };
            if !only.contains(&kind) {
                only.push(kind);
            }
        }
        Ok(Self { only: Some(only) })
    }

    /// Whether a stream with this filter sends events of `kind`.
    pub fn admits(&self, kind: EventKind) -> bool {
        matches!(kind, EventKind::Subscribed | EventKind::Lagged)
            || self.only.as_ref().is_none_or(|only| only.contains(&kind))
    }

    /// The kinds a stream with this filter sends.
    pub fn kinds(&self) -> Vec<EventKind> {
        EventKind::ALL
            .into_iter()
            .filter(|k| self.admits(*k))
            .collect()
    }
}

/// One subscriber's state: its receiver, the shutdown signal, its filter, the number of the
/// last event sent, and its place among the subscribers (freed when this is dropped).
struct Subscription {
    rx: broadcast::Receiver<NodeEvent>,
    shutdown: watch::Receiver<bool>,
    filter: EventFilter,
    first: Option<EventView>,
    seq: u64,
    _permit: OwnedSemaphorePermit,
}

/// What the subscription waited for.
enum Next {
    Shutdown,
    Received(Result<NodeEvent, RecvError>),
}

impl Subscription {
    /// The next event to send, or None once the node shuts down.
    async fn next(&mut self) -> Option<EventView> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        loop {
            let next = tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|stop| *stop) => Next::Shutdown,
                r = self.rx.recv() => Next::Received(r),
            };
            match next {
                Next::Shutdown | Next::Received(Err(RecvError::Closed)) => return None,
                Next::Received(Err(RecvError::Lagged(missed))) => {
                    tracing::debug!(missed, "an event subscriber fell behind");
                    return Some(EventView::Lagged { missed });
                }
                Next::Received(Ok(ev)) => {
                    let view = view(ev);
                    if self.filter.admits(view.kind()) {
                        return Some(view);
                    }
                }
            }
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("filter", &self.filter)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

/// The public form of a node event.
pub fn view(ev: NodeEvent) -> EventView {
    match ev {
        NodeEvent::PeerConnected { peer } => EventView::PeerConnected { peer },
        NodeEvent::ListingStored { listing } => EventView::ListingStored { listing },
        NodeEvent::Synced { peer } => EventView::Synced { peer },
        NodeEvent::SyncProgress {
            status,
            in_progress,
            to_fetch,
            peers_reconciled,
        } => EventView::SyncProgress {
            status: SyncStatusName::from(status),
            in_progress: in_progress as u64,
            to_fetch: to_fetch as u64,
            peers_reconciled: peers_reconciled as u64,
        },
        NodeEvent::TradeUpdated { trade, state } => EventView::TradeUpdated {
            trade,
            state: TradeStateName::from(state),
        },
        NodeEvent::Delivery { message, status } => EventView::Delivery { message, status },
        NodeEvent::PeerBanned { peer } => EventView::PeerBanned { peer },
        NodeEvent::RelayReserved { relay } => EventView::RelayReserved { relay },
        NodeEvent::RelayConnected { peer } => EventView::RelayConnected { peer },
        NodeEvent::RelayedConnection { peer } => EventView::RelayedConnection { peer },
        NodeEvent::HolePunch {
            peer,
            direct,
            ms,
            error,
        } => EventView::HolePunch {
            peer,
            outcome: if direct {
                HolePunchOutcome::Direct
            } else {
                HolePunchOutcome::Failed
            },
            ms,
            error,
        },
        NodeEvent::Indexed { count } => EventView::Indexed {
            count: count as u64,
        },
        NodeEvent::Notification { notification } => EventView::Notification { notification },
        NodeEvent::MessageReceived {
            thread,
            message,
            from,
        } => EventView::MessageReceived {
            thread,
            message,
            from,
        },
        NodeEvent::MessageStatus {
            thread,
            message,
            status,
            reason,
        } => EventView::MessageStatus {
            thread,
            message,
            status,
            reason,
        },
    }
}

/// One server-sent event: `event: <kind>`, `id: <seq>`, `data: <JSON>`.
fn sse_event(seq: u64, view: &EventView) -> Event {
    let frame = Event::default()
        .event(view.kind().as_str())
        .id(seq.to_string());
    frame
        .json_data(view)
        .unwrap_or_else(|e| Event::default().comment(format!("event {seq} not encoded: {e}")))
}

/// The response of an event stream (see [`events`] for the format), for any route that has
/// checked its own auth: `GET /v1/events` behind the token, the web page behind its cookie.
pub fn stream(
    feed: &EventFeed,
    filter: EventFilter,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + Send + use<>>, ApiError> {
    let events = feed
        .subscribe(filter)?
        .map(|(seq, view)| Ok(sse_event(seq, &view)));
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(EVENT_KEEP_ALIVE)
            .text("keep-alive"),
    ))
}

pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new().routes(routes!(events))
}

/// What happens in the node, live, as server-sent events (`text/event-stream`), so a page
/// or a program updates without polling.
///
/// Each event is `event: <kind>`, `id: <n>` (1, 2, ... in this stream) and `data: <one JSON
/// object>` (the `EventView` schema, whose `kind` is the same as `event:`). Kinds:
/// `subscribed` (always first: nothing after it is missed, short of a `lagged`; what
/// happened before is read with the other routes), `lagged` (this client read too slowly and
/// `missed` events were dropped for it: read the state again), `listing_stored` (`listing`),
/// `trade_updated` (`trade`, `state`), `delivery` (`message`, `status`: `delivered` or
/// `failed`), `sync_progress` (`status`, `in_progress`, `to_fetch`, `peers_reconciled`: at
/// most one a second while catching up), `synced` (`peer`), `indexed` (`count`),
/// `peer_connected` (`peer`), `peer_banned` (`peer`), `relay_reserved` (`relay`),
/// `relay_connected` (`peer`), `relayed_connection` (`peer`: first reached through a relay),
/// `hole_punch` (`peer`, `outcome`: `direct` or `failed`, `ms` since the relayed connection,
/// `error`), `notification` (`notification`: one `NotificationView`, as
/// `GET /v1/notifications` lists it; `jangteo watch` reads these).
///
/// `kinds=trade_updated,delivery` sends only those kinds (`subscribed` and `lagged` always).
/// An idle stream sends a comment (`: keep-alive`) every 15 s. Ids restart at 1 on every
/// connection and nothing is replayed (`Last-Event-ID` is ignored). At most 64 streams are
/// open at once. Every stream ends when the node shuts down.
#[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Server-sent events; each event's data is one `EventView`",
            content_type = "text/event-stream", body = EventView),
        (status = 400, description = "An unknown kind or parameter (`bad_query`)", body = ErrorBody),
        (status = 503, description = "As many streams are open as the node serves (`busy`)", body = ErrorBody),
    ))]
async fn events(
    State(s): State<ApiState>,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + Send + use<>>, ApiError> {
    stream(&s.events, EventFilter::parse(q.kinds.as_deref())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jangteo_protocol::trade::TradeState;

    fn feed(max: usize) -> (broadcast::Sender<NodeEvent>, watch::Sender<bool>, EventFeed) {
        let (events, _) = broadcast::channel(4);
        let (stop, stop_rx) = watch::channel(false);
        let feed = EventFeed::with_limit(events.clone(), stop_rx, "me".into(), max);
        (events, stop, feed)
    }

    async fn next<S: Stream<Item = (u64, EventView)> + Unpin>(
        s: &mut S,
    ) -> Option<(u64, EventView)> {
        tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("an event or the end within 5 s")
    }

    fn stored(n: usize) -> NodeEvent {
        NodeEvent::ListingStored {
            listing: format!("{n:064x}"),
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_how_many_it_missed_then_goes_on() {
        let (events, _stop, feed) = feed(8);
        let mut s = Box::pin(feed.subscribe(EventFilter::all()).expect("subscribed"));
        let (seq, first) = next(&mut s).await.expect("first");
        assert_eq!(seq, 1);
        assert_eq!(
            first,
            EventView::Subscribed {
                peer_id: "me".into(),
                kinds: EventKind::ALL.to_vec()
            }
        );
        // The channel holds 4: of 10 sent while the subscriber did not read, 6 are lost.
        for n in 0..10 {
            events.send(stored(n)).expect("a receiver");
        }
        assert_eq!(
            next(&mut s).await,
            Some((2, EventView::Lagged { missed: 6 }))
        );
        for (seq, n) in (3..).zip(6..10) {
            assert_eq!(
                next(&mut s).await,
                Some((
                    seq,
                    EventView::ListingStored {
                        listing: format!("{n:064x}")
                    }
                ))
            );
        }
    }

    #[tokio::test]
    async fn the_filter_keeps_its_kinds_and_shutdown_ends_the_stream() {
        let (events, stop, feed) = feed(8);
        let filter = EventFilter::parse(Some("trade_updated, delivery")).expect("valid");
        let mut s = Box::pin(feed.subscribe(filter).expect("subscribed"));
        let (_, first) = next(&mut s).await.expect("first");
        let EventView::Subscribed { kinds, .. } = first else {
            panic!("{first:?}")
        };
        assert_eq!(
            kinds,
            [
                EventKind::Subscribed,
                EventKind::Lagged,
                EventKind::TradeUpdated,
                EventKind::Delivery
            ]
        );
        events.send(stored(1)).expect("a receiver");
        events
            .send(NodeEvent::TradeUpdated {
                trade: "t".into(),
                state: TradeState::Accepted,
            })
            .expect("a receiver");
        assert_eq!(
            next(&mut s).await,
            Some((
                2,
                EventView::TradeUpdated {
                    trade: "t".into(),
                    state: TradeStateName::Accepted
                }
            ))
        );
        stop.send(true).expect("a receiver");
        assert_eq!(next(&mut s).await, None);
    }

    #[tokio::test]
    async fn subscribers_beyond_the_cap_are_refused_until_one_leaves() {
        let (_events, _stop, feed) = feed(2);
        let a = feed.subscribe(EventFilter::all()).expect("first");
        let _b = feed.subscribe(EventFilter::all()).expect("second");
        assert_eq!(feed.subscribers(), 2);
        let refused = feed
            .subscribe(EventFilter::all())
            .err()
            .expect("third refused");
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.code, ErrorCode::Busy);
        drop(a);
        assert_eq!(feed.subscribers(), 1);
        assert!(feed.subscribe(EventFilter::all()).is_ok());
    }

    #[test]
    fn unknown_or_empty_kinds_are_refused_naming_the_kinds() {
        for bad in ["", "trade", "trade_updated,", "delivery,nope"] {
            let e = EventFilter::parse(Some(bad)).expect_err("refused");
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
            assert_eq!(e.code, ErrorCode::BadQuery);
            assert!(e.message.contains("listing_stored"), "{}", e.message);
        }
        assert!(EventFilter::parse(Some(&"delivery,".repeat(100))).is_err());
        let f = EventFilter::parse(Some("delivery,delivery")).expect("valid");
        assert!(f.admits(EventKind::Delivery) && f.admits(EventKind::Lagged));
        assert!(!f.admits(EventKind::ListingStored));
        assert!(
            EventFilter::parse(None)
                .expect("valid")
                .admits(EventKind::PeerBanned)
        );
    }

    #[tokio::test]
    async fn every_frame_names_its_kind_and_number_and_carries_the_json() {
        use axum::response::IntoResponse;
        let frames = futures::stream::iter([Ok::<_, Infallible>(sse_event(
            7,
            &EventView::Lagged { missed: 3 },
        ))]);
        let response = Sse::new(frames).into_response();
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "text/event-stream"
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        assert_eq!(
            std::str::from_utf8(&body).expect("utf-8"),
            "event: lagged\nid: 7\ndata: {\"kind\":\"lagged\",\"missed\":3}\n\n"
        );
    }
}
