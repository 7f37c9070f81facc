//! The product end to end: the example FastAPI app (examples/fastapi-auth, run from its own
//! virtual environment) brute-forced over real HTTP, and ban-agent, with the example's
//! configuration, dropping the attacker in XDP on the server's interface.
//!
//! Four test-made namespaces: `lan` holds a bridge, and the server (app + agent), the
//! attacker and a legitimate client each have one veth into it.

use crate::common;

use std::{
    io::Write as _,
    net::IpAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ban_agent::clock::boot_ns;
use common::{
    Netns, Pins,
    agent::{self, Daemon},
    net::{Server, connects, http, http_with},
    sh, veth,
};

const SERVER_V4: &str = "192.0.2.1";
const SERVER_V6: &str = "2001:db8::1";
const ATTACKER_V4: &str = "192.0.2.66";
const ATTACKER_V6: &str = "2001:db8::66";
const CLIENT_V4: &str = "192.0.2.10";
const CLIENT_V6: &str = "2001:db8::10";
/// Short, so that the test sees a ban expire.
const BANTIME_S: u64 = 10;
/// Bans whose detection latency is measured.
const REPETITIONS: usize = 6;

const BAD_LOGIN: &str = r#"{"username": "alice", "password": "guess"}"#;
const GOOD_LOGIN: &str = r#"{"username": "alice", "password": "correct horse battery staple"}"#;
/// Taken: a 400 on /register.
const DUPLICATE: &str = r#"{"username": "alice", "password": "long enough password"}"#;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/fastapi-auth")
}

/// `host:port` for a socket address string.
fn at(addr: &str, port: u16) -> String {
    match addr.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{addr}]:{port}"),
        _ => format!("{addr}:{port}"),
    }
}

struct Scene {
    server: Netns,
    attacker: Netns,
    client: Netns,
    _lan: Netns,
    pins: Pins,
    dir: tempfile::TempDir,
}

