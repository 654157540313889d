//! Seeded, deterministic flows: traces a test or a demo can regenerate byte for byte.
//!
//! Determinism rests on four rules: one RNG per run (ChaCha8, whose output is fixed by
//! the algorithm, seeded with SHA-256 of the flow name and the seed, so flows sharing a
//! seed still differ), simulated time counted from [`EPOCH_UNIX_MS`] (never the wall
//! clock), no hash-map iteration anywhere on the path to the output, and every id
//! drawn from that RNG (trace ids are UUIDv7 via [`TraceId::v7_from`], carrying the
//! simulated millisecond). Numbers are drawn with `next_u64` and plain arithmetic, not
//! with `rand`'s distributions, whose algorithms may change between `rand` releases;
//! the one exception is the random part of a trace id, which `TraceId::v7_from` draws
//! through `rand` (value-stable within a `rand` minor version, which the lockfile pins).
//!
//! Same seed → the same spans, serialized to the same bytes, and the same signatures;
//! another seed → other ids and times, and for the runtime, session and pipeline flows
//! another shape (step counts and the faulting step come from the seed). The drone
//! scenario has one shape per fault set: only its ids, timings and coordinates vary.
//!
//! The drone scenario is the seed document's two traces (the lock request, then the
//! intercept execution) with its span names, kinds, events and attributes, following
//! [`crate::conventions`]: each `drone_destroyed` event carries `process.exit.code =
//! 666` (an exit, and not a fault), `ares` waits for both prayers (`execute_judgment`
//! links the first prayer's `receive_prayer`), and orlan's clock runs 4 ms behind so
//! its receive is recorded before ares's send, as on real hardware. Faults:
//!
//! * [`Fault::AresDown`] — ares refuses the TCP prayers: both `send_prayer_tcp` CLIENT
//!   spans record an `exception` event (`ConnectionRefusedError`) and end with status
//!   `ERROR`; no judgment, no death notices, no exits.
//! * [`Fault::LostDeathNotice`] — the death notice for orlan reaches no subscriber:
//!   `publish_death_orlan` ends with status `ERROR` and `clew.demo.receivers = 0`, no
//!   one consumes it, orlan never exits and the message stays in flight.
//!
//! [`TraceId::v7_from`]: clew_model::TraceId::v7_from

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use clew_model::{
    AttributeValue, Event, KeyValue, Link, Resource, Scope, Span, SpanId, SpanKind, Status,
    StatusCode, TraceId,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::canon;
use crate::conventions::{ABNORMAL_ATTR, EXCEPTION_EVENT, EXIT_CODE_ATTR, PROCESS_EXIT_EVENT};
use crate::timeline::{Divergence, Timeline};

/// Simulated time starts here: 2025-01-01T00:00:00Z.
pub const EPOCH_UNIX_MS: u64 = 1_735_689_600_000;
const MS: u64 = 1_000_000;
const US: u64 = 1_000;

/// The seeded flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// A job runner whose sandbox crashes on one step: the fault propagates up to the
    /// API's 500.
    Runtime,
    /// A session whose store is killed mid-heartbeat, then recovered after retries.
    Session,
    /// An ETL pipeline: extract, batches over a queue, transform, load.
    Pipeline,
    /// The drone-intercept scenario from the seed document (two traces).
    Drone,
}

impl Flow {
    pub const ALL: [Flow; 4] = [Flow::Runtime, Flow::Session, Flow::Pipeline, Flow::Drone];

    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Runtime => "runtime",
            Flow::Session => "session",
            Flow::Pipeline => "pipeline",
            Flow::Drone => "drone",
        }
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flow {
    type Err = FlowError;
    fn from_str(s: &str) -> Result<Flow, FlowError> {
        Flow::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| FlowError::UnknownFlow(s.to_string()))
    }
}

/// Faults that can be injected into the drone scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    AresDown,
    LostDeathNotice,
}

