use std::{fs, path::PathBuf, time::Duration};

use super::*;

fn net(text: &str) -> IpNet {
    text.parse().expect("a network")
}

fn ban(jail: &str, target: &str, expires_at: Option<UnixMs>) -> SavedBan {
    SavedBan {
        jail: jail.into(),
        target: net(target),
        expires_at,
        banned_at: 1_000,
        failures: 5,
        origin: "failures".into(),
    }
}

fn sample() -> Changes {
    let mut changes = Changes::default();
    for saved in [
        ban("auth", "192.0.2.7/32", Some(10_000)),
        ban("auth", "2001:db8::/64", None),
    ] {
        changes
            .bans
            .insert((saved.jail.clone(), saved.target), Some(saved));
    }
    changes.count_ban("auth", net("192.0.2.7/32"), 1_000);
    changes.positions.insert(
        PathBuf::from("/var/log/app/auth.log"),
        Checkpoint {
            offset: 4096,
            // Above i64::MAX: stored bit for bit.
            fingerprint: Some(u64::MAX - 41),
            rotated: vec![
                Mark {
                    offset: 100,
                    fingerprint: u64::MAX - 7,
                },
                Mark {
                    offset: 7,
                    fingerprint: 3,
                },
            ],
        },
    );
    changes.jail_ids = Some(BTreeMap::from([("auth".to_owned(), 0)]));
    changes.cursors.insert("ssh".into(), "s=abc;i=1".into());
    changes.fleet_id = Some("1700000000000-0".into());
    changes.failed("auth", net("192.0.2.9/32"), vec![1_000, 2_000, 3_000]);
    changes
}

#[test]
fn what_is_committed_loads_back_and_a_new_directory_is_empty() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state_dir = dir.path().join("state");
    let mut store = Store::open(&state_dir, 0).expect("open");
    assert_eq!(store.load().expect("empty"), State::default());
    store.commit(&sample()).expect("commit");
    drop(store);
    let store = Store::open(&state_dir, 0).expect("open again");
    let state = store.load().expect("load");
    assert_eq!(
        state.bans,
        [
            ban("auth", "192.0.2.7/32", Some(10_000)),
            ban("auth", "2001:db8::/64", None)
        ]
    );
    assert_eq!(state.positions, sample().positions);
    assert_eq!(state.jail_ids["auth"], 0);
    assert_eq!(state.cursors["ssh"], "s=abc;i=1");
    assert_eq!(state.fleet_id.as_deref(), Some("1700000000000-0"));
    assert_eq!(
        store.failures("auth").expect("failures"),
        [(net("192.0.2.9/32"), vec![1_000, 2_000, 3_000])]
    );
    assert_eq!(store.failures("other").expect("none"), []);
}

#[test]
fn changes_are_incremental_lifts_and_forgotten_failures_delete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path(), 0).expect("open");
    store.commit(&sample()).expect("commit");
    let mut next = Changes::default();
    next.bans.insert(("auth".into(), net("192.0.2.7/32")), None);
    next.failed("auth", net("192.0.2.9/32"), Vec::new());
    next.count_ban("auth", net("192.0.2.7/32"), 5_000);
    next.count_ban("web", net("192.0.2.7/32"), 5_000);
    store.commit(&next).expect("commit");
    let state = store.load().expect("load");
    assert_eq!(state.bans, [ban("auth", "2001:db8::/64", None)]);
    assert_eq!(state.jail_ids.len(), 1, "untouched tables stay");
    assert_eq!(store.failures("auth").expect("failures"), []);
    let target = net("192.0.2.7/32");
    assert_eq!(store.previous_bans("auth", &target, false).expect("h"), 2);
    assert_eq!(store.previous_bans("web", &target, false).expect("h"), 1);
    assert_eq!(store.previous_bans("web", &target, true).expect("h"), 3);
    assert_eq!(
        store
            .previous_bans("web", &net("192.0.2.8/32"), true)
            .expect("h"),
        0
    );
}

#[test]
fn history_is_pruned_by_age_and_count_and_ended_failure_windows_go() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path(), 0).expect("open");
    let mut changes = Changes::default();
    for n in 0..10u8 {
        let target = net(&format!("192.0.2.{n}/32"));
        changes.count_ban("auth", target, i64::from(n) * 1_000);
        changes.failed("auth", target, vec![i64::from(n) * 1_000]);
    }
    changes.failed("gone", net("198.51.100.1/32"), vec![9_000]);
    store.commit(&changes).expect("commit");
    let keep = Keep {
        max_age: Duration::from_secs(7),
        max_entries: 5,
    };
    let findtimes = BTreeMap::from([("auth".to_owned(), Duration::from_secs(4))]);
    let pruned = store.prune(keep, &findtimes, 10_000).expect("prune");
    // Age drops 0..=2 (before 3 000), the count then 3..=4; failures at or before 6 000
    // are outside the window, and those of a jail gone go.
    assert_eq!(
        pruned,
        Pruned {
            history: 5,
            failures: 8
        }
    );
    let left: Vec<IpNet> = store
        .history("auth")
        .expect("history")
        .into_keys()
        .collect();
    assert_eq!(left.len(), 5);
    assert_eq!(left[0], net("192.0.2.5/32"));
    let failing: Vec<IpNet> = store
        .failures("auth")
        .expect("failures")
        .into_iter()
        .map(|(target, _)| target)
        .collect();
    assert_eq!(
        failing,
        [
            net("192.0.2.7/32"),
            net("192.0.2.8/32"),
            net("192.0.2.9/32")
        ]
    );
}

