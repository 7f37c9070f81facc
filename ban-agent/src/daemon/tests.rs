//! The agent against an in-memory kernel: detection to ban, expiry, restart and reboot,
//! reload, operator verbs.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
};

use ipnet::IpNet;

use super::{Agent, Kernel, Now, Setup};
use crate::{
    clock::Expiry,
    config::Config,
    control::protocol::{Reply, Request},
    datapath::{BanRecord, DatapathError, JailPorts},
    metrics::Metrics,
    store::Store,
};

type KernelBans = Arc<Mutex<BTreeMap<(u32, IpNet), Expiry>>>;

#[derive(Default, Clone)]
struct FakeKernel {
    bans: KernelBans,
    ports: Arc<Mutex<Vec<JailPorts>>>,
    /// Bans the map holds at most, as the real maps' capacity; none when `None`.
    capacity: Option<usize>,
}

impl Kernel for FakeKernel {
    fn ban(&mut self, jail: u32, target: IpNet, expiry: Expiry) -> Result<(), DatapathError> {
        let mut bans = self.bans.lock().expect("lock");
        if self
            .capacity
            .is_some_and(|capacity| bans.len() >= capacity && !bans.contains_key(&(jail, target)))
        {
            return Err(DatapathError::MapFull {
                map: "ban_v4",
                capacity: 2,
            });
        }
        bans.insert((jail, target), expiry);
        Ok(())
    }
    fn unban(&mut self, jail: u32, target: IpNet) -> Result<bool, DatapathError> {
        Ok(self
            .bans
            .lock()
            .expect("lock")
            .remove(&(jail, target))
            .is_some())
    }
    fn list(&self) -> Result<Vec<BanRecord>, DatapathError> {
        Ok(self
            .bans
            .lock()
            .expect("lock")
            .iter()
            .map(|(&(jail, target), &expiry)| BanRecord {
                jail,
                target,
                expiry,
            })
            .collect())
    }
    fn set_jails(&mut self, jails: &[JailPorts]) -> Result<(), DatapathError> {
        *self.ports.lock().expect("lock") = jails.to_vec();
        Ok(())
    }
    fn counters(&self) -> Result<Vec<(u32, ban_common::JailCounters)>, DatapathError> {
        Ok(Vec::new())
    }
    fn capacities(&self) -> Vec<(&'static str, u32)> {
        vec![("ban_v4", 100)]
    }
}

const T0: i64 = 1_795_521_600_000; // 2026-11-24 12:00:00 UTC

fn now(seconds: i64) -> Now {
    Now {
        wall: T0 + seconds * 1000,
        boot: 1_000_000_000_000 + u64::try_from(seconds).expect("positive") * 1_000_000_000,
    }
}

fn config(dir: &Path, maxretry: u32, extra: &str) -> Config {
    let text = format!(
        "state_dir = \"state\"\nignoreself = false\n\
         [jail.auth]\nlogpath = \"auth.log\"\nfilter = \"fastapi-auth\"\nmaxretry = {maxretry}\n\
         bantime = \"10m\"\nports = [8000]\nstart = \"head\"\nignoreip = [\"198.51.100.0/24\"]\n{extra}"
    );
    let path = dir.join("ban-agent.toml");
    std::fs::write(&path, &text).expect("write config");
    Config::parse(&path, &text).expect("valid config")
}

/// The app's failure line for `host`, stamped `second` after `T0`, with its `\n`.
fn failure_line(host: &str, second: i64) -> String {
    let at = jiff::Timestamp::from_millisecond(T0 + second * 1000).expect("time");
    format!(
        "{} - fastapi-auth - INFO - {host} - \"POST /login\" 401 - 0.0100s\n",
        at.strftime("%Y-%m-%d %H:%M:%S,000")
    )
}

/// Appends `text` to the jail's log `auth.log` in `dir`.
fn append(dir: &Path, text: &str) {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("auth.log"))
        .expect("open log");
    file.write_all(text.as_bytes()).expect("append");
}

fn failure(dir: &Path, host: &str, second: i64) {
    append(dir, &failure_line(host, second));
}

fn start(config: Config, kernel: &FakeKernel, at: Now) -> Agent {
    start_on(config, kernel, at, Vec::new())
}

/// [`start`] on a host whose addresses are `own`.
fn start_on(config: Config, kernel: &FakeKernel, at: Now, own: Vec<std::net::IpAddr>) -> Agent {
    start_with(config, Box::new(kernel.clone()), at, own)
}

/// [`start_on`] any kernel.
fn start_with(
    config: Config,
    kernel: Box<dyn Kernel>,
    at: Now,
    own: Vec<std::net::IpAddr>,
) -> Agent {
    let store = Some(Store::open(&config.global.state_dir, at.wall).expect("state"));
    let setup = Setup {
        own,
        zone: jiff::tz::TimeZone::UTC,
        metrics: Metrics::new(),
        events: None,
    };
    Agent::start(config, kernel, store, setup, at).expect("agent starts")
}

fn net(text: &str) -> IpNet {
    text.parse().expect("a network")
}

fn ask(agent: &mut Agent, request: Request, at: Now) -> Reply {
    agent.handle(request, at).0
}

#[test]
fn the_maxretry_th_failure_is_in_the_kernel_after_one_poll_and_leaves_at_expiry() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 3, ""), &kernel, now(0));
    for s in 1..=3 {
        failure(dir.path(), "192.0.2.7", s);
    }
    assert_eq!(agent.poll(now(4)), 3);
    let bans = kernel.bans.lock().expect("lock").clone();
    assert_eq!(
        bans.get(&(0, net("192.0.2.7/32"))),
        Some(&Expiry::At(now(4).boot + 600 * 1_000_000_000)),
        "banned for bantime from when the ban was decided"
    );
    assert_eq!(
        kernel.ports.lock().expect("lock")[0].ports,
        Some(vec![8000])
    );
    let Reply::Jail(status) = ask(
        &mut agent,
        Request::Status {
            jail: Some("auth".into()),
        },
        now(5),
    ) else {
        panic!("a jail status");
    };
    assert_eq!((status.total_failed, status.currently_banned), (3, 1));
    agent.sweep(now(4 + 599));
    assert_eq!(kernel.bans.lock().expect("lock").len(), 1);
    agent.sweep(now(4 + 600));
    assert!(
        kernel.bans.lock().expect("lock").is_empty(),
        "lifted at expiry"
    );
}

#[test]
fn a_restart_keeps_bans_positions_and_failures_and_a_reboot_restores_them_on_the_new_clock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 2, ""), &kernel, now(0));
    failure(dir.path(), "192.0.2.7", 1);
    failure(dir.path(), "192.0.2.7", 2);
    failure(dir.path(), "192.0.2.8", 3);
    agent.poll(now(3));
    // No stop, no save: what a poll read is committed by the poll (a `kill -9` here).
    drop(agent);

    // Restart, kernel intact: the line of .8 read before is not read again, but its
    // failure still counts: with the one since, .8 reaches maxretry 2.
    failure(dir.path(), "192.0.2.8", 10);
    let mut agent = start(config(dir.path(), 2, ""), &kernel, now(10));
    assert_eq!(
        agent.poll(now(10)),
        1,
        "resumed after the lines already read"
    );
    assert_eq!(
        kernel.bans.lock().expect("lock").len(),
        2,
        ".7, and .8 from one failure before the restart and one after"
    );
    drop(agent);

    // Reboot: the kernel is empty and its clock starts again.
    let rebooted = FakeKernel::default();
    let after_reboot = Now {
        wall: T0 + 100_000,
        boot: 5_000_000_000,
    };
    let agent = start(config(dir.path(), 2, ""), &rebooted, after_reboot);
    let bans = rebooted.bans.lock().expect("lock").clone();
    // Banned at second 3 for 600 s: 503 s left at second 100.
    assert_eq!(
        bans.get(&(0, net("192.0.2.7/32"))),
        Some(&Expiry::At(5_000_000_000 + 503 * 1_000_000_000))
    );
    drop(agent);

    // Long after the end, nothing comes back.
    let late = FakeKernel::default();
    let _agent = start(config(dir.path(), 2, ""), &late, now(10_000));
    assert!(late.bans.lock().expect("lock").is_empty());
}

