//! `jangteo-testnet`: runs scenarios over many nodes and prints what it measured.

mod search_bench;

use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use jangteo_node::NodeEvent;
use jangteo_node::listings::NewListing;
use jangteo_testnet::{Cluster, Topology, wait_event};

/// Scenarios over many jangteo nodes on this machine.
#[derive(Debug, Parser)]
#[command(name = "jangteo-testnet", version)]
struct Cli {
    /// Print one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Time from a post on one node until every node holds it (in-process nodes).
    Propagation {
        /// Nodes.
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// Listings to post, one at a time, from rotating nodes.
        #[arg(long, default_value_t = 20)]
        listings: usize,
    },
    /// The search engine at market size: indexing rate, query latency, index size, memory.
    SearchBench {
        /// Generated listings (Korean, Japanese, English and mixed titles).
        #[arg(long, default_value_t = 100_000)]
        listings: usize,
        /// Queries to time (a mix of text, filters, distance and sorts).
        #[arg(long, default_value_t = 2_000)]
        queries: usize,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JANGTEO_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    match cli.command {
        Scenario::SearchBench {
            listings,
            queries,
            seed,
        } => {
            let r = tokio::task::spawn_blocking(move || search_bench::run(listings, queries, seed))
                .await??;
            if cli.json {
                println!("{r}");
            } else {
                let f = |k: &str| r[k].as_f64().unwrap_or(0.0);
                println!(
                    "search: {} listings; stored+signed {:.0}/s; indexed {:.0}/s; {} queries p50 {:.2} ms p95 {:.2} ms p99 {:.2} ms; index {:.1} MiB, store {:.1} MiB; RSS {:.0} MiB (peak {:.0} MiB)",
                    r["listings"],
                    f("store_and_sign_per_s"),
                    f("index_per_s"),
                    r["queries"],
                    f("p50_ms"),
                    f("p95_ms"),
                    f("p99_ms"),
                    f("index_bytes") / 1048576.0,
                    f("store_bytes") / 1048576.0,
                    f("rss_bytes") / 1048576.0,
                    f("peak_rss_bytes") / 1048576.0
                );
                println!("{}", serde_json::to_string_pretty(&r["by_kind"])?);
            }
        }
        Scenario::Propagation { nodes, listings } => {
            let cluster = Cluster::start(nodes, Topology::Star).await?;
            let mut latencies = Vec::with_capacity(listings);
            let mut delivered = 0usize;
            for i in 0..listings {
                let mut rxs: Vec<_> = cluster.nodes.iter().map(|n| n.subscribe()).collect();
                let origin = i % nodes;
                let start = Instant::now();
                let view = cluster.nodes[origin]
                    .listings
                    .post(NewListing {
                        title: format!("propagation test item {i}"),
                        price: 1000 + i as u64,
                        currency: "KRW".into(),
                        description: None,
                        category: None,
                        condition: None,
                        quantity: None,
                        location: None,
                        moderators: vec![],
                        expires_in_days: None,
                    })
                    .await?;
                let mut slowest = 0.0f64;
                for (j, rx) in rxs.iter_mut().enumerate() {
                    if j == origin {
                        continue;
                    }
                    let id = view.id.clone();
                    let got = wait_event(
                        rx,
                        Duration::from_secs(10),
                        |e| matches!(e, NodeEvent::ListingStored { listing } if *listing == id),
                    )
                    .await;
                    if got.is_ok() {
                        delivered += 1;
                        slowest = slowest.max(start.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                latencies.push(slowest);
            }
            latencies.sort_by(f64::total_cmp);
            let expected = listings * (nodes - 1);
            let report = serde_json::json!({
                "nodes": nodes,
                "listings": listings,
                "delivered_ratio": if expected == 0 { 1.0 } else { delivered as f64 / expected as f64 },
                "p50_ms": percentile(&latencies, 0.50),
                "p95_ms": percentile(&latencies, 0.95),
                "p99_ms": percentile(&latencies, 0.99),
            });
            if cli.json {
                println!("{report}");
            } else {
                println!(
                    "propagation: {nodes} nodes, {listings} listings, delivered {:.3}, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                    report["delivered_ratio"].as_f64().unwrap_or(0.0),
                    report["p50_ms"].as_f64().unwrap_or(0.0),
                    report["p95_ms"].as_f64().unwrap_or(0.0),
                    report["p99_ms"].as_f64().unwrap_or(0.0)
                );
            }
            cluster.shutdown().await;
        }
    }
    Ok(())
}
