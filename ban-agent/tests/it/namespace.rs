//! Real packets between test-made namespaces: a server namespace with the datapath on two
//! veth interfaces, an attacker and a legitimate client behind them, in each hook (tc and
//! native XDP). Drives the real binary, each call a separate process that exits, as an
//! operator would.

use crate::common;

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

/// Server with the datapath on s0 (towards the attacker) and s1 (towards the client).
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
fn banned_client_is_dropped_on_the_protected_port_until_expiry_in_tc() {
    banned_client_is_dropped_until_expiry("tc", "ns1");
}

#[test]
fn banned_client_is_dropped_on_the_protected_port_until_expiry_in_xdp() {
    banned_client_is_dropped_until_expiry("xdp", "ns5");
}

fn banned_client_is_dropped_until_expiry(mode: &str, tag: &str) {
    let test = format!("banned_client_is_dropped_on_the_protected_port_until_expiry_in_{mode}");
    let Some(_serial) = common::privileged(&test) else {
        return;
    };
    let scene = Scene::new(tag);
    let _server = Server::start(&scene.server, &[PROTECTED, OPEN]);
    let attach = [
        "datapath",
        "attach",
        "-i",
        "s0",
        "-i",
        "s1",
        "--mode",
        mode,
        "--protect",
        "0:tcp:8000",
    ];
    let out = scene.agent(&attach);
    assert!(
        out.contains(&format!("s0: {mode} attached"))
            && out.contains(&format!("s1: {mode} attached")),
        "{out}"
    );

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
    scene.agent(&[
        "datapath",
        "ban",
        "--jail",
        "0",
        "2001:db8:a::2",
        "--for",
        "permanent",
    ]);

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
        out.contains(&format!("s0: {mode} program replaced in place"))
            && out.contains(&format!("s1: {mode} program replaced in place")),
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
    let attach = ["datapath", "attach", "-i", "s0", "--protect", "0:tcp:8000"];
    scene.agent(&[&attach[..], &["--mode", "xdp"]].concat());
    scene.agent(&["datapath", "ban", "--jail", "0", "192.0.2.2", "--for", "1h"]);
    // The /64 holds s0's own address: by hand, that takes --force.
    scene.agent(&[
        "datapath",
        "ban",
        "--jail",
        "0",
        "2001:db8:a::/64",
        "--for",
        "permanent",
        "--force",
    ]);

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

    // The README's commands: the time each ban has left, and one jail_ports slot.
    let list = scene.agent(&["datapath", "list"]);
    assert!(
        list.lines()
            .any(|l| l.contains("192.0.2.2/32") && l.contains("59m")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.contains("2001:db8:a::/64") && l.contains("permanent")),
        "{list}"
    );
    let slot = sh(Command::new("bpftool")
        .args(["map", "lookup", "pinned"])
        .arg(scene.pins.dir.join("jail_ports"))
        .args(["key", "0x40", "0x1f", "0", "0"]));
    let slot = String::from_utf8_lossy(&slot.stdout).into_owned();
    assert!(
        slot.contains("\"key\": 8000") && slot.contains("\"jails\": 1"),
        "{slot}"
    );

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

    // The same in tc mode: no link, no qdisc, no filter, no program left.
    let before = loaded_tc_programs();
    scene.agent(&[&attach[..], &["--mode", "tc"]].concat());
    assert_eq!(loaded_tc_programs(), before + 1, "one tc program attached");
    scene.agent(&["datapath", "detach"]);
    assert_eq!(
        loaded_tc_programs(),
        before,
        "the tc program outlived detach"
    );
    for what in [
        &["qdisc", "show", "dev", "s0"][..],
        &["filter", "show", "dev", "s0", "ingress"],
    ] {
        let out = sh(Command::new("tc")
            .arg("-n")
            .arg(&scene.server.name)
            .args(what));
        let out = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            !out.contains("clsact") && !out.contains("ingress") && !out.contains("bpf"),
            "tc {what:?} after detach: {out}"
        );
    }
    assert!(!Path::new(&scene.pins.dir).exists(), "pins left behind");
}

