//! `trace`: where the time of one listing's trip goes, hop by hop (issue 16). Three node
//! processes in a line A–B–C: B listens, A and C only dial B (`--no-listen`, so the DHT
//! cannot connect them to each other and every listing of A reaches C through B). Each
//! listing is posted on A; the nodes run with `jangteo::trace=debug` and write one record per
//! stage ([`jangteo_node::trace`]); the testnet adds when it posted and when B's and C's
//! event streams said they stored it. Every figure is a time between two stamps, the same
//! listing, median and slowest over the listings timed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use jangteo_node::trace::Anchor;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::observe::Arrivals;
use crate::percentile;
use crate::procs::ProcNet;

/// The log filter of the traced nodes.
pub const TRACE_LOG: &str = "info,libp2p_mdns=warn,libp2p_gossipsub=warn,jangteo::trace=debug";
/// How long a listing may take to reach C.
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(10);

/// One record of a node's log (see [`jangteo_node::trace`]).
#[derive(Debug, Clone, Deserialize)]
struct Record {
    trace: String,
    listing: Option<String>,
    from: Option<String>,
    verdict: Option<String>,
    received_us: Option<u64>,
    validated_us: Option<u64>,
    stored_us: Option<u64>,
    forwarded_us: Option<u64>,
    api_us: Option<u64>,
    published_us: Option<u64>,
}

/// The records of one node's log, by listing: its publish record and its first accepted hop.
fn records(log: &str) -> HashMap<String, Record> {
    let mut out = HashMap::new();
    for line in log.lines() {
        let Some(at) = line.find("{\"trace\":") else {
            continue;
        };
        let rest = &line[at..];
        let Some(end) = rest.rfind('}') else {
            continue;
        };
        let Ok(r) = serde_json::from_str::<Record>(&rest[..=end]) else {
            continue;
        };
        let wanted = r.trace == "publish" || r.verdict.as_deref() == Some("accept");
        if let (true, Some(l)) = (wanted, r.listing.clone()) {
            out.entry(l).or_insert(r);
        }
    }
    out
}

/// What the testnet saw of one listing (wall µs).
#[derive(Debug, Clone, Copy)]
struct Seen {
    posted: u64,
    answered: u64,
    at_b: u64,
    at_c: u64,
}

