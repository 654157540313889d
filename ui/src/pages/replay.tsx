// Time travel over one trace: the replay timeline (every span start and end, message
// send and receive, span event and process exit, in happens-before order, as
// clew-replay indexes it) with the whole system's state after any event. The index is
// the URL (`?at=N`), so "look at event 212" can be sent to someone. The server
// computes snapshots (it keeps checkpoints); the page only ever holds a window of the
// timeline, so a 50,000-span trace costs no more than a small one.

import { useEffect, useRef, useState } from "preact/hooks";
import { ApiError, type Snapshot, type TimelineEvent, type TimelineSummary, fetchSnapshot, fetchTimeline } from "../api";
import { serviceColor } from "../colors";
import { formatDuration } from "../format";
import { Link, navigate } from "../router";

/** Events listed around the current one. */
const WINDOW = 60;

type Load<T> = { state: "loading" } | { state: "error"; message: string } | { state: "done"; value: T };

const errorText = (e: unknown) => (e instanceof ApiError ? e.message : String(e));
const usText = (us: number) => `+${formatDuration(us * 1000)}`;

export function ReplayPage(props: { traceId: string; query: URLSearchParams }) {
  const { traceId } = props;
  const [summary, setSummary] = useState<Load<TimelineSummary>>({ state: "loading" });
  useEffect(() => {
    document.title = `Replay ${traceId.slice(0, 12)} · clew`;
    const abort = new AbortController();
    fetchTimeline(traceId, 0, 1, abort.signal)
      .then((p) => setSummary({ state: "done", value: p.summary }))
      .catch((e: Error) => e.name !== "AbortError" && setSummary({ state: "error", message: errorText(e) }));
    return () => abort.abort();
  }, [traceId]);

  if (summary.state === "loading") return <p class="muted pad">Building the replay timeline of {traceId}…</p>;
  if (summary.state === "error") {
    return (
      <div class="notice">
        <h2>No replay for this trace</h2>
        <p class="error-banner">{summary.message}</p>
        <p>
          <Link href={`/trace/${traceId}`}>Open the trace</Link>
        </p>
      </div>
    );
  }
  return <Replay traceId={traceId} summary={summary.value} query={props.query} />;
}

function Replay(props: { traceId: string; summary: TimelineSummary; query: URLSearchParams }) {
  const { traceId, summary } = props;
  const last = summary.event_count - 1;
  const requested = Number(props.query.get("at") ?? "0");
  const at = Number.isFinite(requested) ? Math.max(0, Math.min(last, Math.floor(requested))) : 0;
  // Steps replace the history entry: Back should leave the replay, not undo each step.
  const go = (n: number) => navigate(`/trace/${traceId}/replay?at=${Math.max(0, Math.min(last, n))}`, true);

  const [snapshot, setSnapshot] = useState<Load<Snapshot>>({ state: "loading" });
  useEffect(() => {
    const abort = new AbortController();
    fetchSnapshot(traceId, at, abort.signal)
      .then((value) => setSnapshot({ state: "done", value }))
      .catch((e: Error) => e.name !== "AbortError" && setSnapshot({ state: "error", message: errorText(e) }));
    return () => abort.abort();
  }, [traceId, at]);

  // The window of events shown: refetched only when the index leaves its middle part,
  // so holding → does not fetch on every step.
  const [events, setEvents] = useState<{ offset: number; list: TimelineEvent[] } | null>(null);
  useEffect(() => {
    if (events) {
      const end = events.offset + events.list.length;
      const inside = at >= events.offset && at < end;
      const nearStart = events.offset > 0 && at < events.offset + 10;
      const nearEnd = end <= last && at >= end - 10;
      if (inside && !nearStart && !nearEnd) return;
    }
    const abort = new AbortController();
    const offset = Math.max(0, at - WINDOW / 2);
    fetchTimeline(traceId, offset, WINDOW, abort.signal)
      .then((p) => setEvents({ offset: p.offset, list: p.events }))
      .catch(() => {});
    return () => abort.abort();
  }, [traceId, at]);

  // A focused slider moves itself with the arrow keys (and reports through onInput).
  const latest = useRef({ at, last });
  latest.current = { at, last };
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      if (e.altKey || e.ctrlKey || e.metaKey || target?.closest("input, select, textarea")) return;
      const { at, last } = latest.current;
      const big = e.shiftKey ? 10 : 1;
      if (e.key === "ArrowRight") go(at + big);
      else if (e.key === "ArrowLeft") go(at - big);
      else if (e.key === "Home") go(0);
      else if (e.key === "End") go(last);
      else return;
      e.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [traceId]);

  const current = events?.list.find((e) => e.index === at);
  const fault = summary.first_fault_index;
  return (
    <div class="replay-page">
      <section class="replay-head">
        <h1>
          Replay <Link href={`/trace/${traceId}`} class="trace-id mono">{traceId}</Link>
        </h1>
        <div class="trace-facts">
          <span>{summary.event_count} events</span>
          <span>{summary.span_count} spans</span>
          <span>{summary.services.length} services</span>
          <span>Duration {formatDuration(summary.duration_us * 1000)}</span>
          <span class={summary.fault_count > 0 ? "errors" : "muted"}>
            {summary.fault_count} {summary.fault_count === 1 ? "fault" : "faults"}
          </span>
          <span class="muted mono small" title="Timeline signature: equal for runs whose events happened in the same order">
            {summary.timeline_signature.slice(0, 12)}
          </span>
        </div>
        {summary.warnings.map((w) => (
          <p class="warn small">Warning: {w}</p>
        ))}
      </section>

      <div class="stepper" role="toolbar" aria-label="Replay controls">
        <button type="button" onClick={() => go(0)} disabled={at === 0} title="First event (Home)">
          «
        </button>
        <button type="button" name="prev" onClick={() => go(at - 1)} disabled={at === 0} title="Previous event (←)">
          ◀
        </button>
        <input
          type="range"
          name="at"
          min={0}
          max={last}
          value={at}
          aria-label="Timeline index"
          onInput={(e) => go(Number((e.target as HTMLInputElement).value))}
        />
        <button type="button" name="next" onClick={() => go(at + 1)} disabled={at === last} title="Next event (→)">
          ▶
        </button>
        <button type="button" onClick={() => go(last)} disabled={at === last} title="Last event (End)">
          »
        </button>
        <span class="stepper-pos mono" data-at={at}>
          {at} / {last}
        </span>
        <button type="button" name="first-fault" class="fault-button" disabled={fault === null} onClick={() => fault !== null && go(fault)}>
          {fault === null ? "No fault" : `Jump to first fault (#${fault})`}
        </button>
      </div>

      <div class="replay-body">
        <EventList events={events?.list ?? []} at={at} onPick={go} />
        <section class="snapshot" aria-label="State after this event" data-index={snapshot.state === "done" ? snapshot.value.index : ""}>
          {snapshot.state === "loading" && <p class="muted">Loading the snapshot…</p>}
          {snapshot.state === "error" && <p class="error-banner">{snapshot.message}</p>}
          {snapshot.state === "done" && <SnapshotView traceId={traceId} s={snapshot.value} current={current} />}
        </section>
      </div>
    </div>
  );
}

