//! ban-agent as CrowdSec's bouncer: Debian's CrowdSec Local API started by the test on
//! loopback in the host's namespace (its own configuration and database), a bouncer key
//! made with `cscli bouncers add`, and the agent reading the decision stream with its
//! datapath (tc) on the host's veth; a client reaches the host from a namespace of its
//! own. Decisions are made and deleted with `cscli`, as an operator does.
//!
//! One test, in steps, each from the last one's state: a ban decision (address, range,
//! IPv6) is in the kernel within the interval and drops the client's packets, with the
//! decision's duration; what the rails refuse (ignoreip, the host's own address) and what
//! is not a ban (a captcha) is never banned; a deletion lifts the ban; decisions deleted
//! and made while the agent was stopped are lifted and made at its start; with the API
//! killed, the bans stay, and the agent reads on once it is back.

use crate::common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use common::{
    Netns, Pins,
    agent::{Daemon, cli, cli_json},
    crowdsec::Lapi,
    net::{Server, connects},
    veth,
};

const HOST: &str = "192.0.2.1";
const CLIENT: &str = "192.0.2.2";
const CLIENT6: &str = "2001:db8::2";
/// In the CrowdSec jail's ignoreip.
const SPARED: &str = "192.0.2.3";

struct Agent<'a> {
    ns: &'a Netns,
    dir: &'a Path,
}

