//! The composed [`Behaviour`] of a node: connection limits, block list, relay server on
//! relays, AutoNAT (v1 and v2, client and server), DCUtR, gossipsub with application validation, Kademlia under our own
//! protocol name, identify, ping, mDNS, and one request-response behaviour per protocol with
//! its size caps. Only construction and the settings live here; the event loop drives it.

use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{PeerId, StreamProtocol, connection_limits, identify, kad, mdns, ping};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::peers::gossip_score;
use super::{
    BLOB_PROTOCOL, BLOB_REQUEST_MAX_BYTES, BLOB_RESPONSE_MAX_BYTES, BULK_PROTOCOL,
    BULK_REQUEST_MAX_BYTES, BULK_REQUEST_TIMEOUT, BULK_RESPONSE_MAX_BYTES, BlobRequest,
    BlobResponse, BulkRequest, BulkResponse, DM_MAX_BYTES, DM_PROTOCOL, DmRequest, DmResponse,
    IDENTIFY_VERSION, KAD_PROTOCOL, MAILBOX_PROTOCOL, MAILBOX_REQUEST_MAX_BYTES,
    MAILBOX_RESPONSE_MAX_BYTES, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER, MAX_PENDING_INCOMING,
    MailboxRequest, MailboxResponse, NetworkConfig, REQUEST_TIMEOUT, STREAMS_PER_PROTOCOL,
    SYNC_PROTOCOL, SYNC_REQUEST_MAX_BYTES, SYNC_REQUEST_TIMEOUT, SYNC_RESPONSE_MAX_BYTES,
    SyncRequest, SyncResponse, TRADE_MESSAGE_MAX_BYTES, TRADE_PROTOCOL, TradeRequest,
    TradeResponse,
};
use crate::error::NodeError;
use crate::ingest::{listing_topic, topic_for};

/// Largest gossip message accepted on any topic (an attestation, the largest object, with
/// framing). A publisher never sends more; a larger one is counted as an invalid message.
pub const GOSSIP_MESSAGE_MAX_BYTES: usize = jangteo_protocol::MAX_ANY_OBJECT_BYTES + 1024;
/// Largest gossip frame read at all. A message between [`GOSSIP_MESSAGE_MAX_BYTES`] and this
/// is decoded, refused as invalid (it counts against the peer's score) and the stream stays
/// open; with one limit for both, gossipsub dropped the inbound stream at the first oversize
/// message and every later message of that peer was lost. Past this frame size the library
/// still drops the stream.
pub const GOSSIP_FRAME_MAX_BYTES: usize = 4 * GOSSIP_MESSAGE_MAX_BYTES;

/// How often gossipsub maintains its meshes and gossips message ids to peers outside them.
pub const GOSSIP_HEARTBEAT: Duration = Duration::from_millis(700);
/// When the first heartbeat comes after start (the first meshes are formed then).
pub const GOSSIP_HEARTBEAT_INITIAL_DELAY: Duration = Duration::from_millis(100);

/// Every behaviour of a node.
#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    pub(super) blocked: libp2p::allow_block_list::Behaviour<libp2p::allow_block_list::BlockedPeers>,
    pub(super) relay_client: libp2p::relay::client::Behaviour,
    pub(super) relay_server: Toggle<libp2p::relay::Behaviour>,
    pub(super) autonat: libp2p::autonat::Behaviour,
    /// AutoNAT v2's client: asks peers to dial each candidate address back on a fresh port
    /// and confirms the ones that answer (v1 above stays for peers that only speak v1).
    pub(super) autonat_v2: libp2p::autonat::v2::client::Behaviour,
    /// AutoNAT v2's server: dials others' candidate addresses back for them.
    pub(super) autonat_v2_server: libp2p::autonat::v2::server::Behaviour,
    pub(super) dcutr: libp2p::dcutr::Behaviour,
    pub(super) gossipsub: gossipsub::Behaviour,
    pub(super) kad: kad::Behaviour<super::kad_store::PersistentStore>,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(super) sync: request_response::cbor::Behaviour<SyncRequest, SyncResponse>,
    pub(super) bulk: request_response::cbor::Behaviour<BulkRequest, BulkResponse>,
    pub(super) blob: request_response::cbor::Behaviour<BlobRequest, BlobResponse>,
    pub(super) trade: request_response::cbor::Behaviour<TradeRequest, TradeResponse>,
    pub(super) mailbox: request_response::cbor::Behaviour<MailboxRequest, MailboxResponse>,
    pub(super) dm: request_response::cbor::Behaviour<DmRequest, DmResponse>,
}

