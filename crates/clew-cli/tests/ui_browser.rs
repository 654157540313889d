//! The web UI in a real browser: `clew serve` loaded over OTLP/HTTP with the seed's two
//! drone traces, the remains of a trace whose publisher crashed, and a 50,000-span
//! trace (plus a rejected rerun of the lock request to diff against), then
//! `ui/e2e/run.mjs` drives Debian's Chromium through playwright-core against it (search,
//! trace view, fan-out, collapse, the text tree against `clew trace show`, the 50k
//! trace, the service map, deep links, lifecycle badges and the orphan sweep, time
//! travel and the diff).
//!
//! Needs `node`, `ui/node_modules` and `/usr/bin/chromium`; `./scripts/test` installs
//! them. Screenshots go to `target/ui-screenshots/`, or to `docs/screenshots/` with
//! `CLEW_UPDATE_SCREENSHOTS=1` (the README shows those).
//!
//! For working on the UI against the same data: `cargo test -p clew-cli --test
//! ui_browser -- --ignored --nocapture` starts a loaded server and keeps it running.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use clew_model::{
    Event, KeyValue, Link, Resource, Span, SpanId, SpanKind, Status, StatusCode, TraceId,
};
use support::{Clew, eventually, get_json, repo_root, run_demo};

const MS: u64 = 1_000_000;
const US: u64 = 1_000;
const BIG_TRACE_SPANS: usize = 50_000;

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Builds spans of one trace; `at` and `until` are nanoseconds after `t0`.
struct TraceBuilder {
    trace_id: TraceId,
    t0: u64,
    spans: Vec<Span>,
    resources: std::collections::HashMap<String, Arc<Resource>>,
}

