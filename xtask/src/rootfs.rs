//! Debian root file systems for the container images the xtasks make (the demo's app,
//! the agent's own image). No image registry is reachable from these machines, so an
//! image starts from a root file system built here with `mmdebstrap`, from the same
//! Debian release as the host: the app's wheels, fetched by the host's pip, then match
//! the image's python.

use std::{fs, path::Path, process::Command};

use anyhow::{Context as _, bail};

use crate::run;

/// The host's Debian release (`VERSION_CODENAME` of /etc/os-release), e.g. "bookworm".
pub fn host_suite() -> anyhow::Result<String> {
    let text = fs::read_to_string("/etc/os-release").context("cannot read /etc/os-release")?;
    text.lines()
        .find_map(|line| line.strip_prefix("VERSION_CODENAME="))
        .map(|name| name.trim_matches('"').to_owned())
        .filter(|name| !name.is_empty())
        .context(
            "/etc/os-release has no VERSION_CODENAME: the container images are built from \
             the host's Debian release, and this host does not name one",
        )
}

/// Builds a minimal Debian (`essential` variant: no apt, no init) with `include` (package
/// names or paths of .deb files) into `target`, a folder or a tarball (by its name),
/// replacing what was there.
pub fn debian(target: &Path, include: &[&str]) -> anyhow::Result<()> {
    if target.is_dir() {
        fs::remove_dir_all(target)
            .with_context(|| format!("cannot remove {}", target.display()))?;
    } else if target.exists() {
        fs::remove_file(target).with_context(|| format!("cannot remove {}", target.display()))?;
    }
    if let Some(parent) = target.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let suite = host_suite()?;
    let mut command = Command::new("mmdebstrap");
    command.args(["--quiet", "--mode=root", "--variant=essential"]);
    for package in include {
        command.arg(format!("--include={package}"));
    }
    if include.iter().any(|package| package.contains('/')) {
        // apt hands a .deb's path to dpkg inside the chroot: this hook of mmdebstrap's
        // makes it visible there (and removes it after).
        command.arg("--hook-dir=/usr/share/mmdebstrap/hooks/file-mirror-automount");
    }
    // Documentation and translations are of no use in an image.
    for folder in ["doc", "man", "info", "locale"] {
        command.arg(format!("--dpkgopt=path-exclude=/usr/share/{folder}/*"));
    }
    command.arg("--dpkgopt=path-include=/usr/share/doc/*/copyright");
    command.arg(&suite).arg(target);
    if let Err(error) = run(&mut command) {
        bail!(
            "mmdebstrap could not build a Debian {suite} root file system in {}: {error:#} \
             (it needs deb.debian.org; run as root)",
            target.display()
        );
    }
    Ok(())
}
