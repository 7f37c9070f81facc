//! The house plan, checked: each module of the crate sits in a layer, and imports only
//! go down (or sideways within a layer, without a loop); so do the daemon's parts, one
//! floor further in. `docs/architecture.md` draws the same tables; a module missing from
//! them fails here until it is placed.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
};

/// From the ground up; the functions at the crate's root (`plural`, `error_text`, ...)
/// are below all of them.
const LAYERS: [&[&str]; 8] = [
    &["clock"],
    &["duration", "trust", "ignore", "metrics", "logging"],
    &["filter", "tail", "tracker", "store", "datapath"],
    &["fail2ban", "config"],
    &["detect", "sample"],
    &["fleet", "crowdsec", "events", "control"],
    &["daemon"],
    &["cli"],
];

/// The daemon's parts, from the ground up (`daemon/mod.rs`, which runs them all, is
/// above them, and its tests beside).
const DAEMON_LAYERS: [&[&str]; 7] = [
    &["log_once", "kernel", "table", "jails"],
    &["fleet", "crowdsec"],
    &["follow"],
    &["persist"],
    &["restore"],
    &["agent"],
    &["requests", "guard"],
];

/// The first segments of every `crate::` path in `text`: `crate::a::b` and each item of
/// `crate::{a::b, c}`.
fn imported(text: &str) -> BTreeSet<String> {
    imported_after(text, "crate::")
}

/// The first segments of every path in `text` that starts with `prefix` (`crate::` or
/// `super::`).
fn imported_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let word = |rest: &str| -> String {
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The top-level items of the group, nested groups skipped.
            let mut depth = 0;
            let mut item_start = true;
            for (n, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => {
                        rest = &group[n..];
                        break;
                    }
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && !c.is_whitespace() => {
                        found.insert(word(&group[n..]));
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(word(rest));
        }
    }
    found.retain(|name| !name.is_empty());
    found
}

/// The modules in `dir` (files and folders), by name.
fn modules(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    std::fs::read_dir(dir)
        .expect("read a source folder")
        .filter_map(Result::ok)
        .map(|entry| {
            let path = entry.path();
            let name = path
                .file_stem()
                .and_then(|stem| stem.to_str())
                .unwrap_or_default()
                .to_owned();
            (name, path)
        })
        .collect()
}

/// The modules each top-level module of `src` imports (its files and folders together).
fn imports(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    fn files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .expect("read a source folder")
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .collect();
            entries.sort();
            for entry in entries {
                files(&entry, out);
            }
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path.to_owned());
        }
    }
    let mut graph = BTreeMap::new();
    for (name, path) in modules(src) {
        if ["lib", "main", "layers"].contains(&name.as_str()) {
            continue;
        }
        let mut sources = Vec::new();
        files(&path, &mut sources);
        let mut used = BTreeSet::new();
        for file in sources {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            used.extend(imported(&text));
        }
        used.remove(&name);
        graph.entry(name).or_insert_with(BTreeSet::new).extend(used);
    }
    graph
}

/// The parts of the daemon each of its files imports (`super::part`).
fn daemon_imports(daemon: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (name, path) in modules(daemon) {
        // `mod.rs` is the daemon itself (its `super::` is the crate), and the tests are
        // above everything they test.
        if ["mod", "tests"].contains(&name.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read a source file");
        let mut used = imported_after(&text, "super::");
        used.remove(&name);
        graph.insert(name, used);
    }
    graph
}

fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|layer| layer.contains(&module))
}

/// What breaks the plan: a module in no layer, an import of a layer above, a loop.
fn violations(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    violations_of(graph, &LAYERS, "LAYERS")
}

/// What breaks `layers` (named `table` in src/layers.rs).
fn violations_of(
    graph: &BTreeMap<String, BTreeSet<String>>,
    layers: &[&[&str]],
    table: &str,
) -> Vec<String> {
    let mut wrong = Vec::new();
    for (module, used) in graph {
        let Some(own) = layer_of(layers, module) else {
            wrong.push(format!(
                "{module} is in no layer: place it in {table} (src/layers.rs) and in \
                 docs/architecture.md"
            ));
            continue;
        };
        for other in used {
            // The crate root's functions, not a module.
            if !graph.contains_key(other) {
                continue;
            }
            if layer_of(layers, other).is_some_and(|theirs| theirs > own) {
                wrong.push(format!(
                    "{module} (layer {own}) imports {other}, a layer above"
                ));
            }
        }
    }
    // Loops: a depth-first walk that meets a module still on its path.
    fn walk<'g>(
        module: &'g str,
        graph: &'g BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'g str>,
        done: &mut BTreeSet<&'g str>,
        wrong: &mut Vec<String>,
    ) {
        if let Some(start) = path.iter().position(|m| *m == module) {
            wrong.push(format!(
                "import loop: {} -> {module}",
                path[start..].join(" -> ")
            ));
            return;
        }
        if !done.insert(module) {
            return;
        }
        path.push(module);
        for other in graph.get(module).into_iter().flatten() {
            if graph.contains_key(other) {
                walk(other, graph, path, done, wrong);
            }
        }
        path.pop();
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        walk(module, graph, &mut Vec::new(), &mut done, &mut wrong);
    }
    wrong
}

#[test]
fn imports_only_go_down_and_never_in_a_loop() {
    let graph = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "read the crate's modules: {graph:?}");
    let wrong = violations(&graph);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_daemons_parts_import_only_parts_below_them() {
    let graph = daemon_imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/daemon"));
    assert!(
        graph.contains_key("agent"),
        "read the daemon's parts: {graph:?}"
    );
    let wrong = violations_of(&graph, &DAEMON_LAYERS, "DAEMON_LAYERS");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_import_reader_sees_groups_and_paths() {
    let text = "use crate::{\n    clock::{self, Now},\n    config::Jail,\n};\n\
                let x = crate::metrics::Metrics::new();\nuse crate::plural;";
    let found: Vec<String> = imported(text).into_iter().collect();
    assert_eq!(found, ["clock", "config", "metrics", "plural"]);
}

#[test]
fn a_module_that_imports_one_above_is_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("clock.rs"), "use crate::daemon::Agent;").expect("write");
    std::fs::write(dir.path().join("daemon.rs"), "use crate::clock::Now;").expect("write");
    std::fs::write(dir.path().join("newcomer.rs"), "").expect("write");
    let graph = imports(dir.path());
    assert_eq!(graph["clock"], BTreeSet::from(["daemon".to_owned()]));
    let wrong = violations(&graph);
    assert!(
        wrong.contains(&"clock (layer 0) imports daemon, a layer above".to_owned()),
        "{wrong:?}"
    );
    assert!(
        wrong.iter().any(|line| line.starts_with("import loop:")),
        "{wrong:?}"
    );
    assert!(
        wrong
            .iter()
            .any(|line| line.starts_with("newcomer is in no layer")),
        "{wrong:?}"
    );
}
