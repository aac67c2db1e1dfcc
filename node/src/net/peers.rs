//! What the node holds against peers: offenses (invalid objects, signed lies), bans and
//! their expiry, connections per IP address, and the gossipsub score parameters that turn
//! invalid gossip into a graylist.
//!
//! Addresses and subnets ([`Origin`]) are what a throw-away key cannot change for free:
//! rate limits count them too (see `rate::Tiered`), and a ban leaves a decaying
//! [`Penalties`] entry on them that throttles, never bans (a NAT hides honest users too).
//!
//! Pure bookkeeping: it decides (ban or not, admit or not) and the swarm task carries the
//! decision out (block the peer, close the connection). It reads the clock only through the
//! `now` it is given and never touches the swarm, the store or a signature.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};

/// Invalid objects a peer may send within [`OFFENSE_WINDOW`] before it is banned.
pub const BAN_AFTER_INVALID: u32 = 10;
/// The window invalid objects are counted in.
pub const OFFENSE_WINDOW: Duration = Duration::from_secs(600);
/// How long a ban lasts.
pub const BAN_DURATION: Duration = Duration::from_secs(600);
/// Most connections from one IP address (loopback excepted: many honest nodes share one
/// host in tests and testnets; a household or CGNAT shares one address, hence not 1).
pub const MAX_CONNECTIONS_PER_IP: usize = 32;
/// Most peers whose offenses (or bans) are remembered at once.
pub const PEER_TABLE_MAX: usize = 4096;
/// A connected peer whose gossip score is below this (the graylist threshold) is banned at
/// the next housekeeping pass.
pub const BAN_BELOW_SCORE: f64 = GRAYLIST_THRESHOLD;
/// Gossip score below which everything a peer sends is dropped unread.
pub const GRAYLIST_THRESHOLD: f64 = -80.0;
/// Weight of invalid gossip in the score; each topic counts its invalid objects squared.
pub const INVALID_MESSAGE_WEIGHT: f64 = -10.0;
/// Protocol misbehaviour (a GRAFT during backoff, an IWANT promise not kept) a peer may
/// show before it costs score: honest peers on slow or lossy links break a few promises.
pub const BEHAVIOUR_PENALTY_THRESHOLD: f64 = 6.0;

/// A new ban (see [`Peers::ban`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banned {
    /// The peer whose ban was ended early to make room (the caller unblocks it).
    pub lifted: Option<PeerId>,
}

/// Offenses, bans and per-IP connection counts.
#[derive(Debug, Default)]
pub struct Peers {
    offenses: HashMap<PeerId, (Instant, u32)>,
    banned: HashMap<PeerId, Instant>,
    ip_conns: HashMap<IpAddr, usize>,
    conn_ip: HashMap<ConnectionId, IpAddr>,
}