impl Scene {
    fn new() -> Self {
        let lan = Netns::new("e2el");
        lan.ip(&["link", "add", "br0", "type", "bridge"]);
        lan.ip(&["link", "set", "br0", "up"]);
        let server = Netns::new("e2es");
        let attacker = Netns::new("e2ea");
        let client = Netns::new("e2ec");
        for (ns, port, v4, v6) in [
            (&server, "ps", SERVER_V4, SERVER_V6),
            (&attacker, "pa", ATTACKER_V4, ATTACKER_V6),
            (&client, "pc", CLIENT_V4, CLIENT_V6),
        ] {
            veth(
                ns,
                "eth0",
                &[&format!("{v4}/24"), &format!("{v6}/64")],
                &lan,
                port,
                &[],
            );
            lan.ip(&["link", "set", port, "master", "br0"]);
        }
        Self {
            server,
            attacker,
            client,
            _lan: lan,
            pins: Pins::new("e2e"),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The example's ban-agent.toml, moved into the test's folders and namespace, with a
    /// short bantime; every other setting as shipped.
    fn configure(&self) {
        let shipped = example().join("ban-agent.toml");
        let text = std::fs::read_to_string(&shipped).expect("read the example config");
        self.configure_from(&text);
    }

    /// What `ban-agent import-fail2ban` makes of the example's fail2ban pair, moved the
    /// same way.
    fn configure_imported(&self) {
        let out = sh(Command::new(agent::AGENT)
            .arg("import-fail2ban")
            .arg(example().join("fail2ban")));
        let text = String::from_utf8(out.stdout).expect("UTF-8 configuration");
        assert!(text.contains("fastapi-auth.conf"), "{text}");
        self.configure_from(&text);
    }

    fn configure_from(&self, text: &str) {
        let mut config: toml::Table = text.parse().expect("the configuration is TOML");
        let dir = self.dir.path().display().to_string();
        for (key, value) in [
            ("interfaces", toml::Value::Array(vec!["eth0".into()])),
            ("state_dir", format!("{dir}/state").into()),
            ("socket", format!("{dir}/ctl.sock").into()),
            ("pin_dir", self.pins.dir.display().to_string().into()),
        ] {
            config.insert(key.to_owned(), value);
        }
        let jail = config
            .get_mut("jail")
            .and_then(|jails| jails.get_mut("fastapi-auth"))
            .and_then(toml::Value::as_table_mut)
            .expect("the example has jail fastapi-auth");
        jail.insert("logpath".into(), format!("{dir}/access.log").into());
        common::app_log(&self.path("access.log"));
        jail.insert("bantime".into(), format!("{BANTIME_S}s").into());
        std::fs::write(self.path("ban-agent.toml"), config.to_string()).expect("write config");
    }

    fn start_agent(&self) -> Daemon {
        Daemon::start_in(&self.server, self.dir.path())
    }

    fn cli(&self, args: &[&str]) -> String {
        agent::cli(&self.path("ctl.sock"), args)
    }

    fn dropped_packets(&self) -> u64 {
        let stats = agent::cli_json(&self.path("ctl.sock"), &["stats", "--json"]);
        stats["jails"]["fastapi-auth"]["dropped_packets"]
            .as_u64()
            .unwrap_or_else(|| panic!("no dropped_packets in {stats}"))
    }

    fn in_kernel(&self, maps: &ban_agent::datapath::Maps, addr: &str) -> bool {
        let addr: IpAddr = addr.parse().expect("address");
        maps.list()
            .expect("list the maps")
            .iter()
            .any(|ban| ban.target.contains(&addr))
    }
}

/// The example app in the server namespace, killed on drop.
struct App(Child);

impl App {
    fn start(scene: &Scene) -> Self {
        let out = sh(&mut Command::new(example().join("venv.sh")));
        let venv = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let log = std::fs::File::create(scene.path("app.out")).expect("app output");
        let child = scene
            .server
            .command(venv.join("bin/python"))
            .arg(example().join("app.py"))
            .env("ACCESS_LOG", scene.path("access.log"))
            .env("PORT", "8000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the app");
        let app = Self(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !connects(&scene.client, &at(SERVER_V4, 8000)) {
            assert!(
                Instant::now() < deadline,
                "the app did not listen on 8000 within 30 s:\n{}",
                std::fs::read_to_string(scene.path("app.out")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        app
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _killed = self.0.kill();
        let _reaped = self.0.wait();
    }
}

fn post(ns: &Netns, server: &str, path: &str, json: &str) -> common::net::Response {
    http(ns, &at(server, 8000), "POST", path, Some(json))
}

/// The legitimate client logs in over both families, and is never refused.
fn client_logs_in(scene: &Scene) {
    for server in [SERVER_V4, SERVER_V6] {
        let response = post(&scene.client, server, "/login", GOOD_LOGIN);
        assert_eq!(response.status, 200, "legitimate login to {server}");
        assert!(response.body.contains("token"), "{}", response.body);
    }
}

/// Five failures from `ns` to `server` (`path` answering `status` each time), and the
/// time from the fifth response until the source is in the kernel's ban map.
fn attack(
    scene: &Scene,
    maps: &ban_agent::datapath::Maps,
    (server, source): (&str, &str),
    (path, json, status): (&str, &str, u16),
    daemon: &Daemon,
) -> Duration {
    let mut last = None;
    for attempt in 1..=5 {
        let response = post(&scene.attacker, server, path, json);
        assert_eq!(response.status, status, "attempt {attempt} on {path}");
        last = Some(response.at);
    }
    let fifth = last.expect("five responses");
    // A tight poll (not `eventually`'s 20 ms), so that the latency is not the poll's.
    let deadline = fifth + Duration::from_secs(5);
    while !scene.in_kernel(maps, source) {
        assert!(
            Instant::now() < deadline,
            "{source} not banned within 5 s of the fifth failure:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_micros(100));
    }
    fifth.elapsed()
}

/// The expiry `bpftool map dump` shows for `addr` (IPv4) in the pinned ban_v4 map.
fn bpftool_expiry(pins: &Path, addr: [u8; 4]) -> Option<u64> {
    let out = sh(Command::new("bpftool")
        .args(["--json", "map", "dump", "pinned"])
        .arg(pins.join("ban_v4")));
    let dump: serde_json::Value = serde_json::from_slice(&out.stdout).expect("bpftool JSON");
    let wanted: Vec<serde_json::Value> = addr.iter().map(|&b| b.into()).collect();
    dump.as_array()?.iter().find_map(|entry| {
        let formatted = &entry["formatted"];
        (formatted["key"]["addr"].as_array() == Some(&wanted))
            .then(|| formatted["value"]["expires_at_ns"].as_u64())
            .flatten()
    })
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

/// The switch from fail2ban: its filter and jail for the app, imported as they are, ban
/// the attacker the TOML configuration bans (a 401 on /login over IPv4, a 400 on
/// /register over IPv6), and not the client.
#[test]
fn the_imported_fail2ban_jail_bans_the_attacker_the_toml_one_bans() {
    let Some(_serial) =
        common::privileged("the_imported_fail2ban_jail_bans_the_attacker_the_toml_one_bans")
    else {
        return;
    };
    let scene = Scene::new();
    scene.configure_imported();
    let _app = App::start(&scene);
    let daemon = scene.start_agent();
    let maps = ban_agent::datapath::Maps::open_pinned(&scene.pins.dir).expect("pinned maps");
    client_logs_in(&scene);
    attack(
        &scene,
        &maps,
        (SERVER_V4, ATTACKER_V4),
        ("/login", BAD_LOGIN, 401),
        &daemon,
    );
    attack(
        &scene,
        &maps,
        (SERVER_V6, ATTACKER_V6),
        ("/register", DUPLICATE, 400),
        &daemon,
    );
    let status = scene.cli(&["status", "fastapi-auth"]);
    assert!(
        status.contains(ATTACKER_V4) && status.contains(ATTACKER_V6),
        "{status}"
    );
    assert!(
        status.contains("fastapi-auth.conf"),
        "the fail2ban filter runs:\n{status}"
    );
    client_logs_in(&scene);
    for client in [CLIENT_V4, CLIENT_V6] {
        assert!(
            !scene.in_kernel(&maps, client),
            "{client} banned:\n{}",
            daemon.log()
        );
    }
}

#[test]
fn a_brute_forced_fastapi_login_is_dropped_in_xdp_and_the_client_is_not() {
    let Some(_serial) =
        common::privileged("a_brute_forced_fastapi_login_is_dropped_in_xdp_and_the_client_is_not")
    else {
        return;
    };
    let scene = Scene::new();
    scene.configure();
    // The app first: Server below sets bindv6only in the namespace.
    let _app = App::start(&scene);
    let _other_port = Server::start(&scene.server, &[9000]);
    let daemon = scene.start_agent();
    let maps = ban_agent::datapath::Maps::open_pinned(&scene.pins.dir).expect("pinned maps");
    client_logs_in(&scene);
    let created = post(
        &scene.client,
        SERVER_V4,
        "/register",
        r#"{"username": "carol", "password": "a long password"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);

    // 1. Five bad logins, five 401s; the next connection to 8000 gets no answer.
    let mut latencies = vec![attack(
        &scene,
        &maps,
        (SERVER_V4, ATTACKER_V4),
        ("/login", BAD_LOGIN, 401),
        &daemon,
    )];
    let banned_at = boot_ns();

    // 4. status lists it; bpftool shows it with its expiry.
    let status = scene.cli(&["status", "fastapi-auth"]);
    assert!(status.contains(ATTACKER_V4), "{status}");
    let expiry = bpftool_expiry(&scene.pins.dir, [192, 0, 2, 66])
        .expect("bpftool map dump lists the attacker");
    let expected = banned_at + BANTIME_S * 1_000_000_000;
    assert!(
        expiry.abs_diff(expected) < 2_000_000_000,
        "expiry {expiry} ns, expected about {expected} ns (boot clock)"
    );

    let dropped = scene.dropped_packets();
    assert!(
        !connects(&scene.attacker, &at(SERVER_V4, 8000)),
        "banned, yet connected to 8000"
    );
    assert!(
        scene.dropped_packets() > dropped,
        "the jail's drop counter grew"
    );

    // 3. Only port 8000 is protected.
    assert!(
        connects(&scene.attacker, &at(SERVER_V4, 9000)),
        "the attacker reaches another port"
    );

    // 2. The client is untouched; 400s on /register count as failures, here over IPv6.
    client_logs_in(&scene);
    attack(
        &scene,
        &maps,
        (SERVER_V6, ATTACKER_V6),
        ("/register", DUPLICATE, 400),
        &daemon,
    );
    assert!(!connects(&scene.attacker, &at(SERVER_V6, 8000)));
    client_logs_in(&scene);

    // 5. The IPv4 ban expires in the kernel, without the agent's help.
    let left = (banned_at + BANTIME_S * 1_000_000_000).saturating_sub(boot_ns());
    std::thread::sleep(Duration::from_nanos(left) + Duration::from_millis(200));
    assert!(
        connects(&scene.attacker, &at(SERVER_V4, 8000)),
        "the ban expired, yet dropped"
    );

    // ... `unban` lifts a ban at once: each repetition bans, measures, unbans.
    scene.cli(&["unban", ATTACKER_V6]);
    for round in 1..REPETITIONS {
        let (server, source) = if round % 2 == 0 {
            (SERVER_V4, ATTACKER_V4)
        } else {
            (SERVER_V6, ATTACKER_V6)
        };
        latencies.push(attack(
            &scene,
            &maps,
            (server, source),
            ("/login", BAD_LOGIN, 401),
            &daemon,
        ));
        assert!(!connects(&scene.attacker, &at(server, 8000)));
        let out = scene.cli(&["unban", source]);
        assert!(out.contains("unbanned"), "{out}");
        assert!(
            connects(&scene.attacker, &at(server, 8000)),
            "unbanned {source}, yet dropped"
        );
    }

    // ... and a ban survives a restart of the agent, dropping while it is down.
    scene.cli(&["ban", "fastapi-auth", ATTACKER_V4, "--for", "1h"]);
    daemon.signal("-TERM");
    daemon.wait();
    assert!(
        !connects(&scene.attacker, &at(SERVER_V4, 8000)),
        "dropped while the agent is down"
    );
    let daemon = scene.start_agent();
    let status = scene.cli(&["status", "fastapi-auth"]);
    assert!(
        status.contains(ATTACKER_V4),
        "listed after the restart: {status}"
    );
    assert!(!connects(&scene.attacker, &at(SERVER_V4, 8000)));
    client_logs_in(&scene);

    // 6. Detection latency: the fifth failure's response to the ban in the kernel map.
    latencies.sort();
    // Written to stderr directly, past the harness's capture, so `cargo xtask test`
    // shows it.
    let line = format!(
        "fastapi_e2e: detection latency over {} bans (5th failure's response -> kernel map): \
         p50 {:.2} ms, max {:.2} ms\n",
        latencies.len(),
        percentile(&latencies, 50).as_secs_f64() * 1e3,
        percentile(&latencies, 100).as_secs_f64() * 1e3,
    );
    let _shown = std::io::stderr().write_all(line.as_bytes());
    scene.cli(&["stop"]);
    daemon.wait();
}

/// A fake log line naming the client as the failing host, for injection attempts.
const FORGED_LINE: &str =
    r#"2026-11-25 12:00:00,000 - fastapi-auth - INFO - 192.0.2.10 - "POST /login" 401 - 0.0100s"#;

// Log injection: the attacker controls the path, the query, headers (X-Forwarded-For,
// User-Agent, X-Client-IP) and the user name, and puts a forged failure of the legitimate client
// in each. None gets the client banned, none hides the attacker's own failures: the log
// holds exactly the attacker's five failures, under its own address, and it is the one
// banned. What protects, in layers: the app logs only the two exact paths and the TCP
// peer, no header and no user input (with the app logging X-Forwarded-For or the user
// name, the forged client would be in the line); and the shipped filter is anchored at
// both ends with <HOST> before anything a client sends, which filters/tests/
// fastapi-auth.log tries with forged text inside lines (unanchored, those lines would
// yield 198.51.100.1).
#[test]
fn crafted_requests_get_nobody_else_banned_and_hide_no_failure() {
    let Some(_serial) =
        common::privileged("crafted_requests_get_nobody_else_banned_and_hide_no_failure")
    else {
        return;
    };
    let scene = Scene::new();
    scene.configure();
    let _app = App::start(&scene);
    let daemon = scene.start_agent();
    let maps = ban_agent::datapath::Maps::open_pinned(&scene.pins.dir).expect("pinned maps");
    let to = at(SERVER_V4, 8000);
    let encoded = FORGED_LINE.replace(' ', "%20").replace('"', "%22");
    // Not an audited path: answered 404, not logged, not a failure.
    let response = http(
        &scene.attacker,
        &to,
        "POST",
        &format!("/login%0A{encoded}"),
        Some(BAD_LOGIN),
    );
    assert_eq!(response.status, 404);
    let forged_headers = [
        format!("X-Forwarded-For: {CLIENT_V4}"),
        format!("X-Real-IP: {CLIENT_V4}"),
        format!("Forwarded: for={CLIENT_V4}"),
        format!("User-Agent: {FORGED_LINE}"),
    ];
    let headers: Vec<&str> = forged_headers.iter().map(String::as_str).collect();
    let name_with_line = format!(
        r#"{{"username": "x\n{}", "password": "guess"}}"#,
        FORGED_LINE.replace('"', "\\\"")
    );
    let query = format!("/login?next=%0A{encoded}");
    let attempts: [(&str, &[&str], &str); 5] = [
        ("/login", &headers, BAD_LOGIN),
        (
            "/login",
            &["X-Client-IP: 192.0.2.10", "True-Client-IP: 192.0.2.10"],
            BAD_LOGIN,
        ),
        ("/login", &[], &name_with_line),
        (&query, &[], BAD_LOGIN),
        ("/login", &headers, &name_with_line),
    ];
    for (path, headers, body) in attempts {
        let response = http_with(&scene.attacker, &to, ("POST", path), headers, Some(body));
        assert_eq!(
            response.status, 401,
            "{path} {headers:?}: {}",
            response.body
        );
    }
    agent::eventually(&daemon, "the attacker is banned", || {
        scene.in_kernel(&maps, ATTACKER_V4)
    });
    let log = std::fs::read_to_string(scene.path("access.log")).expect("the app's log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 5, "one line per audited request:\n{log}");
    assert!(
        lines
            .iter()
            .all(|line| line.contains(&format!(" - {ATTACKER_V4} - \"POST /login\" 401 - "))),
        "{log}"
    );
    let banned: Vec<String> = maps
        .list()
        .expect("list")
        .iter()
        .map(|ban| ban.target.to_string())
        .collect();
    assert_eq!(banned, [format!("{ATTACKER_V4}/32")]);
    let status = agent::cli_json(
        &scene.path("ctl.sock"),
        &["status", "fastapi-auth", "--json"],
    );
    assert_eq!(status["total_failed"], 5, "{status}");
    client_logs_in(&scene);
    agent::cli(&scene.path("ctl.sock"), &["stop"]);
    daemon.wait();
}
