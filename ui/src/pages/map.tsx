// The service map: services and the channels between them, from the dependencies the
// store counts as spans arrive. A message edge (PRODUCER→CONSUMER) becomes two edges
// through a channel node, so a broadcast reads as what it is: one publisher, one
// channel, several receivers.
//
// The drawing is a plain layered (Sugiyama-style) layout, top to bottom, without a graph
// library: services are ordered by a greedy feedback-arc heuristic (sinks last, sources
// first, otherwise the one that sends most more than it receives); edges against that
// order are the graph's cycles and are drawn dashed, pointing up; layers are longest
// paths; edges that skip layers pass through invisible waypoints so they route around
// nodes instead of through them; a few barycenter sweeps untangle each layer; separate
// components sit side by side. Service maps have tens of nodes: plenty for them.

import { useEffect, useMemo, useState } from "preact/hooks";
import { type Dependency, fetchDependencies, nowNanos } from "../api";
import { CHANNEL_COLOR, ERROR_COLOR, serviceColor, textColor } from "../colors";
import { navigate, withQuery } from "../router";
import { LOOKBACKS } from "./search";

const DEFAULT_LOOKBACK = "1d";

interface MapNode {
  id: string;
  kind: "service" | "channel" | "waypoint";
  name: string;
  layer: number;
  order: number;
  x: number;
  y: number;
  width: number;
}

interface MapEdge {
  from: string;
  to: string;
  count: number;
  errors: number;
  /** For publisher→channel edges the count is the most deliveries to one receiver, the
   *  closest to "messages published" that delivery counts tell. */
  publish: boolean;
  /** Against the layering: the edge closes a cycle and is drawn pointing up. */
  back: boolean;
  /** Node ids from the upper end to the lower end, waypoints included. */
  route: string[];
}

export interface ServiceMap {
  nodes: MapNode[];
  edges: MapEdge[];
  width: number;
  height: number;
}

const NODE_H = 36;
const ROW = 92;
const GAP = 32;
const MARGIN = 24;
const CHAR_W = 7.6;
const WAYPOINT_W = 10;

/** Orders services so that as few edges as possible point backwards. */
function greedyOrder(names: string[], edges: [string, string][]): Map<string, number> {
  const outs = new Map(names.map((n) => [n, new Set<string>()]));
  const ins = new Map(names.map((n) => [n, new Set<string>()]));
  for (const [a, b] of edges) {
    if (a === b) continue;
    outs.get(a)!.add(b);
    ins.get(b)!.add(a);
  }
  const left = new Set(names);
  const head: string[] = [];
  const tail: string[] = [];
  const remove = (n: string) => {
    left.delete(n);
    for (const m of outs.get(n)!) ins.get(m)!.delete(n);
    for (const m of ins.get(n)!) outs.get(m)!.delete(n);
  };
  while (left.size > 0) {
    const sorted = [...left].sort();
    const sink = sorted.find((n) => outs.get(n)!.size === 0);
    if (sink !== undefined) {
      tail.unshift(sink);
      remove(sink);
      continue;
    }
    const source = sorted.find((n) => ins.get(n)!.size === 0);
    const delta = (n: string) => outs.get(n)!.size - ins.get(n)!.size;
    const pick = source ?? sorted.reduce((best, n) => (delta(n) > delta(best) ? n : best));
    head.push(pick);
    remove(pick);
  }
  return new Map([...head, ...tail].map((n, i) => [n, i]));
}

