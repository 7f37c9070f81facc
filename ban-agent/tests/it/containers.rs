//! A container's published port, with Docker's topology built in test-made namespaces:
//! a "host" with a bridge `docker0` (198.51.100.1/24) and nftables DNAT rules shaped as
//! Docker writes them, a "container" behind the bridge running an HTTP app that logs as
//! uvicorn does, through Docker's json-file driver, and an attacker and a legitimate
//! client outside, each on one of the host's interfaces, where the agent attaches.
//!
//! What it shows: the agent, reading the container's log, drops the attacker on the
//! published port, since its hook runs on the host's ingress before the DNAT; and
//! fail2ban's stock Debian action (an nftables set on the `input` hook) does not stop it,
//! since DNAT-ed traffic is forwarded and never passes `input`.

use crate::common;

use std::{
    io::{BufRead as _, BufReader, Write as _},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use common::{
    Netns, Pins,
    agent::{self, Daemon},
    net::{Server, connects, http},
    sh, veth,
};

const HOST: &str = "192.0.2.1";
const ATTACKER: &str = "192.0.2.2";
const HOST_TO_CLIENT: &str = "192.0.2.5";
const CONTAINER: &str = "198.51.100.2";
/// A port the host serves itself (no DNAT): what fail2ban's `input` rules do see.
const HOST_PORT: u16 = 8001;
const BAD_LOGIN: &str = r#"{"username": "alice", "password": "guess"}"#;

/// The host, its bridge and the container, the attacker and the client.
struct Scene {
    host: Netns,
    attacker: Netns,
    client: Netns,
    container: Netns,
    pins: Pins,
    dir: tempfile::TempDir,
}

impl Scene {
    /// `published`: (host port, container port) pairs, as `docker run -p HOST:CONTAINER`.
    fn new(tag: &str, published: &[(u16, u16)]) -> Self {
        let host = Netns::new(&format!("{tag}h"));
        let attacker = Netns::new(&format!("{tag}a"));
        let client = Netns::new(&format!("{tag}c"));
        let container = Netns::new(&format!("{tag}k"));
        veth(
            &host,
            "h0",
            &["192.0.2.1/30"],
            &attacker,
            "a0",
            &["192.0.2.2/30"],
        );
        veth(
            &host,
            "h1",
            &["192.0.2.5/30"],
            &client,
            "c0",
            &["192.0.2.6/30"],
        );
        host.ip(&["link", "add", "docker0", "type", "bridge"]);
        host.ip(&["addr", "add", "198.51.100.1/24", "dev", "docker0"]);
        host.ip(&["link", "set", "docker0", "up"]);
        veth(
            &host,
            "vethk",
            &[],
            &container,
            "eth0",
            &["198.51.100.2/24"],
        );
        host.ip(&["link", "set", "vethk", "master", "docker0"]);
        attacker.ip(&["route", "add", "default", "via", HOST]);
        client.ip(&["route", "add", "default", "via", HOST_TO_CLIENT]);
        container.ip(&["route", "add", "default", "via", "198.51.100.1"]);
        sh(host
            .command("sysctl")
            .args(["-qw", "net.ipv4.ip_forward=1"]));
        nft(&host, &docker_rules(published));
        Self {
            host,
            attacker,
            client,
            container,
            pins: Pins::new(tag),
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The agent on the host's two outer interfaces, with one jail reading every
    /// container's json-file log (a glob: the container starts after the agent) with
    /// the built-in uvicorn filter, protecting `port` of the host.
    fn start_agent(&self, port: u16) -> Daemon {
        let dir = self.dir.path().display();
        let config = format!(
            "interfaces = [\"h0\", \"h1\"]\nstate_dir = \"{dir}/state\"\n\
             socket = \"{dir}/ctl.sock\"\npin_dir = \"{}\"\n\n\
             [jail.api]\nlogpath = \"{dir}/containers/*/*-json.log\"\nfilter = \"uvicorn\"\n\
             maxretry = 3\nfindtime = \"10m\"\nbantime = \"1h\"\nports = [{port}]\n",
            self.pins.dir.display()
        );
        std::fs::create_dir_all(self.path("containers")).expect("mkdir containers");
        std::fs::write(self.path("ban-agent.toml"), config).expect("write config");
        Daemon::start_in(&self.host, self.dir.path())
    }

    fn cli(&self, args: &[&str]) -> String {
        agent::cli(&self.path("ctl.sock"), args)
    }
}

/// Docker's NAT for published ports, as Docker writes it with iptables-nft: a DOCKER
/// chain jumped to for the host's own addresses, a DNAT per port for traffic not from
/// the bridge, and masquerading of the containers' own traffic out.
fn docker_rules(published: &[(u16, u16)]) -> String {
    let dnat: String = published
        .iter()
        .map(|(host, inside)| {
            format!(
                "    iifname != \"docker0\" tcp dport {host} counter dnat to {CONTAINER}:{inside}\n"
            )
        })
        .collect();
    format!(
        "table ip nat {{\n  chain PREROUTING {{\n    type nat hook prerouting priority dstnat; \
         policy accept;\n    fib daddr type local counter jump DOCKER\n  }}\n  \
         chain DOCKER {{\n{dnat}  }}\n  chain POSTROUTING {{\n    type nat hook postrouting \
         priority srcnat; policy accept;\n    ip saddr 198.51.100.0/24 oifname != \"docker0\" \
         masquerade\n  }}\n}}\n"
    )
}

/// fail2ban's stock Debian ban (`banaction = nftables`, action.d/nftables.conf): a set
/// per jail in table `inet f2b-table`, matched in a chain on the `input` hook at
/// priority -1, rejecting the jail's ports; here with `ATTACKER` banned.
fn fail2ban_rules(ports: &[u16]) -> String {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "table inet f2b-table {{\n  set addr-set-api {{\n    type ipv4_addr\n    \
         elements = {{ {ATTACKER} }}\n  }}\n  chain f2b-chain {{\n    type filter hook input \
         priority filter - 1; policy accept;\n    tcp dport {{ {} }} ip saddr @addr-set-api \
         reject\n  }}\n}}\n",
        ports.join(", ")
    )
}

fn nft(ns: &Netns, rules: &str) {
    let mut child = ns
        .command("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("nft's stdin")
        .write_all(rules.as_bytes())
        .expect("write the rules");
    let status = child.wait().expect("wait for nft");
    assert!(status.success(), "nft refused:\n{rules}");
}

/// An HTTP app in the container: every `POST /login` is refused (401), anything else is
/// 200; each request is logged as uvicorn logs it, with the address the container saw,
/// through Docker's json-file driver into `CONTAINERS/ID/ID-json.log` (made when the app
/// starts, as Docker does).
struct App {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    log: PathBuf,
}

impl App {
    fn start(container: &Netns, port: u16, containers: &Path) -> Self {
        let id = "0a1b2c3d4e5f";
        let folder = containers.join(id);
        std::fs::create_dir_all(&folder).expect("the container's folder");
        let log = folder.join(format!("{id}-json.log"));
        common::app_log(&log);
        let listener: TcpListener =
            container.run(|| TcpListener::bind(("0.0.0.0", port)).expect("bind the app"));
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let path = log.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, peer)) => serve(stream, peer, &path),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
            log,
        }
    }

    /// The addresses the app logged, in order.
    fn logged_clients(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).ok()?;
                let message = entry["log"].as_str()?;
                let rest = message.strip_prefix("INFO:")?.trim_start();
                Some(rest.split(':').next()?.to_owned())
            })
            .collect()
    }
}