/// Programs named ban_tc loaded in the kernel (a link, a pin or a process holds each).
fn loaded_tc_programs() -> usize {
    // bpftool exits 255 when no program has the name.
    let out = Command::new("bpftool")
        .args(["prog", "show", "name", "ban_tc"])
        .output()
        .expect("run bpftool");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|line| line.contains("sched_cls"))
        .count()
}

/// The id of the tc link on s0 and the id of the program it runs, from bpftool.
fn tc_link(pins: &Pins) -> (u32, u32) {
    let pin = pins.dir.join("tc_s0");
    let out = sh(Command::new("bpftool")
        .args(["link", "show", "pinned"])
        .arg(&pin));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    let link = words
        .next()
        .and_then(|w| w.trim_end_matches(':').parse().ok())
        .unwrap_or_else(|| panic!("no link id in {text:?}"));
    let program = text
        .split_whitespace()
        .skip_while(|w| *w != "prog")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no program id in {text:?}"));
    (link, program)
}

/// A restart in tc mode swaps the new program into the same TCX link (the link id stays,
/// the program id changes) while the attacker keeps trying: not one of its connections
/// goes through, and the legitimate client keeps connecting.
#[test]
fn a_restart_in_tc_mode_keeps_the_link_and_the_bans_with_no_gap() {
    let Some(_serial) =
        common::privileged("a_restart_in_tc_mode_keeps_the_link_and_the_bans_with_no_gap")
    else {
        return;
    };
    let scene = Scene::new("ns3");
    let _server = Server::start(&scene.server, &[PROTECTED]);
    let attach = [
        "datapath",
        "attach",
        "-i",
        "s0",
        "-i",
        "s1",
        "--mode",
        "tc",
        "--protect",
        "0:tcp:8000",
    ];
    scene.agent(&attach);
    scene.agent(&["datapath", "ban", "--jail", "0", "192.0.2.2", "--for", "1h"]);
    let (link, first) = tc_link(&scene.pins);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let got_through = std::thread::scope(|scope| {
        let attacker = scope.spawn(|| {
            let mut through = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                through += usize::from(connects(&scene.attacker, "192.0.2.1:8000"));
            }
            through
        });
        for _ in 0..3 {
            let out = scene.agent(&attach);
            assert!(out.contains("s0: tc program replaced in place"), "{out}");
            assert!(
                connects(&scene.client, "192.0.2.5:8000"),
                "legitimate client refused"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        attacker.join().expect("attacker thread")
    });
    assert_eq!(
        got_through, 0,
        "the banned attacker connected during a restart"
    );
    let (link_after, program_after) = tc_link(&scene.pins);
    assert_eq!(
        link_after, link,
        "a restart made a new link instead of updating it"
    );
    assert_ne!(
        program_after, first,
        "the link still runs the first program"
    );
}

/// `auto` on a veth attaches tc, and the peer keeps its segmentation offloads (native XDP
/// would turn them off: veth_xdp_set). With the peer in another namespace its offloads
/// cannot be read, so auto does not try XDP's luck; with both ends in one namespace it
/// sees them go off under XDP and says which.
#[test]
fn auto_on_a_veth_chooses_tc_and_leaves_the_peers_gso_on() {
    use ban_agent::datapath::ethtool::Ethtool;
    let Some(_serial) = common::privileged("auto_on_a_veth_chooses_tc_and_leaves_the_peers_gso_on")
    else {
        return;
    };
    let scene = Scene::new("ns4");
    let features = |ns: &Netns, interface: &str| {
        ns.run(|| {
            Ethtool::new(interface)
                .and_then(|e| e.features())
                .unwrap_or_else(|e| panic!("features of {interface}: {e}"))
        })
    };
    let gso = "tx-tcp-segmentation";
    let before = features(&scene.attacker, "a0");
    assert!(before.0.contains(gso), "{before:?}");

    let out = scene.agent(&["datapath", "attach", "-i", "s0", "--protect", "0:tcp:8000"]);
    assert!(out.contains("s0: tc attached (auto: "), "{out}");
    assert!(out.contains("another namespace"), "{out}");
    assert_eq!(
        features(&scene.attacker, "a0"),
        before,
        "the peer's offloads changed"
    );

    // Both ends in the server's namespace: auto reads the peer's offloads go off.
    common::sh(Command::new("ip").args([
        "-n",
        &scene.server.name,
        "link",
        "add",
        "s2",
        "type",
        "veth",
        "peer",
        "name",
        "s3",
    ]));
    scene.server.ip(&["link", "set", "s2", "up"]);
    scene.server.ip(&["link", "set", "s3", "up"]);
    let peer_before = features(&scene.server, "s3");
    let out = scene.agent(&["datapath", "attach", "-i", "s2", "--protect", "0:tcp:8000"]);
    assert!(
        out.contains("s2: tc attached (auto: native XDP on veth turned off"),
        "{out}"
    );
    assert!(out.contains(&format!("{gso} on s3")), "{out}");
    assert_eq!(
        features(&scene.server, "s3"),
        peer_before,
        "s3's offloads changed"
    );
    let link = scene.server.ip(&["-d", "link", "show", "s2"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "the XDP probe stayed on s2"
    );
}

/// On a kernel without TCX links (before 6.6), tc is a filter on the clsact qdisc, at a
/// fixed priority and handle; forced here with the hidden `--tc-clsact`. It drops the
/// banned client, a restart replaces its program in place (still one filter, the same
/// priority, bans kept), and detach removes the filter.
#[test]
fn without_tcx_the_tc_hook_is_a_clsact_filter_replaced_in_place() {
    let Some(_serial) =
        common::privileged("without_tcx_the_tc_hook_is_a_clsact_filter_replaced_in_place")
    else {
        return;
    };
    let scene = Scene::new("ns6");
    let _server = Server::start(&scene.server, &[PROTECTED]);
    let attach = [
        "datapath",
        "attach",
        "-i",
        "s0",
        "--mode",
        "tc",
        "--tc-clsact",
        "--protect",
        "0:tcp:8000",
    ];
    let filters = || {
        let out = sh(Command::new("tc").args([
            "-n",
            &scene.server.name,
            "filter",
            "show",
            "dev",
            "s0",
            "ingress",
        ]));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|line| line.contains("ban_tc"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let out = scene.agent(&attach);
    assert!(
        out.contains("s0: tc attached (mode tc (a clsact filter"),
        "{out}"
    );
    let first = filters();
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].contains("pref 186"), "{first:?}");
    scene.agent(&["datapath", "ban", "--jail", "0", "192.0.2.2", "--for", "1h"]);
    assert!(
        !connects(&scene.attacker, "192.0.2.1:8000"),
        "banned client connected"
    );
    assert!(
        connects(&scene.client, "192.0.2.5:8000"),
        "legitimate client refused"
    );

    let out = scene.agent(&attach);
    assert!(out.contains("s0: tc program replaced in place"), "{out}");
    let again = filters();
    assert_eq!(again.len(), 1, "{again:?}");
    assert_ne!(
        again, first,
        "the filter still runs the first program (its id)"
    );
    assert!(
        !connects(&scene.attacker, "192.0.2.1:8000"),
        "ban lost on restart"
    );

    scene.agent(&["datapath", "detach"]);
    assert!(filters().is_empty(), "the clsact filter outlived detach");
    assert!(
        connects(&scene.attacker, "192.0.2.1:8000"),
        "detach left a drop"
    );
    assert!(!Path::new(&scene.pins.dir).exists(), "pins left behind");
}

/// An interface that does not exist fails at once, with one message naming it, and leaves
/// nothing behind: no pin directory, no map.
#[test]
fn an_interface_that_does_not_exist_fails_before_anything_is_pinned() {
    let Some(_serial) =
        common::privileged("an_interface_that_does_not_exist_fails_before_anything_is_pinned")
    else {
        return;
    };
    let scene = Scene::new("ns7");
    let pin = scene.pins.arg();
    let out = scene
        .server
        .command(AGENT)
        .args([
            "datapath",
            "attach",
            "-i",
            "s0",
            "-i",
            "nope0",
            "--protect",
            "0:tcp:8000",
        ])
        .args(["--pin-dir", &pin])
        .output()
        .expect("run the agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "attach to a missing interface succeeded"
    );
    assert!(
        stderr.contains("there is no interface nope0 in this network namespace"),
        "{stderr}"
    );
    assert!(!stderr.contains("generic"), "{stderr}");
    assert!(!Path::new(&scene.pins.dir).exists(), "pins left behind");
    let link = scene.server.ip(&["-d", "link", "show", "s0"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "s0 was attached all the same"
    );
}

/// `datapath ban` by hand: a finite default length, said; a prefix holding the host's own
/// address or its default gateway, or a jail that protects no port, only with --force;
/// and a warning under `ip netns exec`, whose private bpffs loses every pin.
#[test]
fn datapath_ban_by_hand_is_finite_by_default_and_refuses_to_cut_the_host_off() {
    let Some(_serial) = common::privileged(
        "datapath_ban_by_hand_is_finite_by_default_and_refuses_to_cut_the_host_off",
    ) else {
        return;
    };
    let scene = Scene::new("ns8");
    scene.agent(&["datapath", "attach", "-i", "s0", "--protect", "0:tcp:8000"]);
    let refused = |args: &[&str]| {
        let pin = scene.pins.arg();
        let out = scene
            .server
            .command(AGENT)
            .args(["datapath", "ban"])
            .args(args)
            .args(["--pin-dir", &pin])
            .output()
            .expect("run the agent");
        assert!(!out.status.success(), "{args:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let out = scene.agent(&["datapath", "ban", "--jail", "0", "192.0.2.2"]);
    assert!(
        out.contains("192.0.2.2 banned in jail 0 for 1h (the default"),
        "{out}"
    );
    let list = scene.agent(&["datapath", "list"]);
    assert!(list.contains("59m"), "{list}");

    // 192.0.2.0/30 holds s0's 192.0.2.1.
    let error = refused(&["--jail", "0", "192.0.2.0/30"]);
    assert!(
        error.contains("this host's address 192.0.2.1") && error.contains("--force"),
        "{error}"
    );
    // The default gateway.
    scene
        .server
        .ip(&["route", "add", "default", "via", "192.0.2.6"]);
    let error = refused(&["--jail", "0", "192.0.2.6"]);
    assert!(error.contains("the default gateway 192.0.2.6"), "{error}");
    let out = scene.agent(&["datapath", "ban", "--jail", "0", "192.0.2.6", "--force"]);
    assert!(out.contains("banned in jail 0"), "{out}");
    // A jail that protects nothing.
    let error = refused(&["--jail", "3", "198.51.100.7"]);
    assert!(error.contains("jail 3 protects no port"), "{error}");

    // Under `ip netns exec` the pins land on a private bpffs: said, with the way out.
    let private = Pins::new("ns8-private");
    let out = Command::new("ip")
        .args(["netns", "exec", &scene.server.name, AGENT])
        .args(["datapath", "attach", "-i", "s1", "--protect", "0:tcp:8000"])
        .args(["--pin-dir", &private.arg()])
        .output()
        .expect("run under ip netns exec");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nsenter --net="), "{stderr}");
    assert!(
        !private.dir.exists(),
        "the private bpffs's pins are visible outside it"
    );
    // Its link died with the private bpffs: nothing stays attached to s1.
    std::thread::sleep(Duration::from_millis(200));
    let link = scene.server.ip(&["-d", "link", "show", "s1"]);
    assert!(!String::from_utf8_lossy(&link.stdout).contains("prog/xdp"));
}