impl Peers {
    /// Counts one offense of `peer` at `now`; true when it reaches [`BAN_AFTER_INVALID`]
    /// within [`OFFENSE_WINDOW`] (the caller bans it).
    pub fn offense(&mut self, peer: PeerId, now: Instant) -> bool {
        if !self.offenses.contains_key(&peer) && self.offenses.len() >= PEER_TABLE_MAX {
            self.forget_stale(now);
            if self.offenses.len() >= PEER_TABLE_MAX
                && let Some(oldest) = self.offenses.iter().min_by_key(|(_, (t, _))| *t)
            {
                let oldest = *oldest.0;
                self.offenses.remove(&oldest);
            }
        }
        let e = self.offenses.entry(peer).or_insert((now, 0));
        if now.saturating_duration_since(e.0) >= OFFENSE_WINDOW {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 >= BAN_AFTER_INVALID
    }

    /// Bans `peer` from `now` for [`BAN_DURATION`]; None when it was banned already. When
    /// the table is full, the ban that ends soonest is ended early: its peer is returned in
    /// [`Banned::lifted`] and the caller unblocks it.
    pub fn ban(&mut self, peer: PeerId, now: Instant) -> Option<Banned> {
        if self.banned.contains_key(&peer) {
            return None;
        }
        let mut lifted = None;
        if self.banned.len() >= PEER_TABLE_MAX
            && let Some(first) = self.banned.iter().min_by_key(|(_, until)| **until)
        {
            let first = *first.0;
            self.banned.remove(&first);
            lifted = Some(first);
        }
        self.offenses.remove(&peer);
        self.banned.insert(peer, now + BAN_DURATION);
        Some(Banned { lifted })
    }

    /// Whether `peer` is banned at `now`.
    pub fn is_banned(&self, peer: &PeerId, now: Instant) -> bool {
        self.banned.get(peer).is_some_and(|until| *until > now)
    }

    /// Ends the bans that are over at `now` and forgets stale offenses; returns the peers
    /// whose ban ended (the caller unblocks them).
    pub fn lift_expired(&mut self, now: Instant) -> Vec<PeerId> {
        let over: Vec<PeerId> = self
            .banned
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in &over {
            self.banned.remove(p);
        }
        self.forget_stale(now);
        over
    }

    fn forget_stale(&mut self, now: Instant) {
        self.offenses
            .retain(|_, (start, _)| now.saturating_duration_since(*start) < OFFENSE_WINDOW);
    }

    /// Banned peers.
    pub fn banned(&self) -> impl Iterator<Item = &PeerId> {
        self.banned.keys()
    }

    /// Admits connection `conn` from `ip` (None: relayed or loopback, not counted); false
    /// when that address already has [`MAX_CONNECTIONS_PER_IP`] (the caller closes it).
    pub fn admit(&mut self, conn: ConnectionId, ip: Option<IpAddr>) -> bool {
        let Some(ip) = ip.filter(|ip| !ip.is_loopback()) else {
            return true;
        };
        let n = self.ip_conns.entry(ip).or_default();
        if *n >= MAX_CONNECTIONS_PER_IP {
            return false;
        }
        *n += 1;
        self.conn_ip.insert(conn, ip);
        true
    }

    /// Forgets a closed connection.
    pub fn release(&mut self, conn: ConnectionId) {
        if let Some(ip) = self.conn_ip.remove(&conn)
            && let Some(n) = self.ip_conns.get_mut(&ip)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.ip_conns.remove(&ip);
            }
        }
    }
}

/// The address a connection to `peer` is shown and counted under: where we dialed, or
/// where it came from. A circuit a peer opened to us through a relay comes from
/// `/p2p/<peer>` alone, so it is shown as the relay circuit it came through
/// (`<relay>/p2p-circuit/p2p/<peer>`), which says how the peer is reached and counts under
/// no address, as a circuit we dialed does.
pub fn connection_addr(endpoint: &ConnectedPoint, peer: PeerId) -> Multiaddr {
    match endpoint {
        ConnectedPoint::Listener { local_addr, .. } if endpoint.is_relayed() => {
            local_addr.clone().with(Protocol::P2p(peer))
        }
        _ => endpoint.get_remote_address().clone(),
    }
}

/// The address a connection is counted under: its IPv4 address, or the /64 of its IPv6
/// address (one /64 is one household, as one IPv4 address is). None for relayed
/// connections (the relay's address says nothing about the peer).
pub fn connection_ip(addr: &Multiaddr) -> Option<IpAddr> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) if ip.is_loopback() => Some(IpAddr::V6(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(Ipv6Addr::from(
            u128::from(ip) & !0xFFFF_FFFF_FFFF_FFFFu128,
        ))),
        _ => None,
    })
}

/// Penalty an address collects when a peer connected from it is banned (the cost of its
/// requests is multiplied by 1 + the penalty, rounded down; see [`Penalties`]).
pub const IP_PENALTY_PER_BAN: f64 = 1.0;
/// Penalty a subnet collects when a peer connected from it is banned: less than its
/// address, since a /24 or /48 holds many households.
pub const SUBNET_PENALTY_PER_BAN: f64 = 0.5;
/// Time in which a penalty halves.
pub const PENALTY_HALF_LIFE: Duration = Duration::from_secs(600);
/// The largest cost multiplier a penalty sets: it throttles an address or subnet to an
/// eighth of its budget, never to nothing (a NAT may hide honest users behind it).
pub const PENALTY_COST_MAX: u64 = 8;

/// A network a peer's address belongs to: an IPv4 /24 or an IPv6 /48. Many households
/// share one (a provider's block, a campus), so its limits are set well above one peer's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subnet {
    /// The first three bytes of an IPv4 address.
    V4([u8; 3]),
    /// The first six bytes of an IPv6 address.
    V6([u8; 6]),
}