#[test]
fn reload_applies_a_new_maxretry_keeps_bans_and_lifts_those_of_a_removed_jail() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let web = "[jail.web]\nlogpath = \"web.log\"\nfilter = \"fastapi-auth\"\n";
    let mut agent = start(config(dir.path(), 5, web), &kernel, now(0));
    assert!(matches!(
        ask(
            &mut agent,
            Request::Ban {
                jail: "web".into(),
                target: net("192.0.2.50/32"),
                seconds: None,
                permanent: true,
                force: false,
                local: false,
            },
            now(0)
        ),
        Reply::Done { .. }
    ));
    failure(dir.path(), "192.0.2.7", 1);
    failure(dir.path(), "192.0.2.7", 2);
    agent.poll(now(2));
    assert!(
        kernel
            .bans
            .lock()
            .expect("lock")
            .get(&(0, net("192.0.2.7/32")))
            .is_none()
    );

    config(dir.path(), 3, "");
    assert!(matches!(
        ask(&mut agent, Request::Reload { jail: None }, now(3)),
        Reply::Done { .. }
    ));
    assert!(
        kernel
            .bans
            .lock()
            .expect("lock")
            .get(&(1, net("192.0.2.50/32")))
            .is_none(),
        "jail web is gone, so is its ban"
    );
    assert!(matches!(
        ask(&mut agent, Request::Get { jail: "auth".into(), key: crate::control::protocol::JailKey::Maxretry }, now(3)),
        Reply::Setting { shown, .. } if shown == "3"
    ));
    failure(dir.path(), "192.0.2.7", 4);
    agent.poll(now(4));
    assert!(
        kernel
            .bans
            .lock()
            .expect("lock")
            .contains_key(&(0, net("192.0.2.7/32"))),
        "the third failure bans under the new maxretry"
    );
}

#[test]
fn operators_cannot_ban_what_is_spared_and_are_told_which_network_holds_an_address() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 5, ""), &kernel, now(0));
    let refused = |reply: Reply| match reply {
        Reply::Error { message } => message,
        other => panic!("{other:?}"),
    };
    let message = refused(ask(
        &mut agent,
        Request::Ban {
            jail: "auth".into(),
            target: net("198.51.100.9/32"),
            seconds: None,
            permanent: false,
            force: false,
            local: false,
        },
        now(0),
    ));
    assert!(message.contains("ignoreip"), "{message}");
    assert!(message.contains("--force"), "{message}");
    // Without the `force` exception in operator_ban, this one is refused like the first.
    let forced = ask(
        &mut agent,
        Request::Ban {
            jail: "auth".into(),
            target: net("198.51.100.9/32"),
            seconds: Some(60),
            permanent: false,
            force: true,
            local: false,
        },
        now(0),
    );
    assert!(matches!(forced, Reply::Done { .. }), "{forced:?}");
    // Loopback and unspecified stay refused, --force or not.
    for reserved in ["127.0.0.1/32", "::1/128", "0.0.0.0/0", "::/0"] {
        let message = refused(ask(
            &mut agent,
            Request::Ban {
                jail: "auth".into(),
                target: net(reserved),
                seconds: None,
                permanent: true,
                force: true,
                local: false,
            },
            now(0),
        ));
        assert!(message.contains("never banned"), "{reserved}: {message}");
    }
    ask(&mut agent, Request::UnbanAll, now(0));
    let message = refused(ask(
        &mut agent,
        Request::Ban {
            jail: "nope".into(),
            target: net("192.0.2.1/32"),
            seconds: None,
            permanent: false,
            force: false,
            local: false,
        },
        now(0),
    ));
    assert!(message.contains("running jails are: auth"), "{message}");
    ask(
        &mut agent,
        Request::Ban {
            jail: "auth".into(),
            target: net("192.0.2.0/24"),
            seconds: Some(60),
            permanent: false,
            force: false,
            local: false,
        },
        now(0),
    );
    let message = refused(ask(
        &mut agent,
        Request::Unban {
            target: net("192.0.2.7/32"),
            jail: None,
            local: false,
        },
        now(1),
    ));
    assert!(message.contains("inside 192.0.2.0/24 in auth"), "{message}");
    let Reply::Bans { bans } = ask(
        &mut agent,
        Request::Banned {
            target: Some(net("192.0.2.7/32")),
            jail: None,
        },
        now(1),
    ) else {
        panic!("bans");
    };
    assert_eq!((bans.len(), bans[0].seconds_left), (1, Some(59)));
    assert!(matches!(
        ask(&mut agent, Request::UnbanAll, now(2)),
        Reply::Count { .. }
    ));
    assert!(kernel.bans.lock().expect("lock").is_empty());
}

