//! The example FastAPI app (examples/fastapi-auth) as `run` and `demo` use it: its virtual
//! environment, its configuration with the settings a run must change, and the app as a
//! child process.

use std::{
    fs,
    net::{SocketAddr, TcpStream},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::Workspace;

pub const JAIL: &str = "fastapi-auth";

pub fn dir(ws: &Workspace) -> PathBuf {
    ws.root.join("examples/fastapi-auth")
}

/// The venv with the pinned requirements, made by `venv.sh` when missing or stale.
pub fn venv(ws: &Workspace) -> anyhow::Result<PathBuf> {
    let script = dir(ws).join("venv.sh");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): it needs python3-venv and access to PyPI",
            script.display(),
            out.status
        );
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// A ban-agent configuration read as TOML, to be changed and written out for a run.
pub struct Config {
    table: toml::Table,
    source: PathBuf,
}

impl Config {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration {}", path.display()))?;
        let table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        Ok(Self {
            table,
            source: path.to_owned(),
        })
    }

    pub fn example(ws: &Workspace) -> anyhow::Result<Self> {
        Self::read(&dir(ws).join("ban-agent.toml"))
    }

    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) {
        self.table.insert(key.to_owned(), value.into());
    }

    /// A key of the example's jail.
    pub fn jail_value(&self, key: &str) -> Option<&toml::Value> {
        self.table.get("jail")?.get(JAIL)?.get(key)
    }

    pub fn set_jail(&mut self, key: &str, value: impl Into<toml::Value>) -> anyhow::Result<()> {
        let jail = self
            .table
            .get_mut("jail")
            .and_then(|jails| jails.get_mut(JAIL))
            .and_then(toml::Value::as_table_mut)
            .with_context(|| format!("{} has no [jail.{JAIL}]", self.source.display()))?;
        jail.insert(key.to_owned(), value.into());
        Ok(())
    }

    /// Writes the configuration (0600, as the agent's own may hold hook secrets).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let text = format!(
            "# Written by cargo xtask from {}.\n{}",
            self.source.display(),
            self.table
        );
        fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot chmod {}", path.display()))
    }
}

/// The app, running; killed on drop.
pub struct App {
    child: Child,
    output: PathBuf,
}

impl App {
    /// Starts `app.py` with the venv's python, through `launch` (which makes the command
    /// that runs the program it is given), logging to `access_log`, its own output in
    /// `output`, and waits until `probe` (an address reaching port 8000) connects.
    pub fn start(
        ws: &Workspace,
        launch: impl FnOnce(&Path) -> Command,
        access_log: &Path,
        output: &Path,
        probe: impl Fn() -> bool,
    ) -> anyhow::Result<Self> {
        let python = venv(ws)?.join("bin/python");
        let file = fs::File::create(output)
            .with_context(|| format!("cannot create {}", output.display()))?;
        let mut command = launch(&python);
        let child = command
            .arg(dir(ws).join("app.py"))
            .env("ACCESS_LOG", access_log)
            .env("PORT", "8000")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", python.display()))?;
        let mut app = Self {
            child,
            output: output.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !probe() {
            if let Some(status) = app.child.try_wait()? {
                bail!(
                    "the example app exited ({status}) before it listened on port 8000:\n{}",
                    app.output()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the example app did not listen on port 8000 within 30 s:\n{}",
                    app.output()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(app)
    }

    pub fn output(&self) -> String {
        fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
    }
}

/// Whether a TCP connection to `addr` completes within a second.
pub fn listening(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}
