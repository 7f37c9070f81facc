//! What judging a line costs in allocations, counted by a global allocator, for every
//! built-in filter over its annotated sample log: a text line that no failregex matches
//! costs none, judged live or replayed (`test-filter`). The same holds for a fail2ban
//! filter of one-line buffers (the seed's own `.conf`, through fail2ban's model) on a line
//! without any of its failregexes' literals.
//!
//! Not yet held, and printed for the record: a failure through fail2ban's model costs
//! about 18 (the model copies the line into its buffer, its groups into maps, and its
//! hit's text).
//!
//! Not yet held, and printed by the test for the record (issue 31): a failure costs 0 to
//! 2 (the tracker's per-address room, which grows now and then; a date with an offset),
//! and a JSON line 4 to 11 (the line is parsed into a `serde_json::Value`).
//!
//! Its own test binary, because the counting allocator is global to the binary; it counts
//! the allocations of the test's own thread only.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    path::Path,
};

use ban_agent::{
    detect::{Detector, LineTime},
    fail2ban::{FilterRef, definition},
    filter::{BUILTIN, Filter, FilterSpec, date::DateReader},
    ignore::IgnoreList,
    tracker::Rules,
};

thread_local! {
    // `const`: no lazy set-up, which would allocate inside the allocator.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: every call is passed on to the system allocator as it came.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|count| count.set(count.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in<T>(work: impl FnOnce() -> T) -> (u64, T) {
    let before = ALLOCATIONS.with(Cell::get);
    let value = work();
    (ALLOCATIONS.with(Cell::get) - before, value)
}

/// The sample's lines, each with whether it must yield a failure (`# host: ...`) or not
/// (`# none`).
fn sample(name: &str) -> Vec<(String, bool)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../filters/tests/{name}.log"));
    let text = std::fs::read_to_string(&path).expect("read the sample");
    let mut lines = Vec::new();
    let mut expected = None;
    for line in text.lines() {
        if let Some(note) = line.strip_prefix("# host: ") {
            expected = Some(!note.trim().is_empty());
        } else if line.trim() == "# none" {
            expected = Some(false);
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else if let Some(fails) = expected.take() {
            lines.push((line.to_owned(), fails));
        }
    }
    lines
}

#[test]
fn a_text_line_no_failregex_matches_allocates_nothing() {
    let t0 = 1_795_521_600_000; // 2026-11-24T12:00:00Z
    let mut report = Vec::new();
    let mut skipped_json = 0;
    for (name, text) in BUILTIN {
        let spec: FilterSpec = toml::from_str(text).expect("parses");
        let mut detector = Detector::new(
            Filter::compile(&spec).expect("compiles"),
            DateReader::new(jiff::tz::TimeZone::UTC),
            IgnoreList::default(),
            Rules::default(),
        );
        let lines = sample(name);
        assert!(
            lines.iter().any(|(_, fails)| !fails),
            "{name}: no `none` line"
        );
        // Once over the sample: the regexes' caches and the tracker's tables grow to what
        // these lines need, as they do in the first moments of a run.
        for (line, _) in &lines {
            detector.line(line, t0);
            detector.replay(line, t0);
        }
        for (line, fails) in &lines {
            let (live, _) = allocations_in(|| detector.line(line, t0));
            let (replayed, (_, time)) = allocations_in(|| detector.replay(line, t0));
            // A JSON line that is parsed allocates its values; one without the words a
            // failure needs is not parsed, and allocates nothing.
            let parsed = line.starts_with('{') && time != LineTime::NotRead;
            skipped_json += usize::from(time == LineTime::NotRead);
            let held = *fails || parsed || (live == 0 && replayed == 0);
            let verdict = if held { "ok" } else { "TOO MANY" };
            report.push(format!(
                "{verdict} {name} ({}): {live} judging, {replayed} replaying: {line}",
                if *fails { "failure" } else { "no failure" }
            ));
        }
    }
    eprintln!("allocations per line:\n{}", report.join("\n"));
    assert!(
        skipped_json > 0,
        "no JSON line of the samples was skipped unparsed"
    );
    assert!(
        report.iter().all(|line| line.starts_with("ok")),
        "a line that is no failure allocated:\n{}",
        report.join("\n")
    );
}

#[test]
fn a_fail2ban_filter_allocates_nothing_for_a_line_without_its_literals() {
    let t0 = 1_795_521_600_000; // 2026-11-24T12:00:00Z
    let conf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/fastapi-auth/fail2ban/filter.d/fastapi-auth.conf");
    let reference = FilterRef::parse(&conf.display().to_string()).expect("a reference");
    let filter = definition::read(Path::new("/nonexistent"), &reference)
        .expect("the seed's filter reads")
        .compile(jiff::tz::TimeZone::UTC, 2026)
        .expect("compiles");
    let mut detector = Detector::new(
        filter,
        DateReader::new(jiff::tz::TimeZone::UTC),
        IgnoreList::default(),
        Rules::default(),
    );
    let lines = sample("fastapi-auth");
    for (line, _) in &lines {
        detector.line(line, t0);
    }
    let mut report = Vec::new();
    let mut quiet = 0;
    for (line, fails) in &lines {
        let (live, _) = allocations_in(|| detector.line(line, t0));
        // A line with the failregex's literals (a 401 on /register, say) goes on to the
        // regex, which may copy it; the others must not allocate.
        let literals = line.contains(" - fastapi-auth - ")
            && (line.contains("/login\" 401") || line.contains("/register\" 400"));
        quiet += usize::from(!literals);
        let held = *fails || literals || live == 0;
        report.push(format!(
            "{} ({}): {live}: {line}",
            if held { "ok" } else { "TOO MANY" },
            if *fails { "failure" } else { "no failure" }
        ));
    }
    eprintln!(
        "allocations per line (fail2ban's model):\n{}",
        report.join("\n")
    );
    assert!(quiet > 0, "no line of the sample was without the literals");
    assert!(
        report.iter().all(|line| line.starts_with("ok")),
        "a line without the failregex's literals allocated:\n{}",
        report.join("\n")
    );
}