impl Fault {
    pub const ALL: [Fault; 2] = [Fault::AresDown, Fault::LostDeathNotice];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::AresDown => "ares-down",
            Fault::LostDeathNotice => "lost-death-notice",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Fault {
    type Err = FlowError;
    fn from_str(s: &str) -> Result<Fault, FlowError> {
        Fault::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| FlowError::UnknownFault(s.to_string()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("unknown flow {0:?}; expected one of runtime, session, pipeline, drone")]
    UnknownFlow(String),
    #[error("unknown fault {0:?}; expected ares-down or lost-death-notice")]
    UnknownFault(String),
    #[error("fault {fault} applies to the drone flow only, not to {flow}")]
    FaultNotApplicable { flow: Flow, fault: Fault },
}

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowSpec {
    pub flow: Flow,
    pub seed: u64,
    #[serde(default)]
    pub faults: Vec<Fault>,
}

impl FlowSpec {
    pub fn new(flow: Flow, seed: u64) -> FlowSpec {
        FlowSpec {
            flow,
            seed,
            faults: Vec::new(),
        }
    }

    pub fn with_fault(mut self, fault: Fault) -> FlowSpec {
        if !self.faults.contains(&fault) {
            self.faults.push(fault);
            self.faults.sort();
        }
        self
    }
}

/// One generated trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowTrace {
    /// `lock_request`, `intercept_execution`, or the flow's name.
    pub label: String,
    pub spans: Vec<Span>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRun {
    pub spec: FlowSpec,
    pub traces: Vec<FlowTrace>,
}

impl FlowRun {
    /// The serialized spans of every trace, the bytes "byte-identical" refers to.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.traces).unwrap_or_default()
    }
}

/// Generates a flow's traces.
pub fn generate(spec: &FlowSpec) -> Result<FlowRun, FlowError> {
    if spec.flow != Flow::Drone
        && let Some(&fault) = spec.faults.first()
    {
        return Err(FlowError::FaultNotApplicable {
            flow: spec.flow,
            fault,
        });
    }
    let mut sim = Sim::new(spec.flow, spec.seed);
    let traces = match spec.flow {
        Flow::Runtime => vec![runtime(&mut sim)],
        Flow::Session => vec![session(&mut sim)],
        Flow::Pipeline => vec![pipeline(&mut sim)],
        Flow::Drone => drone(&mut sim, &spec.faults),
    };
    Ok(FlowRun {
        spec: spec.clone(),
        traces,
    })
}

/// How two runs of the same flow compare, trace by trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunComparison {
    pub identical: bool,
    pub traces: Vec<TraceComparison>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceComparison {
    pub label: String,
    pub bytes_identical: bool,
    pub trace_signatures: [String; 2],
    pub timeline_signatures: [String; 2],
    /// First event where ids, recorded times or canonical content differ.
    pub first_divergence: Option<Divergence>,
}

/// Generates the flow twice and compares the runs: the check that nothing outside the
/// seed (wall clock, hash-map order, thread timing) leaked into the output.
pub fn double_run_check(spec: &FlowSpec) -> Result<RunComparison, FlowError> {
    let a = generate(spec)?;
    let b = generate(spec)?;
    Ok(compare_runs(&a.traces, &b.traces))
}

/// Compares two runs (generated here or recorded from a real demo) trace by trace.
pub fn compare_runs(first: &[FlowTrace], second: &[FlowTrace]) -> RunComparison {
    let mut traces = Vec::new();
    for i in 0..first.len().max(second.len()) {
        let empty = FlowTrace {
            label: String::new(),
            spans: Vec::new(),
        };
        let a = first.get(i).unwrap_or(&empty);
        let b = second.get(i).unwrap_or(&empty);
        let ta = Timeline::build(a.spans.clone());
        let tb = Timeline::build(b.spans.clone());
        let bytes = |t: &FlowTrace| serde_json::to_vec(&t.spans).unwrap_or_default();
        traces.push(TraceComparison {
            label: if a.label.is_empty() {
                b.label.clone()
            } else {
                a.label.clone()
            },
            bytes_identical: bytes(a) == bytes(b),
            trace_signatures: [ta.trace_signature(), tb.trace_signature()],
            timeline_signatures: [ta.timeline_signature(), tb.timeline_signature()],
            first_divergence: ta.first_divergence_exact(&tb),
        });
    }
    RunComparison {
        identical: traces
            .iter()
            .all(|t| t.bytes_identical && t.first_divergence.is_none()),
        traces,
    }
}

/// The run's only source of randomness.
struct Sim {
    rng: ChaCha8Rng,
}

impl Sim {
    fn new(flow: Flow, seed: u64) -> Sim {
        let key = canon::sha256(&[
            b"clew-replay/flow/",
            flow.as_str().as_bytes(),
            &seed.to_le_bytes(),
        ]);
        Sim {
            rng: ChaCha8Rng::from_seed(key),
        }
    }

    /// Uniform enough in `lo..=hi` for a simulation (the modulo bias is below 2^-40).
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.rng.next_u64() % (hi - lo + 1)
    }

    /// A network hop: 0.3–2 ms.
    fn hop(&mut self) -> u64 {
        self.between(300 * US, 2 * MS)
    }

    fn span_id(&mut self) -> SpanId {
        loop {
            let id = SpanId(self.rng.next_u64().to_be_bytes());
            if id.is_valid() {
                return id;
            }
        }
    }

