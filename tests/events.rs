//! The live event stream `GET /v1/events` of real `jangteo` processes, read as another
//! program would: a plain HTTP/1.1 connection, chunked transfer decoding, server-sent event
//! frames, each frame's JSON decoded as the contract's `EventView`.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{WAIT, json_as, poll_until, start_node, tcp_addr};
use jangteo_node::api::types::{
    ApiAddrFile, DeliveryStatus, ErrorBody, ErrorCode, EventKind, EventView, ListingRef, OfferMade,
    SyncStatusName, TradeRef, TradeStateName,
};

/// The most subscribers a node serves at once (`jangteo_node::api::events`).
const SUBSCRIBERS_MAX: usize = jangteo_node::api::events::EVENT_SUBSCRIBERS_MAX;
/// Largest chunk this reader accepts (an event is a few hundred bytes).
const CHUNK_MAX: usize = 1 << 20;

/// The node's API address and token, from its data directory.
fn api(dir: &Path) -> (String, String) {
    let addr: ApiAddrFile =
        serde_json::from_str(&std::fs::read_to_string(dir.join("api.json")).expect("api.json"))
            .expect("api.json");
    let token = std::fs::read_to_string(dir.join("api.token")).expect("api.token");
    (addr.addr, token.trim().to_owned())
}

/// An answer that is not a stream.
#[derive(Debug)]
struct Refusal {
    status: u16,
    body: ErrorBody,
}

/// One event of a stream.
#[derive(Debug)]
struct Frame {
    id: u64,
    view: EventView,
}

/// How reading a stream stopped.
#[derive(Debug, PartialEq)]
enum Stop {
    /// Nothing came before the deadline.
    Timeout,
    /// The node ended the stream cleanly (the last, empty chunk).
    Ended,
}

/// One `GET /v1/events` connection.
struct EventStream {
    reader: BufReader<TcpStream>,
    /// Decoded body bytes not yet split into frames.
    pending: Vec<u8>,
    ended: bool,
    /// Every event read so far, in order.
    seen: Vec<Frame>,
    /// Keep-alive comments read.
    comments: usize,
}

