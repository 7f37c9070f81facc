//! `cargo xtask bench fleet` (root): the fleet on one `redis-server` (Debian's, started by
//! the benchmark on a unix socket with a password), with 3 and 10 release agents, each
//! with its own pins, state and log, sharing failures and signed bans.
//!
//! - **Propagation**: for each attacker, maxretry − 1 failures are spread over two agents;
//!   then the clock starts at the write of the maxretry-th failure into a third agent's
//!   log and stops, for every other agent, when the address is in that agent's kernel ban
//!   map (looked up every 50 µs). Its p50, p99 and max over every (attacker, agent), and
//!   the p99 of the time until the last agent has it.
//! - **Flood**: every agent's log gets 10,000 lines a second, each a failure of an address
//!   (an IPv6 /64) seen once, for a few seconds: the engine's commands, round trips and
//!   bytes per second per agent, from its `INFO` before and after.
//! - **Catch-up**: one agent of three stops; 10,000 bans are published by another host
//!   while it is away (30 s); the time from its restart to the 10,000th ban in its kernel
//!   map, beside the time it takes to answer at all.
//!
//! CrowdSec's bouncers poll its API every 10 s by default: a ban reaches a bouncer after
//! 0 to 10 s, uniformly, which the table shows as the anchor (stated, not measured).
//! Writes `docs/benchmarks/fleet.csv` and the table `fleet.md`.

