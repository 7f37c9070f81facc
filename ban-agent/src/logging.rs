//! Where the agent's log lines go (fail2ban's `logtarget`): standard error (the default;
//! under systemd the journal takes it), a file, reopened on SIGUSR1 and when it was
//! rotated away, or the systemd journal's own socket, with each event's fields (jail, ip,
//! failures) as journal fields.

use std::{
    fs::File,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{Mutex, OnceLock},
};

use tracing_subscriber::{Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};

/// Where log lines go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum LogTarget {
    #[default]
    Stderr,
    /// The systemd journal's native socket.
    Journal,
    /// A file, appended to.
    File(PathBuf),
}

impl LogTarget {
    /// `"stderr"`, `"journal"` (or fail2ban's `SYSTEMD-JOURNAL`), or a file's path
    /// (`base` makes a relative one absolute).
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let text = text.trim();
        match text.to_ascii_lowercase().as_str() {
            "stderr" => Ok(Self::Stderr),
            "journal" | "systemd-journal" => Ok(Self::Journal),
            "" => Err("it is empty".to_owned()),
            "stdout" | "syslog" => Err(format!(
                "{text:?} is not a target here: expected \"stderr\", \"journal\" or a file's path"
            )),
            _ => Ok(Self::File(base.join(text))),
        }
    }
}

/// The file of a `File` target, once logging is set up.
static FILE: OnceLock<LogFile> = OnceLock::new();

/// The open log file, and which file it is (device, inode) to tell a rotation.
struct LogFile {
    path: PathBuf,
    open: Mutex<(File, (u64, u64))>,
}

impl LogFile {
    fn open(path: &Path) -> std::io::Result<(File, (u64, u64))> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        let meta = file.metadata()?;
        Ok((file, (meta.dev(), meta.ino())))
    }

    /// Opens the path again: a new file when the old one was moved away.
    fn reopen(&self) -> std::io::Result<()> {
        let fresh = Self::open(&self.path)?;
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *open = fresh;
        Ok(())
    }

    /// Whether the path no longer names the open file (moved, removed, replaced).
    fn rotated(&self) -> bool {
        let open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        std::fs::metadata(&self.path).map_or(true, |meta| (meta.dev(), meta.ino()) != open.1)
    }
}

/// Writes a formatted event in one `write` of its line.
struct FileWriter;

impl std::io::Write for FileWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match FILE.get() {
            Some(file) => file
                .open
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0
                .write(bytes),
            None => std::io::stderr().write(bytes),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sets logging up: level from `RUST_LOG`, else `level` (the configuration's
/// `log_level`), else `info`; lines to `target`. Under systemd (`JOURNAL_STREAM` set)
/// standard error's lines carry no timestamp nor colour: journald adds its own. Set up
/// once; later calls change nothing.
pub fn init(level: Option<&str>, target: &LogTarget) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .ok()
        .or_else(|| level.and_then(|l| tracing_subscriber::EnvFilter::try_new(l).ok()))
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let layer = match target {
        LogTarget::Stderr => {
            let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(!under_journald && std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr);
            if under_journald {
                layer.without_time().boxed()
            } else {
                layer.boxed()
            }
        }
        LogTarget::File(path) => {
            let (file, id) = LogFile::open(path).map_err(|e| {
                anyhow::anyhow!(
                    "log_target {}: {e}; give a file in a folder the agent may write (or \
                     \"stderr\", \"journal\")",
                    path.display()
                )
            })?;
            let _first = FILE.set(LogFile {
                path: path.clone(),
                open: Mutex::new((file, id)),
            });
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(|| FileWriter)
                .boxed()
        }
        LogTarget::Journal => tracing_journald::layer()
            .map_err(|e| {
                anyhow::anyhow!(
                    "log_target \"journal\": the journal's socket cannot be reached ({e}); is \
                     systemd-journald running? Use \"stderr\" (which systemd sends to the \
                     journal too) or a file"
                )
            })?
            .with_syslog_identifier("ban-agent".to_owned())
            // `JAIL=auth`, not `F_JAIL=auth`: the fields read as the log line names them.
            .with_field_prefix(None)
            .boxed(),
    };
    let _already_set = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
    Ok(())
}

/// SIGUSR1: the log file is opened again (after logrotate moved it, as fail2ban's
/// `flushlogs`). Nothing to do for the other targets.
pub fn reopen() -> std::io::Result<()> {
    match FILE.get() {
        Some(file) => file.reopen(),
        None => Ok(()),
    }
}

/// Once a second: a log file moved or removed (rotated without a signal) is opened
/// again at its path. Returns whether it was.
pub fn reopen_if_rotated() -> std::io::Result<bool> {
    match FILE.get() {
        Some(file) if file.rotated() => file.reopen().map(|()| true),
        _ => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_stderr_the_journal_or_a_file() {
        let base = Path::new("/etc/ban-agent");
        assert_eq!(LogTarget::parse("stderr", base), Ok(LogTarget::Stderr));
        assert_eq!(LogTarget::parse("STDERR", base), Ok(LogTarget::Stderr));
        assert_eq!(LogTarget::parse("journal", base), Ok(LogTarget::Journal));
        assert_eq!(
            LogTarget::parse("SYSTEMD-JOURNAL", base),
            Ok(LogTarget::Journal)
        );
        assert_eq!(
            LogTarget::parse("/var/log/ban-agent.log", base),
            Ok(LogTarget::File("/var/log/ban-agent.log".into()))
        );
        assert_eq!(
            LogTarget::parse("agent.log", base),
            Ok(LogTarget::File("/etc/ban-agent/agent.log".into()))
        );
        assert!(LogTarget::parse("SYSLOG", base).is_err_and(|e| e.contains("journal")));
        assert!(LogTarget::parse(" ", base).is_err());
    }
}
