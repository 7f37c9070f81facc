//! Faults an operator's machine has, tried on the real daemon: `kill -9` while it saves
//! its state, a full disk under the state, the protected interface going down, away and
//! back, and bpffs unmounted under the pins. Each in namespaces (and mounts) of its own;
//! needs root, see `common::privileged`.

use crate::common;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use ban_agent::store::Store;
use common::{
    Netns, Pins,
    agent::{self, Daemon, eventually},
    net::{Server, connects},
    sh, veth,
};

const ATTACKER: &str = "192.0.2.2";

/// A server namespace (s0 = 192.0.2.1) with an attacker (192.0.2.2) behind a veth, and a
/// folder holding the configuration, the log, the state and the socket.
struct Scene {
    server: Netns,
    attacker: Netns,
    dir: tempfile::TempDir,
    pin_dir: PathBuf,
    /// The configuration's `mode`: auto (tc on these veths) unless a test says otherwise.
    mode: &'static str,
    maxretry: u32,
}

impl Scene {
    fn new(tag: &str, pin_dir: PathBuf) -> Self {
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
        Self {
            server,
            attacker,
            dir: tempfile::tempdir().expect("temp dir"),
            pin_dir,
            mode: "auto",
            maxretry: 1,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// One jail on auth.log, `maxretry` (1 unless a test says otherwise), TCP 8000 on s0,
    /// no cap on bans per minute.
    fn configure(&self) {
        let text = format!(
            "socket = \"ctl.sock\"\nstate_dir = \"state\"\npin_dir = \"{}\"\n\
             interfaces = [\"s0\"]\nmode = \"{}\"\nignoreself = true\n\
             [jail.auth]\nlogpath = \"auth.log\"\nfilter = \"fastapi-auth\"\nmaxretry = {}\n\
             bantime = \"1h\"\nports = [8000]\nstart = \"head\"\nmax_bans_per_minute = 0\n",
            self.pin_dir.display(),
            self.mode,
            self.maxretry
        );
        std::fs::write(self.path("ban-agent.toml"), text).expect("write config");
        common::app_log(&self.path("auth.log"));
    }

    fn start(&self) -> Daemon {
        Daemon::start(
            &self.server,
            &[],
            &self.path("ban-agent.toml"),
            &[],
            &self.path("ctl.sock"),
            &self.path("daemon.log"),
        )
    }

    /// Appends one failure of each host.
    fn fail(&self, hosts: impl IntoIterator<Item = String>) {
        let now = agent::now_stamp();
        let mut text = String::new();
        for host in hosts {
            text.push_str(&agent::login_line(&now, &host, 401));
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("auth.log"))
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .expect("append to the log");
    }

    fn currently_banned(&self) -> u64 {
        let status = agent::cli_json(&self.path("ctl.sock"), &["status", "auth", "--json"]);
        status["currently_banned"]
            .as_u64()
            .expect("currently_banned")
    }

    fn kernel_bans(&self) -> Vec<String> {
        ban_agent::datapath::Maps::open_pinned(&self.pin_dir)
            .and_then(|maps| maps.list())
            .map(|bans| bans.iter().map(|ban| ban.target.to_string()).collect())
            .unwrap_or_default()
    }

    /// Whether s0 runs the verdict, in XDP (as `ip link` shows) or in tc (a TCX program,
    /// as the kernel answers a query of s0's ingress).
    fn attached(&self) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.server.name, "-d", "link", "show", "s0"])
            .output()
            .expect("ip link show");
        if String::from_utf8_lossy(&out.stdout).contains("prog/xdp") {
            return true;
        }
        self.server.run(|| {
            use aya::programs::{SchedClassifier, TcAttachType};
            SchedClassifier::query_tcx(c"s0", TcAttachType::Ingress)
                .is_ok_and(|(_, programs)| !programs.is_empty())
        })
    }

    /// Whether s0's link (XDP or tc) is pinned.
    fn link_pinned(&self) -> bool {
        ["link_s0", "tc_s0"]
            .iter()
            .any(|name| self.pin_dir.join(name).exists())
    }
}

/// `2001:db8:N::1`, one address per index (log text only: no packet is sent to them).
fn host(n: u32) -> String {
    format!("2001:db8:{:x}:{:x}::1", n >> 16, n & 0xffff)
}

/// A small pseudo-random sequence, its seed printed so that a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) % n
    }
}

