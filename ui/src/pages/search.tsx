// The search page, shaped like Jaeger's (the page users already know): filters on the
// left, a duration-over-time scatter and the matching traces on the right. Every filter
// lives in the URL, so a search can be shared and reloaded; the URL is the state.

import { useEffect, useMemo, useState } from "preact/hooks";
import {
  ApiError,
  LIFECYCLE_STATES,
  type LifecycleState,
  type SearchParams,
  type ServiceInfo,
  type TraceSummary,
  fetchServices,
  nowNanos,
  searchTraces,
} from "../api";
import { ERROR_COLOR, serviceColor } from "../colors";
import { LifecycleBadge } from "../components/lifecycle";
import { formatAgo, formatDuration, formatLocalTime, parseDurationText } from "../format";
import { Link, navigate, withQuery } from "../router";

export const LOOKBACKS: [string, string, number][] = [
  ["5m", "Last 5 minutes", 5 * 60],
  ["15m", "Last 15 minutes", 15 * 60],
  ["1h", "Last hour", 3600],
  ["6h", "Last 6 hours", 6 * 3600],
  ["12h", "Last 12 hours", 12 * 3600],
  ["1d", "Last day", 86400],
  ["2d", "Last 2 days", 2 * 86400],
  ["7d", "Last 7 days", 7 * 86400],
];
const DEFAULT_LOOKBACK = "1h";
const DEFAULT_LIMIT = 20;

const SORTS = {
  newest: ["Most recent", (a: TraceSummary, b: TraceSummary) => b.startMillis - a.startMillis],
  longest: ["Longest first", (a: TraceSummary, b: TraceSummary) => b.durationNanos - a.durationNanos],
  shortest: ["Shortest first", (a: TraceSummary, b: TraceSummary) => a.durationNanos - b.durationNanos],
  spans: ["Most spans", (a: TraceSummary, b: TraceSummary) => b.spanCount - a.spanCount],
  errors: ["Most errors", (a: TraceSummary, b: TraceSummary) => b.errorCount - a.errorCount],
} as const;
type SortKey = keyof typeof SORTS;

/** The search as the URL holds it. */
interface Form {
  service: string;
  operation: string;
  attrs: string;
  minDuration: string;
  maxDuration: string;
  lookback: string;
  /** `datetime-local` values, only used with lookback=custom. */
  start: string;
  end: string;
  limit: string;
  sort: SortKey;
  /** A lifecycle state, or "" for any. */
  state: string;
}

const STATE_LABELS: Record<LifecycleState, string> = {
  active: "Active (not finished)",
  in_progress: "In progress",
  completed: "Completed",
  errored: "Errored",
  orphaned: "Orphaned",
};

/** `k=v k2="a b"` into `["k=v", "k2=a b"]`. */
export function parseAttrs(text: string): string[] {
  const out: string[] = [];
  const re = /([^\s=]+)=(?:"([^"]*)"|(\S*))/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push(`${m[1]}=${m[2] ?? m[3] ?? ""}`);
  return out;
}

function attrsText(attrs: string[]): string {
  return attrs
    .map((a) => {
      const eq = a.indexOf("=");
      const v = a.slice(eq + 1);
      return /\s/.test(v) ? `${a.slice(0, eq)}="${v}"` : a;
    })
    .join(" ");
}

function localInput(ms: number): string {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
  return d.toISOString().slice(0, 16);
}

function formFromQuery(q: URLSearchParams): Form {
  const sort = q.get("sort") ?? "newest";
  return {
    service: q.get("service") ?? "",
    operation: q.get("operation") ?? "",
    attrs: attrsText(q.getAll("attr")),
    minDuration: q.get("minDuration") ?? "",
    maxDuration: q.get("maxDuration") ?? "",
    lookback: q.get("lookback") ?? (q.get("start") ? "custom" : DEFAULT_LOOKBACK),
    start: q.get("start") ? localInput(Date.parse(q.get("start")!)) : "",
    end: q.get("end") ? localInput(Date.parse(q.get("end")!)) : "",
    limit: q.get("limit") ?? String(DEFAULT_LIMIT),
    sort: sort in SORTS ? (sort as SortKey) : "newest",
    state: q.get("state") ?? "",
  };
}

function urlFromForm(f: Form, compare: string | null): string {
  const custom = f.lookback === "custom";
  const iso = (local: string) => (local ? new Date(local).toISOString() : undefined);
  return withQuery("/search", {
    service: f.service,
    operation: f.service ? f.operation : "",
    attr: parseAttrs(f.attrs),
    minDuration: f.minDuration.trim(),
    maxDuration: f.maxDuration.trim(),
    lookback: custom ? undefined : f.lookback === DEFAULT_LOOKBACK ? undefined : f.lookback,
    start: custom ? iso(f.start) : undefined,
    end: custom ? iso(f.end) : undefined,
    limit: f.limit === String(DEFAULT_LIMIT) ? undefined : f.limit,
    sort: f.sort === "newest" ? undefined : f.sort,
    state: f.state,
    compare,
  });
}