/// Answers one request and logs it.
fn serve(stream: std::net::TcpStream, peer: SocketAddr, log: &Path) {
    let _blocking = stream.set_nonblocking(false);
    let _timeout = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reader = BufReader::new(&stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    // The headers, up to the empty line, then the body: read whole, though the answer
    // does not depend on it, since closing a socket with unread bytes resets the
    // connection, and the client may lose the answer.
    let mut header = String::new();
    let mut length = 0;
    while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
        header.clear();
    }
    let mut body = vec![0; length];
    if std::io::Read::read_exact(&mut reader, &mut body).is_err() {
        return;
    }
    let mut words = request_line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, reason) = if method == "POST" && path == "/login" {
        (401, "Unauthorized")
    } else {
        (200, "OK")
    };
    let line = format!(
        "INFO:     {}:{} - \"{method} {path} HTTP/1.1\" {status} {reason}\n",
        peer.ip(),
        peer.port()
    );
    let entry = serde_json::json!({
        "log": line,
        "stream": "stdout",
        "time": jiff::Timestamp::now().to_string(),
    });
    if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(log) {
        let _logged = writeln!(file, "{entry}");
    }
    let _answered = (&stream).write_all(
        format!("HTTP/1.1 {status} {reason}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    );
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _joined = thread.join();
        }
    }
}

