//! Node processes in Linux network namespaces (issue 7): one bridge in the root namespace,
//! one namespace per node joined to it by a veth pair, and optionally `tc netem` delay and
//! loss on each node's `eth0` (its egress: between two nodes the one-way delay is the
//! configured one). Needs root and iproute2 (`ip`, `tc`); netem also needs a kernel with
//! `sch_netem`.
//!
//! The API of a node listens on its namespace address, reachable from the root namespace
//! through the bridge. Its replies leave through the node's `eth0` too, so with netem every
//! API answer is also delayed by the configured delay.
//!
//! [`Netns`] deletes every namespace and the bridge when dropped (after [`crate::procs::ProcNet`]
//! killed the nodes); a run killed by a signal leaves them behind, and the next run removes
//! those of testnet processes that no longer exist.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// Delay and loss applied to every packet a node sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Netem {
    /// One-way delay in milliseconds (0: none).
    pub delay_ms: u32,
    /// Loss in percent (0: none).
    pub loss_pct: f64,
}

impl Netem {
    fn active(&self) -> bool {
        self.delay_ms > 0 || self.loss_pct > 0.0
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Runs `ip`/`tc` with `args`; fails with its stderr.
fn run(prog: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{prog}` (the --netns option needs iproute2)"))?;
    if !out.status.success() {
        bail!(
            "`{prog} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn output(prog: &str, args: &[&str]) -> String {
    Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Deletes namespaces and bridges left by testnet processes that no longer run.
fn remove_stale() {
    for line in output("ip", &["netns", "list"]).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if let Some(pid) = name
            .strip_prefix("jt-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = run("ip", &["netns", "del", name]);
        }
    }
    for line in output("ip", &["-o", "link", "show", "type", "bridge"]).lines() {
        let name = line.split(':').nth(1).unwrap_or_default().trim();
        if let Some(pid) = name
            .strip_prefix("jtb")
            .and_then(|r| r.split('x').next())
            .and_then(|p| p.parse::<u32>().ok())
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = run("ip", &["link", "del", name]);
        }
    }
}

/// A bridge and the namespaces of one network.
#[derive(Debug)]
pub struct Netns {
    netem: Netem,
    tag: String,
    bridge: String,
    /// Second octet of the network's 10.X.0.0/16.
    net: u8,
    /// Namespace name and address of node i, once created.
    nodes: Vec<Option<(String, Ipv4Addr)>>,
}

impl Netns {
    /// Creates the bridge, on the first 10.X.0.0/16 (X from 77) no address of this machine
    /// is in; the bridge holds 10.X.0.1.
    pub fn new(netem: Netem) -> Result<Self> {
        remove_stale();
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{pid}-{seq}");
        let bridge = format!("jtb{pid}x{seq}");
        run("ip", &["link", "add", &bridge, "type", "bridge"])
            .context("--netns needs root and iproute2 (`ip`, `tc`): creating the bridge failed")?;
        let mut me = Self {
            netem,
            tag,
            bridge,
            net: 0,
            nodes: Vec::new(),
        };
        let net = (77..=254u8)
            .find(|x| {
                output(
                    "ip",
                    &["-4", "-o", "addr", "show", "to", &format!("10.{x}.0.0/16")],
                )
                .trim()
                .is_empty()
            })
            .context("no free 10.X.0.0/16 for the testnet bridge")?;
        me.net = net;
        let br = me.bridge.clone();
        run(
            "ip",
            &["addr", "add", &format!("10.{net}.0.1/16"), "dev", &br],
        )?;
        run("ip", &["link", "set", &br, "up"])?;
        Ok(me)
    }

    /// The netem settings.
    pub fn netem(&self) -> Netem {
        self.netem
    }

    /// Namespace name and address of node `i`, creating the namespace on first use.
    pub fn node(&mut self, i: usize) -> Result<(String, Ipv4Addr)> {
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, None);
        }
        if let Some(n) = &self.nodes[i] {
            return Ok(n.clone());
        }
        let host = u16::try_from(i + 2)
            .ok()
            .filter(|h| *h < u16::MAX)
            .context("too many nodes for one /16")?;
        let ip = Ipv4Addr::new(10, self.net, (host >> 8) as u8, (host & 0xff) as u8);
        let ns = format!("jt-{}-{i}", self.tag);
        run("ip", &["netns", "add", &ns])
            .context("--netns needs root and iproute2: `ip netns add` failed")?;
        // Recorded at once so that Drop deletes it whatever fails next.
        self.nodes[i] = Some((ns.clone(), ip));
        // At most 15 bytes: "jv" + pid (up to 7 digits) + "x" + a counter.
        let veth = format!(
            "jv{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        run("ip", &["link", "set", &veth, "master", &self.bridge, "up"])?;
        run(
            "ip",
            &["-n", &ns, "addr", "add", &format!("{ip}/16"), "dev", "eth0"],
        )?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        if self.netem.active() {
            let delay = format!("{}ms", self.netem.delay_ms);
            let loss = format!("{}%", self.netem.loss_pct);
            run(
                "ip",
                &[
                    "netns", "exec", &ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                    "delay", &delay, "loss", &loss,
                ],
            )
            .context(
                "tc netem failed: the kernel needs sch_netem (CONFIG_NET_SCH_NETEM); \
                 --delay-ms 0 --loss 0 runs the namespaces without it",
            )?;
        }
        Ok((ns, ip))
    }

    /// The namespace of node `i`, if created.
    pub fn name(&self, i: usize) -> Option<&str> {
        self.nodes.get(i)?.as_ref().map(|(n, _)| n.as_str())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for (ns, _) in self.nodes.iter().flatten() {
            // Deleting the namespace destroys its veth pair.
            let _ = run("ip", &["netns", "del", ns]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

/// Whether this machine can run `--netns` (root and `ip netns add` works); the reason when
/// not.
pub fn available() -> std::result::Result<(), String> {
    let probe = format!(
        "jt-{}-probe{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    match run("ip", &["netns", "add", &probe]) {
        Ok(()) => {
            let _ = run("ip", &["netns", "del", &probe]);
            Ok(())
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

/// Whether the kernel has `tc netem` (probed on a dummy veth in a scratch namespace).
pub fn netem_available() -> bool {
    let probe = format!(
        "jt-{}-probe{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    if run("ip", &["netns", "add", &probe]).is_err() {
        return false;
    }
    let ok = run(
        "ip",
        &[
            "netns", "exec", &probe, "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay",
            "1ms",
        ],
    )
    .is_ok();
    let _ = run("ip", &["netns", "del", &probe]);
    ok
}