/// fail2ban-client's `set JAIL banip|unbanip` and `unban IP...`: counted, all or nothing
/// for a spared address, a network lifting what lies inside it, an absent address passed
/// over unless asked; and `get`'s raw values.
#[test]
fn banip_and_unbanip_count_what_they_do_as_fail2ban_client_does() {
    use crate::control::protocol::{JailKey, Setting};
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 3, ""), &kernel, now(0));
    let count = |reply: Reply| match reply {
        Reply::Count { count, .. } => count,
        other => panic!("{other:?}"),
    };
    let refused = |reply: Reply| match reply {
        Reply::Error { message } => message,
        other => panic!("{other:?}"),
    };
    let ban_ip = |targets: &[&str]| Request::BanIp {
        jail: "auth".into(),
        targets: targets.iter().map(|t| net(t)).collect(),
    };
    let unban_ip = |jail: Option<&str>, targets: &[&str], report_absent| Request::UnbanIp {
        jail: jail.map(str::to_owned),
        targets: targets.iter().map(|t| net(t)).collect(),
        report_absent,
    };
    let in_kernel = || kernel.bans.lock().expect("lock").len();

    assert_eq!(
        count(ask(
            &mut agent,
            ban_ip(&["192.0.2.7/32", "192.0.2.8/32"]),
            now(1)
        )),
        2
    );
    // One in force already is not counted again.
    assert_eq!(
        count(ask(
            &mut agent,
            ban_ip(&["192.0.2.7/32", "192.0.2.9/32"]),
            now(2)
        )),
        1
    );
    assert_eq!(in_kernel(), 3);
    // One the jail may not ban (its ignoreip): none of them is banned.
    let message = refused(ask(
        &mut agent,
        ban_ip(&["192.0.2.10/32", "198.51.100.4/32"]),
        now(3),
    ));
    assert!(
        message.contains("nothing banned in auth: 198.51.100.4"),
        "{message}"
    );
    assert_eq!(in_kernel(), 3);

    // A network lifts the bans inside it; an address not banned is passed over.
    assert_eq!(
        count(ask(
            &mut agent,
            unban_ip(Some("auth"), &["192.0.2.8/31"], false),
            now(4)
        )),
        2
    );
    assert_eq!(
        count(ask(
            &mut agent,
            unban_ip(None, &["192.0.2.200/32"], false),
            now(4)
        )),
        0
    );
    assert_eq!(in_kernel(), 1);
    // Asked to, it names the absent ones once the others are lifted.
    let message = refused(ask(
        &mut agent,
        unban_ip(Some("auth"), &["192.0.2.7/32", "192.0.2.200/32"], true),
        now(5),
    ));
    assert!(
        message.contains("not banned in auth: 192.0.2.200 (the other 1 lifted)"),
        "{message}"
    );
    assert_eq!(in_kernel(), 0);
    assert!(
        refused(ask(
            &mut agent,
            unban_ip(Some("nope"), &["192.0.2.7/32"], false),
            now(5)
        ))
        .contains("nope")
    );
    let banned_in = |jail: &str| Request::Banned {
        target: None,
        jail: Some(jail.into()),
    };
    assert!(
        matches!(ask(&mut agent, banned_in("auth"), now(5)), Reply::Bans { bans } if bans.is_empty())
    );
    assert!(refused(ask(&mut agent, banned_in("nope"), now(5))).contains("nope"));

    let get = |agent: &mut Agent, key| match ask(
        agent,
        Request::Get {
            jail: "auth".into(),
            key,
        },
        now(6),
    ) {
        Reply::Setting { value, .. } => value,
        other => panic!("{other:?}"),
    };
    assert_eq!(get(&mut agent, JailKey::Bantime), Setting::Number(600));
    assert_eq!(get(&mut agent, JailKey::Findtime), Setting::Number(600));
    assert_eq!(get(&mut agent, JailKey::Maxretry), Setting::Number(3));
    assert_eq!(get(&mut agent, JailKey::Maxlines), Setting::Number(1));
    assert_eq!(
        get(&mut agent, JailKey::Actions),
        Setting::List(vec!["kernel".into()])
    );
    assert_eq!(
        get(&mut agent, JailKey::Ignoreip),
        Setting::List(vec!["198.51.100.0/24".into()])
    );
}

/// fail2ban's bans carried over: one in force is banned until it ends there and its
/// earlier bans join the history; an ended one brings only its count; a jail not running
/// here and an address the jail spares are passed over.
#[test]
fn bans_carried_from_fail2ban_end_when_they_end_there_with_their_counts() {
    use crate::fail2ban::bans::CarriedBan;
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let config = config(dir.path(), 3, "");
    let state_dir = config.global.state_dir.clone();
    let mut agent = start(config, &kernel, now(0));
    let carried = |jail: &str, target: &str, expires_at: Option<i64>, bans| CarriedBan {
        jail: jail.into(),
        target: net(target),
        banned_at: T0 - 60_000,
        expires_at,
        bans,
    };
    let reply = ask(
        &mut agent,
        Request::CarryBans {
            bans: vec![
                carried("auth", "192.0.2.7/32", Some(T0 + 120_000), 3),
                carried("auth", "192.0.2.8/32", Some(T0 - 1_000), 2),
                carried("auth", "2001:db8::/64", None, 1),
                carried("sshd", "192.0.2.9/32", None, 1),
                carried("auth", "198.51.100.7/32", None, 1),
            ],
        },
        now(0),
    );
    let Reply::Count { count, message } = reply else {
        panic!("{reply:?}");
    };
    assert_eq!(count, 2, "{message}");
    assert!(
        message.contains("192.0.2.9 in sshd: no such jail runs here"),
        "{message}"
    );
    assert!(message.contains("198.51.100.7 in auth"), "{message}");
    let in_kernel: Vec<(IpNet, Expiry)> = kernel
        .bans
        .lock()
        .expect("lock")
        .iter()
        .map(|(&(_, target), &expiry)| (target, expiry))
        .collect();
    assert_eq!(
        in_kernel,
        [
            (
                net("192.0.2.7/32"),
                Expiry::after(now(0).boot, std::time::Duration::from_secs(120))
            ),
            (net("2001:db8::/64"), Expiry::Never),
        ]
    );
    agent.commit();
    let history = Store::inspect(&state_dir)
        .expect("state")
        .expect("a state")
        .history("auth")
        .expect("history");
    assert_eq!(
        history.into_iter().collect::<Vec<_>>(),
        [
            (net("192.0.2.7/32"), 3),
            (net("192.0.2.8/32"), 2),
            (net("2001:db8::/64"), 1)
        ]
    );
}

#[test]
fn addignoreip_spares_an_address_from_then_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 1, ""), &kernel, now(0));
    ask(
        &mut agent,
        Request::AddIgnoreIp {
            jail: "auth".into(),
            target: net("192.0.2.7/32"),
        },
        now(0),
    );
    failure(dir.path(), "192.0.2.7", 1);
    agent.poll(now(1));
    assert!(kernel.bans.lock().expect("lock").is_empty());
    ask(
        &mut agent,
        Request::DelIgnoreIp {
            jail: "auth".into(),
            target: net("192.0.2.7/32"),
        },
        now(2),
    );
    failure(dir.path(), "192.0.2.7", 2);
    agent.poll(now(2));
    assert_eq!(kernel.bans.lock().expect("lock").len(), 1);
}

fn metric_line(agent: &Agent, name: &str) -> String {
    agent
        .metrics()
        .encode()
        .lines()
        .find(|line| line.starts_with(name))
        .unwrap_or_default()
        .to_owned()
}

// Safety rail: a filter gone wrong cannot ban the whole Internet in a minute. Without the
// `rate.admit` check in `Agent::poll`, all five addresses are banned at once.
#[test]
fn a_jail_bans_at_most_max_bans_per_minute_and_counts_the_rest() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(
        config(dir.path(), 1, "max_bans_per_minute = 2\n"),
        &kernel,
        now(0),
    );
    for i in 1..=5 {
        failure(dir.path(), &format!("192.0.2.{i}"), 1);
    }
    agent.poll(now(2));
    assert_eq!(kernel.bans.lock().expect("lock").len(), 2);
    assert_eq!(
        metric_line(&agent, "ban_agent_bans_refused_total"),
        "ban_agent_bans_refused_total{jail=\"auth\",reason=\"rate_cap\"} 3"
    );
    // A minute later a held-back address that fails again is banned.
    failure(dir.path(), "192.0.2.3", 70);
    agent.poll(now(70));
    assert!(
        kernel
            .bans
            .lock()
            .expect("lock")
            .contains_key(&(0, net("192.0.2.3/32")))
    );
}

