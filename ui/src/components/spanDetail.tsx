// What one span says about itself: times (with any clock correction spelled out),
// messaging (where it went, who received it), attributes, events and links. Links to
// other spans navigate, within the trace or to another trace's span.

import { CHANNEL_COLOR, serviceColor, textColor } from "../colors";
import { formatDuration, formatIsoMillis, formatSignedDuration } from "../format";
import { KIND_LABEL, type KeyValue, type Trace, attrText, destination, unixMillis } from "../model";
import { Link } from "../router";
import type { TraceTree } from "../tree";

function Attrs(props: { attrs: KeyValue[]; label: string }) {
  if (props.attrs.length === 0) return null;
  return (
    <table class="attrs" aria-label={props.label}>
      <tbody>
        {props.attrs.map((kv) => (
          <tr>
            <th>{kv.key}</th>
            <td>{attrText(kv.value)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function SpanRef(props: { tree: TraceTree; node: number; onSelect: (node: number) => void }) {
  const n = props.tree.nodes[props.node]!;
  if (!n.span) return <span class="missing">missing span {n.missingId}</span>;
  return (
    <button type="button" class="span-ref" onClick={() => props.onSelect(props.node)} data-span-id={n.span.spanId}>
      <span class="swatch" style={{ background: serviceColor(n.span.service) }} />
      {n.span.service}: {n.span.name}
    </button>
  );
}

export function SpanDetail(props: { trace: Trace; tree: TraceTree; node: number; onSelect: (node: number) => void; onClose: () => void }) {
  const { tree } = props;
  const node = tree.nodes[props.node]!;
  const span = node.span;
  if (!span) {
    return (
      <aside class="detail" aria-label="Span details">
        <header>
          <h3>Missing span {node.missingId}</h3>
          <button type="button" class="close" aria-label="Close" onClick={props.onClose}>
            ×
          </button>
        </header>
        <p>
          {node.children.length} received {node.children.length === 1 ? "span names" : "spans name"} this span as parent, but it never
          arrived: its process may have crashed or dropped it.
        </p>
      </aside>
    );
  }
  const fan = tree.fanOuts.get(props.node);
  const channel = destination(span);
  const parent = node.parent >= 0 ? node.parent : null;
  const consumersOf = parent !== null ? tree.fanOuts.get(parent) : undefined;
  const hideKeys = new Set(channel && (span.kind === "Producer" || span.kind === "Consumer") ? ["messaging.destination.name", "messaging.destination"] : []);
  const critical = tree.critical[props.node];

  return (
    <aside class="detail" aria-label="Span details" data-span-id={span.spanId}>
      <header>
        <h3>
          <span class="swatch" style={{ background: serviceColor(span.service) }} />
          <span style={{ color: textColor(serviceColor(span.service)) }}>{span.service}</span>: {span.name}
        </h3>
        <button type="button" class="close" aria-label="Close" onClick={props.onClose}>
          ×
        </button>
      </header>
      <dl class="facts">
        <dt>Kind</dt>
        <dd>{KIND_LABEL[span.kind]}</dd>
        <dt>Status</dt>
        <dd class={span.status.code === "Error" ? "errors" : ""}>
          {span.status.code === "Error" ? `ERROR${span.status.message ? `: ${span.status.message}` : ""}` : span.status.code === "Ok" ? "OK" : "unset"}
        </dd>
        <dt>Start</dt>
        <dd>
          {formatSignedDuration(node.start - tree.start)} <span class="muted">({formatIsoMillis(unixMillis(props.trace, node.start))})</span>
        </dd>
        <dt>Duration</dt>
        <dd>{formatDuration(node.end - node.start)}</dd>
        {node.shift !== 0 && (
          <>
            <dt>Clock skew</dt>
            <dd class="warn">
              {node.skew !== 0
                ? `shifted ${formatSignedDuration(node.skew)}: ${span.service}'s clock disagrees with its caller's`
                : `moved ${formatSignedDuration(node.shift)} with its parent`}
            </dd>
          </>
        )}
        {critical !== undefined && (
          <>
            <dt>Critical path</dt>
            <dd>on it{critical.length > 0 ? ` for ${formatDuration(critical.reduce((a, [s, e]) => a + e - s, 0))} of its own time` : ""}</dd>
          </>
        )}
        <dt>Parent</dt>
        <dd>{parent !== null ? <SpanRef tree={tree} node={parent} onSelect={props.onSelect} /> : <span class="muted">none (root)</span>}</dd>
        <dt>Span id</dt>
        <dd class="mono">{span.spanId}</dd>
      </dl>

      {(span.kind === "Producer" || span.kind === "Consumer") && (
        <section class="messaging" aria-label="Messaging">
          <h4>Messaging</h4>
          {span.kind === "Producer" ? (
            <>
              <p>
                Publishes to{" "}
                <span class="channel" style={{ color: CHANNEL_COLOR }}>
                  {channel ?? "an unnamed channel"}
                </span>
                {fan ? `, received by ${fan.consumers.length} ${fan.consumers.length === 1 ? "consumer" : "consumers"}:` : ": no consumer in this trace"}
              </p>
              {fan && (
                <ul class="consumers">
                  {fan.consumers.map((c) => (
                    <li>
                      <SpanRef tree={tree} node={c} onSelect={props.onSelect} />{" "}
                      <span class="muted">after {formatDuration(Math.max(0, tree.nodes[c]!.start - node.start))}</span>
                    </li>
                  ))}
                </ul>
              )}
            </>
          ) : (
            <p>
              Receives from{" "}
              <span class="channel" style={{ color: CHANNEL_COLOR }}>
                {channel ?? "an unnamed channel"}
              </span>
              {consumersOf && consumersOf.consumers.length > 1 && ` (one of ${consumersOf.consumers.length} consumers of that message)`}
            </p>
          )}
        </section>
      )}

      <section>
        <h4>Attributes</h4>
        {span.attributes.filter((kv) => !hideKeys.has(kv.key)).length === 0 ? (
          <p class="muted">none</p>
        ) : (
          <Attrs attrs={span.attributes.filter((kv) => !hideKeys.has(kv.key))} label="Attributes" />
        )}
      </section>

      {span.events.length > 0 && (
        <section aria-label="Events">
          <h4>Events</h4>
          <ol class="events">
            {span.events.map((ev) => (
              <li>
                <div>
                  <strong>{ev.name}</strong> <span class="muted">{formatSignedDuration(ev.time + node.shift - tree.start)}</span>
                </div>
                <Attrs attrs={ev.attributes} label={`${ev.name} attributes`} />
              </li>
            ))}
          </ol>
        </section>
      )}

      {span.links.length > 0 && (
        <section aria-label="Links">
          <h4>Links</h4>
          <ul class="links">
            {span.links.map((l) => {
              const local = l.traceId === span.traceId ? tree.bySpanId.get(l.spanId) : undefined;
              return (
                <li>
                  {local !== undefined ? (
                    <SpanRef tree={tree} node={local} onSelect={props.onSelect} />
                  ) : (
                    <Link href={`/trace/${l.traceId}?span=${l.spanId}`} class="span-link">
                      trace {l.traceId.slice(0, 12)}… span {l.spanId}
                    </Link>
                  )}
                  <Attrs attrs={l.attributes} label="Link attributes" />
                </li>
              );
            })}
          </ul>
        </section>
      )}

      <details>
        <summary>Resource ({span.resource.length})</summary>
        <Attrs attrs={span.resource} label="Resource attributes" />
        {span.scope.name && (
          <p class="muted">
            Scope: {span.scope.name}
            {span.scope.version ? ` ${span.scope.version}` : ""}
          </p>
        )}
      </details>
    </aside>
  );
}
