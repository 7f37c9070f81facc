//! A failure that repeats every tick (an unreadable log, a full disk, missing pins) is
//! said once, and again only when it changes; its end is said once too. What another
//! source asks and the rails refuse is counted every time and said once for each reason.

use std::collections::BTreeSet;

use prometheus_client::metrics::{counter::Counter, family::Family};

use crate::metrics::ReasonLabel;

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

/// What the rails refused of one source (the fleet's stream, CrowdSec's decisions).
#[derive(Debug, Default)]
pub(super) struct Refusals {
    total: u64,
    /// Reasons already said.
    said: BTreeSet<&'static str>,
}

impl Refusals {
    /// Counts a refusal, here and in `counter`; `true` for the first of its reason, so say
    /// it.
    pub(super) fn count(
        &mut self,
        counter: &Family<ReasonLabel, Counter>,
        reason: &'static str,
    ) -> bool {
        counter
            .get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            })
            .inc();
        self.total += 1;
        self.said.insert(reason)
    }

    /// Refusals so far, for `status`.
    pub(super) fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::{LogOnce, Refusals};

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

    #[test]
    fn every_refusal_is_counted_and_each_reason_said_once() {
        let counter = prometheus_client::metrics::family::Family::default();
        let mut refusals = Refusals::default();
        assert!(refusals.count(&counter, "signature"));
        assert!(!refusals.count(&counter, "signature"));
        assert!(refusals.count(&counter, "ignoreip"));
        assert_eq!(refusals.total(), 3);
        let signature = super::ReasonLabel {
            reason: "signature".into(),
        };
        assert_eq!(counter.get_or_create(&signature).get(), 2);
    }
}
