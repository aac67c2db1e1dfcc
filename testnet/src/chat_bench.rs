//! `chat-bench`: the latency of direct messages between real `jangteo` processes, directly
//! and through a circuit relay, and what the first contact's stamp costs.
//!
//! Three processes on loopback: a relay, a seller and a buyer. The seller posts a listing;
//! the buyer asks about it (the first contact: its stamp is timed on its own), then sends
//! `messages` more, one a second. A message's latency is the time from the buyer's
//! `POST /v1/conversations/{thread}/messages` until its answer, which comes after the first
//! delivery attempt: for a `delivered` answer the seller's node verified the message,
//! stored it (synced to disk) and returned its signed receipt. In `relayed` mode the seller
//! listens on no address (`--no-listen`, as behind NAT) and is reached through the relay's
//! circuit. Every process runs from the same binary; this module only drives their APIs.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use jangteo_node::api::types::{MessageSent, MessageStatus, NewChatMessage, NewQuestion};
use serde::Serialize;

use crate::procs::ProcNet;
use crate::{percentile, wait_for};

/// Time between two timed messages.
pub const PACE: Duration = Duration::from_secs(1);

/// What one mode measured.
#[derive(Debug, Clone, Serialize)]
pub struct ModeReport {
    /// `direct` or `relayed`.
    pub mode: String,
    /// Messages timed.
    pub messages: usize,
    /// Of those, answered `delivered` at the first attempt.
    pub delivered: usize,
    /// Latency, ms: median.
    pub p50_ms: f64,
    /// Latency, ms: 99th percentile.
    pub p99_ms: f64,
    /// Latency, ms: the slowest.
    pub max_ms: f64,
    /// The first question's API call (the buyer's node solves the stamp, then makes the
    /// first attempt), ms.
    pub first_contact_ms: f64,
}

/// What one first-contact stamp costs on this machine (one core).
#[derive(Debug, Clone, Serialize)]
pub struct StampReport {
    /// The difficulty, bits.
    pub bits: u32,
    /// Stamps solved (each on its own random subject).
    pub stamps: usize,
    /// Mean time per stamp, ms.
    pub mean_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 90th percentile, ms.
    pub p90_ms: f64,
    /// Work hashes per second over the whole run.
    pub hashes_per_s: f64,
    /// 10,000 first contacts at the mean, hours of one core.
    pub ten_thousand_h: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One report per mode.
    pub modes: Vec<ModeReport>,
    /// The stamp's cost.
    pub stamp: StampReport,
}

/// Solves `stamps` first-contact stamps on random subjects, one core.
pub fn stamp_cost(stamps: usize) -> StampReport {
    use jangteo_protocol::message::FIRST_CONTACT_STAMP_BITS as BITS;
    use jangteo_protocol::stamp;
    let mut times = Vec::with_capacity(stamps);
    let mut hashes = 0u64;
    let all = Instant::now();
    for _ in 0..stamps {
        let mut subject = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut subject);
        let t0 = Instant::now();
        let nonce = stamp::solve(stamp::MESSAGE_CONTEXT, &subject, BITS);
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        hashes += nonce + 1;
    }
    let secs = all.elapsed().as_secs_f64();
    let mean_ms = times.iter().sum::<f64>() / times.len().max(1) as f64;
    times.sort_by(f64::total_cmp);
    StampReport {
        bits: BITS,
        stamps,
        mean_ms,
        p50_ms: percentile(&times, 0.5),
        p90_ms: percentile(&times, 0.9),
        hashes_per_s: hashes as f64 / secs,
        ten_thousand_h: mean_ms * 10_000.0 / 3_600_000.0,
    }
}

