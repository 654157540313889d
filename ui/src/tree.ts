// The trace tree, following clew-model's rules (crates/clew-model/src/tree.rs) so the
// browser and `clew trace show` agree: the last copy of a duplicated span wins, spans
// whose parent never arrived hang under a placeholder, parent cycles are cut at their
// earliest span, and clock skew is corrected in a view (per-node adjusted times) that
// can be switched off. On top of that the UI needs what a reader of the timeline asks
// for: the critical path, fan-outs, and a pre-order with subtree sizes so that a
// collapsed 50,000-span tree is laid out in time proportional to what is visible.
//
// Every walk is iterative: a 50,000-deep parent chain is legal input.

import { type Span, destination, isError } from "./model";

export type SkewMode = "adjust" | "off";

export interface TreeNode {
  /** Index in `TraceTree.nodes`; spans come first (node i is span i), placeholders after. */
  readonly index: number;
  readonly span: Span | null;
  /** For a placeholder: the parent id that spans name but that never arrived. */
  readonly missingId: string | null;
  parent: number;
  children: number[];
  depth: number;
  /** The shift this node's own clock correction introduced (0 when it inherited one). */
  skew: number;
  /** The whole shift applied to the recorded times. */
  shift: number;
  /** Adjusted times, nanoseconds after the trace's base. */
  start: number;
  end: number;
  parallel: boolean;
  /** Position in `TraceTree.order`. */
  pos: number;
}

export interface SkewAdjustment {
  node: number;
  service: string;
  delta: number;
}

export interface FanOut {
  consumers: number[];
  /** The channel the message went through (the producer's, else the first consumer's). */
  channel: string | undefined;
  services: string[];
}

export interface TraceTree {
  readonly spans: Span[];
  readonly nodes: TreeNode[];
  readonly roots: number[];
  readonly skewMode: SkewMode;
  readonly warnings: string[];
  readonly orphanCount: number;
  readonly missingIds: string[];
  /** Distinct services in reading (pre-order) order. */
  readonly services: string[];
  readonly start: number;
  readonly end: number;
  readonly depth: number;
  readonly errorCount: number;
  /** Node indices in pre-order. */
  readonly order: Int32Array;
  /** Node count of the subtree at each pre-order position (itself included). */
  readonly subtreeSize: Int32Array;
  readonly bySpanId: Map<string, number>;
  /** Critical path: per node, the [start, end] stretches on it (empty: not on it). */
  readonly critical: ([number, number][] | undefined)[];
  readonly fanOuts: Map<number, FanOut>;
  readonly adjustments: SkewAdjustment[];
}

