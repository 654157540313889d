// One trace: a header that summarises it, a toolbar, and either the timeline or the
// text tree. The URL carries the selected span (`span`), the view (`view=text`) and the
// switches (`skew=off`, `cp=off`), so whatever someone is looking at can be sent on.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { ApiError, fetchTrace } from "../api";
import { serviceColor, textColor } from "../colors";
import { LifecycleBadge, lifecycleTitle } from "../components/lifecycle";
import { SpanDetail } from "../components/spanDetail";
import { type ScrollRequest, VirtualList } from "../components/virtualList";
import { Waterfall } from "../components/waterfall";
import { formatDuration, formatLocalTime } from "../format";
import type { Trace } from "../model";
import { unixMillis } from "../model";
import { Link, navigate } from "../router";
import { renderTextTree, skewSummary } from "../textTree";
import { type SkewMode, buildTree, collapsedAncestors, visibleRows } from "../tree";

type Loaded = { state: "loading" } | { state: "error"; status: number; message: string } | { state: "done"; trace: Trace };

function setParam(name: string, value: string | null) {
  const q = new URLSearchParams(location.search);
  if (value === null) q.delete(name);
  else q.set(name, value);
  const s = q.toString();
  navigate(`${location.pathname}${s ? `?${s}` : ""}`, true);
}

export function TracePage(props: { traceId: string; query: URLSearchParams }) {
  const [loaded, setLoaded] = useState<Loaded>({ state: "loading" });
  useEffect(() => {
    document.title = `Trace ${props.traceId.slice(0, 12)} · clew`;
    const abort = new AbortController();
    fetchTrace(props.traceId, abort.signal)
      .then((trace) => setLoaded({ state: "done", trace }))
      .catch((e: Error) => {
        if (e.name === "AbortError") return;
        setLoaded({ state: "error", status: e instanceof ApiError ? e.status : 0, message: e.message });
      });
    return () => abort.abort();
  }, [props.traceId]);

  if (loaded.state === "loading") return <p class="muted pad">Loading trace {props.traceId}…</p>;
  if (loaded.state === "error") {
    return (
      <div class="notice">
        <h2>{loaded.status === 404 ? "Trace not found" : "Could not load the trace"}</h2>
        <p class="error-banner">{loaded.message}</p>
        <p>
          <Link href="/search">Back to search</Link>
        </p>
      </div>
    );
  }
  return <TraceView trace={loaded.trace} query={props.query} />;
}

