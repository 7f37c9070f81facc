//! The engine (Redis ≥ 6.2 or Valkey) as the fleet uses it, through the `redis` crate:
//! failures counted fleet-wide by a server-side script in a bucketed sliding window per
//! jail and address, each ban created once (`SET NX` with its expiry) and appended to a
//! stream that every agent reads from the last entry it applied.
//!
//! Keys, under the configured prefix: `PREFIX:fail:JAIL:TARGET` (hash of failure
//! buckets, expiring after findtime), `PREFIX:ban:JAIL:TARGET` (the ban, expiring with
//! it; its value is the host that created it), `PREFIX:bans` (the stream).

use std::time::Duration;

use ipnet::IpNet;
use redis::aio::ConnectionManager;

/// The counting script (Lua, run by the engine).
const COUNT: &str = include_str!("count.lua");
/// Width of a failure bucket: the window slides by this much.
const BUCKET_MS: i64 = 1000;

/// What can go wrong with the engine.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(
        "the fleet's engine at {url}: {source} (is it running, and are the URL, user and password right?)"
    )]
    Connect {
        url: String,
        source: redis::RedisError,
    },
    #[error("the fleet's engine: {0}")]
    Engine(#[from] redis::RedisError),
    #[error("the fleet's engine answered {what}: {detail}")]
    Reply { what: &'static str, detail: String },
}

/// New failures of one address in one jail, with the jail's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delta {
    pub jail: String,
    pub target: IpNet,
    pub failures: u32,
    pub maxretry: u32,
    pub findtime: Duration,
    /// `None`: a permanent ban.
    pub bantime: Option<Duration>,
}

/// What the fleet made of a [`Delta`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Fleet-wide failures in the window, below maxretry.
    Below(u32),
    /// This batch reached maxretry: the ban is created and in the stream (its id).
    Banned { failures: u32, id: String },
    /// Already banned (by this host or another).
    AlreadyBanned,
}

/// A ban read from the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetBan {
    /// The stream entry's id, to resume after.
    pub id: String,
    pub jail: String,
    pub target: IpNet,
    /// Milliseconds since the epoch; `None`: permanent.
    pub expires: Option<i64>,
    /// The host that created it.
    pub host: String,
    pub failures: u32,
}

/// A connection to the engine (reconnecting by itself), with the script loaded.
#[derive(Clone)]
pub struct Engine {
    conn: ConnectionManager,
    script: redis::Script,
    prefix: String,
    host: String,
}

impl Engine {
    /// Connects to `url` (`redis://[user:password@]host:port/db`, `redis+unix:///path`),
    /// as `host`, with keys under `prefix`.
    pub async fn connect(url: &str, prefix: &str, host: &str) -> Result<Self, FleetError> {
        let connect = |source| FleetError::Connect {
            url: redact(url),
            source,
        };
        let client = redis::Client::open(url).map_err(connect)?;
        let mut conn = client.get_connection_manager().await.map_err(connect)?;
        let script = redis::Script::new(COUNT);
        script.prepare_invoke().load_async(&mut conn).await?;
        Ok(Self {
            conn,
            script,
            prefix: prefix.to_owned(),
            host: host.to_owned(),
        })
    }

    fn key(&self, kind: &str, jail: &str, target: &IpNet) -> String {
        format!("{}:{kind}:{jail}:{target}", self.prefix)
    }

    fn stream(&self) -> String {
        format!("{}:bans", self.prefix)
    }