// The ban map full: the new ban is refused, the bans in force stay, and the refusal is
// counted (`bans_refused_total{reason="map_full"}`) and logged. Without the MapFull branch
// in `Agent::poll`, the metric line is missing.
#[test]
fn a_full_ban_map_refuses_new_bans_keeps_the_others_and_says_so() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel {
        capacity: Some(2),
        ..FakeKernel::default()
    };
    let mut agent = start(config(dir.path(), 1, ""), &kernel, now(0));
    for i in 1..=3 {
        failure(dir.path(), &format!("192.0.2.{i}"), 1);
    }
    agent.poll(now(2));
    let bans = kernel.bans.lock().expect("lock").clone();
    assert_eq!(
        bans.keys().map(|(_, target)| *target).collect::<Vec<_>>(),
        [net("192.0.2.1/32"), net("192.0.2.2/32")]
    );
    assert_eq!(
        metric_line(&agent, "ban_agent_bans_refused_total"),
        "ban_agent_bans_refused_total{jail=\"auth\",reason=\"map_full\"} 1"
    );
}

/// What the agent logs while `f` runs, as text.
fn logged(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = sink.0.lock().expect("lock").clone();
    String::from_utf8_lossy(&bytes).into_owned()
}

// A log written faster than the agent reads it: each poll reads one budget (4 MiB), the
// lag is in the metric, and the agent says it is behind, once, and says when it has caught
// up. Without `Log::judge_lag` the warning is missing; without the read budget in
// `Follower::poll` the first poll reads everything and nothing is ever behind.
#[test]
fn an_agent_behind_its_log_reads_a_budget_at_a_time_and_says_so() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    // Long lines (1 KiB) make the 80 MiB cheap to read in a debug build.
    let mut line = b"2026-11-24 12:00:00,000 - other - INFO - ".to_vec();
    line.resize(1023, b'x');
    line.push(b'\n');
    let mut log = std::io::BufWriter::new(
        std::fs::File::create(dir.path().join("auth.log")).expect("create the log"),
    );
    let written = super::follow::LAG_ALERT_BYTES + crate::tail::DEFAULT_READ_BUDGET;
    for _ in 0..written / line.len() as u64 {
        log.write_all(&line).expect("write");
    }
    log.flush().expect("flush");
    let mut agent = start(config(dir.path(), 5, ""), &kernel, now(0));
    let behind = logged(|| {
        agent.poll(now(1));
        agent.sweep(now(1));
        agent.sweep(now(2));
    });
    assert!(agent.reading(), "one poll reads one budget");
    assert_eq!(behind.matches("falling behind").count(), 1, "{behind}");
    let lag = metric_line(&agent, "ban_agent_follower_lag_bytes");
    let bytes: u64 = lag
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(bytes >= super::follow::LAG_ALERT_BYTES, "{lag}");
    let caught_up = logged(|| {
        while agent.reading() {
            agent.poll(now(3));
        }
        agent.sweep(now(3));
    });
    assert!(caught_up.contains("caught up"), "{caught_up}");
}

/// `stop` says what is true: a dry run attached nothing, a real run leaves the datapath
/// attached (or detaches it).
#[test]
fn stop_says_what_stays_and_a_dry_run_says_nothing_was_attached() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = Setup {
        own: Vec::new(),
        zone: jiff::tz::TimeZone::UTC,
        metrics: Metrics::new(),
        events: None,
    };
    let config = config(dir.path(), 3, "");
    let mut dry = Agent::start(
        config.clone(),
        Box::new(super::NoKernel),
        None,
        setup,
        now(0),
    )
    .expect("agent starts");
    let stop = |detach| Request::Stop { detach };
    for detach in [false, true] {
        let Reply::Done { message } = ask(&mut dry, stop(detach), now(1)) else {
            panic!("stop answered otherwise");
        };
        assert!(message.contains("dry run attached nothing"), "{message}");
        assert!(!message.contains("stays attached"), "{message}");
    }
    let mut real = start(config, &FakeKernel::default(), now(0));
    let Reply::Done { message } = ask(&mut real, stop(false), now(1)) else {
        panic!("stop answered otherwise");
    };
    assert!(message.contains("stays attached"), "{message}");
}

/// A ban of an address already banned never shortens it: permanent stays permanent, a
/// shorter one is refused with "already banned until", a longer one extends the ban in
/// force; neither counts as a new ban.
#[test]
fn a_second_ban_never_shortens_the_one_in_force_nor_counts_as_new() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 3, ""), &kernel, now(0));
    let ban = |seconds: Option<u64>, permanent| Request::Ban {
        jail: "auth".to_owned(),
        target: net("192.0.2.9/32"),
        seconds,
        permanent,
        force: false,
        local: false,
    };
    let message = |reply: Reply| match reply {
        Reply::Done { message } => message,
        other => panic!("{other:?}"),
    };
    let total = |agent: &mut Agent| match ask(
        agent,
        Request::Status {
            jail: Some("auth".to_owned()),
        },
        now(5),
    ) {
        Reply::Jail(status) => (status.total_banned, status.currently_banned),
        other => panic!("{other:?}"),
    };
    let expiry = || kernel.bans.lock().expect("lock")[&(0, net("192.0.2.9/32"))];

    assert!(
        message(ask(&mut agent, ban(None, true), now(1))).contains("banned in auth permanently")
    );
    let again = message(ask(&mut agent, ban(Some(3600), false), now(2)));
    assert!(
        again.contains("already banned in auth permanently"),
        "{again}"
    );
    assert_eq!(expiry(), Expiry::Never);
    assert_eq!(total(&mut agent), (1, 1));

    let other = |seconds| Request::Ban {
        jail: "auth".to_owned(),
        target: net("192.0.2.10/32"),
        seconds: Some(seconds),
        permanent: false,
        force: false,
        local: false,
    };
    message(ask(&mut agent, other(7200), now(3)));
    let until = kernel.bans.lock().expect("lock")[&(0, net("192.0.2.10/32"))];
    let shorter = other(60);
    let reply = message(ask(&mut agent, shorter, now(4)));
    assert!(reply.contains("already banned in auth until"), "{reply}");
    assert_eq!(
        kernel.bans.lock().expect("lock")[&(0, net("192.0.2.10/32"))],
        until
    );
    let longer = other(86_400);
    let reply = message(ask(&mut agent, longer, now(5)));
    assert!(reply.contains("ban extended in auth"), "{reply}");
    let extended = kernel.bans.lock().expect("lock")[&(0, net("192.0.2.10/32"))];
    assert!(matches!((extended, until), (Expiry::At(new), Expiry::At(old)) if new > old));
    assert_eq!(total(&mut agent), (2, 2), "an extension is not a new ban");
}

/// `get JAIL bantime` and `status JAIL` show the length a ban really gets: "10M" is ten
/// minutes, and a bantime above `bantime_increment.maxtime` is shown capped, with why.
#[test]
fn get_and_status_show_the_bantime_actually_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let get = |agent: &mut Agent| match ask(
        agent,
        Request::Get {
            jail: "auth".to_owned(),
            key: crate::control::protocol::JailKey::Bantime,
        },
        now(1),
    ) {
        Reply::Setting { shown, .. } => shown,
        other => panic!("{other:?}"),
    };
    let mut agent = start(config(dir.path(), 3, ""), &kernel, now(0));
    assert_eq!(get(&mut agent), "10m");

    let capped = "[jail.auth.bantime_increment]\nmaxtime = \"1h\"\n";
    let text = std::fs::read_to_string(dir.path().join("ban-agent.toml")).expect("config");
    let text = text.replace("bantime = \"10m\"", "bantime = \"10mo\"") + capped;
    let path = dir.path().join("ban-agent.toml");
    std::fs::write(&path, &text).expect("write");
    let config = Config::parse(&path, &text).expect("valid");
    let mut agent = start(config, &kernel, now(0));
    let value = get(&mut agent);
    assert!(value.starts_with("1h (bantime 10mo "), "{value}");
    assert!(value.contains("maxtime 1h"), "{value}");
    match ask(
        &mut agent,
        Request::Status {
            jail: Some("auth".to_owned()),
        },
        now(1),
    ) {
        Reply::Jail(status) => assert_eq!(status.bantime, value),
        other => panic!("{other:?}"),
    }
}