/** What to ask the API for; relative lookbacks are resolved against the clock now. */
function paramsFromQuery(q: URLSearchParams): SearchParams {
  const p: SearchParams = { attrs: q.getAll("attr").filter(Boolean) };
  const set = (key: "service" | "operation" | "minDuration" | "maxDuration", name: string) => {
    const v = q.get(name);
    if (v) p[key] = v;
  };
  set("service", "service");
  set("operation", "operation");
  set("minDuration", "minDuration");
  set("maxDuration", "maxDuration");
  const start = q.get("start");
  const end = q.get("end");
  if (start || end) {
    if (start) p.start = start;
    if (end) p.end = end;
  } else {
    const lookback = LOOKBACKS.find(([k]) => k === (q.get("lookback") ?? DEFAULT_LOOKBACK)) ?? LOOKBACKS[2]!;
    const now = nowNanos();
    p.end = String(now);
    p.start = String(now - BigInt(lookback[2]) * 1_000_000_000n);
  }
  const state = q.get("state");
  if (state && (LIFECYCLE_STATES as string[]).includes(state)) p.state = state as LifecycleState;
  const limit = Number(q.get("limit") ?? DEFAULT_LIMIT);
  p.limit = Number.isFinite(limit) && limit > 0 ? Math.floor(limit) : DEFAULT_LIMIT;
  return p;
}

type Results = { state: "loading" } | { state: "error"; message: string } | { state: "done"; traces: TraceSummary[] };

export function SearchPage(props: { query: URLSearchParams }) {
  const queryKey = props.query.toString();
  const [services, setServices] = useState<ServiceInfo[] | null>(null);
  const [servicesError, setServicesError] = useState<string | null>(null);
  const [results, setResults] = useState<Results>({ state: "loading" });
  // Re-running the same URL (the Find button) must search again: the clock has moved.
  const [generation, setGeneration] = useState(0);

  useEffect(() => {
    document.title = "Search · clew";
    const abort = new AbortController();
    fetchServices(abort.signal)
      .then(setServices)
      .catch((e: Error) => e.name !== "AbortError" && setServicesError(e.message));
    return () => abort.abort();
  }, []);

  useEffect(() => {
    const abort = new AbortController();
    setResults({ state: "loading" });
    searchTraces(paramsFromQuery(new URLSearchParams(queryKey)), abort.signal)
      .then((traces) => setResults({ state: "done", traces }))
      .catch((e: Error) => {
        if (e.name === "AbortError") return;
        setResults({ state: "error", message: e instanceof ApiError ? e.message : String(e) });
      });
    return () => abort.abort();
  }, [queryKey, generation]);

  const form = useMemo(() => formFromQuery(new URLSearchParams(queryKey)), [queryKey]);
  // A trace waiting for a second one to diff against (the trace page's "or search…").
  const compare = props.query.get("compare");
  const sort = form.sort;
  const sorted = useMemo(
    () => (results.state === "done" ? [...results.traces].sort(SORTS[sort][1]) : []),
    [results, sort],
  );

  return (
    <div class="search-page">
      <SearchForm
        key={queryKey}
        initial={form}
        services={services}
        servicesError={servicesError}
        onSubmit={(f) => {
          const url = urlFromForm(f, compare);
          if (url === location.pathname + location.search) setGeneration((g) => g + 1);
          else navigate(url);
        }}
      />
      <section class="results" aria-label="Search results">
        {results.state === "loading" && <p class="muted">Searching…</p>}
        {results.state === "error" && <p class="error-banner">Search failed: {results.message}</p>}
        {results.state === "done" && (
          <>
            <Scatter traces={results.traces} />
            {compare && (
              <p class="compare-note">
                Pick a trace to compare with <code>{compare}</code>: each result has a "diff" link.
              </p>
            )}
            <div class="results-head">
              <h2>
                {results.traces.length} {results.traces.length === 1 ? "trace" : "traces"}
              </h2>
              <label>
                Sort{" "}
                <select
                  value={sort}
                  onChange={(e) => {
                    const next = new URLSearchParams(queryKey);
                    const v = (e.target as HTMLSelectElement).value;
                    if (v === "newest") next.delete("sort");
                    else next.set("sort", v);
                    navigate(`/search?${next}`, true);
                  }}
                >
                  {Object.entries(SORTS).map(([k, [label]]) => (
                    <option value={k}>{label}</option>
                  ))}
                </select>
              </label>
            </div>
            {results.traces.length === 0 ? (
              <p class="muted">No traces match. Widen the time range or remove a filter.</p>
            ) : (
              <ResultList traces={sorted} compare={compare} />
            )}
          </>
        )}
      </section>
    </div>
  );
}

