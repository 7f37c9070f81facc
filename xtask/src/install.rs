//! `cargo xtask install`: the release binary, an example configuration (never over an
//! existing one) and the systemd unit, under an optional staging root.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{Workspace, run};

/// Where things go.
#[derive(clap::Args)]
pub struct Layout {
    /// Prefix of the binary: PREFIX/bin/ban-agent.
    #[arg(long, default_value = "/usr/local", value_name = "DIR")]
    prefix: PathBuf,
    /// Stage everything under this directory instead of / (for packaging and tests).
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

pub fn install(ws: &Workspace, layout: &Layout) -> anyhow::Result<()> {
    run(&mut ws.cargo(&["build", "--release", "--package", "ban-agent"]))?;
    let staged = |path: &Path| match &layout.root {
        Some(root) => root.join(path.strip_prefix("/").unwrap_or(path)),
        None => path.to_owned(),
    };
    let bindir = layout.prefix.join("bin");
    let binary = staged(&bindir.join("ban-agent"));
    copy(&ws.root.join("target/release/ban-agent"), &binary, 0o755)?;

    let etc = staged(Path::new("/etc/ban-agent"));
    fs::create_dir_all(etc.join("filter.d"))
        .with_context(|| format!("cannot create {}", etc.display()))?;
    let config = etc.join("ban-agent.toml");
    if config.exists() {
        println!("kept {} (it exists)", config.display());
    } else {
        // 0600: hook URLs and commands may carry secrets.
        copy(&ws.root.join("docs/ban-agent.example.toml"), &config, 0o600)?;
    }

    let unit_text = fs::read_to_string(ws.root.join("dist/ban-agent.service"))
        .context("cannot read dist/ban-agent.service")?
        .replace("@BINDIR@", &bindir.display().to_string());
    let unit = staged(Path::new("/etc/systemd/system/ban-agent.service"));
    write_bytes(&unit, unit_text.as_bytes(), 0o644)?;

    let systemd_runs = layout.root.is_none() && Path::new("/run/systemd/system").is_dir();
    if systemd_runs {
        run(Command::new("systemctl").arg("daemon-reload"))?;
    }
    println!(
        "\nInstalled. Next:\n  1. edit {} (interfaces, logpath, ports)\n  2. {}\n  3. {} status",
        config.display(),
        if systemd_runs {
            "systemctl enable --now ban-agent".to_owned()
        } else {
            format!(
                "{} run --config /etc/ban-agent/ban-agent.toml   (no systemd here: run it \
                 under your supervisor)",
                bindir.join("ban-agent").display()
            )
        },
        bindir.join("ban-agent").display()
    );
    Ok(())
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    let bytes = fs::read(from).with_context(|| format!("cannot read {}", from.display()))?;
    write_bytes(to, &bytes, mode)
}

/// Writes through a temporary file and a rename, so that replacing a running binary
/// leaves the old one intact for the process that runs it.
fn write_bytes(to: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let dir = to
        .parent()
        .with_context(|| format!("{} has no folder", to.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let temporary = to.with_extension("new");
    fs::write(&temporary, bytes)
        .and_then(|()| fs::set_permissions(&temporary, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&temporary, to))
        .with_context(|| format!("cannot install {}: are you root?", to.display()))?;
    println!("installed {}", to.display());
    Ok(())
}
