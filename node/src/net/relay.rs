//! Relays and reachability: what AutoNAT says about us, which connected peers offer circuit
//! relay v2 or mailboxes, the reservations a node behind NAT keeps on them, and dialing a
//! peer through them.
//!
//! State and decisions only; it acts on the swarm it is handed and never reads the store.

use std::collections::{HashMap, HashSet};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify};
use serde::Serialize;
use tokio::sync::broadcast;

use super::MAILBOX_PROTOCOL;
use super::behaviour::Behaviour;
use crate::NodeEvent;

/// Most relays a node behind NAT keeps a reservation on.
pub const RELAY_RESERVATIONS_MAX: usize = 2;
/// The circuit relay v2 hop protocol, by which identify tells us a peer relays.
pub const RELAY_HOP_PROTOCOL: &str = "/libp2p/circuit/relay/0.2.0/hop";
/// Most relays remembered (connected ones only).
pub const RELAYS_MAX: usize = 256;

/// Whether others can dial us directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// AutoNAT confirmed a public address.
    Public,
    /// Not reachable directly (AutoNAT said so, or we listen nowhere): through relays only.
    Private,
    /// Not probed yet.
    Unknown,
}

impl Reachability {
    /// The word the API shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Reachability::Public => "public",
            Reachability::Private => "private",
            Reachability::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for Reachability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Relays we know of and our reservations on them.
#[derive(Debug)]
pub(super) struct Relays {
    pub(super) reachability: Reachability,
    /// Connected relays that hold mailboxes.
    pub(super) mailboxes: HashSet<PeerId>,
    /// Connected peers that offer circuit relay v2, with the address we reach them at.
    circuits: HashMap<PeerId, Multiaddr>,
    /// Relays we asked for (or hold) a reservation on, with our relayed address once
    /// accepted.
    reservations: HashMap<PeerId, Option<Multiaddr>>,
    /// The listener of each reservation.
    listeners: HashMap<ListenerId, PeerId>,
}

/// The relay in a `/p2p/<relay>/p2p-circuit` address.
pub(super) fn relay_of(addr: &Multiaddr) -> Option<PeerId> {
    let mut last_peer = None;
    for p in addr.iter() {
        match p {
            Protocol::P2p(id) => last_peer = Some(id),
            Protocol::P2pCircuit => return last_peer,
            _ => {}
        }
    }
    None
}

impl Relays {
    pub(super) fn new(reachability: Reachability) -> Self {
        Self {
            reachability,
            mailboxes: HashSet::new(),
            circuits: HashMap::new(),
            reservations: HashMap::new(),
            listeners: HashMap::new(),
        }
    }

    /// Our addresses through relays that accepted a reservation.
    pub(super) fn relayed_addrs(&self) -> impl Iterator<Item = &Multiaddr> {
        self.reservations.values().flatten()
    }

    pub(super) fn on_new_listen_addr(&mut self, address: Multiaddr) {
        if let Some(relay) = relay_of(&address) {
            tracing::info!(addr = %address, "reachable through relay");
            self.reservations.insert(relay, Some(address));
        } else {
            tracing::info!(addr = %address, "listening");
        }
    }

    /// A refused or lost reservation closes its listener, often with no address.
    pub(super) fn on_listener_closed(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        listener: ListenerId,
        addresses: &[Multiaddr],
    ) {
        if let Some(relay) = self.listeners.remove(&listener) {
            self.reservations.remove(&relay);
        }
        for a in addresses {
            if let Some(relay) = relay_of(a) {
                self.reservations.remove(&relay);
            }
        }
        self.maybe_reserve(swarm);
    }

    pub(super) fn on_autonat(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        status: libp2p::autonat::NatStatus,
    ) {
        let now = match status {
            libp2p::autonat::NatStatus::Public(a) => {
                tracing::info!(addr = %a, "reachable directly (AutoNAT)");
                Reachability::Public
            }
            libp2p::autonat::NatStatus::Private => {
                tracing::info!("not reachable directly (AutoNAT); using relays");
                Reachability::Private
            }
            libp2p::autonat::NatStatus::Unknown => Reachability::Unknown,
        };
        self.set_reachability(swarm, now);
    }

    /// An AutoNAT v2 test of one of our candidate addresses: a server dialed it back on a
    /// fresh port (we are reachable there: libp2p has confirmed it as an external address),
    /// or could not. A failed test makes us private only while no address is confirmed.
    pub(super) fn on_autonat_v2(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        event: &libp2p::autonat::v2::client::Event,
    ) {
        let now = match &event.result {
            Ok(()) => {
                if self.reachability != Reachability::Public {
                    tracing::info!(addr = %event.tested_addr, server = %event.server, "reachable directly (AutoNAT v2)");
                }
                Reachability::Public
            }
            Err(e) => {
                tracing::debug!(addr = %event.tested_addr, server = %event.server, error = %e, "not reachable at this address (AutoNAT v2)");
                if swarm.external_addresses().next().is_some() {
                    return;
                }
                if self.reachability != Reachability::Private {
                    tracing::info!("not reachable directly (AutoNAT v2); using relays");
                }
                Reachability::Private
            }
        };
        self.set_reachability(swarm, now);
    }