/// `set JAIL maxretry|bantime|findtime VALUE` acts until the next reload, as
/// `fail2ban-client set` does; a bad value is refused with what was expected.
#[test]
fn set_changes_maxretry_bantime_and_findtime_until_the_next_reload() {
    use crate::control::protocol::{JailKey, SetKey};
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 5, ""), &kernel, now(0));
    let set = |agent: &mut Agent, key, value: &str| {
        ask(
            agent,
            Request::Set {
                jail: "auth".to_owned(),
                key,
                value: value.to_owned(),
            },
            now(1),
        )
    };
    let get = |agent: &mut Agent, key| match ask(
        agent,
        Request::Get {
            jail: "auth".to_owned(),
            key,
        },
        now(1),
    ) {
        Reply::Setting { shown, .. } => shown,
        other => panic!("{other:?}"),
    };
    let Reply::Done { message } = set(&mut agent, SetKey::Maxretry, "2") else {
        panic!("set maxretry refused");
    };
    assert!(message.contains("until the next reload"), "{message}");
    assert!(matches!(
        set(&mut agent, SetKey::Bantime, "1D"),
        Reply::Done { .. }
    ));
    assert!(matches!(
        set(&mut agent, SetKey::Findtime, "30m"),
        Reply::Done { .. }
    ));
    assert_eq!(get(&mut agent, JailKey::Bantime), "1d");
    assert_eq!(get(&mut agent, JailKey::Findtime), "30m");
    assert_eq!(get(&mut agent, JailKey::Maxretry), "2");
    for (key, bad) in [
        (SetKey::Maxretry, "0"),
        (SetKey::Findtime, "ten"),
        (SetKey::Bantime, "5ms"),
    ] {
        assert!(
            matches!(set(&mut agent, key, bad), Reply::Error { .. }),
            "{key:?} {bad}"
        );
    }

    // Two failures now ban, for a day.
    failure(dir.path(), "192.0.2.7", 2);
    failure(dir.path(), "192.0.2.7", 3);
    agent.poll(now(4));
    let expiry = kernel.bans.lock().expect("lock")[&(0, net("192.0.2.7/32"))];
    assert_eq!(
        expiry,
        Expiry::after(now(4).boot, std::time::Duration::from_secs(86_400))
    );

    assert!(matches!(
        ask(&mut agent, Request::Reload { jail: None }, now(5)),
        Reply::Done { .. }
    ));
    assert_eq!(get(&mut agent, JailKey::Maxretry), "5");
    assert_eq!(get(&mut agent, JailKey::Bantime), "10m");
}

/// Lines from addresses never banned are read and matched, not counted, and `status` says
/// so by reason instead of showing nothing at all.
#[test]
fn spared_lines_are_counted_by_reason_in_status() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 3, ""), &kernel, now(0));
    failure(dir.path(), "198.51.100.5", 1); // ignoreip
    failure(dir.path(), "198.51.100.6", 2); // ignoreip
    failure(dir.path(), "127.0.0.1", 3); // loopback
    agent.poll(now(4));
    match ask(
        &mut agent,
        Request::Status {
            jail: Some("auth".to_owned()),
        },
        now(5),
    ) {
        Reply::Jail(status) => {
            assert_eq!(status.total_failed, 0);
            assert_eq!(status.spared, 3);
            assert_eq!(status.spared_by, "loopback or unspecified 1, ignoreip 2");
        }
        other => panic!("{other:?}"),
    }
    assert!(kernel.bans.lock().expect("lock").is_empty());
}

/// The agent can move between threads (the fuzz targets keep one behind a mutex), journal
/// readers included.
#[test]
fn the_agent_is_send() {
    fn movable<T: Send>() {}
    movable::<super::agent::Agent>();
}

#[test]
fn fleet_entries_pass_the_same_rails_as_local_bans() {
    use crate::fleet::{Entry, Outgoing, Signer, task::Incoming};
    const KEY: &[u8] = b"a key the fleet of this test shares";
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("fleet.key");
    std::fs::write(&key, KEY).expect("key");
    // An engine that is not there: the fleet's task retries in the background, the agent
    // applies what it is handed.
    let config = config(
        dir.path(),
        5,
        &format!(
            "[fleet]\nurl = \"redis+unix://{}/absent.sock\"\nname = \"here\"\nkey_file = \"{}\"\n",
            dir.path().display(),
            key.display()
        ),
    );
    let fleet = config.global.fleet.clone().expect("a fleet");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    let kernel = FakeKernel::default();
    let setup = Setup {
        own: vec!["192.0.2.1".parse().expect("address")],
        zone: jiff::tz::TimeZone::UTC,
        metrics: Metrics::new(),
        events: None,
    };
    let store = Some(Store::open(&config.global.state_dir, now(0).wall).expect("state"));
    let mut agent =
        Agent::start(config, Box::new(kernel.clone()), store, setup, now(0)).expect("starts");
    let (link, _entries) = crate::fleet::spawn(&fleet, None, Metrics::new()).expect("link");
    agent.set_fleet(link);

    let signer = Signer::with_key(KEY);
    let entry = |target: &str, expires: Option<i64>, signer: &Signer, id: &str| -> Entry {
        let mut entry = Outgoing::Ban {
            jail: "auth".to_owned(),
            target: net(target),
            expires,
            failures: 5,
            at: T0,
            force: false,
        }
        .entry("web-2");
        entry.sig = signer.sign(&entry);
        entry.id = id.to_owned();
        entry
    };
    let hour = Some(T0 + 3_600_000);
    let forger = Signer::with_key(b"someone else's key, not the fleet's");
    let entries = vec![
        entry("192.0.2.50/32", hour, &signer, "1-1"),
        entry("192.0.2.1/32", hour, &signer, "1-2"),
        entry("198.51.100.7/32", hour, &signer, "1-3"),
        entry("127.0.0.1/32", hour, &signer, "1-4"),
        entry("0.0.0.0/0", hour, &signer, "1-5"),
        entry("192.0.2.51/32", hour, &forger, "1-6"),
        entry("192.0.2.52/32", None, &signer, "1-7"),
        entry("192.0.2.53/32", Some(T0 - 1), &signer, "1-8"),
    ];
    agent.apply_fleet(
        Incoming {
            entries: entries.into_iter().map(Ok).collect(),
        },
        now(1),
    );
    let banned: Vec<IpNet> = kernel
        .bans
        .lock()
        .expect("lock")
        .keys()
        .map(|(_, target)| *target)
        .collect();
    assert_eq!(
        banned,
        vec![net("192.0.2.50/32"), net("192.0.2.52/32")],
        "only the attacker and the permanent one; not this host, ignoreip, loopback, \
         everyone, a forged one nor one that ended"
    );
    // A permanent ban from elsewhere lasts at most what this jail gives: 10 minutes.
    let expiry = kernel.bans.lock().expect("lock")[&(0, net("192.0.2.52/32"))];
    assert_eq!(
        expiry,
        Expiry::after(now(1).boot, std::time::Duration::from_secs(600))
    );
    let status = agent.fleet_status().expect("a fleet");
    assert_eq!((status.applied, status.refused), (2, 5), "{status:?}");
    assert_eq!(agent.fleet_resume().as_deref(), Some("1-8"));

    // A signed unban from another host lifts it here.
    let mut unban = Outgoing::Unban {
        jail: "auth".to_owned(),
        target: net("192.0.2.50/32"),
        at: T0 + 2000,
    }
    .entry("web-3");
    unban.sig = signer.sign(&unban);
    unban.id = "2-0".to_owned();
    agent.apply_fleet(
        Incoming {
            entries: vec![Ok(unban)],
        },
        now(2),
    );
    assert!(
        !kernel
            .bans
            .lock()
            .expect("lock")
            .contains_key(&(0, net("192.0.2.50/32")))
    );
    assert_eq!(agent.fleet_status().map(|s| s.applied), Some(3));
    // The same unban again (this host's own, echoed): nothing more is applied.
    let mut again = Outgoing::Unban {
        jail: "auth".to_owned(),
        target: net("192.0.2.50/32"),
        at: T0 + 3000,
    }
    .entry("here");
    again.sig = signer.sign(&again);
    again.id = "3-0".to_owned();
    agent.apply_fleet(
        Incoming {
            entries: vec![Ok(again)],
        },
        now(3),
    );
    assert_eq!(agent.fleet_status().map(|s| s.applied), Some(3));

    // An operator's ban and unban go to the fleet unless --local; failures counted here
    // go too.
    let outbox = |agent: &Agent| agent.fleet_status().map_or(0, |f| f.outbox as usize);
    let before = outbox(&agent);
    let ban = |local| Request::Ban {
        jail: "auth".into(),
        target: net("192.0.2.60/32"),
        seconds: None,
        permanent: false,
        force: false,
        local,
    };
    ask(&mut agent, ban(true), now(3));
    assert_eq!(outbox(&agent), before, "--local stays here");
    let reply = ask(&mut agent, ban(false), now(3));
    assert!(
        matches!(&reply, Reply::Done { message } if message.contains("sent to the fleet")),
        "{reply:?}"
    );
    assert_eq!(outbox(&agent), before + 1);
    failure(dir.path(), "192.0.2.70", 3);
    agent.poll(now(3));
    assert_eq!(
        outbox(&agent),
        before + 2,
        "a failure counted here is shared"
    );
}