/// The stages, in order: name, and how to read its duration (µs) from the stamps.
type Stage = (&'static str, fn(&Stamps) -> Option<u64>);

/// Every stamp of one listing.
struct Stamps {
    seen: Seen,
    a: Record,
    b: Record,
    c: Record,
}

fn d(from: Option<u64>, to: Option<u64>) -> Option<u64> {
    Some(to?.saturating_sub(from?))
}

const STAGES: &[Stage] = &[
    ("A: POST sent → listings service", |s| {
        d(Some(s.seen.posted), s.a.api_us)
    }),
    ("A: checked and signed", |s| d(s.a.api_us, s.a.validated_us)),
    ("A: stored", |s| d(s.a.validated_us, s.a.stored_us)),
    ("A: handed to gossipsub", |s| {
        d(s.a.stored_us, s.a.published_us)
    }),
    ("A → B: wire and B's swarm task", |s| {
        d(s.a.published_us, s.b.received_us)
    }),
    ("B: queued and verified", |s| {
        d(s.b.received_us, s.b.validated_us)
    }),
    ("B: stored", |s| d(s.b.validated_us, s.b.stored_us)),
    ("B: verdict back to gossipsub (forwarded)", |s| {
        d(s.b.stored_us, s.b.forwarded_us)
    }),
    ("B → C: wire and C's swarm task", |s| {
        d(s.b.forwarded_us, s.c.received_us)
    }),
    ("C: queued and verified", |s| {
        d(s.c.received_us, s.c.validated_us)
    }),
    ("C: stored", |s| d(s.c.validated_us, s.c.stored_us)),
    ("C: stored → seen on C's event stream", |s| {
        d(s.c.stored_us, Some(s.seen.at_c))
    }),
];

const TOTALS: &[Stage] = &[
    ("one hop: A published → B forwarded", |s| {
        d(s.a.published_us, s.b.forwarded_us)
    }),
    ("B's own work: received → forwarded", |s| {
        d(s.b.received_us, s.b.forwarded_us)
    }),
    ("POST sent → B stored", |s| {
        d(Some(s.seen.posted), s.b.stored_us)
    }),
    ("POST sent → C stored", |s| {
        d(Some(s.seen.posted), s.c.stored_us)
    }),
    ("POST sent → POST answered", |s| {
        d(Some(s.seen.posted), Some(s.seen.answered))
    }),
    ("POST sent → seen on B's stream", |s| {
        d(Some(s.seen.posted), Some(s.seen.at_b))
    }),
    ("POST sent → seen on C's stream", |s| {
        d(Some(s.seen.posted), Some(s.seen.at_c))
    }),
];

/// Whether the stamps of one listing are in the only order the rules allow: each node
/// validates, then stores, then forwards; B receives only after A stored, and C only after
/// B validated and stored (C's one peer is B, so nothing unvalidated reached it).
fn in_order(s: &Stamps) -> bool {
    let chain = [
        s.a.validated_us,
        s.a.stored_us,
        s.b.received_us,
        s.b.validated_us,
        s.b.stored_us,
        s.c.received_us,
        s.c.validated_us,
        s.c.stored_us,
    ];
    let b_forwarded_last = s.b.stored_us <= s.b.forwarded_us;
    chain.iter().all(Option::is_some) && chain.is_sorted() && b_forwarded_last
}

fn summarize(stages: &[Stage], all: &[Stamps]) -> Vec<Value> {
    stages
        .iter()
        .map(|(name, f)| {
            let mut us: Vec<f64> = all.iter().filter_map(f).map(|v| v as f64).collect();
            us.sort_by(f64::total_cmp);
            json!({
                "stage": name,
                "samples": us.len(),
                "p50_ms": percentile(&us, 0.5) / 1000.0,
                "p90_ms": percentile(&us, 0.9) / 1000.0,
                "max_ms": us.last().copied().unwrap_or(f64::NAN) / 1000.0,
            })
        })
        .collect()
}

/// Runs the line A–B–C, posts `warmup` untimed listings then `listings` timed ones on A,
/// and returns the report (stages and totals, each with p50, p90 and max in ms).
pub async fn run(bin: PathBuf, listings: usize, warmup: usize) -> Result<Value> {
    let mut net = ProcNet::new(bin)?;
    net.set_env("JANGTEO_LOG", TRACE_LOG);
    let b = net.add(&[]).await?;
    let boot = vec![net.nodes[b].addr.clone()];
    let a = net.add_with(&boot, &["--no-listen"]).await?;
    let c = net.add_with(&boot, &["--no-listen"]).await?;
    net.wait_gossip(a, 1).await?;
    net.wait_gossip(c, 1).await?;
    net.wait_gossip(b, 2).await?;
    let mut streams = Arrivals::watch(vec![
        (b, net.nodes[b].api()?.clone()),
        (c, net.nodes[c].api()?.clone()),
    ])
    .await?;
    let anchor = Anchor::now();
    let mut seen = HashMap::new();
    for i in 0..warmup + listings {
        let posted = Instant::now();
        let id = net.nodes[a]
            .api()?
            .post_listing(&format!("traced item {i}"), 1000 + i as u64, 1)
            .await?;
        let answered = Instant::now();
        let got = streams.wait(&id, &[b, c], posted + ARRIVAL_TIMEOUT).await;
        let (Some(at_b), Some(at_c)) = (got.get(&b), got.get(&c)) else {
            bail!("listing {i} did not reach B and C within {ARRIVAL_TIMEOUT:?}");
        };
        if i >= warmup {
            seen.insert(
                id,
                Seen {
                    posted: anchor.wall_us_at(posted),
                    answered: anchor.wall_us_at(answered),
                    at_b: anchor.wall_us_at(*at_b),
                    at_c: anchor.wall_us_at(*at_c),
                },
            );
        }
    }
    drop(streams);
    let logs = [a, b, c].map(|i| std::fs::read_to_string(net.log_path(i)).unwrap_or_default());
    let [ra, rb, rc] = logs.map(|l| records(&l));
    net.shutdown().await?;
    let all: Vec<Stamps> = seen
        .iter()
        .filter_map(|(id, s)| {
            Some(Stamps {
                seen: *s,
                a: ra.get(id)?.clone(),
                b: rb.get(id)?.clone(),
                c: rc.get(id)?.clone(),
            })
        })
        .collect();
    if all.is_empty() {
        bail!("no listing has a record on all three nodes (is jangteo::trace in the node's log?)");
    }
    let in_order = all.iter().filter(|s| in_order(s)).count();
    Ok(json!({
        "nodes": "A–B–C (A and C dial B only)",
        "listings": listings,
        "warmup": warmup,
        "traced": all.len(),
        "in_order": in_order,
        "stages": summarize(STAGES, &all),
        "totals": summarize(TOTALS, &all),
    }))
}

/// `propagation --trace`: the propagation scenario with hop traces on every node, and where
/// the time of each delivery went: how many hops it took (each record names the peer it came
/// from), the time on the last link (sender forwarded, or the origin published, until the
/// receiver's swarm task had it) and in the nodes on the way. Returns the propagation report
/// with a `trace` part added, and every delivery time for the plot.
pub async fn propagation_traced(
    bin: PathBuf,
    nodes: usize,
    listings: usize,
    seed: u64,
) -> Result<(Value, Vec<f64>)> {
    use rand::SeedableRng;
    let mut net = ProcNet::new(bin)?;
    net.set_env("JANGTEO_LOG", TRACE_LOG);
    for i in 0..nodes {
        let boot = if i == 0 {
            vec![]
        } else {
            vec![net.nodes[0].addr.clone()]
        };
        net.add(&boot).await?;
    }
    for i in 0..nodes {
        net.wait_gossip(i, 1).await?;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (delivered, expected, last, all) = crate::scenarios::measure_propagation_with(
        &net,
        listings,
        &mut rng,
        "propagation",
        crate::observe::Observe::Events,
    )
    .await?;
    let peers: HashMap<String, usize> = net
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.peer_id.clone(), i))
        .collect();
    let logs: Vec<HashMap<String, Record>> = (0..nodes)
        .map(|i| records(&std::fs::read_to_string(net.log_path(i)).unwrap_or_default()))
        .collect();
    net.shutdown().await?;
    let mut report = serde_json::to_value(crate::scenarios::PropagationReport {
        nodes,
        listings,
        delivered_ratio: if expected == 0 {
            0.0
        } else {
            delivered as f64 / expected as f64
        },
        latency: crate::scenarios::Latency::of(last),
    })?;
    if let Some(m) = report.as_object_mut() {
        m.insert("trace".into(), delivery_paths(&logs, &peers));
    }
    Ok((report, all))
}