/// The gossip topics of a node following `shards`: one per listing shard, profiles,
/// attestations, reports.
pub(super) fn gossip_topics(shards: &[&'static str]) -> Vec<IdentTopic> {
    let mut topics: Vec<IdentTopic> = shards
        .iter()
        .map(|s| IdentTopic::new(listing_topic(s)))
        .collect();
    topics.push(IdentTopic::new(topic_for(jangteo_protocol::Kind::Profile)));
    topics.push(IdentTopic::new(topic_for(
        jangteo_protocol::Kind::Attestation,
    )));
    topics.push(IdentTopic::new(topic_for(jangteo_protocol::Kind::Report)));
    topics
}

fn gossipsub_behaviour(shards: &[&'static str]) -> Result<gossipsub::Behaviour, NodeError> {
    let every_topic = gossip_topics(&jangteo_protocol::listing::CATEGORIES);
    let mut config = gossipsub::ConfigBuilder::default();
    config
        .validation_mode(ValidationMode::Anonymous)
        .validate_messages()
        .max_transmit_size(GOSSIP_FRAME_MAX_BYTES)
        .heartbeat_interval(GOSSIP_HEARTBEAT)
        // The library waits 5 s for its first heartbeat, and the mesh of a topic is only
        // formed at a heartbeat: until then a node forwards what it validates to nobody and
        // its peers learn of messages only by gossip at a later heartbeat (hundreds of ms a
        // hop). go-libp2p waits 100 ms; so do we.
        .heartbeat_initial_delay(GOSSIP_HEARTBEAT_INITIAL_DELAY)
        .message_id_fn(|m| gossipsub::MessageId::new(&blake3::hash(&m.data).as_bytes()[..20]));
    for topic in &every_topic {
        config.max_transmit_size_for_topic(GOSSIP_MESSAGE_MAX_BYTES, topic.hash());
    }
    let config = config
        .build()
        .map_err(|e| NodeError::Network(format!("gossipsub config: {e}")))?;
    // Objects carry their own signatures, so gossip messages are not signed a second time.
    let mut gs = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, config)
        .map_err(|e| NodeError::Network(format!("gossipsub: {e}")))?;
    let (params, thresholds) = gossip_score(&gossip_topics(shards));
    gs.with_peer_score(params, thresholds)
        .map_err(|e| NodeError::Network(format!("peer score: {e}")))?;
    for topic in gossip_topics(shards) {
        gs.subscribe(&topic)
            .map_err(|e| NodeError::Network(format!("subscribe: {e}")))?;
    }
    Ok(gs)
}

/// One request-response behaviour with its size caps.
fn request_response<Req, Resp>(
    protocol: &'static str,
    request_max: u64,
    response_max: u64,
    timeout: Duration,
    support: ProtocolSupport,
) -> request_response::cbor::Behaviour<Req, Resp>
where
    Req: Send + Serialize + DeserializeOwned + std::fmt::Debug + 'static,
    Resp: Send + Serialize + DeserializeOwned + std::fmt::Debug + 'static,
{
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(request_max)
        .set_response_size_maximum(response_max);
    request_response::Behaviour::with_codec(
        codec,
        [(StreamProtocol::new(protocol), support)],
        request_response::Config::default()
            .with_request_timeout(timeout)
            .with_max_concurrent_streams(STREAMS_PER_PROTOCOL),
    )
}

fn relay_server(peer_id: PeerId) -> libp2p::relay::Behaviour {
    libp2p::relay::Behaviour::new(
        peer_id,
        libp2p::relay::Config {
            max_reservations: 1024,
            max_reservations_per_peer: 4,
            max_circuits: 256,
            max_circuits_per_peer: 8,
            max_circuit_duration: Duration::from_secs(5 * 60),
            max_circuit_bytes: 4 * 1024 * 1024,
            ..Default::default()
        },
    )
}

fn autonat(peer_id: PeerId) -> libp2p::autonat::Behaviour {
    libp2p::autonat::Behaviour::new(
        peer_id,
        libp2p::autonat::Config {
            boot_delay: Duration::from_secs(2),
            retry_interval: Duration::from_secs(30),
            throttle_server_period: Duration::from_secs(15),
            confidence_max: 1,
            // Loopback and LAN addresses count: a community may run on a LAN, and tests run
            // on loopback.
            only_global_ips: false,
            ..Default::default()
        },
    )
}

fn kademlia(
    peer_id: PeerId,
    direct: bool,
    backing: Option<std::sync::Arc<dyn super::kad_store::KadBacking>>,
) -> kad::Behaviour<super::kad_store::PersistentStore> {
    let mut cfg = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    cfg.set_query_timeout(Duration::from_secs(30));
    let store = super::kad_store::PersistentStore::new(
        peer_id,
        kad::store::MemoryStoreConfig::default(),
        backing,
    );
    let mut kad = kad::Behaviour::with_config(peer_id, store, cfg);
    // Only a node others can dial answers DHT queries; one that listens nowhere is reachable
    // through relays alone and stays a client.
    kad.set_mode(Some(if direct {
        kad::Mode::Server
    } else {
        kad::Mode::Client
    }));
    kad
}

pub(super) fn behaviour(
    key: &libp2p::identity::Keypair,
    relay_client: libp2p::relay::client::Behaviour,
    config: &NetworkConfig,
) -> Result<Behaviour, Box<dyn std::error::Error + Send + Sync>> {
    let peer_id = key.public().to_peer_id();
    let relay = config.relay;
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
            .with_max_established(Some(MAX_CONNECTIONS))
            .with_max_pending_incoming(Some(MAX_PENDING_INCOMING)),
    );
    let mdns = if config.mdns {
        Some(mdns::tokio::Behaviour::new(
            mdns::Config::default(),
            peer_id,
        )?)
    } else {
        None
    };
    let full = ProtocolSupport::Full;
    Ok(Behaviour {
        blocked: Default::default(),
        relay_client,
        relay_server: relay.then(|| relay_server(peer_id)).into(),
        autonat: autonat(peer_id),
        // Its defaults: a candidate tested every 5 s, at most 10 candidates.
        autonat_v2: Default::default(),
        autonat_v2_server: Default::default(),
        dcutr: libp2p::dcutr::Behaviour::new(peer_id),
        limits,
        gossipsub: gossipsub_behaviour(&config.shards())?,
        kad: kademlia(
            peer_id,
            !config.listen.is_empty(),
            config.kad_backing.clone(),
        ),
        identify: identify::Behaviour::new(identify::Config::new(
            IDENTIFY_VERSION.to_owned(),
            key.public(),
        )),
        ping: ping::Behaviour::default(),
        mdns: mdns.into(),
        sync: request_response(
            SYNC_PROTOCOL,
            SYNC_REQUEST_MAX_BYTES,
            SYNC_RESPONSE_MAX_BYTES,
            SYNC_REQUEST_TIMEOUT,
            full.clone(),
        ),
        bulk: request_response(
            BULK_PROTOCOL,
            BULK_REQUEST_MAX_BYTES,
            BULK_RESPONSE_MAX_BYTES,
            BULK_REQUEST_TIMEOUT,
            full.clone(),
        ),
        trade: request_response(
            TRADE_PROTOCOL,
            TRADE_MESSAGE_MAX_BYTES,
            TRADE_MESSAGE_MAX_BYTES,
            REQUEST_TIMEOUT,
            full.clone(),
        ),
        dm: request_response(
            DM_PROTOCOL,
            DM_MAX_BYTES,
            DM_MAX_BYTES,
            REQUEST_TIMEOUT,
            full.clone(),
        ),
        // Only relays hold mailboxes; other nodes only ask.
        mailbox: request_response(
            MAILBOX_PROTOCOL,
            MAILBOX_REQUEST_MAX_BYTES,
            MAILBOX_RESPONSE_MAX_BYTES,
            REQUEST_TIMEOUT,
            if relay {
                full.clone()
            } else {
                ProtocolSupport::Outbound
            },
        ),
        blob: request_response(
            BLOB_PROTOCOL,
            BLOB_REQUEST_MAX_BYTES,
            BLOB_RESPONSE_MAX_BYTES,
            REQUEST_TIMEOUT,
            full,
        ),
    })
}
