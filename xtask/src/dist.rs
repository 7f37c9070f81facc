//! `cargo xtask dist`: the Debian package and a tarball of the same files, for hosts
//! without a Rust toolchain:
//! - `target/dist/ban-agent_VERSION_ARCH.deb`;
//! - `target/dist/ban-agent-VERSION-ARCH.tar.gz`.
//!
//! The package is laid out by hand and built by `dpkg-deb`, Debian's own tool, rather than
//! with cargo-deb: its maintainer scripts are ours anyway (detach the datapath on removal,
//! the state on purge), and cargo-deb would add a build of its own to every CI run.
//! Its `Depends` come from `dpkg-shlibdeps` over the binary.
//!
//! `cargo xtask test` then checks the package ([`check`]): lintian finds nothing in it;
//! installed into a temporary root, it runs, removing it keeps the configuration and the state, and purging it leaves
//! nothing but what the user wrote there.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, ensure};

use crate::{Workspace, output, run};

/// What `dist` made.
pub struct Dist {
    pub deb: PathBuf,
    pub tarball: PathBuf,
    pub version: String,
}

/// Maintainer scripts: POSIX sh, `$DPKG_ROOT` honoured (set when dpkg installs into
/// another root), systemd only touched when it runs the host.
const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ]; then
    # Bans, ban history and log positions (systemd's StateDirectory= makes it too).
    mkdir -p "$DPKG_ROOT/var/lib/ban-agent"
    chmod 0700 "$DPKG_ROOT/var/lib/ban-agent"
    if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null 2>&1 || true
        # An upgrade restarts a running agent on the new binary; the bans stay in the kernel.
        if [ -n "$2" ] && systemctl is-active --quiet ban-agent.service; then
            deb-systemd-invoke restart ban-agent.service >/dev/null || true
        fi
    fi
    if [ -z "$2" ]; then
        echo "ban-agent: set interfaces and jails in /etc/ban-agent/ban-agent.toml, check it with" \
             "'ban-agent check', then start it: systemctl enable --now ban-agent"
    fi
fi
exit 0
"#;