    /// A value with one decimal, `lo..=hi`, for coordinates and headings.
    fn decimal(&mut self, lo: u64, hi: u64, scale: u64) -> f64 {
        self.between(lo * scale, hi * scale) as f64 / scale as f64
    }
}

/// Builds one trace in simulated time; per-service clock offsets are applied to what
/// is recorded, never to the simulation.
struct Builder<'s> {
    sim: &'s mut Sim,
    trace_id: TraceId,
    spans: Vec<Span>,
    resources: BTreeMap<&'static str, Arc<Resource>>,
    skew: BTreeMap<&'static str, i64>,
}

impl<'s> Builder<'s> {
    fn new(sim: &'s mut Sim, start_ns: u64) -> Builder<'s> {
        let trace_id = TraceId::v7_from(start_ns / MS, &mut sim.rng);
        Builder {
            sim,
            trace_id,
            spans: Vec::new(),
            resources: BTreeMap::new(),
            skew: BTreeMap::new(),
        }
    }

    fn recorded(&self, service: &str, t: u64) -> u64 {
        t.saturating_add_signed(self.skew.get(service).copied().unwrap_or(0))
    }

    fn open(
        &mut self,
        service: &'static str,
        name: &str,
        kind: SpanKind,
        parent: Option<usize>,
        start: u64,
    ) -> usize {
        let span_id = self.sim.span_id();
        let resource = self
            .resources
            .entry(service)
            .or_insert_with(|| Arc::new(Resource::for_service(service)))
            .clone();
        let at = self.recorded(service, start);
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id,
            parent_span_id: parent.map(|p| self.spans[p].span_id),
            trace_state: String::new(),
            name: name.to_string(),
            kind,
            start_unix_nano: at,
            end_unix_nano: at,
            attributes: Vec::new(),
            events: Vec::new(),
            links: Vec::new(),
            status: Status::default(),
            resource,
            scope: Scope {
                name: "clew-replay-sim".into(),
                version: String::new(),
            },
            flags: 1,
        });
        self.spans.len() - 1
    }

    fn close(&mut self, span: usize, end: u64) {
        let service = self.service(span);
        self.spans[span].end_unix_nano = self.recorded(service, end);
    }

    fn service(&self, span: usize) -> &'static str {
        self.resources
            .keys()
            .find(|k| **k == self.spans[span].service_name())
            .copied()
            .unwrap_or("")
    }

    fn attr(&mut self, span: usize, key: &str, value: impl Into<AttributeValue>) {
        self.spans[span].attributes.push(KeyValue::new(key, value));
    }

    fn event(&mut self, span: usize, at: u64, name: &str, attributes: Vec<KeyValue>) {
        let service = self.service(span);
        let time_unix_nano = self.recorded(service, at);
        self.spans[span].events.push(Event {
            time_unix_nano,
            name: name.to_string(),
            attributes,
        });
    }

    fn fail(&mut self, span: usize, message: &str) {
        self.spans[span].status = Status {
            code: StatusCode::Error,
            message: message.to_string(),
        };
    }

    fn exception(&mut self, span: usize, at: u64, ty: &str, message: &str) {
        self.event(
            span,
            at,
            EXCEPTION_EVENT,
            vec![
                KeyValue::new("exception.type", ty),
                KeyValue::new("exception.message", message),
            ],
        );
    }

    fn link(&mut self, span: usize, target: usize) {
        let link = Link {
            trace_id: self.trace_id,
            span_id: self.spans[target].span_id,
            trace_state: String::new(),
            attributes: Vec::new(),
        };
        self.spans[span].links.push(link);
    }

    /// A PRODUCER span publishing to `channel`, 0.1–0.4 ms long.
    fn publish(
        &mut self,
        service: &'static str,
        name: &str,
        parent: Option<usize>,
        channel: &str,
        at: u64,
    ) -> (usize, u64) {
        let p = self.open(service, name, SpanKind::Producer, parent, at);
        self.attr(p, "messaging.system", "redis");
        self.attr(p, "messaging.operation", "publish");
        self.attr(p, "messaging.destination.name", channel);
        let end = at + self.sim.between(100 * US, 400 * US);
        self.close(p, end);
        (p, end)
    }

    /// A CONSUMER span receiving from `channel` one hop after `sent`.
    fn consume(
        &mut self,
        service: &'static str,
        name: &str,
        producer: usize,
        channel: &str,
        sent: u64,
    ) -> (usize, u64) {
        let at = sent + self.sim.hop();
        let c = self.open(service, name, SpanKind::Consumer, Some(producer), at);
        self.attr(c, "messaging.system", "redis");
        self.attr(c, "messaging.operation", "receive");
        self.attr(c, "messaging.destination.name", channel);
        (c, at)
    }

    fn finish(self, label: &str) -> FlowTrace {
        FlowTrace {
            label: label.to_string(),
            spans: self.spans,
        }
    }
}

