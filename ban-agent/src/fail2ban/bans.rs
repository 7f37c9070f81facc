//! fail2ban's bans, read from its database (`dbfile`, `/var/lib/fail2ban/fail2ban.sqlite3`
//! on Debian): the latest ban of each address in each jail (table `bips`, fail2ban 0.11 and
//! later), with when it was made, how long it is, and how many times the address was banned
//! there, which fail2ban's `bantime.increment` reads as ban-agent's `bantime_increment`
//! reads its history. The file is opened read-only, never changed.

use std::{net::IpAddr, path::Path};

use ipnet::IpNet;
use rusqlite::{OpenFlags, OptionalExtension as _};
use serde::{Deserialize, Serialize};

use crate::clock::UnixMs;

/// Where Debian's fail2ban keeps its database.
pub const DEFAULT_DB: &str = "/var/lib/fail2ban/fail2ban.sqlite3";

/// A ban carried over from fail2ban, as its database holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedBan {
    pub jail: String,
    pub target: IpNet,
    pub banned_at: UnixMs,
    /// When it ends there; `None` for a permanent ban.
    pub expires_at: Option<UnixMs>,
    /// How many times fail2ban banned the address in that jail (its `bancount`).
    pub bans: u32,
}

impl CarriedBan {
    /// Whether it is still in force at `now`.
    pub fn in_force(&self, now: UnixMs) -> bool {
        self.expires_at.is_none_or(|end| end > now)
    }
}

/// What fail2ban's database holds, and what could not be read of it.
#[derive(Debug, Default)]
pub struct Read {
    pub bans: Vec<CarriedBan>,
    /// Rows left out, each with why (an address that is a host name, ...).
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum BansError {
    #[error(
        "{}: {source}; give fail2ban's database (its `dbfile`, {DEFAULT_DB} by default)",
        path.display()
    )]
    Open {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{} has no table `bips`: it is not fail2ban's database, or one of fail2ban older \
         than 0.11, which keeps no ban lengths",
        path.display()
    )]
    NoBans { path: std::path::PathBuf },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: rusqlite::Error,
    },
}

/// Every address's latest ban in every jail of the database at `path`, ended or not (an
/// ended one still brings its count).
pub fn read(path: &Path) -> Result<Read, BansError> {
    if !path.is_file() {
        return Err(BansError::Open {
            path: path.to_owned(),
            source: rusqlite::Error::InvalidPath(path.to_owned()),
        });
    }
    let connection = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| BansError::Open {
        path: path.to_owned(),
        source,
    })?;
    let failed = |source| BansError::Read {
        path: path.to_owned(),
        source,
    };
    let has_bips: Option<String> = connection
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'bips'",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(|source| BansError::Open {
            path: path.to_owned(),
            source,
        })?;
    if has_bips.is_none() {
        return Err(BansError::NoBans {
            path: path.to_owned(),
        });
    }
    let mut rows = connection
        .prepare("SELECT jail, ip, timeofban, bantime, bancount FROM bips ORDER BY timeofban")
        .map_err(failed)?;
    let rows = rows
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })
        .map_err(failed)?;
    let mut read = Read::default();
    for row in rows {
        let (jail, ip, at, length, count) = row.map_err(failed)?;
        let Some(target) = target(&ip) else {
            read.skipped.push(format!(
                "{ip} in {jail}: not an address (ban-agent bans addresses, never names)"
            ));
            continue;
        };
        let banned_at = at.saturating_mul(1000);
        read.bans.push(CarriedBan {
            jail,
            target,
            banned_at,
            expires_at: (length >= 0)
                .then(|| banned_at.saturating_add(length.saturating_mul(1000))),
            bans: u32::try_from(count.max(1)).unwrap_or(u32::MAX),
        });
    }
    Ok(read)
}

/// An address or a network, as fail2ban writes them (`192.0.2.7`, `2001:db8::/64`).
fn target(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .or_else(|_| text.parse::<IpNet>().map(|net| net.trunc()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of fail2ban's shape (the test in `tests/it/fail2ban_client.rs` reads one
    /// the real fail2ban wrote).
    fn database(dir: &Path, rows: &[(&str, &str, i64, i64, i64)]) -> std::path::PathBuf {
        let path = dir.join("fail2ban.sqlite3");
        let c = rusqlite::Connection::open(&path).expect("open");
        c.execute_batch(
            "CREATE TABLE bips(ip TEXT NOT NULL, jail TEXT NOT NULL, timeofban INTEGER NOT NULL, \
             bantime INTEGER NOT NULL, bancount INTEGER NOT NULL default 1, data JSON, \
             PRIMARY KEY(ip, jail));",
        )
        .expect("schema");
        for (jail, ip, at, length, count) in rows {
            c.execute(
                "INSERT INTO bips (jail, ip, timeofban, bantime, bancount) VALUES (?1, ?2, ?3, ?4, ?5)",
                rusqlite::params![jail, ip, at, length, count],
            )
            .expect("row");
        }
        path
    }

    #[test]
    fn each_ban_comes_with_its_end_and_count() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = database(
            dir.path(),
            &[
                ("sshd", "192.0.2.7", 1_000, 600, 1),
                ("sshd", "2001:db8::/64", 2_000, -1, 3),
                ("sshd", "host.example", 3_000, 600, 1),
            ],
        );
        let read = read(&path).expect("read");
        assert_eq!(
            read.bans,
            [
                CarriedBan {
                    jail: "sshd".into(),
                    target: "192.0.2.7/32".parse().expect("net"),
                    banned_at: 1_000_000,
                    expires_at: Some(1_600_000),
                    bans: 1,
                },
                CarriedBan {
                    jail: "sshd".into(),
                    target: "2001:db8::/64".parse().expect("net"),
                    banned_at: 2_000_000,
                    expires_at: None,
                    bans: 3,
                },
            ]
        );
        assert!(read.bans[0].in_force(1_599_999) && !read.bans[0].in_force(1_600_000));
        assert!(read.bans[1].in_force(i64::MAX));
        assert!(
            read.skipped[0].contains("host.example in sshd"),
            "{:?}",
            read.skipped
        );
    }

    #[test]
    fn another_file_is_refused_with_what_to_give() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = read(&dir.path().join("nope.sqlite3")).expect_err("missing");
        assert!(missing.to_string().contains(DEFAULT_DB), "{missing}");
        let other = dir.path().join("other.sqlite3");
        rusqlite::Connection::open(&other)
            .expect("open")
            .execute_batch("CREATE TABLE t(x);")
            .expect("table");
        assert!(matches!(read(&other), Err(BansError::NoBans { .. })));
    }
}
