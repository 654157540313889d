//! `clew replay`: time travel through a stored trace, diffs, signatures, replay
//! verification and investigation bundles.
//!
//! Every verb that reads a trace asks the server's `/api/clew/replay/…` endpoints, so
//! the timeline is built once, next to the store, and the verbs work against any
//! deployment. `verify` re-runs seeded flows locally: generation needs no server.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use clew_model::{Span, TraceId};
use clew_replay::bundle::{Bundle, BundleRequest, build_bundle};
use clew_replay::flows::{self, Fault, Flow, FlowSpec};
use clew_replay::verify::EXIT_INTERNAL_ERROR;
use clew_replay::{
    EditOp, FirstFault, Golden, GoldenMode, GoldenOutcome, SignatureOptions, Snapshot,
    TimelineEvent, TimelinePage, TimelineSummary, TraceDiff, VerifyResult,
};
use serde::Deserialize;

use crate::client::Api;
use crate::render::format_duration;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ReplayCommand {
    #[command(subcommand)]
    verb: Option<ReplayVerb>,
    /// Step through this trace: reads commands from stdin (`n`/Enter next, `p` back,
    /// `g N` jump, `f` first fault, `l` latest, `s` snapshot, `q` quit).
    #[arg(value_name = "TRACE_ID", required = true)]
    id: Option<String>,
}

