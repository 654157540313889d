//! Time travel: the state of every service after any event of a [`Timeline`].
//!
//! The state after event `i` is a fold of events `0..=i` through one function
//! ([`State::apply`]). Folding from zero on every step would make stepping backwards
//! through a 50,000-span trace quadratic, so the fold's state is kept at checkpoints
//! every `K` events (at most [`MAX_CHECKPOINTS`] of them); any snapshot is the
//! nearest checkpoint at or before it plus at most `K` applied events.

use std::collections::{BTreeMap, BTreeSet};

use clew_model::{AttributeValue, KeyValue, SpanId, SpanKind, TraceId};
use serde::{Deserialize, Serialize};

use crate::conventions::{self, FaultKind};
use crate::timeline::{EventKind, Timeline, TimelineEvent};

/// Bounds checkpoint memory: a checkpoint can hold every open span, and a 50,000-deep
/// chain keeps them all open at once.
pub const MAX_CHECKPOINTS: usize = 64;
const MIN_CHECKPOINT_INTERVAL: usize = 256;
/// A service's key attributes are the latest values of the first this-many keys it
/// reported; a trace whose spans invent keys endlessly cannot make snapshots grow.
pub const MAX_KEY_ATTRIBUTES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    #[error("index {index} is past the end of the timeline ({len} events; the last is {})", len.saturating_sub(1))]
    IndexOutOfRange { index: usize, len: usize },
    #[error("the trace has no spans, so there is nothing to replay")]
    EmptyTrace,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct ServiceSlot {
    seen: bool,
    exit: Option<u32>,
    last_event: Option<u32>,
    attributes: BTreeMap<String, String>,
}

/// The folded state after the first `applied` events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct State {
    applied: usize,
    open: BTreeSet<u32>,
    in_flight: BTreeSet<u32>,
    services: Vec<ServiceSlot>,
    last_error: Option<u32>,
}

impl State {
    pub(crate) fn initial(timeline: &Timeline) -> State {
        State {
            services: vec![ServiceSlot::default(); timeline.services.len()],
            ..State::default()
        }
    }

    /// Applies the event at `index`, which must be the next one (`index == applied`).
    pub(crate) fn apply(&mut self, timeline: &Timeline, index: usize) {
        debug_assert_eq!(index, self.applied);
        let ev = &timeline.events[index];
        let i = ev.span_index;
        let span = &timeline.spans()[i];
        let slot = &mut self.services[timeline.span_service[i] as usize];
        slot.last_event = Some(index as u32);
        let event = ev.event_index.map(|e| &span.events[e]);
        match ev.kind {
            EventKind::SpanStart | EventKind::MessageSend | EventKind::MessageReceive => {
                // A service that starts work after exiting was restarted.
                slot.seen = true;
                slot.exit = None;
                merge_attributes(&mut slot.attributes, &span.attributes);
                self.open.insert(i as u32);
                if ev.kind == EventKind::MessageSend {
                    self.in_flight.insert(i as u32);
                }
                if ev.kind == EventKind::MessageReceive
                    && let Some(p) = timeline.tree.nodes()[i].parent
                {
                    self.in_flight.remove(&(p.index() as u32));
                }
                // A consumer that links the messages it handled received them all.
                for link in &span.links {
                    if link.trace_id == span.trace_id
                        && let Some(t) = timeline.tree.node_of(link.span_id)
                    {
                        self.in_flight.remove(&(t.index() as u32));
                    }
                }
            }
            EventKind::SpanEvent => {
                if let Some(e) = event {
                    merge_attributes(&mut slot.attributes, &e.attributes);
                }
            }
            EventKind::ProcessExit => {
                slot.exit = Some(index as u32);
                if let Some(e) = event {
                    merge_attributes(&mut slot.attributes, &e.attributes);
                }
            }
            EventKind::SpanEnd => {
                self.open.remove(&(i as u32));
                // A call that returned is no longer travelling, answered or not; a
                // published message travels until someone receives it.
                if span.kind == SpanKind::Client {
                    self.in_flight.remove(&(i as u32));
                }
            }
        }
        if ev.fault.is_some() {
            self.last_error = Some(index as u32);
        }
        self.applied = index + 1;
    }
}