function SearchForm(props: {
  initial: Form;
  services: ServiceInfo[] | null;
  servicesError: string | null;
  onSubmit: (f: Form) => void;
}) {
  const [f, setF] = useState<Form>(props.initial);
  const set = <K extends keyof Form>(key: K, value: Form[K]) => setF((old) => ({ ...old, [key]: value }));
  const input = (key: keyof Form) => (e: Event) => set(key, (e.target as HTMLInputElement).value as never);
  const operations = useMemo(() => {
    const svc = props.services?.find((s) => s.name === f.service);
    return [...new Set(svc?.operations.map((o) => o.name) ?? [])].sort();
  }, [props.services, f.service]);
  const badDuration = (v: string) => v.trim() !== "" && parseDurationText(v) === null;
  const badAttrs = f.attrs.trim() !== "" && parseAttrs(f.attrs).length === 0;
  const invalid = badDuration(f.minDuration) || badDuration(f.maxDuration) || badAttrs;

  return (
    <form
      class="search-form"
      aria-label="Find traces"
      onSubmit={(e) => {
        e.preventDefault();
        if (!invalid) props.onSubmit(f);
      }}
    >
      <h2>Find traces</h2>
      <label>
        Service
        <select name="service" value={f.service} onChange={(e) => setF({ ...f, service: (e.target as HTMLSelectElement).value, operation: "" })}>
          <option value="">All services</option>
          {(props.services ?? []).map((s) => (
            <option value={s.name}>{s.name}</option>
          ))}
          {f.service && !props.services?.some((s) => s.name === f.service) && <option value={f.service}>{f.service}</option>}
        </select>
      </label>
      {props.servicesError && <p class="error-banner small">Services: {props.servicesError}</p>}
      <label>
        Operation
        <select name="operation" value={f.operation} disabled={!f.service} onChange={input("operation")}>
          <option value="">All operations</option>
          {operations.map((o) => (
            <option value={o}>{o}</option>
          ))}
          {f.operation && !operations.includes(f.operation) && <option value={f.operation}>{f.operation}</option>}
        </select>
      </label>
      <label>
        Attributes
        <input
          name="attrs"
          placeholder='error=true target=orlan'
          value={f.attrs}
          onInput={input("attrs")}
          class={badAttrs ? "invalid" : ""}
          spellcheck={false}
        />
        <span class="hint">key=value, space-separated; quote values with spaces</span>
      </label>
      <div class="row2">
        <label>
          Min duration
          <input name="minDuration" placeholder="e.g. 10ms" value={f.minDuration} onInput={input("minDuration")} class={badDuration(f.minDuration) ? "invalid" : ""} />
        </label>
        <label>
          Max duration
          <input name="maxDuration" placeholder="e.g. 1.5s" value={f.maxDuration} onInput={input("maxDuration")} class={badDuration(f.maxDuration) ? "invalid" : ""} />
        </label>
      </div>
      <label>
        Time range
        <select
          name="lookback"
          value={f.lookback}
          onChange={(e) => {
            const v = (e.target as HTMLSelectElement).value;
            if (v === "custom" && !f.start) {
              const now = Date.now();
              setF({ ...f, lookback: v, start: localInput(now - 3600_000), end: localInput(now) });
            } else set("lookback", v);
          }}
        >
          {LOOKBACKS.map(([k, label]) => (
            <option value={k}>{label}</option>
          ))}
          <option value="custom">Custom range…</option>
        </select>
      </label>
      {f.lookback === "custom" && (
        <div class="row2">
          <label>
            From
            <input type="datetime-local" name="start" value={f.start} onInput={input("start")} />
          </label>
          <label>
            To
            <input type="datetime-local" name="end" value={f.end} onInput={input("end")} />
          </label>
        </div>
      )}
      <label>
        Lifecycle
        <select name="state" value={f.state} onChange={input("state")}>
          <option value="">Any state</option>
          {LIFECYCLE_STATES.map((s) => (
            <option value={s}>{STATE_LABELS[s]}</option>
          ))}
        </select>
        <span class="hint">the registry's view: orphaned = abandoned by a crashed worker</span>
      </label>
      <label>
        Limit
        <input name="limit" type="number" min="1" max="1000" value={f.limit} onInput={input("limit")} />
      </label>
      <button type="submit" class="primary" disabled={invalid}>
        Find traces
      </button>
    </form>
  );
}