fn kv(key: &str, value: impl Into<AttributeValue>) -> KeyValue {
    KeyValue::new(key, value)
}

/// The tower sidecar observes every channel and forwards it: a CONSUMER under the
/// message's PRODUCER, with a PRODUCER child for the re-broadcast.
fn tower(b: &mut Builder<'_>, producer: usize, channel: &str, what: &str, sent: u64) {
    let (rx, at) = b.consume(
        "tower-sidecar",
        &format!("tower_receive_{what}"),
        producer,
        channel,
        sent,
    );
    let fwd_at = at + b.sim.between(50 * US, 200 * US);
    let (_, fwd_end) = b.publish(
        "tower-sidecar",
        &format!("tower_forward_{what}"),
        Some(rx),
        channel,
        fwd_at,
    );
    b.close(rx, fwd_end + 50 * US);
}

fn drone(sim: &mut Sim, faults: &[Fault]) -> Vec<FlowTrace> {
    let ares_down = faults.contains(&Fault::AresDown);
    let lost_notice = faults.contains(&Fault::LostDeathNotice);

    // Lock request: fpv-ops tells striker (and drone-cmd) it has taken striker over.
    let t0 = EPOCH_UNIX_MS * MS + sim.between(0, 500 * MS);
    let mut b = Builder::new(sim, t0);
    let (req, sent) = b.publish(
        "fpv-ops",
        "publish_lock_request_striker",
        None,
        "striker_control_channel",
        t0,
    );
    b.attr(req, "ops_team", "fpv-ops-alpha");
    tower(
        &mut b,
        req,
        "striker_control_channel",
        "striker_control_channel",
        sent,
    );
    let (striker_rx, at) = b.consume(
        "striker",
        "consume_striker_control_channel",
        req,
        "striker_control_channel",
        sent,
    );
    let ev = at + b.sim.between(50 * US, 150 * US);
    b.event(
        striker_rx,
        ev,
        "lock_request_received",
        vec![
            kv("interceptor", "striker"),
            kv("target", "orlan"),
            kv("ops_team", "fpv-ops-alpha"),
        ],
    );
    b.close(striker_rx, ev + 100 * US);
    let (cmd_rx, at) = b.consume(
        "drone-cmd",
        "consume_striker_control_channel",
        req,
        "striker_control_channel",
        sent,
    );
    let ev = at + b.sim.between(50 * US, 150 * US);
    b.event(
        cmd_rx,
        ev,
        "interceptor_locked",
        vec![
            kv("interceptor", "striker"),
            kv("ops_team", "fpv-ops"),
            kv("target", "orlan"),
        ],
    );
    b.close(cmd_rx, ev + 100 * US);
    let lock = b.finish("lock_request");

    // Intercept execution: drone-cmd's periodic calculation, 5 s later.
    let t1 = t0 + 5_000 * MS + sim.between(0, 50 * MS);
    let mut b = Builder::new(sim, t1);
    b.skew.insert("orlan", -4 * MS as i64);
    let calc = b.open(
        "drone-cmd",
        "calculate_intercept_commands",
        SpanKind::Internal,
        None,
        t1,
    );
    b.attr(calc, "interval_s", 5i64);
    let pub_at = t1 + b.sim.between(MS, 3 * MS);
    let (cmds, sent) = b.publish(
        "drone-cmd",
        "publish_intercept_commands",
        Some(calc),
        "drone_command",
        pub_at,
    );
    b.attr(cmds, "commands", 1i64);
    b.close(calc, sent + 100 * US);
    tower(&mut b, cmds, "drone_command", "drone_command", sent);

    let (consume, at) = b.consume(
        "striker",
        "consume_drone_command",
        cmds,
        "drone_command",
        sent,
    );
    let heading = b.sim.decimal(80, 110, 10);
    let distance = b.sim.decimal(100, 150, 10);
    b.attr(consume, "target", "orlan");
    b.attr(consume, "heading", heading);
    b.attr(consume, "distance_km", distance);
    let exec_at = at + b.sim.between(100 * US, 300 * US);
    let exec = b.open(
        "striker",
        "execute_intercept",
        SpanKind::Internal,
        Some(consume),
        exec_at,
    );
    b.attr(exec, "target", "orlan");
    let reached = exec_at + b.sim.between(800 * MS, 1_500 * MS);
    b.event(
        exec,
        reached,
        "reached_intercept_distance",
        vec![kv("distance_km", 1.0), kv("mode", "boogie")],
    );

    // Path A: lock acknowledgement to fpv-ops, whose operator then prays to ares.
    let ack = b.open(
        "striker",
        "send_lock_ack",
        SpanKind::Internal,
        Some(exec),
        reached + 100 * US,
    );
    let (ack_pub, ack_sent) = b.publish(
        "striker",
        "publish_lock_ack",
        Some(ack),
        "striker_lock_response_channel",
        reached + 200 * US,
    );
    b.attr(ack_pub, "status", "loiter-and-await-fpv-ops");
    b.close(ack, ack_sent + 50 * US);
    tower(
        &mut b,
        ack_pub,
        "striker_lock_response_channel",
        "lock_response",
        ack_sent,
    );
    let (ops_rx, at) = b.consume(
        "fpv-ops",
        "consume_lock_response",
        ack_pub,
        "striker_lock_response_channel",
        ack_sent,
    );
    let ops_auth = b.open(
        "fpv-ops",
        "request_strike_authorization",
        SpanKind::Internal,
        Some(ops_rx),
        at + 200 * US,
    );
    let ops_prayer_at = at + 400 * US;
    let ops_prayer = b.open(
        "fpv-ops",
        "send_prayer_tcp",
        SpanKind::Client,
        Some(ops_auth),
        ops_prayer_at,
    );
    prayer_attrs(&mut b, ops_prayer, "Authorize strike on orlan");

    // Path B, in parallel: striker prays to ares itself.
    let st_auth = b.open(
        "striker",
        "request_strike_authorization",
        SpanKind::Internal,
        Some(exec),
        reached + 150 * US,
    );
    let st_prayer_at = reached + 300 * US;
    let st_prayer = b.open(
        "striker",
        "send_prayer_tcp",
        SpanKind::Client,
        Some(st_auth),
        st_prayer_at,
    );
    prayer_attrs(&mut b, st_prayer, "In position, ready to strike orlan");

    if ares_down {
        for (prayer, auth, at) in [
            (st_prayer, st_auth, st_prayer_at),
            (ops_prayer, ops_auth, ops_prayer_at),
        ] {
            let refused = at + b.sim.between(200 * US, 600 * US);
            b.exception(
                prayer,
                refused,
                "ConnectionRefusedError",
                "[Errno 111] Connection refused: ares:6000",
            );
            b.fail(prayer, "connection refused by ares:6000");
            b.close(prayer, refused + 50 * US);
            b.close(auth, refused + 100 * US);
        }
        let end = ops_prayer_at.max(st_prayer_at) + 2 * MS;
        b.close(ops_rx, end);
        b.close(exec, end + 100 * US);
        b.close(consume, end + 200 * US);
        // No death notice: striker flies on until the demo stops it.
        let landed = end + b.sim.between(50 * MS, 200 * MS);
        let mut intercept = b.finish("intercept_execution");
        let flight = flight_mission(sim, t0, landed, true);
        continues(&mut intercept, exec, &flight);
        return vec![lock, intercept, flight];
    }

    let ops_arrive = ops_prayer_at + b.sim.hop();
    let ops_recv = b.open(
        "ares",
        "receive_prayer",
        SpanKind::Server,
        Some(ops_prayer),
        ops_arrive,
    );
    b.attr(ops_recv, "sender", "fpv-ops-alpha");
    b.attr(ops_recv, "striker_id", "striker");
    b.attr(ops_recv, "target", "orlan");
    b.close(ops_recv, ops_arrive + 300 * US);
    let answered = ops_arrive + 300 * US + b.sim.hop();
    b.close(ops_prayer, answered);
    b.close(ops_auth, ops_arrive + 3 * MS);
    b.close(ops_rx, ops_arrive + 3 * MS + 100 * US);

    let st_arrive = st_prayer_at + b.sim.hop();
    let st_recv = b.open(
        "ares",
        "receive_prayer",
        SpanKind::Server,
        Some(st_prayer),
        st_arrive,
    );
    b.attr(st_recv, "sender", "striker");
    b.attr(st_recv, "target", "orlan");
    b.close(st_recv, st_arrive + 300 * US);
    let answered = st_arrive + 300 * US + b.sim.hop();
    b.close(st_prayer, answered);
    b.close(st_auth, st_arrive + 3 * MS);
    b.close(exec, st_arrive + 3 * MS + 100 * US);
    b.close(consume, st_arrive + 3 * MS + 200 * US);

    // Ares judges once both prayers are in.
    let judge_at = ops_arrive.max(st_arrive) + b.sim.between(20 * MS, 60 * MS);
    let judgment = b.open(
        "ares",
        "execute_judgment",
        SpanKind::Internal,
        Some(st_recv),
        judge_at,
    );
    b.link(judgment, ops_recv);
    b.attr(judgment, "prayers", 2i64);
    b.attr(judgment, "decision", "SACRIFICE");
    let notice = b.open(
        "ares",
        "publish_death_notice",
        SpanKind::Internal,
        Some(judgment),
        judge_at + 500 * US,
    );
    let mut eliminated = 0i64;
    let mut last = judge_at + MS;
    let mut striker_destroyed = last;
    for (recipient, name, lat, lon) in [
        ("striker", "publish_death_striker", (49, 50), (36, 37)),
        ("orlan", "publish_death_orlan", (50, 51), (36, 37)),
    ] {
        // The lost-death-notice fault: ares publishes orlan's notice to the misspelt
        // `death_knell`, which nobody subscribes to.
        let lost = lost_notice && recipient == "orlan";
        let channel = if lost { "death_knell" } else { "death-knell" };
        let (death, sent) = b.publish("ares", name, Some(notice), channel, last);
        b.attr(death, "type", "SACRIFICE");
        b.attr(death, "recipient", recipient);
        last = sent + 100 * US;
        if lost {
            b.attr(death, "clew.demo.receivers", 0i64);
            b.fail(death, "death notice for orlan reached no subscriber");
            continue;
        }
        eliminated += 1;
        tower(&mut b, death, "death-knell", "death-knell", sent);
        let drone_service: &'static str = if recipient == "striker" {
            "striker"
        } else {
            "orlan"
        };
        let (rx, at) = b.consume(
            drone_service,
            "consume_death-knell",
            death,
            "death-knell",
            sent,
        );
        b.attr(rx, "recipient", recipient);
        let boom = at + b.sim.between(100 * US, 300 * US);
        b.event(
            rx,
            boom,
            "drone_destroyed",
            vec![kv("alive", false), kv(EXIT_CODE_ATTR, 666i64)],
        );
        b.close(rx, boom + 50 * US);
        if recipient == "striker" {
            striker_destroyed = boom + 100 * US;
        }
        let (metrics, at) = b.consume(
            "drone-cmd",
            "consume_death-knell",
            death,
            "death-knell",
            sent,
        );
        let (la, lo) = (
            b.sim.decimal(lat.0, lat.1, 10_000),
            b.sim.decimal(lon.0, lon.1, 10_000),
        );
        let rec = at + b.sim.between(100 * US, 300 * US);
        b.event(
            metrics,
            rec,
            "death_metrics_recorded",
            vec![
                kv("drone", recipient),
                kv("latitude", la),
                kv("longitude", lo),
            ],
        );
        b.close(metrics, rec + 100 * US);
    }
    b.close(notice, last + 100 * US);
    let done = last + b.sim.between(5 * MS, 10 * MS);
    b.event(
        judgment,
        done,
        "judgment_complete",
        vec![kv("eliminated", eliminated)],
    );
    b.close(judgment, done + 100 * US);
    let mut intercept = b.finish("intercept_execution");
    let flight = flight_mission(sim, t0, striker_destroyed, false);
    continues(&mut intercept, exec, &flight);
    vec![lock, intercept, flight]
}

