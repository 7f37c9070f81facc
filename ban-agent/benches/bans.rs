//! `cargo xtask bench bans` (root): how long installing 1k, 10k and 100k bans takes, and
//! restoring them at start.
//!
//! - ban-agent: the release daemon, following a log to which one line per address is
//!   appended at once (maxretry 1): the time until the last address is in the kernel map.
//!   Restore: `stop --detach` (the pins go, as after a reboot), then a start, until the
//!   last address is back in the map from the state file.
//! - fail2ban's default action (iptables-multiport: one `ip6tables -I` per address) and
//!   its nftables action (one `nft add element` per address into a set), each run as
//!   fail2ban runs an action: `sh -c COMMAND` per ban, in a network namespace made here.
//!   fail2ban restores at start by running the ban action again for every ban in its
//!   database, so restore is measured as that, after a flush.
//!
//! Addresses are IPv6 from 2001:db8::/32; no packet is sent. A peer that has not finished
//! within `CAP` is stopped and reported with how far it got, and not run at larger sizes. Writes
//! `docs/benchmarks/bans.csv` and a table.

use std::{
    fmt::Write as _,
    fs::OpenOptions,
    io::Write as _,
    net::{IpAddr, Ipv6Addr},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::bail;
use ipnet::IpNet;
// The privileged tests' helpers: the daemon as a process, a namespace and a pin directory
// of the benchmark's own.
#[path = "../tests/common/mod.rs"]
#[allow(dead_code, reason = "a benchmark uses a part of the tests' helpers")]
mod common;
mod shared;
use common::{
    Netns,
    agent::{self, OneJail},
};

const SIZES: [u32; 3] = [1_000, 10_000, 100_000];
const RUNS: usize = 3;
/// A measurement that takes longer is stopped: the figure is then a lower bound.
const CAP: Duration = Duration::from_secs(15);

fn address(i: u32) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0xba, 0, 0, 0, (i >> 16) as u16, i as u16)
}

/// One measurement: how many of the bans were in place, in how long.
#[derive(Clone, Copy)]
struct Timed {
    done: u32,
    seconds: f64,
}

fn main() -> anyhow::Result<()> {
    shared::require_root("bans", "writes BPF maps and firewall rules")?;
    // The firewall rules go into a namespace of the benchmark's, and so does everything
    // started from here.
    let netns = Netns::new("bench-bans");
    let rows = netns.run(measure_all)?;
    drop(netns);
    report(&rows)
}

type Row = (&'static str, &'static str, u32, usize, Timed);

fn measure_all() -> anyhow::Result<Vec<Row>> {
    let mut rows: Vec<Row> = Vec::new();
    for &size in &SIZES {
        for run in 1..=RUNS {
            eprintln!("bans: {size} bans, run {run}/{RUNS}");
            let (install, restore) = ban_agent(size)?;
            rows.push(("ban-agent", "install", size, run, install));
            rows.push(("ban-agent", "restore", size, run, restore));
            for peer in [Peer::Iptables, Peer::Nftables] {
                // A peer that hit the cap is not run again at that size or above.
                let capped = rows
                    .iter()
                    .any(|r| r.0 == peer.name() && r.2 <= size && r.4.done < r.2);
                if capped {
                    continue;
                }
                let (install, restore) = peer.measure(size)?;
                rows.push((peer.name(), "install", size, run, install));
                rows.push((peer.name(), "restore", size, run, restore));
            }
        }
    }
    Ok(rows)
}