impl EventStream {
    /// Sends the request with `token` (None: no Authorization header); a stream on 200, the
    /// error body otherwise.
    fn open(dir: &Path, query: &str, token: Option<&str>) -> Result<EventStream, Refusal> {
        let (addr, _) = api(dir);
        let mut tcp = TcpStream::connect(&addr).expect("connect to the API");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        write!(
            tcp,
            "GET /v1/events{query} HTTP/1.1\r\nHost: {addr}\r\n{auth}Accept: text/event-stream\r\n\r\n"
        )
        .expect("send the request");
        let mut reader = BufReader::new(tcp);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).expect("status line");
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("header line");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header");
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let header = |n: &str| headers.iter().find(|(h, _)| h == n).map(|(_, v)| v.clone());
        if status != 200 {
            let len: usize = header("content-length")
                .and_then(|v| v.parse().ok())
                .expect("an error answer with its length");
            let mut body = vec![0; len];
            reader.read_exact(&mut body).expect("error body");
            let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!(
                    "the {status} answer is not the API's error shape: {e}: {}",
                    String::from_utf8_lossy(&body)
                )
            });
            return Err(Refusal { status, body });
        }
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header("transfer-encoding").as_deref(), Some("chunked"));
        Ok(EventStream {
            reader,
            pending: Vec::new(),
            ended: false,
            seen: Vec::new(),
            comments: 0,
        })
    }

    /// Opens with the node's token, and reads the first event: `subscribed`.
    fn subscribe(dir: &Path, query: &str) -> EventStream {
        let (_, token) = api(dir);
        let mut s = EventStream::open(dir, query, Some(&token))
            .unwrap_or_else(|r| panic!("GET /v1/events{query} refused: {r:?}"));
        s.wait_for("the first event", |v| {
            matches!(v, EventView::Subscribed { .. })
        });
        assert_eq!(s.seen.len(), 1, "subscribed comes first: {:?}", s.seen);
        s
    }

    /// Reads one chunk of the body before `deadline`.
    fn read_chunk(&mut self, deadline: Instant) -> Result<(), Stop> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Stop::Timeout);
        }
        self.reader
            .get_ref()
            .set_read_timeout(Some(left))
            .expect("timeout");
        let timed_out = |e: std::io::Error| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Stop::Timeout,
            _ => panic!("the stream broke instead of ending cleanly: {e}"),
        };
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(timed_out)?;
        assert!(n > 0, "the connection closed without the last chunk");
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .unwrap_or_else(|_| panic!("not a chunk size: {line:?}"));
        assert!(size <= CHUNK_MAX, "a chunk of {size} bytes");
        if size == 0 {
            self.ended = true;
            return Err(Stop::Ended);
        }
        let mut chunk = vec![0; size + 2];
        self.reader.read_exact(&mut chunk).map_err(timed_out)?;
        assert_eq!(&chunk[size..], b"\r\n", "a chunk ends with CRLF");
        self.pending.extend_from_slice(&chunk[..size]);
        Ok(())
    }

    /// The next event before `deadline` (keep-alive comments are counted and skipped).
    fn next_frame(&mut self, deadline: Instant) -> Result<&Frame, Stop> {
        loop {
            if let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let raw: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8(raw).expect("UTF-8 frame");
                if let Some(frame) = self.parse(&text) {
                    self.seen.push(frame);
                    return Ok(self.seen.last().expect("just pushed"));
                }
                continue;
            }
            if self.ended {
                return Err(Stop::Ended);
            }
            self.read_chunk(deadline)?;
        }
    }

    /// One frame's fields: `event:`, `id:`, `data:` (None for a comment).
    fn parse(&mut self, text: &str) -> Option<Frame> {
        let (mut event, mut id, mut data) = (None, None, None);
        for line in text.lines() {
            if line.is_empty() || line.starts_with(':') {
                continue;
            }
            let (field, value) = line
                .split_once(": ")
                .unwrap_or_else(|| panic!("not `field: value`: {line:?} in {text:?}"));
            match field {
                "event" => event = Some(value.to_owned()),
                "id" => id = Some(value.parse::<u64>().expect("a numeric id")),
                "data" => data = Some(value.to_owned()),
                other => panic!("unexpected field {other:?} in {text:?}"),
            }
        }
        let Some(data) = data else {
            assert!(
                event.is_none() && id.is_none(),
                "a frame without data: {text:?}"
            );
            self.comments += 1;
            return None;
        };
        let view: EventView = serde_json::from_str(&data)
            .unwrap_or_else(|e| panic!("data is not the contract's EventView: {e}: {data}"));
        assert_eq!(event.as_deref(), Some(view.kind().as_str()), "{text:?}");
        let id = id.expect("every event has an id");
        let last = self.seen.last().map_or(0, |f| f.id);
        assert_eq!(id, last + 1, "ids count up in a stream: {text:?}");
        Some(Frame { id, view })
    }

    /// The first event (read before or now) that `pred` accepts, within [`WAIT`].
    fn wait_for(&mut self, what: &str, pred: impl Fn(&EventView) -> bool) -> EventView {
        if let Some(f) = self.seen.iter().find(|f| pred(&f.view)) {
            return f.view.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_frame(deadline) {
                Ok(f) if pred(&f.view) => return f.view.clone(),
                Ok(_) => {}
                Err(stop) => panic!(
                    "waiting for {what}: {stop:?} after {WAIT:?}; events seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Reads until the node ends the stream, failing after `within`.
    fn wait_end(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.next_frame(deadline) {
                Ok(_) => {}
                Err(Stop::Ended) => return,
                Err(Stop::Timeout) => panic!("the stream did not end within {within:?}"),
            }
        }
    }

    fn kinds_seen(&self) -> Vec<EventKind> {
        self.seen.iter().map(|f| f.view.kind()).collect()
    }
}

fn refusal(dir: &Path, query: &str, token: Option<&str>) -> Refusal {
    match EventStream::open(dir, query, token) {
        Ok(_) => panic!("GET /v1/events{query} was answered with a stream"),
        Err(r) => r,
    }
}

#[test]
fn a_posted_listing_and_each_trade_step_reach_the_other_nodes_stream() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("seller"), tmp.path().join("buyer"));
    // B runs alone first, so its stream sees the seller connect and the catch-up with it.
    let (_b, b_id) = start_node(&b_dir, None);
    let mut b_events = EventStream::subscribe(&b_dir, "");
    assert_eq!(
        b_events.seen[0].view,
        EventView::Subscribed {
            peer_id: b_id.peer_id.clone(),
            kinds: EventKind::ALL.to_vec()
        }
    );
    let (_a, a_id) = start_node(&a_dir, Some(&tcp_addr(&b_id)));
    let a = a_id.peer_id.clone();
    let mut a_trades = EventStream::subscribe(&a_dir, "?kinds=trade_updated,delivery");

    b_events.wait_for(
        "the seller connecting",
        |v| matches!(v, EventView::PeerConnected { peer } if *peer == a),
    );
    b_events.wait_for(
        "the catch-up with the seller",
        |v| matches!(v, EventView::Synced { peer } if *peer == a),
    );
    let caught_up = b_events.wait_for("sync progress: caught up", |v| {
        matches!(
            v,
            EventView::SyncProgress {
                status: SyncStatusName::CaughtUp,
                ..
            }
        )
    });
    let EventView::SyncProgress {
        in_progress,
        to_fetch,
        peers_reconciled,
        ..
    } = caught_up
    else {
        unreachable!()
    };
    assert_eq!((in_progress, to_fetch), (0, 0));
    assert!(peers_reconciled >= 1);

    // (1) A listing the seller posts arrives on the buyer's stream.
    let posted = Instant::now();
    let listing: ListingRef = json_as(
        &a_dir,
        &[
            "post",
            "--title",
            "Hanbok, silk, size M",
            "--price",
            "80000",
            "--currency",
            "KRW",
        ],
    );
    b_events.wait_for(
        "the seller's listing",
        |v| matches!(v, EventView::ListingStored { listing: l } if *l == listing.id),
    );
    eprintln!(
        "listing_stored on the buyer's stream {} ms after `jangteo post` started",
        posted.elapsed().as_millis()
    );

    // (2) Each trade step shows on the other side, with its new state.
    let offer: OfferMade = json_as(&b_dir, &["offer", &listing.id]);
    let trade = offer.id;
    a_trades.wait_for("the offer on the seller's stream", |v| {
        *v == EventView::TradeUpdated {
            trade: trade.clone(),
            state: TradeStateName::Offered,
        }
    });
    b_events.wait_for("the buyer's own step", |v| {
        *v == EventView::TradeUpdated {
            trade: trade.clone(),
            state: TradeStateName::Offered,
        }
    });
    b_events.wait_for("the offer's delivery", |v| {
        *v == EventView::Delivery {
            message: trade.clone(),
            status: DeliveryStatus::Delivered,
        }
    });
    let accepted_at = Instant::now();
    let accepted: TradeRef = json_as(&a_dir, &["accept", &trade]);
    assert_eq!(accepted.state, TradeStateName::Accepted);
    b_events.wait_for("the accept on the buyer's stream", |v| {
        *v == EventView::TradeUpdated {
            trade: trade.clone(),
            state: TradeStateName::Accepted,
        }
    });
    eprintln!(
        "trade_updated (accepted) on the buyer's stream {} ms after `jangteo accept` started",
        accepted_at.elapsed().as_millis()
    );
    a_trades.wait_for("the accept's delivery on the seller's stream", |v| {
        matches!(
            v,
            EventView::Delivery { message, status: DeliveryStatus::Delivered } if *message != trade
        )
    });
    let paid: TradeRef = json_as(&b_dir, &["paid", &trade, "--reference", "KB 1234"]);
    assert_eq!(paid.state, TradeStateName::Paid);
    a_trades.wait_for("the payment on the seller's stream", |v| {
        *v == EventView::TradeUpdated {
            trade: trade.clone(),
            state: TradeStateName::Paid,
        }
    });

    // The filter held: the seller's stream carried only what it asked for.
    for k in a_trades.kinds_seen() {
        assert!(
            matches!(
                k,
                EventKind::Subscribed | EventKind::TradeUpdated | EventKind::Delivery
            ),
            "{k:?} on a stream of trade_updated,delivery"
        );
    }
    assert!(!b_events.kinds_seen().contains(&EventKind::Lagged));
}