impl Agent<'_> {
    fn start(&self) -> Daemon {
        Daemon::start_in(self.ns, self.dir)
    }

    fn banned(&self) -> Vec<(String, u64)> {
        let bans = cli_json(&self.dir.join("ctl.sock"), &["banned", "--json"]);
        bans["bans"]
            .as_array()
            .expect("a list of bans")
            .iter()
            .map(|ban| {
                (
                    ban["target"].as_str().unwrap_or_default().to_owned(),
                    ban["seconds_left"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    fn holds(&self, target: &str) -> bool {
        self.banned().iter().any(|(t, _)| t == target)
    }

    fn crowdsec(&self) -> serde_json::Value {
        cli_json(&self.dir.join("ctl.sock"), &["status", "--json"])["crowdsec"].clone()
    }
}

/// Waits up to 10 s for `condition`; returns how long it took.
fn eventually(daemon: &Daemon, what: &str, mut condition: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out: {what}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    started.elapsed()
}

#[test]
fn crowdsec_decisions_are_enforced_in_the_kernel_and_lifted_when_deleted() {
    let test = "crowdsec_decisions_are_enforced_in_the_kernel_and_lifted_when_deleted";
    let Some(_serial) = common::privileged(test) else {
        return;
    };
    let root = match common::crowdsec::root() {
        Ok(root) => root,
        Err(why) => return common::skip(test, &why),
    };
    let host = Netns::new("csh");
    let client = Netns::new("csc");
    veth(
        &host,
        "cs0",
        &[&format!("{HOST}/24"), "2001:db8::1/64"],
        &client,
        "cs0p",
        &[
            &format!("{CLIENT}/24"),
            &format!("{SPARED}/24"),
            &format!("{CLIENT6}/64"),
        ],
    );
    let mut lapi = Lapi::start(root, &host);
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("crowdsec.key");
    lapi.bouncer_key("ban-agent", &key);
    let pins = Pins::new("crowdsec");
    let config = format!(
        "socket = \"{socket}\"\nstate_dir = \"{state}\"\npin_dir = \"{pins}\"\n\
         interfaces = [\"cs0\"]\nmode = \"tc\"\n\
         [crowdsec]\nurl = \"{url}\"\napi_key_file = \"crowdsec.key\"\n\
         [jail.crowdsec]\nignoreip = [\"{SPARED}\"]\n",
        socket = dir.path().join("ctl.sock").display(),
        state = dir.path().join("state").display(),
        pins = pins.dir.display(),
        url = lapi.url(),
    );
    std::fs::write(dir.path().join("ban-agent.toml"), config).expect("the configuration");
    let agent = Agent {
        ns: &host,
        dir: dir.path(),
    };
    let _server = Server::start(&host, &[8000]);
    let to_host = format!("{HOST}:8000");
    let to_host6 = "[2001:db8::1]:8000";
    assert!(connects(&client, &to_host), "the client reaches the app");
    // `check` reads the key and asks the API whether it takes it.
    let check = host
        .command(common::agent::AGENT)
        .args(["check", "--config"])
        .arg(dir.path().join("ban-agent.toml"))
        .output()
        .expect("ban-agent check");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && said.contains("the Local API answers to the key"),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let daemon = agent.start();
    eventually(&daemon, "the agent reads the stream", || {
        agent.crowdsec()["connected"] == true
    });

    // A ban decision: in the kernel within the interval (1 s) and a poll, with the
    // decision's duration; the client's packets are dropped.
    lapi.cscli_ok(&["decisions", "add", "-i", CLIENT, "-d", "2h"]);
    let took = eventually(&daemon, "the decision is a ban", || {
        agent.holds(&format!("{CLIENT}/32"))
    });
    assert!(took < Duration::from_secs(3), "took {took:?}");
    let left = agent
        .banned()
        .into_iter()
        .find(|(t, _)| *t == format!("{CLIENT}/32"))
        .map(|(_, left)| left)
        .unwrap_or(0);
    assert!(
        (7180..=7200).contains(&left),
        "{left} s left of a 2h decision"
    );
    assert!(
        !connects(&client, &to_host),
        "a banned client's packets are dropped"
    );

    // A range and an IPv6 address.
    lapi.cscli_ok(&["decisions", "add", "-r", "198.51.100.0/24", "-d", "1h"]);
    lapi.cscli_ok(&["decisions", "add", "-i", CLIENT6, "-d", "1h"]);
    eventually(&daemon, "the range and the IPv6 address are banned", || {
        agent.holds("198.51.100.0/24") && agent.holds(&format!("{CLIENT6}/128"))
    });
    assert!(
        !connects(&client, to_host6),
        "the IPv6 client's packets are dropped"
    );

    // What the rails refuse, and what is not a ban: never banned, counted.
    lapi.cscli_ok(&["decisions", "add", "-i", SPARED]);
    lapi.cscli_ok(&["decisions", "add", "-i", HOST]);
    lapi.cscli_ok(&["decisions", "add", "-i", "192.0.2.9", "-t", "captcha"]);
    eventually(&daemon, "three decisions passed over", || {
        agent.crowdsec()["refused"].as_u64() >= Some(3)
    });
    let banned: Vec<String> = agent.banned().into_iter().map(|(t, _)| t).collect();
    for never in [SPARED, HOST, "192.0.2.9"] {
        assert!(
            !banned.contains(&format!("{never}/32")),
            "{never} banned: {banned:?}"
        );
    }
    let log = daemon.log();
    assert!(log.contains("ignoreip"), "the refusal is said:\n{log}");

    // A deletion lifts the ban.
    lapi.cscli_ok(&["decisions", "delete", "-i", CLIENT]);
    eventually(&daemon, "the deleted decision's ban is lifted", || {
        !agent.holds(&format!("{CLIENT}/32"))
    });
    assert!(
        connects(&client, &to_host),
        "the client reaches the app again"
    );

    // While the agent is stopped: one decision deleted, one made. At its start the full
    // read lifts the first and bans the second.
    cli(&dir.path().join("ctl.sock"), &["stop"]);
    daemon.wait();
    lapi.cscli_ok(&["decisions", "delete", "-r", "198.51.100.0/24"]);
    lapi.cscli_ok(&["decisions", "add", "-i", "192.0.2.4", "-d", "1h"]);
    let daemon = agent.start();
    eventually(
        &daemon,
        "the bans follow the decisions made meanwhile",
        || !agent.holds("198.51.100.0/24") && agent.holds("192.0.2.4/32"),
    );
    assert!(
        agent.holds(&format!("{CLIENT6}/128")),
        "a ban still decided stays"
    );

    // The API killed: the bans stay, `status` says it; back, the agent reads on.
    lapi.kill();
    eventually(&daemon, "status says the API does not answer", || {
        agent.crowdsec()["connected"] == false
    });
    assert!(
        agent.holds("192.0.2.4/32"),
        "bans stay while the API is gone"
    );
    assert!(
        !connects(&client, to_host6),
        "and packets are still dropped"
    );
    lapi.resume();
    lapi.cscli_ok(&["decisions", "delete", "-i", CLIENT6]);
    eventually(&daemon, "the agent reads on once the API is back", || {
        agent.crowdsec()["connected"] == true && !agent.holds(&format!("{CLIENT6}/128"))
    });
    assert!(
        connects(&client, to_host6),
        "the IPv6 client reaches the app again"
    );
    let metrics = agent.crowdsec();
    assert!(
        metrics["errors"].as_u64() >= Some(1),
        "the outage is counted: {metrics}"
    );
    drop(daemon);
}
