//! The daemon as an operator runs it: `ban-agent run` in a test-made server namespace,
//! driven through its real control socket by the real CLI, with an attacker namespace
//! whose packets must be dropped once its failures reach maxretry.

use crate::common;

use std::{
    io::{Read as _, Write as _},
    net::TcpListener,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::Command,
    sync::mpsc,
    time::Duration,
};

use common::{
    Netns, Pins,
    agent::{self, AGENT, Daemon, cli_output, eventually},
    net::{Server, connects, http},
    veth,
};
const ATTACKER: &str = "192.0.2.2";

/// A server namespace (s0 = 192.0.2.1, XDP attached there) and an attacker (192.0.2.2).
struct Scene {
    server: Netns,
    attacker: Netns,
    pins: Pins,
    dir: tempfile::TempDir,
}

impl Scene {
    fn new(tag: &str) -> Self {
        let server = Netns::new(&format!("{tag}s"));
        let attacker = Netns::new(&format!("{tag}a"));
        veth(
            &server,
            "s0",
            &["192.0.2.1/24"],
            &attacker,
            "a0",
            &["192.0.2.2/24"],
        );
        let dir = tempfile::tempdir().expect("temp dir");
        // Other users must reach the socket's folder to be refused by the socket itself.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        Self {
            server,
            attacker,
            pins: Pins::new(tag),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the configuration: one jail on auth.log protecting TCP 8000.
    fn configure(&self, maxretry: u32, extra: &str) {
        let text = format!(
            "socket = \"ctl.sock\"\nstate_dir = \"state\"\npin_dir = \"{}\"\n\
             interfaces = [\"s0\"]\nmetrics = \"192.0.2.1:9464\"\nignoreself = true\n\
             [jail.auth]\nlogpath = \"auth.log\"\nfilter = \"fastapi-auth\"\n\
             maxretry = {maxretry}\nbantime = \"1h\"\nports = [8000]\n{extra}",
            self.pins.dir.display()
        );
        std::fs::write(self.path("ban-agent.toml"), text).expect("write config");
        common::app_log(&self.path("auth.log"));
    }

    fn start(&self, extra_args: &[&str]) -> Daemon {
        self.start_under(&[], extra_args)
    }

    /// Starts the daemon behind `wrapper` (a command that executes the rest of its line).
    fn start_under(&self, wrapper: &[&str], extra_args: &[&str]) -> Daemon {
        Daemon::start(
            &self.server,
            wrapper,
            &self.path("ban-agent.toml"),
            extra_args,
            &self.path("ctl.sock"),
            &self.path("daemon.log"),
        )
    }

    fn cli(&self, args: &[&str]) -> String {
        agent::cli(&self.path("ctl.sock"), args)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        agent::cli_json(&self.path("ctl.sock"), args)
    }

    /// Appends failure lines of `host`, timed now.
    fn fail(&self, host: &str, times: usize) {
        let now = agent::now_stamp();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("auth.log"))
            .expect("open the log");
        for _ in 0..times {
            file.write_all(agent::login_line(&now, host, 401).as_bytes())
                .expect("append");
        }
    }

