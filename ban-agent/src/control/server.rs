//! The daemon's end of the control socket: one JSON request per line, one reply per line.
//!
//! The socket is made mode 0600 (root's only), and every connection's peer is checked
//! as well (`SO_PEERCRED`), so a socket whose mode was loosened still refuses other users.

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

/// Binds the control socket at `path`, replacing a stale one left by a dead daemon.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
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
) {
    // SAFETY: geteuid has no preconditions.
    let owner = unsafe { libc::geteuid() };
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let calls = calls.clone();
                    connections.spawn(async move {
                        if let Err(e) = connection(stream, owner, calls).await {
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
    owner: libc::uid_t,
    calls: mpsc::Sender<Call>,
) -> std::io::Result<()> {
    let uid = stream.peer_cred()?.uid();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut line = String::new();
    if uid != 0 && uid != owner {
        // Read the request first, so that the client is not cut off while writing it.
        let _request = (&mut lines)
            .take(MAX_LINE as u64)
            .read_line(&mut line)
            .await;
        let reply = Reply::Error {
            message: format!(
                "permission denied: user id {uid} may not control ban-agent; run the command \
                 as root (e.g. with sudo)"
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

/// Removes the socket file if it is still ours (at shutdown).
pub fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => warn!("cannot remove {}: {e}", path.display()),
    }
}
