//! `cargo xtask dist --image`: the agent's OCI image, from the Debian package, for the
//! Kubernetes DaemonSet (`deploy/kubernetes/`) and the Compose example (`deploy/compose/`):
//! - `target/dist/ban-agent_VERSION_ARCH.oci.tar`, an OCI archive (containerd's
//!   `ctr images import`, podman, skopeo);
//! - `target/dist/ban-agent_VERSION_ARCH.docker.tar`, the same image for `docker load`.
//!
//! Both are tagged `ban-agent:VERSION`, the name the manifests use. The image is a minimal
//! Debian of the host's release (`mmdebstrap`, no registry needed) with the package
//! installed by apt, its dependencies with it; `buildah` makes the image from that root,
//! in a storage of its own under `target/`, so the host's container storage is untouched.
//! The image is then checked: the agent it holds runs.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, ensure};

use crate::{Workspace, dist::Dist, output, rootfs};

/// What `image` made.
pub struct Image {
    pub oci: PathBuf,
    pub docker: PathBuf,
}

impl Image {
    /// Where [`image`] puts the archives.
    fn of(ws: &Workspace) -> anyhow::Result<Self> {
        let stem = crate::dist::stem(ws)?;
        let out = ws.root.join("target/dist");
        Ok(Self {
            oci: out.join(format!("{stem}.oci.tar")),
            docker: out.join(format!("{stem}.docker.tar")),
        })
    }
}

/// The agent's image for `docker load`, made (package and image) unless an archive newer
/// than the release binary is there.
pub fn docker_archive(ws: &Workspace) -> anyhow::Result<PathBuf> {
    let image = Image::of(ws)?;
    let modified = |path: &Path| fs::metadata(path).and_then(|meta| meta.modified()).ok();
    let binary = ws.root.join("target/release/ban-agent");
    match (modified(&image.docker), modified(&binary)) {
        (Some(archive), Some(binary)) if archive > binary => Ok(image.docker),
        _ => {
            let dist = crate::dist::dist(ws)?;
            Ok(self::image(ws, &dist)?.docker)
        }
    }
}

pub fn image(ws: &Workspace, dist: &Dist) -> anyhow::Result<Image> {
    let work = ws.root.join("target/dist/image");
    let rootfs = work.join("rootfs.tar");
    // mmdebstrap takes a .deb by a path with a slash, as apt does.
    let deb = dist
        .deb
        .canonicalize()
        .with_context(|| format!("cannot find {}", dist.deb.display()))?;
    // bpftool, which the package recommends: operators read the ban maps with it
    // (`kubectl exec ... -- bpftool map dump pinned ...`).
    rootfs::debian(&rootfs, &[&deb.display().to_string(), "bpftool"])?;

    // A storage of this image only: an earlier build's layers would pile up in it.
    let storage = work.join("storage");
    if storage.exists() {
        fs::remove_dir_all(&storage)
            .with_context(|| format!("cannot empty {}", storage.display()))?;
    }
    let buildah = Buildah::new(&work)?;
    let tag = format!("ban-agent:{}", dist.version);
    let container = buildah.output(&["from", "scratch"])?;
    let container = container.trim();
    let built = buildah.build(container, &rootfs, &tag, &dist.version);
    let _removed = buildah.output(&["rm", container]);
    built?;

    let image = Image::of(ws)?;
    for (transport, path) in [
        ("oci-archive", &image.oci),
        ("docker-archive", &image.docker),
    ] {
        let _stale = fs::remove_file(path);
        buildah.output(&[
            "push",
            "--quiet",
            &tag,
            &format!("{transport}:{}:{tag}", path.display()),
        ])?;
        println!("built {} ({tag})", path.display());
    }
    Ok(image)
}

