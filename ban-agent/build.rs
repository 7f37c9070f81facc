//! Builds the XDP program (`ban-ebpf`) with the pinned nightly and bpf-linker, as aya's
//! template does, so that `include_bytes_aligned!` can embed it in the agent.
//! The toolchain comes from `[workspace.metadata.ebpf]`; `cargo xtask setup` installs it.

use std::{env, path::PathBuf, process::Command};

use anyhow::{Context as _, anyhow, bail};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata failed")?;
    let toolchain = metadata.workspace_metadata["ebpf"]["toolchain"]
        .as_str()
        .ok_or_else(|| anyhow!("[workspace.metadata.ebpf] toolchain is missing in Cargo.toml"))?
        .to_owned();
    let workspace = metadata.workspace_root.clone().into_std_path_buf();
    put_tools_on_path(&workspace)?;
    check_toolchain(&toolchain)?;

    let ebpf = metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == "ban-ebpf")
        .ok_or_else(|| anyhow!("package ban-ebpf not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    let package = aya_build::Package {
        name: ebpf.name.as_str(),
        root_dir: root_dir.as_str(),
        ..Default::default()
    };
    aya_build::build_ebpf([package], Toolchain::Custom(&toolchain))
}

/// bpf-linker lives in the project's tools directory (`BAN_AGENT_TOOLS`, default
/// `.tools/` in the workspace), not on the user's PATH.
fn put_tools_on_path(workspace: &std::path::Path) -> anyhow::Result<()> {
    println!("cargo::rerun-if-env-changed=BAN_AGENT_TOOLS");
    let tools = env::var_os("BAN_AGENT_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join(".tools"));
    let bin = tools.join("bin");
    let linker = bin.join("bpf-linker");
    if !linker.exists() {
        bail!(
            "bpf-linker not found at {}: run `cargo xtask setup` once (it builds bpf-linker \
             against the pinned nightly's LLVM), then build again",
            linker.display()
        );
    }
    println!("cargo::rerun-if-changed={}", linker.display());
    let path = env::var_os("PATH").unwrap_or_default();
    let joined = env::join_paths(std::iter::once(bin).chain(env::split_paths(&path)))
        .context("PATH contains an invalid entry")?;
    // SAFETY: build scripts are single-threaded at this point.
    unsafe { env::set_var("PATH", joined) };
    Ok(())
}

fn check_toolchain(toolchain: &str) -> anyhow::Result<()> {
    let status = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--version"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output();
    match status {
        Ok(output) if output.status.success() => Ok(()),
        _ => bail!(
            "the eBPF toolchain {toolchain} is not installed: run `cargo xtask setup`, or \
             `rustup toolchain install {toolchain} --component rust-src`"
        ),
    }
}
