//! Transport: TCP and QUIC with noise and yamux, DNS and the relay client, around the
//! [`Behaviour`] of `behaviour.rs`.
//!
//! It builds the swarm, starts listening and dialing, and hands back the [`Client`] and the
//! [`EventLoop`] to spawn. It runs nothing itself.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::gossipsub::{self, IdentTopic};
use libp2p::{Swarm, noise, tcp, yamux};
use tokio::sync::{broadcast, mpsc};

use super::behaviour::{Behaviour, behaviour};
use super::event_loop::EventLoop;
use super::relay::Reachability;
use super::{COMMAND_QUEUE, Client, NetworkConfig, Routes};
use crate::NodeEvent;
use crate::error::NodeError;
use crate::ingest::listing_topic;

/// Builds the swarm, starts listening and dialing, and returns the client handle and the
/// event loop to spawn. What the swarm task does not handle goes out through `routes`.
pub fn build(
    keypair: libp2p::identity::Keypair,
    config: &NetworkConfig,
    events: broadcast::Sender<NodeEvent>,
    routes: Routes,
) -> Result<(Client, EventLoop), NodeError> {
    let net = |e: &dyn std::fmt::Display| NodeError::Network(e.to_string());
    let mut swarm: Swarm<Behaviour> = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(|e| net(&e))?
        .with_quic()
        .with_dns()
        .map_err(|e| net(&e))?
        .with_relay_client(noise::Config::new, yamux::Config::default)
        .map_err(|e| net(&e))?
        .with_behaviour(|key, relay_client| behaviour(key, relay_client, config))
        .map_err(|e| net(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build();
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| NodeError::Address(addr.to_string(), e.to_string()))?;
    }
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }
    for addr in &config.bootstrap {
        if let Some(libp2p::multiaddr::Protocol::P2p(peer)) = addr.iter().last() {
            swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        }
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::warn!(addr = %addr, error = %e, "cannot dial bootstrap peer");
        }
    }
    let listing_topics: HashMap<gossipsub::TopicHash, &'static str> =
        jangteo_protocol::listing::CATEGORIES
            .iter()
            .map(|s| (IdentTopic::new(listing_topic(s)).hash(), *s))
            .collect();
    let reachability = if config.listen.is_empty() {
        Reachability::Private
    } else {
        Reachability::Unknown
    };
    let (tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let event_loop = EventLoop::new(
        swarm,
        commands,
        events,
        routes,
        config,
        listing_topics,
        reachability,
    );
    Ok((Client::new(tx), event_loop))
}
