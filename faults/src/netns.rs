//! One network namespace per node, joined by veth pairs to a bridge in the
//! root namespace, where the harness stays and reaches every node.
//!
//! Layout of run slot S (0..=249): bridge `rkf<S>br` at 10.77.S.1/24, node i
//! in namespace `rkf<S>n<i>` at 10.77.S.<10+i>, its veth `rkf<S>h<i>` on the
//! bridge side. A slot is claimed by creating its bridge (atomic: a second
//! `ip link add` fails), so parallel runs pick different slots and subnets.
//! The owner's pid is written to `/run/raftkv-faults/<S>.pid`; a later run
//! removes the namespaces and bridge of any slot whose owner is dead.
//!
//! Partitions are iptables DROP rules inside the node namespaces between
//! node addresses only, so the harness still reaches both sides (clients
//! attached to a minority keep talking to it, as they would in production).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

const STATE_DIR: &str = "/run/raftkv-faults";
const SLOTS: u8 = 250;
const FIRST_HOST: u8 = 10;

pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "raftkv-faults needs root: it creates network namespaces, veth pairs and \
             iptables rules (run it with sudo, or as root in a privileged container)"
        );
    }
    for tool in ["ip", "iptables"] {
        if Command::new(tool).arg("-V").output().is_err() {
            bail!("`{tool}` not found in PATH (install iproute2 and iptables)");
        }
    }
    Ok(())
}

fn run(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The network of one run.
pub struct Net {
    pub slot: u8,
    /// Namespaces created so far, by node index.
    nodes: Vec<usize>,
    torn_down: bool,
}

impl Net {
    /// Remove leftovers of crashed runs, then claim a free slot.
    pub fn create() -> anyhow::Result<Net> {
        std::fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        clean_stale();
        for slot in 0..SLOTS {
            let bridge = bridge_name(slot);
            if run(&["ip", "link", "add", &bridge, "type", "bridge"]).is_err() {
                continue;
            }
            std::fs::write(pid_file(slot), std::process::id().to_string())?;
            let net = Net {
                slot,
                nodes: Vec::new(),
                torn_down: false,
            };
            run(&[
                "ip",
                "addr",
                "add",
                &format!("10.77.{slot}.1/24"),
                "dev",
                &bridge,
            ])?;
            run(&["ip", "link", "set", &bridge, "up"])?;
            // Bridged frames traverse the root FORWARD chain when
            // br_netfilter is loaded; a DROP policy there (Docker sets one)
            // would cut the nodes off from each other.
            let _ = run(&[
                "iptables", "-I", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
            ]);
            return Ok(net);
        }
        bail!("no free network slot (10.77.0-249.0/24 all in use by live runs)")
    }

    pub fn ip(&self, node: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.slot, FIRST_HOST + node as u8)
    }

    pub fn namespace(&self, node: usize) -> String {
        format!("rkf{}n{node}", self.slot)
    }

    /// Create node `i`'s namespace (idempotent).
    pub fn add_node(&mut self, i: usize) -> anyhow::Result<()> {
        if self.nodes.contains(&i) {
            return Ok(());
        }
        if usize::from(FIRST_HOST) + i > 250 {
            bail!("too many nodes for one /24");
        }
        let ns = self.namespace(i);
        let host = format!("rkf{}h{i}", self.slot);
        let inside = format!("rkf{}p{i}", self.slot);
        run(&["ip", "netns", "add", &ns])?;
        self.nodes.push(i);
        run(&[
            "ip", "link", "add", &host, "type", "veth", "peer", "name", &inside,
        ])?;
        run(&["ip", "link", "set", &inside, "netns", &ns])?;
        run(&[
            "ip",
            "link",
            "set",
            &host,
            "master",
            &bridge_name(self.slot),
        ])?;
        run(&["ip", "link", "set", &host, "up"])?;
        let addr = format!("{}/24", self.ip(i));
        run(&["ip", "-n", &ns, "addr", "add", &addr, "dev", &inside])?;
        run(&["ip", "-n", &ns, "link", "set", &inside, "up"])?;
        run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The command prefix that runs a program inside node `i`'s namespace.
    /// `ip netns exec` execs the program, so the child's pid is the program's.
    pub fn exec_prefix(&self, i: usize) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.namespace(i),
        ]
    }

    /// Cut the given links (both directions), replacing any previous cut.
    pub fn cut(&self, links: &[(usize, usize)]) -> anyhow::Result<()> {
        self.heal()?;
        for &(a, b) in links {
            self.block(a, b)?;
        }
        Ok(())
    }

    /// Drop everything between `a` and `b`, in `a`'s namespace (both ways).
    pub fn block(&self, a: usize, b: usize) -> anyhow::Result<()> {
        let ns = self.namespace(a);
        let peer = self.ip(b).to_string();
        for (chain, dir) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
            run(&[
                "ip", "netns", "exec", &ns, "iptables", "-A", chain, dir, &peer, "-j", "DROP",
            ])?;
        }
        Ok(())
    }

    /// Remove every partition rule.
    pub fn heal(&self) -> anyhow::Result<()> {
        for &n in &self.nodes {
            let ns = self.namespace(n);
            for chain in ["INPUT", "OUTPUT"] {
                run(&["ip", "netns", "exec", &ns, "iptables", "-F", chain])?;
            }
        }
        Ok(())
    }

    pub fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        remove_slot(self.slot);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn bridge_name(slot: u8) -> String {
    format!("rkf{slot}br")
}

