//! A small selector language over the spans of a trace, CSS-like:
//!
//! ```text
//! span[service="striker" name="execute_intercept"]
//! span[kind=CONSUMER] span[name~="death"]          descendant (any depth)
//! span[service="ares"] > span[kind=PRODUCER]       child
//! span[attr.target="orlan"]  span[attr.process.exit.code]  span[duration>10ms]
//! span[status=error]  span[event="drone_destroyed"]
//! ```
//!
//! Inside brackets, conditions are separated by spaces or commas and all must hold;
//! `span[a][b]` is the same as `span[a b]`. Fields: `service`, `name`, `kind`
//! (any spelling [`SpanKind::parse`] accepts), `status` (`error`, `ok`, `unset`),
//! `duration` (with a unit: `ns`, `us`, `µs`, `ms`, `s`), `event` (the name of any span
//! event), and `attr.KEY`. Operators: `=`, `!=`, `~=` (contains), `^=` (starts with),
//! `$=` (ends with), and for `duration` and attributes `<`, `<=`, `>`, `>=` (numeric).
//! A field without an operator tests that the attribute or an event exists. Values
//! are double-quoted (with `\"` and `\\` escapes) or bare words.

use std::fmt;

use clew_model::tree::{NodeKind, SkewMode, TraceTree};
use clew_model::{AttributeValue, Span, SpanId, SpanKind, StatusCode};
use serde::{Deserialize, Serialize};

use crate::snapshot::{ReplayError, SpanRef};
use crate::timeline::Timeline;

/// A parse error, with the byte offset in the selector text where it was noticed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("selector error at column {}: {message}", .position + 1)]
pub struct SelectorError {
    pub position: usize,
    pub message: String,
}

