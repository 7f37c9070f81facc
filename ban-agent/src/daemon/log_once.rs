//! A failure that repeats every tick (an unreadable log, a full disk, missing pins) is
//! said once, and again only when it changes; its end is said once too.

/// The last error said of one thing.
#[derive(Debug, Default)]
pub(super) struct LogOnce(Option<String>);

impl LogOnce {
    /// Records `message`; `true` when it was not the last one said, so say it.
    pub(super) fn first(&mut self, message: &str) -> bool {
        if self.0.as_deref() == Some(message) {
            return false;
        }
        self.0 = Some(message.to_owned());
        true
    }

    /// The trouble said last, while it lasts.
    pub(super) fn current(&self) -> Option<&str> {
        self.0.as_deref()
    }

    /// The trouble is over; `true` when there was one, so say that it ended.
    pub(super) fn ended(&mut self) -> bool {
        self.0.take().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::LogOnce;

    #[test]
    fn a_message_is_said_once_until_it_changes_or_ends() {
        let mut said = LogOnce::default();
        assert!(!said.ended());
        assert!(said.first("disk full"));
        assert!(!said.first("disk full"));
        assert!(said.first("read-only"));
        assert!(said.ended());
        assert!(said.first("read-only"));
    }
}