    fn banned(&self) -> Vec<String> {
        let status = self.json(&["status", "auth", "--json"]);
        status["banned"]
            .as_array()
            .expect("banned list")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn kernel_bans(&self) -> Vec<String> {
        match ban_agent::datapath::Maps::open_pinned(&self.pins.dir) {
            Ok(maps) => maps
                .list()
                .expect("list the maps")
                .iter()
                .map(|ban| ban.target.to_string())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

#[test]
fn failures_ban_in_the_kernel_and_the_verbs_metrics_and_stats_agree() {
    let Some(_serial) =
        common::privileged("failures_ban_in_the_kernel_and_the_verbs_metrics_and_stats_agree")
    else {
        return;
    };
    let scene = Scene::new("dm1");
    scene.configure(3, "");
    let _web = Server::start(&scene.server, &[8000]);
    let daemon = scene.start(&[]);
    assert!(
        connects(&scene.attacker, "192.0.2.1:8000"),
        "before any failure"
    );

    scene.fail(ATTACKER, 2);
    eventually(&daemon, "two failures counted", || {
        scene.json(&["status", "auth", "--json"])["total_failed"] == 2
    });
    assert!(scene.banned().is_empty(), "below maxretry");
    scene.fail(ATTACKER, 1);
    eventually(&daemon, "the third failure bans", || {
        scene.banned() == ["192.0.2.2/32"]
    });
    assert_eq!(scene.kernel_bans(), ["192.0.2.2/32"]);
    assert!(
        !connects(&scene.attacker, "192.0.2.1:8000"),
        "banned, yet connected"
    );
    // The kernel's view names the jail as the daemon's state does.
    let list = common::sh(
        std::process::Command::new(agent::AGENT)
            .args(["datapath", "list", "--pin-dir"])
            .arg(&scene.pins.dir)
            .arg("--config")
            .arg(scene.path("ban-agent.toml")),
    );
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines()
            .any(|line| line.starts_with("auth ") && line.contains("192.0.2.2/32")),
        "{list}"
    );
    assert!(
        daemon
            .log()
            .contains("ban jail=\"auth\" ip=192.0.2.2 failures=3"),
        "{}",
        daemon.log()
    );

    let overview = scene.cli(&["status"]);
    assert!(
        overview.contains("Jail list:\tauth") && overview.contains("Currently banned:\t1"),
        "{overview}"
    );
    let banned = scene.cli(&["banned", ATTACKER]);
    assert!(
        banned.contains("auth") && banned.contains("left"),
        "{banned}"
    );
    let stats = scene.json(&["stats", "--json"]);
    assert!(
        stats["jails"]["auth"]["dropped_packets"].as_u64() > Some(0),
        "{stats}"
    );

    // Metrics are refreshed once a second.
    std::thread::sleep(Duration::from_millis(1100));
    let metrics = http(&scene.server, "192.0.2.1:9464", "GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    let metrics = metrics.body;
    for expected in [
        "ban_agent_bans_total{jail=\"auth\"} 1",
        "ban_agent_banned{jail=\"auth\"} 1",
        "ban_agent_failures_total{jail=\"auth\"} 3",
        "ban_agent_map_fill_ratio{map=\"ban_v4\"}",
        "ban_agent_follower_lag_bytes",
        "ban_agent_dropped_packets_total{jail=\"auth\"}",
    ] {
        assert!(metrics.contains(expected), "no {expected:?} in\n{metrics}");
    }
    assert_eq!(
        http(&scene.server, "192.0.2.1:9464", "GET", "/", None).status,
        404
    );

    let out = scene.cli(&["unban", ATTACKER]);
    assert!(out.contains("192.0.2.2 unbanned in auth"), "{out}");
    assert!(scene.kernel_bans().is_empty());
    assert!(
        connects(&scene.attacker, "192.0.2.1:8000"),
        "unbanned, yet dropped"
    );

    let out = scene.cli(&["ban", "auth", "198.51.100.0/24", "--for", "30m"]);
    assert!(out.contains("banned in auth for 30m"), "{out}");
    assert_eq!(scene.cli(&["get", "auth", "maxretry"]).trim(), "3");
    let refused = cli_output(&scene.path("ctl.sock"), &["ban", "auth", "192.0.2.1"]);
    assert!(
        !refused.status.success(),
        "the host's own address was banned"
    );
    assert!(String::from_utf8_lossy(&refused.stderr).contains("this host's addresses"));
    let out = scene.cli(&["unban", "--all"]);
    assert!(out.contains("1 ban lifted"), "{out}");
    scene.cli(&["stop"]);
    let log = daemon.wait();
    assert!(log.contains("unban jail=\"auth\" ip=192.0.2.2"), "{log}");
}

#[test]
fn a_restart_keeps_bans_and_log_positions_and_a_detached_restart_restores_them() {
    let Some(_serial) = common::privileged(
        "a_restart_keeps_bans_and_log_positions_and_a_detached_restart_restores_them",
    ) else {
        return;
    };
    let scene = Scene::new("dm2");
    scene.configure(3, "start = \"head\"");
    let daemon = scene.start(&[]);
    scene.fail(ATTACKER, 3);
    scene.fail("192.0.2.3", 2);
    eventually(&daemon, "banned", || scene.banned() == ["192.0.2.2/32"]);
    daemon.signal("-TERM");
    let log = daemon.wait();
    assert!(log.contains("bans stay in force"), "{log}");
    assert_eq!(
        scene.kernel_bans(),
        ["192.0.2.2/32"],
        "SIGTERM left the ban in the kernel"
    );
    let _web = Server::start(&scene.server, &[8000]);
    assert!(
        !connects(&scene.attacker, "192.0.2.1:8000"),
        "dropped while the agent is down"
    );

    // Restarted: the ban is still listed; the log is not read again from its head (one
    // line read, not six), and .3's two failures before the stop still count: with one
    // more, it reaches maxretry 3.
    scene.fail("192.0.2.3", 1);
    let daemon = scene.start(&[]);
    eventually(&daemon, "the new line read", || {
        scene.json(&["status", "auth", "--json"])["total_failed"] == 1
    });
    eventually(
        &daemon,
        "banned from failures on both sides of the restart",
        || scene.banned() == ["192.0.2.2/32", "192.0.2.3/32"],
    );

    // Detached, as after a reboot: the kernel holds nothing until the agent starts again.
    let out = scene.cli(&["stop", "--detach"]);
    assert!(out.contains("detached"), "{out}");
    daemon.wait();
    assert!(!scene.pins.dir.exists(), "stop --detach removed the pins");
    let daemon = scene.start(&[]);
    let mut restored = scene.kernel_bans();
    restored.sort();
    assert_eq!(
        restored,
        ["192.0.2.2/32", "192.0.2.3/32"],
        "restored from the state"
    );
    assert!(
        !connects(&scene.attacker, "192.0.2.1:8000"),
        "restored ban drops"
    );
    let banned = scene.json(&["banned", "--json"]);
    let left = banned["bans"][0]["seconds_left"].as_u64().unwrap_or(0);
    assert!(
        (3500..=3600).contains(&left),
        "the restored ban kept its expiry: {banned}"
    );
    scene.cli(&["stop"]);
    daemon.wait();
}

#[test]
fn reload_and_sighup_apply_a_changed_maxretry_without_lifting_bans() {
    let Some(_serial) =
        common::privileged("reload_and_sighup_apply_a_changed_maxretry_without_lifting_bans")
    else {
        return;
    };
    let scene = Scene::new("dm3");
    scene.configure(5, "");
    let daemon = scene.start(&[]);
    scene.cli(&["ban", "auth", "192.0.2.50"]);
    scene.fail(ATTACKER, 2);
    eventually(&daemon, "two failures", || {
        scene.json(&["status", "auth", "--json"])["total_failed"] == 2
    });
    scene.configure(3, "");
    let out = scene.cli(&["reload"]);
    assert!(out.contains("reloaded auth"), "{out}");
    assert_eq!(scene.cli(&["get", "auth", "maxretry"]).trim(), "3");
    scene.fail(ATTACKER, 1);
    eventually(&daemon, "banned under maxretry 3", || {
        scene.banned().len() == 2
    });

    scene.configure(2, "");
    daemon.signal("-HUP");
    eventually(&daemon, "SIGHUP applied", || {
        scene.cli(&["get", "auth", "maxretry"]).trim() == "2"
    });
    assert_eq!(scene.kernel_bans().len(), 2, "a reload lifts no ban");

    // The jail gone from the configuration: its bans go too.
    std::fs::write(
        scene.path("ban-agent.toml"),
        format!(
            "socket = \"ctl.sock\"\nstate_dir = \"state\"\npin_dir = \"{}\"\n",
            scene.pins.dir.display()
        ),
    )
    .expect("write config");
    let out = scene.cli(&["reload"]);
    assert!(out.contains("removed auth"), "{out}");
    assert!(scene.kernel_bans().is_empty());
    scene.cli(&["stop"]);
    daemon.wait();
}

#[test]
fn other_users_are_refused_and_a_dry_run_writes_nothing() {
    let Some(_serial) = common::privileged("other_users_are_refused_and_a_dry_run_writes_nothing")
    else {
        return;
    };
    let scene = Scene::new("dm4");
    scene.configure(1, "");
    let daemon = scene.start(&["--dry-run"]);
    let socket = scene.path("ctl.sock");
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let as_nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                AGENT,
                "--socket",
            ])
            .arg(&socket)
            .args(args)
            .output()
            .expect("run setpriv")
    };
    let out = as_nobody(&["ping"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("permission denied") && error.contains("as root"),
        "{error}"
    );
    // Even with the socket opened to everyone, the daemon checks who asks.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let out = as_nobody(&["ban", "auth", "192.0.2.9"]);
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && error.contains("may not control"),
        "{error}"
    );

    scene.fail(ATTACKER, 1);
    eventually(&daemon, "the dry run reports the ban", || {
        scene.banned() == ["192.0.2.2/32"]
    });
    assert!(daemon.log().contains("ban jail=\"auth\" ip=192.0.2.2"));
    scene.cli(&["stop"]);
    daemon.wait();
    assert!(!scene.pins.dir.exists(), "a dry run loaded BPF");
    assert!(!scene.path("state").exists(), "a dry run saved state");

    let out = cli_output(&socket, &["status"]);
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("not running") && error.contains("ban-agent run --config"),
        "{error}"
    );
}

