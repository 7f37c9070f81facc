//! Container logs, unwrapped before the filter. A container runtime wraps each line the
//! app writes: Docker's json-file driver as `{"log":"...\n","stream":"stderr","time":...}`,
//! containerd, CRI-O and podman's k8s-file as `TIME STREAM P|F MESSAGE`. An
//! [`Unwrapper`] takes the lines of such a file and gives the app's own messages, each
//! with the runtime's time and stream, so that every filter (ours or fail2ban's) reads a
//! container's output as it reads a plain log.
//!
//! - The format is told from the first line with [`LogFormat::Auto`].
//! - A message the runtime split (Docker at 16 KiB, CRI's `P` lines) is joined, per
//!   stream, up to `max_message` bytes; a longer one is cut (counted, its rest dropped up
//!   to its end), so that a flood of partial lines holds at most two messages in memory.
//! - ANSI escapes (uvicorn colours its level when the container has a TTY) are taken
//!   out of a container's messages.
//! - A line that is not of the file's format is counted as malformed and skipped.

use std::borrow::Cow;

use crate::clock::UnixMs;

/// How the lines of a log are wrapped (a jail's `log_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Told from the first line: Docker's, CRI's, or plain.
    #[default]
    Auto,
    /// The app's own lines.
    Plain,
    /// Docker's json-file driver.
    Docker,
    /// The CRI format of containerd, CRI-O, the kubelet's `/var/log/pods`, and podman's
    /// k8s-file driver.
    Cri,
}

impl LogFormat {
    /// The configuration's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Plain => "plain",
            Self::Docker => "docker",
            Self::Cri => "cri",
        }
    }

    /// From the configuration's word.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Auto, Self::Plain, Self::Docker, Self::Cri]
            .into_iter()
            .find(|format| format.name() == name)
    }
}

/// The stream a container's message was written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Stdout => 0,
            Self::Stderr => 1,
        }
    }
}

/// Which of a container's streams a jail reads (a jail's `stream`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Streams {
    Stdout,
    Stderr,
    /// Both (uvicorn writes its access log to stdout and its errors to stderr).
    #[default]
    Both,
}

impl Streams {
    /// The configuration's word for it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Both => "both",
        }
    }

    /// From the configuration's word.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Stdout, Self::Stderr, Self::Both]
            .into_iter()
            .find(|streams| streams.name() == name)
    }

    /// Whether a message of `stream` is read (a plain log's lines, of no stream, always).
    pub fn admits(self, stream: Option<Stream>) -> bool {
        match (self, stream) {
            (Self::Both, _) | (_, None) => true,
            (Self::Stdout, Some(stream)) => stream == Stream::Stdout,
            (Self::Stderr, Some(stream)) => stream == Stream::Stderr,
        }
    }
}

/// One message of the app, as its filter reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message<'a> {
    pub text: &'a str,
    /// The runtime's time of it; `None` in a plain log (the filter reads it from the text).
    pub time: Option<UnixMs>,
    /// `None` in a plain log.
    pub stream: Option<Stream>,
}

/// What unwrapping met so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UnwrapStats {
    /// Messages given to the filter.
    pub messages: u64,
    /// Lines not of the log's format, skipped.
    pub malformed: u64,
    /// Messages longer than the limit, cut.
    pub cut: u64,
}

/// What one line was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// A message, given to the sink.
    Message,
    /// A part of a message still being joined (or of one being cut).
    Partial,
    /// Not of the log's format: skipped.
    Malformed,
}

/// A message being joined from its parts, in one stream.
#[derive(Default)]
struct Joining {
    text: String,
    /// The message went past the limit: its further parts are dropped up to its end.
    cutting: bool,
}

/// Turns the lines of one log into the app's messages; see the module's documentation.
pub struct Unwrapper {
    format: LogFormat,
    max_message: usize,
    /// Per stream (stdout, stderr): the runtime interleaves the parts of both.
    joining: [Joining; 2],
    /// A message without its ANSI escapes.
    clean: String,
    /// The runtime's times, read fast while they share their second.
    times: Times,
    /// A message with its JSON escapes replaced (kept, so that no line allocates).
    unescaped: String,
    stats: UnwrapStats,
}

/// One container line, its wrapper read.
struct Part<'a> {
    text: Cow<'a, str>,
    stream: Stream,
    time: Option<UnixMs>,
    /// The last part of its message (Docker: it ends in `\n`; CRI: `F`).
    last: bool,
    /// It holds an ESC: it may have ANSI escapes to take out.
    ansi: bool,
}