/// striker's main flight loop: one long-lived root span in a trace of its own, from
/// striker's start until its death notice (or the demo's end), as the demo records it.
/// Generated after the other traces so their randomness is unchanged.
fn flight_mission(sim: &mut Sim, started: u64, ended: u64, alive: bool) -> FlowTrace {
    let start = started.saturating_sub(sim.between(50 * MS, 200 * MS));
    let mut b = Builder::new(sim, start);
    let flight = b.open("striker", "flight_mission", SpanKind::Internal, None, start);
    b.attr(flight, "drone", "striker");
    b.event(flight, ended, "flight_ended", vec![kv("alive", alive)]);
    b.close(flight, ended + 50 * US);
    b.finish("flight")
}

/// `execute_intercept` continues the flight loop: a link to `flight_mission`, with the
/// demo's `relation = continues`.
fn continues(intercept: &mut FlowTrace, exec: usize, flight: &FlowTrace) {
    let target = &flight.spans[0];
    intercept.spans[exec].links.push(Link {
        trace_id: target.trace_id,
        span_id: target.span_id,
        trace_state: String::new(),
        attributes: vec![kv("relation", "continues")],
    });
}

fn prayer_attrs(b: &mut Builder<'_>, span: usize, prayer: &str) {
    b.attr(span, "net.transport", "ip_tcp");
    b.attr(span, "server.address", "ares");
    b.attr(span, "server.port", 6000i64);
    b.attr(span, "prayer", prayer);
}