impl TraceBuilder {
    fn new(t0: u64) -> TraceBuilder {
        TraceBuilder {
            trace_id: TraceId::generate(),
            t0,
            spans: Vec::new(),
            resources: Default::default(),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn span(
        &mut self,
        parent: Option<SpanId>,
        service: &str,
        name: &str,
        kind: SpanKind,
        at: u64,
        until: u64,
        attributes: &[(&str, &str)],
    ) -> SpanId {
        let resource = self
            .resources
            .entry(service.to_string())
            .or_insert_with(|| Arc::new(Resource::for_service(service)))
            .clone();
        let span_id = SpanId::generate();
        self.spans.push(Span {
            trace_id: self.trace_id,
            span_id,
            parent_span_id: parent,
            trace_state: String::new(),
            name: name.to_string(),
            kind,
            start_unix_nano: self.t0 + at,
            end_unix_nano: self.t0 + until,
            attributes: attributes
                .iter()
                .map(|(k, v)| KeyValue::new(*k, *v))
                .collect(),
            events: Vec::new(),
            links: Vec::new(),
            status: Status::default(),
            resource,
            scope: Default::default(),
            flags: 1,
        });
        span_id
    }

    fn last(&mut self) -> &mut Span {
        self.spans.last_mut().expect("a span was added")
    }

    fn span_mut(&mut self, span: SpanId) -> &mut Span {
        self.spans
            .iter_mut()
            .find(|s| s.span_id == span)
            .expect("a known span")
    }

    fn event(&mut self, span: SpanId, at: u64, name: &str, attributes: &[(&str, &str)]) {
        let t0 = self.t0;
        let span = self
            .spans
            .iter_mut()
            .find(|s| s.span_id == span)
            .expect("event on a known span");
        span.events.push(Event {
            time_unix_nano: t0 + at,
            name: name.to_string(),
            attributes: attributes
                .iter()
                .map(|(k, v)| KeyValue::new(*k, *v))
                .collect(),
        });
    }
}

/// A message span on `channel`, as the drone services record them.
fn on(channel: &str) -> [(&'static str, String); 2] {
    [
        ("messaging.system", "redis".to_string()),
        ("messaging.destination.name", channel.to_string()),
    ]
}

#[allow(clippy::too_many_arguments)]
fn message(
    b: &mut TraceBuilder,
    parent: Option<SpanId>,
    service: &str,
    name: &str,
    kind: SpanKind,
    (at, until): (u64, u64),
    channel: &str,
    extra: &[(&str, &str)],
) -> SpanId {
    let id = b.span(parent, service, name, kind, at, until, extra);
    for (k, v) in on(channel) {
        b.last().attributes.push(KeyValue::new(k, v));
    }
    id
}

/// The seed's lock request: fpv-ops publishes, the sidecar observes and forwards,
/// striker and drone-cmd consume in parallel and record events. Returns the trace and
/// drone-cmd's consumer span (the intercept trace links to it).
///
/// `rejected` makes the second run the diff view compares with the first: another team,
/// striker takes twice as long, and drone-cmd's consumer fails.
fn lock_request(t0: u64, rejected: bool) -> (TraceBuilder, SpanId) {
    use SpanKind::*;
    let mut b = TraceBuilder::new(t0);
    let team = if rejected {
        "fpv-ops-bravo"
    } else {
        "fpv-ops-alpha"
    };
    let striker_end = if rejected { 8_000 * US } else { 4_000 * US };
    let ch = "striker_control_channel";
    let publish = message(
        &mut b,
        None,
        "fpv-ops",
        "publish_lock_request_striker",
        Producer,
        (0, 800 * US),
        ch,
        &[("ops_team", team)],
    );
    let observe = message(
        &mut b,
        Some(publish),
        "tower-sidecar",
        "tower_receive_striker_control_channel",
        Consumer,
        (1_000 * US, 1_300 * US),
        ch,
        &[],
    );
    message(
        &mut b,
        Some(observe),
        "tower-sidecar",
        "tower_forward_striker_control_channel",
        Producer,
        (1_100 * US, 1_200 * US),
        ch,
        &[],
    );
    let striker = message(
        &mut b,
        Some(publish),
        "striker",
        "consume_striker_control_channel",
        Consumer,
        (1_050 * US, striker_end),
        ch,
        &[],
    );
    b.event(
        striker,
        1_500 * US,
        "lock_request_received",
        &[
            ("interceptor", "striker"),
            ("target", "orlan"),
            ("ops_team", team),
        ],
    );
    let drone_cmd = message(
        &mut b,
        Some(publish),
        "drone-cmd",
        "consume_striker_control_channel",
        Consumer,
        (1_080 * US, 2_500 * US),
        ch,
        &[],
    );
    b.event(
        drone_cmd,
        2_000 * US,
        "interceptor_locked",
        &[
            ("interceptor", "striker"),
            ("ops_team", "fpv-ops"),
            ("target", "orlan"),
        ],
    );
    if rejected {
        b.span_mut(drone_cmd).status = Status {
            code: StatusCode::Error,
            message: "lock rejected: target lost".to_string(),
        };
    }
    (b, drone_cmd)
}

/// The seed's intercept execution, six services. Two liberties, both things the UI must
/// show: ares's clock runs 8 ms behind (its server spans start before the calls that
/// caused them), and orlan's consumer ends in an error as its process exits. The root
/// links to the lock that made drone-cmd ignore striker, in the other trace.
fn intercept(t0: u64, lock: (TraceId, SpanId)) -> (TraceBuilder, SpanId) {
    use SpanKind::*;
    let ms = |v: f64| (v * MS as f64) as u64;
    // ares's clock is behind: what it records is 8 ms early.
    let ares = |v: f64| ms(v - 8.0);
    let mut b = TraceBuilder::new(t0);
    let calc = b.span(
        None,
        "drone-cmd",
        "calculate_intercept_commands",
        Internal,
        0,
        ms(4.0),
        &[("interval", "5s"), ("ignored_interceptors", "striker")],
    );
    b.last().links.push(Link {
        trace_id: lock.0,
        span_id: lock.1,
        trace_state: String::new(),
        attributes: vec![KeyValue::new("reason", "ignored_interceptors")],
    });
    let cmd = "drone_command";
    let publish = message(
        &mut b,
        Some(calc),
        "drone-cmd",
        "publish_intercept_commands",
        Producer,
        (ms(3.0), ms(4.0)),
        cmd,
        &[],
    );
    let tower = message(
        &mut b,
        Some(publish),
        "tower-sidecar",
        "tower_receive_drone_command",
        Consumer,
        (ms(5.0), ms(6.0)),
        cmd,
        &[],
    );
    message(
        &mut b,
        Some(tower),
        "tower-sidecar",
        "tower_forward_drone_command",
        Producer,
        (ms(5.5), ms(5.8)),
        cmd,
        &[],
    );
    let consume = message(
        &mut b,
        Some(publish),
        "striker",
        "consume_drone_command",
        Consumer,
        (ms(5.2), ms(748.0)),
        cmd,
        &[
            ("target", "orlan"),
            ("heading", "94.5"),
            ("distance_km", "125.3"),
        ],
    );
    let execute = b.span(
        Some(consume),
        "striker",
        "execute_intercept",
        Internal,
        ms(6.0),
        ms(747.95),
        &[("target", "orlan")],
    );
    b.event(
        execute,
        ms(700.0),
        "reached_intercept_distance",
        &[("distance_km", "0.98"), ("mode", "boogie")],
    );

    // Path A: the lock acknowledgement to fpv-ops, who prays to ares.
    let ack = b.span(
        Some(execute),
        "striker",
        "send_lock_ack",
        Internal,
        ms(701.0),
        ms(705.0),
        &[],
    );
    let resp = "striker_lock_response_channel";
    let ack_pub = message(
        &mut b,
        Some(ack),
        "striker",
        "publish_lock_ack",
        Producer,
        (ms(702.0), ms(704.0)),
        resp,
        &[("status", "loiter-and-await-fpv-ops")],
    );
    let tower_ack = message(
        &mut b,
        Some(ack_pub),
        "tower-sidecar",
        "tower_receive_lock_response",
        Consumer,
        (ms(705.0), ms(706.0)),
        resp,
        &[],
    );
    message(
        &mut b,
        Some(tower_ack),
        "tower-sidecar",
        "tower_forward_lock_response",
        Producer,
        (ms(705.5), ms(705.8)),
        resp,
        &[],
    );
    let fpv = message(
        &mut b,
        Some(ack_pub),
        "fpv-ops",
        "consume_lock_response",
        Consumer,
        (ms(706.0), ms(714.0)),
        resp,
        &[],
    );
    let auth = b.span(
        Some(fpv),
        "fpv-ops",
        "request_strike_authorization",
        Internal,
        ms(707.0),
        ms(713.0),
        &[],
    );
    let pray = b.span(
        Some(auth),
        "fpv-ops",
        "send_prayer_tcp",
        Client,
        ms(708.0),
        ms(712.0),
        &[
            ("net.peer.name", "ares"),
            ("net.peer.port", "6000"),
            ("prayer", "Authorize strike on orlan"),
        ],
    );
    b.span(
        Some(pray),
        "ares",
        "receive_prayer",
        Server,
        ares(709.0),
        ares(711.0),
        &[
            ("sender", "fpv-ops-alpha"),
            ("striker_id", "striker"),
            ("target", "orlan"),
        ],
    );

    // Path B, in parallel: striker prays itself. ares answers "queued" at once and
    // deliberates in a span that outlives the call, as the seed's ares does.
    let auth_b = b.span(
        Some(execute),
        "striker",
        "request_strike_authorization",
        Internal,
        ms(701.0),
        ms(712.0),
        &[],
    );
    let pray_b = b.span(
        Some(auth_b),
        "striker",
        "send_prayer_tcp",
        Client,
        ms(702.0),
        ms(710.0),
        &[
            ("net.peer.name", "ares"),
            ("net.peer.port", "6000"),
            ("prayer", "In position, ready to strike orlan"),
        ],
    );
    let receive_b = b.span(
        Some(pray_b),
        "ares",
        "receive_prayer",
        Server,
        ares(704.0),
        ares(708.0),
        &[("sender", "striker"), ("target", "orlan")],
    );
    let judge = b.span(
        Some(receive_b),
        "ares",
        "execute_judgment",
        Internal,
        ares(707.0),
        ares(760.0),
        &[
            ("prayers", "2"),
            ("decision", "SACRIFICE striker AND orlan"),
        ],
    );
    b.event(
        judge,
        ares(759.0),
        "judgment_complete",
        &[
            ("eliminated", "2"),
            ("striker", "destroyed"),
            ("orlan", "destroyed"),
        ],
    );
    let notice = b.span(
        Some(judge),
        "ares",
        "publish_death_notice",
        Internal,
        ares(745.0),
        ares(749.0),
        &[],
    );
    let knell = "death-knell";
    let mut death_striker = None;
    for (i, recipient) in ["striker", "orlan"].into_iter().enumerate() {
        let off = i as f64;
        let producer = message(
            &mut b,
            Some(notice),
            "ares",
            &format!("publish_death_{recipient}"),
            Producer,
            (ares(746.0 + off), ares(747.0 + off)),
            knell,
            &[("type", "SACRIFICE"), ("recipient", recipient)],
        );
        death_striker.get_or_insert(producer);
        let tower = message(
            &mut b,
            Some(producer),
            "tower-sidecar",
            "tower_receive_death-knell",
            Consumer,
            (ms(746.5 + off), ms(747.5 + off)),
            knell,
            &[],
        );
        message(
            &mut b,
            Some(tower),
            "tower-sidecar",
            "tower_forward_death-knell",
            Producer,
            (ms(747.0 + off), ms(747.3 + off)),
            knell,
            &[],
        );
        let victim = message(
            &mut b,
            Some(producer),
            recipient,
            "consume_death-knell",
            Consumer,
            (ms(746.6 + off), ms(748.0 + off)),
            knell,
            &[("recipient", recipient)],
        );
        // `process.exit.code` is how clew-replay recognises a process exit: the replay
        // shows both drones' processes gone, and orlan's as the fault (its span fails).
        b.event(
            victim,
            ms(747.9 + off),
            "drone_destroyed",
            &[
                ("alive", "false"),
                ("exit_code", "666"),
                ("process.exit.code", "666"),
            ],
        );
        if recipient == "orlan" {
            b.last().status = Status {
                code: StatusCode::Error,
                message: "process exited with status 666".to_string(),
            };
        }
        let metrics = message(
            &mut b,
            Some(producer),
            "drone-cmd",
            "consume_death-knell",
            Consumer,
            (ms(746.7 + off), ms(749.0 + off)),
            knell,
            &[],
        );
        let (lat, lon) = if recipient == "striker" {
            ("49.9925", "36.2311")
        } else {
            ("50.1234", "36.5678")
        };
        b.event(
            metrics,
            ms(748.5 + off),
            "death_metrics_recorded",
            &[("drone", recipient), ("latitude", lat), ("longitude", lon)],
        );
    }
    (b, death_striker.expect("two death notices"))
}

/// What is left of a trace whose publisher crashed before exporting: two receivers whose
/// parents never arrived, one with a child of its own.
fn orphans(t0: u64) -> TraceBuilder {
    use SpanKind::*;
    let mut b = TraceBuilder::new(t0);
    let knell = "death-knell";
    let orlan = message(
        &mut b,
        Some(SpanId::generate()),
        "orlan",
        "consume_death-knell",
        Consumer,
        (0, 2 * MS),
        knell,
        &[("recipient", "orlan")],
    );
    b.span(
        Some(orlan),
        "orlan",
        "shutdown_providers",
        Internal,
        MS,
        2 * MS,
        &[],
    );
    message(
        &mut b,
        Some(SpanId::generate()),
        "tower-sidecar",
        "tower_receive_death-knell",
        Consumer,
        (300 * US, 900 * US),
        knell,
        &[],
    );
    b
}

/// A wide and fairly deep trace of exactly `BIG_TRACE_SPANS` spans over four services,
/// with times increasing in insertion order, so insertion order is reading order and the
/// last span inserted is the last row. Returns the trace and that span.
fn big_trace(t0: u64) -> (TraceBuilder, SpanId) {
    use SpanKind::*;
    let mut b = TraceBuilder::new(t0);
    let mut clock = 0u64;
    let mut tick = || {
        clock += 2 * US;
        clock
    };
    let root = b.span(
        None,
        "ingest-gw",
        "POST /bulk",
        Server,
        tick(),
        0,
        &[("http.method", "POST")],
    );
    let mut last = root;
    let mut chunk_no = 0;
    'outer: loop {
        chunk_no += 1;
        let at = tick();
        let chunk = b.span(
            Some(root),
            "importer",
            "import_chunk",
            Internal,
            at,
            0,
            &[("chunk", &chunk_no.to_string())],
        );
        for batch_no in 0..19 {
            if b.spans.len() >= BIG_TRACE_SPANS {
                break 'outer;
            }
            let at = tick();
            let batch = b.span(
                Some(chunk),
                "db",
                "write_batch",
                Client,
                at,
                0,
                &[("batch", &batch_no.to_string())],
            );
            for row in 0..9 {
                if b.spans.len() >= BIG_TRACE_SPANS {
                    break 'outer;
                }
                let at = tick();
                let service = if row % 3 == 2 { "cache" } else { "db" };
                last = b.span(
                    Some(batch),
                    service,
                    "insert_row",
                    Internal,
                    at,
                    at + US,
                    &[],
                );
            }
        }
        if b.spans.len() >= BIG_TRACE_SPANS {
            break;
        }
    }
    // Parents end when their last descendant does; children come after parents here.
    let index: std::collections::HashMap<SpanId, usize> = b
        .spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    for i in (0..b.spans.len()).rev() {
        let end = b.spans[i]
            .end_unix_nano
            .max(b.spans[i].start_unix_nano + US);
        b.spans[i].end_unix_nano = end;
        if let Some(p) = b.spans[i].parent_span_id.and_then(|p| index.get(&p)) {
            let p = *p;
            b.spans[p].end_unix_nano = b.spans[p].end_unix_nano.max(end + US);
        }
    }
    assert_eq!(b.spans.len(), BIG_TRACE_SPANS);
    (b, last)
}

fn cli_text(clew: &Clew, args: &[&str]) -> String {
    let output = clew.cli(args);
    assert!(
        output.status.success(),
        "clew {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The lifecycle line after the tree comes from the registry, not the renderer the UI
    // ports, and the UI shows lifecycle elsewhere.
    let text = String::from_utf8(output.stdout).unwrap();
    text.lines()
        .filter(|line| !line.starts_with("Lifecycle: "))
        .map(|line| format!("{line}\n"))
        .collect()
}

/// The trace ids a search with `query` finds.
fn search_ids(clew: &Clew, query: &str) -> Vec<String> {
    let (status, body) = get_json(&clew.api(&format!("/api/clew/search?{query}")));
    assert_eq!(status, 200, "search {query}: {body}");
    body["traces"]
        .as_array()
        .map(|traces| {
            traces
                .iter()
                .filter_map(|t| t["trace_id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs the real demo twice into `dir/data` (once healthy, once with ares down), starts
/// clew on that store, loads the five hand-built traces next to the demo's, and writes
/// what the browser test needs to know about them to `fixtures.json` in `dir`.
fn loaded_server(dir: &Path) -> (Clew, PathBuf) {
    let data = dir.join("data");
    let demo = run_demo(&data, &[]);
    let demo_down = run_demo(&data, &["--fault", "ares-down"]);
    let clew = Clew::start(&data);
    // Both runs' traces are found the way a reader would find them.
    let intercepts = search_ids(
        &clew,
        "service=drone-cmd&operation=calculate_intercept_commands",
    );
    let locks = search_ids(
        &clew,
        "service=fpv-ops&operation=publish_lock_request_striker",
    );
    for (found, id) in [
        (&intercepts, &demo.intercept_execution),
        (&intercepts, &demo_down.intercept_execution),
        (&locks, &demo.lock_request),
        (&locks, &demo_down.lock_request),
    ] {
        assert!(
            found.contains(id),
            "the demo's trace {id} is not in {found:?}"
        );
    }
    let demo_traces = search_ids(&clew, "limit=100").len();
    let now = now_nanos();
    let (lock, lock_consumer) = lock_request(now - 20_000 * MS, false);
    let (rejected, _) = lock_request(now - 25_000 * MS, true);
    let (intercept, death_striker) = intercept(now - 10_000 * MS, (lock.trace_id, lock_consumer));
    let (big, big_last) = big_trace(now - 30_000 * MS);
    let orphaned = orphans(now - 15_000 * MS);
    assert_eq!(clew.send_spans(&orphaned.spans), 200);
    assert_eq!(clew.send_spans(&lock.spans), 200);
    assert_eq!(clew.send_spans(&intercept.spans), 200);
    assert_eq!(clew.send_spans(&big.spans), 200);
    assert_eq!(clew.send_spans(&rejected.spans), 200);

    let search = clew.api("/api/clew/search?limit=100");
    eventually(Duration::from_secs(30), || {
        let (status, body) = get_json(&search);
        (status == 200
            && body["traces"]
                .as_array()
                .is_some_and(|t| t.len() == demo_traces + 5))
        .then_some(())
    })
    .expect("the five traces are searchable next to the demo's");

    let find = |b: &TraceBuilder, name: &str| -> String {
        b.spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name}"))
            .span_id
            .to_string()
    };
    let intercept_id = intercept.trace_id.to_string();
    let fixtures = serde_json::json!({
        "lock": {
            "traceId": lock.trace_id.to_string(),
            "spans": lock.spans.len(),
            "droneCmdConsumer": lock_consumer.to_string(),
        },
        "rejected": {
            "traceId": rejected.trace_id.to_string(),
        },
        "intercept": {
            "traceId": intercept_id,
            "spans": intercept.spans.len(),
            "deathStriker": death_striker.to_string(),
            "deathOrlan": find(&intercept, "publish_death_orlan"),
            "root": find(&intercept, "calculate_intercept_commands"),
            "textSkewOn": cli_text(&clew, &["trace", "show", &intercept_id]),
            "textSkewOff": cli_text(&clew, &["trace", "show", &intercept_id, "--no-skew-adjust"]),
        },
        "orphans": {
            "traceId": orphaned.trace_id.to_string(),
            "text": cli_text(&clew, &["trace", "show", &orphaned.trace_id.to_string()]),
        },
        "demo": {
            "lockRequest": demo.lock_request,
            "intercept": demo.intercept_execution,
            "flight": demo.flight,
        },
        "demoAresDown": {
            "lockRequest": demo_down.lock_request,
            "intercept": demo_down.intercept_execution,
            "flight": demo_down.flight,
        },
        "big": {
            "traceId": big.trace_id.to_string(),
            "spans": big.spans.len(),
            "lastSpanId": big_last.to_string(),
        },
    });
    let path = dir.join("fixtures.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&fixtures).unwrap()).unwrap();
    (clew, path)
}

/// What the browser test needs, or a message saying how to get it.
fn prerequisites(root: &Path) -> Result<(), String> {
    let install = "run ./scripts/test, which installs it";
    if Command::new("node").arg("--version").output().is_err() {
        return Err(format!("`node` is not on PATH: {install}"));
    }
    if !root.join("ui/node_modules/playwright-core").is_dir() {
        return Err(format!(
            "ui/node_modules is missing: run `npm --prefix ui ci` (or {install})"
        ));
    }
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Err(format!(
            "{chromium} is missing: `apt-get install chromium` (or {install})"
        ));
    }
    Ok(())
}

#[test]
fn the_ui_in_a_real_browser() {
    let root = repo_root();
    if let Err(message) = prerequisites(&root) {
        panic!("cannot run the browser test: {message}");
    }
    let dir = tempfile::tempdir().unwrap();
    let (clew, fixtures) = loaded_server(dir.path());

    // The UI must be served next to the API; without it nothing below can work.
    let page = get_text(&clew.api("/trace/0123"));
    assert!(
        page.contains("<div id=\"app\"></div>"),
        "clew serve does not serve the UI at {} (got {page:?}): clew-server must merge \
         clew_ui::router() with the query API's router",
        clew.api("/trace/0123")
    );

    let screenshots = if std::env::var_os("CLEW_UPDATE_SCREENSHOTS").is_some() {
        root.join("docs/screenshots")
    } else {
        root.join("target/ui-screenshots")
    };
    std::fs::create_dir_all(&screenshots).unwrap();
    let status = Command::new("node")
        .arg(root.join("ui/e2e/run.mjs"))
        .arg("--base-url")
        .arg(format!("http://{}", clew.http))
        .arg("--fixtures")
        .arg(&fixtures)
        .arg("--screenshots")
        .arg(&screenshots)
        .status()
        .expect("running node ui/e2e/run.mjs");
    assert!(
        status.success(),
        "the browser test failed (its output is above)"
    );
}

/// Not a test: a server loaded with the fixtures, for working on the UI (`npm --prefix
/// ui run dev` with `CLEW_HTTP=http://<printed address>`). Runs until interrupted.
#[test]
#[ignore = "a development server, not a test"]
fn serve_fixtures_for_development() {
    let dir = tempfile::tempdir().unwrap();
    let (clew, fixtures) = loaded_server(dir.path());
    println!("clew with the UI fixtures: http://{}", clew.http);
    println!("fixtures: {}", fixtures.display());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// The body of a GET as text.
fn get_text(url: &str) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}
