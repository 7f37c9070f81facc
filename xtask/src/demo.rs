//! `cargo xtask demo`: the end-to-end test's scene, narrated. Network namespaces made here
//! (a bridge joining a server, an attacker and a client), the example app and ban-agent in
//! the server, and the attack told step by step. Everything is removed at the end, also
//! after Ctrl-C or a failure.
//!
//! With `--container`, the app runs in a Docker container on the server instead
//! ([`container`]), and the agent reads the container's log.

mod container;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    Workspace,
    example::{App, Config, JAIL},
    output, run,
};

const SERVER: &str = "192.0.2.1";
const ATTACKER: &str = "192.0.2.66";
const CLIENT: &str = "192.0.2.10";
const PIN_DIR: &str = "/sys/fs/bpf/ban-agent-demo";
const BAD: &str = r#"{"username": "alice", "password": "guess"}"#;
const GOOD: &str = r#"{"username": "alice", "password": "correct horse battery staple"}"#;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Run the app in a Docker container (Debian's docker.io), its port published on the
    /// server's, and read the container's log.
    #[arg(long)]
    pub container: bool,
}

pub fn demo(ws: &Workspace, args: &DemoArgs) -> anyhow::Result<()> {
    if !crate::is_root() {
        bail!(
            "cargo xtask demo creates network namespaces and attaches the datapath: run it as root \
             (e.g. `sudo -E env PATH=\"$PATH\" cargo xtask demo`)"
        );
    }
    run(&mut ws.cargo(&["build", "--release", "--package", "ban-agent"]))?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&interrupted);
    ctrlc::set_handler(move || flag.store(true, Ordering::Relaxed))
        .context("cannot handle Ctrl-C")?;
    let work = ws.root.join(if args.container {
        "target/xtask-demo-container"
    } else {
        "target/xtask-demo"
    });
    let mut story = Story {
        ws,
        agent: ws.root.join("target/release/ban-agent"),
        work,
        started: Instant::now(),
        interrupted,
        docker: None,
    };
    if args.container {
        // A daemon an interrupted run left holds the namespace the scene replaces.
        container::Docker::clean(&story.docker_root())?;
    }
    let scene = Scene::build()?;
    let result = story.tell_where(args.container);
    let result = match result {
        Err(_) if story.interrupted.load(Ordering::Relaxed) => {
            println!("\ninterrupted");
            Ok(())
        }
        told => told,
    };
    story.say("cleaning up: datapath detached, app stopped, namespaces deleted");
    let _detached = Command::new(&story.agent)
        .args(["datapath", "detach", "--pin-dir", PIN_DIR])
        .output();
    drop(story.docker.take());
    drop(scene);
    result
}

/// The namespaces, deleted on drop (a run that was killed is cleaned by the next one).
struct Scene {
    names: [&'static str; 4],
}

impl Scene {
    const LAN: &str = "ba-demo-lan";
    const SERVER: &str = "ba-demo-server";
    const ATTACKER: &str = "ba-demo-attacker";
    const CLIENT: &str = "ba-demo-client";

    fn build() -> anyhow::Result<Self> {
        let scene = Self {
            names: [Self::LAN, Self::SERVER, Self::ATTACKER, Self::CLIENT],
        };
        scene.remove();
        let _stale = Command::new("rm").args(["-rf", PIN_DIR]).output();
        for name in scene.names {
            ip(&["netns", "add", name])?;
            ip(&["-n", name, "link", "set", "lo", "up"])?;
        }
        ip(&["-n", Self::LAN, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", Self::LAN, "link", "set", "br0", "up"])?;
        for (ns, port, addr) in [
            (Self::SERVER, "to-server", SERVER),
            (Self::ATTACKER, "to-attacker", ATTACKER),
            (Self::CLIENT, "to-client", CLIENT),
        ] {
            ip(&[
                "link",
                "add",
                "eth0",
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                port,
                "netns",
                Self::LAN,
            ])?;
            ip(&["-n", Self::LAN, "link", "set", port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        }
        Ok(scene)
    }

    fn remove(&self) {
        for name in self.names {
            let _gone = Command::new("ip").args(["netns", "del", name]).output();
        }
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.remove();
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    output(Command::new("ip").args(args)).map(drop)
}

/// `program` run inside namespace `ns` with nsenter (network only: bpffs stays visible
/// to the agent, which `ip netns exec` would hide).
fn inside(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut command = Command::new("nsenter");
    command
        .arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(program);
    command
}

struct Story<'a> {
    ws: &'a Workspace,
    agent: PathBuf,
    work: PathBuf,
    started: Instant,
    interrupted: Arc<AtomicBool>,
    /// The daemon the app runs under, with `--container`.
    docker: Option<container::Docker>,
}

/// The app and the agent as the story runs them; stopped on drop.
enum Running<'a> {
    /// Processes in the server's namespace.
    Processes { app: App, agent: Agent },
    /// The services of deploy/compose/compose.yaml under the story's dockerd.
    Compose(container::Project<'a>),
}

impl Running<'_> {
    fn agent_log(&self) -> String {
        match self {
            Self::Processes { agent, .. } => agent.log(),
            Self::Compose(project) => project.log("ban-agent"),
        }
    }

    fn app_output(&self) -> String {
        match self {
            Self::Processes { app, .. } => app.output(),
            Self::Compose(project) => project.log("api"),
        }
    }
}

impl Story<'_> {
    fn say(&self, text: &str) {
        println!("[{:5.2}s] {text}", self.started.elapsed().as_secs_f64());
    }

    /// A pause for the reader, cut short by Ctrl-C (which then ends the story).
    fn pause(&self, millis: u64) -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(millis));
        self.check()
    }