function TraceView(props: { trace: Trace; query: URLSearchParams }) {
  const { trace, query } = props;
  const skew: SkewMode = query.get("skew") === "off" ? "off" : "adjust";
  const view = query.get("view") === "text" ? "text" : "timeline";
  const showCritical = query.get("cp") !== "off";
  const tree = useMemo(() => buildTree(trace.spans, skew), [trace, skew]);
  const [collapsed, setCollapsed] = useState<ReadonlySet<number>>(() => new Set());
  const rows = useMemo(() => visibleRows(tree, collapsed), [tree, collapsed]);
  const spanParam = query.get("span");
  const selected = spanParam ? (tree.bySpanId.get(spanParam.toLowerCase()) ?? -1) : -1;
  const [scrollTo, setScrollTo] = useState<ScrollRequest | null>(null);
  const revealed = useRef(-1);

  // A newly selected span (a deep link, a link in the detail panel) is revealed once:
  // its collapsed ancestors open and the list scrolls to it. Later collapsing elsewhere
  // must not yank the view back to it.
  useEffect(() => {
    if (selected < 0 || revealed.current === selected) return;
    const closed = collapsedAncestors(tree, selected, collapsed);
    if (closed.length > 0) {
      const next = new Set(collapsed);
      for (const c of closed) next.delete(c);
      setCollapsed(next);
      return;
    }
    revealed.current = selected;
    const index = rows.indexOf(selected);
    setScrollTo((old) => ({ index, seq: (old?.seq ?? 0) + 1 }));
  }, [selected, rows]);

  const select = (node: number) => {
    const span = tree.nodes[node]!.span;
    if (span) setParam("span", span.spanId);
  };
  const toggle = (node: number) =>
    setCollapsed((old) => {
      const next = new Set(old);
      if (next.has(node)) next.delete(node);
      else next.add(node);
      return next;
    });
  // Keys, as in a file tree: ↑/↓ (or k/j) move the selection through the visible rows,
  // ← closes the selected span (or goes to its parent), → opens it, Esc deselects.
  // Read through a ref: effects (and so a re-registered listener) run a frame after a
  // render, and a second key press can come sooner than that.
  const latest = useRef({ tree, rows, selected, collapsed });
  latest.current = { tree, rows, selected, collapsed };
  useEffect(() => {
    if (view !== "timeline") return;
    const onKey = (e: KeyboardEvent) => {
      const target = e.target as HTMLElement | null;
      if (e.altKey || e.ctrlKey || e.metaKey || target?.closest("input, select, textarea")) return;
      const { tree, rows, selected, collapsed } = latest.current;
      const at = selected >= 0 ? rows.indexOf(selected) : -1;
      const node = selected >= 0 ? tree.nodes[selected]! : null;
      let handled = true;
      // Placeholders for missing spans have no id to put in the URL: step over them.
      const step = (dir: number) => {
        for (let i = at + dir; i >= 0 && i < rows.length; i += dir) {
          if (tree.nodes[rows[i]!]!.span) return select(rows[i]!);
        }
      };
      if (e.key === "ArrowDown" || e.key === "j") {
        step(1);
      } else if (e.key === "ArrowUp" || e.key === "k") {
        step(-1);
      } else if (e.key === "ArrowLeft" && node) {
        if (node.children.length > 0 && !collapsed.has(selected)) toggle(selected);
        else if (node.parent >= 0 && tree.nodes[node.parent]!.span) select(node.parent);
      } else if (e.key === "ArrowRight" && node) {
        if (collapsed.has(selected)) toggle(selected);
      } else if (e.key === "Escape" && selected >= 0) {
        setParam("span", null);
      } else {
        handled = false;
      }
      if (handled) e.preventDefault();
    };
    window.addEventListener("keydown", onKey);
    return () => window.removeEventListener("keydown", onKey);
  }, [view]);

  const collapseAll = () => setCollapsed(new Set(tree.nodes.filter((n) => n.children.length > 0).map((n) => n.index)));

  const root = tree.roots.length > 0 ? tree.nodes[tree.roots[0]!]!.span : null;
  const summary = skewSummary(tree);
  const missingSpan = spanParam !== null && selected < 0;

  return (
    <div class={`trace-page${selected >= 0 ? " with-detail" : ""}`}>
      <section class="trace-head" aria-label="Trace summary">
        <h1>
          {root ? (
            <>
              <span style={{ color: textColor(serviceColor(root.service)) }}>{root.service}</span>: {root.name}
            </>
          ) : (
            "Trace without a root span"
          )}
          <LifecycleBadge lifecycle={trace.lifecycle} />
          <span class="trace-id mono">{trace.traceId}</span>
        </h1>
        <div class="trace-facts">
          <span>Started {formatLocalTime(unixMillis(trace, tree.start))}</span>
          <span>Duration {formatDuration(tree.end - tree.start)}</span>
          <span>
            {tree.spans.length} {tree.spans.length === 1 ? "span" : "spans"}
          </span>
          <span>Depth {tree.depth}</span>
          <span class={tree.errorCount > 0 ? "errors" : "muted"}>
            {tree.errorCount} {tree.errorCount === 1 ? "error" : "errors"}
          </span>
          {tree.orphanCount > 0 && (
            <span class="warn" title={`Parents never received: ${tree.missingIds.join(", ")}`}>
              {tree.orphanCount} orphaned under {tree.missingIds.length} missing {tree.missingIds.length === 1 ? "parent" : "parents"}
            </span>
          )}
        </div>
        <div class="chips">
          {tree.services.map((s) => (
            <span class="chip" style={{ borderColor: serviceColor(s) }}>
              <span class="swatch" style={{ background: serviceColor(s) }} />
              {s}
            </span>
          ))}
        </div>
        {trace.lifecycle?.error && (
          <p class="lc-reason small" title={lifecycleTitle(trace.lifecycle)}>
            Lifecycle: {trace.lifecycle.error}
          </p>
        )}
        {tree.warnings.map((w) => (
          <p class="warn small">Warning: {w}</p>
        ))}
        {missingSpan && <p class="warn small">This trace has no span {spanParam}.</p>}
      </section>

      <div class="toolbar" role="toolbar" aria-label="Trace view options">
        <div class="tabs" role="tablist">
          <button type="button" role="tab" aria-selected={view === "timeline"} onClick={() => setParam("view", null)}>
            Timeline
          </button>
          <button type="button" role="tab" aria-selected={view === "text"} onClick={() => setParam("view", "text")}>
            Text tree
          </button>
        </div>
        {view === "timeline" && (
          <>
            <button type="button" onClick={() => setCollapsed(new Set())}>
              Expand all
            </button>
            <button type="button" onClick={collapseAll}>
              Collapse all
            </button>
            <label class="switch">
              <input type="checkbox" name="critical" checked={showCritical} onChange={() => setParam("cp", showCritical ? "off" : null)} />
              Critical path
            </label>
          </>
        )}
        <label class="switch" title="Shift spans whose service's clock visibly disagrees with its caller's">
          <input type="checkbox" name="skew" checked={skew === "adjust"} onChange={() => setParam("skew", skew === "adjust" ? "off" : null)} />
          Clock-skew adjustment
        </label>
        <span class="skew-summary" data-skew={skew} data-adjusted={summary === "" ? "no" : "yes"}>
          {skew === "off" ? "times as recorded" : summary === "" ? "no clock skew detected" : `adjusted: ${summary}`}
        </span>
        <span class="toolbar-extras">
          <Link href={`/trace/${trace.traceId}/replay`} class="button" title="Step through the trace's causal timeline">
            Replay
          </Link>
          <CompareWith traceId={trace.traceId} />
        </span>
      </div>

      <div class="trace-body">
        {view === "timeline" ? (
          <Waterfall
            tree={tree}
            rows={rows}
            collapsed={collapsed}
            selected={selected}
            showCritical={showCritical}
            scrollTo={scrollTo}
            onToggle={toggle}
            onSelect={select}
          />
        ) : (
          <TextTree trace={trace} tree={tree} />
        )}
        {selected >= 0 && view === "timeline" && (
          <SpanDetail trace={trace} tree={tree} node={selected} onSelect={select} onClose={() => setParam("span", null)} />
        )}
      </div>
    </div>
  );
}