#[test]
fn a_state_json_is_taken_in_once_and_kept_aside() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("state.json");
    fs::write(
        &json,
        r#"{"version":1,
            "bans":[{"jail":"auth","target":"192.0.2.7/32","expires_at":10000,
                     "banned_at":1000,"failures":5}],
            "history":{"auth":{"192.0.2.7/32":3}},
            "positions":{"/var/log/app/auth.log":{"offset":4096,"fingerprint":42}},
            "jail_ids":{"auth":2},
            "fleet_id":"1-0"}"#,
    )
    .expect("write");
    let store = Store::open(dir.path(), 7_000).expect("open");
    assert!(!json.exists());
    assert!(dir.path().join("state.json.migrated").exists());
    let state = store.load().expect("load");
    assert_eq!(state.bans.len(), 1);
    assert_eq!(state.bans[0].origin, "state.json");
    assert_eq!(state.jail_ids["auth"], 2);
    assert_eq!(state.fleet_id.as_deref(), Some("1-0"));
    assert_eq!(
        state.positions[&PathBuf::from("/var/log/app/auth.log")].offset,
        4096
    );
    assert_eq!(
        store
            .previous_bans("auth", &net("192.0.2.7/32"), false)
            .expect("history"),
        3
    );
    drop(store);
    // A crash between the import and the rename: the file is back, and is not taken in
    // twice (the history would say 6).
    fs::rename(dir.path().join("state.json.migrated"), &json).expect("put back");
    let store = Store::open(dir.path(), 8_000).expect("open again");
    assert!(!json.exists());
    assert_eq!(
        store
            .previous_bans("auth", &net("192.0.2.7/32"), false)
            .expect("history"),
        3
    );
}

#[test]
fn a_corrupt_foreign_or_newer_state_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(FILE);
    fs::write(
        &path,
        "not a database, but long enough to look like a header....",
    )
    .expect("write");
    let error = Store::open(dir.path(), 0)
        .err()
        .expect("corrupt")
        .to_string();
    assert!(error.contains("move it aside"), "{error}");
    fs::remove_file(&path).expect("remove");

    let store = Store::open(dir.path(), 0).expect("open");
    store
        .connection
        .pragma_update(None, "user_version", SCHEMA + 1)
        .expect("newer");
    drop(store);
    let before = fs::read(&path).expect("read");
    let error = Store::open(dir.path(), 0).err().expect("newer").to_string();
    assert!(error.contains("newer ban-agent (schema 2"), "{error}");
    assert_eq!(fs::read(&path).expect("read"), before, "left as it is");
    let error = Store::inspect(dir.path()).err().expect("newer").to_string();
    assert!(error.contains("schema 2"), "{error}");

    let json = tempfile::tempdir().expect("temp dir");
    fs::write(
        json.path().join("state.json"),
        r#"{"version":99,"bans":[],"history":{},"positions":{}}"#,
    )
    .expect("write");
    let error = Store::open(json.path(), 0).err().expect("old").to_string();
    assert!(error.contains("version 99"), "{error}");
    assert!(json.path().join("state.json").exists());
}

// Another user who could write the state could restore bans or positions of their
// choosing. Without the trust check in `Store::open`, this database opens.
#[test]
fn a_state_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("temp dir");
    drop(Store::open(dir.path(), 0).expect("a private state opens"));
    let path = dir.path().join(FILE);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o646)).expect("chmod");
    let error = Store::open(dir.path(), 0).err().expect("open").to_string();
    assert!(error.contains("writable by every user"), "{error}");
}

#[test]
fn inspect_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    assert!(Store::inspect(dir.path()).expect("nothing").is_none());
    assert!(!dir.path().join(FILE).exists(), "nothing created");
    let mut store = Store::open(dir.path(), 0).expect("open");
    store.commit(&sample()).expect("commit");
    drop(store);
    let inspected = Store::inspect(dir.path())
        .expect("inspect")
        .expect("a state");
    assert_eq!(inspected.load().expect("load").bans.len(), 2);
}

