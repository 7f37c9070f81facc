//! Makes sure the pin directory exists on a bpffs mount, mounting bpffs at `/sys/fs/bpf`
//! when a fresh machine has none there.

use std::{ffi::CString, fs, io, os::unix::ffi::OsStrExt as _, path::Path};

use super::DatapathError;

const BPFFS_ROOT: &str = "/sys/fs/bpf";
/// `BPF_FS_MAGIC` from `linux/magic.h`.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub(super) fn prepare_pin_dir(pin_dir: &Path) -> Result<(), DatapathError> {
    let parent = pin_dir.parent().unwrap_or(Path::new("/"));
    if !is_bpffs(parent) && parent.starts_with(BPFFS_ROOT) {
        mount_bpffs(Path::new(BPFFS_ROOT))?;
    }
    if !is_bpffs(parent) {
        return Err(DatapathError::NotBpffs {
            path: pin_dir.to_owned(),
        });
    }
    fs::create_dir_all(pin_dir).map_err(|source| DatapathError::Io {
        op: "create directory",
        path: pin_dir.to_owned(),
        source,
    })?;
    if invisible_to_parent(pin_dir) {
        tracing::warn!(
            pin_dir = %pin_dir.display(),
            "the pins are on a bpffs of this process's own mount namespace (as under `ip \
             netns exec`): they vanish when it ends, with every link and ban in them. Enter \
             the network namespace with `nsenter --net=/run/netns/NAME` instead, which keeps \
             the host's /sys/fs/bpf"
        );
    }
    Ok(())
}

/// The bpffs instance the pin directory is made on: the unique id of its parent's mount
/// (never reused, Linux 6.8 and later), else its device; `None` when the parent is not
/// bpffs (unmounted). A pin directory gone while this is still the same was removed on
/// purpose (`ban-agent datapath detach`, `rm`); one gone with its instance was lost with
/// an unmount, and is made again once bpffs is back. (A new mount may get the old one's
/// device number, and its root is always inode 1: only the unique mount id tells them
/// apart at once; the daemon also remembers an unmount it saw.)
pub(super) fn instance(pin_dir: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let parent = pin_dir.parent().unwrap_or(Path::new("/"));
    if !is_bpffs(parent) {
        return None;
    }
    unique_mount_id(parent).or_else(|| fs::metadata(parent).ok().map(|meta| meta.dev()))
}

fn unique_mount_id(path: &Path) -> Option<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statx is plain old data; zeroed is a valid initial value.
    let mut stat: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a writable statx.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            libc::STATX_MNT_ID_UNIQUE,
            &mut stat,
        )
    };
    (rc == 0 && stat.stx_mask & libc::STATX_MNT_ID_UNIQUE != 0).then_some(stat.stx_mnt_id)
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs is plain old data; zeroed is a valid initial value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a writable statfs.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut stat) };
    rc == 0 && stat.f_type as i64 == BPF_FS_MAGIC
}

fn mount_bpffs(target: &Path) -> Result<(), DatapathError> {
    let error = |source| DatapathError::MountBpffs {
        path: target.to_owned(),
        source,
    };
    fs::create_dir_all(target).map_err(error)?;
    let c_target = CString::new(target.as_os_str().as_bytes())
        .map_err(|e| error(io::Error::new(io::ErrorKind::InvalidInput, e)))?;
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c_target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(error(io::Error::last_os_error()));
    }
    tracing::info!(path = %target.display(), "mounted bpffs");
    Ok(())
}

/// Whether the process that started this one cannot see `pin_dir`: it runs in a mount
/// namespace of its own (as under `ip netns exec`, which mounts a fresh /sys), where a
/// bpffs and its pins die with the namespace.
fn invisible_to_parent(pin_dir: &Path) -> bool {
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    let own = fs::read_link("/proc/self/ns/mnt");
    let theirs = fs::read_link(format!("/proc/{parent}/ns/mnt"));
    let (Ok(own), Ok(theirs)) = (own, theirs) else {
        return false;
    };
    if own == theirs {
        return false;
    }
    let relative = pin_dir.strip_prefix("/").unwrap_or(pin_dir);
    !Path::new(&format!("/proc/{parent}/root"))
        .join(relative)
        .exists()
}