impl Unwrapper {
    /// `max_message`: the longest message joined from parts (a jail's line limit).
    pub fn new(format: LogFormat, max_message: usize) -> Self {
        Self {
            format,
            max_message: max_message.max(1),
            joining: [Joining::default(), Joining::default()],
            clean: String::new(),
            times: Times::default(),
            unescaped: String::new(),
            stats: UnwrapStats::default(),
        }
    }

    /// The log's format: [`LogFormat::Auto`] until a line told it.
    pub fn format(&self) -> LogFormat {
        self.format
    }

    pub fn stats(&self) -> UnwrapStats {
        self.stats
    }

    /// Reads one line of the log; gives `sink` the message it completes, if any.
    pub fn line(&mut self, line: &str, sink: &mut dyn FnMut(Message<'_>)) -> Fed {
        if self.format == LogFormat::Auto {
            if line.trim().is_empty() {
                return Fed::Partial;
            }
            self.format = detect(line);
        }
        if matches!(self.format, LogFormat::Auto | LogFormat::Plain) {
            self.stats.messages += 1;
            sink(Message {
                text: line,
                time: None,
                stream: None,
            });
            return Fed::Message;
        }
        // Taken out while the part may borrow it, and put back: no line allocates.
        let mut unescaped = std::mem::take(&mut self.unescaped);
        let part = match self.format {
            LogFormat::Docker => docker(line, &mut self.times, &mut unescaped),
            LogFormat::Cri => cri(line, &mut self.times),
            // Given whole above.
            LogFormat::Auto | LogFormat::Plain => None,
        };
        let fed = match part {
            Some(part) => self.part(part, sink),
            None => {
                self.stats.malformed += 1;
                Fed::Malformed
            }
        };
        self.unescaped = unescaped;
        fed
    }

    fn part(&mut self, part: Part<'_>, sink: &mut dyn FnMut(Message<'_>)) -> Fed {
        let joining = &mut self.joining[part.stream.index()];
        if !joining.cutting && joining.text.len() + part.text.len() > self.max_message {
            joining.text = String::new();
            joining.cutting = true;
            self.stats.cut += 1;
        }
        if joining.cutting {
            if part.last {
                joining.cutting = false;
            }
            return Fed::Partial;
        }
        if !part.last {
            joining.text.push_str(&part.text);
            return Fed::Partial;
        }
        let (whole, ansi): (Cow<'_, str>, bool) = if joining.text.is_empty() {
            (part.text, part.ansi)
        } else {
            joining.text.push_str(&part.text);
            let whole = std::mem::take(&mut joining.text);
            let ansi = has_esc(&whole);
            (Cow::Owned(whole), ansi)
        };
        let text = whole.strip_suffix('\n').unwrap_or(&whole);
        let text = text.strip_suffix('\r').unwrap_or(text);
        let text = if ansi {
            strip_ansi(text, &mut self.clean);
            self.clean.as_str()
        } else {
            text
        };
        self.stats.messages += 1;
        sink(Message {
            text,
            time: part.time,
            stream: Some(part.stream),
        });
        Fed::Message
    }
}

/// The format the first line of a log is in.
fn detect(line: &str) -> LogFormat {
    let mut times = Times::default();
    if line.starts_with('{') && docker(line, &mut times, &mut String::new()).is_some() {
        LogFormat::Docker
    } else if cri(line, &mut times).is_some() {
        LogFormat::Cri
    } else {
        LogFormat::Plain
    }
}

/// A line of Docker's json-file driver: read by hand in the layout dockerd writes
/// (`{"log":"...","stream":"...","time":"..."}`), by serde_json in any other.
fn docker<'a>(line: &'a str, times: &mut Times, unescaped: &'a mut String) -> Option<Part<'a>> {
    if let Some(part) = docker_layout(line, times, unescaped) {
        return Some(part);
    }
    #[derive(serde::Deserialize)]
    struct DockerLine<'a> {
        #[serde(borrow)]
        log: Cow<'a, str>,
        #[serde(borrow)]
        stream: Cow<'a, str>,
        #[serde(borrow, default)]
        time: Option<Cow<'a, str>>,
    }
    let parsed: DockerLine<'_> = serde_json::from_str(line).ok()?;
    let stream = Stream::from_name(&parsed.stream)?;
    Some(Part {
        last: parsed.log.ends_with('\n'),
        ansi: has_esc(&parsed.log),
        time: parsed.time.as_deref().and_then(|text| times.read(text)),
        text: parsed.log,
        stream,
    })
}

