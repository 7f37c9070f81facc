//! The systemd journal as a log source, through libsystemd's sd-journal (the `systemd`
//! crate): entries that pass a jail's `journalmatch`, as the lines fail2ban makes of
//! them (`HOST IDENT[PID]: MESSAGE`), each with its own time, resumable from a cursor
//! kept in the state like a file position.

use std::path::{Path, PathBuf};

use systemd::journal::{self, Journal};

/// Which journal a jail reads (fail2ban's `backend = systemd[journalpath=DIR]` and
/// `journalfiles=...`; the system's own journal when neither is given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalSpec {
    /// A folder of journal files (`journalpath`).
    pub path: Option<PathBuf>,
    /// Journal files (`journalfiles`).
    pub files: Vec<PathBuf>,
    /// fail2ban's `journalmatch` lines: `FIELD=value` terms, ANDed, `+` between
    /// alternatives (`_SYSTEMD_UNIT=sshd.service + _COMM=sshd`).
    pub matches: Vec<String>,
}

impl JournalSpec {
    /// Parses the options of `backend = systemd[journalpath=/x, journalfiles=/a /b]`.
    pub fn from_backend(options: &[(String, String)]) -> Result<Self, String> {
        let mut spec = Self::default();
        for (key, value) in options {
            match key.as_str() {
                "journalpath" => spec.path = Some(PathBuf::from(value)),
                "journalfiles" => {
                    spec.files = value.split_whitespace().map(PathBuf::from).collect()
                }
                "journalflags" | "rotated" => {}
                other => {
                    return Err(format!(
                        "unknown systemd backend option {other:?}: expected journalpath or journalfiles"
                    ));
                }
            }
        }
        Ok(spec)
    }

    /// Files whose folders the daemon watches to wake up when the journal grows.
    pub fn watched(&self) -> Vec<PathBuf> {
        if !self.files.is_empty() {
            return self.files.clone();
        }
        if let Some(path) = &self.path {
            return vec![path.join("system.journal")];
        }
        let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
        let id = id.trim();
        if id.is_empty() {
            return Vec::new();
        }
        ["/var/log/journal", "/run/log/journal"]
            .iter()
            .map(|root| Path::new(root).join(id).join("system.journal"))
            .collect()
    }
}

/// What can go wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error(
        "cannot open the journal {what}: {source} (is it readable by the agent? root or the systemd-journal group can read it)"
    )]
    Open {
        what: String,
        source: systemd::Error,
    },
    #[error("journalmatch {text:?}: {problem}")]
    Match { text: String, problem: String },
    #[error("reading the journal: {0}")]
    Read(systemd::Error),
}

/// One entry as a log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalLine {
    pub text: String,
    /// Milliseconds since the epoch (the source's time when it gave one).
    pub time: i64,
}

/// A jail's journal, open at a position.
pub struct JournalReader {
    journal: Journal,
    what: String,
    /// The cursor of the last entry read.
    cursor: Option<String>,
}

// SAFETY: sd-journal(3): "All functions listed here are thread-agnostic and only a
// single specific object may be used by a single thread at a time, but multiple threads
// may use multiple objects safely". The reader owns its sd_journal object and only
// `&mut self` methods use it, so moving it to another thread (the daemon's agent sits
// behind a mutex in the fuzz targets) is sound; it is not `Sync`.
unsafe impl Send for JournalReader {}

impl JournalReader {
    /// Opens the journal of `spec`, with its matches, after `cursor` when there is one;
    /// else at the end (`from_head`: the start).
    pub fn open(
        spec: &JournalSpec,
        cursor: Option<&str>,
        from_head: bool,
    ) -> Result<Self, JournalError> {
        let what = if let Some(path) = &spec.path {
            format!("in {}", path.display())
        } else if !spec.files.is_empty() {
            let files: Vec<String> = spec.files.iter().map(|f| f.display().to_string()).collect();
            files.join(", ")
        } else {
            "of this system".to_owned()
        };
        let opened = if let Some(path) = &spec.path {
            journal::OpenDirectoryOptions::default()
                .open_directory(path.as_os_str().to_string_lossy().as_ref())
        } else if !spec.files.is_empty() {
            let names: Vec<String> = spec.files.iter().map(|f| f.display().to_string()).collect();
            journal::OpenFilesOptions::default().open_files(names.iter().map(String::as_str))
        } else {
            journal::OpenOptions::default()
                .local_only(true)
                .system(true)
                .open()
        };
        let mut journal = opened.map_err(|source| JournalError::Open {
            what: what.clone(),
            source,
        })?;
        add_matches(&mut journal, &spec.matches)?;
        let mut reader = Self {
            journal,
            what,
            cursor: None,
        };
        reader.position(cursor, from_head)?;
        Ok(reader)
    }