fn merge_attributes(into: &mut BTreeMap<String, String>, attributes: &[KeyValue]) {
    for kv in attributes {
        if into.len() < MAX_KEY_ATTRIBUTES || into.contains_key(&kv.key) {
            into.insert(kv.key.clone(), kv.value.to_text());
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Checkpoints {
    interval: usize,
    /// `states[k]` is the state after `k * interval` events.
    states: Vec<State>,
}

impl Checkpoints {
    pub(crate) fn build(timeline: &Timeline) -> Checkpoints {
        let len = timeline.len();
        let interval = MIN_CHECKPOINT_INTERVAL.max(len.div_ceil(MAX_CHECKPOINTS));
        let mut state = State::initial(timeline);
        let mut states = vec![state.clone()];
        for index in 0..len {
            state.apply(timeline, index);
            if state.applied.is_multiple_of(interval) {
                states.push(state.clone());
            }
        }
        Checkpoints { interval, states }
    }

    /// The state after the first `count` events.
    fn state_after(&self, timeline: &Timeline, count: usize) -> State {
        let k = (count / self.interval).min(self.states.len() - 1);
        let mut state = self.states[k].clone();
        for index in state.applied..count {
            state.apply(timeline, index);
        }
        state
    }
}

/// Whether a service has shown up yet and whether its process is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    /// No span of the service has started yet.
    NotStarted,
    Alive,
    /// The service's last process exit came after its last span start.
    Exited,
}

/// A pointer to a timeline event, with enough to print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    pub index: usize,
    pub at_us: u64,
    pub kind: EventKind,
    pub service: String,
    pub span_id: SpanId,
    pub label: String,
}

/// An open span or a span on a causal path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanRef {
    pub span_id: SpanId,
    pub service: String,
    pub name: String,
    pub kind: SpanKind,
    /// Timeline index of the span's start.
    pub start_index: usize,
    pub start_at_us: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSnapshot {
    pub service: String,
    pub status: ServiceStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exited_at: Option<EventRef>,
    /// In the order they started.
    pub open_spans: Vec<SpanRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<EventRef>,
    /// The latest value of each attribute the service's spans and events reported so
    /// far (at most [`MAX_KEY_ATTRIBUTES`] keys).
    pub attributes: BTreeMap<String, String>,
}

/// A message or request that has left and not yet arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub span: SpanRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// A fault event and what it says went wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRef {
    pub event: EventRef,
    pub kind: FaultKind,
    pub span_name: String,
    pub message: String,
}

/// The whole system as it was just after one timeline event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub trace_id: Option<TraceId>,
    /// Events `0..=index` have happened.
    pub index: usize,
    pub at_us: u64,
    pub label: String,
    pub state_signature: String,
    /// Every service of the trace, sorted by name, including those not started yet.
    pub services: Vec<ServiceSnapshot>,
    /// Oldest first.
    pub in_flight: Vec<InFlight>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<FaultRef>,
    pub open_span_count: usize,
}

/// The lowest-index fault and the events that causally led to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstFault {
    pub fault: FaultRef,
    pub snapshot: Snapshot,
    /// The spans from the trace root down to the failed span.
    pub span_path: Vec<SpanRef>,
    /// The happens-before chain ending at the fault, oldest first: each ancestor's
    /// start, then the failed span's own earlier events, then the fault.
    pub causal_chain: Vec<EventRef>,
    /// Starts of spans that spans on the path link to (other causes, such as every
    /// message a batch consumer handled).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub linked_causes: Vec<EventRef>,
}

impl Timeline {
    pub(crate) fn event_ref(&self, index: usize) -> EventRef {
        let e = &self.events[index];
        EventRef {
            index,
            at_us: e.at_us,
            kind: e.kind,
            service: e.service.clone(),
            span_id: e.span_id,
            label: e.label.clone(),
        }
    }

    pub(crate) fn span_ref(&self, span_index: usize) -> SpanRef {
        let span = &self.spans()[span_index];
        let start = self.span_start_index[span_index];
        SpanRef {
            span_id: span.span_id,
            service: span.service_name().to_string(),
            name: span.name.clone(),
            kind: span.kind,
            start_index: start,
            start_at_us: self.events[start].at_us,
        }
    }

    fn fault_ref(&self, index: usize) -> Option<FaultRef> {
        let e = &self.events[index];
        let kind = e.fault?;
        let span = &self.spans()[e.span_index];
        let event = e.event_index.map(|i| &span.events[i]);
        let message = match (kind, event) {
            (FaultKind::Exception, Some(ev)) => conventions::exception_text(ev),
            (FaultKind::AbnormalExit, Some(ev)) => match conventions::exit_code(ev) {
                Some(code) => format!("process exited with code {code}"),
                None => "process exited abnormally".to_string(),
            },
            _ if !span.status.message.is_empty() => span.status.message.clone(),
            _ => kind.as_str().to_string(),
        };
        Some(FaultRef {
            event: self.event_ref(index),
            kind,
            span_name: span.name.clone(),
            message,
        })
    }