/// A kernel that, at each ban, looks in the state database for that ban: what a restart
/// would find if the agent died at that moment.
#[derive(Clone)]
struct Witness {
    kernel: FakeKernel,
    state_dir: std::path::PathBuf,
    saved_first: Arc<Mutex<Vec<bool>>>,
}

impl Witness {
    /// A witness of `kernel` for the state of `config`.
    fn of(kernel: &FakeKernel, config: &Config) -> Self {
        Self {
            kernel: kernel.clone(),
            state_dir: config.global.state_dir.clone(),
            saved_first: Arc::default(),
        }
    }
}

impl Kernel for Witness {
    fn ban(&mut self, jail: u32, target: IpNet, expiry: Expiry) -> Result<(), DatapathError> {
        let saved = Store::inspect(&self.state_dir)
            .expect("readable state")
            .expect("a state")
            .load()
            .expect("load")
            .bans
            .iter()
            .any(|ban| ban.target == target);
        self.saved_first.lock().expect("lock").push(saved);
        self.kernel.ban(jail, target, expiry)
    }
    fn unban(&mut self, jail: u32, target: IpNet) -> Result<bool, DatapathError> {
        self.kernel.unban(jail, target)
    }
    fn list(&self) -> Result<Vec<BanRecord>, DatapathError> {
        self.kernel.list()
    }
    fn set_jails(&mut self, jails: &[JailPorts]) -> Result<(), DatapathError> {
        self.kernel.set_jails(jails)
    }
    fn counters(&self) -> Result<Vec<(u32, ban_common::JailCounters)>, DatapathError> {
        self.kernel.counters()
    }
    fn capacities(&self) -> Vec<(&'static str, u32)> {
        self.kernel.capacities()
    }
}

// A ban, the failures that made it and the log position after its lines are one commit,
// made before the kernel holds the ban: whenever the agent dies, a restart neither bans
// again from the same lines nor forgets the ban. Without the commit in `Agent::poll`
// before `apply_ban`, the witness finds the ban unsaved when the kernel gets it; without
// the position in that commit, the restart reads the five lines again and bans twice.
#[test]
fn a_ban_is_saved_with_its_log_position_before_the_kernel_holds_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_of = || config(dir.path(), 5, "");
    let kernel = FakeKernel::default();
    let witness = Witness::of(&kernel, &config_of());
    let mut agent = start_with(config_of(), Box::new(witness.clone()), now(0), Vec::new());
    for s in 1..=5 {
        failure(dir.path(), "192.0.2.7", s);
    }
    agent.poll(now(5));
    assert_eq!(*witness.saved_first.lock().expect("lock"), [true]);
    // `kill -9` right after the ban: no stop, no sweep.
    drop(agent);

    // Back long after the 10 min ban ended (the kernel dropped it by then: its expiry
    // has passed on the boot clock).
    let mut agent = start(config_of(), &kernel, now(700));
    assert!(
        metric_line(&agent, "ban_agent_unbans_total").ends_with(" 1"),
        "the ban that ended while the agent was away is said ended at start"
    );
    assert_eq!(agent.poll(now(700)), 0, "no line is read twice");
    assert!(
        kernel.bans.lock().expect("lock").is_empty(),
        "nor banned twice"
    );
    assert!(!metric_line(&agent, "ban_agent_bans_total").ends_with(" 1"));
}

// A log longer than a poll's budget (a flood, a backlog) is read on while the writer thread
// commits the last batch's bans, and those bans go into the kernel once written: after the
// next batch is read, or before a request that changes bans. Without the wait in
// `Agent::land`, the witness finds the ban unsaved when the kernel gets it; without `land`
// at the start of `handle`, the unban finds no ban, which lands after it; with the commit
// made on the agent's thread, the kernel holds the ban before the next batch is read;
// without `written_by_writer`, the writer's commits are not in the commit histogram.
#[test]
fn a_flood_is_read_on_while_its_bans_are_committed_and_they_land_once_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config_of = || config(dir.path(), 5, "");
    let kernel = FakeKernel::default();
    let witness = Witness::of(&kernel, &config_of());
    let mut agent = start_with(config_of(), Box::new(witness.clone()), now(0), Vec::new());
    let mut log = String::new();
    for s in 1..=5 {
        log.push_str(&failure_line("192.0.2.7", s));
    }
    // More than a poll's budget (4 MiB) of lines that are no failure.
    let success = failure_line("192.0.2.9", 6).replace(" 401 ", " 200 ");
    while log.len() < (5 << 20) {
        log.push_str(&success);
    }
    append(dir.path(), &log);
    let banned = |kernel: &FakeKernel| kernel.bans.lock().expect("lock").len();

    agent.poll(now(6));
    assert!(agent.reading(), "the log is longer than one poll's budget");
    assert_eq!(banned(&kernel), 0, "the ban waits for its commit");
    // An unban works on it: it lands first.
    let (reply, _) = agent.handle(
        Request::Unban {
            target: "192.0.2.7/32".parse().expect("net"),
            jail: Some("auth".to_owned()),
            local: true,
        },
        now(6),
    );
    assert!(matches!(reply, Reply::Done { .. }), "unban: {reply:?}");
    assert_eq!(*witness.saved_first.lock().expect("lock"), [true]);
    assert_eq!(banned(&kernel), 0, "landed, then lifted");

    // The same with the next batch read: the flood's second ban lands after it.
    let mut more = String::new();
    for s in 7..=11 {
        more.push_str(&failure_line("192.0.2.8", s));
    }
    while more.len() < (5 << 20) {
        more.push_str(&success);
    }
    append(dir.path(), &more);
    let commits = |agent: &Agent| {
        metric_line(agent, "ban_agent_state_commit_seconds_count")
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let timed = commits(&agent);
    agent.poll(now(11));
    assert_eq!(banned(&kernel), 0, "the second ban waits for its commit");
    agent.poll(now(12));
    assert_eq!(banned(&kernel), 1, "and lands once the next batch is read");
    assert_eq!(*witness.saved_first.lock().expect("lock"), [true, true]);
    assert_eq!(commits(&agent), timed + 1, "the writer's commit is timed");
}