impl SelectorError {
    /// The selector with a caret under the error, for a terminal.
    pub fn render(&self, selector: &str) -> String {
        let col = selector[..self.position.min(selector.len())]
            .chars()
            .count();
        format!("{self}\n  {selector}\n  {}^", " ".repeat(col))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Combinator {
    Descendant,
    Child,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Exists,
    Eq,
    Ne,
    Contains,
    Prefix,
    Suffix,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    fn is_numeric(self) -> bool {
        matches!(self, Op::Lt | Op::Le | Op::Gt | Op::Ge)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Condition {
    Service(Op, String),
    Name(Op, String),
    Kind(Op, SpanKind),
    Status(Op, StatusCode),
    DurationNanos(Op, u64),
    Event(Op, String),
    Attribute(String, Op, String),
}

/// One `span[...]` with its combinator to the previous step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// How this step relates to the previous one; ignored for the first.
    pub combinator: Combinator,
    pub conditions: Vec<Condition>,
}

/// A parsed selector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selector {
    pub source: String,
    pub steps: Vec<Step>,
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl std::str::FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Selector, SelectorError> {
        Selector::parse(s)
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn error<T>(&self, at: usize, message: impl Into<String>) -> Result<T, SelectorError> {
        Err(SelectorError {
            position: at,
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn skip_ws(&mut self) -> bool {
        let start = self.pos;
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        self.pos > start
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.text[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> &'a str {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':'))
        {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    fn step(&mut self, combinator: Combinator) -> Result<Step, SelectorError> {
        let at = self.pos;
        if !self.eat("span") {
            return self.error(at, "expected `span`");
        }
        if self.peek().is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return self.error(at, "expected `span`");
        }
        let mut conditions = Vec::new();
        while self.peek() == Some('[') {
            let open = self.pos;
            self.bump();
            loop {
                self.skip_ws();
                match self.peek() {
                    Some(']') => {
                        self.bump();
                        break;
                    }
                    Some(',') => {
                        self.bump();
                    }
                    None => return self.error(open, "`[` is never closed"),
                    Some(_) => conditions.push(self.condition()?),
                }
            }
        }
        Ok(Step {
            combinator,
            conditions,
        })
    }

    fn op(&mut self) -> Op {
        for (text, op) in [
            ("!=", Op::Ne),
            ("~=", Op::Contains),
            ("^=", Op::Prefix),
            ("$=", Op::Suffix),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            ("<", Op::Lt),
            (">", Op::Gt),
        ] {
            if self.eat(text) {
                return op;
            }
        }
        Op::Exists
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        let at = self.pos;
        if self.peek() == Some('"') {
            self.bump();
            let mut out = String::new();
            loop {
                match self.bump() {
                    None => return self.error(at, "string is never closed (missing `\"`)"),
                    Some('"') => return Ok(out),
                    Some('\\') => match self.bump() {
                        Some(c @ ('"' | '\\')) => out.push(c),
                        _ => {
                            return self.error(
                                self.pos.saturating_sub(1),
                                "only \\\" and \\\\ escapes are allowed",
                            );
                        }
                    },
                    Some(c) => out.push(c),
                }
            }
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !matches!(c, ']' | ',' | '"'))
        {
            self.bump();
        }
        if self.pos == start {
            return self.error(at, "expected a value");
        }
        Ok(self.text[start..self.pos].to_string())
    }

    fn condition(&mut self) -> Result<Condition, SelectorError> {
        let field_at = self.pos;
        let field = self.word();
        if field.is_empty() {
            return self.error(
                field_at,
                "expected a field (service, name, kind, status, duration, event or attr.KEY)",
            );
        }
        self.skip_ws();
        let op_at = self.pos;
        let op = self.op();
        let value = if op == Op::Exists {
            None
        } else {
            self.skip_ws();
            Some((self.pos, self.value()?))
        };
        let string_op = |p: &Parser<'_>| -> Result<(), SelectorError> {
            if op.is_numeric() {
                return p.error(
                    op_at,
                    format!("`{field}` compares as text; use =, !=, ~=, ^= or $="),
                );
            }
            if op == Op::Exists && field != "event" {
                return p.error(op_at, format!("`{field}` needs an operator and a value"));
            }
            Ok(())
        };
        let equality = |p: &Parser<'_>| -> Result<(), SelectorError> {
            if !matches!(op, Op::Eq | Op::Ne) {
                return p.error(op_at, format!("`{field}` supports only = and !="));
            }
            Ok(())
        };
        let (value_at, text) = value.clone().unwrap_or((op_at, String::new()));
        Ok(match field {
            "service" => {
                string_op(self)?;
                Condition::Service(op, text)
            }
            "name" => {
                string_op(self)?;
                Condition::Name(op, text)
            }
            "event" => {
                string_op(self)?;
                Condition::Event(op, text)
            }
            "kind" => {
                equality(self)?;
                match SpanKind::parse(&text) {
                    Some(kind) => Condition::Kind(op, kind),
                    None => {
                        return self.error(
                            value_at,
                            format!("unknown span kind {text:?}; expected INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER or UNSPECIFIED"),
                        );
                    }
                }
            }
            "status" => {
                equality(self)?;
                let code = match text.to_ascii_lowercase().as_str() {
                    "error" => StatusCode::Error,
                    "ok" => StatusCode::Ok,
                    "unset" => StatusCode::Unset,
                    _ => {
                        return self.error(
                            value_at,
                            format!("unknown status {text:?}; expected error, ok or unset"),
                        );
                    }
                };
                Condition::Status(op, code)
            }
            "duration" => {
                if !(op.is_numeric() || matches!(op, Op::Eq | Op::Ne)) {
                    return self.error(op_at, "`duration` compares with <, <=, >, >=, = or !=");
                }
                match parse_duration(&text) {
                    Some(nanos) => Condition::DurationNanos(op, nanos),
                    None => {
                        return self.error(
                            value_at,
                            format!("{text:?} is not a duration; write a number and a unit, like 10ms, 1.5s, 250us"),
                        );
                    }
                }
            }
            _ => match field.strip_prefix("attr.") {
                Some(key) if !key.is_empty() => {
                    if op.is_numeric() && text.parse::<f64>().is_err() {
                        return self.error(value_at, format!("{text:?} is not a number, so it cannot be compared with <, <=, > or >="));
                    }
                    Condition::Attribute(key.to_string(), op, text)
                }
                _ => {
                    return self.error(
                        field_at,
                        format!("unknown field `{field}`; expected service, name, kind, status, duration, event or attr.KEY"),
                    );
                }
            },
        })
    }
}

fn parse_duration(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    let nanos = number * scale;
    (nanos.is_finite() && nanos >= 0.0).then_some(nanos.round() as u64)
}

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut p = Parser { text, pos: 0 };
        p.skip_ws();
        if p.peek().is_none() {
            return p.error(0, "empty selector; start with `span`");
        }
        let mut steps = vec![p.step(Combinator::Descendant)?];
        loop {
            let had_ws = p.skip_ws();
            match p.peek() {
                None => break,
                Some('>') => {
                    p.bump();
                    p.skip_ws();
                    steps.push(p.step(Combinator::Child)?);
                }
                Some(_) if had_ws => steps.push(p.step(Combinator::Descendant)?),
                Some(c) => {
                    return p.error(
                        p.pos,
                        format!(
                            "unexpected {c:?}; expected `[`, `>` or a space before the next `span`"
                        ),
                    );
                }
            }
        }
        Ok(Selector {
            source: text.trim().to_string(),
            steps,
        })
    }

    /// Spans of a trace (any order) that the selector matches, in tree reading order.
    pub fn select(&self, spans: &[Span]) -> Vec<SpanId> {
        let tree = TraceTree::build(spans.to_vec(), SkewMode::Adjust);
        self.matching_nodes(&tree)
            .into_iter()
            .map(|i| tree.spans()[i].span_id)
            .collect()
    }

    /// Whether the last step's conditions hold for `span` alone (ancestors ignored).
    pub fn matches_span(&self, span: &Span) -> bool {
        self.steps
            .last()
            .is_some_and(|s| step_matches(s, span, span.duration_nanos()))
    }

    /// Span indices (into `tree.spans()`) in pre-order.
    pub(crate) fn matching_nodes(&self, tree: &TraceTree) -> Vec<usize> {
        let nodes = tree.nodes();
        let pre: Vec<usize> = tree.pre_order().map(|(id, _)| id.index()).collect();
        let span_of = |i: usize| match nodes[i].kind {
            NodeKind::Span(s) => Some(&tree.spans()[s]),
            NodeKind::Missing(_) => None,
        };
        let mut matched = vec![false; nodes.len()];
        for (k, step) in self.steps.iter().enumerate() {
            let mut next = vec![false; nodes.len()];
            // Whether some proper ancestor matched the previous step, propagated
            // parent-first along the pre-order.
            let mut below = vec![false; nodes.len()];
            for &i in &pre {
                let context = match (k, nodes[i].parent) {
                    (0, _) => true,
                    (_, None) => false,
                    (_, Some(p)) => {
                        let p = p.index();
                        below[i] = matched[p] || below[p];
                        match step.combinator {
                            Combinator::Descendant => below[i],
                            Combinator::Child => matched[p],
                        }
                    }
                };
                next[i] = context
                    && span_of(i)
                        .is_some_and(|s| step_matches(step, s, nodes[i].adjusted_duration_nanos()));
            }
            matched = next;
        }
        pre.into_iter()
            .filter(|&i| matched[i])
            .filter_map(|i| nodes[i].span_index())
            .collect()
    }
}

fn step_matches(step: &Step, span: &Span, duration: u64) -> bool {
    step.conditions
        .iter()
        .all(|c| condition_matches(c, span, duration))
}

fn text_matches(op: Op, actual: &str, wanted: &str) -> bool {
    match op {
        Op::Exists => true,
        Op::Eq => actual == wanted,
        Op::Ne => actual != wanted,
        Op::Contains => actual.contains(wanted),
        Op::Prefix => actual.starts_with(wanted),
        Op::Suffix => actual.ends_with(wanted),
        Op::Lt | Op::Le | Op::Gt | Op::Ge => match (actual.parse::<f64>(), wanted.parse::<f64>()) {
            (Ok(a), Ok(w)) => number_matches(op, a, w),
            _ => false,
        },
    }
}

fn number_matches(op: Op, actual: f64, wanted: f64) -> bool {
    match op {
        Op::Lt => actual < wanted,
        Op::Le => actual <= wanted,
        Op::Gt => actual > wanted,
        Op::Ge => actual >= wanted,
        Op::Eq => actual == wanted,
        Op::Ne => actual != wanted,
        _ => false,
    }
}

fn condition_matches(c: &Condition, span: &Span, duration: u64) -> bool {
    match c {
        Condition::Service(op, v) => text_matches(*op, span.service_name(), v),
        Condition::Name(op, v) => text_matches(*op, &span.name, v),
        Condition::Kind(op, k) => (span.kind == *k) == (*op == Op::Eq),
        Condition::Status(op, s) => (span.status.code == *s) == (*op == Op::Eq),
        Condition::DurationNanos(op, n) => number_matches(*op, duration as f64, *n as f64),
        Condition::Event(Op::Exists, _) => !span.events.is_empty(),
        // "No event is named X", not "some event is not named X".
        Condition::Event(Op::Ne, v) => span.events.iter().all(|e| e.name != *v),
        Condition::Event(op, v) => span.events.iter().any(|e| text_matches(*op, &e.name, v)),
        Condition::Attribute(key, op, v) => match span.attribute(key) {
            None => *op == Op::Ne,
            Some(value) => match (op, value) {
                (Op::Exists, _) => true,
                (op, AttributeValue::Int(i)) if op.is_numeric() => v
                    .parse::<f64>()
                    .is_ok_and(|w| number_matches(*op, *i as f64, w)),
                (op, AttributeValue::Double(d)) if op.is_numeric() => {
                    v.parse::<f64>().is_ok_and(|w| number_matches(*op, *d, w))
                }
                (op, value) => text_matches(*op, &value.to_text(), v),
            },
        },
    }
}

impl Timeline {
    /// Spans matching the selector, in the order they start on the timeline.
    pub fn select(&self, selector: &Selector) -> Vec<SpanRef> {
        let mut refs: Vec<SpanRef> = selector
            .matching_nodes(&self.tree)
            .into_iter()
            .map(|i| self.span_ref(i))
            .collect();
        refs.sort_by_key(|r| r.start_index);
        refs
    }

    /// Matching spans that are open just after event `index` (started, not ended).
    pub fn select_open_at(
        &self,
        selector: &Selector,
        index: usize,
    ) -> Result<Vec<SpanRef>, ReplayError> {
        if index >= self.len() {
            return Err(ReplayError::IndexOutOfRange {
                index,
                len: self.len(),
            });
        }
        let mut refs: Vec<SpanRef> = selector
            .matching_nodes(&self.tree)
            .into_iter()
            .filter(|&i| self.span_start_index[i] <= index && index < self.span_end_index[i])
            .map(|i| self.span_ref(i))
            .collect();
        refs.sort_by_key(|r| r.start_index);
        Ok(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{event, sid, span, timed};
    use clew_model::{KeyValue, Status};

    fn trace() -> Vec<Span> {
        let root = timed(
            span(1, None, "ares", "publish_death_notice"),
            SpanKind::Internal,
            0,
            50,
        );
        let mut producer = timed(
            span(2, Some(1), "ares", "publish_death_striker"),
            SpanKind::Producer,
            1,
            2,
        );
        producer
            .attributes
            .push(KeyValue::new("messaging.destination.name", "death-knell"));
        let mut consumer = timed(
            span(3, Some(2), "striker", "consume_death-knell"),
            SpanKind::Consumer,
            3,
            20,
        );
        consumer
            .attributes
            .push(KeyValue::new("recipient", "striker"));
        consumer.attributes.push(KeyValue::new("distance_km", 1.5));
        event(&mut consumer, 4, "drone_destroyed", vec![]);
        let mut failed = timed(
            span(4, Some(3), "striker", "flush_metrics"),
            SpanKind::Internal,
            5,
            6,
        );
        failed.status = Status {
            code: StatusCode::Error,
            message: "gone".into(),
        };
        let other = timed(
            span(5, Some(1), "drone-cmd", "consume_death-knell"),
            SpanKind::Consumer,
            3,
            4,
        );
        vec![root, producer, consumer, failed, other]
    }

    fn select(text: &str) -> Vec<SpanId> {
        Selector::parse(text).unwrap().select(&trace())
    }

    #[test]
    fn fields_and_operators() {
        assert_eq!(
            select(r#"span[service="striker" name="consume_death-knell"]"#),
            vec![sid(3)]
        );
        assert_eq!(select("span[kind=consumer]"), vec![sid(3), sid(5)]);
        assert_eq!(
            select(r#"span[name~="death"][service!=ares]"#),
            vec![sid(3), sid(5)]
        );
        assert_eq!(select("span[name^=publish, name$=striker]"), vec![sid(2)]);
        assert_eq!(select("span[status=error]"), vec![sid(4)]);
        assert_eq!(select("span[duration>10ms]"), vec![sid(1), sid(3)]);
        assert_eq!(select("span[duration<=1ms]"), vec![sid(2), sid(4), sid(5)]);
        assert_eq!(select(r#"span[attr.recipient="striker"]"#), vec![sid(3)]);
        assert_eq!(select("span[attr.distance_km>1]"), vec![sid(3)]);
        assert_eq!(
            select("span[attr.messaging.destination.name]"),
            vec![sid(2)]
        );
        assert_eq!(select("span[event=drone_destroyed]"), vec![sid(3)]);
        assert_eq!(select("span[event]"), vec![sid(3)]);
        assert_eq!(select("span[event!=drone_destroyed]").len(), 4);
        assert_eq!(select("span").len(), 5);
    }

    #[test]
    fn descendant_and_child_combinators() {
        assert_eq!(
            select(r#"span[kind=PRODUCER] span[name~="death"]"#),
            vec![sid(3)]
        );
        assert_eq!(
            select("span[service=ares] span[service=striker]"),
            vec![sid(3), sid(4)]
        );
        assert_eq!(
            select("span[service=ares] > span[service=striker]"),
            vec![sid(3)]
        );
        assert_eq!(
            select("span[kind=PRODUCER] > span[status=error]"),
            Vec::<SpanId>::new()
        );
        assert_eq!(
            select("span[name=publish_death_notice]>span>span>span"),
            vec![sid(4)]
        );
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases = [
            ("", 0, "empty"),
            ("spam", 0, "expected `span`"),
            ("span[name=\"x", 10, "never closed"),
            ("span[kind=SIDEWAYS]", 10, "unknown span kind"),
            ("span[duration>10]", 14, "not a duration"),
            ("span[colour=red]", 5, "unknown field"),
            ("span[name>3]", 9, "compares as text"),
            ("span[name=x", 4, "never closed"),
            ("span[status=fine]", 12, "unknown status"),
            ("span[service]", 12, "needs an operator"),
            ("span]", 4, "unexpected"),
            ("span[attr.x>abc]", 12, "not a number"),
        ];
        for (text, position, message) in cases {
            let err = Selector::parse(text).unwrap_err();
            assert_eq!(err.position, position, "{text}: {err}");
            assert!(err.message.contains(message), "{text}: {err}");
        }
        let err = Selector::parse("span[kind=SIDEWAYS]").unwrap_err();
        assert!(
            err.render("span[kind=SIDEWAYS]")
                .ends_with("\n            ^")
        );
        assert!(err.to_string().starts_with("selector error at column 11"));
    }

    #[test]
    fn open_spans_at_an_index() {
        let timeline = Timeline::build(trace());
        let sel = Selector::parse("span[service=striker]").unwrap();
        let consumer = timeline
            .spans()
            .iter()
            .position(|s| s.span_id == sid(3))
            .unwrap();
        let (start, end) = timeline.span_event_range(consumer);
        let open: Vec<SpanId> = timeline
            .select_open_at(&sel, start)
            .unwrap()
            .into_iter()
            .map(|r| r.span_id)
            .collect();
        assert_eq!(open, vec![sid(3)]);
        assert!(
            timeline
                .select_open_at(&sel, end)
                .unwrap()
                .iter()
                .all(|r| r.span_id != sid(3))
        );
        assert_eq!(timeline.select(&sel).len(), 2);
    }
}
