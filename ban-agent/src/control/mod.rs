//! The daemon's control plane: the protocol spoken over its Unix socket, the daemon's
//! server and the client the CLI verbs (`status`, `ban`, `unban`, ...) use.

pub mod client;
pub mod protocol;
pub mod server;
