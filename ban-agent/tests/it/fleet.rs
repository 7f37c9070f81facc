//! Three agents sharing one engine, as three web hosts behind a load balancer: each runs
//! `ban-agent run` in a server namespace of its own with its datapath (tc) on its own
//! veths, its own pins, state and log, and the fleet on a `redis-server` the test starts
//! (unix socket, password, signed bans). An attacker and a legitimate client reach every
//! host from namespaces of their own.
//!
//! One test, in steps, because each step starts from the last one's fleet: failures
//! spread 2 + 2 + 1 ban everywhere (packets dropped on all three), one failure bans
//! nowhere; an unban on one host lifts the ban everywhere; forged entries (the hosts'
//! shared address, an ignoreip address, a bad signature) are refused everywhere; with the
//! engine killed, local bans go on, an agent started then protects locally, and the bans
//! of the outage reach the other hosts once the engine is back.

use crate::common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ban_agent::fleet::{Outgoing, Signer};
use common::{
    Netns, Pins,
    agent::{Daemon, cli, cli_json, login_line, now_stamp},
    net::Server,
    redis::{PASSWORD, Server as Redis},
    veth,
};

const HOSTS: usize = 3;
const KEY: &[u8] = b"the test fleet's shared key, 32+";
/// The attacker and the legitimate client, each in a namespace of its own.
const ATTACKER: &str = "198.51.100.66";
const CLIENT: &str = "198.51.100.77";
/// Every host has it (a service address behind the load balancer): never banned.
const SHARED: &str = "192.0.2.200";
/// In every jail's ignoreip.
const IGNORED: &str = "198.51.100.200";

struct Host {
    ns: Netns,
    _pins: Pins,
    dir: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    config: PathBuf,
    /// Its address, on lo; reached through its veths.
    address: String,
}

impl Host {
    fn start(&self) -> Daemon {
        Daemon::start(
            &self.ns,
            &[],
            &self.config,
            &[],
            &self.socket,
            &self.dir.join("agent.log"),
        )
    }

    fn write(&self, ip: &str, failures: usize) {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .expect("open the log");
        for _ in 0..failures {
            file.write_all(login_line(&now_stamp(), ip, 401).as_bytes())
                .expect("write the log");
        }
    }

    fn banned(&self, ip: &str) -> bool {
        let bans = cli_json(&self.socket, &["banned", "--json"]);
        let target = format!("{ip}/32");
        bans["bans"]
            .as_array()
            .expect("a list of bans")
            .iter()
            .any(|ban| ban["target"].as_str() == Some(target.as_str()))
    }

    fn fleet(&self) -> serde_json::Value {
        cli_json(&self.socket, &["status", "--json"])["fleet"].clone()
    }
}