/// Logs in badly from the attacker through the host's published `port` until the agent
/// bans it (at most `maxretry` times are needed: 3).
fn brute_force(scene: &Scene, port: u16) {
    for _ in 0..3 {
        let response = http(
            &scene.attacker,
            &format!("{HOST}:{port}"),
            "POST",
            "/login",
            Some(BAD_LOGIN),
        );
        assert_eq!(response.status, 401, "{}", response.body);
    }
}

/// Whether the jail's status lists the attacker as banned.
fn banned(scene: &Scene) -> bool {
    let status = agent::cli_json(&scene.path("ctl.sock"), &["status", "api", "--json"]);
    status["banned"].as_array().is_some_and(|banned| {
        banned
            .iter()
            .any(|target| target.as_str().is_some_and(|t| t.starts_with(ATTACKER)))
    })
}

#[test]
fn a_published_port_is_protected_where_fail2bans_input_rules_see_nothing() {
    let Some(_serial) =
        common::privileged("a_published_port_is_protected_where_fail2bans_input_rules_see_nothing")
    else {
        return;
    };
    let scene = Scene::new("dn", &[(8000, 8000)]);
    let _host_service = Server::start(&scene.host, &[HOST_PORT]);
    let app = App::start(&scene.container, 8000, &scene.path("containers"));

    // fail2ban's ban of the attacker, as its Debian action writes it: the attacker is
    // refused on a port the host serves itself, and still reaches the container.
    nft(&scene.host, &fail2ban_rules(&[8000, HOST_PORT]));
    assert!(
        !connects(&scene.attacker, &format!("{HOST}:{HOST_PORT}")),
        "fail2ban's rules do ban the attacker from the host's own service"
    );
    let response = http(
        &scene.attacker,
        &format!("{HOST}:8000"),
        "POST",
        "/login",
        Some(BAD_LOGIN),
    );
    assert_eq!(
        response.status, 401,
        "banned by fail2ban, the attacker still reaches the published port"
    );
    assert_eq!(
        app.logged_clients(),
        [ATTACKER],
        "the container sees the attacker's own address (DNAT, no proxy)"
    );
    sh(scene
        .host
        .command("nft")
        .args(["delete", "table", "inet", "f2b-table"]));

    // The agent reads the container's log and drops the attacker on the host's ingress.
    let daemon = scene.start_agent(8000);
    brute_force(&scene, 8000);
    agent::eventually(&daemon, "the attacker is banned", || banned(&scene));
    assert!(
        !connects(&scene.attacker, &format!("{HOST}:8000")),
        "the banned attacker still reaches the published port"
    );
    assert!(
        connects(&scene.client, &format!("{HOST_TO_CLIENT}:8000")),
        "the legitimate client is cut off from the published port"
    );
    assert!(
        connects(&scene.attacker, &format!("{HOST}:{HOST_PORT}")),
        "a port the jail does not protect is dropped"
    );
    let status = scene.cli(&["status", "api"]);
    assert!(status.contains(ATTACKER), "{status}");
    assert!(
        !daemon
            .log()
            .contains("most failures of this jail come from one address"),
        "the attacker's own address is logged: nothing is lost"
    );
    assert!(status.contains("0a1b2c3d4e5f-json.log"), "{status}");
    let dropped = agent::cli_json(&scene.path("ctl.sock"), &["stats", "--json"]);
    assert!(
        dropped["jails"]["api"]["dropped_packets"]
            .as_u64()
            .is_some_and(|n| n > 0),
        "{dropped}"
    );
}

/// `-p 8080:8000`: the jail's `ports` are the host's published port, which is what the
/// attacker's packets carry on the host's ingress (the DNAT to 8000 comes after).
#[test]
fn a_port_published_under_another_number_is_protected_by_the_hosts_number() {
    let Some(_serial) = common::privileged(
        "a_port_published_under_another_number_is_protected_by_the_hosts_number",
    ) else {
        return;
    };
    let scene = Scene::new("dp", &[(8080, 8000)]);
    // The container starts after the agent: its log is picked up as it appears.
    let daemon = scene.start_agent(8080);
    let _app = App::start(&scene.container, 8000, &scene.path("containers"));
    brute_force(&scene, 8080);
    agent::eventually(&daemon, "the attacker is banned", || banned(&scene));
    assert!(
        !connects(&scene.attacker, &format!("{HOST}:8080")),
        "the banned attacker still reaches the port published as 8080"
    );
    assert!(
        connects(&scene.client, &format!("{HOST_TO_CLIENT}:8080")),
        "the legitimate client is cut off"
    );
}

