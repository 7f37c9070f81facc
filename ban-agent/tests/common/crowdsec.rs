//! CrowdSec's Local API from Debian's package (unpacked by `cargo xtask test`, never
//! installed), started by a test inside its namespace on loopback, with a configuration,
//! a database and a machine of its own; and `cscli` pointed at it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use super::{Netns, sh};

/// Where the Local API listens, inside the test's namespace.
pub const LISTEN: &str = "127.0.0.1:8080";

/// The unpacked packages (`usr/bin/crowdsec`, `cscli`, `crowdsec-firewall-bouncer`), or
/// why not.
pub fn root() -> Result<PathBuf, String> {
    let root = std::env::var_os("BAN_AGENT_CROWDSEC_ROOT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.tools/crowdsec"),
        PathBuf::from,
    );
    if root.join("usr/bin/crowdsec").is_file() && root.join("usr/bin/cscli").is_file() {
        Ok(root)
    } else {
        Err(format!(
            "no CrowdSec under {} (`cargo xtask test` unpacks it)",
            root.display()
        ))
    }
}

/// The Local API, stopped on drop.
pub struct Lapi {
    pub root: PathBuf,
    /// Its configuration, database and log.
    pub dir: tempfile::TempDir,
    config: PathBuf,
    ns_path: PathBuf,
    child: Option<Child>,
}

impl Lapi {
    /// Writes a configuration (no central API, no agent: the Local API alone), registers
    /// a machine for `cscli`, and starts the API in `ns`.
    pub fn start(root: PathBuf, ns: &Netns) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        for sub in ["data", "hub", "etc"] {
            std::fs::create_dir_all(d.join(sub)).expect("a folder of the API's");
        }
        for file in ["profiles.yaml", "simulation.yaml"] {
            std::fs::copy(
                root.join("etc/crowdsec").join(file),
                d.join("etc").join(file),
            )
            .unwrap_or_else(|e| panic!("copy the package's {file}: {e}"));
        }
        let config = d.join("etc/config.yaml");
        let text = format!(
            "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  \
             working_dir: .\n\
             config_paths:\n  config_dir: {d}/etc/\n  data_dir: {d}/data/\n  \
             simulation_path: {d}/etc/simulation.yaml\n  hub_dir: {d}/hub/\n  \
             index_path: {d}/hub/.index.json\n  notification_dir: {d}/etc/notifications/\n  \
             plugin_dir: {root}/usr/lib/crowdsec/plugins/\n\
             crowdsec_service:\n  acquisition_path: {d}/etc/acquis.yaml\n\
             db_config:\n  log_level: info\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n  \
             use_wal: true\n\
             api:\n  client:\n    credentials_path: {d}/etc/local_api_credentials.yaml\n  \
             server:\n    log_level: info\n    listen_uri: {LISTEN}\n    \
             profiles_path: {d}/etc/profiles.yaml\n    trusted_ips:\n      - 127.0.0.1\n\
             prometheus:\n  enabled: false\n",
            d = d.display(),
            root = root.display()
        );
        std::fs::write(&config, text).expect("the API's configuration");
        let mut lapi = Self {
            root,
            dir,
            config,
            ns_path: ns.path(),
            child: None,
        };
        let credentials = lapi.dir.path().join("etc/local_api_credentials.yaml");
        lapi.cscli_ok(&[
            "machines",
            "add",
            "test",
            "--auto",
            "--force",
            "-f",
            &credentials.display().to_string(),
            "--url",
            &format!("http://{LISTEN}"),
        ]);
        lapi.resume();
        lapi
    }

    /// Starts the API (again, after [`Lapi::kill`]) and waits until it listens.
    pub fn resume(&mut self) {
        let before = self.log().len();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("lapi.log"))
            .expect("the API's log");
        let child = self
            .command(&self.root.join("usr/bin/crowdsec"))
            .arg("-c")
            .arg(&self.config)
            .arg("-no-cs")
            .stdout(log.try_clone().expect("the API's log"))
            .stderr(log)
            .spawn()
            .expect("start CrowdSec's Local API");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self
            .log()
            .get(before..)
            .is_some_and(|new| new.contains("CrowdSec Local API listening"))
        {
            assert!(
                Instant::now() < deadline,
                "the Local API did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the API at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _killed = child.kill();
            let _reaped = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("lapi.log")).unwrap_or_default()
    }

    /// The API's address, as `url` in `[crowdsec]` (the agent runs in the same namespace).
    pub fn url(&self) -> String {
        format!("http://{LISTEN}/")
    }

    /// The password of the machine `cscli` uses (`test`), to post alerts as a watcher.
    #[allow(dead_code, reason = "the CrowdSec benchmark's")]
    pub fn machine_password(&self) -> String {
        let credentials = self.dir.path().join("etc/local_api_credentials.yaml");
        let text = std::fs::read_to_string(&credentials).expect("the machine's credentials");
        text.lines()
            .find_map(|line| line.strip_prefix("password:"))
            .map(|password| password.trim().to_owned())
            .expect("a password in the machine's credentials")
    }

    /// A new bouncer's API key, written to `file` (mode 0600) as the agent reads it.
    pub fn bouncer_key(&self, name: &str, file: &Path) -> String {
        let out = self.cscli_ok(&["bouncers", "add", name, "-o", "raw"]);
        let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(!key.is_empty(), "cscli printed no key");
        std::fs::write(file, format!("{key}\n")).expect("the key file");
        sh(Command::new("chmod").arg("600").arg(file));
        key
    }

    /// `cscli ARGS...` against this API, inside its namespace.
    pub fn cscli(&self, args: &[&str]) -> Output {
        self.command(&self.root.join("usr/bin/cscli"))
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run cscli")
    }

    /// [`Lapi::cscli`], which must succeed.
    pub fn cscli_ok(&self, args: &[&str]) -> Output {
        let out = self.cscli(args);
        assert!(
            out.status.success(),
            "cscli {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.ns_path.display()))
            .arg("--")
            .arg(program)
            .current_dir(self.dir.path());
        cmd
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.kill();
    }
}