/// Waits up to 10 s for `condition`, failing with the agents' logs.
fn eventually(hosts: &[Host], what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        if started.elapsed() > Duration::from_secs(10) {
            let logs: Vec<String> = hosts
                .iter()
                .map(|h| std::fs::read_to_string(h.dir.join("agent.log")).unwrap_or_default())
                .collect();
            panic!("timed out: {what}\n{}", logs.join("\n-----\n"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

fn write_private(path: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, bytes).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A forged entry, as someone with the engine's password appends it.
fn forge(redis: &Redis, target: &str, signer: &Signer) {
    let entry = Outgoing::Ban {
        jail: "fastapi-auth".to_owned(),
        target: format!("{target}/32").parse().expect("network"),
        expires: Some(now_ms() + 3_600_000),
        failures: 5,
        at: now_ms(),
        force: true,
    }
    .entry("intruder");
    let sig = signer.sign(&entry);
    let (expires, at) = (
        entry.expires().unwrap_or(0).to_string(),
        entry.at.to_string(),
    );
    let target = entry.target.to_string();
    redis.cli(&[
        "XADD",
        "test:bans",
        "*",
        "op",
        "ban",
        "jail",
        "fastapi-auth",
        "target",
        &target,
        "expires",
        &expires,
        "at",
        &at,
        "host",
        "intruder",
        "failures",
        "5",
        "sig",
        &sig,
    ]);
}

fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

#[test]
fn three_hosts_share_failures_and_bans_and_refuse_what_they_must() {
    let test = "three_hosts_share_failures_and_bans_and_refuse_what_they_must";
    let Some(_serial) = common::privileged(test) else {
        return;
    };
    let mut redis = Redis::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let password = dir.path().join("redis.password");
    write_private(&password, PASSWORD.as_bytes());
    let key = dir.path().join("fleet.key");
    write_private(&key, KEY);

    let attacker = Netns::new("fla");
    let client = Netns::new("flc");
    attacker.ip(&["addr", "add", &format!("{ATTACKER}/32"), "dev", "lo"]);
    client.ip(&["addr", "add", &format!("{CLIENT}/32"), "dev", "lo"]);
    let mut hosts = Vec::new();
    for i in 1..=HOSTS {
        let ns = Netns::new(&format!("fl{i}"));
        let address = format!("192.0.2.{i}");
        ns.ip(&["addr", "add", &format!("{address}/32"), "dev", "lo"]);
        ns.ip(&["addr", "add", &format!("{SHARED}/32"), "dev", "lo"]);
        for (peer, peer_ip, side) in [(&attacker, ATTACKER, "x"), (&client, CLIENT, "g")] {
            let here = format!("{side}{i}");
            let there = format!("{side}{i}p");
            veth(&ns, &here, &[], peer, &there, &[]);
            ns.ip(&["route", "add", &format!("{peer_ip}/32"), "dev", &here]);
            peer.ip(&[
                "route",
                "add",
                &format!("{address}/32"),
                "dev",
                &there,
                "src",
                peer_ip,
            ]);
        }
        let host_dir = dir.path().join(format!("web{i}"));
        std::fs::create_dir(&host_dir).expect("host dir");
        let log = host_dir.join("access.log");
        std::fs::File::create(&log).expect("create the log");
        let pins = Pins::new(&format!("fleet{i}"));
        let socket = host_dir.join("ctl.sock");
        let config = host_dir.join("ban-agent.toml");
        let text = format!(
            "socket = \"{socket}\"\nstate_dir = \"{state}\"\npin_dir = \"{pins}\"\n\
             interfaces = [\"x{i}\", \"g{i}\"]\nmode = \"tc\"\n\
             [fleet]\nurl = \"{url}\"\npassword_file = \"{password}\"\nname = \"web{i}\"\n\
             prefix = \"test\"\nkey_file = \"{key}\"\n\
             [jail.fastapi-auth]\nlogpath = \"{log}\"\nfilter = \"fastapi-auth\"\n\
             maxretry = 5\nfindtime = \"10m\"\nbantime = \"1h\"\nports = [8000]\n\
             ignoreip = [\"198.51.100.128/25\"]\n",
            socket = socket.display(),
            state = host_dir.join("state").display(),
            pins = pins.dir.display(),
            url = redis.bare_url(),
            password = password.display(),
            key = key.display(),
            log = log.display(),
        );
        std::fs::write(&config, text).expect("write the configuration");
        hosts.push(Host {
            ns,
            _pins: pins,
            dir: host_dir,
            socket,
            log,
            config,
            address,
        });
    }
    let _servers: Vec<Server> = hosts
        .iter()
        .map(|h| Server::start(&h.ns, &[8000]))
        .collect();
    let mut daemons: Vec<Option<Daemon>> = hosts.iter().map(|h| Some(h.start())).collect();
    eventually(&hosts, "three hosts alive in the fleet", || {
        hosts.iter().all(|h| {
            let fleet = h.fleet();
            fleet["connected"] == true && fleet["peers"].as_array().is_some_and(|p| p.len() == 3)
        })
    });
    let reaches =
        |ns: &Netns, host: &Host| common::net::connects(ns, &format!("{}:8000", host.address));
    for host in &hosts {
        assert!(reaches(&attacker, host), "before the ban: {}", host.address);
        assert!(reaches(&client, host), "the client: {}", host.address);
    }

    // 2 + 2 + 1 failures over three hosts: banned on all three, in the kernel too; the
    // legitimate client's one failure bans nowhere.
    hosts[0].write(ATTACKER, 2);
    hosts[1].write(ATTACKER, 2);
    hosts[0].write(CLIENT, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        hosts.iter().all(|h| !h.banned(ATTACKER)),
        "four failures fleet-wide ban nobody"
    );
    hosts[2].write(ATTACKER, 1);
    let took = eventually(&hosts, "the attacker banned on every host", || {
        hosts.iter().all(|h| h.banned(ATTACKER))
    });
    eprintln!("fleet-wide ban on three hosts within {took:?} (CLI polling included)");
    for host in &hosts {
        assert!(
            !reaches(&attacker, host),
            "banned, yet reached {}",
            host.address
        );
        assert!(
            reaches(&client, host),
            "the client is not banned: {}",
            host.address
        );
        assert!(!host.banned(CLIENT));
    }

    // An unban on one host lifts the ban everywhere.
    let out = cli(&hosts[1].socket, &["unban", ATTACKER]);
    assert!(out.contains("sent to the fleet"), "{out}");
    eventually(&hosts, "the unban reached every host", || {
        hosts.iter().all(|h| !h.banned(ATTACKER))
    });
    for host in &hosts {
        assert!(
            reaches(&attacker, host),
            "unbanned, yet dropped at {}",
            host.address
        );
    }

    // Forged entries: the hosts' own shared address and an ignoreip address (signed with
    // the fleet's key, as a compromised host would), and a bad signature.
    let signer = Signer::with_key(KEY);
    forge(&redis, SHARED, &signer);
    forge(&redis, IGNORED, &signer);
    forge(
        &redis,
        "198.51.100.99",
        &Signer::with_key(b"not the fleet's key at all!!"),
    );
    eventually(&hosts, "three forged entries refused on every host", || {
        hosts.iter().all(|h| h.fleet()["refused"] == 3)
    });
    for host in &hosts {
        for ip in [SHARED, IGNORED, "198.51.100.99"] {
            assert!(!host.banned(ip), "{ip} banned on {}", host.address);
        }
        let log = std::fs::read_to_string(host.dir.join("agent.log")).unwrap_or_default();
        assert!(
            log.contains("refused an entry of the fleet's stream"),
            "{log}"
        );
    }

    // The engine dies: local detection and bans go on.
    redis.stop();
    eventually(&hosts, "every host sees the engine gone", || {
        hosts.iter().all(|h| h.fleet()["connected"] == false)
    });
    let during = "198.51.100.67";
    hosts[0].write(during, 5);
    eventually(&hosts, "a local ban during the outage", || {
        hosts[0].banned(during)
    });
    // An agent started while the engine is gone starts and protects locally.
    let third = daemons[2].take().expect("the third agent");
    cli(&hosts[2].socket, &["stop"]);
    third.wait();
    daemons[2] = Some(hosts[2].start());
    let started_alone = "198.51.100.68";
    hosts[2].write(started_alone, 5);
    eventually(
        &hosts,
        "an agent started without its engine bans locally",
        || hosts[2].banned(started_alone),
    );
    assert!(!hosts[1].banned(during) && !hosts[1].banned(started_alone));

    // The engine returns (empty: it keeps nothing on disk): the outboxes are sent and
    // every host gets the bans of the outage.
    redis.restart();
    eventually(&hosts, "the outage's bans on every host", || {
        hosts
            .iter()
            .all(|h| h.banned(during) && h.banned(started_alone))
    });
    for host in &hosts {
        assert_eq!(host.fleet()["connected"], true);
        for ip in [SHARED, IGNORED, "198.51.100.99"] {
            assert!(!host.banned(ip), "{ip} banned on {}", host.address);
        }
    }
    if std::env::var_os("FLEET_TEST_LOGS").is_some() {
        for host in &hosts {
            let log = std::fs::read_to_string(host.dir.join("agent.log")).unwrap_or_default();
            eprintln!("----- {}\n{log}", host.address);
        }
    }
    // The agents stop before their pins are removed.
    drop(daemons);
    drop(hosts);
}
