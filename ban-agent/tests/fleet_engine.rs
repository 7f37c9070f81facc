//! The fleet's engine side against a real `redis-server` (Debian's, started by the test on
//! a unix socket of its own, with a password, and stopped after): failures of one
//! attacker spread over three hosts are counted fleet-wide, the ban is created once
//! whoever reaches maxretry, it is in the stream every host reads, and failures older
//! than findtime do not count.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use ban_agent::fleet::{Counted, Delta, Engine};

const REDIS: &str = "/usr/bin/redis-server";
const PASSWORD: &str = "fleet-test-password";

/// A redis-server of the test's own, killed on drop.
struct Server {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        assert!(
            Path::new(REDIS).exists(),
            "{REDIS} is missing: cargo xtask setup installs redis-server"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("redis.sock");
        let child = Command::new(REDIS)
            .args(["--port", "0", "--unixsocket"])
            .arg(&socket)
            .args(["--unixsocketperm", "700", "--requirepass", PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not open its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            socket,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis+unix://{}?pass={PASSWORD}", self.socket.display())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

fn delta(target: &str, failures: u32) -> Delta {
    Delta {
        jail: "auth".to_owned(),
        target: target.parse().expect("network"),
        failures,
        maxretry: 5,
        findtime: Duration::from_secs(600),
        bantime: Some(Duration::from_secs(3600)),
    }
}

#[test]
fn failures_spread_over_three_hosts_ban_once_for_the_fleet() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let url = server.url();
        let mut hosts = Vec::new();
        for name in ["web1", "web2", "web3"] {
            hosts.push(Engine::connect(&url, "ba", name).await.expect("connect"));
        }
        let now = 1_795_521_600_000_i64;
        let attacker = "192.0.2.7/32";
        let counted = hosts[0]
            .report(now, &[delta(attacker, 2)])
            .await
            .expect("report");
        assert_eq!(counted, vec![Counted::Below(2)]);
        let counted = hosts[1]
            .report(now + 10, &[delta(attacker, 2), delta("198.51.100.9/32", 1)])
            .await
            .expect("report");
        assert_eq!(counted, vec![Counted::Below(4), Counted::Below(1)]);
        let counted = hosts[2]
            .report(now + 20, &[delta(attacker, 1)])
            .await
            .expect("report");
        let Counted::Banned { failures, id } = &counted[0] else {
            panic!("the fifth failure fleet-wide bans: {counted:?}");
        };
        assert_eq!(*failures, 5);
        // Once: more failures from anywhere find it banned, nothing more in the stream.
        let again = hosts[0]
            .report(now + 30, &[delta(attacker, 3)])
            .await
            .expect("report");
        assert_eq!(again, vec![Counted::AlreadyBanned]);
        let bans = hosts[1]
            .bans_after("0", Duration::from_millis(100))
            .await
            .expect("read the stream");
        assert_eq!(bans.len(), 1, "{bans:?}");
        assert_eq!(&bans[0].id, id);
        assert_eq!(bans[0].target.to_string(), attacker);
        assert_eq!(bans[0].host, "web3");
        assert_eq!(bans[0].expires, Some(now + 20 + 3_600_000));
        // Read from the last id: nothing new (the block times out).
        let after = hosts[1]
            .bans_after(id, Duration::from_millis(50))
            .await
            .expect("read the stream");
        assert!(after.is_empty(), "{after:?}");

        // Failures older than findtime leave the window.
        let slow = "198.51.100.20/32";
        let below = hosts[0]
            .report(now, &[delta(slow, 4)])
            .await
            .expect("report");
        assert_eq!(below, vec![Counted::Below(4)]);
        let later = hosts[1]
            .report(now + 601_000 + 1000, &[delta(slow, 1)])
            .await
            .expect("report");
        assert_eq!(
            later,
            vec![Counted::Below(1)],
            "the old four are out of findtime"
        );
    });
}

#[test]
fn a_wrong_password_is_refused_with_the_url_redacted() {
    let server = Server::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let url = server.url().replace(PASSWORD, "wrong");
    let error = runtime
        .block_on(Engine::connect(&url, "ba", "web1"))
        .err()
        .expect("refused");
    let text = error.to_string();
    assert!(!text.contains("wrong"), "the password is not shown: {text}");
}
