//! A drain's delivery state, pure (no IO, no clock of its own): what has been delivered (the
//! cursor that is persisted), what is written but not yet confirmed, the retry backoff and the
//! counters.
//!
//! Syslog over TCP has no acknowledgements: a write only reached the kernel, and a receiver that
//! dies loses what was in flight. So a batch written on a stream counts as delivered only once
//! the connection was still alive [`CONFIRM_MS`] later; when it breaks first, every batch not yet
//! confirmed is sent again (at-least-once: the receiver may see a line twice, never miss one it
//! could have had). HTTPS batches are confirmed by the response, UDP ones at once (UDP promises
//! nothing).

use super::reader::Cursor;
use crate::backoff::BackoffPolicy;
use roboku_wire::drains::DrainCounters;
use std::collections::VecDeque;
use std::time::Duration;

/// How long a stream must stay up after a write for the write to count as delivered.
pub const CONFIRM_MS: u64 = 2000;

pub const RETRY: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(500),
    max: Duration::from_secs(30),
    reset_after: Duration::from_secs(60),
    first_at_once: false,
};

#[derive(Debug, Clone, PartialEq)]
struct Written {
    at_ms: u64,
    start: Cursor,
    end: Cursor,
    lines: u64,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    /// Everything before it is delivered (persisted).
    committed: Cursor,
    /// The next read starts here.
    read_to: Cursor,
    unconfirmed: VecDeque<Written>,
    failures: u32,
    pub counters: DrainCounters,
}

impl Delivery {
    pub fn new(committed: Cursor, counters: DrainCounters) -> Self {
        Delivery {
            committed,
            read_to: committed,
            unconfirmed: VecDeque::new(),
            failures: 0,
            // Nothing is in flight before the first write.
            counters: DrainCounters {
                in_flight: 0,
                ..counters
            },
        }
    }

    /// `counters.in_flight`: the lines of the batches written and not yet confirmed.
    fn recount(&mut self) {
        self.counters.in_flight = self.unconfirmed.iter().map(|w| w.lines).sum();
    }

    pub fn committed(&self) -> Cursor {
        self.committed
    }

    pub fn read_from(&self) -> Cursor {
        self.read_to
    }

    pub fn has_unconfirmed(&self) -> bool {
        !self.unconfirmed.is_empty()
    }

    /// Lines from `start` to `end` were skipped: rotated away (`dropped` of them), or none.
    pub fn skipped(&mut self, start: Cursor, dropped: u64) {
        self.counters.dropped += dropped;
        if self.committed == self.read_to {
            self.committed = start;
        }
        self.read_to = start;
    }

    /// Nothing to send up to `end` (lines that did not parse, a torn tail).
    pub fn advanced(&mut self, end: Cursor) {
        if self.committed == self.read_to {
            self.committed = end;
        }
        self.read_to = end;
    }

    /// A batch of `lines` from `start` to `end` was written at `now_ms`; `confirmed` when the
    /// receiver acknowledged it (HTTPS) or no acknowledgement can come (UDP).
    pub fn written(
        &mut self,
        start: Cursor,
        end: Cursor,
        lines: u64,
        now_ms: u64,
        confirmed: bool,
    ) {
        self.read_to = end;
        self.failures = 0;
        self.unconfirmed.push_back(Written {
            at_ms: now_ms,
            start,
            end,
            lines,
        });
        if confirmed {
            self.confirm_through(self.unconfirmed.len(), now_ms);
        }
        self.recount();
    }

    /// The connection is still up at `now_ms`: batches written long enough ago are delivered.
    /// Returns whether the committed cursor moved.
    pub fn alive(&mut self, now_ms: u64) -> bool {
        let n = self
            .unconfirmed
            .iter()
            .take_while(|w| now_ms.saturating_sub(w.at_ms) >= CONFIRM_MS)
            .count();
        self.confirm_through(n, now_ms)
    }

    fn confirm_through(&mut self, n: usize, now_ms: u64) -> bool {
        if n == 0 {
            return false;
        }
        for w in self.unconfirmed.drain(..n) {
            self.counters.sent += w.lines;
            self.committed = w.end;
        }
        self.recount();
        self.counters.last_success_at = Some(now_ms);
        true
    }