export function buildTree(input: readonly Span[], skewMode: SkewMode): TraceTree {
  const warnings: string[] = [];
  const spans = dropDuplicates(input, warnings);
  const n = spans.length;
  const byIndex = new Map<string, number>();
  spans.forEach((s, i) => byIndex.set(s.spanId, i));

  const parent = new Int32Array(n).fill(-1);
  const missingIds: string[] = [];
  const placeholderOf = new Map<string, number>();
  let orphanCount = 0;
  for (let i = 0; i < n; i++) {
    const pid = spans[i]!.parentId;
    if (pid === null) continue;
    const p = byIndex.get(pid);
    if (p !== undefined) {
      parent[i] = p;
      continue;
    }
    orphanCount++;
    let ph = placeholderOf.get(pid);
    if (ph === undefined) {
      ph = n + missingIds.length;
      missingIds.push(pid);
      placeholderOf.set(pid, ph);
    }
    parent[i] = ph;
  }
  breakCycles(spans, parent, warnings);

  const nodes: TreeNode[] = [];
  for (let i = 0; i < n + missingIds.length; i++) {
    nodes.push({
      index: i,
      span: i < n ? spans[i]! : null,
      missingId: i < n ? null : missingIds[i - n]!,
      parent: -1,
      children: [],
      depth: 0,
      skew: 0,
      shift: 0,
      start: 0,
      end: 0,
      parallel: false,
      pos: 0,
    });
  }
  const roots: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = parent[i]!;
    if (p >= 0) {
      nodes[i]!.parent = p;
      nodes[p]!.children.push(i);
    } else {
      roots.push(i);
    }
  }
  for (let i = n; i < nodes.length; i++) roots.push(i);

  adjustTimes(nodes, roots, skewMode);
  const key = (a: number, b: number) => {
    const na = nodes[a]!;
    const nb = nodes[b]!;
    if (na.start !== nb.start) return na.start - nb.start;
    const ia = na.span?.spanId ?? na.missingId!;
    const ib = nb.span?.spanId ?? nb.missingId!;
    return ia < ib ? -1 : ia > ib ? 1 : 0;
  };
  for (const node of nodes) if (node.children.length > 1) node.children.sort(key);
  roots.sort(key);
  markParallel(nodes, roots);
  for (const node of nodes) markParallel(nodes, node.children);

  // Pre-order with depths and subtree sizes.
  const order = new Int32Array(nodes.length);
  const subtreeSize = new Int32Array(nodes.length);
  const services: string[] = [];
  const seen = new Set<string>();
  let depth = 0;
  let k = 0;
  const stack: number[] = [];
  for (let r = roots.length - 1; r >= 0; r--) stack.push(roots[r]!);
  while (stack.length > 0) {
    const id = stack.pop()!;
    const node = nodes[id]!;
    node.depth = node.parent >= 0 ? nodes[node.parent]!.depth + 1 : 0;
    depth = Math.max(depth, node.depth + 1);
    node.pos = k;
    order[k++] = id;
    if (node.span && !seen.has(node.span.service)) {
      seen.add(node.span.service);
      services.push(node.span.service);
    }
    for (let c = node.children.length - 1; c >= 0; c--) stack.push(node.children[c]!);
  }
  // A node's subtree ends where the next node at its depth or shallower begins; walking
  // backwards, each node's size is 1 plus its children's.
  for (let p = order.length - 1; p >= 0; p--) {
    const node = nodes[order[p]!]!;
    let size = 1;
    for (const c of node.children) size += subtreeSize[nodes[c]!.pos]!;
    subtreeSize[p] = size;
  }

  let start = Infinity;
  let end = -Infinity;
  let errorCount = 0;
  for (let i = 0; i < n; i++) {
    start = Math.min(start, nodes[i]!.start);
    end = Math.max(end, nodes[i]!.end);
    if (isError(spans[i]!)) errorCount++;
  }
  if (n === 0) start = end = 0;

  const adjustments: SkewAdjustment[] = [];
  for (const id of order) {
    const node = nodes[id]!;
    if (node.span && node.skew !== 0) adjustments.push({ node: id, service: node.span.service, delta: node.skew });
  }

  const bySpanId = new Map<string, number>();
  byIndex.forEach((i, id) => bySpanId.set(id, i));

  return {
    spans,
    nodes,
    roots,
    skewMode,
    warnings,
    orphanCount,
    missingIds: roots.filter((r) => r >= n).map((r) => nodes[r]!.missingId!),
    services,
    start,
    end,
    depth,
    errorCount,
    order,
    subtreeSize,
    bySpanId,
    critical: criticalPath(nodes, roots),
    fanOuts: fanOuts(nodes),
    adjustments,
  };
}

function dropDuplicates(spans: readonly Span[], warnings: string[]): Span[] {
  const last = new Map<string, number>();
  const dropped = new Map<string, number>();
  spans.forEach((s, i) => {
    if (last.has(s.spanId)) dropped.set(s.spanId, (dropped.get(s.spanId) ?? 0) + 1);
    last.set(s.spanId, i);
  });
  if (dropped.size === 0) return [...spans];
  for (const [id, copies] of [...dropped].sort(([a], [b]) => (a < b ? -1 : 1))) {
    warnings.push(`span ${id} was received ${copies + 1} times; kept the last copy`);
  }
  return spans.filter((s, i) => last.get(s.spanId) === i);
}

/** Cuts every loop of parent pointers at its earliest span, in O(n): each walk up the
 *  parents stops at the first node an earlier walk finished. */
