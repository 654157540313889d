// The trace as `clew trace show` prints it (crates/clew-cli/src/render.rs, without
// colours), line for line, so the "Text" tab can be pasted into an incident channel
// and read exactly like the terminal output. The e2e test compares the two.

import { formatDuration, formatIsoMillis, formatSignedDuration } from "./format";
import { DESTINATION_KEYS, KIND_LABEL, type KeyValue, type Trace, attrText, destination, unixMillis } from "./model";
import type { TraceTree } from "./tree";

const RULE_WIDTH = 79;
const MAX_DRAWN_DEPTH = 40;
const MAX_ATTR_VALUE_LEN = 120;

/** Escapes control characters: a newline would break the tree apart. */
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  if (!/[\u0000-\u001f\u007f-\u009f]/.test(s)) return s;
  let out = "";
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === "\n") out += "\\n";
    else if (ch === "\r") out += "\\r";
    else if (ch === "\t") out += "\\t";
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return out;
}

function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function attribute(kv: KeyValue): string {
  const value = attrText(kv.value);
  const chars = Array.from(value);
  const shown = chars.length > MAX_ATTR_VALUE_LEN ? `${clean(chars.slice(0, MAX_ATTR_VALUE_LEN).join(""))}…` : clean(value);
  return `${clean(kv.key)}: ${shown}`;
}

type Item = { node: number } | { node: number; event: number; ordinal: number };