export function layoutMap(deps: Dependency[]): ServiceMap {
  const nodes = new Map<string, MapNode>();
  const node = (kind: "service" | "channel", name: string) => {
    const id = `${kind}:${name}`;
    if (!nodes.has(id)) {
      const label = kind === "channel" ? name.length + 2 : name.length;
      nodes.set(id, { id, kind, name, layer: 0, order: 0, x: 0, y: 0, width: Math.max(100, label * CHAR_W + 34) });
    }
    return id;
  };
  const edges = new Map<string, MapEdge>();
  const edge = (from: string, to: string, count: number, errors: number, publish: boolean) => {
    const key = `${from}→${to}`;
    const e = edges.get(key);
    if (!e) edges.set(key, { from, to, count, errors, publish, back: false, route: [] });
    else if (publish) e.count = Math.max(e.count, count);
    else {
      e.count += count;
      e.errors += errors;
    }
  };
  for (const d of deps) {
    const p = node("service", d.parent);
    const c = node("service", d.child);
    if (d.channel === null) edge(p, c, d.callCount, d.errorCount, false);
    else {
      const ch = node("channel", d.channel);
      edge(p, ch, d.callCount, 0, true);
      edge(ch, c, d.callCount, d.errorCount, false);
    }
  }

  // Order services with channels contracted (a message is one hop between services); a
  // channel sits just after its earliest publisher.
  const services = [...nodes.values()].filter((n) => n.kind === "service").map((n) => n.name);
  const rank = greedyOrder(
    services,
    deps.map((d) => [d.parent, d.child]),
  );
  const position = new Map<string, number>();
  for (const n of nodes.values()) if (n.kind === "service") position.set(n.id, rank.get(n.name)! * 2);
  for (const e of edges.values()) {
    if (e.publish) position.set(e.to, Math.min(position.get(e.to) ?? Infinity, position.get(e.from)! + 1));
  }
  const allEdges = [...edges.values()];
  for (const e of allEdges) e.back = position.get(e.from)! >= position.get(e.to)!;
  const upper = (e: MapEdge) => (e.back ? e.to : e.from);
  const lower = (e: MapEdge) => (e.back ? e.from : e.to);

  // Longest paths, visiting nodes by position: every edge, back ones reversed, runs
  // from a lower position to a higher one.
  const byPosition = [...nodes.values()].sort((a, b) => position.get(a.id)! - position.get(b.id)! || a.id.localeCompare(b.id));
  const down = new Map<string, MapEdge[]>();
  for (const e of allEdges) (down.get(upper(e)) ?? down.set(upper(e), []).get(upper(e))!).push(e);
  for (const n of byPosition) {
    for (const e of down.get(n.id) ?? []) {
      const t = nodes.get(lower(e))!;
      t.layer = Math.max(t.layer, n.layer + 1);
    }
  }

  // Waypoints on every layer an edge skips.
  const segments: [string, string][] = [];
  for (const e of allEdges) {
    const u = nodes.get(upper(e))!;
    const v = nodes.get(lower(e))!;
    e.route = [u.id];
    for (let l = u.layer + 1; l < v.layer; l++) {
      const id = `waypoint:${e.from}→${e.to}:${l}`;
      nodes.set(id, { id, kind: "waypoint", name: "", layer: l, order: 0, x: 0, y: 0, width: WAYPOINT_W });
      position.set(id, position.get(u.id)!);
      e.route.push(id);
    }
    e.route.push(v.id);
    for (let k = 0; k + 1 < e.route.length; k++) segments.push([e.route[k]!, e.route[k + 1]!]);
  }

  // Connected components, each laid out on its own and placed side by side.
  const parent = new Map([...nodes.keys()].map((id) => [id, id]));
  const find = (id: string): string => {
    let r = id;
    while (parent.get(r) !== r) r = parent.get(r)!;
    parent.set(id, r);
    return r;
  };
  for (const [a, b] of segments) parent.set(find(a), find(b));
  const components = new Map<string, MapNode[]>();
  for (const n of nodes.values()) (components.get(find(n.id)) ?? components.set(find(n.id), []).get(find(n.id))!).push(n);
  const ups = new Map<string, MapNode[]>();
  const downs = new Map<string, MapNode[]>();
  for (const [a, b] of segments) {
    (downs.get(a) ?? downs.set(a, []).get(a)!).push(nodes.get(b)!);
    (ups.get(b) ?? ups.set(b, []).get(b)!).push(nodes.get(a)!);
  }

  let offset = MARGIN;
  let height = 0;
  const ordered = [...components.values()].sort((a, b) => b.length - a.length || a[0]!.id.localeCompare(b[0]!.id));
  for (const members of ordered) {
    const layers: MapNode[][] = [];
    for (const n of members.sort((a, b) => position.get(a.id)! - position.get(b.id)! || a.id.localeCompare(b.id))) {
      (layers[n.layer] ??= []).push(n);
    }
    for (let i = 0; i < layers.length; i++) layers[i] ??= [];
    layers.forEach((layer) => layer.forEach((n, i) => (n.order = i)));
    for (let sweep = 0; sweep < 8; sweep++) {
      const downward = sweep % 2 === 0;
      const indices = layers.map((_, i) => i);
      for (const li of downward ? indices.slice(1) : indices.reverse().slice(1)) {
        const layer = layers[li]!;
        const centre = new Map<MapNode, number>();
        for (const n of layer) {
          const ns = (downward ? ups : downs).get(n.id) ?? [];
          centre.set(n, ns.length ? ns.reduce((a, m) => a + m.order, 0) / ns.length : n.order);
        }
        layer.sort((a, b) => centre.get(a)! - centre.get(b)! || a.order - b.order);
        layer.forEach((n, i) => (n.order = i));
      }
    }
    const rowWidth = (layer: MapNode[]) => layer.reduce((a, n) => a + n.width, 0) + GAP * Math.max(0, layer.length - 1);
    const widest = Math.max(1, ...layers.map(rowWidth));
    layers.forEach((layer, li) => {
      let x = offset + (widest - rowWidth(layer)) / 2;
      for (const n of layer) {
        n.x = x;
        n.y = MARGIN + li * ROW;
        x += n.width + GAP;
      }
    });
    offset += widest + GAP * 3;
    height = Math.max(height, MARGIN * 2 + (layers.length - 1) * ROW + NODE_H);
  }
  return {
    nodes: [...nodes.values()],
    edges: allEdges,
    width: offset - GAP * 3 + MARGIN,
    height,
  };
}

