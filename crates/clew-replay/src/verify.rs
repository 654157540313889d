//! Replay verification: does a re-run behave like the recording?
//!
//! Two runs are the same when their trace signatures are equal (see the crate docs).
//! When they are not, the first difference is located in the *canonical steps* — a
//! time-free walk of the canonically sorted tree — so a divergence is reported where
//! the structure differs, never because two concurrent branches happened to
//! interleave differently or a clock drifted.
//!
//! A [`Golden`] file stores the canonical steps and signature of one or more traces
//! (pretty JSON, one step per line, meant to be reviewed in a pull request), with
//! optional selector [`Assertion`]s. [`check_golden_file`] is the CI entry point: with
//! `ci` set, a missing golden file is a failure instead of being written.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use clew_model::Span;
use clew_model::tree::{SkewMode, TraceTree, TreeWarning};
use serde::{Deserialize, Serialize};

use crate::canon;
use crate::flows::{self, FlowError, FlowSpec};
use crate::selector::Selector;
use crate::signature::{Canonical, SignatureOptions};
use crate::timeline::first_difference;

/// Which side of a comparison a problem is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The recording or golden file: what was expected.
    Recorded,
    /// The re-run: what actually happened.
    Rerun,
}

/// What `clew replay verify` reports; [`VerifyResult::exit_code`] is its exit status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum VerifyResult {
    Ok {
        trace_signatures: Vec<String>,
    },
    InvalidTrace {
        side: Side,
        /// The trace's label (`intercept_execution`), empty for a lone trace.
        trace: String,
        reason: String,
    },
    Divergence {
        trace: String,
        /// Index into the canonical steps.
        index: usize,
        expected: Option<String>,
        actual: Option<String>,
        expected_signature: String,
        actual_signature: String,
    },
    AssertionFailed {
        selector: String,
        matched: usize,
        min: usize,
        max: Option<usize>,
    },
}

/// The exit status for an error that is neither the recording's nor the re-run's
/// fault (I/O, a server that did not answer). Used by the CLI.
pub const EXIT_INTERNAL_ERROR: i32 = 3;

impl VerifyResult {
    pub fn is_ok(&self) -> bool {
        matches!(self, VerifyResult::Ok { .. })
    }

    /// 0 ok, 1 divergence or failed assertion, 2 invalid trace.
    pub fn exit_code(&self) -> i32 {
        match self {
            VerifyResult::Ok { .. } => 0,
            VerifyResult::Divergence { .. } | VerifyResult::AssertionFailed { .. } => 1,
            VerifyResult::InvalidTrace { .. } => 2,
        }
    }
}

impl fmt::Display for VerifyResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = |t: &str| {
            if t.is_empty() {
                String::new()
            } else {
                format!(" in trace {t}")
            }
        };
        match self {
            VerifyResult::Ok { trace_signatures } => {
                write!(f, "ok: {} trace(s) match", trace_signatures.len())
            }
            VerifyResult::InvalidTrace {
                side,
                trace,
                reason,
            } => {
                let which = match side {
                    Side::Recorded => "recorded",
                    Side::Rerun => "re-run",
                };
                write!(f, "invalid {which} trace{}: {reason}", named(trace))
            }
            VerifyResult::Divergence {
                trace,
                index,
                expected,
                actual,
                ..
            } => {
                let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "end of trace".into());
                write!(
                    f,
                    "divergence{}: expected {} at step {index}, got {}",
                    named(trace),
                    show(expected),
                    show(actual)
                )
            }
            VerifyResult::AssertionFailed {
                selector,
                matched,
                min,
                max,
            } => {
                let bound = match max {
                    Some(max) if max == min => format!("exactly {min}"),
                    Some(max) => format!("{min} to {max}"),
                    None => format!("at least {min}"),
                };
                write!(
                    f,
                    "assertion failed: {selector} matched {matched} span(s), expected {bound}"
                )
            }
        }
    }
}

