//! Strangers cannot make a node store or retry without end (DESIGN.md, "Trade protocol"):
//! a small run of the `abuse` testnet scenario against the real `jangteo` binary. Four
//! throw-away keys (in-process nodes) send 25 hand-made trade deliveries each to a victim
//! node process: offers for listings it does not hold (signed by the sending key, or by a
//! key that never comes online), far too many offers on its one real listing, a whole chain
//! naming it as moderator of a trade on a listing it does not hold, and a dispute with its
//! resolution for a trade that does not name it. Then the keys vanish and the victim is
//! watched for 5 s. Well-formed offers on the real, open listing are what a marketplace is
//! for: the victim takes them up to its caps (per buyer key and per listing) and refuses the
//! rest; everything else is refused and nothing of it is stored. The large run is by hand:
//! `jangteo-testnet abuse [--keys 20 --offers 100 --after-secs 60] [--json]`.

use std::path::PathBuf;
use std::time::Duration;

use jangteo_testnet::abuse;

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_jangteo"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_cannot_make_a_node_store_or_retry_without_end() {
    let cfg = abuse::Config {
        keys: 4usize,
        offers_per_key: 25,
        after: Duration::from_secs(5),
        ..abuse::Config::default()
    };
    let r = abuse::run(bin(), &cfg).await.expect("abuse scenario");
    let json = serde_json::to_string(&r).expect("the report as JSON");
    println!("{}", abuse::human(&r));
    println!("{json}");
    assert_eq!(r.offers_sent, 100, "every request was sent: {json}");
    // Every violation at once, so one run shows the whole picture.
    let mut failures = Vec::new();
    if !r.status_has_trades {
        failures.push(
            "GET /v1/status has no trades.{held,messages,queued_deliveries}: stored and \
             queued_deliveries could not be measured"
                .to_string(),
        );
    }
    let keys = 4;
    let cap = (keys * jangteo_node::services::trades::OPEN_OFFERS_PER_BUYER)
        .min(jangteo_node::services::trades::OPEN_OFFERS_PER_LISTING) as u64;
    let taken = r
        .by_attack
        .get("real_listing")
        .map_or(u64::MAX, |t| t.accepted);
    if taken > cap {
        failures.push(format!(
            "the victim took {taken} offers on its listing, above its caps ({cap})"
        ));
    }
    for attack in [
        "unknown_listing",
        "unknown_listing_ghost",
        "moderator_chain",
        "not_named",
    ] {
        let accepted = r.by_attack.get(attack).map(|t| t.accepted);
        if accepted != Some(0) {
            failures.push(format!(
                "the victim took {accepted:?} deliveries of the {attack} attack"
            ));
        }
    }
    if r.stored != taken || r.listed.messages_stored != taken {
        failures.push(format!(
            "the victim stored {} trade messages ({} listed) for {taken} offers within its caps",
            r.stored, r.listed.messages_stored
        ));
    }
    if r.queued_deliveries != 0 {
        failures.push(format!(
            "{} deliveries are still queued {} s after the strangers left",
            r.queued_deliveries, r.after_secs
        ));
    }
    if r.refused_by_victim.checked_add(taken) != Some(r.offers_sent) {
        failures.push(format!(
            "the victim refused {} of {} stranger deliveries (accepted {}, busy {}, unanswered {})",
            r.refused_by_victim,
            r.offers_sent,
            r.accepted_by_victim,
            r.busy_from_victim,
            r.unanswered
        ));
    }
    let cpu = r.cpu_idle_after;
    if cpu >= 5.0 {
        failures.push(format!(
            "the victim used {cpu:.1} % of a core after the strangers left (idle before: {} %)",
            r.cpu_idle_before
        ));
    }
    assert!(failures.is_empty(), "{}\n{json}", failures.join("\n"));
}