#[derive(Subcommand)]
enum ReplayVerb {
    /// The whole system just after one timeline event: open spans per service, processes
    /// alive or exited, messages in flight, the last error.
    Snapshot {
        id: String,
        /// After event N (0-based).
        #[arg(long, value_name = "N", group = "where")]
        at: Option<usize>,
        /// At the first fault, with the spans and events that led to it.
        #[arg(long, group = "where")]
        first_fault: bool,
        /// After the last event (the default).
        #[arg(long, group = "where")]
        latest: bool,
        #[arg(long)]
        json: bool,
    },
    /// Compare two runs: spans inserted, deleted or changed (by service, operation and
    /// ancestry), duration changes, and where the timelines first part.
    Diff {
        /// The expected run.
        a: String,
        /// The actual run.
        b: String,
        #[arg(long)]
        json: bool,
    },
    /// The trace's canonical signatures: equal for two runs that did the same thing,
    /// whatever their ids and times.
    Signature {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Re-run a seeded flow and check it against a recorded trace or a golden file.
    /// Exits 0 on a match, 1 on a divergence, 2 on an invalid trace, 3 on other errors.
    Verify(VerifyArgs),
    /// Export an investigation bundle: readiness checks, first fault and the spans, in
    /// one self-contained JSON file that `clew replay open` reads anywhere.
    Bundle {
        id: String,
        /// `fault` (fault triage) or `etl` (pipeline investigation).
        #[arg(long, default_value = "fault")]
        workflow: String,
        /// Workflow parameter `key=value` (`require=SELECTOR;…`, `stages=SELECTOR;…`); repeatable.
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Write the bundle here instead of to stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Import an exported bundle, check it is intact, and print what it found.
    Open {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("recorded").required(true).args(["trace", "golden"]))]
pub struct VerifyArgs {
    /// drone, runtime, session or pipeline.
    #[arg(long)]
    flow: String,
    #[arg(long)]
    seed: u64,
    /// A fault injected into the drone flow (`ares-down`, `lost-death-notice`); repeatable.
    #[arg(long = "fault")]
    faults: Vec<String>,
    /// A recorded trace on the server; repeat for a flow of several traces.
    #[arg(long, value_name = "ID")]
    trace: Vec<String>,
    /// A golden file; created on the first run unless `--ci`.
    #[arg(long, value_name = "FILE")]
    golden: Option<PathBuf>,
    /// Fail instead of creating a missing golden file (and never update one).
    #[arg(long)]
    ci: bool,
    /// Rewrite the golden file from this run.
    #[arg(long)]
    update: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run(api: &Api, command: ReplayCommand) -> Result<()> {
    match command.verb {
        None => {
            let id = command.id.context("give a trace id to replay")?;
            interactive(api, &id).await
        }
        Some(ReplayVerb::Snapshot {
            id,
            at,
            first_fault,
            latest: _,
            json,
        }) => snapshot(api, &id, at, first_fault, json).await,
        Some(ReplayVerb::Diff { a, b, json }) => diff(api, &a, &b, json).await,
        Some(ReplayVerb::Signature { id, json }) => signature(api, &id, json).await,
        Some(ReplayVerb::Verify(args)) => {
            let code = match verify(api, &args).await {
                Ok(code) => code,
                Err(error) => {
                    eprintln!("error: {error:#}");
                    EXIT_INTERNAL_ERROR
                }
            };
            // The verify result is the exit status, which a plain error cannot carry.
            std::io::stdout().flush().ok();
            std::process::exit(code)
        }
        Some(ReplayVerb::Bundle {
            id,
            workflow,
            params,
            output,
        }) => bundle(api, &id, &workflow, &params, output.as_deref()).await,
        Some(ReplayVerb::Open { file, json }) => open(&file, json),
    }
}

fn parse_id(id: &str) -> Result<TraceId> {
    id.parse()
        .with_context(|| format!("{id:?} is not a trace id (expected 32 hex digits)"))
}

fn base(id: TraceId) -> String {
    format!("/api/clew/replay/{id}")
}

async fn summary(api: &Api, id: TraceId) -> Result<TimelineSummary> {
    let page: TimelinePage = api
        .get(&base(id), &[("limit", "0".to_string())])
        .await?
        .with_context(|| format!("trace {id} not found"))?;
    Ok(page.summary)
}

fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

// --- snapshot ---

async fn snapshot(
    api: &Api,
    id: &str,
    at: Option<usize>,
    first_fault: bool,
    json: bool,
) -> Result<()> {
    let id = parse_id(id)?;
    let path = format!("{}/snapshot", base(id));
    if first_fault {
        // A 404 from the snapshot means "no fault" or "no trace"; the summary tells which.
        let summary = summary(api, id).await?;
        if summary.first_fault_index.is_none() {
            if json {
                println!("null");
            } else {
                println!(
                    "no fault in trace {id}: no error status, exception or abnormal exit in {} events",
                    summary.event_count
                );
            }
            return Ok(());
        }
        let fault: FirstFault = api
            .get(&path, &[("at", "first_fault".into())])
            .await?
            .with_context(|| format!("trace {id} not found"))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&fault)?);
        } else {
            print!("{}", render_first_fault(&fault));
        }
        return Ok(());
    }
    let at = at.map_or_else(|| "latest".to_string(), |n| n.to_string());
    let snapshot: Snapshot = api
        .get(&path, &[("at", at)])
        .await?
        .with_context(|| format!("trace {id} not found"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&snapshot)?);
    } else {
        print!("{}", render_snapshot(&snapshot, true));
    }
    Ok(())
}

