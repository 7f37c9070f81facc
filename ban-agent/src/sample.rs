//! Generates FastAPI auth logs as the app writes them, or as what serves it writes its
//! access log (uvicorn, gunicorn, nginx, Caddy, Traefik: one [`Format`] per built-in
//! filter), for the detection benchmarks, the `test-filter` tests and demos: the mix of
//! requests is fixed by a seed, and the numbers that matter (lines, failure lines,
//! clients) are returned so they can be checked.

use std::io::{self, Write};

use jiff::{Timestamp, tz::TimeZone};

use crate::clock::UnixMs;

/// What to generate.
#[derive(Clone, Debug)]
pub struct SampleSpec {
    pub lines: u64,
    /// Share of lines that are failures (401 on /login, 400 on /register), in percent.
    pub failure_percent: u64,
    /// Share of clients that use IPv6, in percent.
    pub ipv6_percent: u64,
    /// Distinct client addresses.
    pub clients: u64,
    /// Clients that most failures come from (the brute-forcers), among `clients`.
    pub attackers: u64,
    /// Time of the last line; lines are `spacing_ms` apart before it.
    pub end: UnixMs,
    pub spacing_ms: i64,
    pub seed: u64,
    /// Who writes the log, and so its lines' format.
    pub format: Format,
}

/// The format of a generated log's lines: the writer's, as the built-in filter of the
/// same name reads it ([`Format::builtin`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// The seed app's middleware through Python's logging:
    /// `2026-11-24 12:00:00,001 - fastapi-auth - INFO - 203.0.113.7 - "POST /login" 401 - 0.0087s`
    #[default]
    FastApi,
    /// uvicorn's access log (no time): `INFO:     203.0.113.7:51234 - "POST /login HTTP/1.1" 401 Unauthorized`
    Uvicorn,
    /// gunicorn's default `access_log_format`:
    /// `203.0.113.7 - - [24/Nov/2026:12:00:00 +0000] "POST /login HTTP/1.1" 401 31 "-" "curl/8.5.0"`
    Gunicorn,
    /// nginx's `combined` format (the same fields as gunicorn's, a user agent of a browser's length).
    Nginx,
    /// Caddy's JSON access log, one object per line.
    Caddy,
    /// Traefik's `common` access log: combined, then the request count, router, backend
    /// and duration.
    Traefik,
}

impl Format {
    /// Every format, in the order of the built-in filters.
    pub const ALL: [Self; 6] = [
        Self::FastApi,
        Self::Uvicorn,
        Self::Gunicorn,
        Self::Nginx,
        Self::Caddy,
        Self::Traefik,
    ];

    /// The built-in filter that reads this format (`filter = "NAME"`).
    pub fn builtin(self) -> &'static str {
        match self {
            Self::FastApi => "fastapi-auth",
            Self::Uvicorn => "uvicorn",
            Self::Gunicorn => "gunicorn",
            Self::Nginx => "nginx",
            Self::Caddy => "caddy",
            Self::Traefik => "traefik",
        }
    }
}

impl SampleSpec {
    /// The benchmark's log: 1M lines, 15% failures, 2% IPv6 clients, 300k clients.
    pub fn benchmark(end: UnixMs) -> Self {
        Self {
            lines: 1_000_000,
            failure_percent: 15,
            ipv6_percent: 2,
            clients: 300_000,
            attackers: 2_000,
            end,
            spacing_ms: 1,
            seed: 0x00ba_da55,
            format: Format::FastApi,
        }
    }

    /// An attack: 1M lines, each from a different IPv4 address (a botnet, not a few
    /// clients trying again), 70% of them failures, the rest ordinary requests such as
    /// `/items` and `/health`.
    pub fn botnet(end: UnixMs) -> Self {
        Self {
            lines: 1_000_000,
            failure_percent: 70,
            ipv6_percent: 0,
            clients: 1_000_000,
            attackers: 1_000_000,
            end,
            spacing_ms: 1,
            seed: 0x0b07_0e75,
            format: Format::FastApi,
        }
    }
}

/// What was generated.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleSummary {
    pub lines: u64,
    /// Lines the shipped filter must report as failures.
    pub failures: u64,
    pub ipv6_lines: u64,
    pub bytes: u64,
}

