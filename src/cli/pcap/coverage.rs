//! What share of a capture telestrip could judge. An audit that read only part of the
//! traffic is no proof that nothing leaked: past a threshold the run is reported
//! incomplete, prominently, in every output format and in the exit code.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::engine::Engine;
use crate::stats::{Bypass, Unjudged, Via};

/// The run's coverage figures, read from the engine's counters once the files are read.
pub struct Coverage {
    /// Every packet read, skipped link types included.
    pub packets: u64,
    pub unjudged: Vec<(Unjudged, u64)>,
    /// QUIC flows whose name was read, and those whose QUIC could not be read.
    pub quic_read: u64,
    pub quic_unreadable: u64,
    /// The largest share, in percent, that may go unjudged.
    pub threshold: f64,
}

impl Coverage {
    /// `judged_packets`: the packets handed to the engine (skipped ones are counted apart).
    pub fn of(engine: &Engine, judged_packets: u64, threshold: f64) -> Self {
        let counters = &engine.counters;
        let unjudged: Vec<_> = Unjudged::ALL
            .iter()
            .map(|&reason| (reason, counters.unjudged_of(reason)))
            .collect();
        Self {
            packets: judged_packets + counters.unjudged_of(Unjudged::LinkType),
            unjudged,
            quic_read: counters.inspected_of(Via::Quic),
            quic_unreadable: counters.bypass_of(Bypass::QuicUnreadable),
            threshold,
        }
    }

    pub fn unjudged_packets(&self) -> u64 {
        self.unjudged.iter().map(|(_, n)| n).sum()
    }

    /// Unjudged packets in percent of all packets.
    pub fn unjudged_share(&self) -> f64 {
        percent(self.unjudged_packets(), self.packets)
    }

    /// Unreadable QUIC flows in percent of all QUIC flows.
    pub fn quic_unreadable_share(&self) -> f64 {
        percent(self.quic_unreadable, self.quic_read + self.quic_unreadable)
    }

    /// Whether more went unjudged than the threshold allows.
    pub fn incomplete(&self) -> bool {
        let over = |unjudged: u64, share: f64| {
            unjudged > 0 && (self.threshold == 0.0 || share > self.threshold)
        };
        over(self.unjudged_packets(), self.unjudged_share())
            || over(self.quic_unreadable, self.quic_unreadable_share())
    }

    /// One line saying what was not judged, for the table footer and warnings.
    pub fn text(&self) -> String {
        let reasons = crate::output::counts_text(
            self.unjudged
                .iter()
                .map(|&(reason, n)| (reason.as_str(), n)),
        );
        format!(
            "{} of {} packets ({:.2}%) could not be judged ({reasons}); {} of {} QUIC flows ({:.2}%) could not be read; threshold {}%",
            self.unjudged_packets(),
            self.packets,
            self.unjudged_share(),
            self.quic_unreadable,
            self.quic_read + self.quic_unreadable,
            self.quic_unreadable_share(),
            self.threshold,
        )
    }

    /// The banner that stands above and below the table of an incomplete run.
    pub fn banner(&self) -> String {
        format!(
            "INCOMPLETE AUDIT: {}. What was not judged may hold telemetry: this capture is no proof that none left.",
            self.text()
        )
    }

    pub fn json(&self) -> Value {
        let unjudged: BTreeMap<_, _> = self
            .unjudged
            .iter()
            .map(|&(reason, n)| (reason.as_str(), n))
            .collect();
        json!({
            "complete": !self.incomplete(),
            "packets": self.packets,
            "unjudged_packets": self.unjudged_packets(),
            "unjudged_percent": self.unjudged_share(),
            "unjudged": unjudged,
            "quic_flows": self.quic_read + self.quic_unreadable,
            "quic_unreadable": self.quic_unreadable,
            "quic_unreadable_percent": self.quic_unreadable_share(),
            "threshold_percent": self.threshold,
        })
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coverage(packets: u64, link: u64, quic_read: u64, quic_unreadable: u64) -> Coverage {
        Coverage {
            packets,
            unjudged: vec![(Unjudged::Link, link)],
            quic_read,
            quic_unreadable,
            threshold: 1.0,
        }
    }

    #[test]
    fn a_capture_over_the_threshold_is_incomplete() {
        assert!(coverage(100, 2, 0, 0).incomplete());
        assert!(!coverage(100, 1, 0, 0).incomplete());
        assert!(!coverage(0, 0, 0, 0).incomplete());
    }

    #[test]
    fn unreadable_quic_counts_against_the_quic_flows() {
        assert!(coverage(1_000_000, 0, 10, 1).incomplete());
        assert!(!coverage(1_000_000, 0, 1000, 1).incomplete());
    }

    #[test]
    fn a_zero_threshold_allows_nothing_unjudged() {
        let mut run = coverage(1_000_000, 1, 0, 0);
        assert!(!run.incomplete());
        run.threshold = 0.0;
        assert!(run.incomplete());
    }

    #[test]
    fn says_what_was_not_judged() {
        let text = coverage(200, 50, 3, 1).text();
        assert_eq!(
            text,
            "50 of 200 packets (25.00%) could not be judged (50 link); 1 of 4 QUIC flows (25.00%) could not be read; threshold 1%"
        );
    }
}