/// The snapshot as text; `full` adds key attributes and every open span.
fn render_snapshot(s: &Snapshot, full: bool) -> String {
    let mut out = format!(
        "after event {} at {}: {}\n  {} open span(s), {} message(s) in flight\n",
        s.index,
        ms(s.at_us),
        s.label,
        s.open_span_count,
        s.in_flight.len()
    );
    let width = s
        .services
        .iter()
        .map(|v| v.service.len())
        .max()
        .unwrap_or(0);
    for service in &s.services {
        let status = serde_json::to_value(service.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut parts = vec![format!("  {:<width$}  {:<11}", service.service, status)];
        if let Some(exit) = &service.exited_at {
            parts.push(format!("exited at [{}]", exit.index));
        }
        if !service.open_spans.is_empty() {
            let names: Vec<&str> = service.open_spans.iter().map(|o| o.name.as_str()).collect();
            parts.push(format!("open: {}", names.join(", ")));
        }
        if let Some(last) = &service.last_event {
            parts.push(format!("last: [{}] {}", last.index, last.label));
        }
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
        if full {
            for open in &service.open_spans {
                out.push_str(&format!(
                    "      open since [{}] {}: {} ({})\n",
                    open.start_index,
                    ms(open.start_at_us),
                    open.name,
                    open.kind.as_str()
                ));
            }
            for (key, value) in &service.attributes {
                out.push_str(&format!("      {key} = {value}\n"));
            }
        }
    }
    for message in &s.in_flight {
        out.push_str(&format!(
            "  in flight: {}/{} sent at [{}]{}\n",
            message.span.service,
            message.span.name,
            message.span.start_index,
            message
                .destination
                .as_ref()
                .map(|d| format!(" to {d}"))
                .unwrap_or_default()
        ));
    }
    if let Some(error) = &s.last_error {
        out.push_str(&format!(
            "  last error: [{}] {}/{}: {} ({})\n",
            error.event.index,
            error.event.service,
            error.span_name,
            error.message,
            error.kind.as_str()
        ));
    }
    out
}

fn render_first_fault(f: &FirstFault) -> String {
    let mut out = format!(
        "first fault at index {}: {}/{} — {} ({})\n",
        f.fault.event.index,
        f.fault.event.service,
        f.fault.span_name,
        f.fault.message,
        f.fault.kind.as_str()
    );
    out.push_str("span path:\n");
    for (depth, span) in f.span_path.iter().enumerate() {
        out.push_str(&format!(
            "  {}{}/{} ({}, started at [{}])\n",
            "  ".repeat(depth),
            span.service,
            span.name,
            span.kind.as_str(),
            span.start_index
        ));
    }
    out.push_str("causal chain:\n");
    for event in &f.causal_chain {
        out.push_str(&format!(
            "  [{}] {:>12}  {}\n",
            event.index,
            ms(event.at_us),
            event.label
        ));
    }
    for event in &f.linked_causes {
        out.push_str(&format!("  linked: [{}] {}\n", event.index, event.label));
    }
    out.push_str("snapshot:\n");
    out.push_str(&render_snapshot(&f.snapshot, false));
    out
}

// --- interactive ---

const PAGE: usize = 256;

/// Events fetched from the server one page at a time, so that stepping through a
/// 50k-span trace never downloads the whole timeline.
struct Events<'a> {
    api: &'a Api,
    id: TraceId,
    pages: BTreeMap<usize, Vec<TimelineEvent>>,
}

impl Events<'_> {
    async fn get(&mut self, index: usize) -> Result<Option<TimelineEvent>> {
        let start = index - index % PAGE;
        if !self.pages.contains_key(&start) {
            let page: TimelinePage = self
                .api
                .get(
                    &base(self.id),
                    &[("offset", start.to_string()), ("limit", PAGE.to_string())],
                )
                .await?
                .with_context(|| format!("trace {} not found", self.id))?;
            // Keeps memory flat on a long session through a big trace.
            if self.pages.len() > 64 {
                self.pages.clear();
            }
            self.pages.insert(start, page.events);
        }
        Ok(self.pages[&start].get(index - start).cloned())
    }
}

const HELP: &str = "commands: n or Enter = next, p = back, g N = jump to N, f = first fault, l = latest, s = snapshot, h = help, q = quit";