impl Subnet {
    /// The subnet of `ip`.
    pub fn of(ip: IpAddr) -> Subnet {
        match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Subnet::V4([o[0], o[1], o[2]])
            }
            IpAddr::V6(v6) => {
                let o = v6.octets();
                Subnet::V6([o[0], o[1], o[2], o[3], o[4], o[5]])
            }
        }
    }

    /// A 32-byte name for it, for counters that are keyed by 32 bytes (mailbox shares).
    pub fn holder(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(b"jangteo/subnet/");
        match self {
            Subnet::V4(b) => h.update(&[4]).update(b),
            Subnet::V6(b) => h.update(&[6]).update(b),
        };
        *h.finalize().as_bytes()
    }
}

/// Where a peer connects from: its address (an IPv4 address or an IPv6 /64, as
/// [`connection_ip`] counts them) and that address's [`Subnet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The address.
    pub ip: IpAddr,
    /// Its subnet.
    pub subnet: Subnet,
}

/// The origin a connection's requests are counted under: None for relayed connections, and
/// for loopback unless `count_loopback` (tests and the testnet run every node on
/// 127.0.0.1, where one shared budget would throttle them all).
pub fn origin_of(addr: &Multiaddr, count_loopback: bool) -> Option<Origin> {
    let ip = connection_ip(addr)?;
    if ip.is_loopback() && !count_loopback {
        return None;
    }
    Some(Origin {
        ip,
        subnet: Subnet::of(ip),
    })
}

/// Decaying penalties of addresses and subnets whose peers were banned. A penalty never
/// bans: it multiplies what each request from there costs against the address's and
/// subnet's rate limits, so a key thrown away after its ban finds its network throttled,
/// while honest users behind the same NAT are still served, more slowly.
#[derive(Debug, Default)]
pub struct Penalties {
    ips: HashMap<IpAddr, (f64, Instant)>,
    subnets: HashMap<Subnet, (f64, Instant)>,
}

fn decayed((score, at): (f64, Instant), now: Instant) -> f64 {
    let halvings =
        now.saturating_duration_since(at).as_secs_f64() / PENALTY_HALF_LIFE.as_secs_f64();
    score * 0.5f64.powf(halvings)
}

fn add_penalty<K: Eq + std::hash::Hash + Copy>(
    table: &mut HashMap<K, (f64, Instant)>,
    key: K,
    amount: f64,
    now: Instant,
) {
    if !table.contains_key(&key) && table.len() >= PEER_TABLE_MAX {
        table.retain(|_, e| decayed(*e, now) >= 0.5);
        if table.len() >= PEER_TABLE_MAX
            && let Some(least) = table
                .iter()
                .min_by(|a, b| decayed(*a.1, now).total_cmp(&decayed(*b.1, now)))
                .map(|(k, _)| *k)
        {
            table.remove(&least);
        }
    }
    let score = table.get(&key).map_or(0.0, |e| decayed(*e, now));
    table.insert(key, (score + amount, now));
}

fn cost<K: Eq + std::hash::Hash>(table: &HashMap<K, (f64, Instant)>, key: &K, now: Instant) -> u64 {
    let score = table.get(key).map_or(0.0, |e| decayed(*e, now));
    (1 + score.max(0.0) as u64).min(PENALTY_COST_MAX)
}

impl Penalties {
    /// A peer from `origin` was banned at `now`.
    pub fn add(&mut self, origin: Origin, now: Instant) {
        add_penalty(&mut self.ips, origin.ip, IP_PENALTY_PER_BAN, now);
        add_penalty(
            &mut self.subnets,
            origin.subnet,
            SUBNET_PENALTY_PER_BAN,
            now,
        );
    }

    /// What one request from `ip` costs against the address's limits (1 without penalty,
    /// at most [`PENALTY_COST_MAX`]).
    pub fn ip_cost(&self, ip: &IpAddr, now: Instant) -> u64 {
        cost(&self.ips, ip, now)
    }

    /// What one request from `subnet` costs against the subnet's limits.
    pub fn subnet_cost(&self, subnet: &Subnet, now: Instant) -> u64 {
        cost(&self.subnets, subnet, now)
    }
}

