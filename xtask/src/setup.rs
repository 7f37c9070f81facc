//! `cargo xtask setup`: everything the build and the tests need on a fresh machine,
//! installed idempotently: the pinned eBPF nightly with rust-src, bpf-linker built against
//! that nightly's own libLLVM, cargo-fuzz, and the system packages the tests use.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::{Workspace, run};

/// bpf-linker release built by setup; bump together with the nightly.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// cargo-fuzz release installed by setup, for `cargo xtask fuzz` (run with the nightly).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Debian packages the tests, the demo and the benchmarks use, each with what proves it is
/// there.
const PACKAGES: [(Proof, &str); 21] = [
    // `cargo xtask dist`: the package's dependencies (dpkg-shlibdeps), and its check.
    (Proof::Command("dpkg-shlibdeps"), "dpkg-dev"),
    (Proof::Command("lintian"), "lintian"),
    (Proof::Command("bpftool"), "bpftool"),
    (Proof::Command("ip"), "iproute2"),
    (Proof::Command("nsenter"), "util-linux"),
    (Proof::Command("curl"), "curl"),
    // The certificate of the HTTPS server fail2ban's abuseipdb action is sent to in its test.
    (Proof::Command("openssl"), "openssl"),
    (Proof::Command("python3"), "python3"),
    // libsystemd's sd-journal, which the agent links for journal jails.
    (
        Proof::Runs("pkg-config", &["--exists", "libsystemd"]),
        "libsystemd-dev",
    ),
    (Proof::Command("pkg-config"), "pkg-config"),
    // Writes the real journal files the journal test reads (no journald runs here).
    (
        Proof::File("/lib/systemd/systemd-journal-remote"),
        "systemd-journal-remote",
    ),
    // The fleet's engine, which its tests start on a socket of their own (the package's
    // service is not started: no init system runs here).
    (Proof::File("/usr/bin/redis-server"), "redis-server"),
    // The state database's shell: docs/daemon.md reads the state with it, and the crash
    // test checks the database's integrity with it as an operator would.
    (Proof::Command("sqlite3"), "sqlite3"),
    // Docker's DNAT of a published port, and fail2ban's nftables ban beside it, in the
    // containers test.
    (Proof::Command("nft"), "nftables"),
    // The container demo (a phase of `cargo xtask test`): Docker's daemon, started by
    // the demo in a namespace of its own (the package's service is not started: see
    // NoServices), Compose (Debian's is v1, `docker-compose`) for deploy/compose, and
    // the root file system of the app's image.
    (Proof::File("/usr/sbin/dockerd"), "docker.io"),
    (Proof::Command("docker-compose"), "docker-compose"),
    (Proof::Command("mmdebstrap"), "mmdebstrap"),
    // `cargo xtask dist --image`: the agent's OCI image, from the Debian package.
    (Proof::Command("buildah"), "buildah"),
    // Builds the Kubernetes manifests offline (`kubectl kustomize`) in their test.
    (Proof::Command("kubectl"), "kubernetes-client"),
    // Checks and tests the alerting rules in deploy/prometheus (`promtool`); the
    // package's server is not started (see NoServices).
    (Proof::Command("promtool"), "prometheus"),
    // The example app's virtual environment (examples/fastapi-auth/venv.sh).
    (
        Proof::Runs("python3", &["-c", "import ensurepip"]),
        "python3-venv",
    ),
];

/// What `cargo xtask bench` needs on top: the peers it compares with, the flood generator
/// and the font of the plots. (fail2ban itself is unpacked, not installed: see bench.rs.)
pub const BENCH_PACKAGES: [(Proof, &str); 5] = [
    (Proof::Command("ip6tables"), "iptables"),
    (Proof::Command("nft"), "nftables"),
    (Proof::Command("ipset"), "ipset"),
    (Proof::Command("trafgen"), "netsniff-ng"),
    (Proof::File(crate::report::FONT), "fonts-dejavu-core"),
];

