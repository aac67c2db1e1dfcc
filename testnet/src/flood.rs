//! A hostile peer for the `flood` scenario: a bare libp2p swarm (TCP, noise, yamux,
//! gossipsub configured like a node's) that dials nodes, joins the listings topic and
//! publishes objects that must be refused: random bytes and well-formed signed listings
//! whose body was altered after signing (each costs the receiver a signature check).
//! It never runs inside a node and takes no part in the network otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use jangteo_protocol::{Kind, SignedObject};
use libp2p::gossipsub::{self, IdentTopic, MessageAuthenticity, ValidationMode};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, noise, tcp, yamux};
use rand::{Rng, RngCore, SeedableRng};
use tokio::sync::oneshot;

use crate::search_bench;

/// What the flooder did.
#[derive(Debug, Clone, Copy, Default)]
pub struct FloodStats {
    /// Messages handed to gossipsub.
    pub sent: usize,
    /// Publishes gossipsub refused locally (no peer left, queue full).
    pub refused_locally: usize,
    /// Peers connected when it stopped.
    pub connected_at_end: usize,
}

/// The invalid objects to send, each distinct (gossip drops repeats by content id).
pub fn invalid_objects(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let keys = search_bench::sellers(16);
    let now = jangteo_node::ingest::now_ms();
    (0..count)
        .map(|i| {
            if i % 2 == 0 {
                let mut b = vec![0u8; rng.gen_range(16..512)];
                rng.fill_bytes(&mut b);
                b
            } else {
                let l = search_bench::generate(&mut rng, 1_000_000 + i, now);
                let mut bytes =
                    SignedObject::sign(Kind::Listing, l.encode(), &keys[i % keys.len()])
                        .bytes()
                        .to_vec();
                // Alter one byte of the signed title: decodes fine, the signature fails.
                let at = l.title.as_bytes().first().and_then(|first| {
                    bytes
                        .windows(l.title.len())
                        .position(|w| w == l.title.as_bytes())
                        .map(|p| (p, *first))
                });
                if let Some((p, first)) = at {
                    bytes[p] = first ^ 0x01;
                }
                bytes
            }
        })
        .collect()
}

/// A running flooder; [`Flooder::stop`] ends it and returns its counts.
#[derive(Debug)]
pub struct Flooder {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<FloodStats>,
    sent: Arc<AtomicUsize>,
    total: usize,
    /// Its peer id.
    pub peer_id: String,
}

impl Flooder {
    /// Dials `targets`, waits until one of them listens on the listings topic, then sends
    /// `objects` at `per_s` messages a second until they run out or it is stopped.
    pub async fn start(targets: &[String], objects: Vec<Vec<u8>>, per_s: u32) -> Result<Self> {
        let config = gossipsub::ConfigBuilder::default()
            .validation_mode(ValidationMode::Anonymous)
            .max_transmit_size(jangteo_protocol::MAX_OBJECT_BYTES + 1024)
            .heartbeat_interval(Duration::from_millis(700))
            .message_id_fn(|m| gossipsub::MessageId::new(&blake3::hash(&m.data).as_bytes()[..20]))
            .build()
            .map_err(|e| anyhow::anyhow!("gossipsub config: {e}"))?;
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )?
            .with_behaviour(|_| {
                gossipsub::Behaviour::<
                    gossipsub::IdentityTransform,
                    gossipsub::AllowAllSubscriptionFilter,
                >::new(MessageAuthenticity::Anonymous, config)
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })
            })?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
            .build();
        let topic = IdentTopic::new(jangteo_node::ingest::topic_for(Kind::Listing));
        swarm
            .behaviour_mut()
            .subscribe(&topic)
            .map_err(|e| anyhow::anyhow!("subscribe: {e}"))?;
        for t in targets {
            let addr: Multiaddr = t.parse().with_context(|| format!("address {t}"))?;
            swarm.dial(addr)?;
        }
        let peer_id = swarm.local_peer_id().to_string();
        // Wait until a node listens on the topic.
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if let Some(SwarmEvent::Behaviour(gossipsub::Event::Subscribed { .. })) =
                    swarm.next().await
                {
                    return;
                }
            }
        })
        .await
        .context("the flooder found no node on the listings topic")?;
        let (stop, mut stopped) = oneshot::channel();
        let total = objects.len();
        let sent = Arc::new(AtomicUsize::new(0));
        let progress = sent.clone();
        let task = tokio::spawn(async move {
            let mut stats = FloodStats::default();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let per_tick = (per_s / 100).max(1) as usize;
            let mut next = objects.into_iter();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = swarm.next() => {}
                    _ = tick.tick() => {
                        for _ in 0..per_tick {
                            let Some(obj) = next.next() else { break };
                            match swarm.behaviour_mut().publish(topic.clone(), obj) {
                                Ok(_) => stats.sent += 1,
                                Err(_) => stats.refused_locally += 1,
                            }
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            stats.connected_at_end = swarm.connected_peers().count();
            stats
        });
        Ok(Self {
            stop: Some(stop),
            task,
            sent,
            total,
            peer_id,
        })
    }

    /// Whether every object has been handed to gossipsub.
    pub fn finished(&self) -> bool {
        self.sent.load(Ordering::Relaxed) >= self.total
    }

    /// Stops the flooder.
    pub async fn stop(mut self) -> Result<FloodStats> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        Ok((&mut self.task).await?)
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
