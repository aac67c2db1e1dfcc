//! Saved-search alerts and notifications between real `jangteo` processes: a saved search
//! `자전거 --max-price 200000` on node B raises exactly one alert when node A posts a
//! matching listing and none for one that does not match, `jangteo watch` prints it as it
//! happens, a listing B learns by catch-up sync after being offline alerts too, the other
//! party's trade step notifies the seller, and bad input is refused with the reason.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use common::{
    BIN, NodeProc, WAIT, cli_error, jangteo, json_as, json_try_as, start_node, tcp_addr, wait_for,
};
use jangteo_node::api::types::{
    ListingRef, ListingView, NotificationKind, NotificationList, NotificationView, OfferMade,
    SavedSearchView,
};

/// A `jangteo watch` process, killed when dropped, its output lines read by threads.
struct Watch {
    child: Child,
    stdout: mpsc::Receiver<String>,
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Watch {
    /// Starts `jangteo --json watch` on the node of `dir` and waits until it is subscribed
    /// (it says so on stderr), so nothing raised after this returns is missed.
    fn start(dir: &Path) -> Watch {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(["--json", "watch"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jangteo watch");
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().expect("stdout")));
        let stderr = lines(Box::new(child.stderr.take().expect("stderr")));
        let first = stderr.recv_timeout(WAIT).unwrap_or_else(|e| {
            panic!("jangteo watch said nothing on stderr within {WAIT:?}: {e}")
        });
        assert!(first.contains("watching"), "{first}");
        Watch { child, stdout }
    }

    /// The next notification printed, within `WAIT`.
    fn next(&self) -> NotificationView {
        let line = self
            .stdout
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("jangteo watch printed nothing within {WAIT:?}: {e}"));
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a watch line is not one notification: {e}: {line}"))
    }
}

fn post(dir: &Path, title: &str, price: &str) -> String {
    json_as::<ListingRef>(
        dir,
        &[
            "post",
            "--title",
            title,
            "--price",
            price,
            "--currency",
            "KRW",
            "--category",
            "bikes",
        ],
    )
    .id
}

fn alerts_of(dir: &Path) -> Vec<NotificationView> {
    json_as::<NotificationList>(dir, &["notifications"])
        .notifications
        .into_iter()
        .filter(|n| n.kind == NotificationKind::SavedSearch)
        .collect()
}

/// Waits until the node of `dir` finds `listing` by `search` (it is stored and indexed:
/// the indexer has matched it against the saved searches).
fn indexed(dir: &Path, listing: &str, query: &str) {
    wait_for(
        &format!("listing {listing} to be found on {}", dir.display()),
        || {
            let found: Vec<ListingView> = json_try_as(dir, &["search", query])?;
            found.iter().any(|l| l.id == listing).then_some(())
        },
    );
}