/// dockerd's own layout, without a JSON parser. serde_json over every line cost more than
/// the filter itself (a million access lines: 0.70 s plain, 1.06 s wrapped), so the three
/// fields are cut where dockerd puts them and only the message is unescaped; `None` for
/// anything else (other keys, another order, `attrs`), which serde_json then reads.
fn docker_layout<'a>(
    line: &'a str,
    times: &mut Times,
    unescaped: &'a mut String,
) -> Option<Part<'a>> {
    let rest = line.strip_prefix("{\"log\":\"")?;
    let JsonString { text, rest, ansi } = json_string(rest, unescaped)?;
    let rest = rest.strip_prefix(",\"stream\":\"")?;
    let (stream, rest) = if let Some(rest) = rest.strip_prefix("stdout\"") {
        (Stream::Stdout, rest)
    } else {
        (Stream::Stderr, rest.strip_prefix("stderr\"")?)
    };
    let time = rest
        .strip_prefix(",\"time\":\"")?
        .trim_end()
        .strip_suffix("\"}")?;
    // Not a time (more keys after it, another layout): serde_json reads the line.
    let time = times.read(time)?;
    Some(Part {
        last: text.ends_with('\n'),
        ansi,
        time: Some(time),
        text: Cow::Borrowed(text),
        stream,
    })
}

/// A JSON string read by [`json_string`].
struct JsonString<'a> {
    text: &'a str,
    /// What follows its closing quote.
    rest: &'a str,
    /// It holds an ESC (as `\u001b`, as Go writes it, or raw): it may have ANSI escapes.
    ansi: bool,
}

/// The JSON string at the start of `text` (its opening quote taken off), unescaped, in one
/// pass: without a backslash in it, the string is `text`'s own; with, it is written into
/// `unescaped` while it is read. `None` for a string without its end or with an escape
/// JSON does not have. Written here rather than through serde_json (which would need the
/// string copied into a quoted one first): it runs on nearly every access line, whose
/// request is quoted.
fn json_string<'a>(text: &'a str, unescaped: &'a mut String) -> Option<JsonString<'a>> {
    let bytes = text.as_bytes();
    let mut at = 0;
    // Where the text not yet copied into `unescaped` starts, once there is a backslash.
    let mut copied_to = None;
    let mut ansi = false;
    loop {
        let found = at + memchr::memchr3(b'"', b'\\', 0x1b, &bytes[at..])?;
        match bytes[found] {
            b'"' => {
                let rest = &text[found + 1..];
                let Some(from) = copied_to else {
                    return Some(JsonString {
                        text: &text[..found],
                        rest,
                        ansi,
                    });
                };
                unescaped.push_str(&text[from..found]);
                return Some(JsonString {
                    text: unescaped.as_str(),
                    rest,
                    ansi,
                });
            }
            0x1b => {
                ansi = true;
                at = found + 1;
            }
            _ => {
                let from = copied_to.unwrap_or_else(|| {
                    unescaped.clear();
                    0
                });
                unescaped.push_str(&text[from..found]);
                let letter = *bytes.get(found + 1)?;
                at = if letter == b'u' {
                    let (c, after) = unicode_escape(&text[found + 2..])?;
                    ansi |= c == '\u{1b}';
                    unescaped.push(c);
                    text.len() - after.len()
                } else {
                    unescaped.push(char::from(escaped_byte(letter)?));
                    found + 2
                };
                copied_to = Some(at);
            }
        }
    }
}

/// The byte a one-letter JSON escape stands for (`n` of `\n`); `None` for a letter JSON
/// does not have (`u` is read by [`unicode_escape`]).
fn escaped_byte(letter: u8) -> Option<u8> {
    match letter {
        b'"' | b'\\' | b'/' => Some(letter),
        b'b' => Some(0x08),
        b'f' => Some(0x0c),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        _ => None,
    }
}

/// The character of a `\uXXXX` escape (its 4 hex digits at the start of `text`), with
/// the low half of a surrogate pair that follows; and the text after it. A lone surrogate
/// is U+FFFD, as serde_json and Go read it.
fn unicode_escape(text: &str) -> Option<(char, &str)> {
    let hex = |text: &str| u32::from_str_radix(text.get(..4)?, 16).ok();
    let high = hex(text)?;
    let rest = &text[4..];
    if !(0xD800..0xDC00).contains(&high) {
        return Some((char::from_u32(high).unwrap_or('\u{fffd}'), rest));
    }
    let low = rest.strip_prefix("\\u").and_then(hex);
    match low {
        Some(low) if (0xDC00..0xE000).contains(&low) => {
            let c = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
            Some((char::from_u32(c).unwrap_or('\u{fffd}'), &rest[6..]))
        }
        _ => Some(('\u{fffd}', rest)),
    }
}