async fn run_mode(bin: std::path::PathBuf, relayed: bool, messages: usize) -> Result<ModeReport> {
    let mut net = ProcNet::new(bin)?;
    net.add_with(&[], &["--relay"]).await?;
    let relay = net.nodes[0].addr.clone();
    let extra: &[&str] = if relayed { &["--no-listen"] } else { &[] };
    let seller = net.add_with(std::slice::from_ref(&relay), extra).await?;
    let buyer = net.add(&[relay]).await?;
    let (s, b) = (
        net.nodes[seller].api()?.clone(),
        net.nodes[buyer].api()?.clone(),
    );
    if relayed {
        wait_for(
            Duration::from_secs(60),
            "the seller's relay reservation",
            || async { (!s.status().await.ok()?.relayed_addrs.is_empty()).then_some(()) },
        )
        .await?;
    }
    let listing = s.post_listing("chat-bench 자전거", 100_000, 1).await?;
    wait_for(
        Duration::from_secs(60),
        "the listing at the buyer",
        || async { b.has_listing(&listing).await.ok()?.then_some(()) },
    )
    .await?;

    let started = Instant::now();
    let first: MessageSent = b
        .post(
            "/v1/conversations",
            &NewQuestion {
                listing: listing.clone(),
                text: "아직 있나요?".into(),
                photos: vec![],
            },
        )
        .await?;
    let first_contact_ms = started.elapsed().as_secs_f64() * 1000.0;
    // The buyer's node may not know where the seller is yet: the first question can wait
    // in the relay's mailbox while it looks the seller up. Timing starts once it arrived.
    let thread = first.thread.clone();
    wait_for(
        Duration::from_secs(60),
        "the first question delivered",
        || async {
            let v: jangteo_node::api::types::ThreadView =
                b.get(&format!("/v1/conversations/{thread}")).await.ok()??;
            matches!(
                v.messages.first()?.status,
                MessageStatus::Delivered | MessageStatus::Read
            )
            .then_some(())
        },
    )
    .await?;
    // The seller answers once: someone who never got an answer may leave only 20 messages.
    let _: MessageSent = s
        .post(
            &format!("/v1/conversations/{thread}/messages"),
            &NewChatMessage {
                text: "네, 있어요".into(),
                photos: vec![],
            },
        )
        .await?;
    wait_for(
        Duration::from_secs(60),
        "the answer at the buyer",
        || async {
            let v: jangteo_node::api::types::ThreadView =
                b.get(&format!("/v1/conversations/{thread}")).await.ok()??;
            (v.messages.len() == 2).then_some(())
        },
    )
    .await?;
    let path = format!("/v1/conversations/{}/messages", first.thread);
    let mut samples = Vec::with_capacity(messages);
    let mut delivered = 0;
    // One message a second: a brisk conversation, within the recipient's per-sender limit
    // (60 a minute), so what is timed is delivery and not the limit.
    let mut pace = tokio::time::interval(PACE);
    for i in 0..messages {
        pace.tick().await;
        let t0 = Instant::now();
        let sent: MessageSent = b
            .post(
                &path,
                &NewChatMessage {
                    text: format!("메시지 {i}: 토요일 3시 망원역?"),
                    photos: vec![],
                },
            )
            .await
            .with_context(|| format!("message {i}"))?;
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        if sent.status == MessageStatus::Delivered {
            delivered += 1;
        }
    }
    // Every message is in the seller's conversation.
    let want = messages + 2;
    let arrived = wait_for(
        Duration::from_secs(60),
        "every message at the seller",
        || async {
            let v: jangteo_node::api::types::ThreadView =
                s.get(&format!("/v1/conversations/{thread}")).await.ok()??;
            (v.messages.len() == want).then_some(())
        },
    )
    .await;
    if let Err(e) = arrived {
        let at_seller: Option<jangteo_node::api::types::ThreadView> =
            s.get(&format!("/v1/conversations/{thread}")).await?;
        let at_buyer: Option<jangteo_node::api::types::ThreadView> =
            b.get(&format!("/v1/conversations/{thread}")).await?;
        let statuses: Vec<String> = at_buyer
            .map(|v| {
                v.messages
                    .iter()
                    .map(|m| {
                        format!(
                            "{}: {}",
                            m.status.as_str(),
                            m.reason.clone().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        anyhow::bail!(
            "{e}: the seller holds {} of {want}; at the buyer: {statuses:?}",
            at_seller.map_or(0, |v| v.messages.len())
        );
    }
    net.shutdown().await?;
    samples.sort_by(f64::total_cmp);
    Ok(ModeReport {
        mode: if relayed { "relayed" } else { "direct" }.into(),
        messages,
        delivered,
        p50_ms: percentile(&samples, 0.5),
        p99_ms: percentile(&samples, 0.99),
        max_ms: samples.last().copied().unwrap_or(f64::NAN),
        first_contact_ms,
    })
}

/// Runs both modes with `messages` timed messages each, then times `stamps` stamps.
pub async fn run(bin: std::path::PathBuf, messages: usize, stamps: usize) -> Result<Report> {
    let direct = run_mode(bin.clone(), false, messages).await?;
    let relayed = run_mode(bin, true, messages).await?;
    let stamp = tokio::task::spawn_blocking(move || stamp_cost(stamps)).await?;
    Ok(Report {
        modes: vec![direct, relayed],
        stamp,
    })
}

/// The report as lines for people.
pub fn human(r: &Report) -> String {
    let mut out = String::new();
    let st = &r.stamp;
    out.push_str(&format!(
        "stamp    {} bits, {} stamps: mean {:.0} ms, p50 {:.0} ms, p90 {:.0} ms; {:.1} M hashes/s; 10,000 first contacts = {:.2} h of one core\n",
        st.bits, st.stamps, st.mean_ms, st.p50_ms, st.p90_ms, st.hashes_per_s / 1e6, st.ten_thousand_h
    ));
    for m in &r.modes {
        out.push_str(&format!(
            "{:8} {} messages, {} delivered at once: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; first contact (stamp + delivery) {:.0} ms\n",
            m.mode, m.messages, m.delivered, m.p50_ms, m.p99_ms, m.max_ms, m.first_contact_ms
        ));
    }
    out
}
