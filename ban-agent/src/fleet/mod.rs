//! Several hosts sharing failures and bans through Redis or Valkey (issue 18, being
//! built): [`engine`] is the engine side, counting a batch of failures in one pipelined
//! round trip to a server-side script that creates each ban once and appends it to a
//! stream, and reading that stream. The daemon does not use it yet.

pub mod engine;

pub use engine::{Counted, Delta, Engine, FleetBan, FleetError};
