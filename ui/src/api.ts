// The native query API (`/api/clew/…`, crates/clew-query/src/native.rs): the UI reads
// the same JSON the CLI does, so both show the same trace.

import { type Kind, parseExactJson, type Trace, traceFromJson } from "./model";

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

export async function fetchTrace(traceId: string, signal?: AbortSignal): Promise<Trace> {
  const text = await getText(`/api/clew/traces/${encodeURIComponent(traceId)}`, signal);
  return traceFromJson(parseExactJson(text), traceId.toLowerCase());
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
