//! The engine (Redis ≥ 6.2 or Valkey) as the fleet uses it, through the `redis` crate:
//! failures counted fleet-wide by a server-side script in a bucketed sliding window per
//! jail and address, each ban created once (`SET NX` with its expiry) and appended to a
//! stream that every agent reads from the last entry it applied.
//!
//! Keys, under the configured prefix: `PREFIX:fail:JAIL:TARGET` (hash of failure
//! buckets, expiring after findtime), `PREFIX:ban:JAIL:TARGET` (the ban, expiring with
//! it; its value is the ban's entry, so that an agent that missed the stream can rebuild
//! it), `PREFIX:banned` (sorted set of the ban keys by their end), `PREFIX:bans` (the
//! stream), `PREFIX:hosts` (sorted set of the agents by their last heartbeat). Nothing
//! scans the key space: every read is of a key the agent can name.

use std::time::Duration;

use ipnet::IpNet;
use redis::aio::MultiplexedConnection;

use super::{Entry, Op, Outgoing, Unreadable};
use crate::{clock::ms, config::Endpoint};

/// The counting script (Lua, run by the engine).
const COUNT: &str = include_str!("count.lua");
/// The script that publishes a ban or an unban decided by one host.
const PUBLISH: &str = include_str!("publish.lua");
/// Width of a failure bucket: the window slides by this much.
const BUCKET_MS: i64 = 1000;
/// How long the engine may take to answer a command (a blocking read adds its wait).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

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
    #[error(
        "the Sentinels name another primary, {to}, than the one this host uses, {from} (a \
         failover): moving to it"
    )]
    Moved { from: String, to: String },
}

/// How to reach the engine.
#[derive(Clone, Debug)]
pub struct EngineAccess {
    pub endpoint: Endpoint,
    pub username: Option<String>,
    pub password: Option<String>,
    /// The CA (PEM) of the engine's certificate (`rediss://`); `None`: the system's roots.
    pub ca: Option<Vec<u8>>,
    pub prefix: String,
    /// This host.
    pub host: String,
}

impl EngineAccess {
    /// A URL (without user and password) for tests and tools.
    pub fn url(url: &str, prefix: &str, host: &str) -> Self {
        Self {
            endpoint: Endpoint::Url(url.to_owned()),
            username: None,
            password: None,
            ca: None,
            prefix: prefix.to_owned(),
            host: host.to_owned(),
        }
    }
}

/// What the engine made of one [`Outgoing`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Fleet-wide failures in the window, below maxretry.
    Below(u32),
    /// This call created the ban (or appended the unban): the stream entry's id.
    Appended { id: String },
    /// A ban was in force already (by this host or another): nothing appended.
    AlreadyBanned,
}

/// One connection to the engine, with the scripts loaded; clones share the connection
/// (commands of clones are pipelined on it).
#[derive(Clone)]
pub struct Engine {
    conn: MultiplexedConnection,
    /// Where the connection goes (the primary the Sentinels named, or the URL's server).
    addr: redis::ConnectionAddr,
    count: redis::Script,
    publish: redis::Script,
    prefix: String,
    host: String,
}

impl Engine {
    /// Whether the Sentinels now name another primary than this connection's: after a
    /// failover, the old primary, when it runs, takes writes (and loses them) until the
    /// Sentinels turn it into a replica, some 10 s later. `Ok(())` when they name this
    /// one, or when the engine is not reached through Sentinels.
    pub async fn still_primary(&self, access: &EngineAccess) -> Result<(), FleetError> {
        if !matches!(access.endpoint, Endpoint::Sentinel { .. }) {
            return Ok(());
        }
        let named = client(access).await.map_err(|source| FleetError::Connect {
            url: access.endpoint.shown(),
            source,
        })?;
        let named = named.get_connection_info().addr();
        if *named == self.addr {
            return Ok(());
        }
        Err(FleetError::Moved {
            from: self.addr.to_string(),
            to: named.to_string(),
        })
    }