/// One delivery, followed back to the origin.
struct Path {
    depth: usize,
    arrival_us: u64,
    last_link_us: u64,
    links_us: u64,
    in_nodes_us: u64,
}

/// Follows each accepted hop record back through the peers it came from to the origin's
/// publish record.
fn delivery_paths(logs: &[HashMap<String, Record>], peers: &HashMap<String, usize>) -> Value {
    let mut paths = Vec::new();
    let mut unlinked = 0usize;
    let mut listings: Vec<&String> = logs.iter().flat_map(|l| l.keys()).collect();
    listings.sort();
    listings.dedup();
    for listing in listings {
        let Some(origin) = logs
            .iter()
            .position(|l| l.get(listing).is_some_and(|r| r.trace == "publish"))
        else {
            continue;
        };
        let publish = &logs[origin][listing];
        for (j, log) in logs.iter().enumerate() {
            let Some(r) = log.get(listing).filter(|_| j != origin) else {
                continue;
            };
            let (mut at, mut depth) = (j, 0usize);
            let (mut links, mut in_nodes, mut last_link) = (0u64, 0u64, None);
            let mut ok = false;
            while depth <= logs.len() {
                let Some(hop) = logs[at].get(listing) else {
                    break;
                };
                in_nodes += d(hop.received_us, hop.forwarded_us).unwrap_or(0);
                let Some(&from) = hop.from.as_ref().and_then(|p| peers.get(p)) else {
                    break;
                };
                let sent = if from == origin {
                    publish.published_us
                } else {
                    logs[from].get(listing).and_then(|h| h.forwarded_us)
                };
                let link = d(sent, hop.received_us).unwrap_or(0);
                last_link.get_or_insert(link);
                links += link;
                depth += 1;
                if from == origin {
                    ok = true;
                    break;
                }
                at = from;
            }
            match (ok, d(publish.api_us, r.stored_us), last_link) {
                (true, Some(arrival_us), Some(last_link_us)) => paths.push(Path {
                    depth,
                    arrival_us,
                    last_link_us,
                    links_us: links,
                    in_nodes_us: in_nodes,
                }),
                _ => unlinked += 1,
            }
        }
    }
    let stats = |f: &dyn Fn(&Path) -> u64, of: &[&Path]| {
        let mut v: Vec<f64> = of.iter().map(|p| f(p) as f64 / 1000.0).collect();
        v.sort_by(f64::total_cmp);
        json!({
            "p50_ms": percentile(&v, 0.5),
            "p90_ms": percentile(&v, 0.9),
            "p99_ms": percentile(&v, 0.99),
            "max_ms": v.last().copied().unwrap_or(f64::NAN),
        })
    };
    let mut by_arrival: Vec<&Path> = paths.iter().collect();
    by_arrival.sort_by_key(|p| p.arrival_us);
    let slowest = &by_arrival[by_arrival.len() - by_arrival.len().div_ceil(20)..];
    let mut depths: std::collections::BTreeMap<usize, usize> = Default::default();
    for p in &paths {
        *depths.entry(p.depth).or_default() += 1;
    }
    let part = |of: &[&Path]| {
        json!({
            "deliveries": of.len(),
            "origin_api_to_stored": stats(&|p| p.arrival_us, of),
            "last_link": stats(&|p| p.last_link_us, of),
            "links_on_the_path": stats(&|p| p.links_us, of),
            "in_nodes_on_the_path": stats(&|p| p.in_nodes_us, of),
            "hops": stats(&|p| p.depth as u64 * 1000, of),
        })
    };
    json!({
        "deliveries_traced": paths.len(),
        "deliveries_not_followed": unlinked,
        "hops_count": depths,
        "all": part(&by_arrival),
        "slowest_5_percent": part(slowest),
    })
}