async fn interactive(api: &Api, id: &str) -> Result<()> {
    let id = parse_id(id)?;
    let summary = summary(api, id).await?;
    println!(
        "replay of trace {id}: {} spans, {} events, {} services ({}), {}",
        summary.span_count,
        summary.event_count,
        summary.services.len(),
        summary.services.join(", "),
        format_duration(summary.duration_us * 1000)
    );
    match summary.first_fault_index {
        Some(i) => println!(
            "{} fault(s); the first at index {i} (f jumps there)",
            summary.fault_count
        ),
        None => println!("no faults"),
    }
    println!("{HELP}");
    let last = summary.event_count.checked_sub(1);
    let mut events = Events {
        api,
        id,
        pages: BTreeMap::new(),
    };
    let mut position: Option<usize> = None;
    let stdin = std::io::stdin();
    loop {
        print!("replay> ");
        std::io::stdout().flush().ok();
        let mut line = String::new();
        // Stdin blocks; this worker thread may, the runtime's others carry on.
        let read = tokio::task::block_in_place(|| stdin.lock().read_line(&mut line))?;
        if read == 0 {
            println!();
            return Ok(());
        }
        let line = line.trim();
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            // Echo piped commands so a transcript reads like a session.
            println!("{line}");
        }
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let target = match verb {
            "" | "n" | "next" => match (position, last) {
                (_, None) => None,
                (None, Some(_)) => Some(0),
                (Some(p), Some(l)) if p < l => Some(p + 1),
                (Some(_), Some(_)) => {
                    println!("at the last event; p steps back");
                    continue;
                }
            },
            "p" | "prev" | "back" => match position {
                Some(0) => {
                    position = None;
                    println!("before the first event");
                    continue;
                }
                Some(p) => Some(p - 1),
                None => {
                    println!("already before the first event");
                    continue;
                }
            },
            "g" | "goto" | "jump" => match arg.trim().parse::<usize>() {
                Ok(n) if last.is_some_and(|l| n <= l) => Some(n),
                Ok(n) => {
                    println!(
                        "no event {n}: the timeline has {} events (0 to {})",
                        summary.event_count,
                        last.unwrap_or(0)
                    );
                    continue;
                }
                Err(_) => {
                    println!("g takes an event index, e.g. g 12");
                    continue;
                }
            },
            "f" | "fault" => match summary.first_fault_index {
                Some(i) => Some(i),
                None => {
                    println!("no fault in this trace");
                    continue;
                }
            },
            "l" | "latest" | "last" => last,
            "s" | "snapshot" => {
                match position {
                    Some(p) => {
                        let s = fetch_snapshot(api, id, p).await?;
                        print!("{}", render_snapshot(&s, true));
                    }
                    None => println!("before the first event: nothing has happened yet"),
                }
                continue;
            }
            "h" | "help" | "?" => {
                println!("{HELP}");
                continue;
            }
            "q" | "quit" | "exit" => return Ok(()),
            other => {
                println!("unknown command {other:?}; {HELP}");
                continue;
            }
        };
        let Some(index) = target else {
            println!("the timeline is empty");
            continue;
        };
        position = Some(index);
        let event = events
            .get(index)
            .await?
            .with_context(|| format!("event {index} missing from the timeline"))?;
        let fault = event
            .fault
            .map(|f| format!("  FAULT ({})", f.as_str()))
            .unwrap_or_default();
        println!(
            "[{}/{}] {:>12}  {}{fault}",
            event.index,
            last.unwrap_or(0),
            ms(event.at_us),
            event.label
        );
        let s = fetch_snapshot(api, id, index).await?;
        print!("{}", render_snapshot(&s, false));
    }
}

async fn fetch_snapshot(api: &Api, id: TraceId, index: usize) -> Result<Snapshot> {
    api.get(
        &format!("{}/snapshot", base(id)),
        &[("at", index.to_string())],
    )
    .await?
    .with_context(|| format!("trace {id} not found"))
}

// --- diff, signature ---

async fn diff(api: &Api, a: &str, b: &str, json: bool) -> Result<()> {
    let (a, b) = (parse_id(a)?, parse_id(b)?);
    let Some(diff) = api
        .get::<TraceDiff>(
            "/api/clew/replay/diff",
            &[("a", a.to_string()), ("b", b.to_string())],
        )
        .await?
    else {
        bail!("trace {a} or {b} not found");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&diff)?);
    } else {
        print!("{}", render_diff(&diff, a, b));
    }
    Ok(())
}

