//! End-to-end crash test of the seller's accept: real `jangteo` processes (a seller and a
//! buyer on loopback). The buyer makes 25 offers on one listing of 1000 units; the seller's
//! node is killed with SIGKILL a few milliseconds after each `jangteo accept` starts, then
//! restarted on the same data directory. Afterwards both nodes must agree on every trade's
//! state, and the listing's quantity must be exactly 1000 minus what the trades the seller
//! holds as accepted (or further) reserved: no unit sold twice, no reservation lost.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{
    BIN, WAIT, json_as, json_try_as, poll_until, start_node, tcp_addr, trade_state_is, wait_for,
};
use jangteo_node::api::types::{
    ListingRef, ListingView, OfferMade, TradeRef, TradeRole, TradeStateName, TradeView,
};

const TRADES: usize = 25;
const STOCK: u64 = 1000;
/// The whole test, start to end (each wait inside has its own, shorter timeout too).
const OVERALL: Duration = Duration::from_secs(300);
/// Seller-side states in which a trade holds units of the listing.
const RESERVING: [TradeStateName; 5] = [
    TradeStateName::Accepted,
    TradeStateName::Paid,
    TradeStateName::Shipped,
    TradeStateName::Completed,
    TradeStateName::Disputed,
];

/// xorshift64: a small deterministic generator, so a failing run can be repeated.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

struct Trade {
    id: String,
    quantity: u64,
    delay_ms: u64,
    /// The exit code of `jangteo accept` (None: killed by a signal).
    accept_exit: Option<i32>,
    accept_stdout: String,
    /// What `jangteo accept` answered, when its stdout was one.
    accept_answer: Option<TradeRef>,
}

/// What both nodes said about every trade, and the listing's quantity at the seller.
#[derive(Debug, Default)]
struct Observed {
    /// trade id -> (seller-side state, buyer-side state); None where the node did not answer.
    states: BTreeMap<String, (Option<TradeStateName>, Option<TradeStateName>)>,
    quantity: Option<u64>,
}

fn state_of(dir: &Path, trade: &str) -> Option<TradeStateName> {
    json_try_as::<TradeView>(dir, &["trade", trade]).map(|v| v.state)
}

fn expected_quantity(trades: &[Trade], o: &Observed) -> u64 {
    let reserved: u64 = trades
        .iter()
        .filter(|t| o.states[&t.id].0.is_some_and(|s| RESERVING.contains(&s)))
        .map(|t| t.quantity)
        .sum();
    STOCK - reserved
}

fn log_lines(dir: &Path, needles: &[&str], max: usize) -> String {
    let log = std::fs::read_to_string(dir.with_extension("log")).unwrap_or_default();
    let hits: Vec<&str> = log
        .lines()
        .filter(|l| needles.iter().any(|n| l.contains(n)))
        .collect();
    hits[hits.len().saturating_sub(max)..].join("\n")
}

