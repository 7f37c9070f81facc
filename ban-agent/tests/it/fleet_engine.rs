//! The fleet's engine side against a real `redis-server` (Debian's, started by the test on
//! a unix socket of its own, with a password, and stopped after): failures of one
//! attacker spread over three hosts are counted fleet-wide, the ban is created once
//! whoever reaches maxretry, it is in the stream every host reads and in a key that
//! rebuilds it, signatures hold, and failures older than findtime do not count.

use crate::common;

use std::time::Duration;

use ban_agent::fleet::{Engine, EngineAccess, Op, Outgoing, Sent, Signer};
use common::redis::{PASSWORD, Server};

const NOW: i64 = 1_795_521_600_000;

fn failures(target: &str, failures: u32, at: i64) -> Outgoing {
    Outgoing::Failures {
        jail: "auth".to_owned(),
        target: target.parse().expect("network"),
        failures,
        maxretry: 5,
        findtime: Duration::from_secs(600),
        bantime: Some(Duration::from_secs(3600)),
        at,
        sent: at,
    }
}

async fn send(engine: &mut Engine, signer: &Signer, host: &str, batch: &[Outgoing]) -> Vec<Sent> {
    let signed: Vec<String> = batch
        .iter()
        .map(|item| signer.sign(&item.entry(host)))
        .collect();
    engine.send(batch, &signed).await.expect("send")
}

/// Connects once the servers a test just started listen (up to 10 s).
async fn connect_when_up(access: &EngineAccess, what: &str) -> Engine {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Engine::connect(access, Duration::ZERO).await {
            Ok(engine) => return engine,
            Err(e) if std::time::Instant::now() > deadline => panic!("{what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn failures_spread_over_three_hosts_ban_once_for_the_fleet() {
    let server = Server::start();
    let signer = Signer::with_key(b"a shared key of the test fleet");
    runtime().block_on(async {
        let url = server.url();
        let names = ["web1", "web2", "web3"];
        let mut hosts = Vec::new();
        for name in names {
            let access = EngineAccess::url(&url, "ba", name);
            hosts.push(
                Engine::connect(&access, Duration::from_secs(1))
                    .await
                    .expect("connect"),
            );
        }
        let attacker = "192.0.2.7/32";
        let sent = send(
            &mut hosts[0],
            &signer,
            names[0],
            &[failures(attacker, 2, NOW)],
        )
        .await;
        assert_eq!(sent, vec![Sent::Below(2)]);
        let batch = [
            failures(attacker, 2, NOW + 10),
            failures("198.51.100.9/32", 1, NOW + 10),
        ];
        let sent = send(&mut hosts[1], &signer, names[1], &batch).await;
        assert_eq!(sent, vec![Sent::Below(4), Sent::Below(1)]);
        let sent = send(
            &mut hosts[2],
            &signer,
            names[2],
            &[failures(attacker, 1, NOW + 20)],
        )
        .await;
        let Sent::Appended { id } = &sent[0] else {
            panic!("the fifth failure fleet-wide bans: {sent:?}");
        };
        // Once: more failures from anywhere find it banned, nothing more in the stream.
        let again = send(
            &mut hosts[0],
            &signer,
            names[0],
            &[failures(attacker, 3, NOW + 30)],
        )
        .await;
        assert_eq!(again, vec![Sent::AlreadyBanned]);
        let entries = hosts[1]
            .entries_after("0", Duration::from_millis(100))
            .await
            .expect("read the stream");
        assert_eq!(entries.len(), 1, "{entries:?}");
        let ban = entries[0].as_ref().expect("a readable entry");
        assert_eq!(&ban.id, id);
        assert_eq!(ban.target.to_string(), attacker);
        assert_eq!(ban.host, "web3");
        assert_eq!(ban.failures, 5);
        assert_eq!(
            ban.op,
            Op::Ban {
                expires: Some(NOW + 20 + 3_600_000)
            }
        );
        assert_eq!(signer.check(ban), Ok(()), "signed by the host that made it");
        assert!(
            Signer::with_key(b"another key, another fleet!")
                .check(ban)
                .is_err(),
            "another key refuses it"
        );
        // The ban key holds the same entry, for an agent that lost its place.
        let live = hosts[0].live_bans(NOW + 30).await.expect("ban keys");
        assert_eq!(live.len(), 1, "{live:?}");
        let rebuilt = live[0].as_ref().expect("a readable key");
        assert_eq!(
            (&rebuilt.target, &rebuilt.op, &rebuilt.host),
            (&ban.target, &ban.op, &ban.host)
        );
        assert_eq!(signer.check(rebuilt), Ok(()));
        // Read from the last id: nothing new (the block times out).
        let after = hosts[1]
            .entries_after(id, Duration::from_millis(50))
            .await
            .expect("read the stream");
        assert!(after.is_empty(), "{after:?}");

        // An operator's unban on one host: the key goes, the stream says so.
        let unban = Outgoing::Unban {
            jail: "auth".to_owned(),
            target: attacker.parse().expect("network"),
            at: NOW + 40,
        };
        let sent = send(&mut hosts[0], &signer, names[0], &[unban]).await;
        assert!(matches!(sent[0], Sent::Appended { .. }), "{sent:?}");
        let after = hosts[2]
            .entries_after(id, Duration::from_millis(50))
            .await
            .expect("read");
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].as_ref().map(|e| e.op.clone()), Ok(Op::Unban));
        assert!(
            hosts[0]
                .live_bans(NOW + 50)
                .await
                .expect("ban keys")
                .is_empty()
        );

        // Failures older than findtime leave the window.
        let slow = "198.51.100.20/32";
        let below = send(&mut hosts[0], &signer, names[0], &[failures(slow, 4, NOW)]).await;
        assert_eq!(below, vec![Sent::Below(4)]);
        let later = send(
            &mut hosts[1],
            &signer,
            names[1],
            &[failures(slow, 1, NOW + 601_000 + 1000)],
        )
        .await;
        assert_eq!(
            later,
            vec![Sent::Below(1)],
            "the old four are out of findtime"
        );

        let peers = hosts[0]
            .heartbeat(NOW, Duration::from_secs(5))
            .await
            .expect("heartbeat");
        assert_eq!(peers, vec!["web1".to_owned()]);
    });
}