/// A proxy in the path (Docker's userland proxy; here the same effect by masquerading
/// towards the container): the app logs the bridge's gateway for every client. The
/// gateway is this host's address, so it is never banned, and the agent says why no
/// attacker is.
#[test]
fn the_bridges_gateway_is_spared_and_the_lost_address_is_said() {
    let Some(_serial) =
        common::privileged("the_bridges_gateway_is_spared_and_the_lost_address_is_said")
    else {
        return;
    };
    let scene = Scene::new("dg", &[(8000, 8000)]);
    nft(
        &scene.host,
        "table ip proxy {\n  chain POSTROUTING {\n    type nat hook postrouting priority \
         srcnat; policy accept;\n    ip daddr 198.51.100.2 oifname \"docker0\" masquerade\n  \
         }\n}\n",
    );
    let daemon = scene.start_agent(8000);
    let app = App::start(&scene.container, 8000, &scene.path("containers"));
    // 21 failures: the agent judges where they come from after 20.
    for _ in 0..7 {
        brute_force(&scene, 8000);
    }
    assert!(
        app.logged_clients()
            .iter()
            .all(|client| client == "198.51.100.1"),
        "the app sees the gateway: {:?}",
        app.logged_clients()
    );
    agent::eventually(&daemon, "the lost address is said", || {
        daemon
            .log()
            .contains("most failures of this jail come from one address it never bans")
    });
    assert!(!banned(&scene), "the gateway was banned");
    assert!(
        connects(&scene.attacker, &format!("{HOST}:8000")),
        "nobody is dropped"
    );
}

/// The Kubernetes manifests build (`kubectl kustomize`, offline: kubectl's own parser,
/// kinds and references), run the agent with exactly the capabilities it needs and not
/// privileged, mount what it reads and keeps; and the configuration they carry passes
/// `ban-agent check`.
#[test]
fn the_kubernetes_manifests_build_and_their_configuration_passes_check() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let out = sh(Command::new("kubectl").arg("kustomize").arg(&deploy));
    let rendered = String::from_utf8(out.stdout).expect("UTF-8 manifests");
    for kind in ["Namespace", "ServiceAccount", "ConfigMap", "DaemonSet"] {
        assert!(
            rendered.contains(&format!("kind: {kind}\n")),
            "no {kind} in:\n{rendered}"
        );
    }
    for needed in [
        "hostNetwork: true",
        "privileged: false",
        "- ALL",
        "- BPF\n",
        "- NET_ADMIN\n",
        "- PERFMON\n",
        "- DAC_READ_SEARCH\n",
        "path: /sys/fs/bpf",
        "path: /var/log/pods",
        "path: /var/log/containers",
        "path: /var/lib/ban-agent",
        "prometheus.io/scrape: \"true\"",
        "automountServiceAccountToken: false",
    ] {
        assert!(
            rendered.contains(needed),
            "the manifests lack {needed:?}:\n{rendered}"
        );
    }
    assert_eq!(
        rendered.matches("- ping").count(),
        2,
        "a liveness and a readiness probe on `ban-agent ping`:\n{rendered}"
    );
    assert!(!rendered.contains("SYS_ADMIN"), "{rendered}");
    // The ConfigMap carries the file as it is.
    let config = deploy.join("ban-agent.toml");
    let text = std::fs::read_to_string(&config).expect("read ban-agent.toml");
    let indented: String = text
        .lines()
        .map(|line| {
            if line.is_empty() {
                "\n".to_owned()
            } else {
                format!("    {line}\n")
            }
        })
        .collect();
    assert!(
        rendered.contains(&indented),
        "the ConfigMap's ban-agent.toml differs"
    );
    let checked = sh(Command::new(agent::AGENT)
        .args(["check", "--offline", "--config"])
        .arg(&config));
    let said = String::from_utf8_lossy(&checked.stdout);
    assert!(said.contains("OK; 1 jail (fastapi-auth)"), "{said}");
}