#[test]
fn the_stream_needs_the_token_refuses_unknown_kinds_caps_subscribers_and_ends_at_shutdown() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (mut node, _) = start_node(&dir, None);
    let (_, token) = api(&dir);

    // (3) No token, a wrong token: 401; an unknown kind or parameter: 400.
    for t in [None, Some("0".repeat(64))] {
        let r = refusal(&dir, "", t.as_deref());
        assert_eq!(r.status, 401, "{r:?}");
        assert_eq!(r.body.error.code, ErrorCode::Unauthorized);
    }
    let r = refusal(&dir, "?kinds=trade_updated,bogus", Some(&token));
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.body.error.code, ErrorCode::BadQuery);
    assert!(
        r.body.error.message.contains("bogus") && r.body.error.message.contains("delivery"),
        "{}",
        r.body.error.message
    );
    for query in ["?kinds=", "?since=0"] {
        let r = refusal(&dir, query, Some(&token));
        assert_eq!(
            (r.status, r.body.error.code),
            (400, ErrorCode::BadQuery),
            "{query}"
        );
    }

    // (4) The cap: every place taken, one more is refused with 503 `busy`.
    let mut open: Vec<EventStream> = (0..SUBSCRIBERS_MAX)
        .map(|_| EventStream::subscribe(&dir, "?kinds=listing_stored"))
        .collect();
    let r = refusal(&dir, "", Some(&token));
    assert_eq!(
        (r.status, r.body.error.code),
        (503, ErrorCode::Busy),
        "{r:?}"
    );
    // A client that leaves frees its place.
    drop(open.pop());
    let left = Instant::now();
    let again = poll_until(WAIT, || EventStream::open(&dir, "", Some(&token)).ok())
        .expect("a place freed within the wait once a client left");
    eprintln!(
        "a place was free again {} ms after a client closed its connection",
        left.elapsed().as_millis()
    );
    open.push(again);

    // The node shuts down: every stream ends cleanly, and the node does not wait for them.
    let stopping = Instant::now();
    let pid = node.child.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    for s in &mut open {
        s.wait_end(Duration::from_secs(10));
    }
    let exited = poll_until(WAIT, || node.child.try_wait().ok().flatten())
        .expect("the node exits after SIGTERM");
    assert!(exited.success(), "the node exited with {exited}");
    eprintln!(
        "{} streams ended and the node exited {} ms after SIGTERM",
        open.len(),
        stopping.elapsed().as_millis()
    );
}
