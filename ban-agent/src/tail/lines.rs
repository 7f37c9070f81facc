//! Bytes into complete lines, with a bounded memory for the line being written.

use std::io::{self, Read};

use super::{CHUNK, TailStats};

/// Cuts a byte stream into lines: only lines ending in `\n` come out, without it and
/// without a trailing `\r`; a line longer than `max_line` is dropped and counted, and at
/// most `max_line` bytes of an incomplete line are held.
pub struct Lines {
    max_line: usize,
    /// Bytes of an incomplete line (never more than `max_line`).
    pub(super) carry: Vec<u8>,
    /// Inside a line that is too long (or begun before we started): drop until its end.
    skipping: bool,
    stats: TailStats,
}

impl Lines {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(1),
            carry: Vec::new(),
            skipping: false,
            stats: TailStats::default(),
        }
    }

    pub fn stats(&self) -> TailStats {
        self.stats
    }

    /// Forgets the incomplete line; with `mid_line`, what comes first is the rest of a
    /// line begun elsewhere and is dropped up to its end.
    pub fn restart(&mut self, mid_line: bool) {
        self.carry = Vec::new();
        self.skipping = mid_line;
    }

    /// Feeds the next bytes; hands each completed line to `sink`. Returns how many of
    /// `bytes` are complete lines (the rest is held, or skipped, until its `\n`).
    pub fn feed(&mut self, mut bytes: &[u8], sink: &mut dyn FnMut(&str)) -> usize {
        let total = bytes.len();
        while let Some(end) = memchr::memchr(b'\n', bytes) {
            let line = &bytes[..end];
            if self.skipping {
                self.skipping = false;
            } else if self.carry.is_empty() {
                self.emit(line, sink);
            } else if self.carry.len() + line.len() > self.max_line {
                self.carry.clear();
                self.stats.too_long += 1;
            } else {
                let mut whole = std::mem::take(&mut self.carry);
                whole.extend_from_slice(line);
                self.emit(&whole, sink);
                whole.clear();
                self.carry = whole;
            }
            bytes = &bytes[end + 1..];
        }
        let complete = total - bytes.len();
        if self.skipping || bytes.is_empty() {
            return complete;
        }
        if self.carry.len() + bytes.len() > self.max_line {
            self.carry = Vec::new();
            self.skipping = true;
            self.stats.too_long += 1;
        } else {
            self.carry.extend_from_slice(bytes);
        }
        complete
    }

    fn emit(&mut self, line: &[u8], sink: &mut dyn FnMut(&str)) {
        if line.len() > self.max_line {
            self.stats.too_long += 1;
            return;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.stats.lines += 1;
        match std::str::from_utf8(line) {
            Ok(text) => sink(text),
            Err(_) => {
                self.stats.invalid_utf8 += 1;
                sink(&String::from_utf8_lossy(line));
            }
        }
    }
}

/// Reads a whole stream (a file once, or stdin) as lines; an incomplete last line is
/// not a line.
pub fn read_stream(
    mut reader: impl Read,
    max_line: usize,
    sink: &mut dyn FnMut(&str),
) -> io::Result<TailStats> {
    let mut lines = Lines::new(max_line);
    let mut chunk = vec![0; CHUNK];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return Ok(lines.stats()),
            Ok(n) => {
                lines.feed(&chunk[..n], sink);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