pub enum Proof {
    /// A command on the PATH (or in /usr/sbin, /sbin).
    Command(&'static str),
    /// A program that succeeds with these arguments.
    Runs(&'static str, &'static [&'static str]),
    /// A file.
    File(&'static str),
}

impl Proof {
    fn holds(&self) -> bool {
        match self {
            Self::Command(command) => on_path(command),
            Self::Runs(program, args) => Command::new(program)
                .args(*args)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success()),
            Self::File(path) => Path::new(path).is_file(),
        }
    }
}

pub fn setup(ws: &Workspace) -> anyhow::Result<()> {
    install_nightly(ws)?;
    install_bpf_linker(ws)?;
    install_cargo_fuzz(ws)?;
    install_packages(&PACKAGES)?;
    // The peers the tests run beside ours, from Debian's packages, unpacked (not
    // installed: no service of theirs starts on the machine).
    crate::bench::fail2ban(ws)?;
    crate::bench::crowdsec(ws)?;
    Ok(())
}

/// True when nothing needs installing; other commands call [`setup`] otherwise.
pub fn is_complete(ws: &Workspace) -> bool {
    nightly_installed(ws)
        && linker_stamp_matches(ws)
        && cargo_fuzz_installed(ws)
        && missing_packages(&PACKAGES).is_empty()
        && ws.tools.join("fail2ban/usr/bin/fail2ban-server").is_file()
        && ws
            .tools
            .join("crowdsec/usr/bin/crowdsec-firewall-bouncer")
            .is_file()
}

fn nightly_installed(ws: &Workspace) -> bool {
    Command::new("rustup")
        .args(["run", &ws.nightly, "rustc", "--print", "sysroot"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false)
        && sysroot(ws)
            .map(|root| root.join("lib/rustlib/src/rust/library/core").is_dir())
            .unwrap_or(false)
}

fn install_nightly(ws: &Workspace) -> anyhow::Result<()> {
    if nightly_installed(ws) {
        return Ok(());
    }
    eprintln!("setup: installing {} with rust-src", ws.nightly);
    run(Command::new("rustup").args([
        "toolchain",
        "install",
        &ws.nightly,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

fn sysroot(ws: &Workspace) -> anyhow::Result<PathBuf> {
    let out = Command::new("rustup")
        .args(["run", &ws.nightly, "rustc", "--print", "sysroot"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .context("cannot run rustup")?;
    if !out.status.success() {
        bail!("{} is not installed", ws.nightly);
    }
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

fn stamp(ws: &Workspace) -> String {
    format!("bpf-linker {BPF_LINKER_VERSION} for {}\n", ws.nightly)
}

fn linker_stamp_matches(ws: &Workspace) -> bool {
    ws.tools.join("bin/bpf-linker").exists()
        && fs::read_to_string(ws.tools.join("bpf-linker.stamp")).ok() == Some(stamp(ws))
}

/// Builds bpf-linker against the nightly's own libLLVM, so the linker and rustc agree on
/// the LLVM bitcode they exchange. No prebuilt binary is downloaded.
fn install_bpf_linker(ws: &Workspace) -> anyhow::Result<()> {
    if linker_stamp_matches(ws) {
        return Ok(());
    }
    let sysroot = sysroot(ws)?;
    let lib = sysroot.join("lib");
    let libllvm = find_libllvm(&lib)?;
    let major = llvm_major(ws)?;
    let prefix = ws.tools.join(format!("llvm-{}", ws.nightly));
    fs::create_dir_all(prefix.join("lib"))?;
    let link = prefix.join("lib/libLLVM.so");
    let _absent = fs::remove_file(&link);
    std::os::unix::fs::symlink(&libllvm, &link)
        .with_context(|| format!("cannot link {} to {}", link.display(), libllvm.display()))?;
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {} (LLVM {major})",
        libllvm.display()
    );
    run(Command::new("cargo")
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
            "--root",
        ])
        .arg(&ws.tools)
        .env("LLVM_PREFIX", &prefix)
        // Find the nightly's libLLVM at run time without LD_LIBRARY_PATH.
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", lib.display()),
        )
        .current_dir(&ws.root))?;
    fs::write(ws.tools.join("bpf-linker.stamp"), stamp(ws))?;
    Ok(())
}

/// Where `cargo xtask fuzz` finds cargo-fuzz.
pub fn cargo_fuzz(ws: &Workspace) -> PathBuf {
    ws.tools.join("bin/cargo-fuzz")
}

fn cargo_fuzz_installed(ws: &Workspace) -> bool {
    Command::new(cargo_fuzz(ws))
        .arg("--version")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains(CARGO_FUZZ_VERSION))
}

fn install_cargo_fuzz(ws: &Workspace) -> anyhow::Result<()> {
    if cargo_fuzz_installed(ws) {
        return Ok(());
    }
    eprintln!("setup: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    run(Command::new("cargo")
        .args([
            "install",
            "cargo-fuzz",
            "--version",
            CARGO_FUZZ_VERSION,
            "--locked",
            "--force",
            "--root",
        ])
        .arg(&ws.tools)
        .current_dir(&ws.root))
}

/// The nightly's shared libLLVM: `libLLVM.so.<version>`, the ELF file itself, not the
/// `libLLVM-<major>-rust-*.so` beside it, which is a linker script pointing at it.
fn find_libllvm(lib: &Path) -> anyhow::Result<PathBuf> {
    for entry in fs::read_dir(lib).with_context(|| format!("cannot read {}", lib.display()))? {
        let path = entry?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if name.is_some_and(|n| n.starts_with("libLLVM.so.")) {
            return Ok(path);
        }
    }
    bail!(
        "no libLLVM.so.* in {}: this nightly links LLVM statically, so bpf-linker cannot \
         share it; pin a nightly that ships libLLVM",
        lib.display()
    )
}

fn llvm_major(ws: &Workspace) -> anyhow::Result<u32> {
    let out = Command::new("rustup")
        .args(["run", &ws.nightly, "rustc", "-vV"])
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    let version = text
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .context("rustc -vV printed no LLVM version")?;
    version
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .context("unreadable LLVM version")
}

fn missing_packages(packages: &[(Proof, &'static str)]) -> Vec<&'static str> {
    packages
        .iter()
        .filter(|(proof, _)| !proof.holds())
        .map(|(_, package)| *package)
        .collect()
}

fn on_path(command: &str) -> bool {
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
        .unwrap_or(false)
        || Path::new("/usr/sbin").join(command).is_file()
        || Path::new("/sbin").join(command).is_file()
}

/// `apt-get install`s the packages whose proof does not hold.
pub fn install_packages(packages: &[(Proof, &'static str)]) -> anyhow::Result<()> {
    let missing = missing_packages(packages);
    if missing.is_empty() {
        return Ok(());
    }
    if !crate::is_root() {
        bail!(
            "missing packages {missing:?}: install them (apt-get install {}) or run as root",
            missing.join(" ")
        );
    }
    eprintln!("setup: apt-get install {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    let _no_services = NoServices::install()?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// A `policy-rc.d` that forbids starting services, for the time of an install, on a host
/// that has none: the packages' services (redis-server, dockerd, containerd) would start
/// on the host, in its network namespace, where the tests start their own in namespaces
/// they make. A policy the host already has is left as it is.
struct NoServices {
    made: Option<&'static Path>,
}

impl NoServices {
    const POLICY: &'static str = "/usr/sbin/policy-rc.d";

    fn install() -> anyhow::Result<Self> {
        let path = Path::new(Self::POLICY);
        if path.exists() {
            return Ok(Self { made: None });
        }
        fs::write(
            path,
            "#!/bin/sh\n# Written by cargo xtask setup for the time of an install.\nexit 101\n",
        )
        .with_context(|| format!("cannot write {}", path.display()))?;
        fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .with_context(|| format!("cannot chmod {}", path.display()))?;
        Ok(Self { made: Some(path) })
    }
}

impl Drop for NoServices {
    fn drop(&mut self) {
        if let Some(path) = self.made {
            let _removed = fs::remove_file(path);
        }
    }
}
