use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use clew_model::TraceId;
use serde::{Deserialize, Serialize};

/// Caller metadata stored next to the lifecycle fields (e.g. `service`, `channel`).
pub type Metadata = BTreeMap<String, String>;

/// Hash fields the registry itself writes; metadata may not use these names, because a
/// caller's `state` would otherwise silently overwrite the lifecycle.
pub const RESERVED_FIELDS: [&str; 5] =
    ["state", "created_at", "finished_at", "orphaned_at", "error"];

/// The `error` value the watchdog writes on a trace it marks ERRORED.
pub const ORPHANED_ERROR: &str = "orphaned";

/// Where a trace is in its lifecycle.
///
/// Transitions only move forward: `Received → InProgress → Completed | Errored`, and any
/// non-terminal state may go straight to a terminal one. Terminal states are final: a
/// late completion of a trace that the watchdog already marked ERRORED stays ERRORED,
/// so whoever read "orphaned" never sees it change its mind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TraceState {
    Received,
    InProgress,
    Completed,
    Errored,
}

impl TraceState {
    pub const ALL: [TraceState; 4] = [
        TraceState::Received,
        TraceState::InProgress,
        TraceState::Completed,
        TraceState::Errored,
    ];

    /// The string stored in Redis (`RECEIVED`, `IN_PROGRESS`, `COMPLETED`, `ERRORED`).
    pub fn as_str(self) -> &'static str {
        match self {
            TraceState::Received => "RECEIVED",
            TraceState::InProgress => "IN_PROGRESS",
            TraceState::Completed => "COMPLETED",
            TraceState::Errored => "ERRORED",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TraceState::Completed | TraceState::Errored)
    }
}

impl fmt::Display for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state string that is not one of the four lifecycle states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown trace state {0:?} (expected RECEIVED, IN_PROGRESS, COMPLETED or ERRORED)")]
pub struct UnknownState(pub String);

impl FromStr for TraceState {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<Self, UnknownState> {
        TraceState::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownState(s.to_string()))
    }
}

/// What `create_trace` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CreateOutcome {
    Created,
    /// The trace was already registered (another collector saw a span first); nothing
    /// was changed, so its state and `created_at` are the first writer's.
    AlreadyExists,
}

/// What a state transition did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Transition {
    Applied {
        from: TraceState,
    },
    /// The trace was already in the requested state.
    Unchanged,
    /// The trace is in a terminal state, or the request would move it backwards.
    Refused {
        current: TraceState,
    },
    /// No such trace: never registered, or its hash already expired.
    NotFound,
}

/// One trace's lifecycle entry as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TraceRecord {
    pub id: TraceId,
    pub state: TraceState,
    pub created_at_ms: u64,
    pub finished_at_ms: Option<u64>,
    /// Set only when the watchdog marked the trace ERRORED.
    pub orphaned_at_ms: Option<u64>,
    pub error: Option<String>,
    pub metadata: Metadata,
}

impl TraceRecord {
    pub fn is_orphaned(&self) -> bool {
        self.orphaned_at_ms.is_some()
    }
}

/// An entry of the active index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ActiveTrace {
    pub id: TraceId,
    pub created_at_ms: u64,
}

/// Where the next page of `list_active` starts (exclusive). Prints as `MS-HEXID`, so a
/// CLI can hand it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ActiveCursor {
    pub created_at_ms: u64,
    pub id: TraceId,
}

impl From<ActiveTrace> for ActiveCursor {
    fn from(t: ActiveTrace) -> Self {
        ActiveCursor {
            created_at_ms: t.created_at_ms,
            id: t.id,
        }
    }
}

impl fmt::Display for ActiveCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.created_at_ms, self.id)
    }
}

/// A cursor string that is not `MS-HEXID`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cursor {0:?}: expected MILLIS-TRACEID as printed by a previous page")]
pub struct InvalidCursor(pub String);

