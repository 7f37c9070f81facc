//! `cargo xtask demo --container`: the example app in a real Docker container, published
//! on the demo server's port 8000, and the attacker banned from the container's own
//! json-file log.
//!
//! Debian's `dockerd` runs inside the server's network namespace (`nsenter --net`:
//! `ip netns exec` would hide the cgroup mount it needs), with its own data root, exec root
//! and socket, and a bridge in 198.51.100.0/24. Its bridge, its DNAT of the published port
//! and its containers stay in that namespace, and go with it. The app's image is made here,
//! since no registry is reachable: a Debian root file system with python3 (`mmdebstrap`),
//! the app's pinned wheels (pip, from PyPI) and `app.py`, imported with `docker import`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{Workspace, example, output, rootfs};

/// Debian's docker client (a newer one elsewhere on the PATH would work too, but this is
/// the one the package pairs with its daemon).
const DOCKER: &str = "/usr/bin/docker";
const DOCKERD: &str = "/usr/sbin/dockerd";
/// Short, so that containerd's sockets under it stay within a socket path's 108 bytes.
const EXEC_ROOT: &str = "/run/ba-demo-docker";
/// The bridge's address in the server: its containers get the next ones.
const BRIDGE: &str = "198.51.100.1/24";
pub const APP_IMAGE: &str = "ba-demo-app:latest";
/// The containers' cgroup, under each controller: the demo's own, removed at the end.
const CGROUP: &str = "ba-demo-docker";

/// A `dockerd` in a network namespace; stopped, its folders removed, on drop.
pub struct Docker {
    child: Child,
    data_root: PathBuf,
    log: PathBuf,
    /// dockerd 20.10 writes its trust key in /etc/docker (the package's folder), with no
    /// option to move it.
    _made: crate::MadeOnHost,
}