// A ban the kernel refuses (a full map) is not left in the state, where a restart would
// put it in force.
#[test]
fn a_ban_the_kernel_refuses_is_not_saved() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel {
        capacity: Some(1),
        ..FakeKernel::default()
    };
    let config = config(dir.path(), 1, "max_bans_per_minute = 0\n");
    let state_dir = config.global.state_dir.clone();
    let mut agent = start(config, &kernel, now(0));
    failure(dir.path(), "192.0.2.7", 1);
    failure(dir.path(), "192.0.2.8", 2);
    agent.poll(now(2));
    agent.commit();
    let saved: Vec<IpNet> = Store::inspect(&state_dir)
        .expect("state")
        .expect("a state")
        .load()
        .expect("load")
        .bans
        .iter()
        .map(|ban| ban.target)
        .collect();
    assert_eq!(saved, [net("192.0.2.7/32")]);
}

#[test]
fn status_and_the_metrics_show_the_state_database_and_its_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(config(dir.path(), 5, ""), &kernel, now(0));
    agent.sweep(now(1));
    let Reply::Overview {
        state: Some(state), ..
    } = ask(&mut agent, Request::Status { jail: None }, now(1))
    else {
        panic!("an overview with the state");
    };
    assert!(state.path.ends_with("state/state.db"), "{state:?}");
    assert!(state.bytes > 0 && state.error.is_none(), "{state:?}");
    assert_eq!(
        metric_line(&agent, "ban_agent_state_bytes"),
        format!("ban_agent_state_bytes {}", state.bytes)
    );
}

// `unban --all` lifts every ban in the kernel and, before that, in the state (one
// transaction): a restart brings none back.
#[test]
fn unban_all_lifts_every_ban_from_the_kernel_and_the_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let config = config(dir.path(), 1, "max_bans_per_minute = 0\n");
    let state_dir = config.global.state_dir.clone();
    let mut agent = start(config, &kernel, now(0));
    for n in 1..=20 {
        failure(dir.path(), &format!("192.0.2.{n}"), 1);
    }
    agent.poll(now(1));
    assert_eq!(kernel.bans.lock().expect("lock").len(), 20);
    let Reply::Count { count, message } = ask(&mut agent, Request::UnbanAll, now(2)) else {
        panic!("counted");
    };
    assert_eq!(count, 20);
    assert!(message.contains("20 bans lifted"), "{message}");
    assert!(kernel.bans.lock().expect("lock").is_empty());
    let saved = Store::inspect(&state_dir)
        .expect("state")
        .expect("a state")
        .load()
        .expect("load");
    assert_eq!(saved.bans, []);
}

/// Appends a failure line of the app as Docker's json-file driver writes it, in
/// `stream`, with the runtime's time `second` (the app's own line says `second - 3600`:
/// the runtime's time is the one that counts).
fn docker_failure(dir: &Path, host: &str, second: i64, stream: &str) {
    let at = jiff::Timestamp::from_millisecond(T0 + second * 1000).expect("time");
    let message = failure_line(host, second - 3600);
    let line = serde_json::json!({"log": message, "stream": stream, "time": at.to_string()});
    append(dir, &format!("{line}\n"));
}

#[test]
fn a_containers_json_file_log_bans_by_the_runtimes_time_in_the_jails_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut agent = start(
        config(dir.path(), 3, "stream = \"stderr\"\nfindtime = \"10m\"\n"),
        &kernel,
        now(0),
    );
    for s in 1..=3 {
        docker_failure(dir.path(), "192.0.2.7", s, "stderr");
        docker_failure(dir.path(), "192.0.2.8", s, "stdout");
    }
    append(dir.path(), "not a docker line\n");
    assert_eq!(agent.poll(now(4)), 7);
    let bans = kernel.bans.lock().expect("lock").clone();
    assert!(
        bans.contains_key(&(0, net("192.0.2.7/32"))),
        "its failures on stderr ban it, at the runtime's times (the app's own are an hour \
         older, outside findtime): {bans:?}"
    );
    assert!(
        !bans.contains_key(&(0, net("192.0.2.8/32"))),
        "stdout is not read"
    );
    assert!(
        metric_line(&agent, "ban_agent_malformed_lines_total").ends_with(" 1"),
        "{}",
        metric_line(&agent, "ban_agent_malformed_lines_total")
    );
}

// The bridge's gateway is this host's address: when the app logs it for every client
// (Docker's userland proxy), it is spared, and the agent says once why nobody is banned.
#[test]
fn a_proxys_address_is_spared_and_said_once_when_it_makes_most_failures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let kernel = FakeKernel::default();
    let mut config = config(dir.path(), 3, "");
    config.global.ignoreself = true;
    let own = vec!["192.0.2.129".parse().expect("address")];
    let mut agent = start_on(config, &kernel, now(0), own);
    failure(dir.path(), "192.0.2.44", 1);
    for s in 1..=40 {
        failure(dir.path(), "192.0.2.129", s);
    }
    let said = logged(|| {
        agent.poll(now(41));
        for s in 41..=60 {
            failure(dir.path(), "192.0.2.129", s);
        }
        agent.poll(now(61));
    });
    assert!(
        kernel.bans.lock().expect("lock").is_empty(),
        "the gateway is spared"
    );
    assert_eq!(
        said.matches("most failures of this jail come from one address")
            .count(),
        1,
        "{said}"
    );
    assert!(
        said.contains("--userland-proxy=false") && said.contains("this host's address"),
        "{said}"
    );
}

