use proptest::prelude::*;

use super::*;

/// A message as the filter got it: text, time, stream.
type Got = (String, Option<UnixMs>, Option<Stream>);

/// The messages `lines` make, with what each line was.
fn unwrap_all(unwrapper: &mut Unwrapper, lines: &[&str]) -> (Vec<Got>, Vec<Fed>) {
    let mut messages = Vec::new();
    let fed = lines
        .iter()
        .map(|line| {
            unwrapper.line(line, &mut |m| {
                messages.push((m.text.to_owned(), m.time, m.stream));
            })
        })
        .collect();
    (messages, fed)
}

fn docker_line(log: &str, stream: &str) -> String {
    serde_json::json!({"log": log, "stream": stream, "time": "2026-12-06T17:00:01.123456789Z"})
        .to_string()
}

const AT: UnixMs = 1_796_576_401_123;

#[test]
fn docker_lines_give_the_apps_message_its_time_and_stream() {
    let mut u = Unwrapper::new(LogFormat::Auto, 1024);
    let line = docker_line(
        "INFO:     192.0.2.7:51234 - \"POST /login HTTP/1.1\" 401 Unauthorized\n",
        "stdout",
    );
    let (messages, fed) = unwrap_all(&mut u, &[&line]);
    assert_eq!(u.format(), LogFormat::Docker);
    assert_eq!(fed, [Fed::Message]);
    assert_eq!(
        messages,
        [(
            "INFO:     192.0.2.7:51234 - \"POST /login HTTP/1.1\" 401 Unauthorized".to_owned(),
            Some(AT),
            Some(Stream::Stdout)
        )]
    );
}

#[test]
fn docker_splits_at_16_kib_and_the_parts_are_joined() {
    let mut u = Unwrapper::new(LogFormat::Docker, 64 * 1024);
    let long = format!("{} 192.0.2.8 failed\n", "x".repeat(20_000));
    let (first, rest) = long.split_at(16 * 1024);
    let lines = [docker_line(first, "stderr"), docker_line(rest, "stderr")];
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let (messages, fed) = unwrap_all(&mut u, &refs);
    assert_eq!(fed, [Fed::Partial, Fed::Message]);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0, long.trim_end_matches('\n'));
    assert_eq!(messages[0].2, Some(Stream::Stderr));
}

#[test]
fn cri_lines_are_unwrapped_and_p_parts_joined_per_stream() {
    let mut u = Unwrapper::new(LogFormat::Auto, 1024);
    let lines = [
        "2026-12-06T17:00:01.123456789+00:00 stderr P part one, ",
        "2026-12-06T17:00:01.2Z stdout F an access line from 192.0.2.9",
        "2026-12-06T17:00:01.3Z stderr F part two",
        "2026-12-06T17:00:01.4Z stdout F",
    ];
    let (messages, fed) = unwrap_all(&mut u, &lines);
    assert_eq!(u.format(), LogFormat::Cri);
    assert_eq!(
        fed,
        [Fed::Partial, Fed::Message, Fed::Message, Fed::Message]
    );
    let texts: Vec<(&str, Option<Stream>)> = messages.iter().map(|m| (m.0.as_str(), m.2)).collect();
    assert_eq!(
        texts,
        [
            ("an access line from 192.0.2.9", Some(Stream::Stdout)),
            ("part one, part two", Some(Stream::Stderr)),
            ("", Some(Stream::Stdout)),
        ]
    );
    assert_eq!(messages[1].1, Some(1_796_576_401_300));
}