/// The report as a table: one line per stage.
pub fn human(r: &Value) -> String {
    let mut out = format!(
        "trace: {} listings posted on A, {} with a record on A, B and C, {} in order\n  {:<44} {:>9} {:>9} {:>9}\n",
        r["listings"], r["traced"], r["in_order"], "stage", "p50 ms", "p90 ms", "max ms"
    );
    for part in ["stages", "totals"] {
        if part == "totals" {
            out.push_str("  --\n");
        }
        for s in r[part].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  {:<44} {:>9.3} {:>9.3} {:>9.3}\n",
                s["stage"].as_str().unwrap_or(""),
                s["p50_ms"].as_f64().unwrap_or(f64::NAN),
                s["p90_ms"].as_f64().unwrap_or(f64::NAN),
                s["max_ms"].as_f64().unwrap_or(f64::NAN),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_from_a_log_with_colours_and_other_lines() {
        let log = "2026-11-29T23:00:00Z  INFO jangteo_node: listening\n\
            2026-11-29T23:00:01Z \u{1b}[34mDEBUG\u{1b}[0m jangteo::trace: {\"trace\":\"hop\",\"listing\":\"ab\",\"object\":\"00\",\"from\":\"p\",\"verdict\":\"accept\",\"received_us\":10,\"validated_us\":20,\"stored_us\":30,\"forwarded_us\":40}\n\
            2026-11-29T23:00:01Z DEBUG jangteo::trace: {\"trace\":\"hop\",\"listing\":null,\"object\":\"01\",\"from\":\"p\",\"verdict\":\"ignore\",\"received_us\":50,\"validated_us\":60,\"stored_us\":70,\"forwarded_us\":80}\n";
        let r = records(log);
        assert_eq!(r.len(), 1);
        assert_eq!(r["ab"].forwarded_us, Some(40));
    }
}