function breakCycles(spans: Span[], parent: Int32Array, warnings: string[]): void {
  const n = spans.length;
  const DONE = -1;
  const up = (i: number) => {
    const p = parent[i]!;
    return p >= 0 && p < n ? p : -1;
  };
  const mark = new Int32Array(n); // 0: unvisited, start+1: on the walk from start
  for (let s = 0; s < n; s++) {
    if (mark[s] !== 0) continue;
    const stamp = s + 1;
    let cur = s;
    for (;;) {
      if (mark[cur] === DONE) break;
      if (mark[cur] === stamp) {
        const members = [cur];
        for (let m = up(cur); m >= 0 && m !== cur; m = up(m)) members.push(m);
        let cut = members[0]!;
        for (const m of members) {
          const a = spans[m]!;
          const b = spans[cut]!;
          if (a.start < b.start || (a.start === b.start && a.spanId < b.spanId)) cut = m;
        }
        parent[cut] = -1;
        const ids = members.map((m) => `${spans[m]!.spanId} → `).join("");
        warnings.push(
          `parent ids form a cycle (${ids}${spans[members[0]!]!.spanId}); span ${spans[cut]!.spanId} is shown as a root`,
        );
        break;
      }
      mark[cur] = stamp;
      const p = up(cur);
      if (p < 0) break;
      cur = p;
    }
    for (let c = s; c >= 0 && mark[c] === stamp; c = up(c)) mark[c] = DONE;
  }
}

/** Depths and adjusted times, top-down so that each node sees its parent's final times. */
function adjustTimes(nodes: TreeNode[], roots: number[], mode: SkewMode): void {
  const stack = [...roots].reverse();
  while (stack.length > 0) {
    const id = stack.pop()!;
    const node = nodes[id]!;
    const span = node.span;
    if (span) {
      let inherited = 0;
      let own = 0;
      const p = node.parent >= 0 ? nodes[node.parent]! : null;
      if (p?.span) {
        if (p.span.service === span.service) {
          // Same process clock: move with the parent, never on its own.
          inherited = p.shift;
        } else if (mode === "adjust") {
          // Another process's clock owes nothing to the parent's shift: judge the
          // recorded times against the parent's adjusted ones.
          own = skewDelta(p.span.kind, span.kind, p.start, p.end, span.start, span.end);
        }
      }
      node.skew = own;
      node.shift = inherited + own;
      node.start = span.start + node.shift;
      node.end = Math.max(span.end + node.shift, node.start);
    }
    for (let c = node.children.length - 1; c >= 0; c--) stack.push(node.children[c]!);
  }
  // Placeholders span their children, which are all received spans.
  for (const node of nodes) {
    if (node.span) continue;
    let s = Infinity;
    let e = -Infinity;
    for (const c of node.children) {
      s = Math.min(s, nodes[c]!.start);
      e = Math.max(e, nodes[c]!.end);
    }
    node.start = s;
    node.end = Math.max(e, s);
  }
}

/** The shift that makes a child of another service plausible against its parent. A
 *  CLIENT→SERVER call brackets the server, so a server sticking out on either side is
 *  centred in the client; anything else (a message to a CONSUMER) only promises that the
 *  receiver started after the sender, so only an early start is corrected. */
function skewDelta(pk: string, ck: string, ps: number, pe: number, cs: number, ceRaw: number): number {
  const ce = Math.max(ceRaw, cs);
  let target: number;
  if (pk === "Client" && ck === "Server") {
    if (cs >= ps && ce <= pe) return 0;
    const plen = Math.max(pe - ps, 0);
    const clen = ce - cs;
    target = clen < plen ? ps + Math.floor((plen - clen) / 2) : ps;
  } else {
    if (cs >= ps) return 0;
    target = ps;
  }
  return target - cs;
}

function markParallel(nodes: TreeNode[], siblings: number[]): void {
  const spans = siblings.filter((s) => nodes[s]!.span !== null);
  if (spans.length < 2) return;
  let latestEnd = -Infinity;
  spans.forEach((s, k) => {
    const node = nodes[s]!;
    if (k > 0 && node.start < latestEnd) node.parallel = true;
    latestEnd = Math.max(latestEnd, node.end);
  });
  for (let k = 0; k + 1 < spans.length; k++) {
    if (nodes[spans[k + 1]!]!.start < nodes[spans[k]!]!.end) nodes[spans[k]!]!.parallel = true;
  }
}