    /// Connects (a blocking read on this connection waits up to `block` more than a
    /// command) and loads the scripts.
    pub async fn connect(access: &EngineAccess, block: Duration) -> Result<Self, FleetError> {
        let shown = access.endpoint.shown();
        let connect = |source| FleetError::Connect {
            url: shown.clone(),
            source,
        };
        let client = client(access).await.map_err(connect)?;
        let addr = client.get_connection_info().addr().clone();
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT + block));
        let mut conn = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(connect)?;
        let count = redis::Script::new(COUNT);
        let publish = redis::Script::new(PUBLISH);
        for script in [&count, &publish] {
            script
                .prepare_invoke()
                .load_async(&mut conn)
                .await
                .map_err(connect)?;
        }
        Ok(Self {
            conn,
            addr,
            count,
            publish,
            prefix: access.prefix.clone(),
            host: access.host.clone(),
        })
    }

    fn key(&self, kind: &str, jail: &str, target: &IpNet) -> String {
        format!("{}:{kind}:{jail}:{target}", self.prefix)
    }

    fn stream(&self) -> String {
        format!("{}:bans", self.prefix)
    }

    fn index(&self) -> String {
        format!("{}:banned", self.prefix)
    }

    /// The calls of a batch, in one pipeline: each item's script with its keys and
    /// arguments.
    fn pipeline(&self, batch: &[Outgoing], signed: &[String]) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        for (item, sig) in batch.iter().zip(signed) {
            let entry = item.entry(&self.host);
            let value = entry.value(sig);
            let expires = entry.expires().unwrap_or(0);
            match item {
                Outgoing::Failures {
                    jail,
                    target,
                    failures,
                    maxretry,
                    findtime,
                    bantime,
                    at,
                    ..
                } => {
                    pipe.cmd("EVALSHA")
                        .arg(self.count.get_hash())
                        .arg(4)
                        .arg(self.key("fail", jail, target))
                        .arg(self.key("ban", jail, target))
                        .arg(self.stream())
                        .arg(self.index())
                        .arg(*at)
                        .arg(BUCKET_MS)
                        .arg(ms(*findtime))
                        .arg(*maxretry)
                        .arg(*failures)
                        .arg(bantime.map_or(0, ms))
                        .arg(&self.host)
                        .arg(target.to_string())
                        .arg(jail)
                        .arg(expires)
                        .arg(sig)
                        .arg(value);
                }
                Outgoing::Ban { .. } | Outgoing::Unban { .. } => {
                    let force = matches!(item, Outgoing::Ban { force: true, .. });
                    let (op, px) = match entry.op {
                        Op::Ban { expires: Some(end) } => ("ban", (end - entry.at).max(1)),
                        Op::Ban { expires: None } => ("ban", 0),
                        Op::Unban => ("unban", 0),
                    };
                    pipe.cmd("EVALSHA")
                        .arg(self.publish.get_hash())
                        .arg(4)
                        .arg(self.key("ban", &entry.jail, &entry.target))
                        .arg(self.stream())
                        .arg(self.key("fail", &entry.jail, &entry.target))
                        .arg(self.index())
                        .arg(op)
                        .arg(if force { "1" } else { "0" })
                        .arg(px)
                        .arg(value)
                        .arg(&entry.jail)
                        .arg(entry.target.to_string())
                        .arg(expires)
                        .arg(entry.at)
                        .arg(&self.host)
                        .arg(entry.failures)
                        .arg(sig);
                }
            }
        }
        pipe
    }

    /// Sends a batch in one pipelined round trip: bans and unbans first (so that failures
    /// of the same address that follow find the ban), then failures. `signed` holds each
    /// item's signature ("" without a key), in the batch's order.
    pub async fn send(
        &mut self,
        batch: &[Outgoing],
        signed: &[String],
    ) -> Result<Vec<Sent>, FleetError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let pipe = self.pipeline(batch, signed);
        let replies: Vec<Vec<redis::Value>> = match pipe.query_async(&mut self.conn).await {
            Ok(replies) => replies,
            // The engine restarted and lost the scripts: load them again, once. Every call
            // is idempotent but for failures, which a NOSCRIPT reply did not count.
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                for script in [&self.count, &self.publish] {
                    script.prepare_invoke().load_async(&mut self.conn).await?;
                }
                pipe.query_async(&mut self.conn).await?
            }
            Err(e) => return Err(e.into()),
        };
        batch
            .iter()
            .zip(&replies)
            .map(|(item, reply)| sent(item, reply))
            .collect()
    }

    /// Entries appended to the stream after `after` (`0` for all), waiting up to `block`
    /// for the first one.
    pub async fn entries_after(
        &mut self,
        after: &str,
        block: Duration,
    ) -> Result<Vec<Result<Entry, Unreadable>>, FleetError> {
        let options = redis::streams::StreamReadOptions::default()
            .count(1000)
            .block(usize::try_from(block.as_millis()).unwrap_or(usize::MAX));
        let stream = self.stream();
        let reply: Option<redis::streams::StreamReadReply> =
            redis::AsyncCommands::xread_options(&mut self.conn, &[stream], &[after], &options)
                .await?;
        let mut entries = Vec::new();
        for key in reply.map(|r| r.keys).unwrap_or_default() {
            for item in key.ids {
                entries.push(Entry::read(&item));
            }
        }
        Ok(entries)
    }

    /// The ids of the stream's first and last entries (`None`: empty or absent).
    pub async fn ends(&mut self) -> Result<(Option<String>, Option<String>), FleetError> {
        let stream = self.stream();
        let first: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrange_count(&mut self.conn, &stream, "-", "+", 1).await?;
        let last: redis::streams::StreamRangeReply =
            redis::AsyncCommands::xrevrange_count(&mut self.conn, &stream, "+", "-", 1).await?;
        let id =
            |reply: redis::streams::StreamRangeReply| reply.ids.into_iter().next().map(|e| e.id);
        Ok((id(first), id(last)))
    }

    /// Every ban in force in the fleet, from the ban keys (for an agent whose place in
    /// the stream was trimmed away), at `now` (ms).
    pub async fn live_bans(
        &mut self,
        now: i64,
    ) -> Result<Vec<Result<Entry, Unreadable>>, FleetError> {
        let index = self.index();
        let (keys,): (Vec<String>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&index)
            .arg("-inf")
            .arg(now)
            .ignore()
            .cmd("ZRANGE")
            .arg(&index)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn)
            .await?;
        let mut bans = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(1000) {
            let values: Vec<Option<String>> = redis::cmd("MGET")
                .arg(chunk)
                .query_async(&mut self.conn)
                .await?;
            bans.extend(
                values
                    .iter()
                    .flatten()
                    .map(|value| Entry::from_value(value)),
            );
        }
        Ok(bans)
    }

    /// Says this host is alive at `now` (ms), and returns the hosts heard from within
    /// `alive` (this one among them).
    pub async fn heartbeat(
        &mut self,
        now: i64,
        alive: Duration,
    ) -> Result<Vec<String>, FleetError> {
        let hosts = format!("{}:hosts", self.prefix);
        let (peers,): (Vec<String>,) = redis::pipe()
            .cmd("ZADD")
            .arg(&hosts)
            .arg(now)
            .arg(&self.host)
            .ignore()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&hosts)
            .arg("-inf")
            .arg(now - ms(alive))
            .ignore()
            .cmd("ZRANGE")
            .arg(&hosts)
            .arg(0)
            .arg(-1)
            .query_async(&mut self.conn)
            .await?;
        Ok(peers)
    }
}

