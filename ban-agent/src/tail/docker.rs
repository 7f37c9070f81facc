//! Docker containers picked by name or label (a jail's `docker`, `docker_label`): their
//! json-file logs, found in each container's `config.v2.json` under Docker's data root.
//!
//! Read from the files rather than asked of the Engine API (its socket, or a crate such as
//! `bollard`): the agent stays out of the daemon's way and needs no access to a socket
//! that is root on the host, it keeps working while dockerd restarts, and the same
//! inotify watch that sees a container's folder appear sees its `config.v2.json` written
//! (dockerd writes it whole, by rename), so a new container is read at once.

use std::path::{Path, PathBuf};

/// Which containers a jail reads: those named in `names`, and those that carry every
/// label of `labels`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerSelector {
    /// Docker's data root (`docker_root`, `/var/lib/docker` by default).
    pub root: PathBuf,
    /// Container names, without Docker's leading `/`.
    pub names: Vec<String>,
    /// `key=value`, or `key` for any value.
    pub labels: Vec<(String, Option<String>)>,
}

/// What the agent reads of a container's `config.v2.json`.
#[derive(serde::Deserialize)]
struct Container {
    #[serde(rename = "Name", default)]
    name: String,
    #[serde(rename = "LogPath", default)]
    log_path: String,
    #[serde(rename = "Config", default)]
    config: ContainerConfig,
}

#[derive(serde::Deserialize, Default)]
struct ContainerConfig {
    #[serde(rename = "Labels", default)]
    labels: Option<std::collections::BTreeMap<String, String>>,
}

impl DockerSelector {
    /// The files that say which containers there are (a glob, for the watcher).
    pub fn pattern(&self) -> PathBuf {
        self.root.join("containers/*/config.v2.json")
    }

    /// The json-file logs of the containers selected now; a container whose log is not
    /// json-file's (another log driver) has none to read.
    pub fn logs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.root.join("containers")) else {
            return Vec::new();
        };
        let mut logs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| self.log_of(&entry.path().join("config.v2.json")))
            .collect();
        logs.sort();
        logs
    }

    /// The json-file log beside `config`. `LogPath` names it as dockerd sees it, on the
    /// host; the file is looked for in the container's folder under this root instead, so
    /// that an agent that sees the data root elsewhere (its own container, with the host's
    /// data root mounted at /var/lib/docker) finds it.
    fn log_of(&self, config: &Path) -> Option<PathBuf> {
        let text = std::fs::read(config).ok()?;
        let container: Container = serde_json::from_slice(&text).ok()?;
        if !self.selects(&container) || !container.log_path.ends_with("-json.log") {
            return None;
        }
        let name = Path::new(&container.log_path).file_name()?;
        Some(config.parent()?.join(name))
    }

    fn selects(&self, container: &Container) -> bool {
        let name = container.name.trim_start_matches('/');
        if self.names.iter().any(|wanted| wanted == name) {
            return true;
        }
        let labels = container.config.labels.as_ref();
        !self.labels.is_empty()
            && self.labels.iter().all(|(key, value)| {
                labels
                    .and_then(|labels| labels.get(key))
                    .is_some_and(|found| value.as_ref().is_none_or(|wanted| wanted == found))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A container as dockerd leaves it under `root`, whose path on the host is
    /// `/var/lib/docker` (where the test's root is mounted, as in the agent's container).
    fn container(root: &Path, id: &str, name: &str, labels: &[(&str, &str)], driver: &str) {
        let folder = root.join("containers").join(id);
        std::fs::create_dir_all(&folder).expect("mkdir");
        let log = match driver {
            "json-file" => format!("/var/lib/docker/containers/{id}/{id}-json.log"),
            _ => String::new(),
        };
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).into()))
            .collect();
        let config = serde_json::json!({
            "ID": id,
            "Name": format!("/{name}"),
            "LogPath": log,
            "Config": {"Image": "app", "Labels": labels},
            "State": {"Running": true},
        });
        std::fs::write(folder.join("config.v2.json"), config.to_string()).expect("write");
    }

    #[test]
    fn containers_are_picked_by_name_or_by_every_label_and_their_logs_found_under_the_root() {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        container(
            root,
            "aaa",
            "api",
            &[("ban-agent.jail", "fastapi-auth")],
            "json-file",
        );
        container(
            root,
            "bbb",
            "web",
            &[("ban-agent.jail", "nginx"), ("tier", "front")],
            "json-file",
        );
        container(
            root,
            "ccc",
            "worker",
            &[("ban-agent.jail", "fastapi-auth")],
            "journald",
        );
        std::fs::create_dir_all(root.join("containers/ddd")).expect("a folder being made");
        let log = |id: &str| root.join(format!("containers/{id}/{id}-json.log"));
        let by_name = DockerSelector {
            root: root.to_owned(),
            names: vec!["api".into(), "nosuch".into()],
            labels: vec![],
        };
        assert_eq!(by_name.logs(), [log("aaa")]);
        let by_label = DockerSelector {
            root: root.to_owned(),
            names: vec![],
            labels: vec![("ban-agent.jail".into(), Some("fastapi-auth".into()))],
        };
        assert_eq!(
            by_label.logs(),
            [log("aaa")],
            "the journald container has no file"
        );
        let by_key = DockerSelector {
            root: root.to_owned(),
            names: vec!["api".into()],
            labels: vec![("tier".into(), None), ("ban-agent.jail".into(), None)],
        };
        assert_eq!(by_key.logs(), [log("aaa"), log("bbb")]);
        assert_eq!(
            by_key.pattern(),
            root.join("containers/*/config.v2.json"),
            "watched"
        );
        let nothing = DockerSelector {
            root: root.join("absent"),
            names: vec!["api".into()],
            labels: vec![],
        };
        assert!(nothing.logs().is_empty());
    }
}