/// Polls every 10 ms until `done` says how many are in place reaches `size`, or the cap.
fn time_until(
    size: u32,
    started: Instant,
    mut done: impl FnMut() -> anyhow::Result<u32>,
) -> anyhow::Result<Timed> {
    loop {
        let count = done()?;
        if count >= size || started.elapsed() > CAP {
            return Ok(Timed {
                done: count,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn ban_agent(size: u32) -> anyhow::Result<(Timed, Timed)> {
    let agent = OneJail::new("bench-bans", 1);
    let daemon = agent.start();
    let maps = ban_agent::datapath::Maps::open_pinned(&agent.pins.dir)?;
    let last = IpNet::from(IpAddr::V6(address(size - 1)));
    let count = |maps: &ban_agent::datapath::Maps| -> anyhow::Result<u32> {
        // Lines are read in order: the last address in place means all are; then count.
        Ok(match maps.expiry(0, last)? {
            Some(_) => maps.list()?.len() as u32,
            None => 0,
        })
    };

    let stamp = agent::now_stamp();
    let lines: String = (0..size)
        .map(|i| agent::login_line(&stamp, address(i), 401))
        .collect();
    let mut file = OpenOptions::new().append(true).open(&agent.log)?;
    let started = Instant::now();
    file.write_all(lines.as_bytes())?;
    let install = time_until(size, started, || count(&maps))?;
    drop(maps);

    // As after a reboot: the kernel holds nothing; the state file holds every ban.
    agent::cli(&agent.socket, &["stop", "--detach"]);
    daemon.wait();
    let started = Instant::now();
    let _daemon = agent.start();
    let maps = ban_agent::datapath::Maps::open_pinned(&agent.pins.dir)?;
    let restore = time_until(size, started, || count(&maps))?;
    Ok((install, restore))
}

#[derive(Clone, Copy)]
enum Peer {
    Iptables,
    Nftables,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Self::Iptables => "fail2ban iptables-multiport",
            Self::Nftables => "fail2ban nftables",
        }
    }

    /// The action's start, ban and flush commands, as fail2ban 1.0.2 renders
    /// action.d/iptables-multiport.conf and action.d/nftables-multiport.conf for an IPv6
    /// address, port 8000.
    fn commands(self) -> (&'static [&'static str], &'static str, &'static str) {
        match self {
            Self::Iptables => (
                &[
                    "ip6tables -w -N f2b-bench",
                    "ip6tables -w -A f2b-bench -j RETURN",
                    "ip6tables -w -I INPUT -p tcp -m multiport --dports 8000 -j f2b-bench",
                ],
                "ip6tables -w -I f2b-bench 1 -s {ip} -j REJECT --reject-with icmp6-port-unreachable",
                "ip6tables -w -F f2b-bench && ip6tables -w -A f2b-bench -j RETURN",
            ),
            Self::Nftables => (
                &[
                    "nft add table inet f2b-table",
                    "nft -- add chain inet f2b-table f2b-chain { type filter hook input priority -1 \\; }",
                    "nft add set inet f2b-table addr6-set-bench { type ipv6_addr \\; }",
                    "nft add rule inet f2b-table f2b-chain meta l4proto tcp tcp dport { 8000 } ip6 saddr @addr6-set-bench reject",
                ],
                "nft add element inet f2b-table addr6-set-bench { {ip} }",
                "nft flush set inet f2b-table addr6-set-bench",
            ),
        }
    }

    fn measure(self, size: u32) -> anyhow::Result<(Timed, Timed)> {
        let (start, ban, flush) = self.commands();
        // A clean firewall in the namespace.
        sh("ip6tables -w -F && ip6tables -w -X; nft flush ruleset")?;
        for command in start {
            sh(command)?;
        }
        let install = self.ban_all(ban, size)?;
        sh(flush)?;
        let restore = self.ban_all(ban, size)?;
        sh("ip6tables -w -F && ip6tables -w -X; nft flush ruleset")?;
        Ok((install, restore))
    }

    /// Runs the ban action once per address, as fail2ban does, until done or the cap.
    fn ban_all(self, ban: &str, size: u32) -> anyhow::Result<Timed> {
        let started = Instant::now();
        for i in 0..size {
            if started.elapsed() > CAP {
                return Ok(Timed {
                    done: i,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            sh(&ban.replace("{ip}", &address(i).to_string()))?;
        }
        Ok(Timed {
            done: size,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

fn sh(command: &str) -> anyhow::Result<()> {
    let out = Command::new("sh").arg("-c").arg(command).output()?;
    if !out.status.success() {
        bail!(
            "`{command}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn report(rows: &[(&str, &str, u32, usize, Timed)]) -> anyhow::Result<()> {
    let mut csv = String::from("tool,operation,bans,run,done,seconds\n");
    for (tool, operation, size, run, timed) in rows {
        let _ = writeln!(
            csv,
            "{tool},{operation},{size},{run},{},{:.4}",
            timed.done, timed.seconds
        );
    }
    let mut table = String::from(
        "| tool | operation | bans | seconds | bans/s | vs. ban-agent |\n|---|---|---:|---:|---:|---:|\n",
    );
    let median = |tool: &str, operation: &str, size: u32| -> Option<Timed> {
        let mut runs: Vec<Timed> = rows
            .iter()
            .filter(|r| r.0 == tool && r.1 == operation && r.2 == size)
            .map(|r| r.4)
            .collect();
        runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        runs.get(runs.len() / 2).copied()
    };
    for &size in &SIZES {
        for operation in ["install", "restore"] {
            let ours = median("ban-agent", operation, size);
            for tool in ["ban-agent", Peer::Iptables.name(), Peer::Nftables.name()] {
                let Some(timed) = median(tool, operation, size) else {
                    continue;
                };
                let rate = f64::from(timed.done) / timed.seconds;
                let (seconds, ratio) = if timed.done < size {
                    // Stopped at the cap: at its rate, the whole would have taken longer.
                    (
                        format!("> {:.0} ({} done)", timed.seconds, timed.done),
                        String::from("—"),
                    )
                } else {
                    let ratio = ours.map_or(f64::NAN, |ours| timed.seconds / ours.seconds);
                    (format!("{:.3}", timed.seconds), format!("{ratio:.1}"))
                };
                let _ = writeln!(
                    table,
                    "| {tool} | {operation} | {size} | {seconds} | {rate:.0} | {ratio} |"
                );
            }
        }
    }
    shared::publish("bans", &csv, &table)
}
