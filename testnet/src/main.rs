//! `jangteo-testnet`: runs scenarios over many nodes and prints what it measured.

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