/// A client for the engine: the URL's, or the primary the sentinels name.
async fn client(access: &EngineAccess) -> redis::RedisResult<redis::Client> {
    let credentials = |mut info: redis::RedisConnectionInfo| {
        if let Some(user) = &access.username {
            info = info.set_username(user);
        }
        if let Some(password) = &access.password {
            info = info.set_password(password);
        }
        info
    };
    match &access.endpoint {
        Endpoint::Url(url) => {
            let info = redis::IntoConnectionInfo::into_connection_info(url.as_str())?;
            let redis = credentials(info.redis_settings().clone());
            let info = info.set_redis_settings(redis);
            match &access.ca {
                Some(ca) => redis::Client::build_with_tls(
                    info,
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(ca.clone()),
                    },
                ),
                None => redis::Client::open(info),
            }
        }
        Endpoint::Sentinel {
            nodes,
            service,
            tls,
            db,
        } => {
            let mut node = redis::sentinel::SentinelNodeConnectionInfo::default()
                .set_redis_connection_info(credentials(
                    redis::RedisConnectionInfo::default().set_db(*db),
                ));
            if *tls {
                node = node.set_tls_mode(redis::TlsMode::Secure);
            }
            let mut sentinel = redis::sentinel::SentinelClient::build(
                nodes.clone(),
                service.clone(),
                Some(node),
                redis::sentinel::SentinelServerType::Master,
            )?;
            sentinel.async_get_client().await
        }
    }
}

/// A script's reply as a [`Sent`].
fn sent(item: &Outgoing, reply: &[redis::Value]) -> Result<Sent, FleetError> {
    let int = |value: Option<&redis::Value>| match value {
        Some(redis::Value::Int(n)) => u32::try_from(*n).ok(),
        _ => None,
    };
    let text = |value: Option<&redis::Value>| match value {
        Some(redis::Value::BulkString(bytes)) => Some(String::from_utf8_lossy(bytes).into_owned()),
        Some(redis::Value::SimpleString(text)) => Some(text.clone()),
        _ => None,
    };
    let bad = || FleetError::Reply {
        what: "an unexpected reply to a script",
        detail: format!("{reply:?}"),
    };
    let id_at = match item {
        Outgoing::Failures { .. } => 2,
        Outgoing::Ban { .. } | Outgoing::Unban { .. } => 1,
    };
    match int(reply.first()).ok_or_else(bad)? {
        0 => Ok(Sent::Below(int(reply.get(1)).ok_or_else(bad)?)),
        1 => Ok(Sent::AlreadyBanned),
        2 => Ok(Sent::Appended {
            id: text(reply.get(id_at)).ok_or_else(bad)?,
        }),
        _ => Err(bad()),
    }
}