    /// Sending failed (or the connection broke): what was not confirmed goes again, after the
    /// returned delay (`jitter` in [0, 1)).
    pub fn failed(&mut self, error: String, now_ms: u64, jitter: f64) -> Duration {
        if let Some(first) = self.unconfirmed.front() {
            self.read_to = first.start;
        }
        self.unconfirmed.clear();
        self.recount();
        self.failures = self.failures.saturating_add(1);
        self.counters.last_error = Some(error);
        self.counters.last_error_at = Some(now_ms);
        RETRY.delay(self.failures, jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Cursor {
        Cursor { file: 7, offset }
    }

    #[test]
    fn a_stream_write_counts_once_the_connection_outlived_it() {
        let mut d = Delivery::new(at(0), DrainCounters::default());
        d.written(at(0), at(100), 3, 1_000, false);
        d.written(at(100), at(150), 2, 2_500, false);
        assert_eq!(d.read_from(), at(150));
        assert!(!d.alive(2_999));
        assert_eq!((d.committed(), d.counters.sent), (at(0), 0));
        assert!(d.alive(3_000));
        assert_eq!((d.committed(), d.counters.sent), (at(100), 3));
        assert_eq!(d.counters.last_success_at, Some(3_000));
        assert!(d.alive(4_500));
        assert_eq!((d.committed(), d.counters.sent), (at(150), 5));
        assert!(!d.has_unconfirmed());
    }

    #[test]
    fn lines_written_and_not_yet_confirmed_are_in_flight() {
        let saved = DrainCounters {
            sent: 7,
            in_flight: 99, // from a state file of an agent that was mid-write: nothing now
            ..DrainCounters::default()
        };
        let mut d = Delivery::new(at(0), saved);
        assert_eq!((d.counters.sent, d.counters.in_flight), (7, 0));
        d.written(at(0), at(100), 3, 1_000, false);
        d.written(at(100), at(150), 2, 2_500, false);
        assert_eq!((d.counters.sent, d.counters.in_flight), (7, 5));
        d.alive(3_000);
        assert_eq!((d.counters.sent, d.counters.in_flight), (10, 2));
        d.written(at(150), at(200), 4, 3_100, false);
        d.failed("reset".into(), 3_200, 0.0);
        assert_eq!(
            (d.counters.sent, d.counters.in_flight),
            (10, 0),
            "a break sends them again: none in flight"
        );
        d.written(at(100), at(200), 6, 4_000, true);
        assert_eq!(
            (d.counters.sent, d.counters.in_flight),
            (16, 0),
            "acknowledged at once"
        );
    }

    #[test]
    fn a_break_sends_the_unconfirmed_again_with_growing_backoff() {
        let mut d = Delivery::new(at(0), DrainCounters::default());
        d.written(at(0), at(100), 3, 1_000, false);
        d.alive(3_000);
        d.written(at(100), at(200), 4, 3_100, false);
        d.written(at(200), at(300), 4, 3_200, false);
        let first = d.failed("connection reset".into(), 3_300, 1.0);
        assert_eq!(d.read_from(), at(100), "both unconfirmed batches go again");
        assert_eq!(d.committed(), at(100));
        assert_eq!(d.counters.sent, 3);
        assert_eq!(d.counters.last_error.as_deref(), Some("connection reset"));
        assert_eq!(d.counters.last_error_at, Some(3_300));
        let second = d.failed("refused".into(), 3_900, 1.0);
        let third = d.failed("refused".into(), 4_900, 1.0);
        assert!(
            first < second && second < third,
            "{first:?} {second:?} {third:?}"
        );
        assert!(d.failed("x".into(), 0, 1.0) <= RETRY.max);
        // A write that goes through resets the backoff.
        d.written(at(100), at(300), 8, 9_000, true);
        assert_eq!(d.failed("again".into(), 9_100, 1.0), first);
    }

    #[test]
    fn acknowledged_batches_count_at_once_and_drops_are_counted() {
        let mut d = Delivery::new(at(0), DrainCounters::default());
        d.written(at(0), at(100), 10, 5, true);
        assert_eq!((d.committed(), d.counters.sent), (at(100), 10));
        d.skipped(Cursor { file: 8, offset: 0 }, 6);
        assert_eq!(d.counters.dropped, 6);
        assert_eq!(d.committed(), Cursor { file: 8, offset: 0 });
        d.advanced(Cursor {
            file: 8,
            offset: 40,
        });
        assert_eq!(
            d.committed(),
            Cursor {
                file: 8,
                offset: 40
            }
        );
        // While something is in flight, skipping ahead does not commit past it.
        d.written(
            Cursor {
                file: 8,
                offset: 40,
            },
            Cursor {
                file: 8,
                offset: 90,
            },
            1,
            10,
            false,
        );
        d.advanced(Cursor {
            file: 8,
            offset: 95,
        });
        assert_eq!(
            d.committed(),
            Cursor {
                file: 8,
                offset: 40
            }
        );
        assert_eq!(
            d.read_from(),
            Cursor {
                file: 8,
                offset: 95
            }
        );
    }
}
