//! The fleet under a nemesis: three agents on one Redis primary with a replica and a
//! Sentinel, each agent in a namespace of its own behind a veth to the engine's
//! namespace, its way to the engine made slow, lossy or cut by [`relay::Link`].
//!
//! Load: attackers whose failures are spread over the three hosts' logs (the seed's
//! middleware format), legitimate successes and `ignoreip` clients failing on purpose.
//! Nemesis, one fault at a time at moments from the seed: delay (100 ms ± 50) or 10% loss
//! on one link for a while, one host partitioned for 30 s, the primary killed (-9) and
//! started again at once, a Sentinel failover, the primary killed until the replica is
//! promoted. The fleet's agents are never restarted: they are the run's long-lived
//! processes, whose memory and descriptors the soak watches.
//!
//! Invariants: every ban in one host's kernel reaches every other host's kernel within
//! 2 s, or within 2 s of the heal when either host or the engine was cut off; no host
//! holds a ban longer than its own jail's bantime (host 2's is shorter: the fleet's
//! 20-second bans must be cut to it); the outbox never holds more than its bound; no
//! legitimate or ignoreip client is banned; bans with fewer than maxretry failures
//! behind them (failures counted twice by a batch sent again) are counted and reported.

use std::{
    collections::HashMap,
    fmt::Write as _,
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use ban_agent::{clock::Expiry, datapath::Maps};

use crate::{
    DEADLINE, FINDTIME, MAXRETRY, Observed, Style, WATCH,
    common::{
        Netns, Pins,
        agent::{AGENT, Daemon, cli_output},
        veth,
    },
    earned, line, relay,
    shared::Rng,
    watch,
};

pub const HOSTS: usize = 3;
/// Each host's bantime: host 2's rails are shorter than the bans the others make.
const BANTIMES: [Duration; HOSTS] = [
    Duration::from_secs(20),
    Duration::from_secs(20),
    Duration::from_secs(12),
];
/// The outbox' bound in every agent: less than a partitioned host's failures of 30 s, so
/// that the bound is reached.
const OUTBOX: u64 = 50;
/// A ban reaches every reachable host this long after it was made (or after the heal).
const PROPAGATION: Duration = Duration::from_secs(2);
const PASSWORD: &str = "chaos-fleet-password";
/// The engine's address (on its namespace's loopback), reached through every link.
const SERVICE: &str = "192.0.2.250";
/// Another address of the engine, the relays' way to it (the redirect leaves it alone).
const UPSTREAM: &str = "192.0.2.251";
const PORTS: [u16; 2] = [6379, 6380];
const SENTINEL_PORT: u16 = 26379;
/// Lines a second over the three hosts, besides the attackers'.
const RATE: u64 = 600;

/// Redis: a primary and a replica, and a Sentinel that names the primary, in the
/// engine's namespace.
struct Engine {
    ns: Netns,
    dir: PathBuf,
    servers: [Option<Child>; 2],
    sentinel: Child,
}

impl Engine {
    fn start(ns: Netns, dir: &Path) -> anyhow::Result<Self> {
        for address in [SERVICE, UPSTREAM] {
            ns.ip(&["addr", "add", &format!("{address}/32"), "dev", "lo"]);
        }
        let mut servers = [None, None];
        for (n, server) in servers.iter_mut().enumerate() {
            *server = Some(spawn_server(&ns, dir, n, n == 1)?);
        }
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {SENTINEL_PORT}\nbind 0.0.0.0\nprotected-mode no\ndir {}\n\
                 sentinel monitor fleet {SERVICE} {} 1\nsentinel auth-pass fleet {PASSWORD}\n\
                 sentinel down-after-milliseconds fleet 1000\n\
                 sentinel failover-timeout fleet 4000\n",
                dir.display(),
                PORTS[0]
            ),
        )?;
        let sentinel = ns
            .command("redis-server")
            .arg(&conf)
            .args(["--sentinel", "--logfile"])
            .arg(dir.join("sentinel.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start redis-sentinel")?;
        let engine = Self {
            ns,
            dir: dir.to_owned(),
            servers,
            sentinel,
        };
        engine.settle(Duration::from_secs(20))?;
        Ok(engine)
    }

    fn cli(&self, port: u16, args: &[&str]) -> Option<String> {
        let out = self
            .ns
            .command("redis-cli")
            .args(["-h", SERVICE, "-p", &port.to_string(), "--no-auth-warning"])
            .args(if port == SENTINEL_PORT {
                &[][..]
            } else {
                &["-a", PASSWORD][..]
            })
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The primary the Sentinel names, when it answers as a primary.
    fn primary(&self) -> Option<u16> {
        let named = self.cli(
            SENTINEL_PORT,
            &["SENTINEL", "get-master-addr-by-name", "fleet"],
        )?;
        let port: u16 = named.lines().nth(1)?.trim().parse().ok()?;
        let role = self.cli(port, &["ROLE"])?;
        (role.lines().next()? == "master").then_some(port)
    }

    /// Waits until the Sentinel has named the same writable primary for 3 s; returns
    /// when that began (the heal).
    fn settle(&self, limit: Duration) -> anyhow::Result<Instant> {
        let started = Instant::now();
        let mut stable: Option<(u16, Instant)> = None;
        loop {
            let now = Instant::now();
            match (self.primary(), stable) {
                (Some(port), Some((same, since))) if port == same => {
                    if now - since >= Duration::from_secs(3) {
                        return Ok(since);
                    }
                }
                (Some(port), _) => stable = Some((port, now)),
                (None, _) => stable = None,
            }
            if now - started > limit {
                bail!("the engine had no stable primary within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self, port: u16) {
        let n = PORTS.iter().position(|p| *p == port).unwrap_or(0);
        if let Some(mut child) = self.servers[n].take() {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }

    /// Starts the killed server again, empty, as a primary: the Sentinel makes it a
    /// replica when another was promoted meanwhile.
    fn restart(&mut self, port: u16) -> anyhow::Result<()> {
        let n = PORTS.iter().position(|p| *p == port).unwrap_or(0);
        self.servers[n] = Some(spawn_server(&self.ns, &self.dir, n, false)?);
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for port in PORTS {
            self.kill(port);
        }
        let _killed = self.sentinel.kill();
        let _reaped = self.sentinel.wait();
    }
}

fn spawn_server(ns: &Netns, dir: &Path, n: usize, replica: bool) -> anyhow::Result<Child> {
    let data = dir.join(format!("redis-{n}"));
    std::fs::create_dir_all(&data)?;
    let mut command = ns.command("redis-server");
    command
        .args(["--port", &PORTS[n].to_string(), "--bind", "0.0.0.0"])
        .args(["--protected-mode", "no", "--requirepass", PASSWORD])
        .args(["--masterauth", PASSWORD, "--replica-announce-ip", SERVICE])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(&data)
        .arg("--logfile")
        .arg(dir.join(format!("redis-{n}.log")));
    if replica {
        command.args(["--replicaof", SERVICE, &PORTS[0].to_string()]);
    }
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start redis-server")
}

/// One agent of the fleet.
struct Member {
    /// Its namespace, deleted with it.
    _ns: Netns,
    /// Its way to the engine, and the faults on it.
    link: relay::Link,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    pins: Pins,
    daemon: Daemon,
}

impl Member {
    fn start(n: usize, engine: &Netns, dir: &Path, key: &Path, seed: u64) -> anyhow::Result<Self> {
        let ns = Netns::new(&format!("chaosf{n}"));
        let (near, far) = (4 * n + 1, 4 * n + 2);
        veth(
            engine,
            &format!("e{n}"),
            &[&format!("192.0.2.{near}/30")],
            &ns,
            "l0",
            &[&format!("192.0.2.{far}/30")],
        );
        ns.ip(&[
            "route",
            "add",
            "192.0.2.248/29",
            "via",
            &format!("192.0.2.{near}"),
        ]);
        let link = relay::Link::new(
            &ns,
            "l0",
            SERVICE.parse()?,
            UPSTREAM.parse()?,
            &[PORTS[0], PORTS[1], SENTINEL_PORT],
            seed ^ n as u64,
        )?;
        let dir = dir.join(format!("h{n}"));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("app.log");
        std::fs::File::create(&log)?;
        let pins = Pins::new(&format!("chaos-fleet{n}"));
        let password = dir.join("redis.password");
        super::write_private(&password, PASSWORD.as_bytes())?;
        let config = dir.join("ban-agent.toml");
        let socket = dir.join("ctl.sock");
        std::fs::write(
            &config,
            format!(
                "socket = \"{}\"\nstate_dir = \"{}\"\npin_dir = \"{}\"\n\
                 interfaces = [\"l0\"]\nmode = \"tc\"\n\
                 [defaults]\nmaxretry = {MAXRETRY}\nfindtime = \"{}s\"\nbantime = \"{}s\"\n\
                 max_bans_per_minute = 0\nports = [8000]\nstart = \"head\"\n\
                 ignoreip = [\"198.51.100.192/27\"]\n\
                 [jail.app]\nlogpath = \"{}\"\nfilter = \"fastapi-auth\"\n\
                 [fleet]\nurl = \"redis-sentinel://{SERVICE}:{SENTINEL_PORT}/fleet\"\n\
                 password_file = \"{}\"\nname = \"h{n}\"\nkey_file = \"{}\"\noutbox = {OUTBOX}\n",
                socket.display(),
                dir.join("state").display(),
                pins.arg(),
                FINDTIME.as_secs(),
                BANTIMES[n].as_secs(),
                log.display(),
                password.display(),
                key.display(),
            ),
        )?;
        let mut command = ns.command(AGENT);
        command
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info,ban_agent::fleet::task=debug");
        let daemon = Daemon::spawn(command, &socket, &dir.join("agent.log"));
        Ok(Self {
            _ns: ns,
            link,
            dir,
            socket,
            log,
            pins,
            daemon,
        })
    }

    fn status(&self) -> Option<serde_json::Value> {
        let out = cli_output(&self.socket, &["status", "--json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice::<serde_json::Value>(&out.stdout).ok())
            .flatten()
    }
}

/// A time one host (or with `None` every host: the engine) could not reach the engine.
struct Cut {
    host: Option<usize>,
    from: Instant,
    to: Instant,
}

/// What the fleet's nemesis did.
#[derive(Default)]
struct History {
    faults: Vec<(Duration, String)>,
    cuts: Vec<Cut>,
}

/// What the fleet's generator wrote: every attacker failure's moment, any host.
#[derive(Default)]
struct Truth {
    failures: HashMap<IpAddr, Vec<Instant>>,
}

/// The fleet's part of a run: started beside the one host's, stopped with it.
pub struct Fleet {
    /// Only the nemesis uses it (a lock for `&self`).
    engine: Mutex<Engine>,
    members: Arc<Vec<Member>>,
    observed: Vec<Arc<Mutex<Observed>>>,
    dir: tempfile::TempDir,
}

/// The fleet's verdict, for the report.
pub struct Verdict {
    pub holds: bool,
    pub report: String,
    /// Every broken check, one a line (the report names only the first of each kind).
    pub findings: String,
}

impl Fleet {
    pub fn start(seed: u64) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let engine = Engine::start(Netns::new("chaose"), dir.path())?;
        let key = dir.path().join("fleet.key");
        super::write_private(&key, b"the chaos fleet's shared key, 32 bytes+")?;
        let mut members = Vec::new();
        for n in 0..HOSTS {
            members.push(Member::start(n, &engine.ns, dir.path(), &key, seed)?);
        }
        Ok(Self {
            engine: Mutex::new(engine),
            members: Arc::new(members),
            observed: (0..HOSTS).map(|_| Arc::default()).collect(),
            dir,
        })
    }

    /// The pid of the first agent (never restarted: the soak's long-lived process).
    pub fn pid(&self) -> u32 {
        self.members[0].daemon.pid()
    }

    /// Runs the load, the watchers and the nemesis until `stop`, then judges.
    pub fn run(self, seed: u64, stop: &Arc<AtomicBool>) -> anyhow::Result<Verdict> {
        let started = Instant::now();
        let truth = Arc::new(Mutex::new(Truth::default()));
        let mut watchers = Vec::new();
        for (member, observed) in self.members.iter().zip(&self.observed) {
            let maps = Maps::open_pinned(&member.pins.dir)?;
            let (stop, observed) = (Arc::clone(stop), Arc::clone(observed));
            watchers.push(std::thread::spawn(move || watch(&maps, &stop, &observed)));
        }
        let generator = {
            let (stop, truth, members) = (
                Arc::clone(stop),
                Arc::clone(&truth),
                Arc::clone(&self.members),
            );
            std::thread::spawn(move || generate(&members, seed, &stop, &truth))
        };
        let outbox = {
            let (stop, members) = (Arc::clone(stop), Arc::clone(&self.members));
            std::thread::spawn(move || outbox(&members, &stop))
        };
        let mut history = History::default();
        let mut rng = Rng(seed ^ 0x0066_6c65_6574);
        let mut failure = None;
        let mut next = Instant::now() + rng.millis(3_000, 8_000);
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                if let Err(e) = self.nemesis(&mut rng, &mut history, started, stop) {
                    // Everything else stops too (and the one host's part with it).
                    stop.store(true, Ordering::Relaxed);
                    failure = Some(e);
                    break;
                }
                next = Instant::now() + rng.millis(3_000, 8_000);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for member in self.members.iter() {
            member.link.delay(false);
            member.link.loss(0)?;
        }
        let written = generator
            .join()
            .map_err(|_| anyhow::anyhow!("the fleet's generator panicked"))??;
        for watcher in watchers {
            watcher
                .join()
                .map_err(|_| anyhow::anyhow!("a fleet watcher panicked"))??;
        }
        let outbox = outbox
            .join()
            .map_err(|_| anyhow::anyhow!("the outbox reader panicked"))?;
        if let Some(e) = failure {
            bail!("the fleet's nemesis failed: {e:#}");
        }
        let truth = truth
            .lock()
            .map_err(|_| anyhow::anyhow!("truth poisoned"))?;
        let observed: Vec<Observed> = self
            .observed
            .iter()
            .map(|o| o.lock().map(|o| o.clone()).unwrap_or_default())
            .collect();
        let logs: Vec<String> = self
            .members
            .iter()
            .map(|m| std::fs::read_to_string(m.dir.join("agent.log")).unwrap_or_default())
            .collect();
        let out = crate::target_dir().join("chaos");
        std::fs::create_dir_all(&out)?;
        for (n, log) in logs.iter().enumerate() {
            std::fs::write(out.join(format!("fleet-h{n}.log")), log)?;
        }
        for log in ["sentinel.log", "redis-0.log", "redis-1.log"] {
            let _ = std::fs::copy(self.dir.path().join(log), out.join(format!("fleet-{log}")));
        }
        let settled = Instant::now();
        Ok(judge(
            &truth,
            &observed,
            &history,
            &outbox,
            &logs,
            (started, settled),
            written,
        ))
    }

    fn engine(&self) -> anyhow::Result<std::sync::MutexGuard<'_, Engine>> {
        self.engine
            .lock()
            .map_err(|_| anyhow::anyhow!("engine poisoned"))
    }

    /// One fault, chosen at random, carried out and recorded with the cut it made.
    fn nemesis(
        &self,
        rng: &mut Rng,
        history: &mut History,
        started: Instant,
        stop: &AtomicBool,
    ) -> anyhow::Result<()> {
        const FAULTS: [&str; 6] = [
            "delay 100 ms ± 50",
            "loss 10%",
            "partition",
            "redis kill -9",
            "sentinel failover",
            "replica promoted",
        ];
        let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
        let at = started.elapsed();
        let host = rng.below(HOSTS as u64) as usize;
        let member = &self.members[host];
        let mut engine = self.engine()?;
        // Sleeps end early when the run does (a cut is closed when it is healed).
        let pause = |length: Duration| {
            let end = Instant::now() + length;
            while Instant::now() < end && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let detail = match fault {
            "delay 100 ms ± 50" | "loss 10%" => {
                if fault.starts_with("delay") {
                    member.link.delay(true);
                } else {
                    member.link.loss(10)?;
                }
                let length = rng.millis(5_000, 15_000);
                pause(length);
                member.link.delay(false);
                member.link.loss(0)?;
                format!("h{host} for {:.1} s", length.as_secs_f64())
            }
            "partition" => {
                let from = Instant::now();
                member.link.loss(100)?;
                pause(Duration::from_secs(30));
                member.link.loss(0)?;
                history.cuts.push(Cut {
                    host: Some(host),
                    from,
                    to: Instant::now(),
                });
                format!("h{host} for 30 s")
            }
            _ => {
                let from = Instant::now();
                let mut refused = String::new();
                let primary = engine.primary().context("no primary before the fault")?;
                match fault {
                    "redis kill -9" => {
                        engine.kill(primary);
                        std::thread::sleep(rng.millis(200, 1_500));
                        engine.restart(primary)?;
                    }
                    "sentinel failover" => {
                        let answer = engine
                            .cli(SENTINEL_PORT, &["SENTINEL", "FAILOVER", "fleet"])
                            .context("SENTINEL FAILOVER")?;
                        if answer.trim() != "OK" {
                            // A replica still syncing after the last fault: no failover.
                            refused = format!(" refused: {}", answer.trim());
                        }
                    }
                    _ => {
                        engine.kill(primary);
                        let deadline = Instant::now() + Duration::from_secs(20);
                        while engine.primary().is_none_or(|p| p == primary) {
                            if Instant::now() > deadline {
                                bail!("the Sentinel promoted no replica within 20 s");
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        engine.restart(primary)?;
                    }
                }
                // Let the Sentinel notice and finish what it does.
                std::thread::sleep(Duration::from_millis(1_500));
                let healed = engine.settle(Duration::from_secs(30))?;
                history.cuts.push(Cut {
                    host: None,
                    from,
                    to: healed,
                });
                format!(
                    "(primary :{primary}, now :{}; healed after {:.1} s){refused}",
                    engine.primary().unwrap_or(0),
                    (healed - from).as_secs_f64()
                )
            }
        };
        history
            .faults
            .push((at, format!("{fault} {detail}").trim_end().to_owned()));
        Ok(())
    }
}

/// Writes the three hosts' logs until `stop`: [`RATE`] lines a second of legitimate
/// successes and ignoreip failures, and the attackers' failures, each on a host at random.
fn generate(
    members: &[Member],
    seed: u64,
    stop: &AtomicBool,
    truth: &Mutex<Truth>,
) -> anyhow::Result<u64> {
    let mut rng = Rng(seed ^ 0x0067_656e);
    let mut next: Vec<(IpAddr, usize, Instant)> = (0..60u32)
        .map(|n| {
            let ip = if n % 2 == 0 {
                format!("198.51.100.{}", n / 2)
            } else {
                format!("2001:db8:f::{:x}", n + 1)
            };
            (
                ip.parse().expect("an address"),
                0,
                Instant::now() + rng.millis(0, 20_000),
            )
        })
        .collect();
    let mut written = 0u64;
    let mut batches = vec![String::new(); members.len()];
    while !stop.load(Ordering::Relaxed) {
        let tick = Instant::now();
        for _ in 0..RATE / 100 {
            let (last, status) = if rng.below(10) == 0 {
                (192 + rng.below(32), 401)
            } else {
                (128 + rng.below(64), 200)
            };
            let ip = IpAddr::from([198, 51, 100, last as u8]);
            let host = rng.below(members.len() as u64) as usize;
            line(Style::Middleware, ip, status, &mut batches[host]);
            written += 1;
        }
        let mut failed = Vec::new();
        for (ip, sent, at) in &mut next {
            if *at > tick {
                continue;
            }
            let host = rng.below(members.len() as u64) as usize;
            line(Style::Middleware, *ip, 401, &mut batches[host]);
            written += 1;
            failed.push((*ip, tick));
            *sent += 1;
            *at = if (*sent).is_multiple_of(MAXRETRY) {
                tick + BANTIMES[0] + rng.millis(3_000, 30_000)
            } else {
                tick + rng.millis(50, 1_500)
            };
        }
        for (member, batch) in members.iter().zip(&mut batches) {
            if batch.is_empty() {
                continue;
            }
            std::fs::OpenOptions::new()
                .append(true)
                .open(&member.log)?
                .write_all(batch.as_bytes())?;
            batch.clear();
        }
        {
            let mut truth = truth.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            for (ip, at) in failed {
                truth.failures.entry(ip).or_default().push(at);
            }
        }
        std::thread::sleep(Duration::from_millis(10).saturating_sub(tick.elapsed()));
    }
    Ok(written)
}

/// The largest outbox each agent reported, and the failures it dropped when full, read
/// every 200 ms until `stop`.
fn outbox(members: &[Member], stop: &AtomicBool) -> Vec<(u64, u64)> {
    let mut largest = vec![(0, 0); members.len()];
    while !stop.load(Ordering::Relaxed) {
        for (member, (largest, dropped)) in members.iter().zip(&mut largest) {
            if let Some(status) = member.status() {
                *largest = (*largest).max(status["fleet"]["outbox"].as_u64().unwrap_or(0));
                *dropped = (*dropped).max(status["fleet"]["dropped"].as_u64().unwrap_or(0));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    largest
}

/// When a ban seen at `at` must have reached a host: [`PROPAGATION`] after it, or after
/// the end of any cut of either host or of the engine it falls into.
fn due(at: Instant, hosts: [usize; 2], cuts: &[Cut]) -> Instant {
    let mut due = at + PROPAGATION;
    loop {
        let later = cuts
            .iter()
            .filter(|c| c.host.is_none_or(|h| hosts.contains(&h)))
            .filter(|c| c.from <= due && c.to + PROPAGATION > due && c.to >= at)
            .map(|c| c.to + PROPAGATION)
            .max();
        match later {
            Some(later) if later > due => due = later,
            _ => return due,
        }
    }
}

fn judge(
    truth: &Truth,
    observed: &[Observed],
    history: &History,
    outbox: &[(u64, u64)],
    logs: &[String],
    (started, settled): (Instant, Instant),
    written: u64,
) -> Verdict {
    let at = |t: Instant| t.saturating_duration_since(started).as_secs_f64();
    let never: ipnet::IpNet = "198.51.100.128/25".parse().expect("network");
    let mut late = Vec::new();
    let mut on_time = 0usize;
    let mut slowest = Duration::ZERO;
    let mut too_long = Vec::new();
    let mut unearned = Vec::new();
    let (mut bans, mut sooner) = (0usize, 0usize);
    for (a, seen_a) in observed.iter().enumerate() {
        for (ip, seen) in seen_a {
            if never.contains(ip) {
                unearned.push(format!("{ip} banned on h{a}"));
            }
            let mut since: Option<Instant> = None;
            for s in seen {
                let Expiry::At(end) = s.expiry else {
                    too_long.push(format!("{ip} on h{a}: a ban without end"));
                    continue;
                };
                let length = Duration::from_nanos(end.saturating_sub(s.first_boot));
                // The rails bound each decision: a ban extended while in force (a
                // fleet-wide ban over a local one) is as long as its last one.
                let decided = Duration::from_nanos(end.saturating_sub(s.expiry_boot));
                if decided > BANTIMES[a] + DEADLINE {
                    too_long.push(format!(
                        "{ip} on h{a}: {:.1} s, its bantime {} s",
                        decided.as_secs_f64(),
                        BANTIMES[a].as_secs()
                    ));
                }
                // Behind a ban: maxretry failures within findtime since the last one.
                if a == 0 {
                    bans += 1;
                    let failures = truth.failures.get(ip).map_or(&[][..], Vec::as_slice);
                    if !earned(failures, since, s.first) {
                        sooner += 1;
                    }
                    since = Some(s.first);
                }
                let ends = s.first + length;
                for (b, seen_b) in observed.iter().enumerate() {
                    if b == a {
                        continue;
                    }
                    let due = due(s.first, [a, b], &history.cuts);
                    // Ended (here or there) before it had to be there, or judged after
                    // the run: nothing to check.
                    let ends_there = ends.min(s.first + BANTIMES[b]);
                    if ends_there <= due + WATCH * 4
                        || s.gone.is_some_and(|g| g <= due)
                        || due + WATCH * 4 > settled
                    {
                        continue;
                    }
                    // The decision was made at most this host's bantime before the ban's
                    // end here (its rails cut a longer one to that from its arrival): a
                    // ban of the address there since is this one, however early it came
                    // and however soon that host's own rails ended it. A ban of an
                    // earlier round ended before: an attacker comes back 3 s or more
                    // after its ban ends.
                    let decided = ends.checked_sub(BANTIMES[a] + DEADLINE).unwrap_or(started);
                    let there = seen_b.get(ip).and_then(|list| {
                        list.iter()
                            .find(|o| o.last + WATCH * 2 >= decided && o.first <= ends)
                    });
                    match there {
                        Some(o) if o.first <= due + WATCH * 2 => {
                            on_time += 1;
                            // From the ban, or from the heal when it waited for one.
                            let from = s.first.max(due - PROPAGATION);
                            slowest = slowest.max(o.first.saturating_duration_since(from));
                        }
                        Some(o) => late.push(format!(
                            "{ip}: on h{a} at {:.1} s, on h{b} {:.1} s later (due {:.1} s after)",
                            at(s.first),
                            (o.first - s.first).as_secs_f64(),
                            (due - s.first).as_secs_f64()
                        )),
                        None => late.push(format!(
                            "{ip}: on h{a} at {:.1} s, never on h{b}",
                            at(s.first)
                        )),
                    }
                }
            }
        }
    }
    late.sort();
    unearned.sort();
    too_long.sort();
    let over: Vec<String> = outbox
        .iter()
        .enumerate()
        .filter(|(_, (n, _))| *n > OUTBOX)
        .map(|(h, (n, _))| format!("h{h}: {n}"))
        .collect();
    let largest: Vec<u64> = outbox.iter().map(|(n, _)| *n).collect();
    let dropped: Vec<u64> = outbox.iter().map(|(_, d)| *d).collect();
    let panics = logs.iter().filter(|l| l.contains("panicked")).count();
    let holds = late.is_empty()
        && too_long.is_empty()
        && unearned.is_empty()
        && over.is_empty()
        && panics == 0;
    let first = |list: &[String]| crate::first(list);
    let mut report = format!(
        "Fleet: {HOSTS} agents, a primary, a replica and a Sentinel; {written} lines, \
         {} faults\n\n| invariant | holds | figures |\n|---|---|---|\n",
        history.faults.len()
    );
    let mut row = |what: &str, ok: bool, figures: String| {
        let _ = writeln!(
            report,
            "| {what} | {} | {figures} |",
            if ok { "yes" } else { "**no**" }
        );
    };
    row(
        "every ban on every other host within 2 s (of the ban, or of the heal)",
        late.is_empty(),
        format!(
            "{on_time} of {} in time, slowest {:.0} ms after the ban or the heal{}",
            on_time + late.len(),
            slowest.as_secs_f64() * 1000.0,
            first(&late)
        ),
    );
    row(
        "no ban longer than the host's own bantime (host 2: 12 s)",
        too_long.is_empty(),
        format!("{} too long{}", too_long.len(), first(&too_long)),
    );
    row(
        "the outbox never above its bound",
        over.is_empty(),
        format!(
            "largest {largest:?} of {OUTBOX}; failures dropped when full {dropped:?}{}",
            first(&over)
        ),
    );
    row(
        "no legitimate or ignoreip client banned",
        unearned.is_empty(),
        format!("{} banned{}", unearned.len(), first(&unearned)),
    );
    row(
        "failures counted twice only bring a ban sooner (measured)",
        true,
        format!(
            "{sooner} of {bans} bans on h0 with fewer than {MAXRETRY} failures within findtime behind them"
        ),
    );
    row(
        "no panic in any log",
        panics == 0,
        format!("{panics} panics"),
    );
    let _ = writeln!(report, "\nFleet nemesis ({} faults):", history.faults.len());
    for (at, fault) in &history.faults {
        let _ = writeln!(report, "- {:>7.1} s {fault}", at.as_secs_f64());
    }
    let findings = [&late, &too_long, &over, &unearned]
        .into_iter()
        .flatten()
        .map(|f| format!("{f}\n"))
        .collect();
    Verdict {
        holds,
        report,
        findings,
    }
}
