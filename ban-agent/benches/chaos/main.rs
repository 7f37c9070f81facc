//! `cargo xtask chaos [--minutes N] [--seed S] [--rate LINES]` (root): faults all at once,
//! under load, on one host, judged afterwards against the generator's ground truth.
//!
//! The release daemon runs in a namespace of the run's own with three jails (the seed's
//! middleware log, uvicorn's, Caddy's JSON), its datapath (tc) on a veth, its pins on a
//! bpffs and its state on a tmpfs of the run's own. A generator writes the three logs
//! (about `--rate` lines a second, with bursts): attackers that reach `maxretry` and come
//! back after their ban (repeat offenders), slow attackers that never reach it, legitimate
//! clients whose successes must never ban them, `ignoreip` clients and the host's own
//! address failing on purpose. A nemesis injects a fault at random moments drawn from the
//! seed: `kill -9` and restart, SIGTERM and restart, `reload` with a changed jail,
//! logrotate (`create` and `copytruncate`), the state's disk full then free, the
//! interface down and up, bpffs unmounted and mounted, an operator's `ban` and `unban`.
//! A watcher reads the kernel's ban maps every few tens of milliseconds.
//!
//! Afterwards every invariant is checked (the list is [`Verdict`]'s) and the run fails,
//! printing its seed and the nemesis' schedule, when one does not hold: `--seed S`
//! replays the same schedule and load. Resident memory, open descriptors, the state's size
//! and the maps' entries are sampled every 10 s into `target/chaos/soak.csv`.
//!
//! Addresses: attackers 198.51.100.0/25 (middleware), 2001:db8:a::/64 (uvicorn),
//! 198.51.100.128/26 (Caddy), slow ones 198.51.100.192/27; legitimate 192.0.2.64/26;
//! ignoreip 192.0.2.128/26; the host 192.0.2.1. No packet is sent: the logs say who failed.

// A run reads as one story, from the namespace it builds to the verdict: the 80-line
// limit on functions (clippy.toml) is for the product's code, as in the tests.
#![allow(clippy::too_many_lines)]

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt::Write as _,
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ban_agent::{
    clock::{Expiry, boot_ns},
    datapath::Maps,
};
use ipnet::IpNet;

#[path = "../../tests/common/mod.rs"]
#[allow(dead_code, reason = "the chaos run uses a part of the tests' helpers")]
mod common;
mod fleet;
mod relay;
#[path = "../shared/mod.rs"]
mod shared;
use common::{
    Netns,
    agent::{AGENT, Daemon, cli_output},
    veth,
};
use shared::Rng;

const MAXRETRY: usize = 5;
const FINDTIME: Duration = Duration::from_secs(60);
const BANTIME: Duration = Duration::from_secs(20);
/// A ban is in the kernel this long after the line that earned it, at most.
const DEADLINE: Duration = Duration::from_secs(1);
/// How often the watcher reads the maps.
const WATCH: Duration = Duration::from_millis(25);

/// The three jails: name, filter, log file, the format of its lines.
const JAILS: [(&str, &str, &str, Style); 3] = [
    ("app", "fastapi-auth", "app.log", Style::Middleware),
    ("uvicorn", "uvicorn", "uvicorn.log", Style::Uvicorn),
    ("caddy", "caddy", "caddy.log", Style::Caddy),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    Middleware,
    Uvicorn,
    Caddy,
}

/// What a run is: how long, which seed, how many lines a second.
#[derive(Clone, Copy, Debug)]
struct Plan {
    minutes: f64,
    seed: u64,
    rate: u64,
}

fn plan() -> anyhow::Result<Plan> {
    let mut plan = Plan {
        minutes: 2.0,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        rate: 2_000,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match arg.as_str() {
            // cargo bench's own flag to a target without a harness.
            "--bench" => {}
            "--minutes" => plan.minutes = value("--minutes")?.parse()?,
            "--seed" => plan.seed = value("--seed")?.parse()?,
            "--rate" => plan.rate = value("--rate")?.parse()?,
            other => {
                bail!("unknown argument {other:?}: expected --minutes N, --seed S, --rate LINES")
            }
        }
    }
    Ok(plan)
}

/// What the generator wrote, by address: every failure line's moment (the ground truth).
#[derive(Default)]
struct Truth {
    failures: HashMap<IpAddr, Vec<Instant>>,
    /// Addresses that must never be banned, and why.
    never: HashMap<IpAddr, &'static str>,
    /// The jail each attacker fails in.
    jail_of: HashMap<IpAddr, usize>,
}

/// What the nemesis did, in order, and when the agent was down.
#[derive(Default)]
struct History {
    faults: Vec<(Duration, String)>,
    /// From the fault that stopped the agent to its answer again.
    down: Vec<(Instant, Instant)>,
    /// Bans the operator made (address, when) and lifted (address, when).
    operator_bans: Vec<(IpAddr, Instant)>,
    operator_unbans: Vec<(IpAddr, Instant)>,
    /// After each recovery: the agent's table against the kernel's, when they differ.
    mismatches: Vec<String>,
}

/// One ban as the watcher saw it.
#[derive(Clone, Debug)]
struct Seen {
    first: Instant,
    /// The boot clock when first seen, for the expiry.
    first_boot: u64,
    expiry: Expiry,
    /// The boot clock when the expiry was first seen as it is now (a ban extended while
    /// in force has a later one).
    expiry_boot: u64,
    last: Instant,
    gone: Option<Instant>,
}