// A jail picks Docker containers by label: the one running when the agent starts, and one
// started later, found when the agent expands its logs again (the daemon does it when a
// watched folder's entries change).
#[test]
fn containers_picked_by_label_are_read_also_when_they_start_later() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let docker = dir.path().join("docker");
    let container = |id: &str, jail: &str| -> std::path::PathBuf {
        let folder = docker.join("containers").join(id);
        std::fs::create_dir_all(&folder).expect("mkdir");
        let log = folder.join(format!("{id}-json.log"));
        std::fs::write(&log, b"").expect("the log");
        let config = serde_json::json!({
            "Name": format!("/{id}"),
            "LogPath": log.display().to_string(),
            "Config": {"Labels": {"ban-agent.jail": jail}},
        });
        std::fs::write(folder.join("config.v2.json"), config.to_string()).expect("config");
        log
    };
    let fail = |log: &std::path::Path, host: &str, second: i64| {
        let at = jiff::Timestamp::from_millisecond(T0 + second * 1000).expect("time");
        let line = serde_json::json!({
            "log": format!("INFO:     {host}:5000 - \"POST /login HTTP/1.1\" 401 Unauthorized\n"),
            "stream": "stdout",
            "time": at.to_string(),
        });
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(log)
            .expect("open");
        writeln!(file, "{line}").expect("append");
    };
    let first = container("api1", "api");
    let other = container("web1", "web");
    // Lines of the first container before the agent starts are not read (`start` is
    // "tail"); the later container's are, from its start.
    fail(&first, "192.0.2.34", 0);
    fail(&first, "192.0.2.34", 0);
    let text = format!(
        "state_dir = \"state\"\nignoreself = false\ndocker_root = \"{}\"\n\
         [jail.api]\nfilter = \"uvicorn\"\ndocker_label = \"ban-agent.jail=api\"\n\
         maxretry = 2\n",
        docker.display()
    );
    let path = dir.path().join("ban-agent.toml");
    std::fs::write(&path, &text).expect("write config");
    let config = Config::parse(&path, &text).expect("valid config");
    let kernel = FakeKernel::default();
    let mut agent = start(config, &kernel, now(0));
    // The daemon polls at once after starting: "tail" starts at the end found then.
    agent.poll(now(0));
    for s in 1..=2 {
        fail(&first, "192.0.2.31", s);
        fail(&other, "192.0.2.32", s);
    }
    agent.poll(now(3));
    let later = container("api2", "api");
    for s in 4..=5 {
        fail(&later, "192.0.2.33", s);
    }
    agent.open_logs();
    agent.poll(now(6));
    let bans = kernel.bans.lock().expect("lock").clone();
    assert!(bans.contains_key(&(0, net("192.0.2.31/32"))), "{bans:?}");
    assert!(
        bans.contains_key(&(0, net("192.0.2.33/32"))),
        "the later container: {bans:?}"
    );
    assert!(
        !bans.contains_key(&(0, net("192.0.2.32/32"))),
        "another jail's container"
    );
    assert!(
        !bans.contains_key(&(0, net("192.0.2.34/32"))),
        "written before the start"
    );
}

#[test]
fn crowdsec_decisions_pass_the_rails_and_a_deletion_lifts_only_the_ban_it_made() {
    use crate::crowdsec::{Decision, Pull};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("crowdsec.key"), "0123abcd\n").expect("key");
    // A Local API that is not there: the bouncer's thread retries in the background, the
    // agent applies what it is handed.
    let config = config(
        dir.path(),
        5,
        "[crowdsec]\nurl = \"http://127.0.0.1:1/\"\napi_key_file = \"crowdsec.key\"\n\
         max_bantime = \"1h\"\n\
         [jail.crowdsec]\nignoreip = [\"198.51.100.7\"]\nmax_bans_per_minute = 4\n",
    );
    let crowdsec = config.global.crowdsec.clone().expect("[crowdsec]");
    let kernel = FakeKernel::default();
    let mut agent = start_on(
        config,
        &kernel,
        now(0),
        vec!["192.0.2.1".parse().expect("address")],
    );
    let metrics = Metrics::new();
    let (link, _pulls) = crate::crowdsec::spawn(&crowdsec, Arc::clone(&metrics)).expect("link");
    agent.set_crowdsec(link, crowdsec.jail.clone(), crowdsec.max_bantime);
    let id = agent.jail("crowdsec").expect("the CrowdSec jail").id;
    let decision = |id: i64, target: &str, left: Option<u64>| Decision {
        id,
        target: net(target),
        origin: "cscli".to_owned(),
        scenario: "manual".to_owned(),
        left: left.map(std::time::Duration::from_secs),
    };
    let held = |target: &str| -> Option<Expiry> {
        kernel
            .bans
            .lock()
            .expect("lock")
            .get(&(id, net(target)))
            .copied()
    };

    // The whole set: capped at max_bantime; ignoreip and the host's own address refused.
    let pull = Pull {
        startup: true,
        new: vec![
            decision(1, "203.0.113.5/32", Some(7200)),
            decision(2, "198.51.100.7/32", Some(600)),
            decision(3, "192.0.2.0/24", Some(600)),
            decision(4, "203.0.113.128/25", Some(600)),
        ],
        ..Pull::default()
    };
    agent.apply_crowdsec(pull, now(0));
    assert_eq!(
        held("203.0.113.5/32"),
        Some(Expiry::At(now(3600).boot)),
        "capped at max_bantime"
    );
    assert!(held("203.0.113.128/25").is_some());
    assert_eq!(held("198.51.100.7/32"), None, "ignoreip");
    assert_eq!(held("192.0.2.0/24"), None, "holds the host's address");
    assert!(
        metric_line(
            &agent,
            "ban_agent_crowdsec_refused_total{reason=\"spared\"}"
        )
        .ends_with(" 2")
    );

    // A shorter decision for the same address changes nothing; a deletion of a decision
    // that did not make the ban (said again by the API, or another's) lifts nothing.
    let pull = Pull {
        new: vec![decision(5, "203.0.113.5/32", Some(60))],
        deleted: vec![decision(9, "203.0.113.5/32", None)],
        ..Pull::default()
    };
    agent.apply_crowdsec(pull, now(10));
    assert_eq!(held("203.0.113.5/32"), Some(Expiry::At(now(3600).boot)));
    // The deletion of the decision that made it lifts it.
    let pull = Pull {
        deleted: vec![decision(1, "203.0.113.5/32", None)],
        ..Pull::default()
    };
    agent.apply_crowdsec(pull, now(20));
    assert_eq!(held("203.0.113.5/32"), None);

    // The jail's cap on bans per minute holds for decisions too (2 of 4 made this minute).
    let pull = Pull {
        new: (10..14)
            .map(|n| decision(n, &format!("203.0.113.{n}/32"), Some(600)))
            .collect(),
        ..Pull::default()
    };
    agent.apply_crowdsec(pull, now(30));
    let made = (10..14)
        .filter(|n| held(&format!("203.0.113.{n}/32")).is_some())
        .count();
    assert_eq!(made, 2, "4 per minute, 2 made before in this minute");
    assert!(
        metric_line(
            &agent,
            "ban_agent_crowdsec_refused_total{reason=\"rate_cap\"}"
        )
        .ends_with(" 2")
    );

    // A full read (the API back after an outage) lifts what no decision holds any more.
    let pull = Pull {
        startup: true,
        new: vec![decision(10, "203.0.113.10/32", Some(600))],
        ..Pull::default()
    };
    agent.apply_crowdsec(pull, now(40));
    let left: Vec<IpNet> = kernel
        .bans
        .lock()
        .expect("lock")
        .keys()
        .filter(|(jail, _)| *jail == id)
        .map(|(_, target)| *target)
        .collect();
    assert_eq!(left, [net("203.0.113.10/32")]);
}
