// The timeline: one row per visible node, the span tree on the left, bars on the right.
// Everything a row shows is precomputed in the tree (adjusted times, fan-outs, critical
// stretches), so drawing a row is arithmetic and a handful of elements.

import { ERROR_COLOR, serviceColor, textColor } from "../colors";
import { formatDuration, formatSignedDuration } from "../format";
import { KIND_LABEL, destination, isError } from "../model";
import type { TraceTree } from "../tree";
import { type ScrollRequest, VirtualList } from "./virtualList";

export const ROW_HEIGHT = 28;
const INDENT = 14;
/** Beyond this depth rows stop moving right (a 50,000-deep chain would leave the screen);
 *  the row says its depth instead. */
const MAX_INDENT_DEPTH = 24;

export interface WaterfallProps {
  tree: TraceTree;
  rows: Int32Array;
  collapsed: ReadonlySet<number>;
  selected: number;
  showCritical: boolean;
  scrollTo: ScrollRequest | null;
  onToggle: (node: number) => void;
  onSelect: (node: number) => void;
}

export function Waterfall(props: WaterfallProps) {
  const { tree } = props;
  const total = Math.max(tree.end - tree.start, 1);
  const pct = (t: number) => ((t - tree.start) / total) * 100;
  return (
    <div class="waterfall">
      <div class="wf-header">
        <div class="wf-name">Service and operation</div>
        <div class="wf-time">
          {[0, 0.25, 0.5, 0.75, 1].map((f) => (
            <span class="tick" style={{ left: `${f * 100}%` }}>
              {formatDuration(total * f)}
            </span>
          ))}
        </div>
      </div>
      <VirtualList
        class="wf-rows"
        label="Spans"
        count={props.rows.length}
        rowHeight={ROW_HEIGHT}
        scrollTo={props.scrollTo}
        renderRow={(i, top) => {
          const id = props.rows[i]!;
          return (
            <Row
              key={id}
              tree={tree}
              id={id}
              top={top}
              collapsed={props.collapsed.has(id)}
              selected={props.selected === id}
              showCritical={props.showCritical}
              pct={pct}
              onToggle={props.onToggle}
              onSelect={props.onSelect}
            />
          );
        }}
      />
    </div>
  );
}

interface RowProps {
  tree: TraceTree;
  id: number;
  top: number;
  collapsed: boolean;
  selected: boolean;
  showCritical: boolean;
  pct: (t: number) => number;
  onToggle: (node: number) => void;
  onSelect: (node: number) => void;
}

function Row(p: RowProps) {
  const node = p.tree.nodes[p.id]!;
  const span = node.span;
  const hasChildren = node.children.length > 0;
  const left = p.pct(node.start);
  const width = Math.max(p.pct(node.end) - left, 0);
  const colour = span ? serviceColor(span.service) : "#98a2b3";
  const error = span !== null && isError(span);
  const fan = p.tree.fanOuts.get(p.id);
  const critical = p.showCritical ? p.tree.critical[p.id] : undefined;
  const onCritical = critical !== undefined;
  const indentDepth = Math.min(node.depth, MAX_INDENT_DEPTH);
  const channel = span && (span.kind === "Producer" || span.kind === "Consumer") ? destination(span) : undefined;
  const hidden = p.collapsed ? p.tree.subtreeSize[node.pos]! - 1 : 0;

  // The label goes where the row has room: after the bar, before it, or (for a bar
  // spanning nearly the whole trace) over its right end.
  const after = 100 - (left + width);
  const place = after >= 28 ? "after" : left >= 28 ? "before" : "inside";
  const labelStyle =
    place === "after"
      ? { left: `calc(${left + width}% + 4px)` }
      : place === "before"
        ? { right: `calc(${100 - left}% + 4px)` }
        : { right: `calc(${after}% + 4px)` };

  const classes = ["wf-row"];
  if (p.selected) classes.push("selected");
  if (error) classes.push("error");
  if (!span) classes.push("placeholder");
  if (onCritical) classes.push("critical");

  return (
    <div
      class={classes.join(" ")}
      style={{ top: `${p.top}px` }}
      role="listitem"
      data-node={p.id}
      data-span-id={span?.spanId ?? node.missingId}
      data-service={span?.service}
      data-name={span?.name}
      data-kind={span?.kind}
      data-depth={node.depth}
      onClick={() => p.onSelect(p.id)}
    >
      <div class="wf-name" style={{ paddingLeft: `${6 + indentDepth * INDENT}px` }}>
        {hasChildren ? (
          <button
            type="button"
            class="toggle"
            aria-expanded={!p.collapsed}
            aria-label={p.collapsed ? "Expand" : "Collapse"}
            onClick={(e) => {
              e.stopPropagation();
              p.onToggle(p.id);
            }}
          >
            {p.collapsed ? "▸" : "▾"}
          </button>
        ) : (
          <span class="toggle-space" />
        )}
        {node.depth > MAX_INDENT_DEPTH && <span class="depth-note">depth {node.depth}</span>}
        {span ? (
          <>
            <span class="svc" style={{ color: textColor(colour) }}>
              {span.service}
            </span>
            <span class="op" title={span.name}>
              {span.name}
            </span>
            {span.kind !== "Internal" && span.kind !== "Unspecified" && (
              <span class={`kind kind-${span.kind.toLowerCase()}`}>{KIND_LABEL[span.kind]}</span>
            )}
            {error && (
              <span class="err-badge" title={span.status.message || "error"}>
                ERROR
              </span>
            )}
            {node.skew !== 0 && (
              <span class="skew-badge" title="This span's clock was corrected against its parent's">
                skew {formatSignedDuration(node.skew)}
              </span>
            )}
          </>
        ) : (
          <span class="missing">missing span {node.missingId} (not received)</span>
        )}
        {hidden > 0 && <span class="hidden-count">+{hidden}</span>}
      </div>
      <div class="wf-time">
        <div
          class="bar"
          style={{
            left: `${left}%`,
            width: `max(${width}%, 2px)`,
            background: span ? colour : undefined,
            outline: error ? `2px solid ${ERROR_COLOR}` : undefined,
          }}
        />
        {critical?.map(([s, e]) => (
          <div class="cp" style={{ left: `${p.pct(s)}%`, width: `max(${p.pct(e) - p.pct(s)}%, 2px)` }} />
        ))}
        {span?.events.map((ev) => (
          <div class="ev" style={{ left: `${p.pct(ev.time + node.shift)}%` }} title={ev.name} />
        ))}
        {/* Beside the bar, where the eye already is: how long, and for a message where
            it went. A fan-out is one glance: this badge and the consumer rows under it. */}
        <span class={`label ${place}`} style={labelStyle}>
          <span class="dur">{formatDuration(node.end - node.start)}</span>
          {fan && (
            <span class={`fanout${fan.consumers.length > 1 ? " many" : ""}`} title={`Delivered to ${fan.services.join(", ")}`} data-consumers={fan.consumers.length}>
              → {fan.consumers.length} {fan.consumers.length === 1 ? "consumer" : "consumers"}
              {fan.channel ? ` on ${fan.channel}` : ""}
            </span>
          )}
          {span?.kind === "Consumer" && channel && (
            <span class="channel" title={`Received from ${channel}`}>
              ⇠ {channel}
            </span>
          )}
        </span>
      </div>
    </div>
  );
}