impl FromStr for ActiveCursor {
    type Err = InvalidCursor;
    fn from_str(s: &str) -> Result<Self, InvalidCursor> {
        let bad = || InvalidCursor(s.to_string());
        let (ms, id) = s.split_once('-').ok_or_else(bad)?;
        Ok(ActiveCursor {
            created_at_ms: ms.parse().map_err(|_| bad())?,
            id: id.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for ActiveCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One page of active traces, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivePage {
    pub traces: Vec<ActiveTrace>,
    /// `Some` when more entries follow.
    pub next: Option<ActiveCursor>,
}

/// A trace the sweep marked ERRORED.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Orphan {
    pub id: TraceId,
    pub created_at_ms: u64,
    /// Age at the sweep's `now`.
    pub age: Duration,
}

/// What one sweep did. Every index entry it looked at falls in exactly one of
/// `orphaned`, `expired`, `finished` or `skipped`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub orphaned: Vec<Orphan>,
    /// Index entries whose hash had already expired (the failsafe TTL ran out): only
    /// removed from the index.
    pub expired: u64,
    /// Index entries whose trace had already reached a terminal state.
    pub finished: u64,
    /// Index entries that changed between the read and the atomic step (completed and
    /// de-indexed, or re-registered as newer); left alone.
    pub skipped: u64,
    /// Number of check-and-mark batches.
    pub batches: u32,
    /// Requests sent to Redis (0 for the embedded backend).
    pub round_trips: u32,
    pub elapsed: Duration,
}

impl SweepReport {
    pub fn examined(&self) -> u64 {
        self.orphaned.len() as u64 + self.expired + self.finished + self.skipped
    }
}

/// Unix milliseconds as the `created_at` text stored in Redis: seconds with three
/// decimals, the same shape as Python's `time.time()` that seed-era readers expect.
pub(crate) fn secs_text(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Parses seconds (integer or fractional) back to Unix milliseconds.
pub(crate) fn parse_secs(text: &str) -> Option<u64> {
    let secs: f64 = text.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).round() as u64)
}

/// Index members are normally 32 hex digits; seed-era writers used hyphenated UUIDs.
pub(crate) fn parse_member(member: &str) -> Option<TraceId> {
    if member.contains('-') {
        member.replace('-', "").parse().ok()
    } else {
        member.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_their_redis_strings() {
        for state in TraceState::ALL {
            assert_eq!(state.as_str().parse::<TraceState>(), Ok(state));
        }
        assert_eq!(
            "in_progress".parse::<TraceState>(),
            Ok(TraceState::InProgress)
        );
        assert!("PROCESSING".parse::<TraceState>().is_err());
        assert!(TraceState::Completed.is_terminal() && TraceState::Errored.is_terminal());
        assert!(!TraceState::Received.is_terminal() && !TraceState::InProgress.is_terminal());
    }

    #[test]
    fn seconds_text_keeps_milliseconds() {
        assert_eq!(secs_text(1_700_000_000_123), "1700000000.123");
        assert_eq!(secs_text(5), "0.005");
        for ms in [0, 1, 999, 1_700_000_000_123, 1_700_000_000_999] {
            assert_eq!(parse_secs(&secs_text(ms)), Some(ms));
        }
        assert_eq!(parse_secs("1700000000"), Some(1_700_000_000_000));
        assert_eq!(parse_secs("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(parse_secs("nope"), None);
        assert_eq!(parse_secs("-1"), None);
    }

    #[test]
    fn cursors_print_and_parse() {
        let cursor = ActiveCursor {
            created_at_ms: 1_700_000_000_123,
            id: "0190163d8f2a7b3c8d4e5f6a7b8c9d0e".parse().unwrap(),
        };
        let text = cursor.to_string();
        assert_eq!(text, "1700000000123-0190163d8f2a7b3c8d4e5f6a7b8c9d0e");
        assert_eq!(text.parse::<ActiveCursor>(), Ok(cursor));
        assert!("12".parse::<ActiveCursor>().is_err());
        assert!(
            "x-0190163d8f2a7b3c8d4e5f6a7b8c9d0e"
                .parse::<ActiveCursor>()
                .is_err()
        );
    }

    #[test]
    fn members_accept_hyphenated_uuids() {
        let id: TraceId = "0190163d8f2a7b3c8d4e5f6a7b8c9d0e".parse().unwrap();
        assert_eq!(
            parse_member("0190163d-8f2a-7b3c-8d4e-5f6a7b8c9d0e"),
            Some(id)
        );
        assert_eq!(parse_member("0190163d8f2a7b3c8d4e5f6a7b8c9d0e"), Some(id));
        assert_eq!(parse_member("garbage"), None);
    }
}
