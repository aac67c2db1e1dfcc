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
//! With NAT ([`Netns::home`], `jangteo-testnet holepunch --nat`), a home node sits in its own
//! namespace on a private LAN (10.L.k.0/24, the node at .2) behind a router namespace: one leg
//! (`pub0`) on the bridge with a public-side address, one (`lan0`) on the LAN, forwarding,
//! and an nftables ruleset that masquerades what leaves by `pub0` and drops whatever comes in
//! unasked (no port forwarding, no answer to unsolicited packets, as home routers do). Linux
//! masquerade keeps a connection's source port when that port is free on the router, so a
//! node's outgoing connections from its listening port all map to the same public
//! address and port (endpoint-independent mapping in practice), and conntrack lets in only
//! packets from the exact address and port a connection went to (address- and
//! port-dependent filtering): the NAT kind hole punching can get through. Relays stay on
//! the bridge with public-side addresses. The testnet reaches a home node's API through a
//! route in the root namespace via its router, which lets in only the bridge's own address.
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
    run_with_input(prog, args, None)
}

/// Runs `prog` with `args` and `input` on its stdin; fails with its stderr.
fn run_with_input(prog: &str, args: &[&str], input: Option<&str>) -> Result<()> {
    use std::io::Write;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running `{prog}` (the --netns option needs iproute2)"))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .with_context(|| format!("writing to `{prog}`"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("waiting for `{prog}`"))?;
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
    /// Second octet of the home LANs' 10.L.0.0/16, once a home node exists.
    lan_net: Option<u8>,
    /// Router namespaces of the home nodes.
    routers: Vec<String>,
}

/// The nftables ruleset of a home router: masquerade out of `pub0`, nothing in unasked
/// except the testnet's own API requests from `controller` (the bridge's address).
fn router_rules(controller: Ipv4Addr) -> String {
    format!(
        "table ip jangteo_nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname \"pub0\" masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname \"lan0\" oifname \"pub0\" accept
        iifname \"pub0\" oifname \"lan0\" ip saddr {controller} accept
    }}
    chain input {{
        type filter hook input priority filter; policy drop;
        ct state established,related accept
        iifname {{ \"lo\", \"lan0\" }} accept
    }}
}}
"
    )
}