    /// Counts a batch of deltas in one pipelined round trip, at `now` (ms).
    pub async fn report(&mut self, now: i64, deltas: &[Delta]) -> Result<Vec<Counted>, FleetError> {
        if deltas.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for delta in deltas {
            let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            pipe.cmd("EVALSHA")
                .arg(self.script.get_hash())
                .arg(3)
                .arg(self.key("fail", &delta.jail, &delta.target))
                .arg(self.key("ban", &delta.jail, &delta.target))
                .arg(self.stream())
                .arg(now)
                .arg(BUCKET_MS)
                .arg(ms(delta.findtime))
                .arg(delta.maxretry)
                .arg(delta.failures)
                .arg(delta.bantime.map_or(0, ms))
                .arg(&self.host)
                .arg(delta.target.to_string())
                .arg(&delta.jail);
        }
        let replies: Vec<Vec<redis::Value>> = match pipe.query_async(&mut self.conn).await {
            Ok(replies) => replies,
            // The engine restarted and lost the script: load it again, once.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script
                    .prepare_invoke()
                    .load_async(&mut self.conn)
                    .await?;
                pipe.query_async(&mut self.conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        replies.iter().map(|reply| counted(reply)).collect()
    }

    /// Bans appended to the stream after `after` (`0` for all), waiting up to `block` for
    /// the first one.
    pub async fn bans_after(
        &mut self,
        after: &str,
        block: Duration,
    ) -> Result<Vec<FleetBan>, FleetError> {
        let options = redis::streams::StreamReadOptions::default()
            .count(1000)
            .block(usize::try_from(block.as_millis()).unwrap_or(usize::MAX));
        let stream = self.stream();
        let reply: Option<redis::streams::StreamReadReply> =
            redis::AsyncCommands::xread_options(&mut self.conn, &[stream], &[after], &options)
                .await?;
        let mut bans = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for entry in key.ids {
                if let Some(ban) = fleet_ban(&entry) {
                    bans.push(ban);
                }
            }
        }
        Ok(bans)
    }
}

/// The script's reply as a [`Counted`].
fn counted(reply: &[redis::Value]) -> Result<Counted, FleetError> {
    let int = |value: Option<&redis::Value>| match value {
        Some(redis::Value::Int(n)) => u32::try_from(*n).ok(),
        _ => None,
    };
    let bad = || FleetError::Reply {
        what: "an unexpected count",
        detail: format!("{reply:?}"),
    };
    match int(reply.first()).ok_or_else(bad)? {
        0 => Ok(Counted::Below(int(reply.get(1)).ok_or_else(bad)?)),
        1 => Ok(Counted::AlreadyBanned),
        2 => {
            let id = match reply.get(2) {
                Some(redis::Value::BulkString(bytes)) => {
                    String::from_utf8_lossy(bytes).into_owned()
                }
                Some(redis::Value::SimpleString(text)) => text.clone(),
                _ => return Err(bad()),
            };
            Ok(Counted::Banned {
                failures: int(reply.get(1)).ok_or_else(bad)?,
                id,
            })
        }
        _ => Err(bad()),
    }
}

/// A stream entry as a ban; `None` for entries of another kind or malformed ones.
fn fleet_ban(entry: &redis::streams::StreamId) -> Option<FleetBan> {
    let text = |field: &str| -> Option<String> { entry.get(field) };
    if text("op")?.as_str() != "ban" {
        return None;
    }
    let target: IpNet = text("target")?.parse().ok()?;
    let expires: i64 = text("expires")?.parse().ok()?;
    Some(FleetBan {
        id: entry.id.clone(),
        jail: text("jail")?,
        target,
        expires: (expires > 0).then_some(expires),
        host: text("host")?,
        failures: text("failures")?.parse().ok()?,
    })
}

/// A URL with its password left out, for messages: the user information of
/// `redis://user:password@host`, and `pass=` in a `redis+unix://` query.
fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    };
    match url.split_once('?') {
        Some((base, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key == "pass" || key == "password" => format!("{key}=…"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", query.join("&"))
        }
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(
            redact("redis://agent:secret@10.0.0.5:6379/0"),
            "redis://…@10.0.0.5:6379/0"
        );
        assert_eq!(redact("redis://10.0.0.5"), "redis://10.0.0.5");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=secret"),
            "redis+unix:///run/redis.sock?db=1&pass=…"
        );
    }
}