#[test]
fn accepts_interrupted_by_kill_9_neither_oversell_nor_diverge() {
    let started = Instant::now();
    let overall = started + OVERALL;
    let in_time = |step: &str| {
        assert!(
            Instant::now() < overall,
            "the whole test took longer than {OVERALL:?} (at: {step})"
        );
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let (s_dir, b_dir) = (tmp.path().join("seller"), tmp.path().join("buyer"));
    let (buyer, b_id) = start_node(&b_dir, None);
    let buyer_addr = tcp_addr(&b_id);
    let (mut seller, s_id) = start_node(&s_dir, Some(&buyer_addr));
    let seller_peer = s_id.peer_id.clone();

    let posted: ListingRef = json_as(
        &s_dir,
        &[
            "post",
            "--title",
            "crash test kettle",
            "--price",
            "15000",
            "--currency",
            "KRW",
            "--quantity",
            &STOCK.to_string(),
        ],
    );
    let listing = posted.id;
    wait_for("the listing at the buyer", || {
        json_try_as::<ListingView>(&buyer.dir, &["show", &listing])
    });

    // One offer at a time (a buyer has at most OPEN_OFFERS_PER_BUYER open offers with a
    // seller), each accept racing a SIGKILL of the seller's node.
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let mut trades: Vec<Trade> = Vec::with_capacity(TRADES);
    for i in 0..TRADES {
        in_time(&format!("offer {i}"));
        let quantity = 1 + rng.next() % 3;
        let offer: OfferMade = json_as(
            &buyer.dir,
            &["offer", &listing, "--quantity", &quantity.to_string()],
        );
        assert_eq!(offer.state, TradeStateName::Offered, "{offer:?}");
        let mut t = Trade {
            id: offer.id,
            quantity,
            delay_ms: 0,
            accept_exit: None,
            accept_stdout: String::new(),
            accept_answer: None,
        };
        let v = trade_state_is(&s_dir, &t.id, TradeStateName::Offered);
        assert_eq!(v.quantity, t.quantity, "{v:?}");
        assert_eq!(v.role, TradeRole::Seller, "{v:?}");
        in_time(&format!("accept {i}"));
        t.delay_ms = rng.next() % 31;
        let mut accept = Command::new(BIN)
            .arg("--data-dir")
            .arg(&s_dir)
            .args(["--json", "accept", &t.id])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn jangteo accept");
        // The delay injects the crash at a varying point; it synchronizes nothing.
        std::thread::sleep(Duration::from_millis(t.delay_ms));
        seller.child.kill().expect("kill -9 the seller's node");
        seller.child.wait().expect("reap the seller's node");
        let exited = poll_until(WAIT, || {
            accept.try_wait().expect("accept process").map(|_| ())
        });
        if exited.is_none() {
            let _ = accept.kill();
            let _ = accept.wait();
            panic!(
                "`jangteo accept {}` did not exit within {WAIT:?} after its node died",
                t.id
            );
        }
        let out = accept.wait_with_output().expect("accept output");
        t.accept_exit = out.status.code();
        t.accept_stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        // A killed accept prints nothing, or an error: then there is no answer.
        t.accept_answer = serde_json::from_slice(&out.stdout).ok();
        let (again, id) = start_node(&s_dir, Some(&buyer_addr));
        assert_eq!(id.peer_id, seller_peer);
        seller = again;
        // An accept the crash cut off before it was written leaves an open offer; the buyer
        // withdraws it, so open offers do not pile up against the per-buyer cap.
        if state_of(&s_dir, &t.id) == Some(TradeStateName::Offered) {
            let _ = json_try_as::<TradeRef>(&buyer.dir, &["cancel", &t.id]);
        }
        trades.push(t);
    }
    eprintln!(
        "{TRADES} offers made and accepted under kill -9 after {} ms",
        started.elapsed().as_millis()
    );
    // Once more, with no accept in flight.
    seller.child.kill().expect("kill -9 the seller's node");
    seller.child.wait().expect("reap the seller's node");
    let (seller, _) = start_node(&s_dir, Some(&buyer_addr));
    in_time("the last restart");
    eprintln!(
        "{TRADES} accepts interrupted and the seller restarted {} times after {} ms",
        TRADES + 1,
        started.elapsed().as_millis()
    );

    // Both sides agree on every trade, and the stock is exactly what the seller's accepted
    // trades left. Not yet (a message still in flight, a node still reconnecting) is polled
    // until the deadline; the last observation explains a failure.
    let mut last = Observed::default();
    let settled = poll_until(
        WAIT.min(overall.saturating_duration_since(Instant::now())),
        || {
            let mut o = Observed::default();
            for t in &trades {
                o.states.insert(
                    t.id.clone(),
                    (state_of(&seller.dir, &t.id), state_of(&buyer.dir, &t.id)),
                );
            }
            o.quantity =
                json_try_as::<ListingView>(&seller.dir, &["show", &listing]).map(|v| v.quantity);
            let agreed = o.states.values().all(|(s, b)| s.is_some() && s == b);
            let right = o.quantity == Some(expected_quantity(&trades, &o));
            last = o;
            (agreed && right).then_some(())
        },
    );

    // The report, whatever the outcome.
    let mut committed = 0;
    let mut not_committed = 0;
    let mut exits: BTreeMap<String, usize> = BTreeMap::new();
    for (i, t) in trades.iter().enumerate() {
        let (s, b) = &last.states[&t.id];
        if s.is_some_and(|s| RESERVING.contains(&s)) {
            committed += 1;
        } else {
            not_committed += 1;
        }
        let exit = t.accept_exit.map_or("signal".to_owned(), |c| c.to_string());
        *exits.entry(exit.clone()).or_default() += 1;
        eprintln!(
            "trade {i:2} q={} kill after {:2} ms: accept exit {exit}, seller {}, buyer {}",
            t.quantity,
            t.delay_ms,
            s.map_or("?", TradeStateName::as_str),
            b.map_or("?", TradeStateName::as_str)
        );
    }
    let expected = expected_quantity(&trades, &last);
    eprintln!(
        "accepts committed (accepted at the seller): {committed}, not committed: {not_committed}; \
         accept exit codes: {exits:?}; final quantity {} (expected {expected} = {STOCK} minus the \
         committed trades' units); {} ms in all",
        last.quantity
            .map_or("unknown (show failed)".to_owned(), |q| q.to_string()),
        started.elapsed().as_millis()
    );

    let mut problems = Vec::new();
    for t in &trades {
        let (s, b) = &last.states[&t.id];
        if s.is_none() || s != b {
            problems.push(format!(
                "trade {} diverged: seller says {s:?}, buyer says {b:?}",
                t.id
            ));
        }
        // An accept the node acknowledged must survive the crash.
        if t.accept_exit == Some(0)
            && t.accept_answer
                .as_ref()
                .is_some_and(|a| a.state == TradeStateName::Accepted)
            && *s != Some(TradeStateName::Accepted)
        {
            problems.push(format!(
                "trade {}: `jangteo accept` answered {} but after the restart the seller says {s:?}",
                t.id, t.accept_stdout
            ));
        }
    }
    match last.quantity {
        Some(q) if q > expected => problems.push(format!(
            "oversold: the listing shows {q} units but only {expected} are left after the \
             accepted trades ({} units reserved by accepted trades were not taken off)",
            q - expected
        )),
        Some(q) if q < expected => problems.push(format!(
            "lost reservation: the listing shows {q} units but {expected} should be left \
             ({} units taken off for accepts that were not committed)",
            expected - q
        )),
        Some(_) => {}
        None => problems.push("`jangteo show` of the listing failed on the seller".to_owned()),
    }
    if settled.is_none() || !problems.is_empty() {
        panic!(
            "after {TRADES} accepts interrupted by kill -9 and {WAIT:?} to settle:\n{}\n\
             seller log (warnings and errors):\n{}",
            problems.join("\n"),
            log_lines(&s_dir, &["WARN", "ERROR", "panicked"], 20)
        );
    }
}
