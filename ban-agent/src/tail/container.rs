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
    stats: UnwrapStats,
}

/// One container line, its wrapper read.
struct Part<'a> {
    text: Cow<'a, str>,
    stream: Stream,
    time: Option<UnixMs>,
    /// The last part of its message (Docker: it ends in `\n`; CRI: `F`).
    last: bool,
}

impl Unwrapper {
    /// `max_message`: the longest message joined from parts (a jail's line limit).
    pub fn new(format: LogFormat, max_message: usize) -> Self {
        Self {
            format,
            max_message: max_message.max(1),
            joining: [Joining::default(), Joining::default()],
            clean: String::new(),
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
        let part = match self.format {
            LogFormat::Auto | LogFormat::Plain => {
                self.stats.messages += 1;
                sink(Message {
                    text: line,
                    time: None,
                    stream: None,
                });
                return Fed::Message;
            }
            LogFormat::Docker => docker(line),
            LogFormat::Cri => cri(line),
        };
        let Some(part) = part else {
            self.stats.malformed += 1;
            return Fed::Malformed;
        };
        self.part(part, sink)
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
        let whole: Cow<'_, str> = if joining.text.is_empty() {
            part.text
        } else {
            joining.text.push_str(&part.text);
            Cow::Owned(std::mem::take(&mut joining.text))
        };
        let text = whole.strip_suffix('\n').unwrap_or(&whole);
        let text = text.strip_suffix('\r').unwrap_or(text);
        let text = if text.contains('\u{1b}') {
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
    if line.starts_with('{') && docker(line).is_some() {
        LogFormat::Docker
    } else if cri(line).is_some() {
        LogFormat::Cri
    } else {
        LogFormat::Plain
    }
}

/// A line of Docker's json-file driver.
fn docker(line: &str) -> Option<Part<'_>> {
    #[derive(serde::Deserialize)]
    struct Line<'a> {
        #[serde(borrow)]
        log: Cow<'a, str>,
        #[serde(borrow)]
        stream: Cow<'a, str>,
        #[serde(borrow, default)]
        time: Option<Cow<'a, str>>,
    }
    let parsed: Line<'_> = serde_json::from_str(line).ok()?;
    let stream = Stream::from_name(&parsed.stream)?;
    Some(Part {
        last: parsed.log.ends_with('\n'),
        time: parsed.time.as_deref().and_then(time),
        text: parsed.log,
        stream,
    })
}

/// A line of the CRI format: `TIME STREAM TAG MESSAGE`, TAG `P` (a part) or `F` (the
/// last), possibly followed by `:`-separated flags.
fn cri(line: &str) -> Option<Part<'_>> {
    let mut fields = line.splitn(4, ' ');
    let at = time(fields.next()?)?;
    let stream = Stream::from_name(fields.next()?)?;
    let tag = fields.next()?;
    let last = match tag.split(':').next()? {
        "F" => true,
        "P" => false,
        _ => return None,
    };
    Some(Part {
        text: Cow::Borrowed(fields.next().unwrap_or("")),
        stream,
        time: Some(at),
        last,
    })
}

/// An RFC 3339 time (the runtimes write nanoseconds), in milliseconds.
fn time(text: &str) -> Option<UnixMs> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|at| at.as_millisecond())
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