/**
 * The chain of work that decides when the trace ends. From the node whose subtree ends
 * last, walk back in time: at each instant the node is "on the path" unless a child
 * (whose own subtree ran up to that instant) was what it was waiting for; then continue
 * inside that child and, once back at the child's start, with the parent's earlier
 * children. Subtree ends count rather than span ends because a CONSUMER may outlive its
 * PRODUCER: in messaging traces the end is often set by a receiver of a finished sender.
 */
function criticalPath(nodes: TreeNode[], roots: number[]): ([number, number][] | undefined)[] {
  const out: ([number, number][] | undefined)[] = new Array(nodes.length);
  if (roots.length === 0) return out;
  // Subtree ends, children before parents (reverse pre-order via an explicit stack).
  const subEnd = new Float64Array(nodes.length);
  const post: number[] = [];
  const stack = [...roots];
  while (stack.length > 0) {
    const id = stack.pop()!;
    post.push(id);
    for (const c of nodes[id]!.children) stack.push(c);
  }
  for (let k = post.length - 1; k >= 0; k--) {
    const node = nodes[post[k]!]!;
    let e = node.end;
    for (const c of node.children) e = Math.max(e, subEnd[c]!);
    subEnd[node.index] = e;
  }
  let root = roots[0]!;
  for (const r of roots) if (subEnd[r]! > subEnd[root]!) root = r;

  const add = (id: number, s: number, e: number) => {
    const node = nodes[id]!;
    const from = Math.max(s, node.start);
    const to = Math.min(e, node.end);
    (out[id] ??= []);
    if (to > from) out[id]!.push([from, to]);
  };
  const work: [number, number][] = [[root, subEnd[root]!]];
  while (work.length > 0) {
    const [id, until] = work.pop()!;
    const node = nodes[id]!;
    (out[id] ??= []);
    const kids = [...node.children].sort((a, b) => subEnd[b]! - subEnd[a]!);
    let t = until;
    let k = 0;
    for (;;) {
      while (k < kids.length && nodes[kids[k]!]!.start >= t) k++;
      if (k >= kids.length) break;
      const c = kids[k++]!;
      const e = Math.min(subEnd[c]!, t);
      if (e < t) add(id, e, t);
      work.push([c, e]);
      t = Math.max(nodes[c]!.start, node.start);
      if (t <= node.start) break;
    }
    add(id, node.start, t);
  }
  return out;
}

function fanOuts(nodes: TreeNode[]): Map<number, FanOut> {
  const out = new Map<number, FanOut>();
  for (const node of nodes) {
    if (node.span?.kind !== "Producer") continue;
    const consumers = node.children.filter((c) => nodes[c]!.span?.kind === "Consumer");
    if (consumers.length === 0) continue;
    let channel = destination(node.span);
    const services: string[] = [];
    for (const c of consumers) {
      const s = nodes[c]!.span!;
      channel ??= destination(s);
      if (!services.includes(s.service)) services.push(s.service);
    }
    out.set(node.index, { consumers, channel, services });
  }
  return out;
}

/** The rows to draw: pre-order positions, skipping the inside of collapsed nodes. O(rows). */
export function visibleRows(tree: TraceTree, collapsed: ReadonlySet<number>): Int32Array {
  const rows = new Int32Array(tree.order.length);
  let count = 0;
  for (let p = 0; p < tree.order.length; ) {
    const id = tree.order[p]!;
    rows[count++] = id;
    p += collapsed.has(id) ? tree.subtreeSize[p]! : 1;
  }
  return rows.subarray(0, count);
}

/** Collapsed ancestors of `id`, which must be opened to show it. */
export function collapsedAncestors(tree: TraceTree, id: number, collapsed: ReadonlySet<number>): number[] {
  const out: number[] = [];
  for (let p = tree.nodes[id]!.parent; p >= 0; p = tree.nodes[p]!.parent) if (collapsed.has(p)) out.push(p);
  return out;
}