/// A line of the CRI format: `TIME STREAM TAG MESSAGE`, TAG `P` (a part) or `F` (the
/// last), possibly followed by `:`-separated flags.
fn cri<'a>(line: &'a str, times: &mut Times) -> Option<Part<'a>> {
    let mut fields = line.splitn(4, ' ');
    let at = times.read(fields.next()?)?;
    let stream = Stream::from_name(fields.next()?)?;
    let tag = fields.next()?;
    let last = match tag.split(':').next()? {
        "F" => true,
        "P" => false,
        _ => return None,
    };
    let text = fields.next().unwrap_or("");
    Some(Part {
        ansi: has_esc(text),
        text: Cow::Borrowed(text),
        stream,
        time: Some(at),
        last,
    })
}

/// Reads the runtimes' RFC 3339 times (`2026-12-06T17:00:01.123456789Z`, or with an
/// offset) in milliseconds. Lines written in one second share everything up to the
/// fraction: that second is parsed once (by jiff), and the next lines only add their
/// milliseconds.
#[derive(Default)]
struct Times {
    /// `YYYY-MM-DDTHH:MM:SS` and the zone after the fraction (`Z`, `+00:00`) of the last
    /// time parsed whole, and that second in milliseconds.
    /// (A fixed-size array: comparing it is a few loads, where a `str`'s prefix is a call.)
    second: Option<[u8; 19]>,
    zone: String,
    at: UnixMs,
}

impl Times {
    fn read(&mut self, text: &str) -> Option<UnixMs> {
        if let Some(at) = self.same_second(text) {
            return Some(at);
        }
        let at = text.parse::<jiff::Timestamp>().ok()?.as_millisecond();
        // Remember the second, when the time is in the usual shape.
        if let Some((second, fraction_and_zone)) = text.split_once('.')
            && let Ok(second) = <[u8; 19]>::try_from(second.as_bytes())
        {
            let digits = fraction_and_zone
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            let fraction = millis(&fraction_and_zone.as_bytes()[..digits]);
            self.second = Some(second);
            self.zone.clear();
            self.zone.push_str(&fraction_and_zone[digits..]);
            self.at = at - fraction;
        }
        Some(at)
    }

    /// The time of `text` when it is in the second last parsed whole.
    fn same_second(&self, text: &str) -> Option<UnixMs> {
        let second = self.second.as_ref()?;
        if text.as_bytes().get(..19)? != second {
            return None;
        }
        // The fraction's digits, then the zone of that second. Without a branch per
        // digit: their number varies from line to line (Go trims trailing zeros).
        let rest = text.as_bytes()[19..].strip_prefix(b".")?;
        let digits = rest.len().checked_sub(self.zone.len())?;
        let (fraction, zone) = rest.split_at(digits);
        let all_digits = fraction
            .iter()
            .fold(true, |all, b| all & b.is_ascii_digit());
        if digits == 0 || !all_digits || !zone.iter().eq(self.zone.as_bytes()) {
            return None;
        }
        Some(self.at + millis(fraction))
    }
}

/// The milliseconds of a second's fraction, from its digits (`5` is 500, `05` 50,
/// `123456789` 123).
fn millis(digits: &[u8]) -> UnixMs {
    let read = digits.len().min(3);
    let ms = digits[..read]
        .iter()
        .fold(0, |ms, b| ms * 10 + i64::from(b - b'0'));
    ms * 10_i64.pow(3 - read as u32)
}

/// Whether `text` holds an ESC, the start of every ANSI escape (memchr's search: `str`'s
/// own `contains` does not use the vector unit).
fn has_esc(text: &str) -> bool {
    memchr::memchr(0x1b, text.as_bytes()).is_some()
}

/// `text` without its ANSI escape sequences, into `out`: CSI (`ESC [ ... final`), OSC
/// (`ESC ] ... BEL` or `ESC \`) and two-byte escapes.
fn strip_ansi(text: &str, out: &mut String) {
    out.clear();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('[') => {
                // Parameters and intermediates, up to the final byte (@ to ~).
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            Some(']') => {
                while let Some(c) = chars.next() {
                    if c == '\u{7}' {
                        break;
                    }
                    if c == '\u{1b}' && chars.peek() == Some(&'\\') {
                        chars.next();
                        break;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