function EventList(props: { events: TimelineEvent[]; at: number; onPick: (n: number) => void }) {
  const list = useRef<HTMLOListElement>(null);
  useEffect(() => {
    const el = list.current?.querySelector(".current");
    if (el) el.scrollIntoView({ block: "nearest" });
  }, [props.at, props.events]);
  return (
    <ol class="event-list" ref={list} aria-label="Timeline events">
      {props.events.map((e) => (
        <li
          class={`ev-${e.kind}${e.index === props.at ? " current" : ""}${e.fault ? " fault" : ""}${e.index > props.at ? " future" : ""}`}
          data-index={e.index}
          onClick={() => props.onPick(e.index)}
        >
          <span class="ev-index mono">{e.index}</span>
          <span class="ev-at mono">{usText(e.at_us)}</span>
          <span class="swatch" style={{ background: serviceColor(e.service) }} />
          <span class="ev-label">{e.label}</span>
          {e.fault && <span class="err-badge">{e.fault.replace("_", " ")}</span>}
        </li>
      ))}
    </ol>
  );
}

function SnapshotView(props: { traceId: string; s: Snapshot; current: TimelineEvent | undefined }) {
  const { s, traceId } = props;
  const spanLink = (spanId: string, text: string) => (
    <Link href={`/trace/${traceId}?span=${spanId}`} class="span-ref">
      {text}
    </Link>
  );
  return (
    <>
      <h2 class="snapshot-title">
        After #{s.index} <span class="muted">{usText(s.at_us)}</span>: <span class="current-label">{s.label}</span>
      </h2>
      {s.last_error && (
        <p class="error-banner last-error">
          Last fault: #{s.last_error.event.index} {s.last_error.event.service} {s.last_error.span_name} ({s.last_error.kind.replace("_", " ")})
          {s.last_error.message && `: ${s.last_error.message}`}
        </p>
      )}
      <table class="snap-services">
        <thead>
          <tr>
            <th>Service</th>
            <th>Process</th>
            <th>Open spans ({s.open_span_count})</th>
          </tr>
        </thead>
        <tbody>
          {s.services.map((svc) => (
            <tr data-service={svc.service} data-status={svc.status} class={props.current?.service === svc.service ? "acting" : ""}>
              <td>
                <span class="swatch" style={{ background: serviceColor(svc.service) }} />
                {svc.service}
              </td>
              <td class={`status-${svc.status}`}>
                {svc.status === "not_started" ? "not started" : svc.status}
                {svc.exited_at && <span class="muted small"> at #{svc.exited_at.index}</span>}
              </td>
              <td>
                {svc.open_spans.length === 0 ? (
                  <span class="muted">—</span>
                ) : (
                  svc.open_spans.map((o) => (
                    <span class="open-span">
                      {spanLink(o.span_id, o.name)} <span class="muted small">since #{o.start_index}</span>
                    </span>
                  ))
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <h3>Messages in flight ({s.in_flight.length})</h3>
      {s.in_flight.length === 0 ? (
        <p class="muted">None: every message sent so far has been received.</p>
      ) : (
        <ul class="in-flight">
          {s.in_flight.map((f) => (
            <li>
              {spanLink(f.span.span_id, `${f.span.service}: ${f.span.name}`)}
              {f.destination && <span class="channel"> on {f.destination}</span>}
              <span class="muted small"> sent at #{f.span.start_index}</span>
            </li>
          ))}
        </ul>
      )}
    </>
  );
}