/** The rendering as lines (no trailing newline on each). */
export function renderTextTree(trace: Trace, tree: TraceTree): string[] {
  const lines: string[] = [];
  if (tree.spans.length === 0) return ["Trace has no spans."];
  const { nodes } = tree;
  const labels = new Int32Array(nodes.length);
  let next = 1;
  for (const id of tree.order) if (nodes[id]!.span) labels[id] = next++;
  const label = (id: number) => (labels[id]! > 0 ? `[${labels[id]}]` : "[?]");
  const offset = (t: number) => formatSignedDuration(t - tree.start);
  const services = tree.services.map(clean).join(", ");
  const traceId = tree.spans[0]!.traceId;

  const rule = "═".repeat(RULE_WIDTH);
  lines.push(rule, `TRACE ${traceId}`);
  const rootSpans = tree.roots.filter((r) => nodes[r]!.span);
  if (rootSpans.length === 1 && tree.roots.length === 1) {
    const root = nodes[rootSpans[0]!]!.span!;
    lines.push(`Root: ${clean(root.service)}: ${clean(root.name)}`);
  } else {
    lines.push(
      `Roots: ${tree.roots.length} (${count(rootSpans.length, "span without a parent", "spans without a parent")}, ${count(
        tree.roots.length - rootSpans.length,
        "missing parent",
        "missing parents",
      )})`,
    );
  }
  lines.push(`Services: ${tree.services.length} (${services})`);
  lines.push(
    `Spans: ${tree.spans.length} · Start: ${formatIsoMillis(unixMillis(trace, tree.start))} · Duration: ${formatDuration(
      tree.end - tree.start,
    )}`,
  );
  lines.push(rule);

  const subItems = (id: number): Item[] => {
    const node = nodes[id]!;
    const events = (node.span?.events ?? [])
      .map((e, i) => [e.time + node.shift, i] as const)
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const items: Item[] = [];
    let c = 0;
    let e = 0;
    while (c < node.children.length || e < events.length) {
      const takeEvent = e < events.length && (c === node.children.length || events[e]![0] <= nodes[node.children[c]!]!.start);
      if (takeEvent) {
        items.push({ node: id, event: events[e]![1], ordinal: e + 1 });
        e++;
      } else {
        items.push({ node: node.children[c++]! });
      }
    }
    return items;
  };

  const parentName = (parent: number, childService: string): string => {
    const p = nodes[parent]!;
    if (!p.span) return `${label(parent)} missing span ${p.missingId} (not received)`;
    if (p.span.service === childService) return `${label(parent)} ${clean(p.span.name)}`;
    const remote = ["Client", "Server", "Producer", "Consumer"].includes(p.span.kind);
    return `${label(parent)} ${clean(p.span.service)} ${remote ? KIND_LABEL[p.span.kind] : clean(p.span.name)}`;
  };

  const nodeLine = (id: number): string => {
    const node = nodes[id]!;
    const span = node.span;
    if (!span) return `[?] missing span ${node.missingId} (not received)`;
    let line = `${label(id)} ${clean(span.service)}: ${clean(span.name)} (${KIND_LABEL[span.kind]})  ${offset(node.start)} ${formatDuration(
      node.end - node.start,
    )}`;
    if (node.parent < 0) line += "  ROOT";
    if (node.parallel) line += "  [PARALLEL]";
    if (span.status.code === "Error") line += span.status.message ? `  ✗ ERROR: ${clean(span.status.message)}` : "  ✗ ERROR";
    else if (span.status.code === "Ok") line += "  ✓";
    return line;
  };

  const nodeDetails = (id: number): string[] => {
    const node = nodes[id]!;
    const span = node.span;
    if (!span) return [];
    const out: string[] = [];
    if (node.parent >= 0) out.push(`parent: ${parentName(node.parent, span.service)}`);
    else if (span.parentId !== null) out.push(`parent: ${span.parentId} (ignored: parent ids form a cycle)`);
    const direction = span.kind === "Producer" ? "Publishes to" : span.kind === "Consumer" ? "Receives from" : undefined;
    const dest = destination(span);
    const shownDestination = direction !== undefined && dest !== undefined;
    if (shownDestination) out.push(`${direction}: ${clean(dest)}`);
    if (node.skew !== 0) out.push(`clock skew adjusted ${formatSignedDuration(node.skew)}`);
    for (const kv of span.attributes) {
      if (shownDestination && (DESTINATION_KEYS as readonly string[]).includes(kv.key)) continue;
      out.push(attribute(kv));
    }
    for (const link of span.links) {
      const linked = tree.bySpanId.get(link.spanId);
      let target: string;
      if (linked !== undefined && link.traceId === traceId) {
        const ls = nodes[linked]!.span!;
        target = `${label(linked)} ${clean(ls.service)}: ${clean(ls.name)}`;
      } else {
        target = `trace ${link.traceId} span ${link.spanId}`;
      }
      let line = `link → ${target}`;
      if (link.attributes.length > 0) line += ` (${link.attributes.map(attribute).join(", ")})`;
      out.push(line);
    }
    return out;
  };

  // Pre-order over spans and events; `open[k]` says whether column k carries a `│`.
  const stack: [Item, number, boolean][] = [];
  for (let k = tree.roots.length - 1; k >= 0; k--) stack.push([{ node: tree.roots[k]! }, 0, k + 1 === tree.roots.length]);
  const open: boolean[] = [];
  let first = true;
  while (stack.length > 0) {
    const [item, depth, last] = stack.pop()!;
    if (depth === 0 && !first) lines.push("");
    first = false;
    open.length = Math.min(open.length, depth);
    open.push(!last);
    const drawn = Math.min(depth, MAX_DRAWN_DEPTH);
    const bars = open
      .slice(Math.min(1, drawn), drawn)
      .map((o) => (o ? "│  " : "   "))
      .join("");
    const connector = depth === 0 ? "" : last ? "└─ " : "├─ ";
    const continuation = depth === 0 ? "" : last ? "   " : "│  ";
    const isEvent = "event" in item;
    const subs = isEvent ? [] : subItems(item.node);
    const detailPrefix = `${bars}${continuation}${subs.length === 0 ? "  " : "│ "}`;
    let line: string;
    let details: string[];
    if ("event" in item) {
      const node = nodes[item.node]!;
      const span = node.span!;
      const event = span.events[item.event]!;
      const l = labels[item.node]! > 0 ? `[${labels[item.node]}.${item.ordinal}]` : `[?.${item.ordinal}]`;
      line = `${l} ${clean(span.service)}: ${clean(event.name)} (event)  ${offset(event.time + node.shift)}`;
      details = event.attributes.map(attribute);
    } else {
      line = nodeLine(item.node);
      details = nodeDetails(item.node);
    }
    if (depth > MAX_DRAWN_DEPTH) line += `  (depth ${depth})`;
    lines.push(`${bars}${connector}${line}`);
    for (const d of details) lines.push(`${detailPrefix}${d}`);
    for (let k = subs.length - 1; k >= 0; k--) stack.push([subs[k]!, depth + 1, k + 1 === subs.length]);
  }

  lines.push("─".repeat(RULE_WIDTH));
  lines.push(
    `Total spans: ${tree.spans.length} · Services: ${tree.services.length} (${services}) · Errors: ${tree.errorCount} · Orphans: ${tree.orphanCount}`,
  );
  if (tree.missingIds.length > 0) {
    lines.push(`Missing spans: ${tree.missingIds.length} (${tree.missingIds.join(", ")}); their children are shown under [?]`);
  }
  if (tree.skewMode === "off") {
    lines.push("Clock skew adjustment: off (times as recorded)");
  } else {
    const summary = skewSummary(tree);
    lines.push(summary === "" ? "Clock skew: none detected" : `Clock skew adjusted: ${summary}`);
  }
  for (const w of tree.warnings) lines.push(`Warning: ${clean(w)}`);
  return lines;
}

/** `ares +3.2ms`, or the range and count when a service's spans moved by different amounts. */
export function skewSummary(tree: TraceTree): string {
  const per: { service: string; min: number; max: number; count: number }[] = [];
  for (const a of tree.adjustments) {
    const e = per.find((p) => p.service === a.service);
    if (e) {
      e.min = Math.min(e.min, a.delta);
      e.max = Math.max(e.max, a.delta);
      e.count++;
    } else {
      per.push({ service: a.service, min: a.delta, max: a.delta, count: 1 });
    }
  }
  return per
    .map(({ service, min, max, count: c }) => {
      const amount = min === max ? formatSignedDuration(min) : `${formatSignedDuration(min)}…${formatSignedDuration(max)}`;
      return `${clean(service)} ${amount}${c > 1 ? ` (${c} spans)` : ""}`;
    })
    .join(", ");
}