/// Why a trace cannot be verified, or `Ok` when it can.
pub fn validate(spans: &[Span]) -> Result<(), String> {
    if spans.is_empty() {
        return Err("the trace has no spans".into());
    }
    let ids: BTreeSet<String> = spans.iter().map(|s| s.trace_id.to_string()).collect();
    if ids.len() > 1 {
        return Err(format!(
            "spans belong to {} traces ({}); verify one trace at a time",
            ids.len(),
            ids.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(s) = spans.iter().find(|s| s.end_unix_nano < s.start_unix_nano) {
        return Err(format!(
            "span {} ({}) ends before it starts",
            s.span_id, s.name
        ));
    }
    let tree = TraceTree::build(spans.to_vec(), SkewMode::Off);
    if let Some(w) = tree.warnings().first() {
        return Err(match w {
            TreeWarning::DuplicateSpanId { .. } => {
                format!("{w}: the trace was recorded twice or ids collide")
            }
            TreeWarning::ParentCycle { .. } => w.to_string(),
        });
    }
    if tree.orphan_count() > 0 {
        return Err(format!(
            "{} span(s) name a parent that is not in the trace (missing: {}); the trace is incomplete",
            tree.orphan_count(),
            tree.missing_span_ids()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

/// The signature and canonical steps of one valid trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GoldenTrace {
    pub label: String,
    pub trace_signature: String,
    pub steps: Vec<String>,
}

impl GoldenTrace {
    pub fn from_spans(
        label: &str,
        spans: &[Span],
        options: &SignatureOptions,
    ) -> Result<GoldenTrace, String> {
        validate(spans)?;
        let tree = TraceTree::build(spans.to_vec(), SkewMode::Adjust);
        let canonical = Canonical::compute(&tree, options);
        Ok(GoldenTrace {
            label: label.to_string(),
            trace_signature: canon::hex(&canonical.signature),
            steps: canonical.steps(&tree, options),
        })
    }
}

/// Verifies a re-run of one trace against its recording, with the default options.
pub fn verify(recorded: &[Span], rerun: &[Span]) -> VerifyResult {
    verify_with(recorded, rerun, &SignatureOptions::default())
}

pub fn verify_with(recorded: &[Span], rerun: &[Span], options: &SignatureOptions) -> VerifyResult {
    let expected = match GoldenTrace::from_spans("", recorded, options) {
        Ok(g) => g,
        Err(reason) => {
            return VerifyResult::InvalidTrace {
                side: Side::Recorded,
                trace: String::new(),
                reason,
            };
        }
    };
    compare_traces(&[expected], &[rerun.to_vec()], options)
}

fn compare_traces(
    expected: &[GoldenTrace],
    rerun: &[Vec<Span>],
    options: &SignatureOptions,
) -> VerifyResult {
    if expected.len() != rerun.len() {
        return VerifyResult::Divergence {
            trace: String::new(),
            index: 0,
            expected: Some(format!("{} trace(s)", expected.len())),
            actual: Some(format!("{} trace(s)", rerun.len())),
            expected_signature: String::new(),
            actual_signature: String::new(),
        };
    }
    let mut signatures = Vec::new();
    for (golden, spans) in expected.iter().zip(rerun) {
        let actual = match GoldenTrace::from_spans(&golden.label, spans, options) {
            Ok(a) => a,
            Err(reason) => {
                return VerifyResult::InvalidTrace {
                    side: Side::Rerun,
                    trace: golden.label.clone(),
                    reason,
                };
            }
        };
        if actual.trace_signature != golden.trace_signature {
            let d = first_difference(&golden.steps, &actual.steps, |a, b| a == b, Clone::clone);
            // Equal steps with unequal signatures means only link targets differ,
            // which the steps count but do not name.
            let (index, expected, actual_step) = match d {
                Some(d) => (d.index, d.expected, d.actual),
                None => (
                    golden.steps.len(),
                    Some(format!("signature {}", golden.trace_signature)),
                    Some(format!("signature {}", actual.trace_signature)),
                ),
            };
            return VerifyResult::Divergence {
                trace: golden.label.clone(),
                index,
                expected,
                actual: actual_step,
                expected_signature: golden.trace_signature.clone(),
                actual_signature: actual.trace_signature,
            };
        }
        signatures.push(actual.trace_signature);
    }
    VerifyResult::Ok {
        trace_signatures: signatures,
    }
}

/// A selector that must match a number of spans in the re-run (by default, at least
/// one), e.g. `{"selector": "span[service=orlan] span[event=drone_destroyed]"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assertion {
    pub selector: String,
    #[serde(default = "one")]
    pub min: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
}

fn one() -> usize {
    1
}

impl Assertion {
    pub fn at_least(selector: &str, min: usize) -> Assertion {
        Assertion {
            selector: selector.to_string(),
            min,
            max: None,
        }
    }

    pub fn exactly(selector: &str, n: usize) -> Assertion {
        Assertion {
            selector: selector.to_string(),
            min: n,
            max: Some(n),
        }
    }
}

/// Checks assertions against the spans of all traces of a run (matches are summed).
pub fn check_assertions(
    assertions: &[Assertion],
    traces: &[Vec<Span>],
) -> Result<Option<VerifyResult>, GoldenError> {
    for a in assertions {
        let selector = Selector::parse(&a.selector).map_err(|e| GoldenError::Selector {
            selector: a.selector.clone(),
            reason: e.render(&a.selector),
        })?;
        let matched: usize = traces.iter().map(|t| selector.select(t).len()).sum();
        if matched < a.min || a.max.is_some_and(|m| matched > m) {
            return Ok(Some(VerifyResult::AssertionFailed {
                selector: a.selector.clone(),
                matched,
                min: a.min,
                max: a.max,
            }));
        }
    }
    Ok(None)
}

pub const GOLDEN_FORMAT: &str = "clew-replay-golden/1";

/// A golden file: what a run must look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Golden {
    pub format: String,
    /// The seeded flow that produces the run, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<FlowSpec>,
    pub options: SignatureOptions,
    pub traces: Vec<GoldenTrace>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assertions: Vec<Assertion>,
}

#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("golden file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("golden file {path} is not valid: {reason}; regenerate it without --ci")]
    Parse { path: PathBuf, reason: String },
    #[error(
        "golden file format {found:?} is not {GOLDEN_FORMAT:?}; regenerate it with this version of clew"
    )]
    Format { found: String },
    #[error("cannot record a golden file: {0}")]
    Invalid(String),
    #[error("assertion selector {selector:?} does not parse:\n{reason}")]
    Selector { selector: String, reason: String },
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl Golden {
    /// Records the traces of one run (labelled) as a golden file.
    pub fn record(
        traces: &[(String, Vec<Span>)],
        options: &SignatureOptions,
    ) -> Result<Golden, GoldenError> {
        let traces = traces
            .iter()
            .map(|(label, spans)| {
                GoldenTrace::from_spans(label, spans, options)
                    .map_err(|reason| GoldenError::Invalid(format!("trace {label}: {reason}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Golden {
            format: GOLDEN_FORMAT.to_string(),
            flow: None,
            options: options.clone(),
            traces,
            assertions: Vec::new(),
        })
    }

    /// The golden file of a seeded flow.
    pub fn for_flow(spec: &FlowSpec, options: &SignatureOptions) -> Result<Golden, GoldenError> {
        let run = flows::generate(spec)?;
        let traces: Vec<(String, Vec<Span>)> =
            run.traces.into_iter().map(|t| (t.label, t.spans)).collect();
        let mut golden = Golden::record(&traces, options)?;
        golden.flow = Some(spec.clone());
        Ok(golden)
    }

    /// Pretty JSON (a diff-friendly line per step) with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn from_json(text: &str) -> Result<Golden, GoldenError> {
        let golden: Golden = serde_json::from_str(text).map_err(|e| GoldenError::Parse {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?;
        if golden.format != GOLDEN_FORMAT {
            return Err(GoldenError::Format {
                found: golden.format,
            });
        }
        Ok(golden)
    }

    /// Verifies a re-run (its traces in the golden file's order) and the assertions.
    pub fn verify(&self, rerun: &[Vec<Span>]) -> Result<VerifyResult, GoldenError> {
        let result = compare_traces(&self.traces, rerun, &self.options);
        if !result.is_ok() {
            return Ok(result);
        }
        Ok(check_assertions(&self.assertions, rerun)?.unwrap_or(result))
    }
}

/// Re-runs a seeded flow and verifies it against recorded traces (in the flow's
/// trace order: for the drone, the lock request then the intercept execution).
pub fn verify_flow(
    spec: &FlowSpec,
    recorded: &[Vec<Span>],
    options: &SignatureOptions,
) -> Result<VerifyResult, GoldenError> {
    let run = flows::generate(spec)?;
    let mut expected = Vec::new();
    for (i, spans) in recorded.iter().enumerate() {
        let label = run
            .traces
            .get(i)
            .map(|t| t.label.clone())
            .unwrap_or_default();
        match GoldenTrace::from_spans(&label, spans, options) {
            Ok(g) => expected.push(g),
            Err(reason) => {
                return Ok(VerifyResult::InvalidTrace {
                    side: Side::Recorded,
                    trace: label,
                    reason,
                });
            }
        }
    }
    let rerun: Vec<Vec<Span>> = run.traces.into_iter().map(|t| t.spans).collect();
    Ok(compare_traces(&expected, &rerun, options))
}

/// How [`check_golden_file`] treats a golden file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GoldenMode {
    /// A missing golden file is a failure (never written), and `update` is ignored.
    pub ci: bool,
    /// Rewrite the golden file from the re-run instead of comparing.
    pub update: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum GoldenOutcome {
    Matched,
    Created,
    Updated,
    Failed {
        result: VerifyResult,
    },
    /// In CI mode the golden file did not exist; it must be recorded and committed.
    MissingInCi,
}

impl GoldenOutcome {
    pub fn is_success(&self) -> bool {
        matches!(
            self,
            GoldenOutcome::Matched | GoldenOutcome::Created | GoldenOutcome::Updated
        )
    }

    /// 0 on success, the verify result's code on failure, 1 for a missing file in CI.
    pub fn exit_code(&self) -> i32 {
        match self {
            GoldenOutcome::Failed { result } => result.exit_code(),
            GoldenOutcome::MissingInCi => 1,
            _ => 0,
        }
    }
}

/// Compares a re-run with the golden file at `path`, creating or updating it as `mode`
/// allows. A new file gets `template`'s flow and assertions (pass `None` for none).
pub fn check_golden_file(
    path: &Path,
    rerun: &[(String, Vec<Span>)],
    options: &SignatureOptions,
    template: Option<&Golden>,
    mode: GoldenMode,
) -> Result<GoldenOutcome, GoldenError> {
    let io = |source| GoldenError::Io {
        path: path.to_path_buf(),
        source,
    };
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(Golden::from_json(&text).map_err(|e| match e {
            GoldenError::Parse { reason, .. } => GoldenError::Parse {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let write = |existing: Option<&Golden>| -> Result<(), GoldenError> {
        let mut golden = Golden::record(rerun, options)?;
        if let Some(t) = existing.or(template) {
            golden.flow = t.flow.clone();
            golden.assertions = t.assertions.clone();
        }
        std::fs::write(path, golden.to_json()).map_err(io)
    };
    match existing {
        None if mode.ci => Ok(GoldenOutcome::MissingInCi),
        None => {
            write(None)?;
            Ok(GoldenOutcome::Created)
        }
        Some(golden) if mode.update && !mode.ci => {
            write(Some(&golden))?;
            Ok(GoldenOutcome::Updated)
        }
        Some(golden) => {
            let spans: Vec<Vec<Span>> = rerun.iter().map(|(_, s)| s.clone()).collect();
            let result = golden.verify(&spans)?;
            Ok(if result.is_ok() {
                GoldenOutcome::Matched
            } else {
                GoldenOutcome::Failed { result }
            })
        }
    }
}