/// A job whose sandbox process crashes on one step.
fn runtime(sim: &mut Sim) -> FlowTrace {
    let steps = sim.between(3, 6);
    let faulty = sim.between(0, steps - 1);
    let t0 = EPOCH_UNIX_MS * MS + sim.between(0, 1_000 * MS);
    let mut b = Builder::new(sim, t0);
    let api = b.open("api-gateway", "POST /v1/runs", SpanKind::Server, None, t0);
    b.attr(api, "http.request.method", "POST");
    let call_at = t0 + 200 * US;
    let call = b.open(
        "api-gateway",
        "dispatch_run",
        SpanKind::Client,
        Some(api),
        call_at,
    );
    let run_at = call_at + b.sim.hop();
    let run = b.open(
        "job-runner",
        "run_job",
        SpanKind::Server,
        Some(call),
        run_at,
    );
    b.attr(run, "job.steps", steps as i64);
    let mut now = run_at + 100 * US;
    for step in 0..=faulty {
        let s = b.open(
            "job-runner",
            "execute_step",
            SpanKind::Internal,
            Some(run),
            now,
        );
        b.attr(s, "step.index", step as i64);
        let eval = b.open(
            "job-runner",
            "sandbox.eval",
            SpanKind::Client,
            Some(s),
            now + 50 * US,
        );
        let arrive = now + 50 * US + b.sim.hop();
        let srv = b.open("sandbox", "eval", SpanKind::Server, Some(eval), arrive);
        let work = b.sim.between(MS, 20 * MS);
        if step == faulty {
            b.event(
                srv,
                arrive + work,
                PROCESS_EXIT_EVENT,
                vec![kv(EXIT_CODE_ATTR, 139i64), kv(ABNORMAL_ATTR, true)],
            );
            b.fail(srv, "sandbox killed by SIGSEGV");
            b.close(srv, arrive + work);
            let reset = arrive + work + b.sim.hop();
            b.exception(
                eval,
                reset,
                "ConnectionResetError",
                "sandbox closed the connection",
            );
            b.fail(eval, "sandbox closed the connection");
            b.close(eval, reset + 50 * US);
            b.fail(s, "step failed");
            b.close(s, reset + 100 * US);
            now = reset + 200 * US;
        } else {
            b.close(srv, arrive + work);
            let back = arrive + work + b.sim.hop();
            b.close(eval, back);
            b.close(s, back + 50 * US);
            now = back + 100 * US;
        }
    }
    b.fail(run, &format!("step {faulty} of {steps} failed"));
    b.close(run, now);
    let back = now + b.sim.hop();
    b.fail(call, "job-runner returned an error");
    b.close(call, back);
    b.attr(api, "http.response.status_code", 500i64);
    b.fail(api, "500 Internal Server Error");
    b.close(api, back + 100 * US);
    b.finish("runtime")
}