/** A second trace for the diff: typed or pasted here, or picked from a search that
 *  remembers this one (`/search?compare=…`). */
function CompareWith(props: { traceId: string }) {
  const [other, setOther] = useState("");
  return (
    <form
      class="compare"
      onSubmit={(e) => {
        e.preventDefault();
        const id = other.trim().replace(/-/g, "").toLowerCase();
        if (id) navigate(`/diff/${props.traceId}/${encodeURIComponent(id)}`);
      }}
    >
      <input
        name="compare"
        aria-label="Compare with trace id"
        placeholder="Compare with trace id…"
        value={other}
        onInput={(e) => setOther((e.target as HTMLInputElement).value)}
        spellcheck={false}
      />
      <Link href={`/search?compare=${props.traceId}`} title="Pick the other trace from a search">
        or search…
      </Link>
    </form>
  );
}

const LINE_HEIGHT = 18;

function TextTree(props: { trace: Trace; tree: ReturnType<typeof buildTree> }) {
  const lines = useMemo(() => renderTextTree(props.trace, props.tree), [props.trace, props.tree]);
  const [copied, setCopied] = useState(false);
  const text = useMemo(() => `${lines.join("\n")}\n`, [lines]);
  const [download, setDownload] = useState<string | null>(null);
  useEffect(() => {
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
    setDownload(url);
    return () => URL.revokeObjectURL(url);
  }, [text]);
  return (
    <div class="text-tree">
      <div class="text-tools">
        <span class="muted">
          As <code>clew trace show {props.trace.traceId}</code> prints it · {lines.length} lines
        </span>
        <button
          type="button"
          onClick={() => {
            void navigator.clipboard?.writeText(text).then(() => setCopied(true));
          }}
        >
          {copied ? "Copied" : "Copy"}
        </button>
        {download && (
          <a class="button" href={download} download={`trace-${props.trace.traceId}.txt`}>
            Download .txt
          </a>
        )}
      </div>
      <VirtualList
        class="text-lines"
        label="Trace as text"
        count={lines.length}
        rowHeight={LINE_HEIGHT}
        renderRow={(i, top) => (
          <pre key={i} class="text-line" style={{ top: `${top}px` }} data-line={i}>
            {lines[i]}
          </pre>
        )}
      />
    </div>
  );
}
