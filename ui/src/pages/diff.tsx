// Two traces side by side as clew-replay compares them: `a` is the expected run, `b`
// the actual one. Structure first (the edit script over the canonical span trees: what
// was inserted, deleted or changed, by path), then where the two timelines first part
// ways, then durations of the spans both have. Swapping is a link, not state: the
// URL is the diff.

import { useEffect, useState } from "preact/hooks";
import { ApiError, type DiffSpan, type TraceDiff, fetchDiff } from "../api";
import { formatDuration, formatSignedDuration } from "../format";
import { Link } from "../router";

type Loaded = { state: "loading" } | { state: "error"; message: string } | { state: "done"; diff: TraceDiff };

const us = (n: number) => formatDuration(n * 1000);

export function DiffPage(props: { a: string; b: string }) {
  const { a, b } = props;
  const [loaded, setLoaded] = useState<Loaded>({ state: "loading" });
  useEffect(() => {
    document.title = `Diff ${a.slice(0, 8)}…${b.slice(0, 8)} · clew`;
    setLoaded({ state: "loading" });
    const abort = new AbortController();
    fetchDiff(a, b, abort.signal)
      .then((diff) => setLoaded({ state: "done", diff }))
      .catch((e: Error) => {
        if (e.name !== "AbortError") setLoaded({ state: "error", message: e instanceof ApiError ? e.message : String(e) });
      });
    return () => abort.abort();
  }, [a, b]);

  return (
    <div class="diff-page">
      <section class="diff-head">
        <h1>Trace diff</h1>
        <p class="diff-sides">
          <span class="side expected">expected</span>
          <Link href={`/trace/${a}`} class="mono">
            {a}
          </Link>
          <span class="side actual">actual</span>
          <Link href={`/trace/${b}`} class="mono">
            {b}
          </Link>
          <Link href={`/diff/${b}/${a}`} class="button" title="Compare the other way round">
            ⇄ Swap
          </Link>
        </p>
      </section>
      {loaded.state === "loading" && <p class="muted">Comparing…</p>}
      {loaded.state === "error" && <p class="error-banner">Cannot compare: {loaded.message}</p>}
      {loaded.state === "done" && <DiffView diff={loaded.diff} a={a} b={b} />}
    </div>
  );
}

function spanText(s: DiffSpan | undefined): string {
  if (!s) return "";
  return `${s.service}: ${s.name} · ${s.kind} · ${s.status} · ${us(s.duration_us)}`;
}

function DiffView(props: { diff: TraceDiff; a: string; b: string }) {
  const { diff } = props;
  const same = diff.expected_signature === diff.actual_signature;
  const moved = diff.durations.filter((d) => d.delta_us !== 0).sort((x, y) => Math.abs(y.delta_us) - Math.abs(x.delta_us));
  const longest = Math.max(1, ...moved.map((d) => Math.abs(d.delta_us)));
  const count = (op: string) => diff.edits.filter((e) => e.op === op).length;
  return (
    <>
      <section class="diff-summary" data-same={same ? "yes" : "no"}>
        {same ? (
          <p>
            <strong>Same structure</strong> (equal trace signatures <code>{diff.expected_signature.slice(0, 12)}</code>)
            {moved.length > 0 ? `; ${moved.length} spans took a different time.` : "; durations equal too."}
          </p>
        ) : (
          <p>
            <strong>Structure differs:</strong> {count("changed")} changed, {count("inserted")} inserted, {count("deleted")} deleted{" "}
            <span class="muted mono small">
              ({diff.expected_signature.slice(0, 12)} ≠ {diff.actual_signature.slice(0, 12)})
            </span>
          </p>
        )}
        {diff.first_divergence ? (
          <p class="divergence">
            The traces diverge at event <strong>{diff.first_divergence.index}</strong>: expected{" "}
            <code>{diff.first_divergence.expected ?? "end of trace"}</code>, got <code>{diff.first_divergence.actual ?? "end of trace"}</code>
            {" · "}
            <Link href={`/trace/${props.a}/replay?at=${diff.first_divergence.index}`}>replay expected</Link>
            {" · "}
            <Link href={`/trace/${props.b}/replay?at=${diff.first_divergence.actual_index ?? diff.first_divergence.index}`}>
              replay actual
            </Link>
          </p>
        ) : (
          <p class="muted">The two traces have the same structure (concurrent branches may have interleaved differently).</p>
        )}
      </section>

      <h2>Structure ({diff.edits.length} {diff.edits.length === 1 ? "edit" : "edits"})</h2>
      {diff.edits.length === 0 ? (
        <p class="muted">No span was inserted, deleted or changed.</p>
      ) : (
        <table class="diff-table edits">
          <thead>
            <tr>
              <th />
              <th>Path</th>
              <th>Expected</th>
              <th>Actual</th>
            </tr>
          </thead>
          <tbody>
            {diff.edits.map((e) => (
              <tr class={`edit edit-${e.op}`} data-op={e.op} data-path={e.path}>
                <td>
                  <span class={`op op-${e.op}`}>{e.op === "inserted" ? "+" : e.op === "deleted" ? "−" : "~"} {e.op}</span>
                  {e.subtree_spans > 1 && <span class="muted small"> ({e.subtree_spans} spans)</span>}
                </td>
                <td class="mono small path">{e.path}</td>
                {e.op === "changed" && e.changes && e.changes.length > 0 ? (
                  <>
                    <td>
                      {e.changes.map((c) => (
                        <div class="change">
                          <span class="field">{c.field}</span> <span class="old">{c.expected}</span>
                        </div>
                      ))}
                    </td>
                    <td>
                      {e.changes.map((c) => (
                        <div class="change">
                          <span class="field">{c.field}</span> <span class="new">{c.actual}</span>
                        </div>
                      ))}
                    </td>
                  </>
                ) : (
                  <>
                    <td class="old">{spanText(e.expected)}</td>
                    <td class="new">{spanText(e.actual)}</td>
                  </>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}

      <h2>Durations ({moved.length} of {diff.durations.length} aligned spans changed)</h2>
      {moved.length === 0 ? (
        <p class="muted">Every aligned span took the same time.</p>
      ) : (
        <table class="diff-table durations">
          <thead>
            <tr>
              <th>Path</th>
              <th class="num">Expected</th>
              <th class="num">Actual</th>
              <th class="num">Δ</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {moved.map((d) => (
              <tr data-path={d.path}>
                <td class="mono small path">{d.path}</td>
                <td class="num">{us(d.expected_us)}</td>
                <td class="num">{us(d.actual_us)}</td>
                <td class={`num ${d.delta_us > 0 ? "slower" : "faster"}`}>{formatSignedDuration(d.delta_us * 1000)}</td>
                <td class="delta-bar">
                  <div class={d.delta_us > 0 ? "slower" : "faster"} style={{ width: `${(Math.abs(d.delta_us) / longest) * 100}%` }} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  );
}