#[test]
fn a_plain_log_is_passed_through_without_time_or_stream() {
    let mut u = Unwrapper::new(LogFormat::Auto, 1024);
    let lines = [
        "",
        "2026-12-06 17:00:01,123 login failed for 192.0.2.1",
        "{not json",
    ];
    let (messages, fed) = unwrap_all(&mut u, &lines);
    assert_eq!(u.format(), LogFormat::Plain);
    assert_eq!(fed, [Fed::Partial, Fed::Message, Fed::Message]);
    assert_eq!(
        messages[0],
        (
            "2026-12-06 17:00:01,123 login failed for 192.0.2.1".to_owned(),
            None,
            None
        )
    );
    // A JSON app log is plain too: its lines are the app's own.
    let mut json = Unwrapper::new(LogFormat::Auto, 1024);
    unwrap_all(
        &mut json,
        &[r#"{"ip": "192.0.2.1", "event": "login_failed"}"#],
    );
    assert_eq!(json.format(), LogFormat::Plain);
}

#[test]
fn a_line_not_of_the_logs_format_is_counted_and_skipped() {
    let mut u = Unwrapper::new(LogFormat::Docker, 1024);
    let good = docker_line("fine\n", "stdout");
    let (messages, fed) = unwrap_all(
        &mut u,
        &["not json", r#"{"log":"x\n","stream":"stdin"}"#, &good],
    );
    assert_eq!(fed, [Fed::Malformed, Fed::Malformed, Fed::Message]);
    assert_eq!(messages.len(), 1);
    assert_eq!(u.stats().malformed, 2);
    let mut cri = Unwrapper::new(LogFormat::Cri, 1024);
    let (_, fed) = unwrap_all(
        &mut cri,
        &["2026-12-06T17:00:01Z stdout X what", "yesterday stdout F x"],
    );
    assert_eq!(fed, [Fed::Malformed, Fed::Malformed]);
}

#[test]
fn a_flood_of_parts_without_an_end_is_cut_counted_and_holds_no_more_than_the_limit() {
    let max = 4096;
    let mut u = Unwrapper::new(LogFormat::Cri, max);
    let part = format!("2026-12-06T17:00:01Z stdout P {}", "y".repeat(1000));
    let mut messages = 0;
    for _ in 0..10_000 {
        u.line(&part, &mut |_| messages += 1);
        assert!(u.joining[0].text.len() <= max);
    }
    assert_eq!(messages, 0);
    assert_eq!(u.stats().cut, 1, "one message, cut once");
    // Its end is dropped with it; the next message is whole.
    u.line(
        "2026-12-06T17:00:02Z stdout F end of the flood",
        &mut |_| messages += 1,
    );
    let mut next = Vec::new();
    u.line("2026-12-06T17:00:03Z stdout F 192.0.2.3 failed", &mut |m| {
        next.push(m.text.to_owned())
    });
    assert_eq!(messages, 0);
    assert_eq!(next, ["192.0.2.3 failed"]);
}

#[test]
fn ansi_colours_are_taken_out_of_a_containers_messages() {
    let mut u = Unwrapper::new(LogFormat::Docker, 1024);
    let coloured = "\u{1b}[32mINFO\u{1b}[0m:     192.0.2.7:51234 - \"\u{1b}[1mPOST /login HTTP/1.1\u{1b}[0m\" \u{1b}[31m401 Unauthorized\u{1b}[0m\r\n";
    let (messages, _) = unwrap_all(&mut u, &[&docker_line(coloured, "stdout")]);
    assert_eq!(
        messages[0].0,
        "INFO:     192.0.2.7:51234 - \"POST /login HTTP/1.1\" 401 Unauthorized"
    );
    // Raw in CRI's lines, and in a message joined from its parts.
    let mut u = Unwrapper::new(LogFormat::Cri, 1024);
    let (messages, _) = unwrap_all(
        &mut u,
        &[
            "2026-12-06T17:00:01Z stdout P \u{1b}[32mIN",
            "2026-12-06T17:00:01Z stdout F FO\u{1b}[0m: ok",
        ],
    );
    assert_eq!(messages[0].0, "INFO: ok");
    let mut out = String::new();
    strip_ansi(
        "a\u{1b}]0;title\u{7}b\u{1b}]8;;x\u{1b}\\c\u{1b}=d",
        &mut out,
    );
    assert_eq!(out, "abcd");
}

#[test]
fn a_jail_reads_the_streams_it_names() {
    assert!(Streams::Both.admits(Some(Stream::Stderr)));
    assert!(Streams::Stdout.admits(Some(Stream::Stdout)));
    assert!(!Streams::Stdout.admits(Some(Stream::Stderr)));
    assert!(!Streams::Stderr.admits(Some(Stream::Stdout)));
    assert!(Streams::Stderr.admits(None), "a plain log has no stream");
    for format in [
        LogFormat::Auto,
        LogFormat::Plain,
        LogFormat::Docker,
        LogFormat::Cri,
    ] {
        assert_eq!(LogFormat::from_name(format.name()), Some(format));
    }
    for streams in [Streams::Stdout, Streams::Stderr, Streams::Both] {
        assert_eq!(Streams::from_name(streams.name()), Some(streams));
    }
}

proptest! {
    /// However the runtime cuts a message into parts, the filter gets it whole.
    #[test]
    fn any_split_into_parts_gives_the_message_back(
        message in "[ -~]{0,300}",
        cuts in proptest::collection::vec(0usize..300, 0..6),
        cri_format in any::<bool>(),
    ) {
        let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c < message.len()).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut parts = Vec::new();
        let mut from = 0;
        for cut in cuts.into_iter().chain([message.len()]) {
            parts.push(&message[from..cut]);
            from = cut;
        }
        let last = parts.len() - 1;
        let lines: Vec<String> = parts
            .iter()
            .enumerate()
            .map(|(n, part)| {
                if cri_format {
                    let tag = if n == last { "F" } else { "P" };
                    format!("2026-12-06T17:00:01Z stdout {tag} {part}")
                } else {
                    let end = if n == last { "\n" } else { "" };
                    docker_line(&format!("{part}{end}"), "stdout")
                }
            })
            .collect();
        let format = if cri_format { LogFormat::Cri } else { LogFormat::Docker };
        let mut u = Unwrapper::new(format, 1024);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let (messages, _) = unwrap_all(&mut u, &refs);
        prop_assert_eq!(messages.len(), 1);
        prop_assert_eq!(&messages[0].0, &message);
    }
}

#[test]
fn dockerds_escapes_are_read_as_go_writes_them() {
    let mut u = Unwrapper::new(LogFormat::Docker, 1024);
    let line = r#"{"log":"a \u003cb\u003e \"c\" \\ d \u00e9\ud83d\ude00 \t\n","stream":"stderr","time":"2026-12-06T17:00:01.000000001Z"}"#;
    let (messages, fed) = unwrap_all(&mut u, &[line]);
    assert_eq!(fed, [Fed::Message]);
    assert_eq!(messages[0].0, "a <b> \"c\" \\ d é😀 \t");
    assert_eq!(messages[0].1, Some(1_796_576_401_000));
    // Another layout (attrs, from --log-opt labels) is read by serde_json.
    let with_attrs = r#"{"log":"x\n","stream":"stdout","attrs":{"tier":"front"},"time":"2026-12-06T17:00:01.5Z"}"#;
    let (messages, _) = unwrap_all(&mut u, &[with_attrs]);
    assert_eq!(
        messages[0],
        (
            "x".to_owned(),
            Some(1_796_576_401_500),
            Some(Stream::Stdout)
        )
    );
    // A string cut short is not a line of the format.
    let (_, fed) = unwrap_all(&mut u, &[r#"{"log":"unterminated\"#]);
    assert_eq!(fed, [Fed::Malformed]);
}

#[test]
fn times_in_one_second_are_read_from_their_fraction() {
    let mut times = Times::default();
    let read = |times: &mut Times, text: &str| times.read(text).expect(text);
    let whole = |text: &str| {
        text.parse::<jiff::Timestamp>()
            .expect(text)
            .as_millisecond()
    };
    for text in [
        "2026-12-06T17:00:01.123456789Z",
        "2026-12-06T17:00:01.9Z",
        "2026-12-06T17:00:01.05Z",
        "2026-12-06T17:00:01.999999999Z",
        "2026-12-06T17:00:02.000000001Z",
        "2026-12-06T17:00:02.5+01:00",
        "2026-12-06T17:00:02.25+01:00",
        "2026-12-06T17:00:02Z",
        "2026-12-06T17:00:02.75Z",
    ] {
        assert_eq!(read(&mut times, text), whole(text), "{text}");
    }
    assert_eq!(times.read("yesterday"), None);
}

proptest! {
    /// Any string, as serde_json escapes it, is read back whole by the hand-written path.
    #[test]
    fn any_escaped_message_reads_back(message in "\\PC{0,80}", control in any::<char>()) {
        let message = format!("{message}{control}\n");
        let line = serde_json::json!({"log": message, "stream": "stdout", "time": "2026-12-06T17:00:01Z"})
            .to_string();
        let mut unescaped = String::new();
        let part = docker_layout(&line, &mut Times::default(), &mut unescaped);
        prop_assert!(part.is_some(), "{}", line);
        let part = part.expect("checked");
        prop_assert_eq!(part.text.as_ref(), message.as_str());
    }
}

#[test]
fn go_escapes_and_surrogates_are_read() {
    let read = |raw: &str| {
        let mut out = String::new();
        let quoted = format!("{raw}\"");
        json_string(&quoted, &mut out).map(|read| read.text.to_owned())
    };
    assert_eq!(
        read(r"a\u003cb\u003e \ud83d\ude00 \ud800x").as_deref(),
        Some("a<b> 😀 \u{fffd}x")
    );
    assert_eq!(read(r"\q"), None);
    assert_eq!(read(r"\u12"), None);
}