/// Gossipsub score parameters and thresholds for `topics`: invalid objects are the only
/// thing that moves a score, whether or not the peer is in our mesh. Each invalid object counts squared, so one puts a peer at the
/// gossip threshold (no more gossip to or from it), two below publish (we stop publishing to
/// it), three into the graylist (everything it sends is dropped unread, and housekeeping
/// bans it). Bans ([`BAN_AFTER_INVALID`]) close the connection itself.
pub fn gossip_score(
    topics: &[IdentTopic],
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let mut params = gossipsub::PeerScoreParams {
        // Many honest nodes may share an address (one host, one NAT); do not punish that.
        ip_colocation_factor_weight: 0.0,
        // A peer on a slow link (a full send queue) is not at fault: no score for it.
        slow_peer_weight: 0.0,
        // The library counts misbehaviour from zero, so a few broken IWANT promises on a
        // lossy link would graylist an honest peer; allow a few (they decay quickly).
        behaviour_penalty_threshold: BEHAVIOUR_PENALTY_THRESHOLD,
        ..Default::default()
    };
    for topic in topics {
        let tp = gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            // No credit for time in the mesh or for first deliveries: with the library's
            // defaults (up to +3600 after an hour in the mesh) a subscribed peer needed ~20
            // invalid objects to reach the graylist, one never subscribed 3.
            time_in_mesh_weight: 0.0,
            first_message_deliveries_weight: 0.0,
            // A quiet market sends few messages: do not punish mesh peers for silence.
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
            invalid_message_deliveries_decay: 0.99,
            ..Default::default()
        };
        params.topics.insert(topic.hash(), tp);
    }
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -30.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        accept_px_threshold: 10.0,
        opportunistic_graft_threshold: 5.0,
    };
    (params, thresholds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        PeerId::random()
    }

    #[test]
    fn a_circuit_opened_to_us_is_shown_as_the_relay_it_came_through_and_counts_nowhere() {
        let (relay, them) = (peer(), peer());
        let circuit: Multiaddr = format!("/ip4/192.0.2.7/tcp/4001/p2p/{relay}/p2p-circuit")
            .parse()
            .expect("addr");
        let inbound = ConnectedPoint::Listener {
            local_addr: circuit.clone(),
            send_back_addr: Multiaddr::empty().with(Protocol::P2p(them)),
        };
        let shown = connection_addr(&inbound, them);
        assert_eq!(shown, circuit.with(Protocol::P2p(them)));
        assert_eq!(connection_ip(&shown), None);
        // A direct inbound connection keeps the address it came from.
        let direct: Multiaddr = "/ip4/198.51.100.3/tcp/5000".parse().expect("addr");
        let inbound = ConnectedPoint::Listener {
            local_addr: "/ip4/0.0.0.0/tcp/4001".parse().expect("addr"),
            send_back_addr: direct.clone(),
        };
        assert_eq!(connection_addr(&inbound, them), direct);
        assert_eq!(
            connection_ip(&direct),
            Some(IpAddr::V4([198, 51, 100, 3].into()))
        );
    }

    #[test]
    fn ten_offenses_within_the_window_ban_and_older_ones_do_not_count() {
        let mut p = Peers::default();
        let (a, t0) = (peer(), Instant::now());
        for _ in 0..BAN_AFTER_INVALID - 1 {
            assert!(!p.offense(a, t0));
        }
        // The window ends: counting starts again.
        let later = t0 + OFFENSE_WINDOW;
        for _ in 0..BAN_AFTER_INVALID - 1 {
            assert!(!p.offense(a, later));
        }
        assert!(p.offense(a, later + Duration::from_secs(1)));
    }

    #[test]
    fn a_ban_lasts_its_duration_then_lifts() {
        let mut p = Peers::default();
        let (a, t0) = (peer(), Instant::now());
        assert_eq!(p.ban(a, t0), Some(Banned { lifted: None }));
        assert_eq!(p.ban(a, t0), None, "banned once");
        assert!(p.is_banned(&a, t0 + BAN_DURATION - Duration::from_secs(1)));
        assert!(p.lift_expired(t0 + BAN_DURATION / 2).is_empty());
        assert_eq!(p.lift_expired(t0 + BAN_DURATION), vec![a]);
        assert!(!p.is_banned(&a, t0 + BAN_DURATION));
        assert_eq!(p.banned().count(), 0);
    }

    #[test]
    fn a_ban_clears_the_offense_count() {
        let mut p = Peers::default();
        let (a, t0) = (peer(), Instant::now());
        for _ in 0..BAN_AFTER_INVALID - 1 {
            p.offense(a, t0);
        }
        p.ban(a, t0);
        p.lift_expired(t0 + BAN_DURATION);
        assert!(
            !p.offense(a, t0 + BAN_DURATION),
            "starts from zero after the ban"
        );
    }

    #[test]
    fn per_ip_connections_are_capped_and_released() {
        let mut p = Peers::default();
        let ip: IpAddr = "203.0.113.7".parse().expect("ip");
        for i in 0..MAX_CONNECTIONS_PER_IP {
            assert!(p.admit(ConnectionId::new_unchecked(i), Some(ip)));
        }
        let extra = ConnectionId::new_unchecked(1000);
        assert!(!p.admit(extra, Some(ip)));
        p.release(ConnectionId::new_unchecked(0));
        assert!(p.admit(extra, Some(ip)));
        // Loopback and relayed connections are not counted.
        let lo: IpAddr = "127.0.0.1".parse().expect("ip");
        for i in 0..2 * MAX_CONNECTIONS_PER_IP {
            assert!(p.admit(ConnectionId::new_unchecked(2000 + i), Some(lo)));
            assert!(p.admit(ConnectionId::new_unchecked(9000 + i), None));
        }
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_relayed_ones_not_at_all() {
        let a: Multiaddr = "/ip6/2001:db8:1:2:aaaa::1/tcp/1".parse().expect("addr");
        let b: Multiaddr = "/ip6/2001:db8:1:2:bbbb::9/tcp/2".parse().expect("addr");
        assert_eq!(connection_ip(&a), connection_ip(&b));
        let v4: Multiaddr = "/ip4/198.51.100.1/tcp/1".parse().expect("addr");
        assert_eq!(
            connection_ip(&v4),
            Some("198.51.100.1".parse().expect("ip"))
        );
        let relayed: Multiaddr = format!("/ip4/198.51.100.1/tcp/1/p2p/{}/p2p-circuit", peer())
            .parse()
            .expect("addr");
        assert_eq!(connection_ip(&relayed), None);
    }

    /// A peer's score by the formula of gossipsub v1.1 (the terms `gossip_score` leaves on),
    /// for `invalid` invalid messages on one topic, `behaviour` behaviour penalties and
    /// `slow` slow-peer penalties.
    fn score(p: &gossipsub::PeerScoreParams, invalid: f64, behaviour: f64, slow: f64) -> f64 {
        let topic = p.topics.values().next().expect("a topic");
        let excess = |n: f64, threshold: f64| (n - threshold).max(0.0);
        p.topic_score_cap
            .min(topic.topic_weight * topic.invalid_message_deliveries_weight * invalid * invalid)
            + p.behaviour_penalty_weight * excess(behaviour, p.behaviour_penalty_threshold).powi(2)
            + p.slow_peer_weight * excess(slow, p.slow_peer_threshold).powi(2)
    }

    #[test]
    fn only_invalid_messages_graylist_a_peer() {
        let topics = [IdentTopic::new("jangteo/v1/profiles")];
        let (params, thresholds) = gossip_score(&topics);
        params.validate().expect("valid params");
        thresholds.validate().expect("valid thresholds");
        assert_eq!(params.slow_peer_weight, 0.0);
        // An honest peer on a poor link: a few broken promises, a full send queue, often.
        let honest = score(&params, 0.0, BEHAVIOUR_PENALTY_THRESHOLD, 1000.0);
        assert_eq!(honest, 0.0);
        assert!(honest > thresholds.gossip_threshold);
        // Two penalties beyond the allowance still do not graylist.
        assert!(
            score(&params, 0.0, BEHAVIOUR_PENALTY_THRESHOLD + 2.0, 1000.0)
                > thresholds.graylist_threshold
        );
        // Three invalid objects do, alone.
        assert!(score(&params, 3.0, 0.0, 0.0) < thresholds.graylist_threshold);
        assert!(score(&params, 2.0, 0.0, 0.0) > thresholds.graylist_threshold);
    }

    #[test]
    fn a_ban_evicted_from_a_full_table_is_returned_to_be_unblocked() {
        let mut p = Peers::default();
        let t0 = Instant::now();
        let first = peer();
        assert_eq!(p.ban(first, t0), Some(Banned { lifted: None }));
        for i in 1..PEER_TABLE_MAX {
            let at = t0 + Duration::from_millis(i as u64);
            assert_eq!(p.ban(peer(), at), Some(Banned { lifted: None }));
        }
        let later = t0 + Duration::from_secs(1);
        assert_eq!(
            p.ban(peer(), later),
            Some(Banned {
                lifted: Some(first)
            })
        );
        assert!(!p.is_banned(&first, later));
        assert_eq!(p.banned().count(), PEER_TABLE_MAX);
    }

    #[test]
    fn the_offense_table_is_bounded() {
        let mut p = Peers::default();
        let t0 = Instant::now();
        for _ in 0..PEER_TABLE_MAX + 10 {
            p.offense(peer(), t0);
        }
        assert!(p.offenses.len() <= PEER_TABLE_MAX);
    }

    #[test]
    fn subnets_are_a_24_or_a_48_and_loopback_counts_only_when_asked() {
        let a: Multiaddr = "/ip4/198.51.100.1/tcp/1".parse().expect("addr");
        let b: Multiaddr = "/ip4/198.51.100.200/tcp/1".parse().expect("addr");
        let c: Multiaddr = "/ip4/198.51.101.1/tcp/1".parse().expect("addr");
        let (oa, ob, oc) = (
            origin_of(&a, false).expect("a"),
            origin_of(&b, false).expect("b"),
            origin_of(&c, false).expect("c"),
        );
        assert_eq!(oa.subnet, ob.subnet);
        assert_ne!(oa.ip, ob.ip);
        assert_ne!(oa.subnet, oc.subnet);
        let x: Multiaddr = "/ip6/2001:db8:1:2::1/tcp/1".parse().expect("addr");
        let y: Multiaddr = "/ip6/2001:db8:1:ff::1/tcp/1".parse().expect("addr");
        let z: Multiaddr = "/ip6/2001:db8:2:2::1/tcp/1".parse().expect("addr");
        let (ox, oy, oz) = (
            origin_of(&x, false).expect("x"),
            origin_of(&y, false).expect("y"),
            origin_of(&z, false).expect("z"),
        );
        assert_eq!(ox.subnet, oy.subnet, "one /48");
        assert_ne!(ox.ip, oy.ip, "two /64s");
        assert_ne!(ox.subnet, oz.subnet);
        let lo: Multiaddr = "/ip4/127.0.0.1/tcp/1".parse().expect("addr");
        assert_eq!(origin_of(&lo, false), None);
        assert!(origin_of(&lo, true).is_some());
        assert_ne!(oa.subnet.holder(), oc.subnet.holder());
    }

    #[test]
    fn a_ban_throttles_its_address_and_subnet_and_the_penalty_decays() {
        let mut p = Penalties::default();
        let t0 = Instant::now();
        let o = origin_of(&"/ip4/203.0.113.9/tcp/1".parse().expect("addr"), false).expect("o");
        assert_eq!(p.ip_cost(&o.ip, t0), 1);
        for _ in 0..3 {
            p.add(o, t0);
        }
        assert_eq!(p.ip_cost(&o.ip, t0), 4);
        assert_eq!(p.subnet_cost(&o.subnet, t0), 2);
        for _ in 0..100 {
            p.add(o, t0);
        }
        assert_eq!(
            p.ip_cost(&o.ip, t0),
            PENALTY_COST_MAX,
            "throttled, never shut"
        );
        assert_eq!(p.ip_cost(&o.ip, t0 + PENALTY_HALF_LIFE * 12), 1, "forgiven");
        let other =
            origin_of(&"/ip4/203.0.114.9/tcp/1".parse().expect("addr"), false).expect("other");
        assert_eq!(p.subnet_cost(&other.subnet, t0), 1);
    }
}
