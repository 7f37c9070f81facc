//! A container's log on arbitrary bytes, cut into lines as the follower cuts them, through
//! the unwrapper of each format: messages or skipped lines, never a panic, and never more
//! held than the limit (two messages being joined, one per stream).
#![no_main]

use ban_agent::tail::container::{LogFormat, Unwrapper};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for format in [LogFormat::Auto, LogFormat::Docker, LogFormat::Cri] {
        let mut unwrapper = Unwrapper::new(format, LIMIT);
        let mut messages = 0u64;
        for line in text.split('\n') {
            unwrapper.line(line, &mut |message| {
                messages += 1;
                // A plain line is the follower's to bound; a container's message is ours.
                if message.stream.is_some() {
                    assert!(message.text.len() <= LIMIT, "a message past the limit");
                }
            });
        }
        assert_eq!(unwrapper.stats().messages, messages);
    }
});