/// The writer of `kill_9_at_random_points...`: rounds of new addresses, each failing once
/// (a third of them) or twice, the second failure a round later; the log rotated by rename
/// every few rounds (the writer opens the path at each write, as `WatchedFileHandler`
/// does). Returns the addresses that failed twice and those that failed once.
fn write_failures_and_rotate(
    scene: &Scene,
    stop: &std::sync::atomic::AtomicBool,
) -> (Vec<String>, Vec<String>) {
    const PER_ROUND: u32 = 12;
    const MAX_ROUNDS: u32 = 2_000;
    let (mut twice, mut once) = (Vec::new(), Vec::new());
    let mut pending: Vec<String> = Vec::new();
    for round in 0..MAX_ROUNDS {
        let last = round + 1 == MAX_ROUNDS || stop.load(std::sync::atomic::Ordering::Relaxed);
        let fresh: Vec<String> = if last {
            Vec::new()
        } else {
            (round * PER_ROUND..(round + 1) * PER_ROUND)
                .map(host)
                .collect()
        };
        scene.fail(fresh.iter().cloned().chain(pending.drain(..)));
        for (n, address) in fresh.into_iter().enumerate() {
            if n % 3 == 0 {
                once.push(address);
            } else {
                pending.push(address.clone());
                twice.push(address);
            }
        }
        if last {
            break;
        }
        if round % 20 == 19 {
            let rotated = scene.path(&format!("auth.log-{round}"));
            std::fs::rename(scene.path("auth.log"), rotated).expect("rotate");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    (twice, once)
}

// Crash safety: `kill -9` at random moments, 30 times, while a writer appends failures and
// rotates the log. A ban, its failures and the log position after them are one commit,
// failures below maxretry are saved with the position, and a log rotated while the agent
// is down is read to its end under its new name: afterwards every address that failed
// twice (maxretry 2) is banned, once, none that failed once is (no line counted twice),
// and the database is whole. Without the failures saved, a kill between an address's two
// failures loses its ban; without the rotated file read first, the rounds written between
// a kill and a rotation are lost.
#[test]
fn kill_9_at_random_points_loses_no_ban_counts_no_line_twice_and_keeps_the_state_whole() {
    let Some(_serial) = common::privileged("kill_9_at_random_points") else {
        return;
    };
    let pins = Pins::new("kill9");
    let mut scene = Scene::new("fk", pins.dir.clone());
    scene.maxretry = 2;
    scene.configure();
    let kills: u32 = std::env::var("BAN_AGENT_KILLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    eprintln!("kill -9 schedule seed: {seed}");
    let mut random = Lcg(seed);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let began = Instant::now();
    let (twice, once) = std::thread::scope(|scope| {
        // The first agent has the log open before anything is written or rotated.
        let mut first = Some(scene.start());
        let writer = scope.spawn(|| write_failures_and_rotate(&scene, &stop));
        for _ in 0..kills {
            let daemon = first.take().unwrap_or_else(|| scene.start());
            std::thread::sleep(Duration::from_millis(random.below(600)));
            daemon.signal("-KILL");
            drop(daemon);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().expect("the writer")
    });
    eprintln!(
        "{kills} kills in {:.1} s; {} addresses failed twice, {} once",
        began.elapsed().as_secs_f64(),
        twice.len(),
        once.len()
    );
    let daemon = scene.start();
    // The last round's second failures are the log's last lines: once the agent has
    // read them, the count no longer changes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while scene.currently_banned() < twice.len() as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let banned: std::collections::BTreeSet<String> = scene.kernel_bans().into_iter().collect();
    let expected: std::collections::BTreeSet<String> =
        twice.iter().map(|host| format!("{host}/128")).collect();
    let missing: Vec<_> = expected.difference(&banned).take(10).collect();
    let extra: Vec<_> = banned.difference(&expected).take(10).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "seed {seed}: {} banned, {} expected; missing {missing:?}, extra {extra:?}\n{}",
        banned.len(),
        expected.len(),
        daemon.log()
    );
    agent::cli(&scene.path("ctl.sock"), &["stop"]);
    daemon.wait();

    let state = scene.path("state");
    let check = Command::new("sqlite3")
        .arg(state.join("state.db"))
        .arg("PRAGMA integrity_check;")
        .output()
        .expect("sqlite3");
    assert_eq!(String::from_utf8_lossy(&check.stdout).trim(), "ok");
    let store = Store::open(&state, 0).expect("the state");
    let history = store.history("auth").expect("history");
    let counted: Vec<_> = history.iter().filter(|(_, count)| **count != 1).collect();
    assert!(
        history.len() == twice.len() && counted.is_empty(),
        "seed {seed}: {} addresses in the history, counted more than once: {counted:?}",
        history.len()
    );
    assert!(
        once.iter()
            .all(|host| !history.contains_key(&format!("{host}/128").parse().expect("net")))
    );
}

/// A tmpfs of `size` mounted on `path`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        std::fs::create_dir_all(path).expect("mount point");
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path));
        Self(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _unmounted = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Bans saved in the state database of `state` (none when it cannot be read).
fn saved_bans(state: &Path) -> usize {
    Store::inspect(state)
        .ok()
        .flatten()
        .and_then(|store| store.load().ok())
        .map_or(0, |saved| saved.bans.len())
}

// A full disk under the state, before the start and while running: bans still reach the
// kernel, the agent says once that it cannot save (not every second), and saves as soon as
// there is room, the bans made meanwhile included. Without the transient errors waited
// out in `run`, the agent does not start on a full disk; without the error kept in
// `Agent::commit`, the message repeats every tick.
#[test]
fn a_full_state_disk_keeps_banning_says_so_once_and_saves_when_there_is_room() {
    let Some(_serial) = common::privileged("a_full_state_disk") else {
        return;
    };
    let pins = Pins::new("disk");
    let scene = Scene::new("fd", pins.dir.clone());
    scene.configure();
    let state = scene.path("state");
    let _tmpfs = Tmpfs::mount(&state, "256k");
    let filler = state.join("filler");
    let fill = || {
        let full = std::fs::write(&filler, vec![0u8; 512 * 1024]);
        assert!(full.is_err(), "the tmpfs is full");
    };
    fill();
    let daemon = scene.start();
    scene.fail([ATTACKER.to_owned()]);
    eventually(&daemon, "the ban is in the kernel", || {
        scene.kernel_bans() == ["192.0.2.2/32"]
    });
    std::thread::sleep(Duration::from_millis(2500));
    let log = daemon.log();
    assert_eq!(
        log.matches("cannot open the state database").count(),
        1,
        "{log}"
    );
    assert!(log.contains("disk is full"), "{log}");
    std::fs::remove_file(&filler).expect("free the disk");
    eventually(&daemon, "the state is saved", || saved_bans(&state) == 1);
    // Said once the agent hears from its writer thread (at its next tick at the latest).
    eventually(&daemon, "the agent says it saves again", || {
        daemon.log().contains("the state is saved again")
    });

    // Full again while running: the database is open, its commits fail.
    fill();
    scene.fail(["192.0.2.3".to_owned()]);
    eventually(&daemon, "the second ban is in the kernel", || {
        scene.kernel_bans().len() == 2
    });
    std::thread::sleep(Duration::from_millis(2500));
    let log = daemon.log();
    assert_eq!(log.matches("cannot save the state").count(), 1, "{log}");
    std::fs::remove_file(&filler).expect("free the disk");
    eventually(&daemon, "both bans are saved", || saved_bans(&state) == 2);
    agent::cli(&scene.path("ctl.sock"), &["stop"]);
    daemon.wait();
}

// A read-only state folder: the agent starts, protects, says so once, and saves once the
// folder is writable again.
#[test]
fn a_read_only_state_folder_keeps_banning_and_saves_when_writable() {
    let Some(_serial) = common::privileged("a_read_only_state") else {
        return;
    };
    let pins = Pins::new("rofs");
    let scene = Scene::new("fr", pins.dir.clone());
    scene.configure();
    let state = scene.path("state");
    let _tmpfs = Tmpfs::mount(&state, "4m");
    sh(Command::new("mount").args(["-o", "remount,ro"]).arg(&state));
    let daemon = scene.start();
    scene.fail([ATTACKER.to_owned()]);
    eventually(&daemon, "the ban is in the kernel", || {
        scene.kernel_bans() == ["192.0.2.2/32"]
    });
    std::thread::sleep(Duration::from_millis(2500));
    let log = daemon.log();
    assert_eq!(
        log.matches("cannot open the state database").count(),
        1,
        "{log}"
    );
    sh(Command::new("mount").args(["-o", "remount,rw"]).arg(&state));
    eventually(&daemon, "the state is saved", || saved_bans(&state) == 1);
    agent::cli(&scene.path("ctl.sock"), &["stop"]);
    daemon.wait();
}

// The protected interface down and up keeps its program (the attacker stays dropped);
// removed, the agent says so; recreated under the same name, the agent attaches to it
// again with the bans in force. Without `Guard::check`, the new interface has no program
// and the attacker connects.
#[test]
fn an_interface_down_up_or_removed_and_recreated_stays_protected_in_tc() {
    interface_down_up_or_removed_and_recreated("auto", "fi");
}

#[test]
fn an_interface_down_up_or_removed_and_recreated_stays_protected_in_xdp() {
    interface_down_up_or_removed_and_recreated("xdp", "fx");
}

fn interface_down_up_or_removed_and_recreated(mode: &'static str, tag: &str) {
    let Some(_serial) = common::privileged(&format!("an_interface_down_up_or_removed_{mode}"))
    else {
        return;
    };
    let pins = Pins::new(&format!("iface-{mode}"));
    let mut scene = Scene::new(tag, pins.dir.clone());
    scene.mode = mode;
    scene.configure();
    let _server = Server::start(&scene.server, &[8000]);
    let daemon = scene.start();
    assert!(connects(&scene.attacker, "192.0.2.1:8000"));
    scene.fail([ATTACKER.to_owned()]);
    eventually(&daemon, "the attacker is dropped", || {
        !connects(&scene.attacker, "192.0.2.1:8000")
    });
    scene.server.ip(&["link", "set", "s0", "down"]);
    scene.server.ip(&["link", "set", "s0", "up"]);
    assert!(scene.attached(), "down and up keep the program");
    assert!(!connects(&scene.attacker, "192.0.2.1:8000"));

    scene.server.ip(&["link", "del", "s0"]);
    eventually(&daemon, "the agent sees the interface gone", || {
        daemon.log().contains("the interface is gone")
    });
    veth(
        &scene.server,
        "s0",
        &["192.0.2.1/24"],
        &scene.attacker,
        "a0",
        &["192.0.2.2/24"],
    );
    eventually(&daemon, "the new s0 has the program", || scene.attached());
    assert!(
        !connects(&scene.attacker, "192.0.2.1:8000"),
        "the ban holds on the new interface"
    );
    agent::cli(&scene.path("ctl.sock"), &["stop"]);
    daemon.wait();
}

/// A bpffs instance of the test's own on `path` (unmounting it destroys its pins, as
/// unmounting /sys/fs/bpf would), unmounted on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount(path: &Path) {
        std::fs::create_dir_all(path).expect("mount point");
        sh(Command::new("mount").args(["-t", "bpf", "bpf"]).arg(path));
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _detached = ban_agent::datapath::detach(&self.0.join("pins"));
        let _unmounted = Command::new("umount").arg(&self.0).output();
    }
}