fn render_diff(d: &TraceDiff, a: TraceId, b: TraceId) -> String {
    let mut out = format!("expected {a}\nactual   {b}\n");
    if d.is_empty() {
        out.push_str(&format!(
            "no differences: the same spans (signature {})\n",
            d.expected_signature
        ));
    } else if d.edits.is_empty() {
        out.push_str("the same spans; only times and ordering differ\n");
    } else {
        out.push_str(&format!("{} edit(s):\n", d.edits.len()));
    }
    let span = |s: &Option<clew_replay::SpanSummary>| {
        s.as_ref().map_or_else(String::new, |s| {
            format!("{}/{} ({}, {})", s.service, s.name, s.kind, s.status)
        })
    };
    for edit in &d.edits {
        match edit.op {
            EditOp::Inserted => out.push_str(&format!(
                "  + inserted {}  {}{}\n",
                short(&edit.path),
                span(&edit.actual),
                subtree(edit.subtree_spans)
            )),
            EditOp::Deleted => out.push_str(&format!(
                "  - deleted  {}  {}{}\n",
                short(&edit.path),
                span(&edit.expected),
                subtree(edit.subtree_spans)
            )),
            EditOp::Changed => {
                out.push_str(&format!("  ~ changed  {}\n", short(&edit.path)));
                for change in &edit.changes {
                    out.push_str(&format!(
                        "      {}: {} → {}\n",
                        change.field, change.expected, change.actual
                    ));
                }
            }
        }
    }
    let durations = d.largest_duration_changes(10);
    if !durations.is_empty() {
        out.push_str(&format!(
            "duration changes ({} aligned span(s) differ; largest first):\n",
            d.durations.len()
        ));
        for delta in durations {
            out.push_str(&format!(
                "  {}  {} → {} ({}{})\n",
                short(&delta.path),
                format_duration(delta.expected_us * 1000),
                format_duration(delta.actual_us * 1000),
                if delta.delta_us >= 0 { "+" } else { "-" },
                format_duration(delta.delta_us.unsigned_abs() * 1000)
            ));
        }
    }
    match &d.first_divergence {
        Some(div) => out.push_str(&format!("first divergence: {div}\n")),
        None => out.push_str("the traces do not diverge\n"),
    }
    out
}

/// The last two steps of an alignment path: the full path of a deep span fills a line
/// before it names the span (`--json` keeps it whole).
fn short(path: &str) -> String {
    let steps: Vec<&str> = path.split(" > ").collect();
    if steps.len() <= 3 {
        return path.to_string();
    }
    format!("… > {}", steps[steps.len() - 2..].join(" > "))
}

fn subtree(spans: usize) -> String {
    if spans > 1 {
        format!(" (+{} below)", spans - 1)
    } else {
        String::new()
    }
}

#[derive(Deserialize, serde::Serialize)]
struct SignatureAnswer {
    trace_signature: String,
    timeline_signature: String,
    summary: TimelineSummary,
}