#[test]
fn a_wrong_password_is_refused_with_the_url_redacted() {
    let server = Server::start();
    let url = server.url().replace(PASSWORD, "wrong");
    let access = EngineAccess::url(&url, "ba", "web1");
    let error = runtime()
        .block_on(Engine::connect(&access, Duration::ZERO))
        .err()
        .expect("refused");
    let text = error.to_string();
    assert!(!text.contains("wrong"), "the password is not shown: {text}");
    assert!(
        text.contains("redis+unix://"),
        "the engine is named: {text}"
    );
}

/// The ACL of docs/fleet.md, read from the document: the agents' calls pass as that user
/// (the default user off), with keys under its prefix.
#[test]
fn the_documented_acl_lets_the_agents_do_their_work_and_nothing_else() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fleet.md"))
        .expect("docs/fleet.md");
    let block = doc
        .split("<!-- fleet-acl")
        .nth(1)
        .and_then(|rest| rest.split("```text\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the ACL block of docs/fleet.md");
    let password = "acl-test-password";
    let mut args: Vec<String> = Vec::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let rule = line
            .trim()
            .strip_prefix("user ")
            .expect("a user line")
            .replace("CHANGE-THIS-PASSWORD", password);
        // redis-server reads each word of a directive as an argument of its own.
        args.push("--user".to_owned());
        args.extend(rule.split_whitespace().map(str::to_owned));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_with(&args);
    let signer = Signer::with_key(b"a shared key of the test fleet");
    runtime().block_on(async {
        let mut access = EngineAccess::url(&server.bare_url(), "ban-agent", "web1");
        access.username = Some("ban-agent".to_owned());
        access.password = Some(password.to_owned());
        let mut engine = Engine::connect(&access, Duration::from_millis(100))
            .await
            .expect("connect as the ACL user");
        let attacker = "192.0.2.9/32";
        let sent = send(&mut engine, &signer, "web1", &[failures(attacker, 5, NOW)]).await;
        assert!(matches!(sent[0], Sent::Appended { .. }), "{sent:?}");
        let ban = Outgoing::Ban {
            jail: "auth".to_owned(),
            target: "198.51.100.3/32".parse().expect("network"),
            expires: None,
            failures: 0,
            at: NOW,
            force: true,
        };
        let unban = Outgoing::Unban {
            jail: "auth".to_owned(),
            target: attacker.parse().expect("network"),
            at: NOW + 1,
        };
        send(&mut engine, &signer, "web1", &[ban, unban]).await;
        engine
            .entries_after("0", Duration::from_millis(10))
            .await
            .expect("XREAD");
        engine.ends().await.expect("XRANGE");
        engine.live_bans(NOW).await.expect("ZRANGE, MGET");
        engine
            .heartbeat(NOW, Duration::from_secs(5))
            .await
            .expect("heartbeat");

        // Other keys are not the agents' to touch.
        let mut other = EngineAccess::url(&server.bare_url(), "someone-else", "web1");
        other.username = Some("ban-agent".to_owned());
        other.password = Some(password.to_owned());
        let mut engine = Engine::connect(&other, Duration::ZERO)
            .await
            .expect("connect");
        assert!(engine.heartbeat(NOW, Duration::from_secs(5)).await.is_err());
    });
}