/// The kernel's bans over the run: every appearance of each address, in order.
type Observed = HashMap<IpAddr, Vec<Seen>>;

/// The run's surroundings: the namespace, the folders and mounts, the daemon.
struct Host {
    ns: Netns,
    _peer: Netns,
    dir: PathBuf,
    state: PathBuf,
    bpffs: PathBuf,
    config: PathBuf,
    socket: PathBuf,
    daemon: Option<Daemon>,
    starts: usize,
}

impl Host {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let ns = Netns::new("chaos");
        let peer = Netns::new("chaosp");
        veth(
            &ns,
            "c0",
            &["192.0.2.1/24"],
            &peer,
            "c0p",
            &["192.0.2.2/24"],
        );
        let state = dir.join("state");
        std::fs::create_dir_all(&state)?;
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256m", "tmpfs"])
            .arg(&state))?;
        let bpffs = dir.join("bpf");
        std::fs::create_dir_all(&bpffs)?;
        sh(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(&bpffs))?;
        for (_, _, log, _) in JAILS {
            std::fs::File::create(dir.join(log))?;
        }
        let host = Self {
            ns,
            _peer: peer,
            dir: dir.to_owned(),
            state,
            bpffs,
            config: dir.join("ban-agent.toml"),
            socket: dir.join("ctl.sock"),
            daemon: None,
            starts: 0,
        };
        host.configure(false)?;
        Ok(host)
    }

    /// Writes the configuration; `changed` adds an address to every jail's ignoreip that
    /// no client uses (what a reload with a changed jail changes).
    fn configure(&self, changed: bool) -> anyhow::Result<()> {
        let mut text = format!(
            "socket = \"{}\"\nstate_dir = \"{}\"\npin_dir = \"{}\"\n\
             interfaces = [\"c0\"]\nmode = \"tc\"\n\
             [defaults]\nmaxretry = {MAXRETRY}\nfindtime = \"{}s\"\nbantime = \"{}s\"\n\
             max_bans_per_minute = 0\nports = [8000]\nstart = \"head\"\n\
             ignoreip = [\"192.0.2.128/26\"{}]\n",
            self.socket.display(),
            self.state.display(),
            self.bpffs.join("pins").display(),
            FINDTIME.as_secs(),
            BANTIME.as_secs(),
            if changed { ", \"192.0.2.250\"" } else { "" }
        );
        for (name, filter, log, _) in JAILS {
            let _ = write!(
                text,
                "[jail.{name}]\nlogpath = \"{}\"\nfilter = \"{filter}\"\n",
                self.dir.join(log).display()
            );
        }
        std::fs::write(&self.config, text)?;
        Ok(())
    }

    fn start(&mut self) {
        self.starts += 1;
        let log = self.dir.join(format!("agent-{}.log", self.starts));
        let mut command = self.ns.command(AGENT);
        command
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info");
        self.daemon = Some(Daemon::spawn(command, &self.socket, &log));
    }

    fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Daemon::pid)
    }

    /// Sends `signal` to the daemon and waits until it has exited (15 s at most).
    fn signal(&mut self, signal: &str) -> anyhow::Result<()> {
        let pid = self.pid().context("no daemon")?;
        sh(Command::new("kill").args([signal, &pid.to_string()]))?;
        let mut daemon = self.daemon.take().context("no daemon")?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !daemon.exited() {
            if Instant::now() > deadline {
                bail!("the daemon did not exit within 15 s of {signal}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = cli_output(&self.socket, args);
        if !out.status.success() {
            bail!(
                "ban-agent {args:?}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The agent's table of bans.
    fn table(&self) -> anyhow::Result<BTreeSet<IpNet>> {
        let json: serde_json::Value = serde_json::from_str(&self.cli(&["banned", "--json"])?)?;
        Ok(json["bans"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ban| ban["target"].as_str())
            .filter_map(|target| {
                target
                    .parse::<IpNet>()
                    .ok()
                    .or_else(|| target.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect())
    }

    fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                std::fs::read_to_string(self.dir.join(format!("agent-{n}.log"))).unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.daemon = None;
        let _detached = ban_agent::datapath::detach(&self.bpffs.join("pins"));
        for mount in [&self.bpffs, &self.state] {
            let _unmounted = Command::new("umount").arg("-l").arg(mount).output();
        }
    }
}

fn sh(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() -> anyhow::Result<()> {
    shared::require_root("chaos", "builds namespaces, mounts and loads BPF programs")?;
    let plan = plan()?;
    println!(
        "chaos: {:.1} min, seed {}, about {} lines/s (replay: cargo xtask chaos --minutes {} --seed {} --rate {})",
        plan.minutes, plan.seed, plan.rate, plan.minutes, plan.seed, plan.rate
    );
    let dir = tempfile::tempdir()?;
    let mut host = Host::new(dir.path())?;
    host.start();
    let maps = Maps::open_pinned(&host.bpffs.join("pins"))?;
    let fleet = fleet::Fleet::start(plan.seed)?;
    let fleet_pid = fleet.pid();
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(plan.minutes * 60.0);
    let stop = Arc::new(AtomicBool::new(false));
    let truth = Arc::new(Mutex::new(Truth::default()));
    // The generator pauses while a log is copied and truncated (copytruncate loses what is
    // written in between, by design: the truth would not know it).
    let pause = Arc::new(Mutex::new(()));
    let generator = {
        let (stop, truth, pause) = (Arc::clone(&stop), Arc::clone(&truth), Arc::clone(&pause));
        let dir = dir.path().to_owned();
        std::thread::spawn(move || generate(&dir, plan, &stop, &truth, &pause))
    };
    let observed = Arc::new(Mutex::new(Observed::new()));
    let watcher = {
        let (stop, observed) = (Arc::clone(&stop), Arc::clone(&observed));
        std::thread::spawn(move || watch(&maps, &stop, &observed))
    };
    let fleet = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || fleet.run(plan.seed, &stop))
    };
    let mut history = History::default();
    let mut rng = Rng(plan.seed ^ 0x006e_656d_6573_6973);
    let mut soak =
        String::from("seconds,rss_kib,fds,state_bytes,map_entries,fleet_rss_kib,fleet_fds\n");
    let mut next_sample = started;
    let mut next_fault = started + rng.millis(4_000, 10_000);
    let mut failure = None;
    while Instant::now() < end {
        if Instant::now() >= next_sample {
            sample(&host, fleet_pid, &observed, started, &mut soak);
            next_sample += Duration::from_secs(10);
        }
        if Instant::now() >= next_fault {
            if let Err(e) = nemesis(&mut host, &mut rng, &mut history, &pause, started) {
                failure = Some(e);
                break;
            }
            next_fault = Instant::now() + rng.millis(5_000, 12_000);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let lines = generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))??;
    let fleet = fleet
        .join()
        .map_err(|_| anyhow::anyhow!("the fleet's run panicked"))?
        .map_err(|e| e.context(format!("the fleet's run (seed {})", plan.seed)))?;
    let load = format!(
        "{lines} lines written in {:.0} s ({:.0} a second), {} faults",
        started.elapsed().as_secs_f64(),
        lines as f64 / started.elapsed().as_secs_f64(),
        history.faults.len()
    );
    // What was written last is read and banned, then the kernel and the table compared.
    std::thread::sleep(Duration::from_secs(3));
    let settled = Instant::now();
    let final_difference = differences(&host);
    let watched = Arc::clone(&observed);
    watcher
        .join()
        .map_err(|_| anyhow::anyhow!("the watcher panicked"))??;
    let logs = host.logs();
    let out = target_dir().join("chaos");
    std::fs::create_dir_all(&out)?;
    std::fs::write(out.join("soak.csv"), &soak)?;
    std::fs::write(out.join("agent.log"), &logs)?;
    let truth = truth
        .lock()
        .map_err(|_| anyhow::anyhow!("truth poisoned"))?;
    let observed = watched
        .lock()
        .map_err(|_| anyhow::anyhow!("observed poisoned"))?;
    let mut verdict = judge(&truth, &observed, &history, (started, settled));
    verdict
        .mismatches
        .extend(history.mismatches.iter().cloned());
    if let Some(difference) = final_difference {
        verdict.mismatches.push(format!("at the end: {difference}"));
    }
    verdict.integrity = integrity(&host.state.join("state.db")).err();
    verdict.panics = logs.lines().filter(|l| l.contains("panicked")).count();
    verdict.soak = soak_verdict(&soak);
    host.daemon = None;
    drop(host);
    let report = format!("{load}\n\n{}\n{}", verdict.report(&history), fleet.report);
    println!("{report}");
    std::fs::write(out.join("report.md"), &report)?;
    std::fs::write(
        out.join("timelines.txt"),
        timelines(&verdict, &truth, &observed, &history, started),
    )?;
    std::fs::write(out.join("fleet-findings.txt"), &fleet.findings)?;
    if let Some(e) = failure {
        bail!("the nemesis failed: {e:#} (seed {})", plan.seed);
    }
    if !verdict.holds() || !fleet.holds {
        bail!(
            "invariants broken (seed {}): replay with cargo xtask chaos --minutes {} --seed {} --rate {}",
            plan.seed,
            plan.minutes,
            plan.seed,
            plan.rate
        );
    }
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// A line of `style` for `ip` answered `status`.
fn line(style: Style, ip: IpAddr, status: u16, out: &mut String) {
    let path = if status == 200 { "/items" } else { "/login" };
    let _ = match style {
        Style::Middleware => writeln!(
            out,
            "{} - fastapi-auth - INFO - {ip} - \"POST {path}\" {status} - 0.0100s",
            common::agent::now_stamp()
        ),
        Style::Uvicorn => writeln!(
            out,
            "INFO:     {ip}:51234 - \"POST {path} HTTP/1.1\" {status} {}",
            if status == 200 { "OK" } else { "Unauthorized" }
        ),
        Style::Caddy => writeln!(
            out,
            r#"{{"level":"info","ts":{:.3},"logger":"http.log.access","msg":"handled request","request":{{"remote_ip":"{ip}","remote_port":"51234","client_ip":"{ip}","proto":"HTTP/1.1","method":"POST","host":"example.com","uri":"{path}"}},"status":{status}}}"#,
            jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
        ),
    };
}

/// An attacker of the run: its jail, and when it may fail next.
struct Attacker {
    ip: IpAddr,
    jail: usize,
    /// Failures of its current round.
    sent: usize,
    /// A slow one never makes `maxretry` failures within `findtime`.
    slow: bool,
    next: Instant,
}

fn attackers(rng: &mut Rng) -> Vec<Attacker> {
    let now = Instant::now();
    let mut all = Vec::new();
    for n in 0..120u32 {
        let (ip, jail): (IpAddr, usize) = match n % 3 {
            0 => (format!("198.51.100.{}", n / 3).parse().expect("v4"), 0),
            1 => (format!("2001:db8:a::{:x}", n + 1).parse().expect("v6"), 1),
            _ => (
                format!("198.51.100.{}", 128 + n / 3 % 64)
                    .parse()
                    .expect("v4"),
                2,
            ),
        };
        all.push(Attacker {
            ip,
            jail,
            sent: 0,
            slow: false,
            next: now + rng.millis(0, 20_000),
        });
    }
    // Slow attackers in the timed formats (a uvicorn line has no time: it counts when it
    // is read, which a restart bunches up).
    for n in 0..16u32 {
        all.push(Attacker {
            ip: format!("198.51.100.{}", 192 + n).parse().expect("v4"),
            jail: if n % 2 == 0 { 0 } else { 2 },
            sent: 0,
            slow: true,
            next: now + rng.millis(0, 10_000),
        });
    }
    all
}

/// Writes the logs until `stop`: `rate` lines a second in batches of 10 ms, a burst of
/// three times that for a second every ten.
fn generate(
    dir: &Path,
    plan: Plan,
    stop: &AtomicBool,
    truth: &Mutex<Truth>,
    pause: &Mutex<()>,
) -> anyhow::Result<u64> {
    let mut rng = Rng(plan.seed);
    let mut written = 0u64;
    let mut attackers = attackers(&mut rng);
    {
        let mut truth = truth.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        for a in &attackers {
            truth.jail_of.insert(a.ip, a.jail);
            truth.failures.entry(a.ip).or_default();
        }
        for n in 0..64u8 {
            truth.never.insert(
                format!("192.0.2.{}", 64 + n).parse()?,
                "a legitimate client",
            );
            truth
                .never
                .insert(format!("192.0.2.{}", 128 + n).parse()?, "in ignoreip");
        }
        truth
            .never
            .insert("192.0.2.1".parse()?, "the host's own address");
        for a in attackers.iter().filter(|a| a.slow) {
            truth.never.insert(a.ip, "a slow attacker (under maxretry)");
        }
    }
    let started = Instant::now();
    let mut batches = [String::new(), String::new(), String::new()];
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        let burst = (tick - started).as_secs().is_multiple_of(10);
        let lines = plan.rate / 100 * if burst { 3 } else { 1 };
        let _paused = pause.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        let mut failed: Vec<(IpAddr, Instant)> = Vec::new();
        for _ in 0..lines {
            let jail = rng.below(3) as usize;
            let style = JAILS[jail].3;
            let (ip, status): (IpAddr, u16) = match rng.below(100) {
                0..=89 => (format!("192.0.2.{}", 64 + rng.below(64)).parse()?, 200),
                90..=97 => (format!("192.0.2.{}", 128 + rng.below(64)).parse()?, 401),
                _ => ("192.0.2.1".parse()?, 401),
            };
            line(style, ip, status, &mut batches[jail]);
        }
        written += lines;
        let now = Instant::now();
        for a in attackers.iter_mut().filter(|a| a.next <= now) {
            line(JAILS[a.jail].3, a.ip, 401, &mut batches[a.jail]);
            written += 1;
            failed.push((a.ip, now));
            a.sent += 1;
            a.next = if a.slow {
                // Four in any findtime at most.
                now + FINDTIME / 4 + rng.millis(1_000, 3_000)
            } else if a.sent % MAXRETRY == 0 {
                // Banned now: back after the ban (a repeat offender), or much later.
                now + BANTIME + rng.millis(3_000, 30_000)
            } else {
                now + rng.millis(50, 1_500)
            };
        }
        for ((_, _, log, _), batch) in JAILS.iter().zip(&mut batches) {
            if batch.is_empty() {
                continue;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(log))?;
            file.write_all(batch.as_bytes())?;
            batch.clear();
        }
        {
            // Each failure at the moment before its line was written: the agent cannot
            // ban earlier, and the latency measured from it is the longer one.
            let mut truth = truth.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for (ip, at) in failed {
                truth.failures.entry(ip).or_default().push(at);
            }
        }
        drop(_paused);
        std::thread::sleep(Duration::from_millis(10).saturating_sub(tick.elapsed()));
    }
    Ok(written)
}

/// Reads the kernel's ban maps every [`WATCH`] until `stop`, a while after it (the last
/// lines' bans).
fn watch(maps: &Maps, stop: &AtomicBool, observed: &Mutex<Observed>) -> anyhow::Result<()> {
    let mut stopped_at: Option<Instant> = None;
    loop {
        let records = maps.list()?;
        // Read after the maps: a ban is never seen before it was made (a ban made while
        // the maps were read is seen then or next time).
        let now = Instant::now();
        let boot = boot_ns();
        // A ban in force is one the kernel enforces: an entry past its expiry (the agent
        // removes it at its end, or at its next start) is not one.
        let present: HashMap<IpAddr, Expiry> = records
            .iter()
            .filter(|r| match r.expiry {
                Expiry::At(end) => end > boot,
                Expiry::Never => true,
            })
            .map(|r| (r.target.addr(), r.expiry))
            .collect();
        {
            let mut observed = observed.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for (ip, expiry) in &present {
                let seen = observed.entry(*ip).or_default();
                match seen.last_mut() {
                    Some(last) if last.gone.is_none() => {
                        last.last = now;
                        if last.expiry != *expiry {
                            last.expiry = *expiry;
                            last.expiry_boot = boot;
                        }
                    }
                    _ => seen.push(Seen {
                        first: now,
                        first_boot: boot,
                        expiry: *expiry,
                        expiry_boot: boot,
                        last: now,
                        gone: None,
                    }),
                }
            }
            for (ip, seen) in observed.iter_mut() {
                if let Some(last) = seen.last_mut()
                    && last.gone.is_none()
                    && !present.contains_key(ip)
                {
                    last.gone = Some(now);
                }
            }
        }
        if stop.load(Ordering::Relaxed) {
            let at = *stopped_at.get_or_insert(now);
            if now - at > Duration::from_secs(3) {
                return Ok(());
            }
        }
        std::thread::sleep(WATCH.saturating_sub(now.elapsed()));
    }
}

/// One fault, chosen at random, carried out and recorded.
fn nemesis(
    host: &mut Host,
    rng: &mut Rng,
    history: &mut History,
    pause: &Mutex<()>,
    started: Instant,
) -> anyhow::Result<()> {
    const FAULTS: [&str; 10] = [
        "kill -9",
        "SIGTERM",
        "reload",
        "logrotate create",
        "logrotate copytruncate",
        "disk full",
        "interface down",
        "bpffs unmounted",
        "operator ban",
        "operator unban",
    ];
    let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
    let at = started.elapsed();
    let mut detail = String::new();
    match fault {
        "kill -9" | "SIGTERM" => {
            let down = Instant::now();
            host.signal(if fault == "kill -9" { "-KILL" } else { "-TERM" })?;
            std::thread::sleep(rng.millis(0, 2_000));
            host.start();
            history.down.push((down, Instant::now()));
            recovered(host, history, fault);
        }
        "reload" => {
            let changed = history
                .faults
                .iter()
                .filter(|(_, f)| f.starts_with("reload"))
                .count()
                % 2
                == 0;
            host.configure(changed)?;
            host.cli(&["reload"])?;
        }
        "logrotate create" | "logrotate copytruncate" => {
            let (_, _, log, _) = JAILS[rng.below(3) as usize];
            let path = host.dir.join(log);
            let rotated = host.dir.join(format!("{log}.1"));
            let _paused = pause.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if fault == "logrotate create" {
                std::fs::rename(&path, &rotated)?;
                std::fs::File::create(&path)?;
            } else {
                std::fs::copy(&path, &rotated)?;
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(0)?;
            }
            detail = log.to_owned();
        }
        "disk full" => {
            let filler = host.state.join("filler");
            let mut file = std::fs::File::create(&filler)?;
            let block = vec![0u8; 1 << 20];
            while file.write_all(&block).is_ok() {}
            std::thread::sleep(rng.millis(2_000, 6_000));
            drop(file);
            std::fs::remove_file(&filler)?;
        }
        "interface down" => {
            host.ns.ip(&["link", "set", "c0", "down"]);
            std::thread::sleep(rng.millis(500, 3_000));
            host.ns.ip(&["link", "set", "c0", "up"]);
        }
        "bpffs unmounted" => {
            sh(Command::new("umount").arg(&host.bpffs))?;
            std::thread::sleep(rng.millis(500, 3_000));
            sh(Command::new("mount")
                .args(["-t", "bpf", "bpf"])
                .arg(&host.bpffs))?;
        }
        "operator ban" => {
            let ip: IpAddr = format!("192.0.2.{}", 200 + rng.below(40)).parse()?;
            host.cli(&["ban", "app", &ip.to_string(), "--for", "20s"])?;
            history.operator_bans.push((ip, Instant::now()));
            detail = ip.to_string();
        }
        _ => {
            // Lift the ban of an attacker in force, if any.
            let table = host.table()?;
            let attacker: IpNet = "198.51.100.0/24".parse()?;
            if let Some(target) = table.iter().find(|t| attacker.contains(*t)) {
                let ip = target.addr();
                let before = Instant::now();
                host.cli(&["unban", &ip.to_string()])?;
                history.operator_unbans.push((ip, before));
                detail = ip.to_string();
            }
        }
    }
    history
        .faults
        .push((at, format!("{fault} {detail}").trim_end().to_owned()));
    Ok(())
}

/// After a restart: once the agent has caught up, its table must equal the kernel's.
fn recovered(host: &Host, history: &mut History, fault: &str) {
    std::thread::sleep(Duration::from_millis(1_500));
    if let Some(difference) = differences(host) {
        history
            .mismatches
            .push(format!("after {fault}: {difference}"));
    }
}

/// The agent's table against the kernel's maps, read before and after it: what the table
/// holds and the kernel did at neither read, or what the kernel held at both and the table
/// not, leaving out the bans that end within a second; `None` when they agree.
fn differences(host: &Host) -> Option<String> {
    let kernel = || -> anyhow::Result<Vec<ban_agent::datapath::BanRecord>> {
        Ok(Maps::open_pinned(&host.bpffs.join("pins")).and_then(|maps| maps.list())?)
    };
    let (before, table, after) = match (kernel(), host.table(), kernel()) {
        (Ok(before), Ok(table), Ok(after)) => (before, table, after),
        (before, table, after) => {
            return Some(format!(
                "cannot compare: {:?} {:?} {:?}",
                before.err(),
                table.err(),
                after.err()
            ));
        }
    };
    let soon = boot_ns() + 1_000_000_000;
    let held = |records: &[ban_agent::datapath::BanRecord]| -> BTreeSet<IpNet> {
        records
            .iter()
            .filter(|r| !matches!(r.expiry, Expiry::At(end) if end <= soon))
            .map(|r| r.target)
            .collect()
    };
    let any = |records: &[ban_agent::datapath::BanRecord]| -> BTreeSet<IpNet> {
        records.iter().map(|r| r.target).collect()
    };
    let (held_before, held_after) = (held(&before), held(&after));
    let (any_before, any_after) = (any(&before), any(&after));
    let only_table: Vec<&IpNet> = table
        .iter()
        .filter(|t| !any_before.contains(*t) && !any_after.contains(*t))
        .collect();
    let only_kernel: Vec<&IpNet> = held_before
        .intersection(&held_after)
        .filter(|t| !table.contains(*t))
        .collect();
    (!only_table.is_empty() || !only_kernel.is_empty()).then(|| {
        format!(
            "the agent's table and the kernel differ: only in the table {:?}, only in the \
             kernel {:?}",
            only_table.iter().take(5).collect::<Vec<_>>(),
            only_kernel.iter().take(5).collect::<Vec<_>>()
        )
    })
}

/// A process' resident memory (KiB) and open descriptors.
fn usage(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count);
    (rss, fds)
}

fn sample(
    host: &Host,
    fleet_pid: u32,
    observed: &Mutex<Observed>,
    started: Instant,
    out: &mut String,
) {
    let Some(pid) = host.pid() else { return };
    let (rss, fds) = usage(pid);
    let (fleet_rss, fleet_fds) = usage(fleet_pid);
    let state = ["state.db", "state.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(host.state.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>();
    let entries = observed.lock().map_or(0, |o| {
        o.values()
            .filter(|s| s.last().is_some_and(|l| l.gone.is_none()))
            .count()
    });
    let _ = writeln!(
        out,
        "{},{rss},{fds},{state},{entries},{fleet_rss},{fleet_fds}",
        started.elapsed().as_secs()
    );
}

/// The soak's samples of the last 40 minutes (runs of 30 minutes or more), each series
/// fitted with a line whose rise over the window may not pass its limit: the fleet
/// agent's (alive the whole run) and the restarted agent's resident memory 5% of its mean
/// or 1 MB, their descriptors 2 (3 for the restarted one: a rotated log is held a moment),
/// the state file 10% or 1 MB, the bans in the kernel 10% or 10.
fn soak_verdict(csv: &str) -> Option<Result<String, String>> {
    const COLUMNS: usize = 7;
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|line| line.split(',').filter_map(|x| x.parse().ok()).collect())
        .filter(|v: &Vec<f64>| v.len() == COLUMNS)
        .collect();
    let last = rows.last()?[0];
    if last < 30.0 * 60.0 {
        return None;
    }
    let from = (last - 40.0 * 60.0).max(last / 3.0);
    let window: Vec<&Vec<f64>> = rows.iter().filter(|r| r[0] >= from).collect();
    let n = window.len() as f64;
    let fit = |column: usize| -> (f64, f64) {
        let mean_t = window.iter().map(|r| r[0]).sum::<f64>() / n;
        let mean = window.iter().map(|r| r[column]).sum::<f64>() / n;
        let cov: f64 = window
            .iter()
            .map(|r| (r[0] - mean_t) * (r[column] - mean))
            .sum();
        let var: f64 = window.iter().map(|r| (r[0] - mean_t).powi(2)).sum();
        let slope = if var > 0.0 { cov / var } else { 0.0 };
        (slope * (last - from), mean)
    };
    /// A column, what it is, its unit's size and name, its limit from its mean.
    type Series = (usize, &'static str, f64, &'static str, fn(f64) -> f64);
    let series: [Series; 6] = [
        (5, "fleet agent's memory", 1024.0, "MB", |m| {
            (m * 0.05).max(1024.0)
        }),
        (6, "fleet agent's descriptors", 1.0, "", |_| 2.0),
        (1, "restarted agent's memory", 1024.0, "MB", |m| {
            (m * 0.05).max(1024.0)
        }),
        (2, "restarted agent's descriptors", 1.0, "", |_| 3.0),
        (3, "state file", 1_048_576.0, "MB", |m| {
            (m * 0.1).max(1_048_576.0)
        }),
        (4, "bans in the kernel", 1.0, "", |m| (m * 0.1).max(10.0)),
    ];
    let mut figures = Vec::new();
    let mut grows = Vec::new();
    for (column, what, unit, name, limit) in series {
        let (growth, mean) = fit(column);
        let text = format!(
            "{what} {:.1}{name} on average, {:+.2}{name} by the fit",
            mean / unit,
            growth / unit
        );
        if growth > limit(mean) {
            grows.push(text.clone());
        }
        figures.push(text);
    }
    let figures = format!(
        "over the last {:.0} min: {}",
        (last - from) / 60.0,
        figures.join("; ")
    );
    if grows.is_empty() {
        Some(Ok(figures))
    } else {
        Some(Err(format!("grows: {}; {figures}", grows.join("; "))))
    }
}

/// Writes `bytes` to `path`, readable by its owner only (as the agent wants its secrets).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

fn integrity(db: &Path) -> Result<(), String> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| e.to_string())?;
    let result: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| e.to_string())?;
    if result == "ok" { Ok(()) } else { Err(result) }
}

/// The invariants, each with what broke it.
#[derive(Default)]
struct Verdict {
    /// Earned bans, and those in the kernel within the deadline.
    earned: usize,
    on_time: usize,
    /// A ban not in the kernel within the deadline (address, how late or never).
    late: Vec<String>,
    /// A ban of an address that never earned it (or not again: a line counted twice).
    unearned: Vec<String>,
    /// A ban that ended early or lasts too long.
    wrong_length: Vec<String>,
    /// The agent's table against the kernel's.
    mismatches: Vec<String>,
    /// `PRAGMA integrity_check`'s answer when it is not `ok` (or why it could not run).
    integrity: Option<String>,
    panics: usize,
    /// The soak's trend over its last 40 minutes: `Ok(figures)` when flat, `Err(what
    /// grows)`; `None` for a run too short to judge.
    soak: Option<Result<String, String>>,
    /// The slowest earned ban (from its line, or from the agent's return).
    slowest: Duration,
    /// The addresses of the findings, for their timelines.
    suspects: BTreeSet<IpAddr>,
}

impl Verdict {
    fn holds(&self) -> bool {
        self.late.is_empty()
            && self.unearned.is_empty()
            && self.wrong_length.is_empty()
            && self.mismatches.is_empty()
            && self.integrity.is_none()
            && self.panics == 0
            && !matches!(self.soak, Some(Err(_)))
    }

    fn report(&self, history: &History) -> String {
        let mut out = String::from("| invariant | holds | figures |\n|---|---|---|\n");
        let row = |out: &mut String, what: &str, ok: bool, figures: String| {
            let _ = writeln!(
                out,
                "| {what} | {} | {figures} |",
                if ok { "yes" } else { "**no**" }
            );
        };
        row(
            &mut out,
            "every earned ban in the kernel within 1 s (of its line, or of the agent's return)",
            self.late.is_empty(),
            format!(
                "{} of {} on time, slowest {:.0} ms{}",
                self.on_time,
                self.earned,
                self.slowest.as_secs_f64() * 1000.0,
                first(&self.late)
            ),
        );
        row(
            &mut out,
            "no ban that was not earned (legitimate, ignoreip, host, slow attackers; no line counted twice)",
            self.unearned.is_empty(),
            format!("{} unearned{}", self.unearned.len(), first(&self.unearned)),
        );
        row(
            &mut out,
            "no ban ends early nor outlives its end by more than 1 s",
            self.wrong_length.is_empty(),
            format!(
                "{} wrong{}",
                self.wrong_length.len(),
                first(&self.wrong_length)
            ),
        );
        let mismatches = &self.mismatches;
        row(
            &mut out,
            "the kernel's bans equal the agent's table after each recovery and at the end",
            mismatches.is_empty(),
            format!("{} differences{}", mismatches.len(), first(mismatches)),
        );
        row(
            &mut out,
            "PRAGMA integrity_check",
            self.integrity.is_none(),
            self.integrity.clone().unwrap_or_else(|| "ok".to_owned()),
        );
        row(
            &mut out,
            "no panic in any log",
            self.panics == 0,
            format!("{} panics", self.panics),
        );
        let (flat, figures) = match &self.soak {
            Some(Ok(figures)) => (true, figures.clone()),
            Some(Err(what)) => (false, what.clone()),
            None => (true, "not judged: a run under 30 minutes".to_owned()),
        };
        row(
            &mut out,
            "memory, descriptors, state and bans in the kernel flat over the last 40 minutes",
            flat,
            figures,
        );
        let _ = writeln!(out, "\nNemesis ({} faults):", history.faults.len());
        for (at, fault) in &history.faults {
            let _ = writeln!(out, "- {:>7.1} s {fault}", at.as_secs_f64());
        }
        out
    }
}

/// For each address of a finding (the first 20): its failures, the kernel's bans of it and
/// what the operator did to it, in time from the start, for the one who reads a failed run.
fn timelines(
    verdict: &Verdict,
    truth: &Truth,
    observed: &Observed,
    history: &History,
    started: Instant,
) -> String {
    let at = |t: Instant| t.saturating_duration_since(started).as_secs_f64();
    let mut out = String::new();
    for ip in verdict.suspects.iter().take(20) {
        let mut events: Vec<(f64, String)> = Vec::new();
        for t in truth.failures.get(ip).map_or(&[][..], Vec::as_slice) {
            events.push((at(*t), "failure".to_owned()));
        }
        for s in observed.get(ip).map_or(&[][..], Vec::as_slice) {
            let length = match s.expiry {
                Expiry::At(end) => format!(
                    "{:.3} s",
                    Duration::from_nanos(end.saturating_sub(s.first_boot)).as_secs_f64()
                ),
                Expiry::Never => "forever".to_owned(),
            };
            events.push((
                at(s.first),
                format!(
                    "in the kernel, expiry {length} after, last seen {:.3}, gone {}",
                    at(s.last),
                    s.gone
                        .map_or_else(|| "-".to_owned(), |g| format!("{:.3}", at(g)))
                ),
            ));
        }
        for (unbanned, t) in &history.operator_unbans {
            if unbanned == ip {
                events.push((at(*t), "operator unban".to_owned()));
            }
        }
        for (t, fault) in &history.faults {
            events.push((t.as_secs_f64(), format!("  (nemesis: {fault})")));
        }
        events.sort_by(|a, b| a.0.total_cmp(&b.0));
        let _ = writeln!(out, "{ip}:");
        let mine: Vec<f64> = events
            .iter()
            .filter(|(_, e)| !e.starts_with("  "))
            .map(|(t, _)| *t)
            .collect();
        for (t, event) in events {
            // The nemesis only near this address' own events.
            if event.starts_with("  ") && !mine.iter().any(|m| (m - t).abs() < 30.0) {
                continue;
            }
            let _ = writeln!(out, "  {t:>9.3} {event}");
        }
    }
    out
}

fn first(list: &[String]) -> String {
    list.first()
        .map_or_else(String::new, |f| format!("; first: {f}"))
}

/// Whether `failures` (in time order) hold maxretry within findtime after `since` (the
/// last ban's start) and by `until` (a ban's first sight): what earns a ban.
fn earned(failures: &[Instant], since: Option<Instant>, until: Instant) -> bool {
    let counted: Vec<&Instant> = failures
        .iter()
        .filter(|t| since.is_none_or(|b| **t > b) && **t <= until)
        .collect();
    counted
        .windows(MAXRETRY)
        .any(|w| *w[MAXRETRY - 1] - *w[0] <= FINDTIME)
}

/// Judges what the watcher saw against what the generator wrote and the nemesis did.
fn judge(
    truth: &Truth,
    observed: &Observed,
    history: &History,
    (started, settled): (Instant, Instant),
) -> Verdict {
    let mut verdict = Verdict::default();
    let up_after = |t: Instant| -> Instant {
        history
            .down
            .iter()
            .find(|(down, up)| *down <= t + DEADLINE && t < *up)
            .map_or(t, |(_, up)| *up.max(&t))
    };
    let operator_banned: BTreeMap<IpAddr, Instant> =
        history.operator_bans.iter().copied().collect();
    for (ip, seen) in observed {
        if let Some(why) = truth.never.get(ip) {
            verdict.unearned.push(format!("{ip} ({why}) banned"));
            continue;
        }
        if operator_banned.contains_key(ip) {
            continue;
        }
        let failures = truth.failures.get(ip).map_or(&[][..], Vec::as_slice);
        if failures.is_empty() {
            verdict
                .unearned
                .push(format!("{ip}, which never failed, banned"));
            continue;
        }
        // Each appearance needs maxretry failures within findtime, written after the
        // previous ban began and before it appeared.
        let mut since: Option<Instant> = None;
        for s in seen {
            if !earned(failures, since, s.first) {
                let counted = failures
                    .iter()
                    .filter(|t| since.is_none_or(|b| **t > b) && **t <= s.first)
                    .count();
                verdict.suspects.insert(*ip);
                verdict.unearned.push(format!(
                    "{ip} banned at {:.1} s with {} failures since its last ban",
                    (s.first - started).as_secs_f64(),
                    counted
                ));
            }
            // Its length: the kernel's expiry against its first sight plus bantime.
            if let Expiry::At(end) = s.expiry {
                let length = Duration::from_nanos(end.saturating_sub(s.first_boot));
                let lifted_by_operator = history.operator_unbans.iter().any(|(unbanned, at)| {
                    unbanned == ip && *at >= s.first && s.gone.is_some_and(|g| g >= *at)
                });
                if length > BANTIME + DEADLINE {
                    verdict.suspects.insert(*ip);
                    verdict
                        .wrong_length
                        .push(format!("{ip}: a ban of {length:?}"));
                }
                if let Some(gone) = s.gone
                    && !lifted_by_operator
                    && gone + DEADLINE < s.first + length.min(BANTIME) - WATCH * 4
                {
                    verdict.suspects.insert(*ip);
                    verdict.wrong_length.push(format!(
                        "{ip}: gone {:?} after it was seen, of {length:?}",
                        gone - s.first
                    ));
                }
            }
            since = Some(s.first);
        }
    }
    // Every earned ban, in the kernel in time.
    for (ip, failures) in &truth.failures {
        if truth.never.contains_key(ip) {
            continue;
        }
        let seen = observed.get(ip).map_or(&[][..], Vec::as_slice);
        let mut i = 0;
        let mut after: Option<Instant> = None;
        while i + MAXRETRY <= failures.len() {
            let window = &failures[i..i + MAXRETRY];
            if after.is_some_and(|a| window[0] <= a) || window[MAXRETRY - 1] - window[0] > FINDTIME
            {
                i += 1;
                continue;
            }
            let earned_at = window[MAXRETRY - 1];
            if earned_at + Duration::from_secs(2) > settled {
                break;
            }
            verdict.earned += 1;
            let due = up_after(earned_at) + DEADLINE + WATCH * 2;
            match seen
                .iter()
                .find(|s| s.first + WATCH * 2 >= earned_at && s.last + WATCH >= earned_at)
            {
                Some(s) if s.first <= due || s.first <= earned_at => {
                    verdict.on_time += 1;
                    let took = s.first.saturating_duration_since(up_after(earned_at));
                    verdict.slowest = verdict.slowest.max(took);
                    after = Some(s.first.max(earned_at));
                }
                Some(s) => {
                    verdict.suspects.insert(*ip);
                    verdict.late.push(format!(
                        "{ip}: in the kernel {:?} after its {MAXRETRY}th failure",
                        s.first - earned_at
                    ));
                    after = Some(s.first);
                }
                None => {
                    verdict.suspects.insert(*ip);
                    verdict
                        .late
                        .push(format!("{ip}: never banned after its {MAXRETRY}th failure"));
                    after = Some(earned_at);
                }
            }
            i += MAXRETRY;
        }
    }
    verdict.late.sort();
    verdict.unearned.sort();
    verdict
}
