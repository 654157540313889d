//! The conventions by which a trace says "a process exited" and "this went wrong".
//!
//! OpenTelemetry has no span kind for a process exit and no single fault marker, so
//! replay reads these (instrumentation, including `clew demo`, follows them):
//!
//! * **Process exit** — a span event named [`PROCESS_EXIT_EVENT`] (`process.exit`), or
//!   any span event carrying the semantic-convention attribute [`EXIT_CODE_ATTR`]
//!   (`process.exit.code`). The drone demo's `drone_destroyed` event carries
//!   `process.exit.code = 666`: the event keeps its story name and still counts as an
//!   exit.
//! * **Exception** — a span event named [`EXCEPTION_EVENT`] (`exception`), as the
//!   OpenTelemetry exception conventions record one (`exception.type`,
//!   `exception.message`). Always a fault.
//! * **Error status** — a span that ends with status `ERROR`. A fault at its end event.
//! * **Abnormal exit** — a process exit is a fault only when the exit event carries
//!   [`ABNORMAL_ATTR`] (`clew.abnormal = true`) or its span ends with status `ERROR`.
//!   An exit code alone says nothing: a drone that exits with 666 after its death notice
//!   is the story working, not a fault.

use clew_model::{AttributeValue, Event, KeyValue, Span, find_attribute};
use serde::{Deserialize, Serialize};

pub const PROCESS_EXIT_EVENT: &str = "process.exit";
pub const EXIT_CODE_ATTR: &str = "process.exit.code";
pub const ABNORMAL_ATTR: &str = "clew.abnormal";
pub const EXCEPTION_EVENT: &str = "exception";

/// Why an event counts as a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A span ended with status `ERROR`.
    ErrorStatus,
    /// An `exception` span event.
    Exception,
    /// A process exit marked abnormal, or inside a span that failed.
    AbnormalExit,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::ErrorStatus => "error status",
            FaultKind::Exception => "exception",
            FaultKind::AbnormalExit => "abnormal exit",
        }
    }
}

pub fn is_process_exit(event: &Event) -> bool {
    event.name == PROCESS_EXIT_EVENT || find_attribute(&event.attributes, EXIT_CODE_ATTR).is_some()
}

pub fn is_exception(event: &Event) -> bool {
    event.name == EXCEPTION_EVENT
}

pub fn is_abnormal_exit(span: &Span, event: &Event) -> bool {
    is_process_exit(event) && (span.is_error() || flag(&event.attributes, ABNORMAL_ATTR))
}

/// The exit code of an exit event, when it gives one as an integer (or a string of one,
/// which some SDKs send).
pub fn exit_code(event: &Event) -> Option<i64> {
    match find_attribute(&event.attributes, EXIT_CODE_ATTR)? {
        AttributeValue::Int(i) => Some(*i),
        AttributeValue::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn flag(attributes: &[KeyValue], key: &str) -> bool {
    match find_attribute(attributes, key) {
        Some(AttributeValue::Bool(b)) => *b,
        Some(AttributeValue::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// A one-line description of what failed, for labels and fault reports.
pub(crate) fn exception_text(event: &Event) -> String {
    let text = |k| find_attribute(&event.attributes, k).map(AttributeValue::to_text);
    match (text("exception.type"), text("exception.message")) {
        (Some(t), Some(m)) => format!("{t}: {m}"),
        (Some(t), None) => t,
        (None, Some(m)) => m,
        (None, None) => "exception".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clew_model::{Status, StatusCode};

    fn event(name: &str, attrs: Vec<KeyValue>) -> Event {
        Event {
            time_unix_nano: 1,
            name: name.into(),
            attributes: attrs,
        }
    }

    #[test]
    fn exits_are_recognised_by_name_or_exit_code() {
        assert!(is_process_exit(&event("process.exit", vec![])));
        let destroyed = event(
            "drone_destroyed",
            vec![KeyValue::new(EXIT_CODE_ATTR, 666i64)],
        );
        assert!(is_process_exit(&destroyed));
        assert_eq!(exit_code(&destroyed), Some(666));
        assert!(!is_process_exit(&event("drone_destroyed", vec![])));
    }

    #[test]
    fn an_exit_is_abnormal_only_when_marked_or_its_span_failed() {
        let mut span = crate::test_support::span(1, None, "striker", "consume");
        let exit = event("process.exit", vec![KeyValue::new(EXIT_CODE_ATTR, 666i64)]);
        assert!(!is_abnormal_exit(&span, &exit));
        let marked = event("process.exit", vec![KeyValue::new(ABNORMAL_ATTR, true)]);
        assert!(is_abnormal_exit(&span, &marked));
        span.status = Status {
            code: StatusCode::Error,
            message: "killed".into(),
        };
        assert!(is_abnormal_exit(&span, &exit));
    }
}