/// A session whose store is killed mid-heartbeat and then recovered.
fn session(sim: &mut Sim) -> FlowTrace {
    let heartbeats = sim.between(2, 5);
    let faulty = sim.between(0, heartbeats - 1);
    let retries = sim.between(1, 3);
    let t0 = EPOCH_UNIX_MS * MS + sim.between(0, 1_000 * MS);
    let mut b = Builder::new(sim, t0);
    let root = b.open("edge", "open_session", SpanKind::Server, None, t0);

    // One edge → session-svc → session-store round trip; returns (end, ok).
    fn round_trip(b: &mut Builder<'_>, parent: usize, op: &str, at: u64, outcome: Outcome) -> u64 {
        let client = b.open("edge", op, SpanKind::Client, Some(parent), at);
        let arrive = at + b.sim.hop();
        let server = b.open("session-svc", op, SpanKind::Server, Some(client), arrive);
        let get = b.open(
            "session-svc",
            "store.get",
            SpanKind::Client,
            Some(server),
            arrive + 100 * US,
        );
        let end = match outcome {
            Outcome::Ok | Outcome::Killed => {
                let store_at = arrive + 100 * US + b.sim.hop();
                let store = b.open(
                    "session-store",
                    "get",
                    SpanKind::Server,
                    Some(get),
                    store_at,
                );
                let work = b.sim.between(200 * US, 2 * MS);
                if outcome == Outcome::Killed {
                    b.event(
                        store,
                        store_at + work,
                        PROCESS_EXIT_EVENT,
                        vec![kv(EXIT_CODE_ATTR, 137i64), kv(ABNORMAL_ATTR, true)],
                    );
                    b.fail(store, "OOM-killed");
                }
                b.close(store, store_at + work);
                store_at + work + b.sim.hop()
            }
            Outcome::Refused => arrive + 100 * US + b.sim.between(200 * US, 500 * US),
        };
        if outcome != Outcome::Ok {
            let (ty, msg) = if outcome == Outcome::Killed {
                (
                    "ConnectionResetError",
                    "session-store closed the connection",
                )
            } else {
                ("ConnectionRefusedError", "session-store is restarting")
            };
            b.exception(get, end, ty, msg);
            b.fail(get, msg);
            b.fail(server, "session store unavailable");
            b.fail(client, "503 Service Unavailable");
        }
        b.close(get, end);
        b.close(server, end + 100 * US);
        let back = end + 100 * US + b.sim.hop();
        b.close(client, back);
        back
    }

    let mut now = round_trip(&mut b, root, "session.connect", t0 + 200 * US, Outcome::Ok);
    for beat in 0..heartbeats {
        now += b.sim.between(900 * MS, 1_100 * MS);
        if beat != faulty {
            now = round_trip(&mut b, root, "heartbeat", now, Outcome::Ok);
            continue;
        }
        now = round_trip(&mut b, root, "heartbeat", now, Outcome::Killed);
        let recover = b.open(
            "edge",
            "session.recover",
            SpanKind::Internal,
            Some(root),
            now + 100 * US,
        );
        now += 100 * US;
        for attempt in 0..retries {
            now += b.sim.between(100 * MS, 300 * MS);
            let outcome = if attempt + 1 == retries {
                Outcome::Ok
            } else {
                Outcome::Refused
            };
            now = round_trip(&mut b, recover, "session.connect", now, outcome);
        }
        b.event(
            recover,
            now + 50 * US,
            "session.resumed",
            vec![kv("attempts", retries as i64)],
        );
        b.close(recover, now + 100 * US);
        now += 100 * US;
    }
    b.close(root, now + 200 * US);
    b.finish("session")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Killed,
    Refused,
}

