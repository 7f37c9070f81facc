//! Errors of the datapath, each saying what failed, on what, and what to do.

use std::{io, path::PathBuf};

use thiserror::Error;

/// What can go wrong between the agent and the kernel.
#[derive(Debug, Error)]
pub enum DatapathError {
    /// bpffs is not mounted and could not be mounted.
    #[error(
        "cannot mount bpffs at {path}: {source}; mount it yourself with \
         `mount -t bpf bpf {path}` (needs root or CAP_SYS_ADMIN)"
    )]
    MountBpffs {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The pin directory is not on a bpffs mount.
    #[error(
        "pin directory {path} is not on a bpffs mount; use a directory under /sys/fs/bpf \
         (under `ip netns exec` bpffs is hidden: enter the namespace with `nsenter --net=...`)"
    )]
    NotBpffs { path: PathBuf },

    /// A filesystem operation on the pin directory failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A map pinned by an earlier run has another shape than this version expects.
    #[error(
        "the pinned map {path} was made by another version or with another capacity \
         ({detail}); lift every ban and remove the pins with `ban-agent datapath detach \
         --pin-dir {pin_dir}`, or set the capacity it was made with"
    )]
    IncompatiblePin {
        path: PathBuf,
        pin_dir: PathBuf,
        detail: String,
    },

    /// Loading the eBPF object failed.
    #[error("cannot load the XDP program: {source}")]
    Load {
        #[source]
        source: Box<aya::EbpfError>,
    },

    /// The kernel refused the program or an operation on it.
    #[error(
        "cannot {op} the XDP program: {source}; run as root (or with CAP_BPF, \
             CAP_NET_ADMIN and CAP_PERFMON) on Linux >= 5.15 with BTF"
    )]
    Program {
        op: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    /// Attaching to an interface failed.
    #[error(
        "cannot attach the {hook} hook to interface {interface}: {}; `mode = \"auto\"` picks \
         the hook this interface takes (tc where native XDP is refused)",
        crate::cause_text(source.as_ref())
    )]
    Attach {
        interface: String,
        hook: &'static str,
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    /// The interface does not exist in this network namespace.
    #[error(
        "there is no interface {interface} in this network namespace: nothing was attached \
         nor pinned; see `ip -br link` for the names (in another namespace, run the agent \
         there with `nsenter --net=...`)"
    )]
    NoInterface { interface: String },

    /// An interface name with a NUL byte.
    #[error("{interface:?} is not a valid interface name: see `ip -br link` for the names")]
    InterfaceName { interface: String },

    /// A map or link this process holds could not be pinned again.
    #[error("cannot pin {path} again: {detail}")]
    Repin { path: PathBuf, detail: String },

    /// A pinned link could not be created, opened or removed.
    #[error("cannot {op} the XDP link pinned at {path}: {detail}")]
    Link {
        op: &'static str,
        path: PathBuf,
        detail: String,
    },

    /// No agent has pinned its maps there.
    #[error(
        "no ban-agent datapath is pinned at {path}: start the agent first (`ban-agent \
         datapath attach` or `ban-agent run`), or pass the --pin-dir it uses"
    )]
    NotPinned { path: PathBuf },

    /// A map or program the agent needs is missing from the object, or of another type.
    #[error(
        "no {kind} named {name} in the XDP object: the agent and its program do not match; \
         rebuild with `cargo xtask build`"
    )]
    MissingObject {
        kind: &'static str,
        name: &'static str,
    },

    /// A ban map is full.
    #[error(
        "the {map} map is full ({capacity} entries): the ban was not added; lift bans with \
         `ban-agent unban`, ban whole prefixes instead of addresses (ban_prefix_v4/v6), \
         or raise the capacity"
    )]
    MapFull { map: &'static str, capacity: u32 },

    /// Another map operation failed.
    #[error("cannot {op} in map {map}: {source}")]
    Map {
        op: &'static str,
        map: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },

    /// A jail index outside `0..MAX_JAILS`.
    #[error("jail index {jail} is out of range: at most {max} jails are supported", max = ban_common::MAX_JAILS)]
    JailOutOfRange { jail: u32 },
}

impl DatapathError {
    pub(crate) fn map(op: &'static str, map: &'static str, source: aya::maps::MapError) -> Self {
        Self::Map {
            op,
            map,
            source: Box::new(source),
        }
    }

    pub(crate) fn program(op: &'static str, source: aya::programs::ProgramError) -> Self {
        Self::Program {
            op,
            source: Box::new(source),
        }
    }
}
