//! `jangteo`: run a node, and talk to a running one.
//!
//! `jangteo node` runs a node in this process; every other subcommand is a client of a
//! running node's local API, found through the data directory (`api.json`, `api.token`).
//! Exit codes: 0 success; 1 the thing asked for does not exist or was refused; 2 usage
//! error or no node to talk to. With `--json`, stdout holds exactly one JSON value.

mod client;
mod node_file;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use jangteo_node::api::types::{
    BlobView, CliErrorBody, CliErrorDetail, EventView, ExportReport, ImportError, ImportReport,
    InitView, ListingRef, ListingUpdate, ListingView, MarkRead, MessageSent, ModerationView,
    NewChatMessage, NewListing, NewOffer, NewQuestion, NewRating, NewReport, NewSavedSearch,
    NotificationView, NotificationsQuery, ObjectsQuery, OfferMade, ReportView, ReportsQuery,
    ReputationView, SavedSearchView, SearchQuery, TradeAction, TradeActionName, TradeRef,
    TradeSummary, TradeView, TrustBasis, UiUrl,
};
use serde::Serialize;

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
    /// Ask the seller of a listing a question (starts or continues that conversation). A
    /// first message to a stranger carries a proof-of-work stamp (about half a second).
    Ask {
        /// Listing id.
        listing_id: String,
        /// The question (at most 2,000 characters).
        text: String,
    },
    /// Your conversations, the latest first, with unread counts.
    Inbox,
    /// A conversation with each message's status (queued, delivered, read, failed); marks
    /// it read and tells the other side so.
    Chat {
        /// Thread id (from `inbox` or `ask`).
        thread: String,
    },
    /// Write in a conversation.
    Say {
        /// Thread id.
        thread: String,
        /// The message (at most 2,000 characters).
        text: String,
        /// A photo (repeatable, at most 4, each at most 5 MiB).
        #[arg(long, value_name = "FILE")]
        image: Vec<PathBuf>,
    },
    /// Block a key: its messages and offers are refused and its listings hidden here.
    Block {
        /// Peer id.
        peer_id: String,
    },
    /// Unblock a key.
    Unblock {
        /// Peer id.
        peer_id: String,
    },
    /// The keys you blocked.
    Blocked,
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
    /// Report a listing held by the node (LISTING_ID) or a key it knows (PEER_ID): signed,
    /// stored and gossiped; every node weighs it by its own trust in you.
    Report {
        /// A listing id, or a peer id.
        id: String,
        /// scam, prohibited, spam, miscategorized or duplicate.
        #[arg(long)]
        reason: String,
        /// What happened (at most 500 bytes).
        #[arg(long)]
        text: Option<String>,
    },
    /// The reports the node holds by one author (--by) or about a listing or key (--about),
    /// each with its weight here.
    Reports {
        /// Reports by this peer id.
        #[arg(long, value_name = "PEER_ID", conflicts_with = "about")]
        by: Option<String>,
        /// Reports about this listing id or peer id.
        #[arg(long, value_name = "ID")]
        about: Option<String>,
    },
    /// Keys whose reports count as your own (full weight): list them, add one, remove one.
    Moderators {
        #[command(subcommand)]
        action: Option<ModeratorsCommand>,
    },
    /// Write the signed objects the node holds (all, of one kind, or at or after a time),
    /// their exact bytes, to FILE as a CBOR sequence (RFC 8742), for other programs.
    Export {
        /// Only this kind: listing, profile, attestation, equivocation, offer, accept, ...
        #[arg(long)]
        kind: Option<String>,
        /// Only objects whose own time is at or after this unix ms.
        #[arg(long, value_name = "MS")]
        since: Option<u64>,
        /// Where to write.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Verify and store the objects of a CBOR sequence (as `export` writes) through the
    /// node's normal ingest path; prints how many were stored, already held, refused.
    Import {
        /// The CBOR sequence.
        file: PathBuf,
    },
    /// Open the node's web page: print its address with a one-time login code (valid two
    /// minutes, once) and open it in the default browser where there is one.
    Ui {
        /// Only print the address; do not start a browser.
        #[arg(long)]
        no_open: bool,
    },
    /// Saved searches: be told when a matching listing reaches this node.
    #[command(subcommand)]
    Alert(AlertCommand),
    /// The saved searches.
    Alerts,
    /// Notifications, newest first: trade steps of the other party, delivery failures, your
    /// listings reserved or sold, listings matching your saved searches.
    Notifications {
        /// Only those not marked read.
        #[arg(long)]
        unread: bool,
        /// Most listed (1-1000). Default: 100.
        #[arg(long)]
        limit: Option<usize>,
        /// Mark the ones listed read.
        #[arg(long)]
        mark_read: bool,
    },
    /// Print notifications as they happen, one line each (with --json: one JSON object per
    /// line), until interrupted.
    Watch,
    /// Print the API's OpenAPI 3.1 document (no node needed), or write it to FILE.
    Openapi {
        /// Where to write it (e.g. docs/openapi.json).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ModeratorsCommand {
    /// Subscribe to a key: its reports count as your own.
    Add {
        /// Peer id.
        peer_id: String,
    },
    /// Drop a moderator.
    Rm {
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

#[derive(Debug, Subcommand)]
enum AlertCommand {
    /// Save a search: QUERY (words, "phrases", OR, -word, as in `search`) and/or filters.
    /// Every listing that reaches this node from now on and matches raises one notification.
    Add(AlertAddArgs),
    /// Remove a saved search.
    Rm {
        /// Its number (`jangteo alerts` lists them).
        id: String,
    },
}

#[derive(Debug, Args)]
struct AlertAddArgs {
    /// Words to look for in titles and descriptions.
    query: Option<String>,
    /// Category.
    #[arg(long)]
    category: Option<String>,
    /// Condition: new, like-new, good, fair or poor.
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
    /// Only listings that name a place, around LAT,LON.
    #[arg(long, value_name = "LAT,LON")]
    near: Option<String>,
    /// Radius around --near, in km.
    #[arg(long)]
    radius_km: Option<f64>,
    /// Only this seller's listings.
    #[arg(long, value_name = "PEER_ID")]
    seller: Option<String>,
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
    /// On a relay: most MiB of sealed items held in all mailboxes together; past it,
    /// deposits are refused with "relay full". Default 1024.
    #[arg(long, value_name = "MIB")]
    mailbox_cap_mib: Option<u64>,
    /// On a relay: mirror others' photos only while all photos held take less than this
    /// many MiB. Default 16384.
    #[arg(long, value_name = "MIB")]
    mirror_cap_mib: Option<u64>,
    /// The network's base difficulty of listing stamps, in bits (SPEC §3.1). Network-wide:
    /// every node of one network must use the same value, or they refuse each other's
    /// listings. It sets the ratings' stamps too, 2 bits lower (SPEC §7.1). Default 24, the
    /// public network's; only test networks set it lower (0: no stamps).
    #[arg(long, value_name = "BITS")]
    listing_stamp_bits: Option<u32>,
    /// An address this node is reachable at from outside (repeatable), e.g. the router's
    /// public address with a forwarded port: /ip4/203.0.113.7/tcp/4001.
    #[arg(long, value_name = "MULTIADDR")]
    external_address: Vec<String>,
    /// Listen on no address: reachable only through relays (like a node behind NAT without
    /// port forwarding).
    #[arg(long)]
    no_listen: bool,
    /// Follow only this listing category (repeatable): general, digital, appliances,
    /// furniture, home, kids, fashion, beauty, bikes, sports, hobbies, books, tickets, pets,
    /// plants, vehicles, services, food, other. Default: all. Relays follow all.
    #[arg(long, value_name = "CATEGORY")]
    follow: Vec<String>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics (off by default; an address of
    /// its own, never the API's), e.g. 127.0.0.1:9464.
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<std::net::SocketAddr>,
    /// Read these settings from FILE (TOML; keys are the flags' long names). Default:
    /// node.toml in the data directory, when it exists. Flags on the command line win.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

impl NodeArgs {
    /// Fills every setting not given on the command line from the config file.
    fn merge(mut self, file: node_file::NodeFile) -> Self {
        fn list(cli: &mut Vec<String>, file: Option<Vec<String>>) {
            if cli.is_empty() {
                *cli = file.unwrap_or_default();
            }
        }
        list(&mut self.listen, file.listen);
        list(&mut self.bootstrap, file.bootstrap);
        list(&mut self.external_address, file.external_address);
        list(&mut self.follow, file.follow);
        self.api = self.api.or(file.api);
        self.no_mdns |= file.no_mdns.unwrap_or(false);
        self.relay |= file.relay.unwrap_or(false);
        self.no_listen |= file.no_listen.unwrap_or(false);
        self.mailbox_cap_mib = self.mailbox_cap_mib.or(file.mailbox_cap_mib);
        self.mirror_cap_mib = self.mirror_cap_mib.or(file.mirror_cap_mib);
        self.metrics = self.metrics.or(file.metrics);
        self.listing_stamp_bits = self.listing_stamp_bits.or(file.listing_stamp_bits);
        self
    }

    /// The checks clap cannot make once settings come from two places.
    fn check(&self) -> Result<(), String> {
        if self.no_listen && !self.listen.is_empty() {
            return Err("no-listen and listen exclude each other".into());
        }
        if !self.relay && (self.mailbox_cap_mib.is_some() || self.mirror_cap_mib.is_some()) {
            return Err(
                "mailbox-cap-mib and mirror-cap-mib apply to relays only; add relay".into(),
            );
        }
        if self.metrics.is_some() && self.metrics == self.api {
            return Err("metrics needs an address of its own, not the API's".into());
        }
        Ok(())
    }
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
            if json && !e.answered {
                let body = CliErrorBody {
                    error: CliErrorDetail {
                        code: e.code,
                        message: e.message,
                    },
                };
                println!("{}", to_json(&body));
            }
            ExitCode::from(e.exit)
        }
    }
}

fn to_json(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// One line of a sent message.
fn sent_text(m: &MessageSent) -> String {
    format!(
        "message {} in conversation {}: {}{}",
        m.message,
        m.thread,
        m.status.as_str(),
        m.reason
            .as_ref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    )
}

/// The conversation commands: ask, inbox, chat, say, block, unblock, blocked.
async fn conversation_command(
    dir: &std::path::Path,
    json_out: bool,
    c: Command,
) -> Result<(), CliError> {
    let api = ApiClient::open(dir)?;
    match c {
        Command::Ask { listing_id, text } => {
            let q = NewQuestion {
                listing: listing_id,
                text,
                photos: vec![],
            };
            print(json_out, &api.ask(&q).await?, sent_text);
        }
        Command::Inbox => {
            let v = api.inbox().await?;
            print(json_out, &v, |v| {
                let rows: Vec<String> = v
                    .iter()
                    .map(|t| {
                        format!(
                            "{}  {}  {}  unread {}  {}",
                            t.thread,
                            t.peer,
                            t.title.as_deref().unwrap_or(&t.listing),
                            t.unread,
                            t.last.as_deref().unwrap_or("")
                        )
                    })
                    .collect();
                if rows.is_empty() {
                    "no conversations".into()
                } else {
                    rows.join("\n")
                }
            });
        }
        Command::Chat { thread } => {
            let v = api.read_thread(&thread).await?;
            print(json_out, &v, |v| {
                let mut out = format!(
                    "conversation {} with {} about {}",
                    v.thread,
                    v.peer,
                    v.title.as_deref().unwrap_or(&v.listing)
                );
                for m in &v.messages {
                    out.push_str(&format!(
                        "\n[{}] {}: {}  ({}{})",
                        m.at,
                        if m.mine { "me" } else { m.from.as_str() },
                        m.text,
                        m.status.as_str(),
                        m.reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    ));
                }
                out
            });
        }
        Command::Say {
            thread,
            text,
            image,
        } => {
            if image.len() > jangteo_protocol::message::MESSAGE_PHOTOS_MAX {
                return Err(CliError::refused_msg(
                    "invalid_message",
                    format!(
                        "image: at most {} per message",
                        jangteo_protocol::message::MESSAGE_PHOTOS_MAX
                    ),
                ));
            }
            let mut photos = Vec::new();
            for path in &image {
                let bytes =
                    read_capped(path, jangteo_protocol::blob::MAX_BLOB_BYTES as u64, "image")
                        .map_err(|e| CliError::refused_msg("invalid_message", e.message))?;
                photos.push(api.add_blob(bytes).await?.id);
            }
            let m = NewChatMessage { text, photos };
            print(json_out, &api.say(&thread, &m).await?, sent_text);
        }
        Command::Block { peer_id } => {
            print(json_out, &api.block(&peer_id, true).await?, |b| {
                format!("blocked {}", b.peer_id)
            });
        }
        Command::Unblock { peer_id } => {
            print(json_out, &api.block(&peer_id, false).await?, |b| {
                format!("unblocked {}", b.peer_id)
            });
        }
        Command::Blocked => {
            let v = api.blocked().await?;
            print(json_out, &v, |v| {
                if v.is_empty() {
                    "nobody is blocked".into()
                } else {
                    v.iter()
                        .map(|b| b.peer_id.clone())
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
        _ => {}
    }
    Ok(())
}

fn print<T: Serialize>(json_out: bool, value: &T, human: impl FnOnce(&T) -> String) {
    if json_out {
        println!("{}", to_json(value));
    } else {
        println!("{}", human(value));
    }
}

fn listing_line(v: &ListingView) -> String {
    let dist = v
        .distance_km
        .map(|d| format!("  {d:.1} km"))
        .unwrap_or_default();
    let trust = v
        .seller_score
        .map(|t| {
            format!(
                " (trust {t:.2}, confidence {:.2})",
                v.seller_confidence.unwrap_or(0.0)
            )
        })
        .unwrap_or_default();
    format!(
        "{}  {:>10} {}  {}  [{}] seller {}{}{}",
        v.id,
        v.price,
        v.currency,
        v.title,
        v.status.as_str(),
        v.seller,
        trust,
        dist
    )
}

fn listing_text(v: &ListingView) -> String {
    let mut out = format!(
        "{}\n  id:        {}\n  price:     {} {}\n  quantity:  {}\n  category:  {}\n  status:    {} (version {})\n  seller:    {}",
        v.title,
        v.id,
        v.price,
        v.currency,
        v.quantity,
        v.category,
        v.status.as_str(),
        v.seq,
        v.seller
    );
    if let Some(t) = v.seller_score {
        out.push_str(&format!(
            "\n  trust:     {t:.2} (confidence {:.2})",
            v.seller_confidence.unwrap_or(0.0)
        ));
    }
    if let Some(max) = v.seller_supports {
        out.push_str(&format!(
            "\n  supports:  trades up to {max} {} (the seller's trust, as this node sees it; an offer above it carries a warning)",
            v.currency
        ));
    }
    if let Some(c) = &v.condition {
        out.push_str(&format!("\n  condition: {c}"));
    }
    if let Some(loc) = &v.location {
        out.push_str(&format!("\n  location:  {},{}", loc.lat, loc.lon));
    }
    if let Some(m) = &v.moderation {
        out.push_str(&moderation_text(m));
    }
    if !v.description.is_empty() {
        out.push_str(&format!("\n\n{}", v.description));
    }
    out
}

fn listing_ref(v: &ListingView) -> ListingRef {
    ListingRef {
        id: v.id.clone(),
        seq: v.seq,
        stamp_bits: v.stamp_bits,
        stamp_ms: v.stamp_ms,
    }
}

/// " (stamped: B bits of work in N ms)" when a stamp was made, else nothing.
fn stamp_note(r: &ListingRef) -> String {
    match (r.stamp_bits, r.stamp_ms) {
        (Some(b), Some(ms)) => format!(" (stamped: {b} bits of work in {ms} ms)"),
        _ => String::new(),
    }
}

/// Reads a file the user named, at most `max` bytes.
fn read_capped(path: &std::path::Path, max: u64, what: &str) -> Result<Vec<u8>, CliError> {
    let len = std::fs::metadata(path)
        .map_err(|e| CliError::refused_msg("io", format!("{what} {}: {e}", path.display())))?
        .len();
    if len > max {
        return Err(CliError::refused_msg(
            "too_large",
            format!("{what} {}: {len} bytes; at most {max}", path.display()),
        ));
    }
    std::fs::read(path)
        .map_err(|e| CliError::refused_msg("io", format!("{what} {}: {e}", path.display())))
}

/// Opens `url` in the default browser with `xdg-open` (or `open` on macOS) when there is
/// one and a display to show it on; says so on stderr otherwise. Never fails the command:
/// the address is already printed.
fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let has_display = cfg!(target_os = "macos")
        || std::env::var_os("DISPLAY").is_some()
        || std::env::var_os("WAYLAND_DISPLAY").is_some();
    if !has_display {
        eprintln!("jangteo: no display here; open the address above in a browser");
        return;
    }
    match std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
    {
        Ok(_) => eprintln!("jangteo: opening the web page in your browser"),
        Err(_) => eprintln!("jangteo: {opener} not found; open the address above in a browser"),
    }
}

/// Largest file `jangteo import` reads.
const IMPORT_FILE_MAX_BYTES: u64 = 1024 * 1024 * 1024;

async fn run(cli: Cli) -> Result<(), CliError> {
    let dir = data_dir(&cli);
    let json_out = cli.json;
    match cli.command {
        Command::Init => {
            let (key, created) =
                jangteo_node::keys::load_or_create(&dir).map_err(CliError::refused)?;
            let v = InitView {
                peer_id: jangteo_protocol::peer_id_string(&key.verifying_key().to_bytes()),
                created,
                data_dir: dir.display().to_string(),
            };
            print(json_out, &v, |v| {
                let verb = if v.created { "created" } else { "already had" };
                format!("{} ({verb} identity in {})", v.peer_id, v.data_dir)
            });
            Ok(())
        }
        Command::Node(args) => run_node(dir, args).await,
        Command::Openapi { out } => {
            let doc = jangteo_node::api::openapi_json();
            match out {
                None => print!("{doc}"),
                Some(path) => {
                    std::fs::write(&path, doc).map_err(|e| {
                        CliError::refused_msg("io", format!("writing {}: {e}", path.display()))
                    })?;
                    eprintln!("wrote {}", path.display());
                }
            }
            Ok(())
        }
        Command::Ui { no_open } => {
            let api = ApiClient::open(&dir)?;
            let code = api.ui_login_code().await?;
            let v = UiUrl {
                url: api.page_url(&code.path),
            };
            print(json_out, &v, |v| {
                format!(
                    "{}\n(a one-time login link, valid for {} s)",
                    v.url, code.expires_in_s
                )
            });
            if !no_open {
                open_browser(&v.url);
            }
            Ok(())
        }
        Command::Id => {
            let v = ApiClient::open(&dir)?.id().await?;
            print(json_out, &v, |v| {
                let addrs: Vec<String> = v.addrs.iter().map(|a| format!("  {a}")).collect();
                format!("{}\n{}", v.peer_id, addrs.join("\n"))
            });
            Ok(())
        }
        Command::Status => {
            let v = ApiClient::open(&dir)?.status().await?;
            print(json_out, &v, |v| {
                let sy = &v.sync;
                let copying = sy
                    .bulk
                    .as_ref()
                    .filter(|b| b.state == jangteo_node::api::types::BulkStateName::Running);
                let sync = if let Some(b) = copying {
                    format!(
                        "copying the market from one peer: {} of {} objects",
                        b.received, b.advertised
                    )
                } else if sy.in_progress > 0 || sy.to_fetch > 0 {
                    format!(
                        "catching up: {} objects still to fetch, from {} peer(s)",
                        sy.to_fetch, sy.in_progress
                    )
                } else if let Some(ago) = sy.last_sync_ms_ago {
                    format!(
                        "caught up with {} peer(s), last reconciled {} s ago ({} objects fetched so far)",
                        sy.peers_reconciled,
                        ago / 1000,
                        sy.objects_fetched
                    )
                } else {
                    "not reconciled with any peer yet: listings may be missing".into()
                };
                format!(
                    "peer id:   {}\npeers:     {} ({} on the listings topics)\nsync:      {}\nlistings:  {}\nreach:     {}\nuptime:    {} s",
                    v.peer_id,
                    v.peers,
                    v.gossip_peers,
                    sync,
                    v.listings,
                    v.reachability.as_str(),
                    v.uptime_s
                )
            });
            Ok(())
        }
        Command::Peers => {
            let v = ApiClient::open(&dir)?.peers().await?;
            print(json_out, &v, |v| {
                let rows: Vec<String> = v
                    .iter()
                    .map(|p| format!("{}  {}", p.peer_id, p.addrs.join(" ")))
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
                None => None,
                Some(l) => Some(jangteo_node::services::listings::parse_lat_lon(l).ok_or_else(|| {
                    CliError::refused_msg("invalid_listing", format!("location {l:?}: expected LAT,LON with latitude within ±90 and longitude within ±180"))
                })?),
            };
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
                let bytes =
                    read_capped(path, jangteo_protocol::blob::MAX_BLOB_BYTES as u64, "image")
                        .map_err(|e| CliError::refused_msg("invalid_listing", e.message))?;
                images.push(api.add_blob(bytes).await?.id);
            }
            let new = NewListing {
                title: a.title,
                price: a.price,
                currency: a.currency,
                description: a.description,
                category: a.category,
                condition: a.condition,
                quantity: a.quantity,
                location,
                expires_in_days: a.expires_in_days,
                moderators: a.moderator,
                images,
            };
            let out = listing_ref(&api.post_listing(&new).await?);
            print(json_out, &out, |o| {
                format!("posted {}{}", o.id, stamp_note(o))
            });
            Ok(())
        }
        Command::Update(a) => {
            let update = ListingUpdate {
                title: a.title,
                price: a.price,
                quantity: a.quantity,
                description: a.description,
                category: a.category,
                condition: a.condition,
                ..Default::default()
            };
            let v = ApiClient::open(&dir)?
                .update_listing(&a.id, &update)
                .await?;
            let out = listing_ref(&v);
            print(json_out, &out, |o| {
                format!("updated {} (version {})", o.id, o.seq)
            });
            Ok(())
        }
        Command::Retract { id } => {
            let out = listing_ref(&ApiClient::open(&dir)?.retract_listing(&id).await?);
            print(json_out, &out, |o| {
                format!("retracted {} (version {})", o.id, o.seq)
            });
            Ok(())
        }
        Command::Show { id } => {
            let v = ApiClient::open(&dir)?.listing(&id).await?;
            print(json_out, &v, listing_text);
            Ok(())
        }
        Command::Offer(a) => {
            let offer = NewOffer {
                listing: a.listing_id,
                price: a.price,
                quantity: a.quantity,
                message: a.message,
                moderators: a.moderator,
            };
            let v = ApiClient::open(&dir)?.make_offer(&offer).await?;
            let out = OfferMade {
                delivery: v.history.first().map(|h| h.delivery.clone()),
                id: v.id,
                state: v.state,
                amount_check: v.amount_check,
            };
            print(json_out, &out, |o| {
                let warning = o
                    .amount_check
                    .as_ref()
                    .and_then(|c| c.warning.as_ref())
                    .map(|w| format!("\nWARNING: {w}"))
                    .unwrap_or_default();
                format!(
                    "offer {} sent ({}){warning}",
                    o.id,
                    o.delivery.as_ref().map_or("", |d| d.status.as_str())
                )
            });
            Ok(())
        }
        Command::Trades => {
            let v = ApiClient::open(&dir)?.trades().await?;
            print(json_out, &v, |v| {
                let rows: Vec<String> = v.iter().map(trade_line).collect();
                if rows.is_empty() {
                    "no trades".into()
                } else {
                    rows.join("\n")
                }
            });
            Ok(())
        }
        Command::Trade { id } => {
            let v = ApiClient::open(&dir)?.trade(&id).await?;
            print(json_out, &v, trade_text);
            Ok(())
        }
        Command::Accept { id } => {
            trade_action(
                &dir,
                json_out,
                &id,
                TradeActionName::Accept,
                TradeAction::default(),
            )
            .await
        }
        Command::Reject { id, reason } => {
            let a = TradeAction {
                reason,
                ..TradeAction::default()
            };
            trade_action(&dir, json_out, &id, TradeActionName::Reject, a).await
        }
        Command::Counter { id, price } => {
            let a = TradeAction {
                price: Some(price),
                ..TradeAction::default()
            };
            trade_action(&dir, json_out, &id, TradeActionName::Counter, a).await
        }
        Command::Cancel { id, reason } => {
            let a = TradeAction {
                reason,
                ..TradeAction::default()
            };
            trade_action(&dir, json_out, &id, TradeActionName::Cancel, a).await
        }
        Command::Paid { id, reference } => {
            let a = TradeAction {
                reference,
                ..TradeAction::default()
            };
            trade_action(&dir, json_out, &id, TradeActionName::Paid, a).await
        }
        Command::Shipped { id, tracking } => {
            let a = TradeAction {
                tracking,
                ..TradeAction::default()
            };
            trade_action(&dir, json_out, &id, TradeActionName::Shipped, a).await
        }
        Command::Received { id } => {
            trade_action(
                &dir,
                json_out,
                &id,
                TradeActionName::Received,
                TradeAction::default(),
            )
            .await
        }
        Command::Dispute { id, reason } => {
            let a = TradeAction {
                reason: Some(reason),
                ..TradeAction::default()
            };
            trade_action(&dir, json_out, &id, TradeActionName::Dispute, a).await
        }
        Command::Resolve { id, outcome } => {
            let a = TradeAction {
                outcome: Some(outcome),
                ..TradeAction::default()
            };
            trade_action(&dir, json_out, &id, TradeActionName::Resolve, a).await
        }
        Command::Blob(BlobCommand::Get { id, out }) => {
            let bytes = ApiClient::open(&dir)?.blob(&id).await?;
            std::fs::write(&out, &bytes).map_err(|e| {
                CliError::refused_msg("io", format!("writing {}: {e}", out.display()))
            })?;
            let v = BlobView {
                id,
                bytes: bytes.len() as u64,
            };
            print(json_out, &v, |v| {
                format!("{} bytes of {} written to {}", v.bytes, v.id, out.display())
            });
            Ok(())
        }
        c @ (Command::Rate { .. }
        | Command::Reputation { .. }
        | Command::Trust { .. }
        | Command::Distrust { .. }) => reputation_command(&dir, json_out, c).await,
        c @ (Command::Report { .. } | Command::Reports { .. } | Command::Moderators { .. }) => {
            moderation_command(&dir, json_out, c).await
        }
        c @ (Command::Ask { .. }
        | Command::Inbox
        | Command::Chat { .. }
        | Command::Say { .. }
        | Command::Block { .. }
        | Command::Unblock { .. }
        | Command::Blocked) => conversation_command(&dir, json_out, c).await,
        Command::Export { kind, since, out } => export(&dir, json_out, kind, since, &out).await,
        Command::Import { file } => import(&dir, json_out, &file).await,
        c @ (Command::Alert(_)
        | Command::Alerts
        | Command::Notifications { .. }
        | Command::Watch) => alerts_command(&dir, json_out, c).await,
        Command::Search(a) => {
            let q = SearchQuery {
                q: a.query,
                category: a.category,
                condition: a.condition,
                seller: a.seller,
                currency: a.currency,
                min_price: a.min_price,
                max_price: a.max_price,
                near: a.near,
                radius_km: a.radius_km,
                sort: a.sort,
                limit: a.limit,
                offset: a.offset,
                all: a.all.then_some(true),
            };
            let v = ApiClient::open(&dir)?.search(&q).await?;
            print(json_out, &v, |v| {
                let rows: Vec<String> = v.iter().map(listing_line).collect();
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

fn saved_search_line(v: &SavedSearchView) -> String {
    let s = &v.search;
    let mut parts = Vec::new();
    if let Some(q) = &s.q {
        parts.push(format!("{q:?}"));
    }
    for (name, value) in [
        ("category", &s.category),
        ("condition", &s.condition),
        ("currency", &s.currency),
        ("seller", &s.seller),
        ("near", &s.near),
    ] {
        if let Some(x) = value {
            parts.push(format!("{name} {x}"));
        }
    }
    if let Some(p) = s.min_price {
        parts.push(format!("from {p}"));
    }
    if let Some(p) = s.max_price {
        parts.push(format!("up to {p}"));
    }
    if let Some(r) = s.radius_km {
        parts.push(format!("within {r} km"));
    }
    format!("#{}  {}", v.id, parts.join(", "))
}

fn notification_line(n: &NotificationView) -> String {
    let listing = n
        .listing
        .as_deref()
        .map(|l| format!("  (listing {l})"))
        .or_else(|| n.trade.as_deref().map(|t| format!("  (trade {t})")))
        .unwrap_or_default();
    format!(
        "{}{:>5}  {}  {}{listing}",
        if n.read { " " } else { "*" },
        n.id,
        n.kind.as_str(),
        n.text
    )
}

/// `alert add|rm`, `alerts`, `notifications`, `watch`.
async fn alerts_command(dir: &std::path::Path, json_out: bool, c: Command) -> Result<(), CliError> {
    let api = ApiClient::open(dir)?;
    match c {
        Command::Alert(AlertCommand::Add(a)) => {
            let n = NewSavedSearch {
                q: a.query,
                category: a.category,
                condition: a.condition,
                seller: a.seller,
                currency: a.currency,
                min_price: a.min_price,
                max_price: a.max_price,
                near: a.near,
                radius_km: a.radius_km,
            };
            let v = api.add_alert(&n).await?;
            print(json_out, &v, |v| {
                format!("saved search {} added: {}", v.id, saved_search_line(v))
            });
        }
        Command::Alert(AlertCommand::Rm { id }) => {
            let v = api.remove_alert(&id).await?;
            print(json_out, &v, |v| {
                format!("saved search removed: {}", saved_search_line(v))
            });
        }
        Command::Alerts => {
            let v = api.alerts().await?;
            print(json_out, &v, |v| {
                if v.is_empty() {
                    "no saved searches; add one with `jangteo alert add QUERY [filters]`".into()
                } else {
                    v.iter()
                        .map(saved_search_line)
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            });
        }
        Command::Notifications {
            unread,
            limit,
            mark_read,
        } => {
            let q = NotificationsQuery {
                unread: unread.then_some(true),
                limit,
            };
            let mut v = api.notifications(&q).await?;
            if mark_read {
                let ids: Vec<u64> = v
                    .notifications
                    .iter()
                    .filter(|n| !n.read)
                    .map(|n| n.id)
                    .collect();
                if !ids.is_empty() {
                    v.unread = api.mark_read(&MarkRead { ids, all: false }).await?.unread;
                }
            }
            print(json_out, &v, |v| {
                if v.notifications.is_empty() {
                    "no notifications".into()
                } else {
                    let mut rows: Vec<String> =
                        v.notifications.iter().map(notification_line).collect();
                    rows.push(format!("{} unread", v.unread));
                    rows.join("\n")
                }
            });
        }
        Command::Watch => {
            use std::io::Write;
            api.events("notification", |ev| {
                let line = match ev {
                    EventView::Subscribed { .. } => {
                        eprintln!("jangteo: watching for notifications; Ctrl-C stops");
                        return true;
                    }
                    EventView::Lagged { missed } => {
                        eprintln!(
                            "jangteo: {missed} notifications went by too fast to show; `jangteo notifications` lists them"
                        );
                        return true;
                    }
                    EventView::Notification { notification } if json_out => to_json(&notification),
                    EventView::Notification { notification } => notification_line(&notification),
                    _ => return true,
                };
                let mut out = std::io::stdout().lock();
                // A closed stdout (the reader went away) ends the watch.
                writeln!(out, "{line}").is_ok() && out.flush().is_ok()
            })
            .await?;
            return Err(CliError::transport(
                "the node ended the event stream (it stopped)".into(),
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Pages through `GET /v1/objects` and writes every page to `out`.
async fn export(
    dir: &std::path::Path,
    json_out: bool,
    kind: Option<String>,
    since: Option<u64>,
    out: &std::path::Path,
) -> Result<(), CliError> {
    use std::io::Write;
    let api = ApiClient::open(dir)?;
    let io =
        |e: std::io::Error| CliError::refused_msg("io", format!("writing {}: {e}", out.display()));
    let mut file = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
    let mut report = ExportReport::default();
    let mut q = ObjectsQuery {
        kind,
        since,
        after: None,
        limit: None,
    };
    loop {
        let (page, next) = api.objects_page(&q).await?;
        let (items, tail) = jangteo_node::api::objects::split_sequence(&page);
        if let Some((offset, why)) = tail {
            return Err(CliError::refused_msg(
                "invalid_object",
                format!(
                    "the node sent a page that is not a CBOR sequence at byte {offset} ({why})"
                ),
            ));
        }
        file.write_all(&page).map_err(io)?;
        report.objects += items.len() as u64;
        report.bytes += page.len() as u64;
        match next {
            Some(n) => q.after = Some(n),
            None => break,
        }
    }
    file.flush().map_err(io)?;
    print(json_out, &report, |r| {
        format!(
            "{} objects ({} bytes) written to {}",
            r.objects,
            r.bytes,
            out.display()
        )
    });
    Ok(())
}

/// Sends a CBOR sequence to `POST /v1/objects` in batches under the API's cap, and sums the
/// reports (positions are the file's).
async fn import(
    dir: &std::path::Path,
    json_out: bool,
    file: &std::path::Path,
) -> Result<(), CliError> {
    use jangteo_node::api::objects::{IMPORT_BODY_MAX_BYTES, IMPORT_ERRORS_MAX, split_sequence};
    let api = ApiClient::open(dir)?;
    let bytes = read_capped(file, IMPORT_FILE_MAX_BYTES, "import file")?;
    let (items, tail) = split_sequence(&bytes);
    let mut total = ImportReport::default();
    let refuse = |total: &mut ImportReport, index: usize, offset: usize, reason: String| {
        total.refused += 1;
        if total.errors.len() < IMPORT_ERRORS_MAX {
            total.errors.push(ImportError {
                index: index as u64,
                offset: offset as u64,
                reason,
            });
        }
    };
    let mut start = 0;
    while start < items.len() {
        // One batch: whole items, under the cap (an item alone over it cannot be an object).
        let (first_offset, first) = items[start];
        if first.len() > IMPORT_BODY_MAX_BYTES {
            refuse(
                &mut total,
                start,
                first_offset,
                format!("{} bytes: larger than any object may be", first.len()),
            );
            start += 1;
            continue;
        }
        let mut end = start + 1;
        let mut size = first.len();
        while end < items.len() && size + items[end].1.len() <= IMPORT_BODY_MAX_BYTES {
            size += items[end].1.len();
            end += 1;
        }
        let batch = bytes[first_offset..first_offset + size].to_vec();
        let r = api.import_objects(batch).await?;
        total.stored += r.stored;
        total.duplicate += r.duplicate;
        // Refused ones beyond the listed reasons still count.
        total.refused += r.refused.saturating_sub(r.errors.len() as u64);
        for e in r.errors {
            refuse(
                &mut total,
                start + e.index as usize,
                first_offset + e.offset as usize,
                e.reason,
            );
        }
        start = end;
    }
    if let Some((offset, why)) = tail {
        refuse(
            &mut total,
            items.len(),
            offset,
            format!(
                "bytes {offset}..{}: not a CBOR item ({why}); the rest of the file was skipped",
                bytes.len()
            ),
        );
    }
    print(json_out, &total, |r| {
        let mut s = format!(
            "{} stored, {} already held, {} refused",
            r.stored, r.duplicate, r.refused
        );
        for e in &r.errors {
            s.push_str(&format!(
                "\n  object {} (byte {}): {}",
                e.index, e.offset, e.reason
            ));
        }
        s
    });
    if total.refused > 0 {
        let first = total
            .errors
            .first()
            .map(|e| format!(": object {} (byte {}): {}", e.index, e.offset, e.reason))
            .unwrap_or_default();
        return Err(CliError::after_answer(
            "invalid_object",
            format!(
                "{} of the file's objects were refused{first}; the {} valid ones were kept",
                total.refused,
                total.stored + total.duplicate
            ),
        ));
    }
    Ok(())
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
            let v = api
                .rate(&NewRating {
                    trade: trade_id,
                    score,
                    comment,
                })
                .await?;
            print(json_out, &v, |v| {
                format!(
                    "rated {} {}/5 for trade {} (attestation {})",
                    v.about, v.score, v.trade, v.id
                )
            });
        }
        Command::Reputation { peer_id } => {
            let v = api.reputation(&peer_id).await?;
            print(json_out, &v, reputation_text);
        }
        Command::Trust { peer_id } => {
            let v = api.trust(&peer_id).await?;
            print(json_out, &v, |v| format!("now trusting {}", v.peer_id));
        }
        Command::Distrust { peer_id } => {
            let v = api.distrust(&peer_id).await?;
            print(json_out, &v, |v| {
                format!("{} is no longer a trust seed", v.peer_id)
            });
        }
        _ => {
            return Err(CliError::usage("internal: not a reputation command".into()));
        }
    }
    Ok(())
}

/// `report`, `reports` and `moderators`.
async fn moderation_command(
    dir: &std::path::Path,
    json_out: bool,
    command: Command,
) -> Result<(), CliError> {
    let api = ApiClient::open(dir)?;
    match command {
        Command::Report { id, reason, text } => {
            let v = api
                .report(&NewReport {
                    target: id,
                    reason,
                    text,
                })
                .await?;
            print(json_out, &v, |v| {
                let what = v
                    .listing
                    .as_ref()
                    .map_or_else(|| format!("key {}", v.about), |l| format!("listing {l}"));
                format!("reported {what} as {} (report {})", v.reason, v.id)
            });
        }
        Command::Reports { by, about } => {
            if by.is_none() && about.is_none() {
                return Err(CliError::usage(
                    "give --by PEER_ID or --about LISTING_ID|PEER_ID".into(),
                ));
            }
            let v = api.reports(&ReportsQuery { by, about }).await?;
            print(json_out, &v, |v| {
                if v.is_empty() {
                    "no reports held".into()
                } else {
                    v.iter().map(report_line).collect::<Vec<_>>().join("\n")
                }
            });
        }
        Command::Moderators { action } => match action {
            None => {
                let v = api.moderators().await?;
                print(json_out, &v, |v| {
                    if v.is_empty() {
                        "no moderators: `jangteo moderators add PEER_ID` makes a key's reports count as yours".into()
                    } else {
                        v.join("\n")
                    }
                });
            }
            Some(ModeratorsCommand::Add { peer_id }) => {
                let v = api.set_moderator(&peer_id, true).await?;
                print(json_out, &v, |v| {
                    format!("{}'s reports now count as yours", v.peer_id)
                });
            }
            Some(ModeratorsCommand::Rm { peer_id }) => {
                let v = api.set_moderator(&peer_id, false).await?;
                print(json_out, &v, |v| {
                    format!("{} is no longer a moderator", v.peer_id)
                });
            }
        },
        _ => {
            return Err(CliError::usage("internal: not a moderation command".into()));
        }
    }
    Ok(())
}

/// One report, on one line.
fn report_line(r: &ReportView) -> String {
    let what = r
        .listing
        .as_ref()
        .map_or_else(|| format!("key {}", r.about), |l| format!("listing {l}"));
    let text = if r.text.is_empty() {
        String::new()
    } else {
        format!(": {}", r.text.replace('\n', " "))
    };
    format!(
        "{} by {} (weight {:.2}, {:?}) about {what}{text}",
        r.reason, r.by, r.weight, r.basis
    )
}

/// What `show` says about a listing's reports.
fn moderation_text(m: &ModerationView) -> String {
    let head = if m.hidden {
        format!(
            "HIDDEN here: reports weigh {:.2} (threshold {:.2}): {}",
            m.weight,
            m.threshold,
            m.reasons.join(", ")
        )
    } else if m.warning {
        format!(
            "WARNING: reported ({}), weighing {:.2} here (hidden at {:.2})",
            m.reasons.join(", "),
            m.weight,
            m.threshold
        )
    } else {
        format!(
            "reported, by no one this node trusts (weight {:.2}, hidden at {:.2})",
            m.weight, m.threshold
        )
    };
    let lines: Vec<String> = m
        .reports
        .iter()
        .map(|r| format!("\n    {}", report_line(r)))
        .collect();
    format!("\n  {head}{}", lines.concat())
}

fn reputation_text(v: &ReputationView) -> String {
    let rating = v
        .rating
        .map(|r| format!("{r:.2}/5 from {} rater(s)", v.raters))
        .unwrap_or_else(|| "not rated".into());
    let mut out = v.peer_id.clone();
    if v.basis == TrustBasis::NotYetPersonal {
        out.push_str("\n  (not yet personal: the evidence this node holds, not its trust)");
    } else {
        out.push_str(&format!(
            "\n  trust:            {:.3}\n  confidence:       {:.3}\n  standing:         {:.3} ({} rater(s) negative on balance)",
            v.score, v.confidence, v.standing, v.negative_raters
        ));
    }
    out.push_str(&format!(
        "\n  attestations:     {}\n  completed trades: {}\n  stars:            {rating}",
        v.attestations, v.completed_trades,
    ));
    if let Some(days) = v.key_age_days {
        out.push_str(&format!("\n  first seen:       {days} day(s) ago"));
    }
    for s in &v.supports {
        out.push_str(&format!(
            "\n  supports:         trades up to {} {} as a seller",
            s.value, s.currency
        ));
    }
    if v.trusted {
        out.push_str("\n  (one of your trust seeds)");
    }
    if v.equivocated {
        out.push_str("\n  EQUIVOCATED: signed two histories of one trade; no trust");
    }
    if let Some(a) = &v.advice {
        out.push_str(&format!("\n  {a}"));
    }
    out
}

fn trade_line(v: &TradeSummary) -> String {
    format!(
        "{}  {:<9} {:<6} {} x {} {}  with {}",
        v.id,
        v.state.as_str(),
        v.role.as_str(),
        v.quantity,
        v.price,
        v.currency,
        v.counterparty
    )
}

fn trade_text(v: &TradeView) -> String {
    let allowed: Vec<&str> = v.allowed.iter().map(|a| a.as_str()).collect();
    let mut out = format!(
        "trade {}\n  state:    {}\n  you are:  {}\n  listing:  {}\n  terms:    {} x {} {} (total {})\n  buyer:    {}\n  seller:   {}\n  you may:  {}\n  history:",
        v.id,
        v.state.as_str(),
        v.role.as_str(),
        v.listing,
        v.quantity,
        v.price,
        v.currency,
        v.total,
        v.buyer,
        v.seller,
        if allowed.is_empty() {
            "nothing now".to_owned()
        } else {
            allowed.join(", ")
        }
    );
    for h in &v.history {
        let reason = h
            .delivery
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n    {:<10} by {} ({})  {}{}",
            h.kind,
            h.role.as_str(),
            h.by,
            h.delivery.status.as_str(),
            reason
        ));
    }
    if let Some(c) = &v.amount_check {
        match &c.warning {
            Some(w) => out.push_str(&format!("\n  WARNING:  {w}")),
            None => out.push_str(&format!(
                "\n  amount:   within what the seller's trust supports ({} {})",
                c.supported, c.currency
            )),
        }
    }
    for e in &v.equivocations {
        out.push_str(&format!(
            "\n  EQUIVOCATION: the {} ({}) signed a second {} after the same message at {}; it was refused and the proof is kept and gossiped",
            e.role.as_str(),
            e.by,
            e.refused_kind,
            e.at
        ));
    }
    for m in &v.set_aside {
        out.push_str(&format!(
            "\n  set aside: {} by {}: {}",
            m.kind, m.by, m.reason
        ));
    }
    out
}

async fn trade_action(
    dir: &std::path::Path,
    json_out: bool,
    id: &str,
    action: TradeActionName,
    body: TradeAction,
) -> Result<(), CliError> {
    let v = ApiClient::open(dir)?
        .trade_action(id, action, &body)
        .await?;
    let out = TradeRef {
        id: v.id,
        state: v.state,
    };
    print(json_out, &out, |o| {
        format!("trade {} is now {}", o.id, o.state)
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
    let file = node_file::NodeFile::load(&dir, a.config.as_deref()).map_err(CliError::usage)?;
    let a = a.merge(file);
    a.check().map_err(CliError::usage)?;
    let mut cfg = jangteo_node::NodeConfig::new(&dir);
    cfg.metrics = a.metrics;
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
    if let Some(mib) = a.mailbox_cap_mib {
        cfg.mailbox_cap_bytes = mib.saturating_mul(1024 * 1024);
    }
    if let Some(mib) = a.mirror_cap_mib {
        cfg.mirror_cap_bytes = mib.saturating_mul(1024 * 1024);
    }
    if let Some(bits) = a.listing_stamp_bits {
        if bits > jangteo_protocol::stamp::MAX_BITS {
            return Err(CliError::usage(format!(
                "--listing-stamp-bits {bits}: at most {}",
                jangteo_protocol::stamp::MAX_BITS
            )));
        }
        cfg.listing_stamp_bits = bits;
    }
    let node = jangteo_node::Node::start(cfg).await.map_err(|e| match e {
        jangteo_node::NodeError::Address(..) => CliError::usage(e.to_string()),
        other => CliError::refused(other),
    })?;
    eprintln!(
        "jangteo node {} running; API on http://{} (Ctrl-C to stop)",
        node.peer_id, node.api_addr
    );
    if let Some(m) = node.metrics_addr {
        eprintln!("metrics on http://{m}/metrics");
    }
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
