//! `jangteo-testnet`: runs scenarios over many nodes and prints what it measured.

mod trust_sim;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Parser, Subcommand};
use jangteo_node::NodeEvent;
use jangteo_node::services::listings::NewListing;
use jangteo_testnet::netns::Netem;
use jangteo_testnet::observe::Observe;
use jangteo_testnet::procs::{self, jangteo_bin};
use jangteo_testnet::{
    Cluster, Topology, abuse, plot, scenarios, search_bench, wait_event, web_bench,
};
use serde_json::Value;

/// Scenarios over many jangteo nodes on this machine.
#[derive(Debug, Parser)]
#[command(name = "jangteo-testnet", version)]
struct Cli {
    /// Print one JSON object on stdout.
    #[arg(long, global = true)]
    json: bool,
    /// Run each node process in its own network namespace on one bridge, with `tc netem`
    /// delay and loss on every node's egress (process-based scenarios; needs root,
    /// iproute2, and for netem a kernel with sch_netem).
    #[arg(long, global = true)]
    netns: bool,
    /// With --netns: one-way delay between two nodes, in ms (0: no netem delay).
    #[arg(long, global = true, default_value_t = 20)]
    delay_ms: u32,
    /// With --netns: packet loss on every node's egress, in percent.
    #[arg(long, global = true, default_value_t = 0.0)]
    loss: f64,
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Time from a post on a random node until every node holds it: real node processes
    /// (or in-process nodes with --in-process).
    Propagation {
        /// Nodes.
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        /// Listings to post, one at a time.
        #[arg(long, default_value_t = 50)]
        listings: usize,
        /// Nodes in this process instead of one process each.
        #[arg(long)]
        in_process: bool,
        /// Draw the distribution of delivery times into this PNG.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Seed choosing the posting nodes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How arrival is observed (node processes only): each node's event stream, or
        /// polling each node's API every 10 ms (the first way).
        #[arg(long, value_enum, default_value_t = Observe::Events)]
        observe: Observe,
        /// Run the nodes with hop traces and report where each delivery's time went (hops,
        /// links, time in nodes); observes by event streams.
        #[arg(long)]
        trace: bool,
    },
    /// Where the time of a listing's trip goes: three node processes in a line A–B–C, each
    /// listing posted on A, every stage in A, B and C timed from the nodes' hop traces.
    Trace {
        /// Listings timed.
        #[arg(long, default_value_t = 50)]
        listings: usize,
        /// Untimed listings first (until the gossip mesh has formed).
        #[arg(long, default_value_t = 3)]
        warmup: usize,
    },
    /// Signature checks alone on one core against the node's whole ingest path (in-process).
    Ingest {
        /// Signed listings.
        #[arg(long, default_value_t = 50_000)]
        count: usize,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Also ingest with this many saved searches matched on ingest (at most 1000), and
        /// time the matching alone.
        #[arg(long, default_value_t = 0)]
        saved_searches: usize,
        /// With `--saved-searches`: runs of the whole path with and without them,
        /// interleaved in alternating order; the ratio is of the summed times.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// With `--saved-searches`: each search asks for two words, so that few listings
        /// match (without: one word each, and nearly every listing matches one).
        #[arg(long)]
        two_word_searches: bool,
    },
    /// A node offline while listings are posted comes back: time until it holds them all.
    Catchup {
        /// Nodes (the last one goes offline).
        #[arg(long, default_value_t = 5)]
        nodes: usize,
        /// Listings posted while it is away.
        #[arg(long, default_value_t = 2_000)]
        listings: usize,
        /// Draw the arrival times of the listings into this PNG.
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Split the network in two, post on both sides, heal: time until all converge.
    Partition {
        /// Nodes.
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// Listings, half on each side.
        #[arg(long, default_value_t = 200)]
        listings: usize,
    },
    /// Nodes leave, return and join while listings flow.
    Churn {
        /// Nodes at start.
        #[arg(long, default_value_t = 12)]
        nodes: usize,
        /// Listings posted.
        #[arg(long, default_value_t = 120)]
        listings: usize,
        /// A node leaves, returns or joins every this many listings.
        #[arg(long, default_value_t = 4)]
        every: usize,
        /// Seed of the churn.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Many concurrent trades, each through the buyer's and the seller's API.
    Trades {
        /// Nodes (even ones sell, odd ones buy).
        #[arg(long, default_value_t = 6)]
        nodes: usize,
        /// Trades, all at once.
        #[arg(long, default_value_t = 60)]
        trades: usize,
    },
    /// A hostile peer sends invalid objects by gossip: honest propagation before and during.
    Flood {
        /// Nodes.
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        /// Honest listings timed before and again during the flood.
        #[arg(long, default_value_t = 30)]
        listings: usize,
        /// Invalid objects to send.
        #[arg(long, default_value_t = 20_000)]
        invalid: usize,
        /// Invalid objects a second.
        #[arg(long, default_value_t = 2_000)]
        rate: u32,
        /// Seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// kill -9 a node while it takes posts; after restart every acknowledged one is there.
    Crash {
        /// Acknowledged posts before the kill.
        #[arg(long, default_value_t = 300)]
        kill_after: usize,
        /// Concurrent API clients posting.
        #[arg(long, default_value_t = 4)]
        writers: usize,
    },
    /// Strangers with throw-away keys try to make a node process store trade messages and
    /// retry deliveries without end: what it takes, what it keeps, its CPU before, during
    /// and after (loopback only).
    Abuse {
        /// Throw-away keys, each an in-process node connected to the victim.
        #[arg(long, default_value_t = 20)]
        keys: usize,
        /// Requests (each carrying an offer) per key.
        #[arg(long, default_value_t = 100)]
        offers: usize,
        /// Seconds to watch the victim after the attackers left.
        #[arg(long, default_value_t = 60)]
        after_secs: u64,
        /// Seconds the victim is watched idle, alone, before the attack.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
        /// Milliseconds between two requests of one key (default: just under the victim's
        /// per-peer rate limit).
        #[arg(long)]
        pace_ms: Option<u64>,
    },
    /// Issue 15's spam scenario: honest node processes (node 0 a relay) post listings while
    /// an attacker with fresh keys posts stamped and cheap listings, attests and mails as
    /// fast as it can; honest propagation quiet and under attack, what was stored, the
    /// relay's mailbox bytes, honest CPU, bans (loopback only).
    Spam {
        /// Honest node processes.
        #[arg(long, default_value_t = 20)]
        nodes: usize,
        /// The attacker's fresh keys.
        #[arg(long, default_value_t = 1000)]
        keys: usize,
        /// Seconds of attack.
        #[arg(long, default_value_t = 60)]
        secs: u64,
        /// Seconds of quiet measurement before the attack.
        #[arg(long, default_value_t = 30)]
        quiet_secs: u64,
        /// The network's listing stamp difficulty, in bits (default: the public network's).
        #[arg(long, default_value_t = jangteo_protocol::listing::LISTING_STAMP_BITS)]
        stamp_bits: u32,
        /// The relay's global mailbox cap, in MiB.
        #[arg(long, default_value_t = 64)]
        mailbox_cap_mib: u64,
        /// In-process nodes (peer ids) putting mail on the relay.
        #[arg(long, default_value_t = 8)]
        mailers: usize,
        /// Least milliseconds between two honest posts.
        #[arg(long, default_value_t = 2000)]
        post_every_ms: u64,
    },
    /// A node with an empty store joins a market of N listings held by one relay: time
    /// until it says caught up holding them all, bytes, peak RSS (the market is prepared
    /// once and kept under ~/.cache/jangteo-markets, or $JANGTEO_MARKET_CACHE).
    Bootstrap {
        /// Listings in the relay's market.
        #[arg(long, default_value_t = 100_000)]
        listings: usize,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// RSS of a node idle and with a market in its store; time from start to serving.
    Memory {
        /// Listings in the store.
        #[arg(long, default_value_t = 100_000)]
        listings: usize,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// EigenTrust threat models A-D as a market: trust-based vs random seller choice.
    TrustSim(TrustSimArgs),
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
    /// Direct message latency between processes, directly and through a circuit relay
    /// (p50/p99), and the cost of a first-contact stamp.
    ChatBench {
        /// Timed messages per mode.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Stamps solved to time one.
        #[arg(long, default_value_t = 40)]
        stamps: usize,
    },
    /// Hole punching: one relay and pairs of home nodes; in each pair an offer reaches the
    /// seller over the relay and DCUtR tries to make the connection direct. Prints the share
    /// of relayed connections upgraded to direct and the time to upgrade.
    Holepunch {
        /// Pairs of home nodes (each pair: one posts, the other offers).
        #[arg(long, default_value_t = 5)]
        pairs: usize,
        /// Put each home node in its own network namespace behind its own NAT router
        /// (nftables masquerade), the relay on the public bridge (needs root, iproute2 and
        /// nftables). Without it the home nodes run on loopback with --no-listen.
        #[arg(long)]
        nat: bool,
    },
    /// The web page of a node process with a market in its store: server time of the home
    /// and search pages, page weight, thumbnails (listings imported with `jangteo import`).
    WebBench {
        /// Listings in the store (Korean, Japanese, English and mixed titles).
        #[arg(long, default_value_t = 100_000)]
        listings: usize,
        /// Timed requests of each page.
        #[arg(long, default_value_t = 200)]
        requests: usize,
        /// Untimed requests of each page before them.
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Distinct photos (1600 x 1200 JPEG).
        #[arg(long, default_value_t = 8)]
        photos: usize,
        /// One listing in this many names a photo (0: none).
        #[arg(long, default_value_t = 3)]
        photo_every: usize,
        /// Seed of the generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// The options of the trust simulation.
#[derive(Debug, clap::Args)]
struct TrustSimArgs {
    /// Accounts.
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    /// Cycles; each honest account buys once per cycle.
    #[arg(long, default_value_t = 40)]
    cycles: usize,
    /// Malicious shares in percent, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,10,20,30,40,50,60,70")]
    malicious: Vec<f64>,
    /// Threat models, comma-separated (A,B,C,D).
    #[arg(long, value_delimiter = ',', default_value = "A,B,C,D")]
    models: Vec<String>,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Trusted keys every node holds: this percent of the honest accounts, rounded up.
    #[arg(long, default_value_t = 5.0)]
    trusted: f64,
    /// Damping toward the seeds (default: what nodes use, trust::Params::default()).
    #[arg(long, default_value_t = jangteo_protocol::trust::Params::default().damping)]
    damping: f64,
    /// Recompute every buyer's view every this many cycles.
    #[arg(long, default_value_t = 1)]
    recompute_every: usize,
    /// Exploration pool: `unwarned` (zero trust, and no complaint from anyone the buyer
    /// trusts), `zero-trust` (the paper's) or `unknown` (zero trust, never traded with).
    #[arg(long, default_value = "unwarned")]
    explore: String,
    /// Fake trades each collective member signs per cycle.
    #[arg(long, default_value_t = 5)]
    fake_trades: usize,
    /// Distinct edges for the timing of one compute (0: skip).
    #[arg(long, default_value_t = 100_000)]
    bench_edges: usize,
    /// Sellers do not rate their buyers (only buyers rate, as before reputation version 2).
    #[arg(long)]
    no_seller_ratings: bool,
    /// Weight of trusted complaints against praise in a peer's standing (default: the node's).
    #[arg(long, default_value_t = jangteo_protocol::trust::NEGATIVE_WEIGHT)]
    negative_weight: f64,
    /// Weight of negative against positive evidence within one rater's experience of a peer.
    #[arg(long, default_value_t = jangteo_protocol::trust::PAIR_NEGATIVE_WEIGHT)]
    pair_negative_weight: f64,
    /// Share of trust a rating of a buyer passes on.
    #[arg(long, default_value_t = jangteo_protocol::trust::BUYER_RATING_PASS)]
    buyer_rating_pass: f64,
    /// Half-life of a rating's weight, in days (0: no decay); a cycle is a week.
    #[arg(long, default_value_t = jangteo_protocol::trust::HALF_LIFE_MS / 86_400_000)]
    half_life_days: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging();
    if cli.netns {
        use_netns(&cli)?;
    }
    run(cli.command, cli.json).await
}

/// Logs to stderr, filtered by `JANGTEO_LOG`.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JANGTEO_LOG")
                // The flood scenario's hostile peer fills its send queues by design.
                .unwrap_or_else(|_| "warn,libp2p_gossipsub=error".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

/// Checks that `--netns` fits the scenario and makes node processes start in network
/// namespaces with the given delay and loss.
fn use_netns(cli: &Cli) -> Result<()> {
    let in_process = matches!(
        cli.command,
        Scenario::TrustSim { .. }
            | Scenario::SearchBench { .. }
            | Scenario::Ingest { .. }
            | Scenario::Propagation {
                in_process: true,
                ..
            }
    );
    if in_process {
        anyhow::bail!("--netns applies to the scenarios with node processes only");
    }
    if matches!(cli.command, Scenario::Holepunch { .. }) {
        anyhow::bail!("holepunch makes its own namespaces: use its --nat instead of --netns");
    }
    if matches!(cli.command, Scenario::Abuse { .. } | Scenario::Spam { .. }) {
        anyhow::bail!("--netns does not apply to abuse and spam: they run on 127.0.0.1 only");
    }
    if !(0.0..=100.0).contains(&cli.loss) {
        anyhow::bail!("--loss is a percentage (0 to 100)");
    }
    procs::use_netns_by_default(Netem {
        delay_ms: cli.delay_ms,
        loss_pct: cli.loss,
    })?;
    Ok(())
}

/// Runs one scenario and prints its report.
async fn run(command: Scenario, json: bool) -> Result<()> {
    match command {
        Scenario::TrustSim(args) => trust_sim(args, json).await?,
        Scenario::SearchBench {
            listings,
            queries,
            seed,
        } => search_bench(listings, queries, seed, json).await?,
        Scenario::Propagation {
            nodes,
            listings,
            in_process: true,
            ..
        } => propagation_in_process(nodes, listings, json).await?,
        Scenario::Propagation {
            nodes,
            listings,
            in_process: false,
            plot: plot_to,
            seed,
            observe,
            trace: false,
        } => propagation_processes(nodes, listings, plot_to, seed, observe, json).await?,
        Scenario::Propagation {
            nodes,
            listings,
            plot: plot_to,
            seed,
            trace: true,
            ..
        } => {
            let (r, samples) =
                jangteo_testnet::hops::propagation_traced(jangteo_bin()?, nodes, listings, seed)
                    .await?;
            if let Some(p) = plot_to {
                plot::cdf(
                    &p,
                    &format!("propagation: {nodes} node processes, {listings} listings, traced"),
                    &samples,
                )?;
            }
            print(json, "propagation", &r);
        }
        Scenario::Trace { listings, warmup } => {
            let r = jangteo_testnet::hops::run(jangteo_bin()?, listings, warmup).await?;
            if json {
                println!("{r}");
            } else {
                print!("{}", jangteo_testnet::hops::human(&r));
            }
        }
        Scenario::Ingest {
            count,
            seed,
            saved_searches,
            rounds,
            two_word_searches,
        } => {
            let r = tokio::task::spawn_blocking(move || {
                jangteo_testnet::ingest_bench::run(
                    count,
                    seed,
                    saved_searches,
                    rounds,
                    two_word_searches,
                )
            })
            .await??;
            print(json, "ingest", &r);
        }
        Scenario::Catchup {
            nodes,
            listings,
            plot: plot_to,
        } => {
            let (r, arrivals) = scenarios::catchup(jangteo_bin()?, nodes, listings).await?;
            if let Some(p) = plot_to {
                plot::cdf(
                    &p,
                    &format!("catch-up of {listings} listings: arrival since restart"),
                    &arrivals,
                )?;
            }
            print(json, "catchup", &r);
        }
        Scenario::Partition { nodes, listings } => {
            let r = scenarios::partition(jangteo_bin()?, nodes, listings).await?;
            print(json, "partition", &r);
        }
        Scenario::Churn {
            nodes,
            listings,
            every,
            seed,
        } => {
            let r = scenarios::churn(jangteo_bin()?, nodes, listings, every, seed).await?;
            print(json, "churn", &r);
        }
        Scenario::Trades { nodes, trades } => {
            let r = scenarios::trades(jangteo_bin()?, nodes, trades).await?;
            print(json, "trades", &r);
        }
        Scenario::Flood {
            nodes,
            listings,
            invalid,
            rate,
            seed,
        } => {
            let r = scenarios::flood(jangteo_bin()?, nodes, listings, invalid, rate, seed).await?;
            print(json, "flood", &r);
        }
        Scenario::Crash {
            kill_after,
            writers,
        } => {
            let r = scenarios::crash(jangteo_bin()?, kill_after, writers).await?;
            print(json, "crash", &serde_json::to_value(&r)?);
        }
        Scenario::Abuse {
            keys,
            offers,
            after_secs,
            idle_secs,
            pace_ms,
        } => abuse_scenario(keys, offers, after_secs, idle_secs, pace_ms, json).await?,
        Scenario::WebBench {
            listings,
            requests,
            warmup,
            photos,
            photo_every,
            seed,
        } => {
            let cfg = web_bench::Config {
                listings,
                requests,
                warmup,
                photos,
                photo_every,
                seed,
            };
            let r = web_bench::run(jangteo_bin()?, &cfg).await?;
            if json {
                println!("{r}");
            } else {
                print!("{}", web_bench::human(&r));
            }
        }
        Scenario::Spam {
            nodes,
            keys,
            secs,
            quiet_secs,
            stamp_bits,
            mailbox_cap_mib,
            mailers,
            post_every_ms,
        } => {
            let cfg = jangteo_testnet::spam::Config {
                nodes,
                keys,
                secs,
                quiet_secs,
                stamp_bits,
                mailbox_cap_mib,
                mailers,
                post_every: Duration::from_millis(post_every_ms),
            };
            let r = jangteo_testnet::spam::run(jangteo_bin()?, &cfg).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", jangteo_testnet::spam::human(&r));
            }
        }
        Scenario::ChatBench { messages, stamps } => {
            let r = jangteo_testnet::chat_bench::run(jangteo_bin()?, messages, stamps).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", jangteo_testnet::chat_bench::human(&r));
            }
        }
        Scenario::Holepunch { pairs, nat } => {
            let r = jangteo_testnet::holepunch::run(jangteo_bin()?, pairs, nat).await?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                print!("{}", jangteo_testnet::holepunch::human(&r));
            }
        }
        Scenario::Bootstrap { listings, seed } => {
            let r = jangteo_testnet::bootstrap::run(jangteo_bin()?, listings, seed).await?;
            print(json, "bootstrap", &r);
        }
        Scenario::Memory { listings, seed } => {
            let r = jangteo_testnet::memory::run(jangteo_bin()?, listings, seed).await?;
            print(json, "memory", &r);
        }
    }
    Ok(())
}

/// The trust simulation (in memory, no nodes).
async fn trust_sim(args: TrustSimArgs, json: bool) -> Result<()> {
    let TrustSimArgs {
        accounts,
        cycles,
        malicious,
        models,
        seed,
        trusted,
        damping,
        recompute_every,
        explore,
        fake_trades,
        bench_edges,
        no_seller_ratings,
        negative_weight,
        pair_negative_weight,
        buyer_rating_pass,
        half_life_days,
    } = args;
    let models = models
        .iter()
        .map(|m| trust_sim::Model::parse(m).ok_or_else(|| anyhow::anyhow!("unknown model {m}")))
        .collect::<Result<Vec<_>>>()?;
    let explore = match explore.as_str() {
        "zero-trust" => trust_sim::Explore::ZeroTrust,
        "unwarned" => trust_sim::Explore::Unwarned,
        "unknown" => trust_sim::Explore::Unknown,
        other => anyhow::bail!("unknown --explore {other}"),
    };
    let cfg = trust_sim::Config {
        accounts,
        cycles,
        malicious: malicious.iter().map(|m| m / 100.0).collect(),
        models,
        seed,
        trusted_share: trusted / 100.0,
        damping,
        recompute_every,
        explore,
        fake_trades,
        bench_edges,
        seller_ratings: !no_seller_ratings,
        trust: jangteo_protocol::trust::Params {
            negative_weight,
            pair_negative_weight,
            buyer_rating_pass,
            half_life_ms: half_life_days * 86_400_000,
            ..jangteo_protocol::trust::Params::default()
        },
        ..trust_sim::Config::default()
    };
    let r = tokio::task::spawn_blocking(move || trust_sim::run(&cfg)).await?;
    if json {
        println!("{r}");
    } else {
        println!("{}", trust_sim::table(&r));
    }
    Ok(())
}

/// The search engine benchmark (in process).
async fn search_bench(listings: usize, queries: usize, seed: u64, json: bool) -> Result<()> {
    let r =
        tokio::task::spawn_blocking(move || search_bench::run(listings, queries, seed)).await??;
    if json {
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
    Ok(())
}

/// Propagation over in-process nodes in a star.
async fn propagation_in_process(nodes: usize, listings: usize, json: bool) -> Result<()> {
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
                images: vec![],
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
    let expected = listings * (nodes - 1);
    let report = scenarios::PropagationReport {
        nodes,
        listings,
        delivered_ratio: if expected == 0 {
            1.0
        } else {
            delivered as f64 / expected as f64
        },
        latency: scenarios::Latency::of(latencies),
    };
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "propagation: {nodes} nodes, {listings} listings, delivered {:.3}, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
            report.delivered_ratio,
            report.latency.p50_ms,
            report.latency.p95_ms,
            report.latency.p99_ms
        );
    }
    cluster.shutdown().await;
    Ok(())
}

/// Propagation over node processes, with a CDF plot if asked.
async fn propagation_processes(
    nodes: usize,
    listings: usize,
    plot_to: Option<PathBuf>,
    seed: u64,
    observe: Observe,
    json: bool,
) -> Result<()> {
    let (r, samples) =
        scenarios::propagation_observed(jangteo_bin()?, nodes, listings, seed, observe).await?;
    if let Some(p) = plot_to {
        plot::cdf(
            &p,
            &format!("propagation: {nodes} node processes, {listings} listings, each delivery"),
            &samples,
        )?;
    }
    let mut r = serde_json::to_value(&r)?;
    if let Some(m) = r.as_object_mut() {
        m.insert("observe".into(), serde_json::to_value(observe)?);
    }
    print(json, "propagation", &r);
    Ok(())
}

/// The abuse scenario against node processes.
async fn abuse_scenario(
    keys: usize,
    offers: usize,
    after_secs: u64,
    idle_secs: u64,
    pace_ms: Option<u64>,
    json: bool,
) -> Result<()> {
    let cfg = abuse::Config {
        keys,
        offers_per_key: offers,
        idle_before: Duration::from_secs(idle_secs),
        after: Duration::from_secs(after_secs),
        pace: pace_ms.map_or_else(abuse::default_pace, Duration::from_millis),
    };
    let r = abuse::run(jangteo_bin()?, &cfg).await?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        print!("{}", abuse::human(&r));
    }
    Ok(())
}

/// One JSON object, or one line per figure.
fn print(json: bool, name: &str, r: &Value) {
    let mut r = r.clone();
    if let (Some(n), Some(m)) = (procs::default_netns(), r.as_object_mut()) {
        m.insert("netns_delay_ms".into(), n.delay_ms.into());
        m.insert("netns_loss_pct".into(), n.loss_pct.into());
    }
    let r = &r;
    if json {
        println!("{r}");
        return;
    }
    println!("{name}:");
    if let Some(m) = r.as_object() {
        for (k, v) in m {
            match v.as_f64() {
                Some(f) if v.is_f64() => println!("  {k:<36} {f:.2}"),
                _ => println!("  {k:<36} {v}"),
            }
        }
    }
}