    fn materialize(&self, state: &State) -> Snapshot {
        let index = state.applied - 1;
        let event = &self.events[index];
        let mut open_by_service: Vec<Vec<SpanRef>> = vec![Vec::new(); self.services.len()];
        for &i in &state.open {
            open_by_service[self.span_service[i as usize] as usize].push(self.span_ref(i as usize));
        }
        let services = self
            .services
            .iter()
            .zip(&state.services)
            .zip(open_by_service)
            .map(|((name, slot), mut open_spans)| {
                open_spans.sort_by_key(|s| s.start_index);
                ServiceSnapshot {
                    service: name.clone(),
                    status: match (slot.seen, slot.exit) {
                        (false, _) => ServiceStatus::NotStarted,
                        (true, None) => ServiceStatus::Alive,
                        (true, Some(_)) => ServiceStatus::Exited,
                    },
                    exited_at: slot.exit.map(|e| self.event_ref(e as usize)),
                    open_spans,
                    last_event: slot.last_event.map(|e| self.event_ref(e as usize)),
                    attributes: slot.attributes.clone(),
                }
            })
            .collect();
        let mut in_flight: Vec<InFlight> = state
            .in_flight
            .iter()
            .map(|&i| InFlight {
                span: self.span_ref(i as usize),
                destination: self.spans()[i as usize]
                    .messaging_destination()
                    .map(str::to_string)
                    .or_else(|| {
                        self.spans()[i as usize]
                            .attribute("server.address")
                            .map(AttributeValue::to_text)
                    }),
            })
            .collect();
        in_flight.sort_by_key(|m| m.span.start_index);
        Snapshot {
            trace_id: self.trace_id(),
            index,
            at_us: event.at_us,
            label: event.label.clone(),
            state_signature: event.state_signature.clone(),
            services,
            in_flight,
            last_error: state.last_error.and_then(|e| self.fault_ref(e as usize)),
            open_span_count: state.open.len(),
        }
    }

    /// The snapshot just after event `index`.
    pub fn snapshot_at(&self, index: usize) -> Result<Snapshot, ReplayError> {
        if index >= self.len() {
            return Err(if self.is_empty() {
                ReplayError::EmptyTrace
            } else {
                ReplayError::IndexOutOfRange {
                    index,
                    len: self.len(),
                }
            });
        }
        Ok(self.materialize(&self.checkpoints.state_after(self, index + 1)))
    }

    /// The snapshot after the last event; `None` for an empty trace.
    pub fn latest(&self) -> Option<Snapshot> {
        self.len()
            .checked_sub(1)
            .and_then(|i| self.snapshot_at(i).ok())
    }

    /// Events between checkpoints: the most a snapshot or a step back has to replay.
    pub fn checkpoint_interval(&self) -> usize {
        self.checkpoints.interval
    }

    /// The lowest-index fault (error status, exception, abnormal exit; see
    /// [`crate::conventions`]) with the causal path that explains it.
    pub fn first_fault(&self) -> Option<FirstFault> {
        let index = self.fault_indices().next()?;
        let fault = self.fault_ref(index)?;
        let snapshot = self.snapshot_at(index).ok()?;
        let failed = self.events[index].span_index;

        let nodes = self.tree.nodes();
        let mut path = vec![failed];
        while let Some(p) = nodes[*path.last().unwrap_or(&failed)]
            .parent
            .map(|p| p.index())
            .filter(|&p| p < self.spans().len())
        {
            path.push(p);
        }
        path.reverse();

        let mut causal_chain: Vec<EventRef> = path[..path.len() - 1]
            .iter()
            .map(|&s| self.event_ref(self.span_start_index[s]))
            .collect();
        let start = self.span_start_index[failed];
        causal_chain.extend(
            (start..=index)
                .filter(|&i| self.events[i].span_index == failed)
                .map(|i| self.event_ref(i)),
        );

        let mut linked: BTreeSet<usize> = BTreeSet::new();
        for &s in &path {
            let span = &self.spans()[s];
            for link in &span.links {
                if link.trace_id == span.trace_id
                    && let Some(t) = self.tree.node_of(link.span_id)
                {
                    linked.insert(self.span_start_index[t.index()]);
                }
            }
        }

        Some(FirstFault {
            fault,
            snapshot,
            span_path: path.iter().map(|&s| self.span_ref(s)).collect(),
            causal_chain,
            linked_causes: linked.into_iter().map(|i| self.event_ref(i)).collect(),
        })
    }

    /// A cursor before the first event, for stepping through the timeline.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            timeline: self,
            state: State::initial(self),
        }
    }
}

/// Steps through a timeline: forward by applying one event, backward and by jumps
/// through the nearest checkpoint.
#[derive(Debug, Clone)]
pub struct Cursor<'t> {
    timeline: &'t Timeline,
    state: State,
}