impl Docker {
    /// Stops a daemon an interrupted run left, and removes what it left mounted.
    pub fn clean(data_root: &Path) -> anyhow::Result<()> {
        let pidfile = Path::new(EXEC_ROOT).join("docker.pid");
        if let Some(pid) = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|text| text.trim().parse::<libc::pid_t>().ok())
        {
            stop(pid, Duration::from_secs(20));
        }
        for root in [Path::new(EXEC_ROOT), data_root] {
            unmount_under(root)?;
            if root.exists() {
                fs::remove_dir_all(root)
                    .with_context(|| format!("cannot remove {}", root.display()))?;
            }
        }
        remove_cgroups();
        // What dockerd and containerd make in fixed places whatever their roots: removed
        // when empty (a Docker of the host's own keeps its files there, and its folders).
        for dir in [
            "/run/docker/plugins",
            "/run/docker",
            "/run/containerd/s",
            "/run/containerd",
        ] {
            let _removed = fs::remove_dir(dir);
        }
        Ok(())
    }

    /// Starts `dockerd` inside namespace `ns` and waits until it answers.
    pub fn start(ns: &str, data_root: &Path, log: &Path) -> anyhow::Result<Self> {
        Self::clean(data_root)?;
        let made = crate::MadeOnHost::watch(&["/etc/docker/key.json"]);
        fs::create_dir_all(data_root)
            .with_context(|| format!("cannot create {}", data_root.display()))?;
        let file =
            fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = super::inside(ns, DOCKERD)
            .arg("--data-root")
            .arg(data_root)
            .args(["--exec-root", EXEC_ROOT])
            .arg(format!("--pidfile={EXEC_ROOT}/docker.pid"))
            .arg(format!("--host=unix://{EXEC_ROOT}/docker.sock"))
            .arg(format!("--bip={BRIDGE}"))
            .arg(format!("--cgroup-parent={CGROUP}"))
            // The kernel's DNAT, not a proxy: the app sees the client's own address (with
            // the proxy it would see the bridge's, which the agent never bans).
            .arg("--userland-proxy=false")
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {DOCKERD} (apt-get install docker.io)"))?;
        let mut docker = Self {
            child,
            data_root: data_root.to_owned(),
            log: log.to_owned(),
            _made: made,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker
            .client()
            .arg("version")
            .output()
            .is_ok_and(|out| out.status.success())
        {
            if let Some(status) = docker.child.try_wait()? {
                bail!("dockerd exited ({status}):\n{}", docker.log());
            }
            if Instant::now() > deadline {
                bail!("dockerd did not answer within 60 s:\n{}", docker.log());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(docker)
    }

    pub fn data_root(&self) -> &Path {
        &self.data_root
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The docker client, talking to this daemon.
    pub fn client(&self) -> Command {
        let mut command = Command::new(DOCKER);
        command.arg(format!("--host=unix://{EXEC_ROOT}/docker.sock"));
        command
    }

    /// `docker import` of the root file system in `rootfs`.
    pub fn import(&self, rootfs: &Path) -> anyhow::Result<()> {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot run tar")?;
        let stdin = tar.stdout.take().context("tar has no stdout")?;
        let imported = self
            .client()
            .args(["import", "--message", "cargo xtask demo --container"])
            // What examples/fastapi-auth/Dockerfile sets.
            .args(["--change", "ENV PYTHONPATH=/opt/app/site"])
            .args([
                "--change",
                "ENV ACCESS_LOG=/var/log/fastapi-auth/access.log PORT=8000",
            ])
            .args(["--change", "WORKDIR /opt/app"])
            .args(["--change", r#"CMD ["python3", "app.py"]"#])
            .args(["-", APP_IMAGE])
            .stdin(stdin)
            .stdout(Stdio::null())
            .output()
            .context("cannot run docker import")?;
        let tarred = tar.wait().context("cannot wait for tar")?;
        if !tarred.success() || !imported.status.success() {
            bail!(
                "docker import of {} failed: {}",
                rootfs.display(),
                String::from_utf8_lossy(&imported.stderr)
            );
        }
        Ok(())
    }

    /// `docker load` of an image archive.
    pub fn load(&self, archive: &Path) -> anyhow::Result<()> {
        output(
            self.client()
                .arg("load")
                .arg("--quiet")
                .arg("--input")
                .arg(archive),
        )
        .map(drop)
        .with_context(|| format!("docker load of {} failed", archive.display()))
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) of our own child, not yet reaped.
            let _asked = unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
        let _cleaned = Self::clean(&self.data_root);
    }
}

/// A Compose project under a [`Docker`]: `docker-compose up`, and `down` on drop.
pub struct Project<'a> {
    docker: &'a Docker,
    file: PathBuf,
    settings: Vec<(&'static str, String)>,
    up: bool,
    /// Each service's log, once found (the log is polled).
    logs: std::cell::RefCell<std::collections::BTreeMap<String, PathBuf>>,
}

impl<'a> Project<'a> {
    const NAME: &'static str = "ba-demo";

    /// `docker-compose up --detach` of `file`, with `settings` in its environment (the
    /// `${...}` of the file). Images are not built nor pulled: they are loaded already.
    pub fn up(
        docker: &'a Docker,
        file: &Path,
        settings: Vec<(&'static str, String)>,
    ) -> anyhow::Result<Self> {
        let project = Self {
            docker,
            file: file.to_owned(),
            settings,
            // A partial `up` is taken down too.
            up: true,
            logs: std::cell::RefCell::default(),
        };
        output(project.compose().args(["up", "--detach", "--no-build"]))
            .with_context(|| format!("docker-compose up of {} failed", file.display()))?;
        Ok(project)
    }

    fn compose(&self) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .env("DOCKER_HOST", format!("unix://{EXEC_ROOT}/docker.sock"))
            .envs(self.settings.iter().map(|(key, value)| (key, value)))
            .args(["--project-name", Self::NAME, "--file"])
            .arg(&self.file);
        command
    }

    /// The json-file log of `service`'s container.
    pub fn log_path(&self, service: &str) -> anyhow::Result<PathBuf> {
        if let Some(path) = self.logs.borrow().get(service) {
            return Ok(path.clone());
        }
        let id = output(self.compose().args(["ps", "--quiet", service]))?;
        let id = id.trim();
        if id.is_empty() {
            bail!("Compose has no container for service {service}");
        }
        let path = output(
            self.docker
                .client()
                .args(["inspect", "--format", "{{.LogPath}}", id]),
        )?;
        let path = PathBuf::from(path.trim());
        self.logs
            .borrow_mut()
            .insert(service.to_owned(), path.clone());
        Ok(path)
    }

    /// What `service` wrote so far, from its json-file log (read directly: it is polled).
    pub fn log(&self, service: &str) -> String {
        let Ok(path) = self.log_path(service) else {
            return String::new();
        };
        fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|line| {
                let value: serde_json::Value = serde_json::from_str(line).ok()?;
                value.get("log")?.as_str().map(str::to_owned)
            })
            .collect()
    }

    /// `docker-compose down`: the containers stopped and removed.
    pub fn down(mut self) -> anyhow::Result<()> {
        self.up = false;
        output(self.compose().args(["down", "--timeout", "5"])).map(drop)
    }
}

impl Drop for Project<'_> {
    fn drop(&mut self) {
        if self.up {
            let _down = self.compose().args(["down", "--timeout", "5"]).output();
        }
    }
}

/// The app's root file system in `work/app-rootfs`: Debian with python3, the pinned
/// requirements installed under /opt/app/site, and `app.py`. The file system and the
/// wheels are made once per requirements.txt; app.py is copied on every run.
pub fn app_rootfs(ws: &Workspace, work: &Path) -> anyhow::Result<PathBuf> {
    let rootfs = work.join("app-rootfs");
    let stamp = work.join("app-rootfs.stamp");
    let requirements = example::dir(ws).join("requirements.txt");
    let wanted = format!(
        "{}\n{}",
        rootfs::host_suite()?,
        fs::read_to_string(&requirements)
            .with_context(|| format!("cannot read {}", requirements.display()))?
    );
    if fs::read_to_string(&stamp).ok().as_deref() != Some(&wanted) || !rootfs.is_dir() {
        let _stale = fs::remove_file(&stamp);
        rootfs::debian(&rootfs, &["python3"])?;
        // The host's python is the image's (same Debian release), so the wheels pip
        // picks for it fit.
        let pip = example::venv(ws)?.join("bin/pip");
        output(
            Command::new(&pip)
                .args(["install", "--quiet", "--disable-pip-version-check"])
                .arg("--target")
                .arg(rootfs.join("opt/app/site"))
                .arg("--requirement")
                .arg(&requirements),
        )
        .with_context(|| format!("{} could not install the app's requirements", pip.display()))?;
        fs::write(&stamp, &wanted).with_context(|| format!("cannot write {}", stamp.display()))?;
    }
    let app = example::dir(ws).join("app.py");
    fs::copy(&app, rootfs.join("opt/app/app.py"))
        .with_context(|| format!("cannot copy {} into {}", app.display(), rootfs.display()))?;
    Ok(rootfs)
}

/// SIGTERM, then SIGKILL after `grace`.
fn stop(pid: libc::pid_t, grace: Duration) {
    // SAFETY: kill(2) with a pid the daemon's own pidfile or child handle named.
    if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
        return;
    }
    let deadline = Instant::now() + grace;
    // SAFETY: signal 0 only asks whether the process still exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        if Instant::now() > deadline {
            // SAFETY: as above.
            let _killed = unsafe { libc::kill(pid, libc::SIGKILL) };
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Removes the containers' (empty) cgroup: under /sys/fs/cgroup itself with cgroup v2,
/// under each controller's folder with v1.
fn remove_cgroups() {
    let mut folders = vec![PathBuf::from("/sys/fs/cgroup")];
    if let Ok(entries) = fs::read_dir("/sys/fs/cgroup") {
        folders.extend(entries.flatten().map(|entry| entry.path()));
    }
    for folder in folders {
        let _removed = fs::remove_dir(folder.join(CGROUP));
    }
}

/// Unmounts (lazily) whatever is mounted under `root`: a daemon killed mid-run leaves its
/// containers' overlay mounts and its namespace files there.
fn unmount_under(root: &Path) -> anyhow::Result<()> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").context("cannot read mountinfo")?;
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| Path::new(point).starts_with(root))
        .collect();
    // The deepest first.
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _unmounted = Command::new("umount").args(["-l", point]).output();
    }
    Ok(())
}