// Privilege: members of `socket_group` (primary or supplementary group) may drive the
// daemon, nobody else. Without the group in `Access::admits`, the first ping is refused;
// without `SO_PEERGROUPS`, the supplementary member is; without the peer check, the
// stranger gets in through the loosened socket mode.
#[test]
fn the_socket_group_may_control_the_daemon_and_other_groups_may_not() {
    let Some(_serial) =
        common::privileged("the_socket_group_may_control_the_daemon_and_other_groups_may_not")
    else {
        return;
    };
    const GROUP: &str = "4242";
    let scene = Scene::new("dm7");
    scene.configure(1, "");
    let config = scene.path("ban-agent.toml");
    let text = std::fs::read_to_string(&config).expect("read config");
    std::fs::write(&config, format!("socket_group = {GROUP}\n{text}")).expect("write config");
    let daemon = scene.start(&["--dry-run"]);
    let socket = scene.path("ctl.sock");
    let meta = std::fs::metadata(&socket).expect("socket");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!((meta.mode() & 0o777, meta.gid()), (0o660, 4242));
    let ping_as = |ids: &[&str]| {
        let out = Command::new("setpriv")
            .args(ids)
            .args([AGENT, "--socket"])
            .arg(&socket)
            .arg("ping")
            .output()
            .expect("run setpriv");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (primary, error) = ping_as(&["--reuid=4243", "--regid=4242", "--clear-groups"]);
    assert!(primary, "a member by primary group: {error}");
    let (supplementary, error) = ping_as(&["--reuid=4243", "--regid=4244", "--groups=4242"]);
    assert!(supplementary, "a member by supplementary group: {error}");
    // The socket's mode lets the group in; the peer check must still refuse a stranger
    // who reaches it (here through a loosened mode).
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (stranger, error) = ping_as(&["--reuid=4243", "--regid=4244", "--clear-groups"]);
    assert!(
        !stranger && error.contains("socket_group"),
        "a stranger: {error}"
    );
    scene.cli(&["stop"]);
    daemon.wait();
}

#[test]
fn hooks_run_the_command_and_post_the_webhook_on_ban_and_unban() {
    let Some(_serial) =
        common::privileged("hooks_run_the_command_and_post_the_webhook_on_ban_and_unban")
    else {
        return;
    };
    let scene = Scene::new("dm5");
    let hooked = scene.path("hooked");
    let hooks = format!(
        "[jail.auth.on_ban]\ncommand = [\"/bin/sh\", \"-c\", \"echo ban $1 $BAN_AGENT_JAIL $BAN_AGENT_FAILURES >> {0}\", \"sh\", \"<ip>\"]\n\
         webhook = \"http://192.0.2.1:8088/hook\"\n\
         [jail.auth.on_unban]\ncommand = [\"/bin/sh\", \"-c\", \"echo unban $BAN_AGENT_IP >> {0}\"]\n",
        hooked.display()
    );
    scene.configure(2, &hooks);
    let (bodies, received) = mpsc::channel();
    let listener = scene
        .server
        .run(|| TcpListener::bind("192.0.2.1:8088").expect("bind the webhook"));
    listener.set_nonblocking(false).expect("blocking");
    std::thread::spawn(move || {
        // One request per connection; bounded: the test ends after two.
        for stream in listener.incoming().take(2) {
            let Ok(mut stream) = stream else { return };
            let _timeout = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        let _sent = bodies.send(body.to_owned());
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let _answered =
                stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let daemon = scene.start(&[]);
    scene.fail(ATTACKER, 2);
    let body = received
        .recv_timeout(Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("no webhook\n{}", daemon.log()));
    let event: serde_json::Value = serde_json::from_str(&body).expect("JSON body");
    assert_eq!(event["event"], "ban");
    assert_eq!(event["ip"], ATTACKER);
    assert_eq!(event["jail"], "auth");
    assert_eq!(event["failures"], 2);
    assert_eq!(event["bantime"], 3600);
    scene.cli(&["unban", ATTACKER]);
    eventually(&daemon, "both commands ran", || {
        std::fs::read_to_string(&hooked)
            .unwrap_or_default()
            .lines()
            .count()
            == 2
    });
    assert_eq!(
        std::fs::read_to_string(&hooked).expect("hook output"),
        "ban 192.0.2.2 auth 2\nunban 192.0.2.2\n"
    );
    scene.cli(&["stop"]);
    daemon.wait();
}

/// The capabilities the systemd unit leaves the daemon (`CAP_BPF`...).
fn unit_capability_names() -> Vec<&'static str> {
    let unit = include_str!("../../../dist/ban-agent.service");
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    line.split_whitespace().collect()
}

/// setpriv's bounding set of these capabilities.
fn bounding_set(caps: &[&str]) -> String {
    let caps: Vec<String> = caps
        .iter()
        .map(|cap| format!("+{}", cap.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    format!("--bounding-set=-all,{}", caps.join(","))
}

/// The capabilities the systemd unit leaves the daemon, in setpriv's spelling.
fn unit_capabilities() -> String {
    bounding_set(&unit_capability_names())
}

/// Makes the jail's log another user's, readable by nobody else (mode 0600), as an app
/// running under its own account writes it: reading it needs CAP_DAC_READ_SEARCH.
fn give_log_to_another_user(scene: &Scene) {
    scene.fail(ATTACKER, 0);
    let log = scene.path("auth.log");
    std::os::unix::fs::chown(&log, Some(4243), Some(4243)).expect("chown the log");
    std::fs::set_permissions(&log, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

#[test]
fn the_unit_capabilities_are_enough_to_attach_ban_and_restart() {
    let Some(_serial) =
        common::privileged("the_unit_capabilities_are_enough_to_attach_ban_and_restart")
    else {
        return;
    };
    let scene = Scene::new("dm6");
    scene.configure(2, "");
    give_log_to_another_user(&scene);
    let caps = unit_capabilities();
    let wrapper = ["setpriv", caps.as_str(), "--"];
    let daemon = scene.start_under(&wrapper, &[]);
    scene.fail(ATTACKER, 2);
    eventually(&daemon, "banned with the unit's capabilities only", || {
        scene.kernel_bans() == ["192.0.2.2/32"]
    });
    let _web = Server::start(&scene.server, &[8000]);
    assert!(!connects(&scene.attacker, "192.0.2.1:8000"));
    daemon.signal("-TERM");
    daemon.wait();
    // A restart reuses the pinned maps and swaps the program into the pinned link.
    let daemon = scene.start_under(&wrapper, &[]);
    assert_eq!(scene.banned(), ["192.0.2.2/32"]);
    scene.cli(&["stop"]);
    daemon.wait();
}

// Privilege: the unit's capabilities are the minimum. Without each one in turn the daemon
// fails: it cannot load the program (CAP_BPF, CAP_PERFMON), attach it (CAP_NET_ADMIN),
// or read another user's log (CAP_DAC_READ_SEARCH). A capability added to the unit that
// the daemon does not need makes this test fail.
#[test]
fn every_unit_capability_is_needed() {
    let Some(_serial) = common::privileged("every_unit_capability_is_needed") else {
        return;
    };
    let scene = Scene::new("dm8");
    scene.configure(1, "");
    give_log_to_another_user(&scene);
    let all = unit_capability_names();
    for missing in &all {
        let caps: Vec<&str> = all.iter().copied().filter(|cap| cap != missing).collect();
        let log = scene.path(&format!("without-{missing}.log"));
        let mut daemon = scene
            .server
            .command("setpriv")
            .args([
                bounding_set(&caps).as_str(),
                "--",
                agent::AGENT,
                "run",
                "--config",
            ])
            .arg(scene.path("ban-agent.toml"))
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).expect("daemon log"))
            .spawn()
            .expect("start the daemon");
        // It fails at start, or runs without doing its job: give it 3 s either way.
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let exited = loop {
            if let Some(status) = daemon.try_wait().expect("wait") {
                break Some(status);
            }
            if std::time::Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        scene.fail(ATTACKER, 1);
        std::thread::sleep(Duration::from_millis(1200));
        let _killed = daemon.kill();
        let _reaped = daemon.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let failed = exited.is_some_and(|status| !status.success())
            || (text.contains("cannot read the log") && scene.kernel_bans().is_empty());
        assert!(failed, "the daemon did its job without {missing}:\n{text}");
        let _ = ban_agent::datapath::detach(&scene.pins.dir);
        let _ = std::fs::remove_file(scene.path("ctl.sock"));
    }
}

/// The issue a new user hit: the app logs through Python's plain `FileHandler`, logrotate
/// renames the log and creates a new one (`create`), and the app keeps writing to the
/// renamed file. The attacker's failures after the rotation are in the old file only;
/// they must still count, and ban.
#[test]
fn failures_written_to_the_rotated_file_by_a_writer_that_never_reopens_still_ban() {
    let Some(_serial) = common::privileged(
        "failures_written_to_the_rotated_file_by_a_writer_that_never_reopens_still_ban",
    ) else {
        return;
    };
    let scene = Scene::new("dm9");
    scene.configure(3, "");
    std::fs::write(scene.path("auth.log"), "").expect("create the log");
    let daemon = scene.start(&[]);
    // The app's handle, opened once at its start, as FileHandler does.
    let mut app = std::fs::OpenOptions::new()
        .append(true)
        .open(scene.path("auth.log"))
        .expect("the app's handle");
    app.write_all(agent::login_line(&agent::now_stamp(), ATTACKER, 401).as_bytes())
        .expect("write");
    eventually(&daemon, "the first failure counted", || {
        scene.json(&["status", "auth", "--json"])["total_failed"] == 1
    });
    // logrotate's `create`, with no postrotate the app would act on.
    std::fs::rename(scene.path("auth.log"), scene.path("auth.log.1")).expect("rename");
    std::fs::write(scene.path("auth.log"), "").expect("create");
    // inotify wakes the agent at the rename and the create: it moves to the new file.
    std::thread::sleep(Duration::from_millis(500));
    for _ in 0..2 {
        app.write_all(agent::login_line(&agent::now_stamp(), ATTACKER, 401).as_bytes())
            .expect("write");
    }
    eventually(&daemon, "banned from the rotated file's failures", || {
        scene.banned() == ["192.0.2.2/32"]
    });
    assert_eq!(
        std::fs::metadata(scene.path("auth.log"))
            .map(|m| m.len())
            .ok(),
        Some(0),
        "the failures went to the old file only"
    );
    scene.cli(&["stop"]);
    daemon.wait();
}

/// The example app's logging as the seed set it up: Python's plain `FileHandler`, opened
/// once, fed the lines written to its standard input.
struct FileHandlerApp {
    child: std::process::Child,
}

impl FileHandlerApp {
    fn start(log: &std::path::Path) -> Self {
        let program = "import logging, sys\n\
            handler = logging.FileHandler(sys.argv[1])\n\
            handler.setFormatter(logging.Formatter('%(message)s'))\n\
            app = logging.getLogger('fastapi-auth')\n\
            app.addHandler(handler)\n\
            app.setLevel(logging.INFO)\n\
            print('ready', flush=True)\n\
            for line in iter(sys.stdin.readline, ''):\n\
            \x20   app.info(line.rstrip('\\n'))\n\
            \x20   print('written', flush=True)\n";
        let child = Command::new("python3")
            .args(["-c", program])
            .arg(log)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 (cargo xtask setup installs it)");
        let mut app = Self { child };
        app.expect("ready");
        app
    }

    fn expect(&mut self, word: &str) {
        let out = self.child.stdout.as_mut().expect("stdout");
        let mut said = Vec::new();
        let mut byte = [0u8];
        while out.read(&mut byte).expect("read the app") == 1 && byte[0] != b'\n' {
            said.push(byte[0]);
        }
        assert_eq!(String::from_utf8_lossy(&said), word);
    }

    /// Logs `times` failures of `host`, each once the handler wrote it.
    fn fail(&mut self, host: &str, times: usize) {
        for _ in 0..times {
            let line = agent::login_line(&agent::now_stamp(), host, 401);
            let stdin = self.child.stdin.as_mut().expect("stdin");
            stdin.write_all(line.as_bytes()).expect("to the app");
            stdin.flush().expect("flush");
            self.expect("written");
        }
    }
}

impl Drop for FileHandlerApp {
    fn drop(&mut self) {
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// logrotate's `create`: the log renamed to `auth.log.1`, a new empty `auth.log`.
fn rotate(scene: &Scene) {
    std::fs::rename(scene.path("auth.log"), scene.path("auth.log.1")).expect("rename");
    std::fs::write(scene.path("auth.log"), "").expect("create");
}

fn total_failed(scene: &Scene) -> serde_json::Value {
    scene.json(&["status", "auth", "--json"])["total_failed"].clone()
}

/// How often the history says `addr` was banned in `auth`.
fn history_bans(scene: &Scene, addr: &str) -> String {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(scene.path("state/state.db"))
        .arg(format!(
            "SELECT bans FROM history WHERE jail = 'auth' AND target = '{addr}/32'"
        ))
        .output()
        .expect("sqlite3 (cargo xtask setup installs it)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The issue a user hit with the seed's own logging: three failures written to the
/// rotated file by a `FileHandler` that never reopens, then a restart. They were counted
/// again at the restart (a legitimate user with three typos banned at maxretry 5), or,
/// with other timing, what the app wrote after the restart was never read. Now: counted
/// once whatever the restart, no ban from them alone, and banned at the fifth failure,
/// whether the two more go to the rotated file or to the new one; a ban read again after
/// another restart is neither extended nor counted in the history again.
#[test]
fn a_restart_counts_each_line_of_a_rotated_file_once_and_follows_it_on() {
    let Some(_serial) =
        common::privileged("a_restart_counts_each_line_of_a_rotated_file_once_and_follows_it_on")
    else {
        return;
    };
    for (tag, to_rotated) in [("dma", true), ("dmb", false)] {
        let scene = Scene::new(tag);
        scene.configure(5, "[jail.auth.bantime_increment]\nfactor = 1\n");
        std::fs::write(scene.path("auth.log"), "").expect("create the log");
        let daemon = scene.start(&[]);
        let mut app = FileHandlerApp::start(&scene.path("auth.log"));
        rotate(&scene);
        // inotify wakes the agent at the rename and the create: it moves to the new file
        // and keeps following the old one.
        std::thread::sleep(Duration::from_millis(500));
        app.fail(ATTACKER, 3);
        eventually(&daemon, "three failures counted", || {
            total_failed(&scene) == 3
        });

        scene.cli(&["stop"]);
        daemon.wait();
        let daemon = scene.start(&[]);
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(total_failed(&scene), 0, "the restart counted lines again");
        assert!(
            scene.banned().is_empty(),
            "three failures and a restart banned:\n{}",
            daemon.log()
        );
        let counted = scene.json(&["status", "auth", "--json"]);
        assert_eq!(
            counted["currently_failed"], 1,
            "the failures before the restart still count: {counted}"
        );

        if to_rotated {
            app.fail(ATTACKER, 2);
        } else {
            scene.fail(ATTACKER, 2);
        }
        eventually(&daemon, "banned at the fifth failure", || {
            scene.banned() == ["192.0.2.2/32"]
        });
        assert!(
            daemon.log().contains("failures=5"),
            "banned for five failures:\n{}",
            daemon.log()
        );
        let left = |scene: &Scene| {
            scene.json(&["banned", "--json"])["bans"][0]["seconds_left"]
                .as_u64()
                .unwrap_or(0)
        };
        let before = left(&scene);
        assert_eq!(history_bans(&scene, ATTACKER), "1");

        // Restarted once more: the five lines are not read again.
        scene.cli(&["stop"]);
        let log = daemon.wait();
        let daemon = scene.start(&[]);
        std::thread::sleep(Duration::from_millis(1500));
        let after = left(&scene);
        assert!(
            after <= before,
            "the ban was extended at the restart: {before} s then {after} s\n{log}\n{}",
            daemon.log()
        );
        assert!(!daemon.log().contains("ban extended"), "{}", daemon.log());
        assert_eq!(
            history_bans(&scene, ATTACKER),
            "1",
            "counted in the history again"
        );
        scene.cli(&["stop"]);
        daemon.wait();
    }
}

/// What an operator or a package manager removes on purpose is not put back: the pin
/// folder taken out with `datapath detach` (bpffs still mounted), or the daemon's binary
/// deleted with nothing in its place, stops the daemon, which leaves no program attached.
/// (bpffs unmounted is the other case: the pins are made again, see tests/faults.rs.)
#[test]
fn a_daemon_whose_pins_or_binary_are_removed_stops() {
    let Some(_serial) = common::privileged("a_daemon_whose_pins_or_binary_are_removed_stops")
    else {
        return;
    };
    let scene = Scene::new("dmr");
    scene.configure(3, "");
    std::fs::write(scene.path("auth.log"), "").expect("create the log");
    let _web = Server::start(&scene.server, &[8000]);

    let daemon = scene.start(&[]);
    scene.fail(ATTACKER, 3);
    eventually(&daemon, "banned", || scene.banned() == ["192.0.2.2/32"]);
    let out = Command::new(AGENT)
        .args(["datapath", "detach", "--pin-dir"])
        .arg(&scene.pins.dir)
        .output()
        .expect("datapath detach");
    assert!(out.status.success(), "{out:?}");
    let log = daemon.wait();
    assert!(
        log.contains("was removed while its bpffs stays mounted"),
        "{log}"
    );
    assert!(!log.contains("pinned again"), "{log}");
    assert!(!scene.pins.dir.exists(), "the pins were made again");
    assert!(
        connects(&scene.attacker, "192.0.2.1:8000"),
        "the program stayed attached after the daemon stopped"
    );

    // A binary of its own, deleted as `dpkg --remove` deletes it.
    let bin = scene.path("ban-agent-copy");
    std::fs::copy(AGENT, &bin).expect("copy the binary");
    let mut command = scene.server.command(&bin);
    command
        .args(["run", "--config"])
        .arg(scene.path("ban-agent.toml"))
        .env("RUST_LOG", "info");
    let daemon = Daemon::spawn(command, &scene.path("ctl.sock"), &scene.path("daemon.log"));
    eventually(&daemon, "the saved ban restored", || {
        scene.kernel_bans() == ["192.0.2.2/32"]
    });
    std::fs::remove_file(&bin).expect("delete the binary");
    let log = daemon.wait();
    assert!(
        log.contains("binary") && log.contains("was deleted"),
        "{log}"
    );
}

/// A reload that changes no interface keeps the programs and links (no "datapath
/// attached" after it: loading a program again cost about a second of the verifier each
/// time, during which nothing was read or banned), rebuilds only the jails that changed,
/// and lines written right after it, or while it runs, ban at once.
#[test]
fn a_reload_keeps_the_datapath_and_lines_around_it_ban_at_once() {
    let Some(_serial) =
        common::privileged("a_reload_keeps_the_datapath_and_lines_around_it_ban_at_once")
    else {
        return;
    };
    let scene = Scene::new("dmz");
    let second = "[jail.other]\nlogpath = \"other.log\"\nfilter = \"fastapi-auth\"\n\
                  maxretry = 3\nports = [9000]\n";
    scene.configure(3, second);
    std::fs::write(scene.path("auth.log"), "").expect("create the log");
    std::fs::write(scene.path("other.log"), "").expect("create the log");
    let daemon = scene.start(&[]);
    let attached = |log: &str| log.matches("datapath attached").count();
    let before = attached(&daemon.log());
    assert!(before >= 1, "{}", daemon.log());

    // The other jail's maxretry changed: it alone is rebuilt.
    scene.configure(3, &second.replace("maxretry = 3", "maxretry = 4"));
    let out = scene.cli(&["reload"]);
    assert!(
        out.contains("reloaded other") && !out.contains("auth"),
        "{out}"
    );

    for n in 0..5u8 {
        let host = format!("192.0.2.{}", 10 + n);
        // Half of them written while the reload is asked for, half right after.
        let reload = std::thread::spawn({
            let socket = scene.path("ctl.sock");
            move || agent::cli(&socket, &["reload"])
        });
        if n % 2 == 0 {
            reload.join().expect("reload");
            scene.fail(&host, 3);
        } else {
            scene.fail(&host, 3);
            reload.join().expect("reload");
        }
        let written = std::time::Instant::now();
        eventually(&daemon, "banned right after a reload", || {
            scene.banned().contains(&format!("{host}/32"))
        });
        // The usual latency is milliseconds; a reload that loads the programs again
        // takes about a second per program.
        assert!(
            written.elapsed() < Duration::from_millis(800),
            "banned {:?} after the write, around a reload",
            written.elapsed()
        );
    }
    assert_eq!(
        attached(&daemon.log()),
        before,
        "a reload that changes no interface attached again:\n{}",
        daemon.log()
    );

    // A reload onto a log that is not there is refused, as a start is; the jails in
    // force stay as they were.
    scene.configure(
        3,
        &second
            .replace("maxretry = 3", "maxretry = 5")
            .replace("other.log", "typo/other.log"),
    );
    let out = cli_output(&scene.path("ctl.sock"), &["reload"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a reload onto a missing log was taken"
    );
    assert!(said.contains("typo/other.log does not exist"), "{said}");
    assert_eq!(scene.cli(&["get", "other", "maxretry"]).trim(), "4");
    scene.cli(&["stop"]);
    daemon.wait();
}
