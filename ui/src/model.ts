// Spans as the UI holds them: the native API's JSON (clew_model::Span as serde writes
// it) with times turned into nanoseconds relative to the trace's first span, because
// Unix nanoseconds (~1.8e18) do not fit a JavaScript number exactly while offsets
// within a trace (< 104 days) do.

export type Kind = "Unspecified" | "Internal" | "Server" | "Client" | "Producer" | "Consumer";
export type StatusCode = "Unset" | "Ok" | "Error";

export type AttrValue =
  | { String: string }
  | { Bool: boolean }
  | { Int: number | string }
  | { Double: number }
  | { Bytes: number[] }
  | { Array: AttrValue[] }
  | { Map: KeyValue[] };

export interface KeyValue {
  key: string;
  value: AttrValue;
}

export interface SpanEvent {
  /** Nanoseconds after the trace's base, as recorded (before any skew shift). */
  time: number;
  name: string;
  attributes: KeyValue[];
}

export interface SpanLink {
  traceId: string;
  spanId: string;
  attributes: KeyValue[];
}

export interface Span {
  traceId: string;
  spanId: string;
  parentId: string | null;
  name: string;
  kind: Kind;
  service: string;
  /** Nanoseconds after the trace's base, as recorded. */
  start: number;
  end: number;
  attributes: KeyValue[];
  events: SpanEvent[];
  links: SpanLink[];
  status: { code: StatusCode; message: string };
  resource: KeyValue[];
  scope: { name: string; version: string };
  traceState: string;
}

export interface Trace {
  traceId: string;
  /** Unix nanoseconds that every relative time counts from (the earliest recorded start). */
  base: bigint;
  spans: Span[];
  /** The lifecycle registry's record, when the API sent one. */
  lifecycle?: Lifecycle | null;
}

/** The lifecycle registry's record of a trace (clew_registry::TraceRecord). */
export interface Lifecycle {
  id: string;
  state: "RECEIVED" | "IN_PROGRESS" | "COMPLETED" | "ERRORED";
  created_at_ms: number;
  finished_at_ms: number | null;
  /** Set only when the watchdog gave up on the trace (it is then also ERRORED). */
  orphaned_at_ms: number | null;
  error: string | null;
  metadata: Record<string, string>;
}

export const KIND_LABEL: Record<Kind, string> = {
  Unspecified: "UNSPECIFIED",
  Internal: "INTERNAL",
  Server: "SERVER",
  Client: "CLIENT",
  Producer: "PRODUCER",
  Consumer: "CONSUMER",
};

/** The value as a user would type it in a `key=value` search (Rust's `to_text`). */
export function attrText(v: AttrValue): string {
  if ("String" in v) return v.String;
  if ("Bool" in v) return String(v.Bool);
  if ("Int" in v) return String(v.Int);
  if ("Double" in v) return String(v.Double);
  if ("Bytes" in v) return v.Bytes.map((b) => b.toString(16).padStart(2, "0")).join("");
  if ("Array" in v) return `[${v.Array.map(attrText).join(", ")}]`;
  return `{${v.Map.map((kv) => `${kv.key}: ${attrText(kv.value)}`).join(", ")}}`;
}

export function findAttr(attrs: readonly KeyValue[], key: string): AttrValue | undefined {
  return attrs.find((kv) => kv.key === key)?.value;
}

function attrString(attrs: readonly KeyValue[], key: string): string | undefined {
  const v = findAttr(attrs, key);
  return v && "String" in v ? v.String : undefined;
}

export const DESTINATION_KEYS = ["messaging.destination.name", "messaging.destination"] as const;

/** The channel, topic or queue of a PRODUCER or CONSUMER span (current or older key). */
export function destination(span: Span): string | undefined {
  for (const key of DESTINATION_KEYS) {
    const v = attrString(span.attributes, key);
    if (v !== undefined) return v;
  }
  return undefined;
}

export function isError(span: Span): boolean {
  return span.status.code === "Error";
}

// --- decoding the native API's JSON ---------------------------------------------------

interface RawKeyValue {
  key: string;
  value: AttrValue;
}

interface RawSpan {
  trace_id: string;
  span_id: string;
  parent_span_id?: string | null;
  trace_state?: string;
  name: string;
  kind: Kind;
  start_unix_nano: string;
  end_unix_nano: string;
  attributes?: RawKeyValue[];
  events?: { time_unix_nano: string; name: string; attributes?: RawKeyValue[] }[];
  links?: { trace_id: string; span_id: string; attributes?: RawKeyValue[] }[];
  status?: { code?: StatusCode; message?: string };
  resource?: { attributes?: RawKeyValue[] };
  scope?: { name?: string; version?: string };
}

/** Parses JSON whose `*_unix_nano` fields and large `Int` attribute values are integers
 *  beyond 2^53, keeping them exact by reading them as strings. A JSON string cannot hold
 *  an unescaped `"` before the colon, so no text inside a string value is touched. */
export function parseExactJson<T>(text: string): T {
  const quoted = text
    .replace(/"([A-Za-z_]*_unix_nano)":(-?\d+)/g, '"$1":"$2"')
    .replace(/"Int":(-?\d{16,})/g, '"Int":"$1"');
  return JSON.parse(quoted) as T;
}

const ZERO_SPAN_ID = "0000000000000000";

export function traceFromJson(raw: { spans: RawSpan[] }, traceId: string): Trace {
  let base: bigint | null = null;
  for (const s of raw.spans) {
    const start = BigInt(s.start_unix_nano);
    if (base === null || start < base) base = start;
  }
  const b = base ?? 0n;
  const rel = (ns: string) => Number(BigInt(ns) - b);
  const spans: Span[] = raw.spans.map((s) => {
    const resource = s.resource?.attributes ?? [];
    const service = attrString(resource, "service.name") ?? "unknown_service";
    const parent = s.parent_span_id ?? null;
    return {
      traceId: s.trace_id,
      spanId: s.span_id,
      // Some senders write an all-zero parent id for "no parent".
      parentId: parent === null || parent === ZERO_SPAN_ID ? null : parent,
      name: s.name,
      kind: s.kind,
      service,
      start: rel(s.start_unix_nano),
      end: rel(s.end_unix_nano),
      attributes: s.attributes ?? [],
      events: (s.events ?? []).map((e) => ({
        time: rel(e.time_unix_nano),
        name: e.name,
        attributes: e.attributes ?? [],
      })),
      links: (s.links ?? []).map((l) => ({ traceId: l.trace_id, spanId: l.span_id, attributes: l.attributes ?? [] })),
      status: { code: s.status?.code ?? "Unset", message: s.status?.message ?? "" },
      resource,
      scope: { name: s.scope?.name ?? "", version: s.scope?.version ?? "" },
      traceState: s.trace_state ?? "",
    };
  });
  return { traceId, base: b, spans };
}

/** Whole Unix milliseconds of a relative time (truncated, as the CLI prints them). */
export function unixMillis(trace: Trace, rel: number): number {
  return Number((trace.base + BigInt(Math.round(rel))) / 1_000_000n);
}