use std::{
    fmt::Write as _,
    io::Write as _,
    net::{IpAddr, Ipv6Addr},
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ban_agent::{
    datapath::Maps,
    fleet::{Engine, EngineAccess, Outgoing, Signer},
};
use ipnet::IpNet;

#[path = "../tests/common/mod.rs"]
#[allow(dead_code, reason = "a benchmark uses a part of the tests' helpers")]
mod common;
mod shared;
use common::{
    agent::{Daemon, OneJail, login_line, now_stamp},
    redis::{PASSWORD, Server},
};

const RUNS: usize = 3;
const ATTACKERS: usize = 100;
const MAXRETRY: u32 = 5;
const KEY: &[u8] = b"the benchmark fleet's shared key";
/// Failure lines per second written to each agent's log during the flood.
const FLOOD_RATE: u64 = 10_000;
const FLOOD_SECONDS: u64 = 3;
const CATCH_UP_BANS: usize = 10_000;
const OUTAGE: Duration = Duration::from_secs(30);

struct Fleet {
    agents: Vec<OneJail>,
    daemons: Vec<Option<Daemon>>,
    maps: Vec<Maps>,
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn start(server: &Server, count: usize, prefix: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let password = dir.path().join("redis.password");
        std::fs::write(&password, PASSWORD)?;
        let key = dir.path().join("fleet.key");
        std::fs::write(&key, KEY)?;
        let mut agents = Vec::new();
        for i in 0..count {
            let extra = format!(
                "[fleet]\nurl = \"{}\"\npassword_file = \"{}\"\nname = \"bench{i}\"\n\
                 prefix = \"{prefix}\"\nkey_file = \"{}\"\n",
                server.bare_url(),
                password.display(),
                key.display()
            );
            agents.push(OneJail::with(&format!("bench-fleet{i}"), MAXRETRY, &extra));
        }
        let daemons: Vec<Option<Daemon>> = agents.iter().map(|a| Some(a.start())).collect();
        let maps = agents
            .iter()
            .map(|a| Maps::open_pinned(&a.pins.dir))
            .collect::<Result<Vec<_>, _>>()?;
        let fleet = Self {
            agents,
            daemons,
            maps,
            _dir: dir,
        };
        fleet.wait_connected()?;
        Ok(fleet)
    }

    fn wait_connected(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for agent in &self.agents {
            loop {
                if fleet_status(agent)?.is_some_and(|f| f.connected) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("an agent did not connect to the engine");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }
}

fn fleet_status(
    agent: &OneJail,
) -> anyhow::Result<Option<ban_agent::control::protocol::FleetStatus>> {
    use ban_agent::control::{
        client,
        protocol::{Reply, Request},
    };
    match client::call(&agent.socket, &Request::Status { jail: None })? {
        Reply::Overview { fleet, .. } => Ok(fleet),
        other => bail!("status: {other:?}"),
    }
}

fn append(log: &Path, lines: &str) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new().append(true).open(log)?;
    file.write_all(lines.as_bytes())?;
    Ok(())
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Per (attacker, other agent) delays in ms, and per attacker the delay to the last one.
fn propagation(fleet: &Fleet, run: usize) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let n = fleet.agents.len();
    let mut each = Vec::new();
    let mut last = Vec::new();
    for a in 0..ATTACKERS {
        // A distinct address per (run, agents, attacker) in 2001:db8::/32.
        let ip = format!("2001:db8:{:x}:{:x}::1", 0x100 + run * 0x100 + n, a);
        let target = IpNet::from(ip.parse::<IpAddr>()?);
        let (first, second, last_agent) = (a % n, (a + 1) % n, (a + 2) % n);
        let line = login_line(&now_stamp(), &ip, 401);
        append(&fleet.agents[first].log, &line.repeat(2))?;
        append(
            &fleet.agents[second].log,
            &line.repeat(MAXRETRY as usize - 3),
        )?;
        // Let the first four reach the engine.
        std::thread::sleep(Duration::from_millis(30));
        let mut pending: Vec<usize> = (0..n).filter(|&i| i != last_agent).collect();
        let started = Instant::now();
        append(&fleet.agents[last_agent].log, &line)?;
        let mut slowest: f64 = 0.0;
        while !pending.is_empty() {
            if started.elapsed() > Duration::from_secs(5) {
                let logs: Vec<String> = [first, second, last_agent]
                    .iter()
                    .map(|&i| {
                        let log = std::fs::read_to_string(fleet.agents[i].dir().join("agent.log"))
                            .unwrap_or_default();
                        let status = fleet_status(&fleet.agents[i])
                            .map(|s| format!("{s:?}"))
                            .unwrap_or_default();
                        let jail = fleet.agents[i].failures_counted();
                        format!("agent {i}: failures counted {jail}; {status}\n{log}")
                    })
                    .collect();
                bail!(
                    "{ip}: not banned on {} agents after 5 s\n{}",
                    pending.len(),
                    logs.join("\n")
                );
            }
            let mut still = Vec::with_capacity(pending.len());
            for i in pending {
                if fleet.maps[i].expiry(0, target)?.is_some() {
                    let ms = started.elapsed().as_secs_f64() * 1e3;
                    each.push(ms);
                    slowest = slowest.max(ms);
                } else {
                    still.push(i);
                }
            }
            pending = still;
            // Leave the CPU to the agents (two cores here): a look every 50 µs.
            std::thread::sleep(Duration::from_micros(50));
        }
        last.push(slowest);
    }
    Ok((each, last))
}

/// The engine's counters.
fn engine_info(server: &Server) -> anyhow::Result<[f64; 4]> {
    let stats = server.cli(&["INFO", "stats"]);
    let commands = server.cli(&["INFO", "commandstats"]);
    let field = |text: &str, name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let evalsha = commands
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Ok([
        field(&stats, "total_commands_processed:"),
        evalsha,
        field(&stats, "total_net_input_bytes:"),
        field(&stats, "total_net_output_bytes:"),
    ])
}

/// Commands, EVALSHA calls and bytes (in + out) per second per agent under the flood.
fn flood(fleet: &Fleet, server: &Server, run: usize) -> anyhow::Result<[f64; 3]> {
    let n = fleet.agents.len();
    let mut files = fleet
        .agents
        .iter()
        .map(|a| std::fs::OpenOptions::new().append(true).open(&a.log))
        .collect::<Result<Vec<_>, _>>()?;
    let before = engine_info(server)?;
    let started = Instant::now();
    // Every 10 ms, 100 lines into each log.
    let step = Duration::from_millis(10);
    let per_step = FLOOD_RATE / 100;
    let steps = FLOOD_SECONDS * 100;
    let stamp = now_stamp();
    for s in 0..steps {
        for (i, file) in files.iter_mut().enumerate() {
            let mut chunk = String::new();
            for k in 0..per_step {
                let id = s * per_step + k;
                let ip = Ipv6Addr::new(
                    0x2001,
                    0x0db8,
                    0xf000 | u16::try_from(run * 16 + i).unwrap_or(0),
                    u16::try_from(id >> 16).unwrap_or(0),
                    u16::try_from(id & 0xffff).unwrap_or(0),
                    0,
                    0,
                    1,
                );
                chunk.push_str(&login_line(&stamp, ip, 401));
            }
            file.write_all(chunk.as_bytes())?;
        }
        let next = step * u32::try_from(s + 1).unwrap_or(u32::MAX);
        std::thread::sleep(next.saturating_sub(started.elapsed()));
    }
    // Until every agent has sent its outbox.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut waiting = 0;
        for agent in &fleet.agents {
            waiting += fleet_status(agent)?.map_or(0, |f| f.outbox);
        }
        if waiting == 0 {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("fleet: flood: {waiting} items still in the outboxes after 30 s");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = engine_info(server)?;
    let per = |i: usize| (after[i] - before[i]) / seconds / n as f64;
    Ok([per(0), per(1), per(2) + per(3)])
}

/// Publishes bans of `targets` as another host does, 1000 per round trip.
fn publish(server: &Server, run: usize, targets: &[IpNet]) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let access = EngineAccess::url(&server.url(), &format!("catchup{run}"), "bench-peer");
        let mut engine = Engine::connect(&access, Duration::ZERO).await?;
        let signer = Signer::with_key(KEY);
        let at = (now_s() * 1e3) as i64;
        for chunk in targets.chunks(1000) {
            let batch: Vec<Outgoing> = chunk
                .iter()
                .map(|target| Outgoing::Ban {
                    jail: "fastapi-auth".to_owned(),
                    target: *target,
                    expires: Some(at + 3_600_000),
                    failures: MAXRETRY,
                    at,
                    force: false,
                })
                .collect();
            let signed: Vec<String> = batch
                .iter()
                .map(|item| signer.sign(&item.entry("bench-peer")))
                .collect();
            engine.send(&batch, &signed).await?;
        }
        anyhow::Ok(())
    })
}