type Loaded = { state: "loading" } | { state: "error"; message: string } | { state: "done"; deps: Dependency[] };

export function MapPage(props: { query: URLSearchParams }) {
  const lookback = props.query.get("lookback") ?? DEFAULT_LOOKBACK;
  const seconds = (LOOKBACKS.find(([k]) => k === lookback) ?? LOOKBACKS[5]!)[2];
  const [loaded, setLoaded] = useState<Loaded>({ state: "loading" });
  useEffect(() => {
    document.title = "Service map · clew";
    const abort = new AbortController();
    const end = nowNanos();
    setLoaded({ state: "loading" });
    fetchDependencies(end - BigInt(seconds) * 1_000_000_000n, end, abort.signal)
      .then((deps) => setLoaded({ state: "done", deps }))
      .catch((e: Error) => e.name !== "AbortError" && setLoaded({ state: "error", message: e.message }));
    return () => abort.abort();
  }, [seconds]);
  const map = useMemo(() => (loaded.state === "done" ? layoutMap(loaded.deps) : null), [loaded]);

  return (
    <div class="map-page">
      <div class="toolbar">
        <h2>Service map</h2>
        <label>
          Time range{" "}
          <select
            value={lookback}
            onChange={(e) => {
              const v = (e.target as HTMLSelectElement).value;
              navigate(withQuery("/map", { lookback: v === DEFAULT_LOOKBACK ? undefined : v }), true);
            }}
          >
            {LOOKBACKS.map(([k, label]) => (
              <option value={k}>{label}</option>
            ))}
          </select>
        </label>
        <span class="muted">Services are boxes, channels are pills; click a service to search its traces.</span>
      </div>
      {loaded.state === "loading" && <p class="muted pad">Loading dependencies…</p>}
      {loaded.state === "error" && <p class="error-banner">Could not load dependencies: {loaded.message}</p>}
      {map && map.nodes.length === 0 && <p class="muted pad">No calls or messages between services in this time range.</p>}
      {map && map.nodes.length > 0 && <MapDrawing map={map} />}
      {map && map.edges.length > 0 && <EdgeTable map={map} />}
    </div>
  );
}

function rate(e: MapEdge): string {
  return e.count > 0 && e.errors > 0 ? `${((e.errors / e.count) * 100).toFixed(e.errors / e.count < 0.1 ? 1 : 0)}% err` : "";
}