/// The image's programs run, in a container of the image (chroot isolation: no runtime
/// needed): the agent's version, bpftool, and the Kubernetes configuration mounted where
/// the DaemonSet mounts its ConfigMap passes `ban-agent check`.
pub fn check(ws: &Workspace, dist: &Dist) -> anyhow::Result<Vec<String>> {
    let buildah = Buildah::new(&ws.root.join("target/dist/image"))?;
    let tag = format!("ban-agent:{}", dist.version);
    let container = buildah.output(&["from", "--pull-never", &tag])?;
    let container = container.trim();
    let run = |mount: Option<&Path>, args: &[&str]| {
        let mut all = vec!["run", "--isolation", "chroot"];
        let volume = mount.map(|dir| format!("{}:/etc/ban-agent:ro", dir.display()));
        if let Some(volume) = &volume {
            all.extend(["--volume", volume]);
        }
        all.push(container);
        all.push("--");
        all.extend(args);
        buildah.output(&all)
    };
    let checked = (|| {
        let version = run(None, &["ban-agent", "--version"])?;
        ensure!(
            version.trim() == format!("ban-agent {}", dist.version),
            "the image's `ban-agent --version` said {version:?}"
        );
        let bpftool = run(None, &["bpftool", "version"])?;
        let kubernetes = ws.root.join("deploy/kubernetes");
        let config = run(
            Some(&kubernetes),
            &[
                "ban-agent",
                "check",
                "--offline",
                "--config",
                "/etc/ban-agent/ban-agent.toml",
            ],
        )?;
        Ok(vec![
            format!(
                "{tag}: `ban-agent --version` in a container of it: {}",
                version.trim()
            ),
            format!(
                "{tag}: bpftool runs: {}",
                bpftool.lines().next().unwrap_or_default()
            ),
            format!(
                "{tag}: deploy/kubernetes/ban-agent.toml, mounted as the DaemonSet mounts it, passes `ban-agent check`: {}",
                config.trim()
            ),
        ])
    })();
    let _removed = buildah.output(&["rm", container]);
    checked
}

/// buildah with a storage of its own.
struct Buildah {
    root: PathBuf,
    runroot: PathBuf,
    /// Its blob cache goes to /var/lib/containers/cache whatever `--root` says.
    _made: crate::MadeOnHost,
}

impl Buildah {
    fn new(work: &Path) -> anyhow::Result<Self> {
        let buildah = Self {
            root: work.join("storage"),
            runroot: work.join("run"),
            _made: crate::MadeOnHost::watch(&["/var/lib/containers"]),
        };
        fs::create_dir_all(&buildah.root)
            .with_context(|| format!("cannot create {}", buildah.root.display()))?;
        Ok(buildah)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("buildah");
        command
            .arg("--root")
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot)
            // vfs: no overlay mounts left behind, whatever the file system under target/.
            .args(["--storage-driver", "vfs"])
            .args(args);
        command
    }

    fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        output(&mut self.command(args)).with_context(|| {
            format!(
                "buildah {} failed (apt-get install buildah)",
                args.join(" ")
            )
        })
    }

    /// The root file system into `container`, its configuration, committed as `tag`.
    fn build(
        &self,
        container: &str,
        rootfs: &Path,
        tag: &str,
        version: &str,
    ) -> anyhow::Result<()> {
        self.output(&["add", container, &rootfs.display().to_string(), "/"])?;
        self.output(&[
            "config",
            "--entrypoint",
            r#"["/usr/bin/ban-agent"]"#,
            "--cmd",
            r#"["run", "--config", "/etc/ban-agent/ban-agent.toml"]"#,
            "--label",
            "org.opencontainers.image.title=ban-agent",
            "--label",
            &format!("org.opencontainers.image.version={version}"),
            "--label",
            "org.opencontainers.image.description=fail2ban's job, banning in the kernel (XDP/tc)",
            "--label",
            "org.opencontainers.image.licenses=MIT OR Apache-2.0",
            container,
        ])?;
        self.output(&["commit", "--quiet", "--format", "oci", container, tag])
            .map(drop)
    }
}