/// Extract → batches over a queue → transform → load into the warehouse.
fn pipeline(sim: &mut Sim) -> FlowTrace {
    let batches = sim.between(2, 5);
    let t0 = EPOCH_UNIX_MS * MS + sim.between(0, 1_000 * MS);
    let mut b = Builder::new(sim, t0);
    let run = b.open(
        "etl-scheduler",
        "run_pipeline",
        SpanKind::Internal,
        None,
        t0,
    );
    b.attr(run, "etl.pipeline", "orders-daily");
    let call_at = t0 + 300 * US;
    let call = b.open(
        "etl-scheduler",
        "extract",
        SpanKind::Client,
        Some(run),
        call_at,
    );
    let arrive = call_at + b.sim.hop();
    let extract = b.open(
        "extractor",
        "extract_orders",
        SpanKind::Server,
        Some(call),
        arrive,
    );
    let read = b.open(
        "extractor",
        "read_source",
        SpanKind::Client,
        Some(extract),
        arrive + 100 * US,
    );
    b.attr(read, "db.system", "postgresql");
    let mut now = arrive + 100 * US + b.sim.between(5 * MS, 30 * MS);
    b.close(read, now);
    let mut total_rows = 0i64;
    let mut last_load = now;
    for batch in 0..batches {
        let rows = b.sim.between(100, 5_000) as i64;
        total_rows += rows;
        now += b.sim.between(200 * US, MS);
        let (publish, sent) = b.publish(
            "extractor",
            "publish_batch",
            Some(extract),
            "etl.batches",
            now,
        );
        b.attr(publish, "etl.batch", batch as i64);
        b.attr(publish, "etl.rows", rows);
        now = sent;
        let (transform, at) = b.consume(
            "transformer",
            "transform_batch",
            publish,
            "etl.batches",
            sent,
        );
        let done = at + b.sim.between(2 * MS, 15 * MS);
        let (load, load_sent) = b.publish(
            "transformer",
            "load_batch",
            Some(transform),
            "etl.load",
            done,
        );
        b.attr(load, "etl.rows", rows);
        b.close(transform, load_sent + 50 * US);
        let (loader, at) = b.consume("loader", "load_rows", load, "etl.load", load_sent);
        let insert = b.open(
            "loader",
            "warehouse.insert",
            SpanKind::Client,
            Some(loader),
            at + 100 * US,
        );
        let wh_at = at + 100 * US + b.sim.hop();
        let wh = b.open("warehouse", "insert", SpanKind::Server, Some(insert), wh_at);
        b.attr(wh, "db.operation.name", "INSERT");
        let wh_end = wh_at + b.sim.between(3 * MS, 25 * MS);
        b.close(wh, wh_end);
        let back = wh_end + b.sim.hop();
        b.close(insert, back);
        b.close(loader, back + 50 * US);
        last_load = last_load.max(back + 50 * US);
    }
    b.close(extract, now + 100 * US);
    let back = now + 100 * US + b.sim.hop();
    b.close(call, back);
    let end = last_load.max(back) + MS;
    b.event(
        run,
        end,
        "pipeline.completed",
        vec![
            kv("etl.batches", batches as i64),
            kv("etl.rows", total_rows),
        ],
    );
    b.close(run, end + 100 * US);
    b.finish("pipeline")
}
