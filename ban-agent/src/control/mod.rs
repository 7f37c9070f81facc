//! The daemon's control plane: the protocol spoken over its Unix socket, by the daemon
//! and by the CLI verbs (`status`, `ban`, `unban`, ...).

pub mod protocol;