/// Redis Sentinel: the agent asks the sentinel for the primary and counts there; once the
/// sentinel names another primary, the connection says it has moved. The servers listen
/// on the loopback of a namespace of the test's own.
#[test]
fn a_sentinel_names_the_primary_the_agent_uses_and_a_failover_moves_it() {
    let test = "a_sentinel_names_the_primary_the_agent_uses_and_a_failover_moves_it";
    let Some(_serial) = common::privileged(test) else {
        return;
    };
    let ns = common::Netns::new("sentinel");
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port 26379\nbind 127.0.0.1\ndir {}\nsentinel monitor primary 127.0.0.1 6390 1\n\
             sentinel auth-pass primary {PASSWORD}\n",
            dir.path().display()
        ),
    )
    .expect("sentinel.conf");
    let spawn = |cmd: &mut std::process::Command| {
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start redis-server")
    };
    // A primary on `port` of the namespace's loopback.
    let server = |port: &str| {
        spawn(
            ns.command(common::redis::REDIS)
                .args([
                    "--port",
                    port,
                    "--bind",
                    "127.0.0.1",
                    "--requirepass",
                    PASSWORD,
                ])
                .args(["--save", "", "--appendonly", "no", "--dir"])
                .arg(dir.path()),
        )
    };
    let primary = server("6390");
    let sentinel = spawn(
        ns.command(common::redis::REDIS)
            .arg(&conf)
            .arg("--sentinel"),
    );
    struct Kill(Vec<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _killed = child.kill();
                let _reaped = child.wait();
            }
        }
    }
    // A second primary, for the Sentinel to name after a "failover".
    let other = server("6391");
    let _servers = Kill(vec![primary, sentinel, other]);
    let (sent, before, after) = ns.run(|| {
        runtime().block_on(async {
            let access = EngineAccess {
                endpoint: ban_agent::config::Endpoint::Sentinel {
                    nodes: vec!["redis://127.0.0.1:26379".to_owned()],
                    service: "primary".to_owned(),
                    tls: false,
                    db: 0,
                },
                username: None,
                password: Some(PASSWORD.to_owned()),
                ca: None,
                prefix: "ba".to_owned(),
                host: "web1".to_owned(),
            };
            // Both servers take a moment to listen.
            let mut engine = connect_when_up(&access, "no primary through the sentinel").await;
            let sent = send(
                &mut engine,
                &Signer::default(),
                "web1",
                &[failures("192.0.2.44/32", 5, NOW)],
            )
            .await;
            let before = engine.still_primary(&access).await;
            // The Sentinel now names the other server, as after a failover whose old
            // primary still runs and takes writes.
            let sentinel = redis::Client::open("redis://127.0.0.1:26379").expect("sentinel");
            let mut sentinel = sentinel
                .get_multiplexed_async_connection()
                .await
                .expect("reach the sentinel");
            for args in [
                &["REMOVE", "primary"][..],
                &["MONITOR", "primary", "127.0.0.1", "6391", "1"],
                &["SET", "primary", "auth-pass", PASSWORD],
            ] {
                let () = redis::cmd("SENTINEL")
                    .arg(args)
                    .query_async(&mut sentinel)
                    .await
                    .unwrap_or_else(|e| panic!("SENTINEL {args:?}: {e}"));
            }
            let after = engine.still_primary(&access).await;
            (sent, before, after)
        })
    });
    assert!(matches!(sent[0], Sent::Appended { .. }), "{sent:?}");
    assert!(before.is_ok(), "{before:?}");
    // The agent's heartbeat leaves the old primary on this error.
    match after {
        Err(e @ ban_agent::fleet::FleetError::Moved { .. }) => {
            let said = e.to_string();
            assert!(
                said.contains("127.0.0.1:6391") && said.contains("127.0.0.1:6390"),
                "{said}"
            );
        }
        other => panic!("the Sentinel names 127.0.0.1:6391: {other:?}"),
    }
}

