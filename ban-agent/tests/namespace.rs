//! Real packets between test-made namespaces: a server namespace with the XDP program on
//! two veth interfaces, an attacker and a legitimate client behind them. Drives the real
//! binary, each call a separate process that exits, as an operator would.

mod common;

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use common::{
    Netns, Pins,
    net::{Server, connects},
    sh, veth,
};

const AGENT: &str = env!("CARGO_BIN_EXE_ban-agent");
const PROTECTED: u16 = 8000;
const OPEN: u16 = 8001;

fn agent(ns: &Netns, args: &[&str]) -> String {
    let out = sh(ns.command(AGENT).args(args));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Server with XDP on s0 (towards the attacker) and s1 (towards the client).
struct Scene {
    server: Netns,
    attacker: Netns,
    client: Netns,
    pins: Pins,
}

impl Scene {
    fn new(tag: &str) -> Self {
        let server = Netns::new(&format!("{tag}s"));
        let attacker = Netns::new(&format!("{tag}a"));
        let client = Netns::new(&format!("{tag}c"));
        veth(
            &server,
            "s0",
            &["192.0.2.1/30", "2001:db8:a::1/64"],
            &attacker,
            "a0",
            &["192.0.2.2/30", "2001:db8:a::2/64"],
        );
        veth(
            &server,
            "s1",
            &["192.0.2.5/30", "2001:db8:b::1/64"],
            &client,
            "c0",
            &["192.0.2.6/30", "2001:db8:b::2/64"],
        );
        Self {
            server,
            attacker,
            client,
            pins: Pins::new(tag),
        }
    }

    fn agent(&self, args: &[&str]) -> String {
        let mut all = args.to_vec();
        let pin = self.pins.arg();
        all.extend(["--pin-dir", &pin]);
        agent(&self.server, &all)
    }
}

#[test]
fn banned_client_is_dropped_on_the_protected_port_until_expiry() {
    let Some(_serial) =
        common::privileged("banned_client_is_dropped_on_the_protected_port_until_expiry")
    else {
        return;
    };
    let scene = Scene::new("ns1");
    let _server = Server::start(&scene.server, &[PROTECTED, OPEN]);
    let attach = [
        "datapath",
        "attach",
        "-i",
        "s0",
        "-i",
        "s1",
        "--protect",
        "0:tcp:8000",
    ];
    let out = scene.agent(&attach);
    assert!(out.contains("s0: New") && out.contains("s1: New"), "{out}");

    assert!(
        connects(&scene.attacker, "192.0.2.1:8000"),
        "before the ban"
    );
    assert!(
        connects(&scene.attacker, "[2001:db8:a::1]:8000"),
        "before the ban"
    );

    let ban_length = Duration::from_secs(8);
    let banned_at = Instant::now();
    scene.agent(&["datapath", "ban", "--jail", "0", "192.0.2.2", "--for", "8s"]);
    scene.agent(&["datapath", "ban", "--jail", "0", "2001:db8:a::2"]);

    assert!(
        !connects(&scene.attacker, "192.0.2.1:8000"),
        "banned IPv4 client connected"
    );
    assert!(
        !connects(&scene.attacker, "[2001:db8:a::1]:8000"),
        "banned IPv6 client connected"
    );
    assert!(
        connects(&scene.client, "192.0.2.5:8000"),
        "legitimate client refused"
    );
    assert!(
        connects(&scene.client, "[2001:db8:b::1]:8000"),
        "legitimate client refused"
    );
    assert!(
        connects(&scene.attacker, "192.0.2.1:8001"),
        "unprotected port refused"
    );

    let counters = scene.agent(&["datapath", "counters"]);
    let jail0 = counters
        .lines()
        .find(|line| line.starts_with("0 "))
        .unwrap_or_else(|| panic!("no counters for jail 0: {counters}"));
    let dropped: u64 = jail0
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("dropped packets column");
    assert!(dropped >= 2, "kernel drop counter: {counters}");

    // The agent "restarts": a new process loads the program again and swaps it into the
    // pinned links. Bans survive and nothing is detached.
    let out = scene.agent(&attach);
    assert!(
        out.contains("s0: Replaced") && out.contains("s1: Replaced"),
        "{out}"
    );
    assert!(
        !connects(&scene.attacker, "[2001:db8:a::1]:8000"),
        "ban lost on restart"
    );
    assert!(
        banned_at.elapsed() < ban_length,
        "the machine is too slow for this test's timing: the 8 s ban expired before it \
         was checked"
    );
    assert!(
        !connects(&scene.attacker, "192.0.2.1:8000"),
        "ban lost on restart"
    );

    // No agent process runs now: the kernel alone ends the IPv4 ban at its expiry.
    std::thread::sleep(ban_length.saturating_sub(banned_at.elapsed()) + Duration::from_millis(200));
    assert!(
        connects(&scene.attacker, "192.0.2.1:8000"),
        "ban outlived its expiry"
    );
    assert!(
        !connects(&scene.attacker, "[2001:db8:a::1]:8000"),
        "permanent ban ended"
    );

    scene.agent(&["datapath", "unban", "--jail", "0", "2001:db8:a::2"]);
    assert!(
        connects(&scene.attacker, "[2001:db8:a::1]:8000"),
        "unban did not lift"
    );
}

#[test]
fn bpftool_shows_readable_bans_and_detach_removes_everything() {
    let Some(_serial) =
        common::privileged("bpftool_shows_readable_bans_and_detach_removes_everything")
    else {
        return;
    };
    let scene = Scene::new("ns2");
    scene.agent(&["datapath", "attach", "-i", "s0", "--protect", "0:tcp:8000"]);
    scene.agent(&["datapath", "ban", "--jail", "0", "192.0.2.2", "--for", "1h"]);
    scene.agent(&["datapath", "ban", "--jail", "0", "2001:db8:a::/64"]);

    let dump = |map: &str| {
        let path = scene.pins.dir.join(map);
        let out = sh(Command::new("bpftool")
            .args(["map", "dump", "pinned"])
            .arg(&path));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let v4 = dump("ban_v4");
    for field in ["\"jail\": 0", "\"addr\": [192,0,2,2", "\"expires_at_ns\": "] {
        assert!(v4.contains(field), "no {field} in bpftool's dump:\n{v4}");
    }
    let prefix = dump("ban_prefix_v6");
    for field in ["\"prefix_len\": 96", "\"jail\": 0", "\"expires_at_ns\": 0"] {
        assert!(
            prefix.contains(field),
            "no {field} in bpftool's dump:\n{prefix}"
        );
    }

    let link = scene.server.ip(&["link", "show", "s0"]);
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP not on s0"
    );
    scene.agent(&["datapath", "detach"]);
    let link = scene.server.ip(&["link", "show", "s0"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP left on s0"
    );
    assert!(!Path::new(&scene.pins.dir).exists(), "pins left behind");
}