// bpffs unmounted under the pins: the daemon holds the program's links and maps, so the
// attacker stays dropped, and once bpffs is mounted there again the maps and links are
// pinned again with their bans. Without `HeldLinks`, the unmount detaches the program and
// the attacker connects; without `Guard::check_pins`, the pins never come back.
#[test]
fn bpffs_unmounted_under_the_pins_keeps_dropping_and_the_pins_come_back_in_tc() {
    bpffs_unmounted_under_the_pins("auto", "fb");
}

#[test]
fn bpffs_unmounted_under_the_pins_keeps_dropping_and_the_pins_come_back_in_xdp() {
    bpffs_unmounted_under_the_pins("xdp", "fy");
}

fn bpffs_unmounted_under_the_pins(mode: &'static str, tag: &str) {
    let Some(_serial) = common::privileged(&format!("bpffs_unmounted_{mode}")) else {
        return;
    };
    let bpf_dir = tempfile::tempdir().expect("temp dir");
    let bpffs = bpf_dir.path().join("bpf");
    Bpffs::mount(&bpffs);
    let _bpffs = Bpffs(bpffs.clone());
    let pin_dir = bpffs.join("pins");
    let mut scene = Scene::new(tag, pin_dir.clone());
    scene.mode = mode;
    scene.configure();
    let _server = Server::start(&scene.server, &[8000]);
    let daemon = scene.start();
    scene.fail([ATTACKER.to_owned()]);
    eventually(&daemon, "the attacker is dropped", || {
        !connects(&scene.attacker, "192.0.2.1:8000")
    });
    sh(Command::new("umount").arg(&bpffs));
    assert!(!pin_dir.join("ban_v4").exists());
    let deadline = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < deadline {
        assert!(
            !connects(&scene.attacker, "192.0.2.1:8000"),
            "the attacker got through with bpffs unmounted:\n{}",
            daemon.log()
        );
    }
    assert!(
        daemon.log().contains("the pins are gone"),
        "{}",
        daemon.log()
    );
    Bpffs::mount(&bpffs);
    eventually(&daemon, "the pins are back", || {
        scene.link_pinned() && scene.kernel_bans() == ["192.0.2.2/32"]
    });
    agent::cli(&scene.path("ctl.sock"), &["stop"]);
    daemon.wait();
}
