//! The CLI's end of the control socket.

use std::{
    io::{BufRead as _, BufReader, ErrorKind, Read as _, Write as _},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use super::protocol::{self, MAX_REPLY, ProtocolError, Reply, Request};
use crate::config::DEFAULT_PATH;

/// How long a reply may take (a reload of a large configuration included).
const TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Error)]
pub enum ClientError {
    #[error(
        "the ban-agent daemon is not running (nothing listens on {}): start it with \
         `systemctl start ban-agent` or `ban-agent run --config {DEFAULT_PATH}`, or point \
         --socket at the socket of the one that runs",
        path.display()
    )]
    NotRunning { path: PathBuf },
    #[error(
        "permission denied on {}: the control socket is root's; run this command as root \
         (e.g. with sudo)",
        path.display()
    )]
    PermissionDenied { path: PathBuf },
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the daemon's reply: {0}")]
    Protocol(#[from] ProtocolError),
    #[error(
        "the daemon closed the connection without a reply; see its log (journalctl -u ban-agent)"
    )]
    NoReply,
}

/// Sends one request to the daemon listening on `socket` and returns its reply.
pub fn call(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    let path = socket.to_owned();
    let io = |source: std::io::Error| ClientError::Io {
        path: path.clone(),
        source,
    };
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
            ClientError::NotRunning { path: path.clone() }
        }
        ErrorKind::PermissionDenied => ClientError::PermissionDenied { path: path.clone() },
        _ => io(e),
    })?;
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    // A daemon that refuses the caller replies and closes at once: the reply is still
    // there to read even if the request could not be written whole.
    if let Err(e) = (&stream).write_all(protocol::encode(request).as_bytes())
        && e.kind() != ErrorKind::BrokenPipe
    {
        return Err(io(e));
    }
    let mut line = String::new();
    let mut reader = BufReader::new(&stream).take(MAX_REPLY as u64 + 1);
    reader.read_line(&mut line).map_err(io)?;
    if line.is_empty() {
        return Err(ClientError::NoReply);
    }
    Ok(protocol::decode_reply(line.trim_end())?)
}