/// A state written before rotated files had positions (no `rotated` table) is inspected
/// read-only, as `check` does after an upgrade, and opened as before, the table made then.
#[test]
fn a_state_without_rotated_positions_is_read_and_upgraded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path(), 0).expect("open");
    store.commit(&sample()).expect("commit");
    store
        .connection
        .execute_batch("DROP TABLE rotated")
        .expect("as an older ban-agent left it");
    drop(store);
    let inspected = Store::inspect(dir.path())
        .expect("inspect")
        .expect("a state");
    let loaded = inspected.load().expect("load");
    let checkpoint = loaded.positions.values().next().expect("a position");
    assert_eq!((checkpoint.offset, checkpoint.rotated.len()), (4096, 0));
    drop(inspected);
    let mut store = Store::open(dir.path(), 0).expect("open");
    store.commit(&sample()).expect("commit");
    assert_eq!(store.load().expect("load").positions, sample().positions);
}

#[test]
fn remaining_time_of_a_saved_ban() {
    let timed = ban("auth", "192.0.2.7/32", Some(10_000));
    assert_eq!(timed.remaining(4_000), Some(Duration::from_secs(6)));
    assert_eq!(timed.remaining(12_000), Some(Duration::ZERO));
    assert_eq!(ban("auth", "192.0.2.7/32", None).remaining(4_000), None);
}

#[test]
fn jail_ids_are_stable_and_reused_once_freed() {
    let mut state = State::default();
    assert_eq!(state.jail_id("a"), Some(0));
    assert_eq!(state.jail_id("b"), Some(1));
    assert_eq!(state.jail_id("a"), Some(0));
    state.jail_ids.remove("a");
    assert_eq!(state.jail_id("c"), Some(0));
    for n in 0..ban_common::MAX_JAILS {
        let _id = state.jail_id(&format!("j{n}"));
    }
    assert_eq!(state.jail_id("one-too-many"), None);
}

// The queries docs/daemon.md gives operators run on a real state and find its rows.
#[test]
fn the_documented_queries_run_on_a_state() {
    const DOC: &str = include_str!("../../../docs/daemon.md");
    let block = DOC
        .split("<!-- state-queries")
        .nth(1)
        .and_then(|rest| rest.split("```sql\n").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the sql block after <!-- state-queries in docs/daemon.md");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path(), 0).expect("open");
    store.commit(&sample()).expect("commit");
    let code: String = block
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut queries = 0;
    for query in code.split(';').map(str::trim).filter(|q| !q.is_empty()) {
        let mut statement = store
            .connection
            .prepare(query)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let columns = statement.column_count();
        let rows: Vec<Vec<String>> = statement
            .query_map([], |row| {
                (0..columns)
                    .map(|n| {
                        row.get_ref(n).map(|value| match value {
                            rusqlite::types::ValueRef::Text(text) => {
                                String::from_utf8_lossy(text).into_owned()
                            }
                            other => format!("{other:?}"),
                        })
                    })
                    .collect()
            })
            .and_then(Iterator::collect)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert!(!rows.is_empty(), "{query} finds the sample's rows");
        queries += 1;
    }
    assert_eq!(queries, 4);
}

// Changes handed to the writer thread are committed in order with the agent's own: a
// commit after `settle` finds them written, and a batch handed while one is in flight is
// given back to keep.
#[test]
fn the_writer_thread_commits_in_order_and_gives_back_what_it_cannot_take() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path(), 0).expect("open");
    let mut first = Changes::default();
    first.failed("auth", net("192.0.2.9/32"), vec![1_000]);
    store.commit_later(first).expect("an idle writer takes it");
    let mut second = Changes::default();
    second.failed("auth", net("192.0.2.9/32"), vec![1_000, 2_000]);
    let second = match store.commit_later(second) {
        Ok(()) => panic!("a busy writer takes no second batch"),
        Err(second) => *second,
    };
    store.settle().expect("written");
    assert!(!store.busy());
    store.commit(&second).expect("commit");
    assert_eq!(
        store.failures("auth").expect("failures"),
        [(net("192.0.2.9/32"), vec![1_000, 2_000])],
        "the agent's later commit is not overwritten by the writer's earlier one"
    );
}

#[test]
fn pruning_gives_the_freed_pages_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = Store::open(dir.path(), 0).expect("open");
    let mut changes = Changes::default();
    for n in 0..20_000u32 {
        let target = IpNet::from(std::net::IpAddr::V6(std::net::Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            (n >> 16) as u16,
            n as u16,
        )));
        changes.count_ban("auth", target, 1_000);
    }
    store.commit(&changes).expect("commit");
    let pages = |store: &Store| -> (i64, i64) {
        let count = |pragma: &str| {
            store
                .connection
                .query_row(pragma, [], |row| row.get(0))
                .expect("pragma")
        };
        (count("PRAGMA page_count"), count("PRAGMA freelist_count"))
    };
    let (full, _) = pages(&store);
    let keep = Keep {
        max_age: Duration::from_secs(1),
        max_entries: 10,
    };
    let pruned = store
        .prune(keep, &BTreeMap::new(), 1_000_000)
        .expect("prune");
    assert_eq!(pruned.history, 20_000);
    let (left, free) = pages(&store);
    assert_eq!(free, 0, "free pages kept in the file");
    assert!(left * 10 < full, "{left} pages of {full} left");
}