/// Writes the log described by `spec` to `out`, with times in `zone` (as Python's
/// logging writes local time without a zone).
pub fn write_log(
    spec: &SampleSpec,
    zone: &TimeZone,
    out: &mut impl Write,
) -> io::Result<SampleSummary> {
    let mut rng = SplitMix(spec.seed);
    let mut summary = SampleSummary::default();
    let first = spec.end - spec.spacing_ms * spec.lines.saturating_sub(1) as i64;
    let mut line = String::with_capacity(160);
    for i in 0..spec.lines {
        let at = first + spec.spacing_ms * i as i64;
        let failure = rng.below(100) < spec.failure_percent;
        // Every client appears once first; after that, failures come mostly from the
        // attackers and the rest from anyone.
        let client = if i < spec.clients {
            i
        } else if failure && rng.below(2) == 0 {
            rng.below(spec.attackers.max(1))
        } else {
            rng.below(spec.clients.max(1))
        };
        let ipv6 = client % 100 < spec.ipv6_percent;
        let (method, path, status) = if failure {
            if rng.below(3) < 2 {
                ("POST", "/login", 401)
            } else {
                ("POST", "/register", 400)
            }
        } else {
            [
                ("POST", "/login", 200),
                ("POST", "/register", 201),
                ("POST", "/login", 422),
                ("GET", "/items", 200),
                ("GET", "/login", 200),
                ("POST", "/register", 409),
                ("GET", "/health", 200),
            ][rng.below(7) as usize]
        };
        let request = LoggedRequest {
            at,
            client,
            ipv6,
            method,
            path,
            status,
            micros: rng.below(90_000),
        };
        line.clear();
        request.write(spec.format, zone, &mut line);
        out.write_all(line.as_bytes())?;
        summary.lines += 1;
        summary.failures += u64::from(failure);
        summary.ipv6_lines += u64::from(ipv6);
        summary.bytes += line.len() as u64;
    }
    out.flush()?;
    Ok(summary)
}

/// One logged request.
struct LoggedRequest {
    at: UnixMs,
    client: u64,
    ipv6: bool,
    method: &'static str,
    path: &'static str,
    status: u16,
    micros: u64,
}

impl LoggedRequest {
    /// The line `format`'s writer writes for it, with its `\n`.
    fn write(&self, format: Format, zone: &TimeZone, line: &mut String) {
        use std::fmt::Write as _;
        let time = Timestamp::from_millisecond(self.at)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .to_zoned(zone.clone());
        // An ephemeral port, always five digits (so that uvicorn's `ADDRESS:PORT` of an
        // IPv6 client ends in a group no address has).
        let port = 32_768 + self.micros % 28_000;
        let (method, path, status) = (self.method, self.path, self.status);
        let bytes = 20 + self.micros % 60;
        let _ = match format {
            Format::FastApi => {
                let _ = write!(
                    line,
                    "{} - fastapi-auth - INFO - ",
                    time.strftime("%Y-%m-%d %H:%M:%S,%3f")
                );
                self.address(line);
                writeln!(
                    line,
                    " - \"{method} {path}\" {status} - 0.{:04}s",
                    self.micros % 10_000
                )
            }
            Format::Uvicorn => {
                line.push_str("INFO:     ");
                self.address(line);
                writeln!(
                    line,
                    ":{port} - \"{method} {path} HTTP/1.1\" {status} {}",
                    reason(status)
                )
            }
            Format::Gunicorn | Format::Nginx | Format::Traefik => {
                self.address(line);
                let _ = write!(
                    line,
                    " - - [{}] \"{method} {path} HTTP/1.1\" {status} {bytes} \"-\" ",
                    time.strftime("%d/%b/%Y:%H:%M:%S %z")
                );
                match format {
                    Format::Gunicorn => writeln!(line, "\"python-httpx/0.27.0\""),
                    Format::Traefik => writeln!(
                        line,
                        "\"curl/8.5.0\" {} \"login@docker\" \"http://198.51.100.10:8000\" {}ms",
                        self.client % 100_000 + 1,
                        self.micros / 1_000
                    ),
                    _ => writeln!(
                        line,
                        "\"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\""
                    ),
                }
            }
            Format::Caddy => {
                let _ = write!(
                    line,
                    r#"{{"level":"info","ts":{}.{:03},"logger":"http.log.access.log0","msg":"handled request","request":{{"remote_ip":""#,
                    self.at.div_euclid(1_000),
                    self.at.rem_euclid(1_000)
                );
                self.address(line);
                let _ = write!(line, r#"","remote_port":"{port}","client_ip":""#);
                self.address(line);
                writeln!(
                    line,
                    r#"","proto":"HTTP/1.1","method":"{method}","host":"example.com","uri":"{path}","headers":{{"User-Agent":["curl/8.5.0"],"Accept":["*/*"]}}}},"bytes_read":0,"user_id":"","duration":0.{:06},"size":{bytes},"status":{status},"resp_headers":{{"Server":["Caddy"],"Content-Type":["application/json"]}}}}"#,
                    self.micros
                )
            }
        };
    }

    /// The client's address, as every format writes it (IPv6 without brackets).
    fn address(&self, line: &mut String) {
        use std::fmt::Write as _;
        if self.ipv6 {
            let _ = write!(
                line,
                "2001:db8:{:x}::{:x}",
                self.client >> 16,
                self.client & 0xffff
            );
        } else {
            // 10.0.0.0/8 holds the 300k clients; the log is never turned into traffic.
            let _ = write!(
                line,
                "10.{}.{}.{}",
                (self.client >> 16) & 0xff,
                (self.client >> 8) & 0xff,
                self.client & 0xff
            );
        }
    }
}

/// The reason phrase uvicorn writes after a status.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        _ => "",
    }
}