    /// Ends the story after Ctrl-C, which also reached the commands it runs: what they
    /// did then says nothing about the scene.
    fn check(&self) -> anyhow::Result<()> {
        if self.interrupted.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// With `container`, builds the app's image and starts dockerd in the server first.
    fn tell_where(&mut self, container: bool) -> anyhow::Result<()> {
        let server = if container {
            "a Docker host, whose Compose project (deploy/compose) runs the example app\n            \
             in a container (198.51.100.2:8000, published on :8000 by Docker's DNAT)\n            \
             and ban-agent in another, on the server's eth0"
        } else {
            "the example app on :8000, and ban-agent on eth0 (tc: a veth)"
        };
        println!(
            "\nban-agent demo: a FastAPI login brute-forced, and the attacker dropped in the kernel.\n\n\
             Network namespaces made for the demo, joined by a bridge:\n  \
             server    {SERVER}   {server}\n  \
             attacker  {ATTACKER}  guesses alice's password\n  \
             client    {CLIENT}  knows it\n"
        );
        fs::create_dir_all(&self.work)
            .with_context(|| format!("cannot create {}", self.work.display()))?;
        if container {
            self.say(
                "the app's image: Debian with python3 (mmdebstrap) and the app's wheels (pip), \
                 made once per requirements.txt",
            );
            let rootfs = container::app_rootfs(self.ws, &self.work)?;
            self.check()?;
            self.say(
                "the agent's image: the Debian package in a Debian root (cargo xtask dist --image), \
                 made again when the agent changed",
            );
            let agent = crate::image::docker_archive(self.ws)?;
            self.check()?;
            self.say(&format!(
                "starting dockerd in the server (--bip 198.51.100.1/24 --userland-proxy=false, data root {})",
                self.docker_root().display()
            ));
            let docker = container::Docker::start(
                Scene::SERVER,
                &self.docker_root(),
                &self.work.join("dockerd.log"),
            )?;
            docker.import(&rootfs)?;
            self.say(&format!("$ docker load --input {}", agent.display()));
            docker.load(&agent)?;
            self.docker = Some(docker);
        }
        self.tell()
    }

    fn docker_root(&self) -> PathBuf {
        self.work.join("docker")
    }

    fn tell(&self) -> anyhow::Result<()> {
        let running = match &self.docker {
            None => {
                let access_log = self.work.join("access.log");
                let _truncated = fs::File::create(&access_log);
                let app = self.start_app(&access_log)?;
                let agent = self.start_agent(&access_log)?;
                Running::Processes { app, agent }
            }
            Some(docker) => Running::Compose(self.start_compose(docker)?),
        };
        self.pause(500)?;

        self.login(Scene::CLIENT, "client  ", GOOD, "right password")?;
        let mut fifth = Instant::now();
        for guess in 1..=5 {
            if guess > 1 {
                self.pause(250)?;
            }
            self.login(Scene::ATTACKER, "attacker", BAD, &format!("guess {guess}"))?;
            fifth = Instant::now();
        }
        let ban = self.wait_for_ban(&running, fifth)?;
        self.say(&format!("ban-agent: {ban}"));
        self.pause(500)?;
        self.show(&["status", JAIL])?;
        self.pause(500)?;

        self.say("attacker POST /login (guess 6) ...");
        match self.curl(Scene::ATTACKER, "POST", "/login", Some(BAD))? {
            None => self.say(&format!(
                "attacker gets no answer in 2 s: its SYNs are dropped at tc ingress, before {}",
                if self.docker.is_some() {
                    "netfilter and Docker's DNAT (a ban in fail2ban's INPUT chain would not see them)"
                } else {
                    "netfilter and the TCP stack"
                }
            )),
            Some(code) => bail!("the attacker was answered ({code}) after its ban"),
        }
        self.show(&["stats"])?;
        self.say(&format!("$ bpftool map dump pinned {PIN_DIR}/ban_v4"));
        let dump = output(
            Command::new("bpftool")
                .args(["map", "dump", "pinned"])
                .arg(format!("{PIN_DIR}/ban_v4")),
        )?;
        print!("{}", indent(&dump));
        self.pause(500)?;
        self.login(Scene::CLIENT, "client  ", GOOD, "right password")?;
        self.say("the client is untouched; only the attacker's packets to port 8000 are dropped");
        self.pause(500)?;

        self.show(&["unban", ATTACKER])?;
        let (method, path) = AFTER_UNBAN;
        match self.curl(Scene::ATTACKER, method, path, None)? {
            Some(code) => self.say(&after_unban(code)),
            None => bail!("the attacker got no answer after its unban"),
        }
        let test = if self.docker.is_some() {
            "ban-agent/tests/it/containers.rs (with fail2ban's nftables ban beside it)"
        } else {
            "ban-agent/tests/it/fastapi_e2e.rs"
        };
        println!(
            "\nThat is the whole product. Run the same on this machine's interface with \
             `cargo xtask run`; the test of this scene is {test}.\n"
        );
        match running {
            Running::Processes { app, agent } => {
                self.show(&["stop"])?;
                drop(app);
                agent.finish()
            }
            Running::Compose(project) => {
                self.say("$ docker-compose down");
                project.down()
            }
        }
    }

    /// The example app, a process in the server.
    fn start_app(&self, access_log: &Path) -> anyhow::Result<App> {
        self.say("starting the example app (examples/fastapi-auth/app.py) in the server");
        App::start(
            self.ws,
            |python| inside(Scene::SERVER, python),
            access_log,
            &self.work.join("app.log"),
            || self.app_answers(),
        )
    }

    fn app_answers(&self) -> bool {
        self.curl(Scene::CLIENT, "GET", "/health", None)
            .is_ok_and(|code| code.is_some())
    }

    /// The app and the agent as Compose services (deploy/compose/compose.yaml as it is),
    /// under the story's dockerd: the app's port published on the server's, the agent in
    /// the server's network, reading the app's container log.
    fn start_compose<'d>(
        &self,
        docker: &'d container::Docker,
    ) -> anyhow::Result<container::Project<'d>> {
        let compose = self.ws.root.join("deploy/compose");
        let mut config = Config::read(&compose.join("ban-agent.toml"))?;
        config.set("pin_dir", PIN_DIR);
        let path = self.work.join("ban-agent.toml");
        config.write(&path)?;
        let state = self.work.join("state");
        let _stale = fs::remove_dir_all(&state);
        let run = self.work.join("run");
        for dir in [&state, &run] {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        self.say("$ docker-compose --file deploy/compose/compose.yaml up --detach");
        let project = container::Project::up(
            docker,
            &compose.join("compose.yaml"),
            vec![
                ("APP_IMAGE", container::APP_IMAGE.to_owned()),
                ("BAN_AGENT_CONFIG", path.display().to_string()),
                ("DOCKER_ROOT", docker.data_root().display().to_string()),
                ("BAN_AGENT_STATE", state.display().to_string()),
                ("BAN_AGENT_RUN", run.display().to_string()),
            ],
        )?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.app_answers() || !self.cli(&["ping"]).is_ok_and(|out| out.status.success()) {
            self.check()?;
            if Instant::now() > deadline {
                bail!(
                    "the services did not answer within 30 s. The app said:\n{}\nThe agent said:\n{}",
                    project.log("api"),
                    project.log("ban-agent")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        self.say(&format!(
            "api answers through Docker's DNAT, its output in {}",
            project.log_path("api")?.display()
        ));
        self.say(
            "ban-agent runs in the server's network (its container: network_mode host), \
             jail fastapi-auth reading the containers labelled com.docker.compose.service=api",
        );
        // Found now, so that the wait for the ban reads the agent's log and nothing else.
        project.log_path("ban-agent")?;
        Ok(project)
    }

    fn start_agent(&self, access_log: &Path) -> anyhow::Result<Agent> {
        let mut config = Config::example(self.ws)?;
        config.set("interfaces", vec![toml::Value::from("eth0")]);
        config.set("pin_dir", PIN_DIR);
        config.set("state_dir", self.work.join("state").display().to_string());
        config.set("socket", self.socket().display().to_string());
        config.set_jail("logpath", access_log.display().to_string())?;
        // The app creates its log at its start; the agent refuses a jail whose log is
        // missing.
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(access_log)
            .with_context(|| format!("cannot create {}", access_log.display()))?;
        let path = self.work.join("ban-agent.toml");
        config.write(&path)?;
        let _stale = fs::remove_dir_all(self.work.join("state"));
        self.say(&format!(
            "starting ban-agent run --config {} (jail {JAIL}: 5 failures in 10m ban for 1h, port 8000)",
            path.display()
        ));
        let log = self.work.join("agent.log");
        let file =
            fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = inside(Scene::SERVER, &self.agent)
            .args(["run", "--config"])
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {}", self.agent.display()))?;
        let mut agent = Agent { child, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.cli(&["ping"]).is_ok_and(|out| out.status.success()) {
            if agent.child.try_wait()?.is_some() || Instant::now() > deadline {
                bail!("ban-agent did not start:\n{}", agent.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(agent)
    }

    fn socket(&self) -> PathBuf {
        if self.docker.is_some() {
            // The agent's container's /run/ban-agent (compose.yaml's BAN_AGENT_RUN).
            self.work.join("run/ban-agent.sock")
        } else {
            self.work.join("ctl.sock")
        }
    }

    fn cli(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.agent)
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .output()
            .with_context(|| format!("cannot run {}", self.agent.display()))
    }

    /// `$ ban-agent ARGS` and its output, as an operator would see it.
    fn show(&self, args: &[&str]) -> anyhow::Result<()> {
        self.say(&format!("$ ban-agent {}", args.join(" ")));
        let out = self.cli(args)?;
        self.check()?;
        if !out.status.success() {
            bail!(
                "ban-agent {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        print!("{}", indent(&String::from_utf8_lossy(&out.stdout)));
        Ok(())
    }

    /// The HTTP status of one request from `ns` (curl), or None when nothing answered.
    fn curl(
        &self,
        ns: &str,
        method: &str,
        path: &str,
        json: Option<&str>,
    ) -> anyhow::Result<Option<u16>> {
        let mut command = inside(ns, "curl");
        command
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["--max-time", "2", "-X", method])
            .args(["-H", "content-type: application/json"]);
        if let Some(json) = json {
            command.args(["-d", json]);
        }
        let out = command
            .arg(format!("http://{SERVER}:8000{path}"))
            .output()
            .context("cannot run curl")?;
        self.check()?;
        let code: Option<u16> = String::from_utf8_lossy(&out.stdout).trim().parse().ok();
        Ok(code.filter(|&code| out.status.success() && code != 0))
    }

    fn login(&self, ns: &str, who: &str, json: &str, what: &str) -> anyhow::Result<()> {
        match self.curl(ns, "POST", "/login", Some(json))? {
            Some(code) => {
                self.say(&format!("{who} POST /login ({what}) -> {code}"));
                Ok(())
            }
            None => bail!("{who} POST /login ({what}): no answer"),
        }
    }

    /// The agent's "ban" log line, and how long after the fifth failure it appeared.
    fn wait_for_ban(&self, running: &Running<'_>, fifth: Instant) -> anyhow::Result<String> {
        loop {
            if let Some(line) = running.agent_log().lines().find(|l| l.contains(" ban ")) {
                let line = line.split_once(" ban ").map_or(line, |(_, rest)| rest);
                return Ok(format!(
                    "ban {line}\n         (in the kernel map within {:.1} ms of curl returning the fifth 401)",
                    fifth.elapsed().as_secs_f64() * 1e3
                ));
            }
            if fifth.elapsed() > Duration::from_secs(5) {
                bail!(
                    "no ban within 5 s of the fifth failure. The agent said:\n{}\nThe app said:\n{}",
                    running.agent_log(),
                    running.app_output()
                );
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The agent in the server namespace; killed on drop unless it finished.
struct Agent {
    child: Child,
    log: PathBuf,
}

impl Agent {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the agent to exit after `stop`.
    fn finish(mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("ban-agent did not stop:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _killed = self.child.kill();
            let _reaped = self.child.wait();
        }
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("         {line}\n"))
        .collect()
}

/// What the attacker asks after its unban: not a login, whose 200 would read as if the
/// guessing had worked, but a page anyone may read.
const AFTER_UNBAN: (&str, &str) = ("GET", "/health");

fn after_unban(code: u16) -> String {
    let (method, path) = AFTER_UNBAN;
    format!(
        "attacker {method} {path} (after unban) -> {code}: its packets reach the app again; \
         its next 5 failed logins would ban it again"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn after_the_unban_the_attacker_proves_it_is_reachable_without_a_login() {
        let line = super::after_unban(200);
        assert!(!line.contains("/login"), "{line}");
        assert!(line.contains("GET /health (after unban) -> 200"), "{line}");
    }
}
