//! The daemon's end of the control socket: one JSON request per line, one reply per line.
//!
//! The socket is made mode 0600 (root's only), or 0660 with the configured `socket_group`,
//! and every connection's peer is checked as well (`SO_PEERCRED`, and `SO_PEERGROUPS` for
//! its supplementary groups), so a socket whose mode was loosened still refuses others.

use std::{
    io::ErrorKind,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
};

use thiserror::Error;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};
use tracing::{debug, warn};

use super::protocol::{self, MAX_LINE, Reply, Request};

/// A request on its way to the agent, with where to send the reply.
pub struct Call {
    pub request: Request,
    pub reply: oneshot::Sender<Reply>,
}

#[derive(Debug, Error)]
pub enum ServerError {
    #[error(
        "another ban-agent daemon answers on {}: stop it first (`ban-agent stop`), or give \
         this one another `socket` in the configuration",
        path.display()
    )]
    AlreadyRunning { path: PathBuf },
    #[error("cannot {op} the control socket {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Who may use the socket besides root: the daemon's own user, and members of a group.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    pub owner: libc::uid_t,
    pub group: Option<libc::gid_t>,
}

impl Access {
    /// The daemon's user, and `group` when the configuration names one.
    pub fn new(group: Option<libc::gid_t>) -> Self {
        // SAFETY: geteuid has no preconditions.
        let owner = unsafe { libc::geteuid() };
        Self { owner, group }
    }

    fn admits(&self, uid: libc::uid_t, groups: &[libc::gid_t]) -> bool {
        uid == 0 || uid == self.owner || self.group.is_some_and(|group| groups.contains(&group))
    }
}

/// Binds the control socket at `path`, replacing a stale one left by a dead daemon; the
/// socket is root's alone, or its group's too with `access.group`.
pub fn bind(path: &Path, access: Access) -> Result<UnixListener, ServerError> {
    let io = |op, source| ServerError::Io {
        op,
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::AlreadyRunning {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(|e| io("remove the stale", e))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create the folder of", e))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| io("bind", e))?;
    let mode = match access.group {
        Some(group) => {
            std::os::unix::fs::chown(path, None, Some(group))
                .map_err(|e| io("give socket_group", e))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| io("restrict", e))?;
    Ok(listener)
}

/// How long connections still open at shutdown get to write the replies already decided.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Serves connections, their requests going to `calls`, until `shutdown` changes; then
/// stops accepting and lets open connections finish, for up to [`DRAIN`], so that the
/// reply to `stop` reaches its client before the daemon exits.
pub async fn serve(
    listener: UnixListener,
    calls: mpsc::Sender<Call>,
    mut shutdown: watch::Receiver<bool>,
    access: Access,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let calls = calls.clone();
                    connections.spawn(async move {
                        if let Err(e) = connection(stream, access, calls).await {
                            debug!("control connection: {e}");
                        }
                    });
                }
                Err(e) => {
                    warn!("control socket: cannot accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            // Finished connections are let go of as they end.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN, drained).await.is_err() {
        debug!("control connections still open at shutdown are closed");
    }
}

async fn connection(
    stream: UnixStream,
    access: Access,
    calls: mpsc::Sender<Call>,
) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    let uid = peer.uid();
    let mut groups = peer_groups(&stream)?;
    groups.push(peer.gid());
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    if !access.admits(uid, &groups) {
        // Read the request first, so that the client is not cut off while writing it.
        let _request = (&mut lines)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await;
        let reply = Reply::Error {
            message: format!(
                "permission denied: user id {uid} may not control ban-agent; run the command \
                 as root (e.g. with sudo), or as a member of the configuration's socket_group"
            ),
        };
        warn!(uid, "control request refused: not root");
        return write.write_all(protocol::encode(&reply).as_bytes()).await;
    }
    loop {
        line.clear();
        let n = (&mut lines)
            .take(MAX_LINE as u64 + 1)
            .read_line(&mut line)
            .await?;
        if n == 0 {
            return Ok(());
        }
        let reply = match protocol::decode::<Request>(line.trim_end()) {
            Ok(request) => ask(&calls, request).await,
            Err(e) => Reply::Error {
                message: e.to_string(),
            },
        };
        write.write_all(protocol::encode(&reply).as_bytes()).await?;
        if n > MAX_LINE {
            return Ok(());
        }
    }
}

async fn ask(calls: &mpsc::Sender<Call>, request: Request) -> Reply {
    let (reply, answer) = oneshot::channel();
    let stopping = || Reply::Error {
        message: "the daemon is stopping".to_owned(),
    };
    if calls.send(Call { request, reply }).await.is_err() {
        return stopping();
    }
    answer.await.unwrap_or_else(|_| stopping())
}

/// The supplementary groups of the process at the other end (`SO_PEERGROUPS`, Linux 4.13),
/// which `SO_PEERCRED` leaves out.
fn peer_groups(stream: &UnixStream) -> std::io::Result<Vec<libc::gid_t>> {
    use std::os::fd::AsRawFd as _;
    // NGROUPS_MAX is 65536; a first call with room for 64 says how many there are.
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = libc::socklen_t::try_from(std::mem::size_of_val(groups.as_slice()))
            .map_err(|_| std::io::Error::other("too many groups"))?;
        // SAFETY: a valid socket, and a buffer of `len` bytes the kernel writes into.
        let rc = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ERANGE) || count <= groups.len() {
            return Err(error);
        }
        groups.resize(count, 0);
    }
}

/// Removes the socket file if it is still ours (at shutdown).
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => warn!("cannot remove {}: {e}", path.display()),
    }
}