impl<'t> Cursor<'t> {
    /// The index of the last event applied; `None` before the first.
    pub fn position(&self) -> Option<usize> {
        self.state.applied.checked_sub(1)
    }

    /// Applies the next event and returns it; `None` at the end.
    pub fn step_forward(&mut self) -> Option<&'t TimelineEvent> {
        let index = self.state.applied;
        let event = self.timeline.events.get(index)?;
        self.state.apply(self.timeline, index);
        Some(event)
    }

    /// Un-applies the last event; returns the new position, or `None` when already
    /// before the first event.
    pub fn step_back(&mut self) -> Option<Option<usize>> {
        let count = self.state.applied.checked_sub(1)?;
        self.state = self.timeline.checkpoints.state_after(self.timeline, count);
        Some(self.position())
    }

    /// Moves to just after event `index`.
    pub fn jump_to(&mut self, index: usize) -> Result<(), ReplayError> {
        if index >= self.timeline.len() {
            return Err(ReplayError::IndexOutOfRange {
                index,
                len: self.timeline.len(),
            });
        }
        let count = index + 1;
        let near_ahead = count >= self.state.applied
            && count - self.state.applied <= self.timeline.checkpoints.interval;
        if near_ahead {
            for i in self.state.applied..count {
                self.state.apply(self.timeline, i);
            }
        } else {
            self.state = self.timeline.checkpoints.state_after(self.timeline, count);
        }
        Ok(())
    }

    /// Moves to just after the first fault; returns its index.
    pub fn jump_to_first_fault(&mut self) -> Option<usize> {
        let index = self.timeline.fault_indices().next()?;
        self.jump_to(index).ok()?;
        Some(index)
    }

    /// Back to before the first event.
    pub fn rewind(&mut self) {
        self.state = State::initial(self.timeline);
    }

    /// The snapshot at the current position; `None` before the first event.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.position()?;
        Some(self.timeline.materialize(&self.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{arb_trace, span};
    use proptest::prelude::*;

    fn fold_from_scratch(timeline: &Timeline, count: usize) -> State {
        let mut state = State::initial(timeline);
        for i in 0..count {
            state.apply(timeline, i);
        }
        state
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn snapshot_equals_folding_from_scratch(spans in arb_trace(40)) {
            let timeline = Timeline::build(spans);
            for i in 0..timeline.len() {
                let from_scratch = timeline.materialize(&fold_from_scratch(&timeline, i + 1));
                prop_assert_eq!(&timeline.snapshot_at(i).unwrap(), &from_scratch);
            }
            if let Some(latest) = timeline.latest() {
                let all = fold_from_scratch(&timeline, timeline.len());
                prop_assert_eq!(latest, timeline.materialize(&all));
            }
        }

        #[test]
        fn cursor_steps_agree_with_snapshots(spans in arb_trace(30), back in 0usize..20) {
            let timeline = Timeline::build(spans);
            let mut cursor = timeline.cursor();
            while cursor.step_forward().is_some() {
                let at = cursor.position().unwrap();
                prop_assert_eq!(cursor.snapshot().unwrap(), timeline.snapshot_at(at).unwrap());
            }
            for _ in 0..back {
                if cursor.step_back().is_none() { break; }
                match cursor.position() {
                    Some(at) => prop_assert_eq!(cursor.snapshot().unwrap(), timeline.snapshot_at(at).unwrap()),
                    None => prop_assert!(cursor.snapshot().is_none()),
                }
            }
        }
    }

    #[test]
    fn checkpoints_cover_long_timelines_with_few_states() {
        let spans: Vec<_> = (1..=3000u64)
            .map(|i| {
                let mut s = span(i, (i > 1).then_some(1), "svc", "work");
                s.start_unix_nano += i * 1000;
                s.end_unix_nano = s.start_unix_nano + 10;
                s
            })
            .collect();
        let timeline = Timeline::build(spans);
        assert!(timeline.checkpoints.states.len() <= MAX_CHECKPOINTS + 1);
        let mut cursor = timeline.cursor();
        cursor.jump_to(4321).unwrap();
        assert_eq!(cursor.position(), Some(4321));
        cursor.step_back();
        assert_eq!(
            cursor.snapshot().unwrap(),
            timeline.snapshot_at(4320).unwrap()
        );
        cursor.jump_to(10).unwrap();
        assert_eq!(
            cursor.snapshot().unwrap(),
            timeline.snapshot_at(10).unwrap()
        );
        assert!(matches!(
            cursor.jump_to(timeline.len()),
            Err(ReplayError::IndexOutOfRange { .. })
        ));
    }
}