function ResultList(props: { traces: TraceSummary[]; compare: string | null }) {
  const longest = Math.max(1, ...props.traces.map((t) => t.durationNanos));
  const now = Date.now();
  return (
    <ol class="result-list">
      {props.traces.map((t) => (
        <li class="result" data-trace-id={t.traceId}>
          <Link href={`/trace/${t.traceId}`} class="result-head">
            <span class="swatch" style={{ background: serviceColor(t.rootService) }} />
            <span class="result-title">
              {t.rootService}: {t.rootOperation}
            </span>
            <LifecycleBadge lifecycle={t.lifecycle} />
            <span class="trace-id">{t.traceId}</span>
            <span class="result-duration">{formatDuration(t.durationNanos)}</span>
          </Link>
          <div class="result-bar">
            <div style={{ width: `${Math.max(0.5, (t.durationNanos / longest) * 100)}%`, background: serviceColor(t.rootService) }} />
          </div>
          <div class="result-meta">
            <span>
              {t.spanCount} {t.spanCount === 1 ? "span" : "spans"}
            </span>
            {t.errorCount > 0 ? (
              <span class="errors">
                {t.errorCount} {t.errorCount === 1 ? "error" : "errors"}
              </span>
            ) : (
              <span class="muted">no errors</span>
            )}
            {t.orphanCount > 0 && <span class="warn">{t.orphanCount} orphaned</span>}
            {props.compare && props.compare !== t.traceId && (
              <Link href={`/diff/${props.compare}/${t.traceId}`} class="diff-link">
                diff with {props.compare.slice(0, 8)}…
              </Link>
            )}
            <span title={new Date(t.startMillis).toISOString()}>
              {formatLocalTime(t.startMillis, now)} · {formatAgo(t.startMillis, now)}
            </span>
          </div>
          <div class="chips">
            {t.services.map((s) => (
              <span class="chip" style={{ borderColor: serviceColor(s.name) }} title={`${s.spans} spans in ${s.name}`}>
                <span class="swatch" style={{ background: serviceColor(s.name) }} />
                {s.name} <span class="muted">{s.spans}</span>
              </span>
            ))}
          </div>
        </li>
      ))}
    </ol>
  );
}

/** Duration over time, one dot per trace (sized by span count); a click opens the trace. */
function Scatter(props: { traces: TraceSummary[] }) {
  const W = 1000;
  const H = 170;
  const pad = { l: 64, r: 16, t: 12, b: 26 };
  if (props.traces.length === 0) return null;
  const xs = props.traces.map((t) => t.startMillis);
  let x0 = Math.min(...xs);
  let x1 = Math.max(...xs);
  if (x1 - x0 < 1000) {
    x0 -= 500;
    x1 += 500;
  }
  const yMax = Math.max(...props.traces.map((t) => t.durationNanos)) * 1.1 || 1;
  const x = (ms: number) => pad.l + ((ms - x0) / (x1 - x0)) * (W - pad.l - pad.r);
  const y = (ns: number) => H - pad.b - (ns / yMax) * (H - pad.t - pad.b);
  const ticks = [0, 0.25, 0.5, 0.75, 1];
  return (
    <figure class="scatter" aria-label="Trace durations over time">
      <svg viewBox={`0 0 ${W} ${H}`} role="img">
        {ticks.map((f) => (
          <g>
            <line x1={pad.l} x2={W - pad.r} y1={y(yMax * f)} y2={y(yMax * f)} class="grid" />
            <text x={pad.l - 6} y={y(yMax * f) + 4} text-anchor="end" class="axis">
              {formatDuration(yMax * f)}
            </text>
          </g>
        ))}
        {ticks.map((f) => (
          <text x={x(x0 + (x1 - x0) * f)} y={H - 8} text-anchor={f === 0 ? "start" : f === 1 ? "end" : "middle"} class="axis">
            {new Date(x0 + (x1 - x0) * f).toLocaleTimeString(undefined, { hour12: false })}
          </text>
        ))}
        {props.traces.map((t) => (
          <circle
            class="dot"
            data-trace-id={t.traceId}
            cx={x(t.startMillis)}
            cy={y(t.durationNanos)}
            r={4 + Math.min(8, Math.log10(t.spanCount + 1) * 2)}
            fill={serviceColor(t.rootService)}
            stroke={t.errorCount > 0 ? ERROR_COLOR : "white"}
            stroke-width={t.errorCount > 0 ? 2.5 : 1}
            onClick={() => navigate(`/trace/${t.traceId}`)}
          >
            <title>
              {t.rootService}: {t.rootOperation} · {formatDuration(t.durationNanos)} · {t.spanCount} spans
              {t.errorCount > 0 ? ` · ${t.errorCount} errors` : ""}
            </title>
          </circle>
        ))}
      </svg>
    </figure>
  );
}