/// TLS (`rediss://`) to a server whose certificate a private CA signed (`ca_file`), on the
/// loopback of a namespace of the test's own; a client that trusts only the system's
/// roots is refused.
#[test]
fn tls_with_a_private_ca() {
    let test = "tls_with_a_private_ca";
    let Some(_serial) = common::privileged(test) else {
        return;
    };
    let ns = common::Netns::new("fleettls");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name);
    let openssl = |args: &[&str]| {
        common::sh(
            std::process::Command::new("openssl")
                .args(args)
                .current_dir(dir.path()),
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=ban-agent test CA",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(path("san.ext"), "subjectAltName = IP:127.0.0.1\n").expect("san.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let mut server = ns
        .command(common::redis::REDIS)
        .args(["--port", "0", "--tls-port", "6391", "--bind", "127.0.0.1"])
        .arg("--tls-cert-file")
        .arg(path("server.pem"))
        .arg("--tls-key-file")
        .arg(path("server.key"))
        .arg("--tls-ca-cert-file")
        .arg(path("ca.pem"))
        .args(["--tls-auth-clients", "no", "--requirepass", PASSWORD])
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start redis-server with TLS");
    let ca = std::fs::read(path("ca.pem")).expect("ca.pem");
    let (trusted, untrusted) = ns.run(|| {
        runtime().block_on(async {
            let mut access = EngineAccess::url("rediss://127.0.0.1:6391", "ba", "web1");
            access.password = Some(PASSWORD.to_owned());
            access.ca = Some(ca);
            let mut engine = connect_when_up(&access, "no TLS connection").await;
            let sent = send(
                &mut engine,
                &Signer::default(),
                "web1",
                &[failures("192.0.2.45/32", 5, NOW)],
            )
            .await;
            access.ca = None;
            let untrusted = Engine::connect(&access, Duration::ZERO).await.err();
            (sent, untrusted)
        })
    });
    let _killed = server.kill();
    let _reaped = server.wait();
    assert!(matches!(trusted[0], Sent::Appended { .. }), "{trusted:?}");
    assert!(
        untrusted.is_some(),
        "a certificate of a private CA is not trusted without ca_file"
    );
}