    fn position(&mut self, cursor: Option<&str>, from_head: bool) -> Result<(), JournalError> {
        let read = JournalError::Read;
        match cursor {
            Some(cursor) => {
                self.journal.seek_cursor(cursor).map_err(read)?;
                // The entry at the cursor was read before the restart: step past it.
                if self.journal.next().map_err(JournalError::Read)? > 0
                    && self.journal.test_cursor(cursor).unwrap_or(false)
                {
                    self.cursor = Some(cursor.to_owned());
                } else {
                    self.journal
                        .seek_cursor(cursor)
                        .map_err(JournalError::Read)?;
                }
            }
            None if from_head => self.journal.seek_head().map_err(read)?,
            None => {
                self.journal.seek_tail().map_err(read)?;
                // After seek_tail, the next step lands on the last entry: skip it.
                self.journal.previous().map_err(JournalError::Read)?;
            }
        }
        Ok(())
    }

    /// What the reader reads, for messages.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// The cursor of the last entry read, to resume from.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Reads up to `budget` new entries into `sink`; returns how many.
    pub fn poll(
        &mut self,
        budget: u64,
        sink: &mut dyn FnMut(&JournalLine),
    ) -> Result<u64, JournalError> {
        let mut read = 0;
        // Picks up files that appeared or grew since the last read.
        let _changes = self.journal.process();
        while read < budget {
            if self.journal.next().map_err(JournalError::Read)? == 0 {
                break;
            }
            let line = self.entry().map_err(JournalError::Read)?;
            self.cursor = Some(self.journal.cursor().map_err(JournalError::Read)?);
            sink(&line);
            read += 1;
        }
        Ok(read)
    }

    /// The current entry as fail2ban formats it: `HOSTNAME IDENT[PID]: MESSAGE`, new
    /// lines written `\n`.
    fn entry(&mut self) -> systemd::Result<JournalLine> {
        let mut field = |name: &str| -> systemd::Result<Option<String>> {
            Ok(self
                .journal
                .get_data(name)?
                .and_then(|f| f.value().map(|v| String::from_utf8_lossy(v).into_owned())))
        };
        let host = field("_HOSTNAME")?;
        let ident = match field("SYSLOG_IDENTIFIER")? {
            Some(ident) => Some(ident),
            None => field("_COMM")?,
        };
        let pid = match field("SYSLOG_PID")? {
            Some(pid) => Some(pid),
            None => field("_PID")?,
        };
        let message = field("MESSAGE")?.unwrap_or_default();
        let source_time = field("_SOURCE_REALTIME_TIMESTAMP")?.and_then(|t| t.parse::<i64>().ok());
        let mut parts = Vec::new();
        if let Some(host) = host {
            parts.push(host);
        }
        if let Some(ident) = ident {
            let pid = pid.map(|p| format!("[{p}]")).unwrap_or_default();
            parts.push(format!("{ident}{pid}:"));
        }
        parts.push(message.replace('\n', "\\n"));
        let micros = match source_time {
            Some(micros) => micros,
            None => i64::try_from(self.journal.timestamp_usec()?).unwrap_or(i64::MAX),
        };
        Ok(JournalLine {
            text: parts.join(" "),
            time: micros / 1000,
        })
    }
}

/// fail2ban's `journalmatch`: each line's `FIELD=value` terms are ANDed, a `+` starts an
/// alternative, and the lines are alternatives of each other.
fn add_matches(journal: &mut Journal, lines: &[String]) -> Result<(), JournalError> {
    let mut first = true;
    for line in lines {
        for alternative in line.split(" + ").map(str::trim).filter(|a| !a.is_empty()) {
            if !first {
                journal.match_or().map_err(JournalError::Read)?;
            }
            first = false;
            for term in alternative.split_whitespace() {
                if term == "+" {
                    continue;
                }
                let Some((field, value)) = term.split_once('=') else {
                    return Err(JournalError::Match {
                        text: line.clone(),
                        problem: format!("{term:?} is not FIELD=value"),
                    });
                };
                journal
                    .match_add(field, value.as_bytes().to_vec())
                    .map_err(|e| JournalError::Match {
                        text: line.clone(),
                        problem: e.to_string(),
                    })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_options() {
        let spec =
            JournalSpec::from_backend(&[("journalpath".into(), "/var/log/journal/remote".into())])
                .expect("parses");
        assert_eq!(spec.path, Some(PathBuf::from("/var/log/journal/remote")));
        assert_eq!(
            spec.watched(),
            vec![PathBuf::from("/var/log/journal/remote/system.journal")]
        );
        assert!(JournalSpec::from_backend(&[("nope".into(), "x".into())]).is_err());
    }
}
