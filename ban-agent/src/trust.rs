//! Who may write what the agent trusts. The configuration, filter files and the state
//! decide whom the agent bans and spares, so a file (or its folder) that another user can
//! write is refused, as sshd's StrictModes refuses an `authorized_keys` others can write.
//!
//! Trusted: owned by root or by the agent's own user, and writable by no one else: not by
//! others, and by a group only when it is root's group or the agent's own. A folder with the
//! sticky bit (as /tmp) may be writable by all: others cannot replace what they do not own.

use std::{
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// A file or folder the agent will not trust, and why.
#[derive(Debug, Error)]
pub enum TrustError {
    #[error(
        "refusing {shown}: it is {why} (owner {uid}, group {gid}, mode {mode:04o}), and \
         whoever can write it decides whom ban-agent bans or spares; make it root's alone, \
         e.g. `chown root: {shown} && chmod go-w {shown}`",
        shown = path.display()
    )]
    Untrusted {
        path: PathBuf,
        why: Loose,
        uid: u32,
        gid: u32,
        mode: u32,
    },
    #[error("cannot check who may write {}: {source}", path.display())]
    Stat {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a file is open to others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loose {
    /// Owned by another user than root and the agent's.
    ForeignOwner,
    /// Writable by every user.
    WorldWritable,
    /// Writable by a group other than root's and the agent's.
    GroupWritable,
}

impl std::fmt::Display for Loose {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ForeignOwner => "owned by another user",
            Self::WorldWritable => "writable by every user",
            Self::GroupWritable => "writable by a group other than root's",
        })
    }
}

/// Who the agent runs as.
#[derive(Clone, Copy, Debug)]
pub struct Me {
    pub uid: u32,
    pub gid: u32,
}

impl Me {
    pub fn current() -> Self {
        // SAFETY: geteuid and getegid have no preconditions.
        unsafe {
            Self {
                uid: libc::geteuid(),
                gid: libc::getegid(),
            }
        }
    }
}

/// The id of the group called `name`, from the group database (/etc/group, NSS).
pub fn group_named(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a C struct of integers and pointers, for which all zeroes is a valid value.
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    let mut buffer = vec![0u8; 16 * 1024];
    // SAFETY: valid name, a group record and a buffer of the given length for its strings.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut group,
            buffer.as_mut_ptr().cast(),
            buffer.len(),
            &mut found,
        )
    };
    (rc == 0 && !found.is_null()).then_some(group.gr_gid)
}

/// Why a file of this owner, group and mode is not to be trusted by `me`; `None` when it is.
pub fn looseness(uid: u32, gid: u32, mode: u32, is_dir: bool, me: Me) -> Option<Loose> {
    const STICKY: u32 = 0o1000;
    if uid != 0 && uid != me.uid {
        return Some(Loose::ForeignOwner);
    }
    if is_dir && mode & STICKY != 0 {
        return None;
    }
    if mode & 0o002 != 0 {
        return Some(Loose::WorldWritable);
    }
    if mode & 0o020 != 0 && gid != 0 && gid != me.gid {
        return Some(Loose::GroupWritable);
    }
    None
}

/// Checks `path` and the folder that holds it. A missing file is not an error here: the
/// caller reports it as it reads.
pub fn check_file(path: &Path) -> Result<(), TrustError> {
    let me = Me::current();
    check_one(path, me)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    check_one(dir, me)
}

fn check_one(path: &Path, me: Me) -> Result<(), TrustError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(TrustError::Stat {
                path: path.to_owned(),
                source,
            });
        }
    };
    match looseness(meta.uid(), meta.gid(), meta.mode(), meta.is_dir(), me) {
        None => Ok(()),
        Some(why) => Err(TrustError::Untrusted {
            path: path.to_owned(),
            why,
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    const ROOT: Me = Me { uid: 0, gid: 0 };

    #[test]
    fn only_root_or_the_agent_may_write() {
        let agent = Me { uid: 990, gid: 990 };
        assert_eq!(looseness(0, 0, 0o644, false, ROOT), None);
        assert_eq!(looseness(0, 0, 0o664, false, ROOT), None, "root's group");
        assert_eq!(looseness(990, 990, 0o664, false, agent), None);
        assert_eq!(
            looseness(0, 0, 0o666, false, ROOT),
            Some(Loose::WorldWritable)
        );
        assert_eq!(
            looseness(0, 100, 0o664, false, ROOT),
            Some(Loose::GroupWritable)
        );
        assert_eq!(looseness(0, 100, 0o644, false, ROOT), None);
        assert_eq!(
            looseness(1000, 0, 0o600, false, ROOT),
            Some(Loose::ForeignOwner)
        );
        assert_eq!(looseness(0, 0, 0o1777, true, ROOT), None, "sticky folder");
        assert_eq!(
            looseness(0, 0, 0o777, true, ROOT),
            Some(Loose::WorldWritable)
        );
    }

    // Without the check in `check_file`, the world-writable file passes.
    #[test]
    fn a_world_writable_file_or_folder_is_refused_with_what_to_do() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("ban-agent.toml");
        std::fs::write(&file, "").expect("write");
        check_file(&file).expect("a private file in a private folder");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        let message = check_file(&file).expect_err("world-writable").to_string();
        assert!(
            message.contains("writable by every user") && message.contains("chmod go-w"),
            "{message}"
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let message = check_file(&file).expect_err("its folder").to_string();
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        check_file(&dir.path().join("absent.toml")).expect_err("the folder still counts");
    }
}
