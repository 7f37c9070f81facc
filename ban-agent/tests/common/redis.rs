//! A `redis-server` of the test's own (Debian's, installed by `cargo xtask setup`) on a
//! unix socket in a temporary folder, with a password, killed on drop; it can be stopped
//! and started again on the same socket, as an engine that goes away and comes back.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub const REDIS: &str = "/usr/bin/redis-server";
pub const PASSWORD: &str = "fleet-test-password";

pub struct Server {
    child: Option<Child>,
    pub socket: PathBuf,
    dir: tempfile::TempDir,
    args: Vec<String>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with more configuration directives (`--name value...`).
    pub fn start_with(args: &[&str]) -> Self {
        assert!(
            Path::new(REDIS).exists(),
            "{REDIS} is missing: cargo xtask setup installs redis-server"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("redis.sock");
        let mut server = Self {
            child: None,
            socket,
            dir,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.restart();
        server
    }

    /// Starts the server again (empty: it keeps nothing on disk) after [`Server::stop`].
    pub fn restart(&mut self) {
        let _gone = std::fs::remove_file(&self.socket);
        let child = Command::new(REDIS)
            .args(["--port", "0", "--unixsocket"])
            .arg(&self.socket)
            .args(["--unixsocketperm", "700", "--requirepass", PASSWORD])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not open its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
        let _gone = std::fs::remove_file(&self.socket);
    }

    /// The URL without the password (`password_file` holds it).
    pub fn bare_url(&self) -> String {
        format!("redis+unix://{}", self.socket.display())
    }

    pub fn url(&self) -> String {
        format!("{}?pass={PASSWORD}", self.bare_url())
    }

    /// `redis-cli` on the server's socket.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("-s")
            .arg(&self.socket)
            .args(["--no-auth-warning", "-a", PASSWORD])
            .args(args)
            .output()
            .expect("run redis-cli");
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