function MapDrawing(props: { map: ServiceMap }) {
  const { map } = props;
  const byId = new Map(map.nodes.map((n) => [n.id, n]));
  const maxCount = Math.max(1, ...map.edges.map((e) => e.count));
  return (
    <div class="map-scroll">
      <svg class="service-map" width={map.width} height={map.height} viewBox={`0 0 ${map.width} ${map.height}`} role="img" aria-label="Service map">
        <defs>
          {/* Fixed-size heads: markers would otherwise grow with the stroke width. */}
          {[
            ["arrow", "#667085"],
            ["arrow-err", ERROR_COLOR],
          ].map(([id, fill]) => (
            <marker id={id} viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">
              <path d="M0,0 L10,5 L0,10 z" fill={fill} />
            </marker>
          ))}
        </defs>
        {map.edges.map((e) => {
          const route = e.route.map((id) => byId.get(id)!);
          const first = route[0]!;
          const last = route[route.length - 1]!;
          // Top to bottom: leave the upper node at its bottom, pass each waypoint
          // vertically, enter the lower node at its top.
          const points: [number, number][] = [[first.x + first.width / 2, first.y + NODE_H]];
          for (const w of route.slice(1, -1)) points.push([w.x + w.width / 2, w.y], [w.x + w.width / 2, w.y + NODE_H]);
          points.push([last.x + last.width / 2, last.y]);
          let d = `M${points[0]![0]},${points[0]![1]}`;
          for (let k = 1; k < points.length; k++) {
            const [x0, y0] = points[k - 1]!;
            const [x1, y1] = points[k]!;
            const bend = (y1 - y0) / 2;
            d += x0 === x1 ? ` L${x1},${y1}` : ` C${x0},${y0 + bend} ${x1},${y1 - bend} ${x1},${y1}`;
          }
          const mid = Math.floor((points.length - 1) / 2);
          const [ax, ay] = points[mid]!;
          const [bx, by] = points[mid + 1]!;
          const err = e.errors > 0;
          const a = byId.get(e.from)!;
          const b = byId.get(e.to)!;
          const label = `${e.count}${e.publish ? " msgs" : ""}${err ? ` · ${rate(e)}` : ""}`;
          const marker = `url(#${err ? "arrow-err" : "arrow"})`;
          return (
            <g class={`edge${err ? " has-errors" : ""}${e.back ? " back" : ""}`} data-from={a.name} data-to={b.name}>
              <path
                d={d}
                fill="none"
                stroke={err ? ERROR_COLOR : "#98a2b3"}
                stroke-width={1.2 + (2.8 * Math.log1p(e.count)) / Math.log1p(maxCount)}
                stroke-dasharray={e.back ? "6 4" : undefined}
                marker-end={e.back ? undefined : marker}
                marker-start={e.back ? marker : undefined}
              >
                <title>
                  {a.name} → {b.name}: {e.publish ? `${e.count} messages (most deliveries to one receiver)` : `${e.count} ${a.kind === "channel" ? "deliveries" : "calls"}`}
                  {err ? `, ${e.errors} errors` : ""}
                  {e.back ? " (closes a cycle, drawn upwards)" : ""}
                </title>
              </path>
              <text x={(ax + bx) / 2} y={(ay + by) / 2 + 4} text-anchor="middle" class={`edge-label${err ? " errors" : ""}`}>
                {label}
              </text>
            </g>
          );
        })}
        {map.nodes.map((n) =>
          n.kind === "service" ? (
            <g
              class="map-node service"
              data-kind="service"
              data-name={n.name}
              transform={`translate(${n.x},${n.y})`}
              onClick={() => navigate(withQuery("/search", { service: n.name }))}
            >
              <rect width={n.width} height={NODE_H} rx="6" fill="white" stroke={serviceColor(n.name)} stroke-width="2" />
              <rect width="8" height={NODE_H} rx="3" fill={serviceColor(n.name)} />
              <text x={n.width / 2 + 4} y={NODE_H / 2 + 5} text-anchor="middle" fill={textColor(serviceColor(n.name))}>
                {n.name}
              </text>
              <title>{`${n.name}: search its traces`}</title>
            </g>
          ) : n.kind === "channel" ? (
            <g class="map-node channel" data-kind="channel" data-name={n.name} transform={`translate(${n.x},${n.y})`}>
              <rect width={n.width} height={NODE_H} rx={NODE_H / 2} fill="#f4f3ff" stroke={CHANNEL_COLOR} stroke-width="1.5" stroke-dasharray="5 3" />
              <text x={n.width / 2} y={NODE_H / 2 + 5} text-anchor="middle" fill={CHANNEL_COLOR}>
                ⇄ {n.name}
              </text>
              <title>{`channel ${n.name}`}</title>
            </g>
          ) : null,
        )}
      </svg>
    </div>
  );
}

function EdgeTable(props: { map: ServiceMap }) {
  const byId = new Map(props.map.nodes.map((n) => [n.id, n]));
  const rows = [...props.map.edges].sort((a, b) => b.count - a.count);
  return (
    <table class="edge-table" aria-label="Edges">
      <thead>
        <tr>
          <th>From</th>
          <th>To</th>
          <th class="num">Count</th>
          <th class="num">Errors</th>
          <th class="num">Error rate</th>
        </tr>
      </thead>
      <tbody>
        {rows.map((e) => {
          const a = byId.get(e.from)!;
          const b = byId.get(e.to)!;
          const name = (n: MapNode) => (n.kind === "channel" ? <span style={{ color: CHANNEL_COLOR }}>⇄ {n.name}</span> : n.name);
          return (
            <tr>
              <td>{name(a)}</td>
              <td>{name(b)}</td>
              <td class="num">
                {e.count}
                {e.publish ? " msgs" : ""}
              </td>
              <td class={`num${e.errors > 0 ? " errors" : ""}`}>{e.errors}</td>
              <td class="num">{e.count > 0 ? `${((e.errors / e.count) * 100).toFixed(1)}%` : "–"}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}
