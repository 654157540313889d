// The native query API (`/api/clew/…`, crates/clew-query/src/native.rs): the UI reads
// the same JSON the CLI does, so both show the same trace.

import { type Kind, type Lifecycle, parseExactJson, type Trace, traceFromJson } from "./model";

export type { Lifecycle };

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function getText(path: string, signal?: AbortSignal): Promise<string> {
  let response: Response;
  try {
    response = await fetch(path, { signal, headers: { accept: "application/json" } });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, `cannot reach clew at ${location.host}: is \`clew serve\` running?`);
  }
  const text = await response.text();
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = JSON.parse(text) as { error?: string };
      if (typeof body.error === "string") message = body.error;
    } catch {
      // Not JSON (a proxy's error page): the status line is all there is.
    }
    throw new ApiError(response.status, message);
  }
  return text;
}

export type LifecycleState = "active" | "in_progress" | "completed" | "errored" | "orphaned";
export const LIFECYCLE_STATES: LifecycleState[] = ["active", "in_progress", "completed", "errored", "orphaned"];

export async function fetchTrace(traceId: string, signal?: AbortSignal): Promise<Trace> {
  const text = await getText(`/api/clew/traces/${encodeURIComponent(traceId)}`, signal);
  const raw = parseExactJson<Parameters<typeof traceFromJson>[0] & { lifecycle?: Lifecycle | null }>(text);
  return { ...traceFromJson(raw, traceId.toLowerCase()), lifecycle: raw.lifecycle ?? null };
}

export async function fetchActive(limit: number, signal?: AbortSignal): Promise<{ id: string; created_at_ms: number }[]> {
  const text = await getText(`/api/clew/lifecycle/active?limit=${limit}`, signal);
  return (JSON.parse(text) as { traces: { id: string; created_at_ms: number }[] }).traces;
}

export async function fetchOrphans(limit: number, signal?: AbortSignal): Promise<Lifecycle[]> {
  const text = await getText(`/api/clew/lifecycle/orphans?limit=${limit}`, signal);
  return (JSON.parse(text) as { traces: Lifecycle[] }).traces;
}

export interface TraceSummary {
  traceId: string;
  rootService: string;
  rootOperation: string;
  /** Unix milliseconds, for dates and the scatter's x axis. */
  startMillis: number;
  durationNanos: number;
  spanCount: number;
  errorCount: number;
  orphanCount: number;
  services: { name: string; spans: number }[];
  /** `null` when the registry does not know the trace (or there is none). */
  lifecycle: Lifecycle | null;
}

interface RawSummary {
  trace_id: string;
  root_service: string;
  root_operation: string;
  start_unix_nano: string;
  end_unix_nano: string;
  span_count: number;
  error_count: number;
  orphan_count: number;
  services: [string, number][];
  lifecycle?: Lifecycle | null;
}

export interface SearchParams {
  service?: string;
  operation?: string;
  attrs: string[];
  minDuration?: string;
  maxDuration?: string;
  /** RFC 3339 or Unix nanoseconds, as the API takes them. */
  start?: string;
  end?: string;
  limit?: number;
  state?: LifecycleState;
}

export async function searchTraces(p: SearchParams, signal?: AbortSignal): Promise<TraceSummary[]> {
  const q = new URLSearchParams();
  if (p.service) q.set("service", p.service);
  if (p.operation) q.set("operation", p.operation);
  for (const a of p.attrs) q.append("attr", a);
  if (p.minDuration) q.set("min_duration", p.minDuration);
  if (p.maxDuration) q.set("max_duration", p.maxDuration);
  if (p.start) q.set("start", p.start);
  if (p.end) q.set("end", p.end);
  if (p.limit !== undefined) q.set("limit", String(p.limit));
  if (p.state) q.set("state", p.state);
  const text = await getText(`/api/clew/search?${q}`, signal);
  const raw = parseExactJson<{ traces: RawSummary[] }>(text);
  return raw.traces.map((t) => {
    const start = BigInt(t.start_unix_nano);
    return {
      traceId: t.trace_id,
      rootService: t.root_service,
      rootOperation: t.root_operation,
      startMillis: Number(start / 1_000_000n),
      durationNanos: Number(BigInt(t.end_unix_nano) - start),
      spanCount: t.span_count,
      errorCount: t.error_count,
      orphanCount: t.orphan_count,
      services: t.services.map(([name, spans]) => ({ name, spans })),
      lifecycle: t.lifecycle ?? null,
    };
  });
}

export interface ServiceInfo {
  name: string;
  operations: { name: string; kind: Kind }[];
}

