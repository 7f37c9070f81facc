//! When to poll the followers: on an inotify event in a log's folder (through `notify`),
//! and every `interval` in any case, which is all there is when inotify is not available
//! (some network and container filesystems, or the inotify watch limit reached).
//!
//! Folders are watched, not files, so that a file created by rotation is seen at once.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use notify::{RecursiveMode, Watcher};
use tokio::sync::Notify;

/// How changes are noticed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchMode {
    /// inotify, falling back to polling when it cannot be set up; polls every `interval`
    /// as well, as a safety net.
    Inotify { interval: Duration },
    /// Only poll every `interval`.
    Poll { interval: Duration },
}

/// Wakes the follow loop.
pub struct Wakeups {
    notify: Arc<Notify>,
    interval: Duration,
    /// Keeps the inotify watches alive; `None` when only polling.
    watcher: Option<notify::RecommendedWatcher>,
    /// Folders inotify could not watch (they are polled).
    unwatched: Vec<PathBuf>,
    /// What it was asked to watch.
    patterns: Vec<PathBuf>,
}

impl Wakeups {
    /// The paths and patterns it watches the folders of.
    pub fn patterns(&self) -> &[PathBuf] {
        &self.patterns
    }

    /// Returns at the next change in a watched folder, or after the polling interval.
    pub async fn wait(&self) {
        tokio::select! {
            () = self.notify.notified() => {}
            () = tokio::time::sleep(self.interval) => {}
        }
    }

    /// Whether inotify watches anything (false: polling only).
    pub fn uses_inotify(&self) -> bool {
        self.watcher.is_some()
    }

    /// Folders only polled, for a warning.
    pub fn unwatched(&self) -> &[PathBuf] {
        &self.unwatched
    }
}

/// Watches the folders of `paths` (files or glob patterns).
pub fn watch(paths: &[PathBuf], mode: WatchMode) -> Wakeups {
    let notify = Arc::new(Notify::new());
    let (interval, inotify) = match mode {
        WatchMode::Inotify { interval } => (interval, true),
        WatchMode::Poll { interval } => (interval, false),
    };
    let folders: BTreeSet<PathBuf> = paths.iter().map(|p| folder_of(p)).collect();
    let mut unwatched: Vec<PathBuf> = folders.iter().cloned().collect();
    let mut watcher = None;
    if inotify {
        let wake = Arc::clone(&notify);
        let handler = move |event: notify::Result<notify::Event>| {
            if event.is_ok_and(|e| !e.kind.is_access()) {
                wake.notify_one();
            }
        };
        if let Ok(mut w) = notify::recommended_watcher(handler) {
            unwatched.retain(|folder| w.watch(folder, RecursiveMode::NonRecursive).is_err());
            if unwatched.len() < folders.len() {
                watcher = Some(w);
            }
        }
    }
    Wakeups {
        notify,
        interval,
        watcher,
        unwatched,
        patterns: paths.to_vec(),
    }
}

/// The folder to watch for a file or glob: the longest leading part without glob
/// characters, minus the file name.
fn folder_of(pattern: &Path) -> PathBuf {
    let mut folder = PathBuf::new();
    for part in pattern.components() {
        if super::is_glob(&part.as_os_str().to_string_lossy()) {
            return folder;
        }
        folder.push(part);
    }
    folder.parent().map(Path::to_path_buf).unwrap_or(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_of_files_and_globs() {
        assert_eq!(
            folder_of(Path::new("/var/log/app/auth.log")),
            Path::new("/var/log/app")
        );
        assert_eq!(
            folder_of(Path::new("/var/log/app/*.log")),
            Path::new("/var/log/app")
        );
        assert_eq!(
            folder_of(Path::new("/var/log/*/auth.log")),
            Path::new("/var/log")
        );
    }
}