#[test]
fn a_saved_search_alerts_once_for_a_match_by_gossip_and_by_sync_and_watch_shows_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a_dir, b_dir) = (tmp.path().join("a"), tmp.path().join("b"));
    let (a, a_id) = start_node(&a_dir, None);
    let (b, _) = start_node(&b_dir, Some(&tcp_addr(&a_id)));

    let saved: SavedSearchView =
        json_as(&b_dir, &["alert", "add", "자전거", "--max-price", "200000"]);
    let listed: Vec<SavedSearchView> = json_as(&b_dir, &["alerts"]);
    assert_eq!(listed, vec![saved.clone()]);
    assert_eq!(saved.search.q.as_deref(), Some("자전거"));
    assert_eq!(saved.search.max_price, Some(200_000));

    // B must hear A's gossip: wait until a listing of A's reaches B.
    let probe = post(&a_dir, "hello bike", "1000");
    indexed(&b_dir, &probe, "hello");

    let watch = Watch::start(&b_dir);
    // Too dear: no alert. Posted first, so once B has indexed the match after it, any alert
    // for this one would be there already.
    let dear = post(&a_dir, "카본 자전거", "900000");
    let cheap = post(&a_dir, "중고 자전거를 팝니다", "150000");
    indexed(&b_dir, &dear, "카본");
    indexed(&b_dir, &cheap, "중고");

    let shown = watch.next();
    assert_eq!(shown.kind, NotificationKind::SavedSearch);
    assert_eq!(shown.listing.as_deref(), Some(cheap.as_str()));
    assert_eq!(shown.searches, vec![saved.id]);
    assert_eq!(shown.price, Some(150_000));
    assert_eq!(shown.title.as_deref(), Some("중고 자전거를 팝니다"));
    let alerts = alerts_of(&b_dir);
    assert_eq!(alerts.len(), 1, "exactly one alert: {alerts:?}");
    assert_eq!(alerts[0], shown);
    assert!(!alerts[0].read);
    let unread: NotificationList = json_as(&b_dir, &["notifications", "--unread"]);
    assert_eq!(unread.unread, 1);
    // Human text too.
    let out = jangteo(&b_dir, &["notifications"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("중고 자전거를 팝니다"));

    // B goes offline; A posts a match; B comes back and learns it by catch-up sync.
    drop(watch);
    drop(b);
    let while_away = post(&a_dir, "어린이 자전거", "40000");
    let (b, _) = start_node(&b_dir, Some(&tcp_addr(&a_id)));
    let synced = wait_for("the alert for the listing learned by sync", || {
        alerts_of(&b_dir)
            .into_iter()
            .find(|n| n.listing.as_deref() == Some(while_away.as_str()))
    });
    assert_eq!(synced.searches, vec![saved.id]);
    assert_eq!(alerts_of(&b_dir).len(), 2);

    // Reading marks them read.
    let read: NotificationList = json_as(&b_dir, &["notifications", "--unread", "--mark-read"]);
    assert_eq!(read.notifications.len(), 2);
    assert_eq!(read.unread, 0);
    let after: NotificationList = json_as(&b_dir, &["notifications", "--unread"]);
    assert!(after.notifications.is_empty(), "{after:?}");

    // B's offer on the listing notifies A, the seller, of the step.
    let a_watch = Watch::start(&a_dir);
    let offer: OfferMade = json_as(&b_dir, &["offer", &cheap]);
    let step = a_watch.next();
    assert_eq!(step.kind, NotificationKind::TradeStep);
    assert_eq!(step.trade.as_deref(), Some(offer.id.as_str()));
    assert_eq!(step.step.as_deref(), Some("offer"));
    // The buyer's own offer does not notify the buyer.
    let b_list: NotificationList = json_as(&b_dir, &["notifications"]);
    assert!(
        b_list
            .notifications
            .iter()
            .all(|n| n.kind == NotificationKind::SavedSearch),
        "{b_list:?}"
    );

    // Removing the search stops the alerts.
    let removed: SavedSearchView = json_as(&b_dir, &["alert", "rm", &saved.id.to_string()]);
    assert_eq!(removed.id, saved.id);
    let later = post(&a_dir, "접이식 자전거", "100000");
    indexed(&b_dir, &later, "접이식");
    assert_eq!(alerts_of(&b_dir).len(), 2);
    drop((a, b));
}

fn refused(dir: &Path, args: &[&str], code: &str, says: &str) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = jangteo(dir, &all);
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    let e = cli_error(&out);
    assert_eq!(e.error.code, code, "{args:?}: {e:?}");
    assert!(
        e.error.message.contains(says),
        "{args:?}: {}",
        e.error.message
    );
}

#[test]
fn bad_saved_searches_and_unknown_ids_are_refused_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("n");
    let (_n, _): (NodeProc, _) = start_node(&dir, None);
    refused(&dir, &["alert", "add"], "bad_query", "at least one filter");
    refused(
        &dir,
        &["alert", "add", "price:[1 TO 9]"],
        "bad_query",
        "range",
    );
    refused(
        &dir,
        &["alert", "add", "bike", "--condition", "mint"],
        "bad_query",
        "condition",
    );
    refused(
        &dir,
        &[
            "alert",
            "add",
            "bike",
            "--min-price",
            "9",
            "--max-price",
            "1",
        ],
        "bad_query",
        "min-price",
    );
    refused(
        &dir,
        &["alert", "rm", "77"],
        "not_found",
        "no saved search 77",
    );
    refused(&dir, &["alert", "rm", "seven"], "bad_id", "");
    let alerts: Vec<SavedSearchView> = json_as(&dir, &["alerts"]);
    assert!(alerts.is_empty(), "nothing refused was saved: {alerts:?}");
    refused(
        &dir,
        &["notifications", "--limit", "0"],
        "bad_query",
        "limit",
    );
    let none: NotificationList = json_as(&dir, &["notifications"]);
    assert_eq!((none.notifications.len(), none.unread), (0, 0));
}

#[test]
fn watch_without_a_node_says_how_to_start_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = jangteo(tmp.path(), &["watch"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("jangteo --data-dir"));
}
