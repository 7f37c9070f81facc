//! When to poll the followers: on an inotify event in a log's folder (through `notify`),
//! and every `interval` in any case, which is all there is when inotify is not available
//! (some network and container filesystems, or the inotify watch limit reached).
//!
//! Folders are watched, not files, so that a file created by rotation is seen at once.
//! For a glob (`/var/lib/docker/containers/*/*-json.log`), the folder its pattern starts
//! from, every folder its directory part matches, and the folder of every file followed
//! (a symlink's target's too: `/var/log/containers` links into `/var/log/pods`) are
//! watched; an entry created, removed or renamed in one of them says that the globs are
//! to be expanded again ([`Wakeups::entries_changed`]), so that a new container's log is
//! picked up at once, without reading the disk on a timer.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
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
    /// Folders inotify watches.
    watched: BTreeSet<PathBuf>,
    /// An entry was created, removed or renamed in a watched folder since last asked.
    changed: Arc<AtomicBool>,
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

    /// Whether inotify sees every change of every folder (else the globs are expanded
    /// again on a timer).
    pub fn watches_all(&self) -> bool {
        self.watcher.is_some() && self.unwatched.is_empty()
    }

    /// Whether an entry was created, removed or renamed in a watched folder since the
    /// last call (or the watch lost events): the globs are to be expanded again.
    pub fn entries_changed(&self) -> bool {
        self.changed.swap(false, Ordering::Relaxed)
    }

    /// Watches these folders too (those of the files followed now, and those a glob's
    /// directory part matches now); returns whether any was new, in which case the globs
    /// are expanded once more: an entry made in it before its watch was set is not missed.
    pub fn track(&mut self, folders: impl IntoIterator<Item = PathBuf>) -> bool {
        let Some(watcher) = &mut self.watcher else {
            return false;
        };
        let mut added = false;
        for folder in folders {
            if self.watched.contains(&folder) || self.unwatched.contains(&folder) {
                continue;
            }
            if watcher.watch(&folder, RecursiveMode::NonRecursive).is_ok() {
                self.watched.insert(folder);
                added = true;
            }
            // A folder gone already, or the watch limit reached: the timer covers it.
            else if folder.exists() {
                self.unwatched.push(folder);
            }
        }
        added
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
    let changed = Arc::new(AtomicBool::new(false));
    if inotify {
        let wake = Arc::clone(&notify);
        let entries = Arc::clone(&changed);
        let handler = move |event: notify::Result<notify::Event>| {
            let entry_changed = match &event {
                Ok(event) => matches!(
                    event.kind,
                    notify::EventKind::Create(_)
                        | notify::EventKind::Remove(_)
                        | notify::EventKind::Modify(notify::event::ModifyKind::Name(_))
                ),
                // Events were lost (the queue overflowed): anything may have changed.
                Err(_) => true,
            };
            if entry_changed {
                entries.store(true, Ordering::Relaxed);
            }
            if event.is_ok_and(|e| !e.kind.is_access()) || entry_changed {
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
    let watched = folders
        .into_iter()
        .filter(|folder| watcher.is_some() && !unwatched.contains(folder))
        .collect();
    Wakeups {
        notify,
        interval,
        watcher,
        unwatched,
        watched,
        changed,
        patterns: paths.to_vec(),
    }
}

/// The folders to watch beside each pattern's own, for `files` followed now: theirs
/// (and their symlink targets'), and every folder a glob's directory part matches.
pub fn folders_to_watch(patterns: &[PathBuf], files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut folders = BTreeSet::new();
    for file in files {
        if let Some(parent) = file.parent() {
            folders.insert(parent.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(file)
            && let Some(parent) = real.parent()
        {
            folders.insert(parent.to_path_buf());
        }
    }
    for pattern in patterns {
        let Some(parent) = pattern.parent() else {
            continue;
        };
        let text = parent.to_string_lossy();
        if !super::is_glob(&text) {
            continue;
        }
        if let Ok(matches) = glob::glob(&text) {
            folders.extend(matches.filter_map(Result::ok).filter(|p| p.is_dir()));
        }
    }
    folders
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
