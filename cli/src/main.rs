//! `jangteo`: run a node, and talk to a running one.
//!
//! `jangteo node` runs a node in this process; every other subcommand is a client of a
//! running node's local API, found through the data directory (`api.json`, `api.token`).
//! Exit codes: 0 success; 1 the thing asked for does not exist or was refused; 2 usage
//! error or no node to talk to. With `--json`, stdout holds exactly one JSON value.

mod client;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{Value, json};

use crate::client::{ApiClient, CliError};

/// jangteo (장터): a peer-to-peer marketplace node.
#[derive(Debug, Parser)]
#[command(name = "jangteo", version, about, propagate_version = true)]
struct Cli {
    /// Where the node keeps its key, store and API address/token.
    /// Default: $JANGTEO_HOME, else ~/.local/share/jangteo.
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Print exactly one JSON value on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the identity key if missing and print the peer id.
    Init,
    /// Run a node in the foreground until SIGINT or SIGTERM.
    Node(NodeArgs),
    /// The running node's peer id, public key and dialable addresses.
    Id,
    /// The running node's state: peers, listings, uptime.
    Status,
    /// Connected peers.
    Peers,
    /// Post a listing. PRICE is in the currency's minor unit (KRW 15000, USD cents 1999).
    Post(PostArgs),
    /// Publish a new version of one of your listings.
    Update(UpdateArgs),
    /// Withdraw one of your listings for good.
    Retract {
        /// Listing id.
        id: String,
    },
    /// Show a listing held by the node.
    Show {
        /// Listing id.
        id: String,
    },
    /// Make an offer on a listing (the node sends it to the seller, or queues it).
    Offer(OfferArgs),
    /// Your trades, newest first.
    Trades,
    /// One trade: terms, state, history with each message's delivery status.
    Trade {
        /// Trade id.
        id: String,
    },
    /// Seller: accept the offer (or buyer: accept the seller's counter). Reserves stock.
    Accept {
        /// Trade id.
        id: String,
    },
    /// Refuse the proposed terms.
    Reject {
        /// Trade id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Propose another price per unit.
    Counter {
        /// Trade id.
        id: String,
        /// New price per unit (minor units).
        #[arg(long)]
        price: u64,
    },
    /// Call the trade off (before payment).
    Cancel {
        /// Trade id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Buyer: say you paid (off-protocol: cash, bank transfer).
    Paid {
        /// Trade id.
        id: String,
        /// Payment reference.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Seller: say you shipped (with --tracking) or handed the item over at a meetup.
    Shipped {
        /// Trade id.
        id: String,
        /// Tracking number.
        #[arg(long)]
        tracking: Option<String>,
    },
    /// Buyer: say you received the item. Completes the trade.
    Received {
        /// Trade id.
        id: String,
    },
    /// Raise a dispute for a moderator named in the offer.
    Dispute {
        /// Trade id.
        id: String,
        /// What went wrong.
        #[arg(long)]
        reason: String,
    },
    /// Moderator: close a dispute.
    Resolve {
        /// Trade id.
        id: String,
        /// refund or release.
        #[arg(long)]
        outcome: String,
    },
    /// Images and other blobs.
    #[command(subcommand)]
    Blob(BlobCommand),
    /// Find listings held by the node (Korean, Japanese and English text; "quoted phrases");
    /// no QUERY lists everything matching the filters, newest first.
    Search(SearchArgs),
    /// Rate the other party of one of your completed trades (a later rating replaces it).
    Rate {
        /// Trade id.
        trade_id: String,
        /// 1 (bad) to 5 (excellent).
        #[arg(long)]
        score: u8,
        /// A short comment.
        #[arg(long)]
        comment: Option<String>,
    },
    /// What this node concludes about a peer: trust score, confidence, evidence.
    Reputation {
        /// Peer id.
        peer_id: String,
    },
    /// Add a key to this node's trust seeds (people you know are honest).
    Trust {
        /// Peer id.
        peer_id: String,
    },
    /// Remove a key from this node's trust seeds.
    Distrust {
        /// Peer id.
        peer_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum BlobCommand {
    /// Fetch a blob by id (from this node or its peers), verify it, write it to FILE.
    Get {
        /// Blob id.
        id: String,
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
struct NodeArgs {
    /// Multiaddr to listen on (repeatable). Default: TCP and QUIC on all interfaces.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Where the local API listens. Default: 127.0.0.1 with an OS-chosen port.
    #[arg(long, value_name = "HOST:PORT")]
    api: Option<std::net::SocketAddr>,
    /// A peer to dial at start (repeatable), e.g. /ip4/1.2.3.4/tcp/4001/p2p/12D3KooW...
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Do not discover peers on the local network with mDNS.
    #[arg(long)]
    no_mdns: bool,
    /// Run as a community relay: circuit relay v2 and AutoNAT for nodes behind NAT, sealed
    /// mailboxes for offline peers (14 days), every listing and attestation kept and served.
    #[arg(long)]
    relay: bool,
    /// An address this node is reachable at from outside (repeatable), e.g. the router's
    /// public address with a forwarded port: /ip4/203.0.113.7/tcp/4001.
    #[arg(long, value_name = "MULTIADDR")]
    external_address: Vec<String>,
    /// Listen on no address: reachable only through relays (like a node behind NAT without
    /// port forwarding).
    #[arg(long, conflicts_with = "listen")]
    no_listen: bool,
    /// Follow only this listing category (repeatable): general, digital, appliances,
    /// furniture, home, kids, fashion, beauty, bikes, sports, hobbies, books, tickets, pets,
    /// plants, vehicles, services, food, other. Default: all. Relays follow all.
    #[arg(long, value_name = "CATEGORY")]
    follow: Vec<String>,
}

#[derive(Debug, Args)]
struct PostArgs {
    /// Title.
    #[arg(long)]
    title: String,
    /// Price per unit in the currency's minor unit.
    #[arg(long)]
    price: u64,
    /// ISO 4217 currency code, such as KRW, JPY or USD.
    #[arg(long)]
    currency: String,
    /// Description.
    #[arg(long)]
    description: Option<String>,
    /// Category (a-z, 0-9, '-'). Default: general.
    #[arg(long)]
    category: Option<String>,
    /// new, like-new, good, fair or poor.
    #[arg(long)]
    condition: Option<String>,
    /// Units on offer. Default: 1.
    #[arg(long)]
    quantity: Option<u64>,
    /// Pickup location as LAT,LON.
    #[arg(long, value_name = "LAT,LON")]
    location: Option<String>,
    /// Days until the listing expires (1-180). Default: 30.
    #[arg(long)]
    expires_in_days: Option<u64>,
    /// A peer id you accept as moderator of disputes (repeatable, at most 3); buyers' offers
    /// name them.
    #[arg(long, value_name = "PEER_ID")]
    moderator: Vec<String>,
    /// A photo (repeatable, at most 8, each at most 5 MiB); peers fetch and verify it.
    #[arg(long, value_name = "FILE")]
    image: Vec<PathBuf>,
}

#[derive(Debug, Args)]
struct OfferArgs {
    /// Listing id.
    listing_id: String,
    /// Price per unit you offer (default: the asking price).
    #[arg(long)]
    price: Option<u64>,
    /// Units (default 1).
    #[arg(long)]
    quantity: Option<u64>,
    /// A message to the seller.
    #[arg(long)]
    message: Option<String>,
    /// A peer id who may resolve a dispute (repeatable, at most 3).
    #[arg(long, value_name = "PEER_ID")]
    moderator: Vec<String>,
}

#[derive(Debug, Args)]
struct UpdateArgs {
    /// Listing id.
    id: String,
    /// New title.
    #[arg(long)]
    title: Option<String>,
    /// New price.
    #[arg(long)]
    price: Option<u64>,
    /// New quantity (0 marks it sold out).
    #[arg(long)]
    quantity: Option<u64>,
    /// New description.
    #[arg(long)]
    description: Option<String>,
    /// New category.
    #[arg(long)]
    category: Option<String>,
    /// New condition.
    #[arg(long)]
    condition: Option<String>,
}

#[derive(Debug, Args)]
struct SearchArgs {
    /// Words to look for in titles and descriptions.
    query: Option<String>,
    /// Category.
    #[arg(long)]
    category: Option<String>,
    /// Condition.
    #[arg(long)]
    condition: Option<String>,
    /// Currency of the price bounds.
    #[arg(long)]
    currency: Option<String>,
    /// Lowest price (minor units).
    #[arg(long)]
    min_price: Option<u64>,
    /// Highest price (minor units).
    #[arg(long)]
    max_price: Option<u64>,
    /// Search around LAT,LON.
    #[arg(long, value_name = "LAT,LON")]
    near: Option<String>,
    /// Radius around --near, in km.
    #[arg(long)]
    radius_km: Option<f64>,
    /// Only this seller's listings.
    #[arg(long, value_name = "PEER_ID")]
    seller: Option<String>,
    /// relevance (default with QUERY), recent (default without), price, price-desc,
    /// distance (needs --near) or trust.
    #[arg(long)]
    sort: Option<String>,
    /// Most results (1-500). Default: 50.
    #[arg(long)]
    limit: Option<usize>,
    /// Results to skip (for paging).
    #[arg(long)]
    offset: Option<usize>,
    /// Include sold, expired and retracted listings.
    #[arg(long)]
    all: bool,
}

fn data_dir(cli: &Cli) -> PathBuf {
    if let Some(d) = &cli.data_dir {
        return d.clone();
    }
    if let Some(d) = std::env::var_os("JANGTEO_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    dirs::data_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("jangteo")
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            // clap uses 2 for usage errors and 0 for --help/--version.
            return ExitCode::from(code.clamp(0, 2) as u8);
        }
    };
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("jangteo: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jangteo: {}", e.message);
            if json {
                println!(
                    "{}",
                    json!({"error": {"code": e.code, "message": e.message}})
                );
            }
            ExitCode::from(e.exit)
        }
    }
}

fn print(json_out: bool, value: &Value, human: impl FnOnce(&Value) -> String) {
    if json_out {
        println!("{value}");
    } else {
        println!("{}", human(value));
    }
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn listing_line(v: &Value) -> String {
    let dist = v
        .get("distance_km")
        .and_then(Value::as_f64)
        .map(|d| format!("  {d:.1} km"))
        .unwrap_or_default();
    let trust = v
        .get("seller_score")
        .and_then(Value::as_f64)
        .map(|t| {
            format!(
                " (trust {t:.2}, confidence {:.2})",
                v["seller_confidence"].as_f64().unwrap_or(0.0)
            )
        })
        .unwrap_or_default();
    format!(
        "{}  {:>10} {}  {}  [{}] seller {}{}{}",
        s(v, "id"),
        s(v, "price"),
        s(v, "currency"),
        s(v, "title"),
        s(v, "status"),
        s(v, "seller"),
        trust,
        dist
    )
}

fn listing_text(v: &Value) -> String {
    let mut out = format!(
        "{}\n  id:        {}\n  price:     {} {}\n  quantity:  {}\n  category:  {}\n  status:    {} (version {})\n  seller:    {}",
        s(v, "title"),
        s(v, "id"),
        s(v, "price"),
        s(v, "currency"),
        s(v, "quantity"),
        s(v, "category"),
        s(v, "status"),
        s(v, "seq"),
        s(v, "seller")
    );
    if let Some(t) = v["seller_score"].as_f64() {
        out.push_str(&format!(
            "\n  trust:     {t:.2} (confidence {:.2})",
            v["seller_confidence"].as_f64().unwrap_or(0.0)
        ));
    }
    if let Some(c) = v["condition"].as_str() {
        out.push_str(&format!("\n  condition: {c}"));
    }
    if let Some(loc) = v["location"].as_object() {
        out.push_str(&format!("\n  location:  {},{}", loc["lat"], loc["lon"]));
    }
    if !s(v, "description").is_empty() {
        out.push_str(&format!("\n\n{}", s(v, "description")));
    }
    out
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let dir = data_dir(&cli);
    let json_out = cli.json;
    match cli.command {
        Command::Init => {
            let (key, created) =
                jangteo_node::keys::load_or_create(&dir).map_err(CliError::refused)?;
            let peer_id = jangteo_protocol::peer_id_string(&key.verifying_key().to_bytes());
            let v = json!({"peer_id": peer_id, "created": created, "data_dir": dir.display().to_string()});
            print(json_out, &v, |v| {
                let verb = if created { "created" } else { "already had" };
                format!(
                    "{} ({verb} identity in {})",
                    s(v, "peer_id"),
                    s(v, "data_dir")
                )
            });
            Ok(())
        }
        Command::Node(args) => run_node(dir, args).await,
        Command::Id => {
            let v = ApiClient::open(&dir)?.get("/v1/id", &[]).await?;
            print(json_out, &v, |v| {
                let addrs: Vec<String> = v["addrs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| format!("  {}", a.as_str().unwrap_or("")))
                    .collect();
                format!("{}\n{}", s(v, "peer_id"), addrs.join("\n"))
            });
            Ok(())
        }
        Command::Status => {
            let v = ApiClient::open(&dir)?.get("/v1/status", &[]).await?;
            print(json_out, &v, |v| {
                let sy = &v["sync"];
                let sync = if sy["in_progress"].as_u64().unwrap_or(0) > 0
                    || sy["to_fetch"].as_u64().unwrap_or(0) > 0
                {
                    format!(
                        "catching up: {} objects still to fetch, from {} peer(s)",
                        s(sy, "to_fetch"),
                        s(sy, "in_progress")
                    )
                } else if let Some(ago) = sy["last_sync_ms_ago"].as_u64() {
                    format!(
                        "caught up with {} peer(s), last reconciled {} s ago ({} objects fetched so far)",
                        s(sy, "peers_reconciled"),
                        ago / 1000,
                        s(sy, "objects_fetched")
                    )
                } else {
                    "not reconciled with any peer yet: listings may be missing".into()
                };
                format!(
                    "peer id:   {}\npeers:     {} ({} on the listings topics)\nsync:      {}\nlistings:  {}\nreach:     {}\nuptime:    {} s",
                    s(v, "peer_id"),
                    s(v, "peers"),
                    s(v, "gossip_peers"),
                    sync,
                    s(v, "listings"),
                    s(v, "reachability"),
                    s(v, "uptime_s")
                )
            });
            Ok(())
        }
        Command::Peers => {
            let v = ApiClient::open(&dir)?.get("/v1/peers", &[]).await?;
            print(json_out, &v, |v| {
                let rows: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        let addrs: Vec<&str> = p["addrs"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        format!("{}  {}", s(p, "peer_id"), addrs.join(" "))
                    })
                    .collect();
                if rows.is_empty() {
                    "no peers connected".into()
                } else {
                    rows.join("\n")
                }
            });
            Ok(())
        }
        Command::Post(a) => {
            let location = match a.location.as_deref() {
                None => Value::Null,
                Some(l) => {
                    let p = jangteo_node::services::listings::parse_lat_lon(l).ok_or_else(|| {
                        CliError::refused_msg("invalid_listing", format!("location {l:?}: expected LAT,LON with latitude within ±90 and longitude within ±180"))
                    })?;
                    json!({"lat": p.lat, "lon": p.lon})
                }
            };
            let mut body = json!({"title": a.title, "price": a.price, "currency": a.currency, "moderators": a.moderator});
            for (k, v) in [
                ("description", a.description.map(Value::from)),
                ("category", a.category.map(Value::from)),
                ("condition", a.condition.map(Value::from)),
                ("quantity", a.quantity.map(Value::from)),
                ("expires_in_days", a.expires_in_days.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            if !location.is_null() {
                body["location"] = location;
            }
            let api = ApiClient::open(&dir)?;
            if a.image.len() > jangteo_protocol::listing::IMAGES_MAX {
                return Err(CliError::refused_msg(
                    "invalid_listing",
                    format!(
                        "image: at most {} per listing",
                        jangteo_protocol::listing::IMAGES_MAX
                    ),
                ));
            }
            let mut images = Vec::new();
            for path in &a.image {
                let bytes = std::fs::read(path).map_err(|e| {
                    CliError::refused_msg(
                        "invalid_listing",
                        format!("image {}: {e}", path.display()),
                    )
                })?;
                if bytes.len() > jangteo_protocol::blob::MAX_BLOB_BYTES {
                    return Err(CliError::refused_msg(
                        "invalid_listing",
                        format!(
                            "image {}: {} bytes; at most {} per image",
                            path.display(),
                            bytes.len(),
                            jangteo_protocol::blob::MAX_BLOB_BYTES
                        ),
                    ));
                }
                let v = api.post_bytes("/v1/blobs", bytes).await?;
                images.push(v["id"].clone());
            }
            body["images"] = Value::Array(images);
            let v = api
                .send(reqwest::Method::POST, "/v1/listings", Some(&body))
                .await?;
            let out = json!({"id": v["id"], "seq": v["seq"]});
            print(json_out, &out, |o| format!("posted {}", s(o, "id")));
            Ok(())
        }
        Command::Update(a) => {
            let mut body = json!({});
            for (k, v) in [
                ("title", a.title.map(Value::from)),
                ("price", a.price.map(Value::from)),
                ("quantity", a.quantity.map(Value::from)),
                ("description", a.description.map(Value::from)),
                ("category", a.category.map(Value::from)),
                ("condition", a.condition.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            let path = format!("/v1/listings/{}", client::path_segment(&a.id));
            let v = ApiClient::open(&dir)?
                .send(reqwest::Method::PATCH, &path, Some(&body))
                .await?;
            let out = json!({"id": v["id"], "seq": v["seq"]});
            print(json_out, &out, |o| {
                format!("updated {} (version {})", s(o, "id"), s(o, "seq"))
            });
            Ok(())
        }
        Command::Retract { id } => {
            let path = format!("/v1/listings/{}/retract", client::path_segment(&id));
            let v = ApiClient::open(&dir)?
                .send(reqwest::Method::POST, &path, None)
                .await?;
            let out = json!({"id": v["id"], "seq": v["seq"]});
            print(json_out, &out, |o| {
                format!("retracted {} (version {})", s(o, "id"), s(o, "seq"))
            });
            Ok(())
        }
        Command::Show { id } => {
            let path = format!("/v1/listings/{}", client::path_segment(&id));
            let v = ApiClient::open(&dir)?.get(&path, &[]).await?;
            print(json_out, &v, listing_text);
            Ok(())
        }
        Command::Offer(a) => {
            let mut body = json!({"listing": a.listing_id, "moderators": a.moderator});
            for (k, v) in [
                ("price", a.price.map(Value::from)),
                ("quantity", a.quantity.map(Value::from)),
                ("message", a.message.map(Value::from)),
            ] {
                if let Some(v) = v {
                    body[k] = v;
                }
            }
            let v = ApiClient::open(&dir)?
                .send(reqwest::Method::POST, "/v1/trades", Some(&body))
                .await?;
            let delivery = v["history"][0]["delivery"].clone();
            let out = json!({"id": v["id"], "state": v["state"], "delivery": delivery});
            print(json_out, &out, |o| {
                format!(
                    "offer {} sent ({})",
                    s(o, "id"),
                    s(&o["delivery"], "status")
                )
            });
            Ok(())
        }
        Command::Trades => {
            let v = ApiClient::open(&dir)?.get("/v1/trades", &[]).await?;
            print(json_out, &v, |v| {
                let rows: Vec<String> =
                    v.as_array().into_iter().flatten().map(trade_line).collect();
                if rows.is_empty() {
                    "no trades".into()
                } else {
                    rows.join("\n")
                }
            });
            Ok(())
        }
        Command::Trade { id } => {
            let v = ApiClient::open(&dir)?
                .get(&format!("/v1/trades/{}", client::path_segment(&id)), &[])
                .await?;
            print(json_out, &v, trade_text);
            Ok(())
        }
        Command::Accept { id } => trade_action(&dir, json_out, &id, "accept", json!({})).await,
        Command::Reject { id, reason } => {
            trade_action(&dir, json_out, &id, "reject", json!({"reason": reason})).await
        }
        Command::Counter { id, price } => {
            trade_action(&dir, json_out, &id, "counter", json!({"price": price})).await
        }
        Command::Cancel { id, reason } => {
            trade_action(&dir, json_out, &id, "cancel", json!({"reason": reason})).await
        }
        Command::Paid { id, reference } => {
            trade_action(&dir, json_out, &id, "paid", json!({"reference": reference})).await
        }
        Command::Shipped { id, tracking } => {
            trade_action(
                &dir,
                json_out,
                &id,
                "shipped",
                json!({"tracking": tracking}),
            )
            .await
        }
        Command::Received { id } => trade_action(&dir, json_out, &id, "received", json!({})).await,
        Command::Dispute { id, reason } => {
            trade_action(&dir, json_out, &id, "dispute", json!({"reason": reason})).await
        }
        Command::Resolve { id, outcome } => {
            trade_action(&dir, json_out, &id, "resolve", json!({"outcome": outcome})).await
        }
        Command::Blob(BlobCommand::Get { id, out }) => {
            let path = format!("/v1/blobs/{}", client::path_segment(&id));
            let bytes = ApiClient::open(&dir)?.get_bytes(&path).await?;
            std::fs::write(&out, &bytes).map_err(|e| {
                CliError::refused_msg("io", format!("writing {}: {e}", out.display()))
            })?;
            let v = json!({"id": id, "bytes": bytes.len()});
            print(json_out, &v, |v| {
                format!(
                    "{} bytes of {} written to {}",
                    s(v, "bytes"),
                    s(v, "id"),
                    out.display()
                )
            });
            Ok(())
        }
        c @ (Command::Rate { .. }
        | Command::Reputation { .. }
        | Command::Trust { .. }
        | Command::Distrust { .. }) => reputation_command(&dir, json_out, c).await,
        Command::Search(a) => {
            let mut q: Vec<(&str, String)> = Vec::new();
            let opt = |q: &mut Vec<(&str, String)>, k: &'static str, v: Option<String>| {
                if let Some(v) = v {
                    q.push((k, v))
                }
            };
            opt(&mut q, "q", a.query);
            opt(&mut q, "category", a.category);
            opt(&mut q, "condition", a.condition);
            opt(&mut q, "currency", a.currency);
            opt(&mut q, "min_price", a.min_price.map(|p| p.to_string()));
            opt(&mut q, "max_price", a.max_price.map(|p| p.to_string()));
            opt(&mut q, "near", a.near);
            opt(&mut q, "radius_km", a.radius_km.map(|p| p.to_string()));
            opt(&mut q, "seller", a.seller);
            opt(&mut q, "sort", a.sort);
            opt(&mut q, "limit", a.limit.map(|p| p.to_string()));
            opt(&mut q, "offset", a.offset.map(|p| p.to_string()));
            if a.all {
                q.push(("all", "true".into()));
            }
            let v = ApiClient::open(&dir)?.get("/v1/listings", &q).await?;
            print(json_out, &v, |v| {
                let rows: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(listing_line)
                    .collect();
                if rows.is_empty() {
                    "no listings match".into()
                } else {
                    rows.join("\n")
                }
            });
            Ok(())
        }
    }
}

async fn reputation_command(
    dir: &std::path::Path,
    json_out: bool,
    command: Command,
) -> Result<(), CliError> {
    let api = ApiClient::open(dir)?;
    match command {
        Command::Rate {
            trade_id,
            score,
            comment,
        } => {
            let mut body = json!({"trade": trade_id, "score": score});
            if let Some(c) = comment {
                body["comment"] = c.into();
            }
            let v = api
                .send(reqwest::Method::POST, "/v1/attestations", Some(&body))
                .await?;
            print(json_out, &v, |v| {
                format!(
                    "rated {} {}/5 for trade {} (attestation {})",
                    s(v, "about"),
                    s(v, "score"),
                    s(v, "trade"),
                    s(v, "id")
                )
            });
        }
        Command::Reputation { peer_id } => {
            let path = format!("/v1/reputation/{}", client::path_segment(&peer_id));
            let v = api.get(&path, &[]).await?;
            print(json_out, &v, |v| {
                let rating = v["rating"]
                    .as_f64()
                    .map(|r| format!("{r:.2}/5 from {} rater(s)", s(v, "raters")))
                    .unwrap_or_else(|| "not rated".into());
                let mut out = format!(
                    "{}\n  trust:            {:.3}\n  confidence:       {:.3}\n  attestations:     {}\n  completed trades: {}\n  stars:            {rating}",
                    s(v, "peer_id"),
                    v["score"].as_f64().unwrap_or(0.0),
                    v["confidence"].as_f64().unwrap_or(0.0),
                    s(v, "attestations"),
                    s(v, "completed_trades"),
                );
                if v["seeded"] == json!(false) {
                    out.push_str("\n  (this node has no completed trades and trusts no key yet, so it trusts no one; `jangteo trust PEER_ID` adds a key you know)");
                }
                out
            });
        }
        Command::Trust { peer_id } => {
            let path = format!("/v1/trust/{}", client::path_segment(&peer_id));
            let v = api.send(reqwest::Method::PUT, &path, None).await?;
            print(json_out, &v, |v| {
                format!("now trusting {}", s(v, "peer_id"))
            });
        }
        Command::Distrust { peer_id } => {
            let path = format!("/v1/trust/{}", client::path_segment(&peer_id));
            let v = api.send(reqwest::Method::DELETE, &path, None).await?;
            print(json_out, &v, |v| {
                format!("{} is no longer a trust seed", s(v, "peer_id"))
            });
        }
        _ => unreachable!("only reputation commands are routed here"),
    }
    Ok(())
}

fn trade_line(v: &Value) -> String {
    format!(
        "{}  {:<9} {:<6} {} x {} {}  with {}",
        s(v, "id"),
        s(v, "state"),
        s(v, "role"),
        s(v, "quantity"),
        s(v, "price"),
        s(v, "currency"),
        s(v, "counterparty")
    )
}

fn trade_text(v: &Value) -> String {
    let mut out = format!(
        "trade {}\n  state:    {}\n  you are:  {}\n  listing:  {}\n  terms:    {} x {} {} (total {})\n  buyer:    {}\n  seller:   {}\n  you may:  {}\n  history:",
        s(v, "id"),
        s(v, "state"),
        s(v, "role"),
        s(v, "listing"),
        s(v, "quantity"),
        s(v, "price"),
        s(v, "currency"),
        s(v, "total"),
        s(v, "buyer"),
        s(v, "seller"),
        v["allowed"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", "))
            .filter(|x| !x.is_empty())
            .unwrap_or_else(|| "nothing now".into())
    );
    for h in v["history"].as_array().into_iter().flatten() {
        let d = &h["delivery"];
        let reason = d["reason"]
            .as_str()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n    {:<10} by {} ({})  {}{}",
            s(h, "kind"),
            s(h, "role"),
            s(h, "by"),
            s(d, "status"),
            reason
        ));
    }
    for e in v["equivocations"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  EQUIVOCATION: the {} ({}) signed a second {} after the same message at {}; it was refused and the proof is kept and gossiped",
            s(e, "role"),
            s(e, "by"),
            s(e, "refused_kind"),
            e["at"].as_u64().unwrap_or(0)
        ));
    }
    for m in v["set_aside"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  set aside: {} by {}: {}",
            s(m, "kind"),
            s(m, "by"),
            s(m, "reason")
        ));
    }
    out
}

async fn trade_action(
    dir: &std::path::Path,
    json_out: bool,
    id: &str,
    action: &str,
    body: Value,
) -> Result<(), CliError> {
    let path = format!("/v1/trades/{}/{action}", client::path_segment(id));
    let v = ApiClient::open(dir)?
        .send(reqwest::Method::POST, &path, Some(&body))
        .await?;
    let out = json!({"id": v["id"], "state": v["state"]});
    print(json_out, &out, |o| {
        format!("trade {} is now {}", s(o, "id"), s(o, "state"))
    });
    Ok(())
}

async fn run_node(dir: PathBuf, a: NodeArgs) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("JANGTEO_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,libp2p_mdns=warn,libp2p_gossipsub=warn")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let mut cfg = jangteo_node::NodeConfig::new(&dir);
    if !a.listen.is_empty() {
        cfg.listen = a.listen;
    }
    if a.no_listen {
        cfg.listen.clear();
    }
    cfg.external = a.external_address;
    for c in &a.follow {
        if !jangteo_protocol::listing::CATEGORIES.contains(&c.as_str()) {
            return Err(CliError::usage(format!(
                "follow {c:?}: not a category; use one of {}",
                jangteo_protocol::listing::CATEGORIES.join(", ")
            )));
        }
    }
    cfg.follow = a.follow;
    if let Some(api) = a.api {
        cfg.api = api;
    }
    cfg.bootstrap = a.bootstrap;
    cfg.mdns = !a.no_mdns;
    cfg.relay = a.relay;
    let node = jangteo_node::Node::start(cfg).await.map_err(|e| match e {
        jangteo_node::NodeError::Address(..) => CliError::usage(e.to_string()),
        other => CliError::refused(other),
    })?;
    eprintln!(
        "jangteo node {} running; API on http://{} (Ctrl-C to stop)",
        node.peer_id, node.api_addr
    );
    wait_for_signal().await;
    eprintln!("jangteo: shutting down");
    node.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