export async function fetchServices(signal?: AbortSignal): Promise<ServiceInfo[]> {
  const text = await getText("/api/clew/services", signal);
  return (JSON.parse(text) as { services: ServiceInfo[] }).services;
}

export interface Dependency {
  parent: string;
  child: string;
  channel: string | null;
  callCount: number;
  errorCount: number;
}

export async function fetchDependencies(startNanos: bigint, endNanos: bigint, signal?: AbortSignal): Promise<Dependency[]> {
  const text = await getText(`/api/clew/dependencies?start=${startNanos}&end=${endNanos}`, signal);
  const raw = JSON.parse(text) as {
    dependencies: { parent: string; child: string; channel?: string | null; call_count: number; error_count: number }[];
  };
  return raw.dependencies.map((d) => ({
    parent: d.parent,
    child: d.child,
    channel: d.channel ?? null,
    callCount: d.call_count,
    errorCount: d.error_count,
  }));
}

export function nowNanos(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

// --- replay (`/api/clew/replay/…`, crates/clew-query/src/replay.rs over clew-replay) ---

export type EventKind = "span_start" | "message_send" | "message_receive" | "span_event" | "process_exit" | "span_end";
export type FaultKind = "error_status" | "exception" | "abnormal_exit";

export interface TimelineEvent {
  index: number;
  /** Microseconds since the trace's skew-corrected start. */
  at_us: number;
  kind: EventKind;
  label: string;
  service: string;
  span_id: string;
  span_name: string;
  span_kind: Kind;
  event_name?: string;
  fault?: FaultKind;
}

export interface TimelineSummary {
  trace_id: string | null;
  span_count: number;
  event_count: number;
  services: string[];
  duration_us: number;
  trace_signature: string;
  timeline_signature: string;
  fault_count: number;
  first_fault_index: number | null;
  warnings: string[];
}

export interface TimelinePage {
  summary: TimelineSummary;
  offset: number;
  events: TimelineEvent[];
}

export interface EventRef {
  index: number;
  at_us: number;
  kind: EventKind;
  service: string;
  span_id: string;
  label: string;
}

export interface SpanRef {
  span_id: string;
  service: string;
  name: string;
  kind: Kind;
  start_index: number;
  start_at_us: number;
}

export interface Snapshot {
  index: number;
  at_us: number;
  label: string;
  state_signature: string;
  services: {
    service: string;
    status: "not_started" | "alive" | "exited";
    exited_at?: EventRef;
    open_spans: SpanRef[];
    last_event?: EventRef;
  }[];
  in_flight: { span: SpanRef; destination?: string }[];
  last_error?: { event: EventRef; kind: FaultKind; span_name: string; message: string };
  open_span_count: number;
}

export interface TraceDiff {
  expected_signature: string;
  actual_signature: string;
  edits: {
    op: "inserted" | "deleted" | "changed";
    path: string;
    expected?: DiffSpan;
    actual?: DiffSpan;
    changes?: { field: string; expected: string; actual: string }[];
    subtree_spans: number;
  }[];
  durations: { path: string; expected_us: number; actual_us: number; delta_us: number }[];
  /** `index` is on the expected timeline, `actual_index` (when given) on the actual one. */
  first_divergence: {
    index: number;
    expected: string | null;
    actual: string | null;
    actual_index?: number;
  } | null;
}

export interface DiffSpan {
  service: string;
  name: string;
  kind: string;
  status: string;
  duration_us: number;
}

const replayBase = (traceId: string) => `/api/clew/replay/${encodeURIComponent(traceId)}`;

export async function fetchTimeline(traceId: string, offset: number, limit: number, signal?: AbortSignal): Promise<TimelinePage> {
  const text = await getText(`${replayBase(traceId)}/timeline?offset=${offset}&limit=${limit}`, signal);
  return parseExactJson<TimelinePage>(text);
}

/** The snapshot after event `at` (an index, `first_fault` or `latest`). */
export async function fetchSnapshot(traceId: string, at: number | "first_fault" | "latest", signal?: AbortSignal): Promise<Snapshot> {
  const text = await getText(`${replayBase(traceId)}/snapshot?at=${at}`, signal);
  // `first_fault` may answer the whole FirstFault (fault, snapshot, causal chain).
  const raw = parseExactJson<Snapshot | { snapshot: Snapshot }>(text);
  return "snapshot" in raw ? raw.snapshot : raw;
}

export async function fetchDiff(a: string, b: string, signal?: AbortSignal): Promise<TraceDiff> {
  const text = await getText(`/api/clew/replay/diff?a=${encodeURIComponent(a)}&b=${encodeURIComponent(b)}`, signal);
  return parseExactJson<TraceDiff>(text);
}