fn pid_file(slot: u8) -> PathBuf {
    PathBuf::from(STATE_DIR).join(format!("{slot}.pid"))
}

/// Delete everything of a slot: namespaces (their veth ends go with them),
/// the bridge, the FORWARD rule, the pid file. Best effort.
fn remove_slot(slot: u8) {
    // Delete the host ends of the veth pairs first: that removes both ends at
    // once, whereas a deleted namespace is destroyed asynchronously by the
    // kernel and its veth names could still be taken when the next run
    // creates them.
    let host = format!("rkf{slot}h");
    if let Ok(links) = run(&["ip", "-o", "link", "show"]) {
        for line in links.lines() {
            let Some(name) = line
                .split(':')
                .nth(1)
                .map(|n| n.trim().split('@').next().unwrap_or(""))
            else {
                continue;
            };
            if name.starts_with(&host) && slot_of_link(name) == Some(slot) {
                let _ = run(&["ip", "link", "del", name]);
            }
        }
    }
    let prefix = format!("rkf{slot}n");
    if let Ok(list) = run(&["ip", "netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name
                .strip_prefix(&prefix)
                .is_some_and(|rest| rest.chars().all(|c| c.is_ascii_digit()))
            {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
    let bridge = bridge_name(slot);
    let _ = run(&[
        "iptables", "-D", "FORWARD", "-i", &bridge, "-o", &bridge, "-j", "ACCEPT",
    ]);
    let _ = run(&["ip", "link", "del", &bridge]);
    let _ = std::fs::remove_file(pid_file(slot));
}

/// The slot a link of ours belongs to: `rkf<S>br` (bridge) or `rkf<S>h<i>`
/// (host end of a node's veth).
fn slot_of_link(name: &str) -> Option<u8> {
    let rest = name.strip_prefix("rkf")?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let tail = &rest[digits.len()..];
    let ours = tail == "br"
        || tail
            .strip_prefix('h')
            .is_some_and(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_digit()));
    if ours { digits.parse().ok() } else { None }
}

/// Remove the slots whose owning process is gone (a crashed or killed run).
fn clean_stale() {
    let Ok(links) = run(&["ip", "-o", "link", "show"]) else {
        return;
    };
    let mut slots: Vec<u8> = links
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .filter_map(|n| slot_of_link(n.trim().split('@').next().unwrap_or("")))
        .collect();
    slots.sort_unstable();
    slots.dedup();
    for slot in slots {
        let owner: Option<i32> = std::fs::read_to_string(pid_file(slot))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        // SAFETY: kill(pid, 0) only checks that the process exists.
        let alive = owner.is_some_and(|p| unsafe { libc::kill(p, 0) } == 0);
        if !alive {
            eprintln!("==> removing network slot {slot} left by a dead run (pid {owner:?})");
            remove_slot(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_links_belong_to_a_slot() {
        assert_eq!(slot_of_link("rkf0br"), Some(0));
        assert_eq!(slot_of_link("rkf12h3"), Some(12));
        assert_eq!(slot_of_link("rkf12p3"), None);
        assert_eq!(slot_of_link("rkf12h"), None);
        assert_eq!(slot_of_link("cni0"), None);
        assert_eq!(slot_of_link("rkfxbr"), None);
    }
}