async fn signature(api: &Api, id: &str, json: bool) -> Result<()> {
    let id = parse_id(id)?;
    let answer: SignatureAnswer = api
        .get(&format!("{}/signature", base(id)), &[])
        .await?
        .with_context(|| format!("trace {id} not found"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let s = &answer.summary;
    println!("trace               {id}");
    println!("trace signature     {}", answer.trace_signature);
    println!("timeline signature  {}", answer.timeline_signature);
    println!(
        "{} spans, {} events, services: {}",
        s.span_count,
        s.event_count,
        s.services.join(", ")
    );
    match s.first_fault_index {
        Some(i) => println!("{} fault(s), the first at index {i}", s.fault_count),
        None => println!("no faults"),
    }
    for warning in &s.warnings {
        println!("warning: {warning}");
    }
    Ok(())
}

// --- verify ---

#[derive(Deserialize)]
struct TraceResponse {
    spans: Vec<Span>,
}

fn root_key(spans: &[Span]) -> Option<(String, String)> {
    let ids: std::collections::HashSet<_> = spans.iter().map(|s| s.span_id).collect();
    spans
        .iter()
        .filter(|s| s.parent_span_id.is_none_or(|p| !ids.contains(&p)))
        .min_by_key(|s| (s.start_unix_nano, s.span_id.0))
        .map(|s| (s.service_name().to_string(), s.name.clone()))
}

/// Returns the exit status.
async fn verify(api: &Api, args: &VerifyArgs) -> Result<i32> {
    let flow: Flow = args.flow.parse()?;
    let mut spec = FlowSpec::new(flow, args.seed);
    for fault in &args.faults {
        spec = spec.with_fault(fault.parse::<Fault>()?);
    }
    let run = flows::generate(&spec)?;
    let options = SignatureOptions::default();
    if let Some(golden) = &args.golden {
        let rerun: Vec<(String, Vec<Span>)> = run
            .traces
            .iter()
            .map(|t| (t.label.clone(), t.spans.clone()))
            .collect();
        let template = Golden::for_flow(&spec, &options)?;
        let mode = GoldenMode {
            ci: args.ci,
            update: args.update,
        };
        let outcome =
            clew_replay::check_golden_file(golden, &rerun, &options, Some(&template), mode)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&outcome)?);
        }
        let shown = golden.display();
        match &outcome {
            GoldenOutcome::Matched => println!(
                "ok: {spec_text} matches {shown}",
                spec_text = describe_spec(&spec)
            ),
            GoldenOutcome::Created => println!("created {shown} from {}", describe_spec(&spec)),
            GoldenOutcome::Updated => println!("updated {shown} from {}", describe_spec(&spec)),
            GoldenOutcome::Failed { result } => report_failure(result),
            GoldenOutcome::MissingInCi => eprintln!(
                "error: golden file {shown} does not exist; --ci never creates one: run without --ci to record it, then commit it"
            ),
        }
        return Ok(outcome.exit_code());
    }
    let mut recorded = Vec::new();
    for id in &args.trace {
        let id = parse_id(id)?;
        let trace: TraceResponse = api
            .get(&format!("/api/clew/traces/{id}"), &[])
            .await?
            .with_context(|| format!("trace {id} not found"))?;
        recorded.push((id, trace.spans));
    }
    // A recording may hold only some of a flow's traces (the drone's intercept without
    // its lock request): each is matched to the re-run trace with the same root.
    let mut results = Vec::new();
    for (position, (id, spans)) in recorded.iter().enumerate() {
        let key = root_key(spans);
        let rerun = run
            .traces
            .iter()
            .find(|t| key.is_some() && root_key(&t.spans) == key)
            .or_else(|| run.traces.get(position));
        let Some(rerun) = rerun else {
            results.push(VerifyResult::Divergence {
                trace: id.to_string(),
                index: 0,
                expected: Some(format!("a trace of {}", describe_spec(&spec))),
                actual: Some(format!(
                    "nothing: the flow has only {} trace(s)",
                    run.traces.len()
                )),
                expected_signature: String::new(),
                actual_signature: String::new(),
            });
            continue;
        };
        let mut result = clew_replay::verify_with(spans, &rerun.spans, &options);
        name_trace(&mut result, &format!("{} ({id})", rerun.label));
        results.push(result);
    }
    let failed = results.iter().find(|r| !r.is_ok());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    match failed {
        Some(result) => {
            report_failure(result);
            Ok(result.exit_code())
        }
        None => {
            println!(
                "ok: {} recorded trace(s) match {}",
                results.len(),
                describe_spec(&spec)
            );
            Ok(0)
        }
    }
}

fn name_trace(result: &mut VerifyResult, name: &str) {
    match result {
        VerifyResult::InvalidTrace { trace, .. } | VerifyResult::Divergence { trace, .. }
            if trace.is_empty() =>
        {
            *trace = name.to_string();
        }
        _ => {}
    }
}