const PRERM: &str = r#"#!/bin/sh
set -e
if [ "$1" = remove ]; then
    if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
        deb-systemd-invoke stop ban-agent.service >/dev/null || true
    fi
    # An agent started without systemd (or by hand beside it) is asked through its control
    # socket to stop and take its program and bans out of the kernel: the socket the
    # configuration names (relative to its folder), else the default.
    agent="$DPKG_ROOT/usr/bin/ban-agent"
    etc="$DPKG_ROOT/etc/ban-agent"
    socket=$(sed -n 's/^[[:space:]]*socket[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p'         "$etc/ban-agent.toml" 2>/dev/null | head -n 1)
    case "$socket" in
        "") socket="$DPKG_ROOT/run/ban-agent.sock" ;;
        /*) socket="$DPKG_ROOT$socket" ;;
        *) socket="$etc/$socket" ;;
    esac
    if [ -S "$socket" ]; then
        timeout 30 "$agent" --socket "$socket" stop --detach >/dev/null 2>&1 || true
    fi
    # Stopping leaves the program and its bans in the kernel, for a restart; a removal
    # takes them out (a reinstall restores the bans from the state). A daemon that did
    # not answer sees its pin folder removed, and stops.
    if [ -z "$DPKG_ROOT" ]; then
        "$agent" datapath detach >/dev/null 2>&1 || true
    fi
fi
exit 0
"#;

const POSTRM: &str = r#"#!/bin/sh
set -e
if [ "$1" = purge ]; then
    # The state the agent wrote, the control socket and the unit's enablement. The
    # configuration goes with dpkg's conffile; files the user added stay.
    rm -rf "$DPKG_ROOT/var/lib/ban-agent"
    rm -f "$DPKG_ROOT/run/ban-agent.sock"
    rm -f "$DPKG_ROOT/etc/systemd/system/multi-user.target.wants/ban-agent.service"
fi
if [ "$1" = remove ] || [ "$1" = purge ]; then
    if [ -z "$DPKG_ROOT" ] && [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null 2>&1 || true
    fi
fi
exit 0
"#;

pub fn dist(ws: &Workspace) -> anyhow::Result<Dist> {
    run(&mut ws.cargo(&["build", "--release", "--package", "ban-agent"]))?;
    let version = workspace_version(ws)?;
    let arch = arch()?;
    let out = ws.root.join("target/dist");
    let name = stem_of(&version, &arch);
    let stage = out.join(&name);
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cannot empty {}", stage.display()))?;
    }
    stage_files(ws, &stage, &version)?;
    let depends = shlib_depends(&out, &stage)?;
    write_control(&stage, &version, &arch, &depends)?;

    let deb = out.join(format!("{name}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb)
        .stdout(Stdio::null()))?;
    let top = format!("ban-agent-{version}-{arch}");
    let tarball = out.join(format!("{top}.tar.gz"));
    run(Command::new("tar")
        .arg("-C")
        .arg(&stage)
        .args([
            "--exclude=./DEBIAN",
            "--owner=0",
            "--group=0",
            "--sort=name",
        ])
        .arg(format!("--transform=s,^\\.,{top},"))
        .arg("-czf")
        .arg(&tarball)
        .arg("."))?;
    println!("built {}\nbuilt {}", deb.display(), tarball.display());
    Ok(Dist {
        deb,
        tarball,
        version,
    })
}

/// The package's architecture, Debian's name for this host's.
fn arch() -> anyhow::Result<String> {
    Ok(output(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_owned())
}

/// The package's file name without `.deb`: `ban-agent_VERSION_ARCH`.
pub fn stem(ws: &Workspace) -> anyhow::Result<String> {
    Ok(stem_of(&workspace_version(ws)?, &arch()?))
}

fn stem_of(version: &str, arch: &str) -> String {
    format!("ban-agent_{version}_{arch}")
}

fn workspace_version(ws: &Workspace) -> anyhow::Result<String> {
    let manifest = ws.root.join("Cargo.toml");
    let text = fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let value: toml::Table = text.parse().context("Cargo.toml is not valid TOML")?;
    value
        .get("workspace")
        .and_then(|w| w.get("package"))
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .context("Cargo.toml: [workspace.package] version is missing")
}

/// The files of the package under `stage`, as they land on the host.
fn stage_files(ws: &Workspace, stage: &Path, version: &str) -> anyhow::Result<()> {
    let binary = ws.root.join("target/release/ban-agent");
    put(stage, "usr/bin/ban-agent", &read(&binary)?, 0o755)?;
    // Debian ships binaries stripped; the eBPF object inside is data and stays whole.
    run(Command::new("strip")
        .arg("--strip-unneeded")
        .args(["--remove-section=.comment", "--remove-section=.note"])
        .arg(stage.join("usr/bin/ban-agent")))?;
    let unit = String::from_utf8(read(&ws.root.join("dist/ban-agent.service"))?)
        .context("dist/ban-agent.service is not UTF-8")?
        .replace("@BINDIR@", "/usr/bin");
    put(
        stage,
        "lib/systemd/system/ban-agent.service",
        unit.as_bytes(),
        0o644,
    )?;
    // 0600: hook URLs and commands may carry secrets.
    let config = read(&ws.root.join("docs/ban-agent.example.toml"))?;
    put(stage, "etc/ban-agent/ban-agent.toml", &config, 0o600)?;
    mkdir(&stage.join("etc/ban-agent/filter.d"))?;

    stage_generated(&binary, stage)?;
    stage_filters(ws, stage)?;
    stage_doc(ws, stage, version)?;
    // The configuration is 0600 on purpose: hook URLs and commands may carry secrets.
    put(
        stage,
        "usr/share/lintian/overrides/ban-agent",
        b"ban-agent: non-standard-file-perm 0600 != 0644 [etc/ban-agent/ban-agent.toml]\n",
        0o644,
    )?;
    Ok(())
}

/// Manual pages and completions, from the binary's own clap definitions.
fn stage_generated(binary: &Path, stage: &Path) -> anyhow::Result<()> {
    let generated = stage.with_extension("generated");
    if generated.exists() {
        fs::remove_dir_all(&generated)
            .with_context(|| format!("cannot empty {}", generated.display()))?;
    }
    run(Command::new(binary)
        .arg("generate")
        .arg(&generated)
        .stdout(Stdio::null()))?;
    for entry in entries(&generated.join("man"))? {
        let page = entry
            .file_name()
            .and_then(|n| n.to_str())
            .context("a page name is not UTF-8")?
            .to_owned();
        let gz = gzip(&read(&entry)?)?;
        // `ban-agent.toml.5` in section 5, the verbs' pages in 8.
        let section = page.rsplit('.').next().unwrap_or("8");
        put(
            stage,
            &format!("usr/share/man/man{section}/{page}.gz"),
            &gz,
            0o644,
        )?;
    }
    let completions = generated.join("completions");
    for (file, to) in [
        (
            "ban-agent.bash",
            "usr/share/bash-completion/completions/ban-agent",
        ),
        ("_ban-agent", "usr/share/zsh/vendor-completions/_ban-agent"),
        (
            "ban-agent.fish",
            "usr/share/fish/vendor_completions.d/ban-agent.fish",
        ),
    ] {
        put(stage, to, &read(&completions.join(file))?, 0o644)?;
    }
    fs::remove_dir_all(&generated).ok();
    Ok(())
}

/// The built-in filters as text (to copy into filter.d and change) and their annotated
/// sample logs (for `ban-agent test-filter`).
fn stage_filters(ws: &Workspace, stage: &Path) -> anyhow::Result<()> {
    for entry in entries(&ws.root.join("filters"))? {
        if entry.extension().is_some_and(|e| e == "toml") {
            let file = entry
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            put(
                stage,
                &format!("usr/share/ban-agent/filters/{file}"),
                &read(&entry)?,
                0o644,
            )?;
        }
    }
    for entry in entries(&ws.root.join("filters/tests"))? {
        let file = entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let to = format!("usr/share/ban-agent/filters/tests/{file}");
        put(stage, &to, &read(&entry)?, 0o644)?;
    }
    Ok(())
}

/// The README, the copyright and the changelog, as Debian places them.
fn stage_doc(ws: &Workspace, stage: &Path, version: &str) -> anyhow::Result<()> {
    let doc = "usr/share/doc/ban-agent";
    put(
        stage,
        &format!("{doc}/README.md"),
        &read(&ws.root.join("README.md"))?,
        0o644,
    )?;
    let copyright = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\
                     Upstream-Name: ban-agent\n\nFiles: *\nCopyright: 2026 the ban-agent developers\n\
                     License: MIT or Apache-2.0\n";
    put(
        stage,
        &format!("{doc}/copyright"),
        copyright.as_bytes(),
        0o644,
    )?;
    let changelog = format!(
        "ban-agent ({version}) unstable; urgency=medium\n\n  \
         * Built from the ban-agent repository, commit {commit}, by `cargo xtask dist`.\n\n \
         -- ban-agent developers <ban-agent@example.org>  {date}\n",
        // Outside a git checkout (a source tarball), the build's own time.
        commit = git(ws, &["log", "-1", "--format=%h"]).unwrap_or_else(|_| "unknown".into()),
        date = git(ws, &["log", "-1", "--format=%aD"])
            .or_else(|_| output(Command::new("date").arg("-R")).map(|d| d.trim().to_owned()))?,
    );
    let changelog = gzip(changelog.as_bytes())?;
    put(stage, &format!("{doc}/changelog.gz"), &changelog, 0o644)?;
    Ok(())
}

/// A line of git's output about this checkout (the package's changelog: reproducible).
fn git(ws: &Workspace, args: &[&str]) -> anyhow::Result<String> {
    Ok(
        output(Command::new("git").args(args).current_dir(&ws.root))?
            .trim()
            .to_owned(),
    )
}

/// `Depends` of the binary, from `dpkg-shlibdeps` (libc6, libgcc-s1, libsystemd0 with
/// the versions its symbols need).
fn shlib_depends(out: &Path, stage: &Path) -> anyhow::Result<String> {
    // dpkg-shlibdeps reads debian/control of the folder it runs in.
    let work = out.join("shlibdeps");
    fs::create_dir_all(work.join("debian")).context("cannot create target/dist/shlibdeps")?;
    fs::write(
        work.join("debian/control"),
        "Source: ban-agent\n\nPackage: ban-agent\nArchitecture: any\n",
    )
    .context("cannot write target/dist/shlibdeps/debian/control")?;
    let text = output(
        Command::new("dpkg-shlibdeps")
            .arg("-O")
            .arg(stage.join("usr/bin/ban-agent"))
            .current_dir(&work)
            .stderr(Stdio::null()),
    )?;
    text.lines()
        .find_map(|line| line.strip_prefix("shlibs:Depends="))
        .map(str::to_owned)
        .context("dpkg-shlibdeps gave no shlibs:Depends")
}

fn write_control(stage: &Path, version: &str, arch: &str, depends: &str) -> anyhow::Result<()> {
    let size_kib = output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(stage),
    )?
    .split_whitespace()
    .next()
    .unwrap_or("0")
    .to_owned();
    let control = format!(
        "Package: ban-agent\n\
         Version: {version}\n\
         Architecture: {arch}\n\
         Maintainer: ban-agent developers <ban-agent@example.org>\n\
         Installed-Size: {size_kib}\n\
         Depends: {depends}\n\
         Recommends: bpftool\n\
         Section: net\n\
         Priority: optional\n\
         Homepage: https://example.org/ban-agent\n\
         Description: bans brute-forcing clients at packet level (XDP/tc)\n \
         ban-agent follows application logs (files and the systemd journal), matches\n \
         failures with fail2ban-style filters (its own or fail2ban's .conf files) and\n \
         drops the packets of clients that fail too often in the kernel, with XDP or a\n \
         tc ingress program, until their ban expires.\n"
    );
    put(stage, "DEBIAN/control", control.as_bytes(), 0o644)?;
    put(
        stage,
        "DEBIAN/conffiles",
        b"/etc/ban-agent/ban-agent.toml\n",
        0o644,
    )?;
    put(stage, "DEBIAN/postinst", POSTINST.as_bytes(), 0o755)?;
    put(stage, "DEBIAN/prerm", PRERM.as_bytes(), 0o755)?;
    put(stage, "DEBIAN/postrm", POSTRM.as_bytes(), 0o755)?;
    let sums = output(
        Command::new("sh")
            .arg("-c")
            .arg("find . -path ./DEBIAN -prune -o -type f -printf '%P\\0' | sort -z | xargs -0 md5sum")
            .current_dir(stage),
    )?;
    put(stage, "DEBIAN/md5sums", sums.as_bytes(), 0o644)
}

/// Installs the package into a temporary root as dpkg would on a host, runs what a user
/// runs first, removes and purges it. Returns what was checked.
pub fn check(ws: &Workspace, dist: &Dist) -> anyhow::Result<Vec<String>> {
    let root = ws.root.join("target/dist/root");
    let before = empty_root(&root)?;
    let mut checked = vec![lintian(dist)?];
    checked.extend(install(&root, dist)?);
    checked.extend(runs(&root, dist)?);
    checked.extend(remove_and_purge(&root, &before)?);
    fs::remove_dir_all(&root).ok();
    Ok(checked)
}

/// A root with what dpkg needs and nothing else; the paths in it.
fn empty_root(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if root.exists() {
        fs::remove_dir_all(root).with_context(|| format!("cannot empty {}", root.display()))?;
    }
    // /run is the host's, there before the package.
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/log",
        "run",
    ] {
        mkdir(&root.join(dir))?;
    }
    fs::write(root.join("var/lib/dpkg/status"), "").context("cannot create dpkg's status")?;
    files(root)
}

/// Debian's own checks of a package: no error nor warning (the one deliberate exception,
/// the configuration's 0600, is overridden in the package, with its reason).
fn lintian(dist: &Dist) -> anyhow::Result<String> {
    let said = Command::new("lintian")
        .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
        .arg(&dist.deb)
        .output()
        .context("cannot run lintian")?;
    ensure!(
        said.status.success(),
        "lintian found problems in the package:\n{}",
        String::from_utf8_lossy(&said.stdout)
    );
    Ok("lintian: no error, no warning".to_owned())
}

/// Installed into `root`: the files, the conffile, and the tarball's same files.
fn install(root: &Path, dist: &Dist) -> anyhow::Result<Vec<String>> {
    let mut checked = Vec::new();
    dpkg(root, &["--install"], Some(&dist.deb))?;
    let contents = output(Command::new("dpkg-deb").arg("--contents").arg(&dist.deb))?;
    for path in [
        "./usr/bin/ban-agent",
        "./lib/systemd/system/ban-agent.service",
        "./etc/ban-agent/ban-agent.toml",
        "./usr/share/man/man8/ban-agent.8.gz",
        "./usr/share/man/man8/ban-agent-test-filter.8.gz",
        "./usr/share/man/man5/ban-agent.toml.5.gz",
        "./usr/share/bash-completion/completions/ban-agent",
        "./usr/share/zsh/vendor-completions/_ban-agent",
        "./usr/share/fish/vendor_completions.d/ban-agent.fish",
    ] {
        ensure!(contents.contains(path), "the package has no {path}");
    }
    let conffiles = fs::read_to_string(root.join("var/lib/dpkg/info/ban-agent.conffiles"))
        .context("dpkg recorded no conffiles for ban-agent")?;
    ensure!(
        conffiles.trim() == "/etc/ban-agent/ban-agent.toml",
        "conffiles: {conffiles}"
    );
    checked.push(
        "installed into a temporary root (binary, unit, conffile, man pages, completions)"
            .to_owned(),
    );
    let listed = output(Command::new("tar").arg("-tzf").arg(&dist.tarball))?;
    let in_tarball = |path: &str| {
        listed
            .lines()
            .any(|line| line.ends_with(path.trim_start_matches('.')))
    };
    let missing: Vec<&str> = contents
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .filter(|path| !path.ends_with('/') && !in_tarball(path))
        .collect();
    ensure!(missing.is_empty(), "the tarball lacks {missing:?}");
    checked.push("the tarball holds every file of the package".to_owned());
    Ok(checked)
}

/// The installed binary runs as a host without Rust runs it.
fn runs(root: &Path, dist: &Dist) -> anyhow::Result<Vec<String>> {
    let mut checked = Vec::new();
    let agent = root.join("usr/bin/ban-agent");
    let version = output(bare(&agent).arg("--version"))?;
    ensure!(
        version.trim() == format!("ban-agent {}", dist.version),
        "ban-agent --version said {version:?}"
    );
    checked.push(format!("`ban-agent --version`: {}", version.trim()));

    let sample = root.join("usr/share/ban-agent/filters/tests/nginx.log");
    let report = output(
        bare(&agent)
            .arg("test-filter")
            .arg(&sample)
            .args(["--filter", "nginx"]),
    )?;
    let lines_row = report
        .lines()
        .find(|line| line.starts_with("Lines:"))
        .context("test-filter printed no Lines row")?;
    ensure!(
        !lines_row.contains(" 0 matched"),
        "test-filter matched nothing: {lines_row}"
    );
    checked.push(format!(
        "`ban-agent test-filter` on the installed nginx sample: {lines_row}"
    ));

    dry_run(&agent, root)?;
    checked
        .push("`ban-agent run --dry-run` on the installed configuration answers `ping`".to_owned());
    Ok(checked)
}

/// Removed with an agent running, then purged: only what the user chose to keep stays.
fn remove_and_purge(root: &Path, before: &[PathBuf]) -> anyhow::Result<Vec<String>> {
    let mut checked = Vec::new();
    let agent = root.join("usr/bin/ban-agent");
    // What the user adds: a filter of their own; the state the agent wrote in the
    // package's folder, and one in a `state_dir` the user chose elsewhere.
    let mine = root.join("etc/ban-agent/filter.d/mine.toml");
    fs::write(&mine, "failregex = ['^fail <HOST>$']\n").context("cannot write a user filter")?;
    fs::write(root.join("var/lib/ban-agent/state.db"), "state").context("cannot write a state")?;
    mkdir(&root.join("srv/ban-state"))?;
    fs::write(root.join("srv/ban-state/state.db"), "state").context("cannot write a state")?;

    // An agent started by hand (no systemd here), attached and banning: the removal
    // must stop it and take its program and pins out of the kernel.
    let running = if crate::is_root() {
        Some(Removal::start(&agent, root)?)
    } else {
        checked.push("removal of a running agent: skipped (needs root)".to_owned());
        None
    };
    dpkg(root, &["--remove", "ban-agent"], None)?;
    if let Some(running) = running {
        checked.push(running.gone()?);
    }
    ensure!(!agent.exists(), "remove left the binary");
    for kept in ["etc/ban-agent/ban-agent.toml", "var/lib/ban-agent/state.db"] {
        ensure!(
            root.join(kept).exists(),
            "remove took {kept}: it must keep it until purge"
        );
    }
    checked.push("remove: the binary is gone, the configuration and the state are kept".to_owned());

    dpkg(root, &["--purge", "ban-agent"], None)?;
    let left: Vec<PathBuf> = files(root)?
        .into_iter()
        .filter(|path| !before.contains(path))
        .filter(|path| !path.starts_with("var/lib/dpkg") && !path.starts_with("var/log"))
        .collect();
    let expected: Vec<PathBuf> = [
        "etc",
        "etc/ban-agent",
        "etc/ban-agent/filter.d",
        "etc/ban-agent/filter.d/mine.toml",
        "srv",
        "srv/ban-state",
        "srv/ban-state/state.db",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    ensure!(
        left == expected,
        "purge left {left:?}; only the user's own filter and the state_dir they chose (and \
         their folders) may stay"
    );
    checked.push(
        "purge: /var/lib/ban-agent is gone; left are the filter the user wrote and the \
         state_dir they chose elsewhere"
            .to_owned(),
    );

    Ok(checked)
}

/// dpkg on the temporary root, its maintainer scripts run with `DPKG_ROOT` (not chrooted:
/// the root has no shell), the dependencies not checked (the root has no libc package).
fn dpkg(root: &Path, args: &[&str], package: Option<&Path>) -> anyhow::Result<()> {
    let mut cmd = Command::new("dpkg");
    cmd.arg(format!("--root={}", root.display()))
        .args([
            "--force-script-chrootless",
            "--force-depends",
            "--force-not-root",
        ])
        .arg(format!("--log={}", root.join("var/log/dpkg.log").display()))
        .args(args);
    if let Some(package) = package {
        cmd.arg(package);
    }
    output(&mut cmd).map(drop)
}

/// `run --dry-run` on the installed configuration until it answers on its socket.
fn dry_run(agent: &Path, root: &Path) -> anyhow::Result<()> {
    let socket = root.join("run/ban-agent.sock");
    let log = root.join("dry-run.log");
    let mut child = spawn_logged(
        bare(agent)
            .arg("run")
            .arg("--dry-run")
            .arg("--config")
            .arg(root.join("etc/ban-agent/ban-agent.toml"))
            .arg("--socket")
            .arg(&socket),
        &log,
    )?;
    let answered = answers(
        agent,
        &socket,
        &mut child,
        &["ping"],
        Duration::from_secs(20),
    );
    // SIGTERM, as systemctl stop sends.
    // SAFETY: kill has no memory preconditions; the pid is our child's.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let said = fs::read_to_string(&log).unwrap_or_default();
    fs::remove_file(&log).ok();
    answered.map_err(|why| anyhow::anyhow!("ban-agent run --dry-run: {why}; it said:\n{said}"))
}

/// A daemon run from the installed root, as an operator starts it without systemd: in a
/// network namespace of its own, attached to a veth there, its pins in a folder of its
/// own, a ban in force.
struct Removal {
    child: std::process::Child,
    /// The links the daemon made.
    links: Vec<u64>,
    netns: String,
    pin_dir: PathBuf,
    dir: PathBuf,
    log: PathBuf,
}

impl Removal {
    fn start(agent: &Path, root: &Path) -> anyhow::Result<Self> {
        let netns = format!("ba-dist-{}", std::process::id());
        let pin_dir = PathBuf::from(format!("/sys/fs/bpf/ban-agent-dist-{}", std::process::id()));
        let dir = root.with_file_name("removal");
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("cannot empty {}", dir.display()))?;
        }
        mkdir(&dir)?;
        let _stale = Command::new("ip").args(["netns", "del", &netns]).output();
        run(Command::new("ip").args(["netns", "add", &netns]))?;
        let mut removal = Self {
            child: Command::new("true").spawn().context("cannot run true")?,
            links: Vec::new(),
            netns,
            pin_dir,
            log: dir.join("daemon.log"),
            dir,
        };
        let ns = removal.netns.clone();
        run(Command::new("ip").args([
            "-n", &ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
        ]))?;
        run(Command::new("ip").args(["-n", &ns, "link", "set", "d0", "up"]))?;
        run(Command::new("ip").args(["-n", &ns, "link", "set", "d1", "up"]))?;
        let config = removal.dir.join("ban-agent.toml");
        fs::write(
            &config,
            format!(
                "interfaces = [\"d0\"]\npin_dir = \"{}\"\nstate_dir = \"{}\"\n\
                 [jail.app]\nlogpath = \"{}\"\nfilter = \"fastapi-auth\"\nports = [8000]\n",
                removal.pin_dir.display(),
                removal.dir.join("state").display(),
                removal.dir.join("app.log").display()
            ),
        )
        .context("cannot write the configuration")?;
        fs::write(removal.dir.join("app.log"), "").context("cannot write the log")?;
        let socket = root.join("run/ban-agent.sock");
        removal.child = spawn_logged(
            bare(Path::new("nsenter"))
                .arg(format!("--net=/run/netns/{ns}"))
                .arg(agent)
                .arg("run")
                .arg("--config")
                .arg(&config)
                .arg("--socket")
                .arg(&socket),
            &removal.log,
        )?;
        let ban = ["ban", "app", "192.0.2.99"];
        if let Err(why) = answers(
            agent,
            &socket,
            &mut removal.child,
            &ban,
            Duration::from_secs(30),
        ) {
            anyhow::bail!("ban-agent run: {why}; it said:\n{}", removal.said());
        }
        removal.links = removal.pinned_links()?;
        ensure!(
            removal.pin_dir.join("ban_v4").exists() && !removal.links.is_empty(),
            "the daemon is not attached: {}",
            removal.said()
        );
        Ok(removal)
    }

    fn said(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The ids of the BPF links in the kernel (XDP or tc), as `bpftool -j link show
    /// [pinned PIN]` lists them.
    fn links(pinned: Option<&Path>) -> anyhow::Result<Vec<u64>> {
        let mut cmd = Command::new("bpftool");
        cmd.args(["-j", "link", "show"]);
        if let Some(pin) = pinned {
            cmd.arg("pinned").arg(pin);
        }
        let listed = output(&mut cmd)?;
        Ok(listed
            .split("\"id\":")
            .skip(1)
            .filter_map(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .collect())
    }

    /// The links the daemon pinned for d0 (XDP or tc).
    fn pinned_links(&self) -> anyhow::Result<Vec<u64>> {
        let mut ids = Vec::new();
        for name in ["link_d0", "tc_d0"] {
            let pin = self.pin_dir.join(name);
            if pin.exists() {
                ids.extend(Self::links(Some(&pin))?);
            }
        }
        Ok(ids)
    }

    /// After the package's removal: the daemon has exited, and nothing of it is left in
    /// the kernel.
    fn gone(mut self) -> anyhow::Result<String> {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self
                .child
                .try_wait()
                .context("cannot wait for the daemon")?
            {
                break status;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(10),
                "the removal left the agent running: {}",
                self.said()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        ensure!(
            !self.pin_dir.exists(),
            "the removal left the pins {}; the agent said:\n{}",
            self.pin_dir.display(),
            self.said()
        );
        let left: Vec<u64> = Self::links(None)?
            .into_iter()
            .filter(|id| self.links.contains(id))
            .collect();
        ensure!(
            left.is_empty(),
            "the removal left the daemon's links {left:?} in the kernel"
        );
        ensure!(
            status.success(),
            "the agent exited with {status}: {}",
            self.said()
        );
        Ok(
            "remove: an agent started by hand (no systemd) is stopped through its socket; \
             no process, program or pin is left"
                .to_owned(),
        )
    }
}

impl Drop for Removal {
    fn drop(&mut self) {
        let _killed = self.child.kill();
        let _reaped = self.child.wait();
        let _pins = fs::remove_dir_all(&self.pin_dir);
        let _netns = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        let _dir = fs::remove_dir_all(&self.dir);
    }
}

/// Starts `cmd` with its standard output and error in `log`.
fn spawn_logged(cmd: &mut Command, log: &Path) -> anyhow::Result<std::process::Child> {
    let file = fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    cmd.stdout(file.try_clone().context("cannot share the log")?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))
}

/// Waits until `ban-agent --socket SOCKET ARGS` succeeds against the daemon `child`;
/// why not when it exits first or `limit` passes.
fn answers(
    agent: &Path,
    socket: &Path,
    child: &mut std::process::Child,
    args: &[&str],
    limit: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("it exited with {status}"));
        }
        let out = bare(agent).arg("--socket").arg(socket).args(args).output();
        if out.is_ok_and(|out| out.status.success()) {
            return Ok(());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "it did not answer `{}` within {limit:?}",
                args.join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The installed binary as a host without Rust runs it: an empty environment (no cargo,
/// no rustup, no `BAN_AGENT_TOOLS`) and the system's PATH.
fn bare(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear().env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    cmd
}

/// Every path under `root`, relative and sorted.
fn files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in entries(&dir)? {
            if entry.is_dir() && !entry.is_symlink() {
                pending.push(entry.clone());
            }
            found.push(entry.strip_prefix(root).unwrap_or(&entry).to_owned());
        }
    }
    found.sort();
    Ok(found)
}

fn entries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut list: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    list.sort();
    Ok(list)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn mkdir(dir: &Path) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

fn put(stage: &Path, relative: &str, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let path = stage.join(relative);
    if let Some(dir) = path.parent() {
        mkdir(dir)?;
    }
    fs::write(&path, bytes)
        .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(mode)))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `gzip -9n`: no name nor time in the header, so the package is reproducible.
fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    use std::io::Write as _;
    let mut child = Command::new("gzip")
        .args(["-9n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run gzip")?;
    child
        .stdin
        .take()
        .context("gzip has no input")?
        .write_all(bytes)
        .context("cannot feed gzip")?;
    let out = child.wait_with_output().context("gzip failed")?;
    ensure!(out.status.success(), "gzip failed with {}", out.status);
    Ok(out.stdout)
}