/// Seconds from the restart of an agent that missed 10k bans to the first answer and to
/// the last ban in its kernel map.
fn catch_up(server: &Server, run: usize) -> anyhow::Result<(f64, f64)> {
    let mut fleet = Fleet::start(server, 3, &format!("catchup{run}"))?;
    // A first ban, applied by every agent, gives the third its place in the stream: at
    // its restart it reads on from there (not from the ban keys).
    let first = IpNet::from(IpAddr::V6(Ipv6Addr::new(
        0x2001,
        0x0db8,
        0xe100,
        0,
        0,
        0,
        0,
        u16::try_from(run).unwrap_or(0),
    )));
    publish(server, run, &[first])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while fleet.maps[2].expiry(0, first)?.is_none() {
        if Instant::now() > deadline {
            bail!("the first ban did not reach the third agent");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let away = fleet.daemons[2].take().context("the third agent")?;
    away.signal("-TERM");
    let log = away.wait();
    let stopped = Instant::now();
    let targets: Vec<IpNet> = (0..CATCH_UP_BANS)
        .map(|i| {
            let ip = Ipv6Addr::new(
                0x2001,
                0x0db8,
                0xe000 | u16::try_from(run).unwrap_or(0),
                0,
                0,
                0,
                0,
                u16::try_from(i).unwrap_or(0),
            );
            // Addresses (/128): one hash lookup each when the benchmark checks the map.
            IpNet::from(IpAddr::V6(ip))
        })
        .collect();
    publish(server, run, &targets)?;
    std::thread::sleep(OUTAGE.saturating_sub(stopped.elapsed()));
    drop(log);
    let restarted = Instant::now();
    fleet.daemons[2] = Some(fleet.agents[2].start());
    let answered = restarted.elapsed().as_secs_f64();
    let maps = Maps::open_pinned(&fleet.agents[2].pins.dir)?;
    let mut missing = targets;
    while !missing.is_empty() {
        if restarted.elapsed() > Duration::from_secs(60) {
            let log = std::fs::read_to_string(fleet.agents[2].dir().join("agent.log"))
                .unwrap_or_default();
            let status = fleet_status(&fleet.agents[2])?;
            bail!(
                "{} bans still missing 60 s after the restart: {status:?}\n{log}",
                missing.len()
            );
        }
        let mut still = Vec::new();
        for target in missing {
            if maps.expiry(0, target)?.is_none() {
                still.push(target);
            }
        }
        missing = still;
    }
    Ok((answered, restarted.elapsed().as_secs_f64()))
}

/// The table of medians: propagation and flood rows per fleet size, then the catch-up.
fn table(rows: &[(usize, [f64; 7])], catch: &[(f64, f64)]) -> String {
    let mut table = String::from(
        "| agents | propagation p50 ms | p99 ms | max ms | p99 to every agent ms | engine commands/s per agent | EVALSHA/s per agent | engine bytes/s per agent |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for n in [3, 10] {
        let col = |i: usize| {
            shared::median(
                rows.iter()
                    .filter(|(agents, _)| *agents == n)
                    .map(|(_, r)| r[i])
                    .collect(),
            )
        };
        let _ = writeln!(
            table,
            "| {n} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |",
            col(0),
            col(1),
            col(2),
            col(3),
            col(4),
            col(5),
            col(6)
        );
    }
    let _ = writeln!(
        table,
        "| CrowdSec bouncer, default 10 s poll (anchor, not measured) | 5000 | 9900 | 10000 | 9900 | | | |"
    );
    let answered = shared::median(catch.iter().map(|c| c.0).collect());
    let done = shared::median(catch.iter().map(|c| c.1).collect());
    let _ = writeln!(
        table,
        "\nCatch-up of {CATCH_UP_BANS} bans after a {} s absence (3 agents): the agent answers {answered:.2} s after its restart and has every ban in its kernel map {done:.2} s after it, so {:.2} s of catching up.",
        OUTAGE.as_secs(),
        done - answered
    );
    let _ = writeln!(
        table,
        "\nMedian of {RUNS} runs; propagation over {ATTACKERS} attackers per run; flood of {FLOOD_RATE} failing addresses per second per agent for {FLOOD_SECONDS} s."
    );
    table
}

fn main() -> anyhow::Result<()> {
    shared::require_root("fleet", "writes bans into BPF maps")?;
    let server = Server::start();
    let mut csv = String::from(
        "test,agents,run,p50_ms,p99_ms,max_ms,all_p99_ms,commands_per_s,evalsha_per_s,bytes_per_s,answer_s,seconds\n",
    );
    let mut rows: Vec<(usize, [f64; 7])> = Vec::new();
    // BAN_AGENT_FLEET_BENCH=catch-up skips the rest (for working on it).
    let only_catch_up = std::env::var("BAN_AGENT_FLEET_BENCH").is_ok_and(|v| v == "catch-up");
    for n in [3, 10] {
        for run in 1..=RUNS {
            if only_catch_up {
                break;
            }
            eprintln!("fleet: {n} agents, run {run}/{RUNS}");
            let fleet = Fleet::start(&server, n, &format!("bench{n}r{run}"))?;
            let (mut each, mut last) = propagation(&fleet, run)?;
            each.sort_by(f64::total_cmp);
            last.sort_by(f64::total_cmp);
            let p = [
                percentile(&each, 0.5),
                percentile(&each, 0.99),
                percentile(&each, 1.0),
                percentile(&last, 0.99),
            ];
            let f = flood(&fleet, &server, run)?;
            let _ = writeln!(
                csv,
                "propagation,{n},{run},{:.3},{:.3},{:.3},{:.3},,,,,",
                p[0], p[1], p[2], p[3]
            );
            let _ = writeln!(
                csv,
                "flood,{n},{run},,,,,{:.0},{:.0},{:.0},,",
                f[0], f[1], f[2]
            );
            rows.push((n, [p[0], p[1], p[2], p[3], f[0], f[1], f[2]]));
            drop(fleet);
        }
    }
    let mut catch = Vec::new();
    for run in 1..=RUNS {
        eprintln!("fleet: catch-up of {CATCH_UP_BANS} bans, run {run}/{RUNS}");
        let (answered, done) = catch_up(&server, run)?;
        let _ = writeln!(csv, "catch_up,3,{run},,,,,,,,{answered:.3},{done:.3}");
        catch.push((answered, done));
    }
    let table = table(&rows, &catch);
    shared::publish("fleet", &csv, &table)
}