fn report_failure(result: &VerifyResult) {
    eprintln!("{result}");
    if let VerifyResult::Divergence {
        index,
        expected,
        actual,
        ..
    } = result
    {
        let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "end of trace".into());
        eprintln!(
            "first divergence at index {index}: expected {}, got {}",
            show(expected),
            show(actual)
        );
    }
}

fn describe_spec(spec: &FlowSpec) -> String {
    let mut text = format!("flow {} seed {}", spec.flow, spec.seed);
    for fault in &spec.faults {
        text.push_str(&format!(" fault {fault}"));
    }
    text
}

// --- bundles ---

async fn bundle(
    api: &Api,
    id: &str,
    workflow: &str,
    params: &[String],
    output: Option<&Path>,
) -> Result<()> {
    let id = parse_id(id)?;
    let mut query = vec![("workflow", workflow.to_string())];
    for param in params {
        if !param.contains('=') {
            bail!("--param takes KEY=VALUE, got {param:?}");
        }
        query.push(("param", param.clone()));
    }
    let value: serde_json::Value = api
        .get(&format!("{}/bundle", base(id)), &query)
        .await?
        .with_context(|| format!("trace {id} not found"))?;
    // Checked the way `open` will check it, so a file written here always opens.
    let bundle = Bundle::from_json(&value.to_string()).context("the server's bundle")?;
    let text = bundle.to_json();
    match output {
        None => println!("{text}"),
        Some(path) => {
            std::fs::write(path, format!("{text}\n"))
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "wrote {} ({} workflow, {} spans, {})",
                path.display(),
                bundle.workflow,
                bundle.spans.len(),
                if bundle.readiness.ready {
                    "ready".to_string()
                } else {
                    format!(
                        "not ready: missing {}",
                        bundle.readiness.missing().join(", ")
                    )
                }
            );
        }
    }
    Ok(())
}

fn open(file: &Path, json: bool) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let bundle = Bundle::from_json(&text).with_context(|| format!("opening {}", file.display()))?;
    // `from_json` checks the spans and the signatures; the findings beside them (first
    // fault, readiness, summary) are derived, so derive them again and compare.
    let request = BundleRequest {
        workflow: bundle.workflow,
        params: bundle.params.clone(),
        completeness: bundle.completeness,
    };
    let derived = build_bundle(bundle.spans.clone(), &request)
        .with_context(|| format!("opening {}", file.display()))?;
    if derived.first_fault != bundle.first_fault
        || derived.readiness != bundle.readiness
        || derived.summary != bundle.summary
    {
        bail!(
            "opening {}: bundle has been altered: its first fault, readiness or summary no longer follow from its spans",
            file.display()
        );
    }
    if json {
        let mut value = serde_json::to_value(&bundle)?;
        // The spans are the bulk of a bundle and are in the file already.
        if let Some(map) = value.as_object_mut() {
            map.remove("spans");
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    let s = &bundle.summary;
    println!("bundle {} ({} workflow)", file.display(), bundle.workflow);
    match bundle.trace_id {
        Some(id) => println!("trace               {id}"),
        None => println!("trace               (no id)"),
    }
    println!("bundle signature    {}", bundle.signature);
    println!("trace signature     {}", bundle.trace_signature);
    println!("timeline signature  {}", bundle.timeline_signature);
    for (key, value) in &bundle.params {
        println!("param               {key}={value}");
    }
    println!(
        "{} spans, {} events, services: {}",
        s.span_count,
        s.event_count,
        s.services.join(", ")
    );
    println!(
        "readiness: {}",
        if bundle.readiness.ready {
            "ready"
        } else {
            "not ready"
        }
    );
    for check in &bundle.readiness.checks {
        println!(
            "  [{}] {}: {}",
            if check.ok { "ok" } else { "missing" },
            check.name,
            check.detail
        );
    }
    match &bundle.first_fault {
        Some(fault) => print!("{}", render_first_fault(fault)),
        None => println!("no fault in the trace"),
    }
    Ok(())
}