/// The first 10.X.0.0/16 (X from `from`) that no address or route of the root namespace
/// is in, other than `except`.
fn free_net(from: u8, except: u8) -> Option<u8> {
    (from..=254u8).find(|x| {
        let net = format!("10.{x}.0.0/16");
        *x != except
            && output("ip", &["-4", "-o", "addr", "show", "to", &net])
                .trim()
                .is_empty()
            && output("ip", &["-4", "route", "show", "root", &net])
                .trim()
                .is_empty()
    })
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
            lan_net: None,
            routers: Vec::new(),
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
        let ip = self.public_ip(i)?;
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
        self.apply_netem(&ns)?;
        Ok((ns, ip))
    }

    /// The address node `i` (or its router) takes on the bridge.
    fn public_ip(&self, i: usize) -> Result<Ipv4Addr> {
        let host = u16::try_from(i + 2)
            .ok()
            .filter(|h| *h < u16::MAX)
            .context("too many nodes for one /16")?;
        Ok(Ipv4Addr::new(
            10,
            self.net,
            (host >> 8) as u8,
            (host & 0xff) as u8,
        ))
    }

    /// Namespace name and (private) address of home node `i` behind its own NAT router,
    /// creating both namespaces on first use (see the module's doc). Needs nftables (`nft`).
    pub fn home(&mut self, i: usize) -> Result<(String, Ipv4Addr)> {
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, None);
        }
        if let Some(n) = &self.nodes[i] {
            return Ok(n.clone());
        }
        let lan_octet = u8::try_from(i + 1)
            .ok()
            .filter(|o| *o < 255)
            .context("at most 253 home nodes behind NAT")?;
        let lan_net = match self.lan_net {
            Some(l) => l,
            None => {
                let l = free_net(self.net.saturating_add(1), self.net)
                    .context("no free 10.L.0.0/16 for the home LANs")?;
                self.lan_net = Some(l);
                l
            }
        };
        let public = self.public_ip(i)?;
        let gateway = Ipv4Addr::new(10, lan_net, lan_octet, 1);
        let ip = Ipv4Addr::new(10, lan_net, lan_octet, 2);
        let router = format!("jt-{}-r{i}", self.tag);
        let ns = format!("jt-{}-{i}", self.tag);
        run("ip", &["netns", "add", &router])
            .context("--nat needs root and iproute2: `ip netns add` failed")?;
        self.routers.push(router.clone());
        run("ip", &["netns", "add", &ns])?;
        self.nodes[i] = Some((ns.clone(), ip));
        let veth = format!(
            "jv{}x{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let r = router.as_str();
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "pub0", "netns", r,
            ],
        )?;
        run("ip", &["link", "set", &veth, "master", &self.bridge, "up"])?;
        run(
            "ip",
            &[
                "-n",
                r,
                "addr",
                "add",
                &format!("{public}/16"),
                "dev",
                "pub0",
            ],
        )?;
        run("ip", &["-n", r, "link", "set", "pub0", "up"])?;
        run("ip", &["-n", r, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ],
        )?;
        run(
            "ip",
            &[
                "-n",
                r,
                "addr",
                "add",
                &format!("{gateway}/24"),
                "dev",
                "lan0",
            ],
        )?;
        run("ip", &["-n", r, "link", "set", "lan0", "up"])?;
        run(
            "ip",
            &["-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", "eth0"],
        )?;
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
        run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        run(
            "ip",
            &[
                "-n",
                &ns,
                "route",
                "add",
                "default",
                "via",
                &gateway.to_string(),
            ],
        )?;
        run(
            "ip",
            &["netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        )?;
        let controller = Ipv4Addr::new(10, self.net, 0, 1);
        run_with_input(
            "ip",
            &["netns", "exec", r, "nft", "-f", "-"],
            Some(&router_rules(controller)),
        )
        .context(
            "--nat needs nftables (`nft`, Debian package nftables) and a kernel with \
             nf_tables NAT: loading the router's ruleset failed",
        )?;
        // The testnet talks to the node's API through its router.
        run(
            "ip",
            &[
                "route",
                "add",
                &format!("10.{lan_net}.{lan_octet}.0/24"),
                "via",
                &public.to_string(),
            ],
        )?;
        self.apply_netem(&ns)?;
        Ok((ns, ip))
    }

    /// The router namespace of home node `i` when it is behind NAT.
    pub fn router_name(&self, i: usize) -> Option<String> {
        let name = format!("jt-{}-r{i}", self.tag);
        self.routers.contains(&name).then_some(name)
    }

    /// Delay and loss on the `eth0` of namespace `ns`, if configured.
    fn apply_netem(&self, ns: &str) -> Result<()> {
        if self.netem.active() {
            let delay = format!("{}ms", self.netem.delay_ms);
            let loss = format!("{}%", self.netem.loss_pct);
            run(
                "ip",
                &[
                    "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", "netem",
                    "delay", &delay, "loss", &loss,
                ],
            )
            .context(
                "tc netem failed: the kernel needs sch_netem (CONFIG_NET_SCH_NETEM); \
                 --delay-ms 0 --loss 0 runs the namespaces without it",
            )?;
        }
        Ok(())
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
        for r in &self.routers {
            let _ = run("ip", &["netns", "del", r]);
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

/// Whether this machine can run `--nat`: `ip netns add` works and a scratch namespace takes
/// the home router's nftables ruleset (`nft` installed, nf_tables NAT in the kernel); the
/// reason when not.
pub fn nat_available() -> std::result::Result<(), String> {
    available()?;
    let probe = format!(
        "jt-{}-probe{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    run("ip", &["netns", "add", &probe]).map_err(|e| format!("{e:#}"))?;
    let loaded = run_with_input(
        "ip",
        &["netns", "exec", &probe, "nft", "-f", "-"],
        Some(&router_rules(Ipv4Addr::new(10, 0, 0, 1))),
    );
    let _ = run("ip", &["netns", "del", &probe]);
    loaded.map_err(|e| {
        format!(
            "the home router's nftables ruleset does not load (install nftables, the Debian \
             package, and use a kernel with nf_tables NAT): {e:#}"
        )
    })
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