    fn set_reachability(&mut self, swarm: &mut Swarm<Behaviour>, now: Reachability) {
        // A node that listens nowhere stays private whatever probes say.
        if swarm.listeners().any(|a| relay_of(a).is_none()) {
            self.reachability = now;
        }
        self.maybe_reserve(swarm);
    }

    /// Notes what identify says a peer offers: mailboxes, circuit relay.
    pub(super) fn on_identify(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        events: &broadcast::Sender<NodeEvent>,
        peer: PeerId,
        info: &identify::Info,
    ) {
        let mailbox = StreamProtocol::new(MAILBOX_PROTOCOL);
        if info.protocols.contains(&mailbox)
            && self.mailboxes.len() < RELAYS_MAX
            && self.mailboxes.insert(peer)
        {
            tracing::info!(peer = %peer, "relay with mailboxes connected");
            let _ = events.send(NodeEvent::RelayConnected {
                peer: peer.to_string(),
            });
        }
        if !info
            .protocols
            .contains(&StreamProtocol::new(RELAY_HOP_PROTOCOL))
        {
            return;
        }
        let unspecified = |a: &Multiaddr| {
            a.iter()
                .any(|p| matches!(p, Protocol::Ip4(ip) if ip.is_unspecified()))
        };
        let Some(addr) = info
            .listen_addrs
            .iter()
            .find(|a| relay_of(a).is_none() && !unspecified(a))
        else {
            return;
        };
        let addr: Multiaddr = addr
            .iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        if self.circuits.len() < RELAYS_MAX && self.circuits.insert(peer, addr).is_none() {
            tracing::info!(peer = %peer, "circuit relay connected");
        }
        self.maybe_reserve(swarm);
    }

    pub(super) fn on_disconnected(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        self.mailboxes.remove(&peer);
        self.circuits.remove(&peer);
        if self.reservations.remove(&peer).is_some() {
            self.listeners.retain(|_, r| *r != peer);
            self.maybe_reserve(swarm);
        }
    }

    /// Behind NAT (or listening nowhere): keep a reservation on up to
    /// [`RELAY_RESERVATIONS_MAX`] connected relays, so others can reach us through them.
    pub(super) fn maybe_reserve(&mut self, swarm: &mut Swarm<Behaviour>) {
        if self.reachability != Reachability::Private {
            return;
        }
        let candidates: Vec<(PeerId, Multiaddr)> = self
            .circuits
            .iter()
            .filter(|(r, _)| !self.reservations.contains_key(*r))
            .map(|(r, a)| (*r, a.clone()))
            .collect();
        for (relay, addr) in candidates {
            if self.reservations.len() >= RELAY_RESERVATIONS_MAX {
                break;
            }
            let circuit = addr.with(Protocol::P2p(relay)).with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit) {
                Ok(listener) => {
                    tracing::info!(relay = %relay, "asking the relay for a reservation");
                    self.reservations.insert(relay, None);
                    self.listeners.insert(listener, relay);
                }
                Err(e) => tracing::warn!(relay = %relay, error = %e, "cannot listen through relay"),
            }
        }
    }

    /// A peer we are not connected to may sit behind NAT with a reservation on one of our
    /// relays: dial it through them too (alongside any direct address the DHT knows).
    pub(super) fn route_via(&self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        if swarm.is_connected(&peer) || self.circuits.is_empty() {
            return;
        }
        let addrs: Vec<Multiaddr> = self
            .circuits
            .iter()
            .filter(|(r, _)| **r != peer)
            .map(|(r, a)| {
                a.clone()
                    .with(Protocol::P2p(*r))
                    .with(Protocol::P2pCircuit)
                    .with(Protocol::P2p(peer))
            })
            .collect();
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .build();
        if let Err(e) = swarm.dial(opts) {
            tracing::debug!(peer = %peer, error = %e, "dial through relays");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachability_serializes_to_the_words_the_api_showed() {
        for (r, w) in [
            (Reachability::Public, "public"),
            (Reachability::Private, "private"),
            (Reachability::Unknown, "unknown"),
        ] {
            assert_eq!(serde_json::to_value(r).expect("json"), w);
            assert_eq!(r.to_string(), w);
        }
    }

    #[test]
    fn the_relay_of_a_circuit_address_is_the_peer_before_the_circuit() {
        let relay = PeerId::random();
        let target = PeerId::random();
        let a: Multiaddr = format!("/ip4/1.2.3.4/tcp/1/p2p/{relay}/p2p-circuit/p2p/{target}")
            .parse()
            .expect("addr");
        assert_eq!(relay_of(&a), Some(relay));
        let direct: Multiaddr = format!("/ip4/1.2.3.4/tcp/1/p2p/{relay}")
            .parse()
            .expect("addr");
        assert_eq!(relay_of(&direct), None);
    }
}