/// splitmix64: a fixed, documented sequence, so that a seed gives the same log whatever
/// the version of any random-number crate.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{detect, tracker::Rules};

    #[test]
    fn the_shipped_filter_finds_exactly_the_failures_written() {
        let spec = SampleSpec {
            lines: 20_000,
            clients: 5_000,
            attackers: 50,
            ..SampleSpec::benchmark(1_795_521_600_000)
        };
        let mut log = Vec::new();
        let summary = write_log(&spec, &TimeZone::UTC, &mut log).expect("write");
        assert_eq!(summary.lines, 20_000);
        let share = summary.failures as f64 / summary.lines as f64;
        assert!((0.14..0.16).contains(&share), "{share}");
        let v6 = summary.ipv6_lines as f64 / summary.lines as f64;
        assert!((0.01..0.03).contains(&v6), "{v6}");
        let mut detector = detect::fastapi(Rules::default(), TimeZone::UTC);
        let text = String::from_utf8(log).expect("utf-8");
        for line in text.lines() {
            detector.line(line, spec.end);
        }
        assert_eq!(detector.stats().failures(), summary.failures);
        assert!(detector.stats().bans > 0, "the attackers get banned");
    }

    /// Each format's log, read by the built-in filter of its name, gives exactly the
    /// failures written: the generator writes what the filters' annotated samples hold.
    #[test]
    fn each_built_in_filter_finds_exactly_the_failures_written_in_its_format() {
        for format in Format::ALL {
            let spec = SampleSpec {
                lines: 5_000,
                clients: 1_000,
                attackers: 20,
                format,
                ..SampleSpec::benchmark(1_795_521_600_000)
            };
            let mut log = Vec::new();
            let summary = write_log(&spec, &TimeZone::UTC, &mut log).expect("write");
            assert!(summary.ipv6_lines > 0, "{format:?}");
            let text = crate::filter::builtin(format.builtin()).expect("built in");
            let filter_spec: crate::filter::FilterSpec = toml::from_str(text).expect("parses");
            let filter = crate::filter::Filter::compile(&filter_spec).expect("compiles");
            let mut detector = detect::Detector::new(
                filter,
                crate::filter::date::DateReader::with_pattern(
                    crate::filter::date::DatePattern::Auto,
                    TimeZone::UTC,
                ),
                crate::ignore::IgnoreList::default(),
                Rules::default(),
            );
            let text = String::from_utf8(log).expect("utf-8");
            for line in text.lines() {
                detector.line(line, spec.end);
            }
            assert_eq!(detector.stats().failures(), summary.failures, "{format:?}");
            assert!(
                detector.stats().bans > 0,
                "{format:?}: the attackers get banned"
            );
        }
    }

    #[test]
    fn a_botnet_log_comes_from_a_different_address_each_line() {
        let spec = SampleSpec {
            lines: 20_000,
            clients: 20_000,
            attackers: 20_000,
            ..SampleSpec::botnet(1_795_521_600_000)
        };
        let mut log = Vec::new();
        let summary = write_log(&spec, &TimeZone::UTC, &mut log).expect("write");
        let text = String::from_utf8(log).expect("utf-8");
        let addresses: std::collections::HashSet<&str> = text
            .lines()
            .filter_map(|line| line.split(" - ").nth(3))
            .collect();
        assert_eq!(addresses.len(), 20_000);
        assert!(text.contains("/health") && text.contains("/items"));
        let share = summary.failures as f64 / summary.lines as f64;
        assert!((0.68..0.72).contains(&share), "{share}");
        let mut detector = detect::fastapi(Rules::default(), TimeZone::UTC);
        for line in text.lines() {
            detector.line(line, spec.end);
        }
        assert_eq!(detector.stats().failures(), summary.failures);
        assert_eq!(detector.stats().bans, 0, "nobody fails twice");
    }
}
