// The registry's side of things: traces that have not finished yet (oldest first, so the
// ones most likely to be stuck lead) and traces the watchdog gave up on (newest first).
// Both lists come straight from /api/clew/lifecycle/…; nothing here reads the store.

import { useEffect, useState } from "preact/hooks";
import { ApiError, fetchActive, fetchOrphans } from "../api";
import { formatAgo, formatLocalTime } from "../format";
import type { Lifecycle } from "../model";
import { Link } from "../router";

const LIMIT = 100;

type Loaded<T> = { state: "loading" } | { state: "error"; message: string } | { state: "done"; items: T };

function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, generation: number): Loaded<T> {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: "loading" });
  useEffect(() => {
    const abort = new AbortController();
    load(abort.signal)
      .then((items) => setLoaded({ state: "done", items }))
      .catch((e: Error) => {
        if (e.name === "AbortError") return;
        setLoaded({ state: "error", message: e instanceof ApiError ? e.message : String(e) });
      });
    return () => abort.abort();
  }, [generation]);
  return loaded;
}

export function LifecyclePage() {
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    document.title = "Lifecycle · clew";
  }, []);
  const active = useLoad((s) => fetchActive(LIMIT, s), generation);
  const orphans = useLoad((s) => fetchOrphans(LIMIT, s), generation);
  const now = Date.now();
  return (
    <div class="lifecycle-page">
      <div class="lc-head">
        <h1>Trace lifecycle</h1>
        <button type="button" onClick={() => setGeneration((g) => g + 1)}>
          Refresh
        </button>
        <span class="muted small">
          A trace is complete a few seconds after its root span ends; one that never finishes is marked orphaned by the watchdog.
        </span>
      </div>
      <section class="lc-section" aria-label="Active traces" data-list="active">
        <h2>Active {active.state === "done" && <span class="muted">({active.items.length}{active.items.length === LIMIT ? "+" : ""})</span>}</h2>
        {active.state === "loading" && <p class="muted">Loading…</p>}
        {active.state === "error" && <p class="error-banner">{active.message}</p>}
        {active.state === "done" &&
          (active.items.length === 0 ? (
            <p class="muted">No trace is in progress.</p>
          ) : (
            <table class="lc-table">
              <thead>
                <tr>
                  <th>Trace</th>
                  <th>Created</th>
                  <th>Age</th>
                </tr>
              </thead>
              <tbody>
                {active.items.map((t) => (
                  <tr data-trace-id={t.id}>
                    <td>
                      <Link href={`/trace/${t.id}`} class="mono">
                        {t.id}
                      </Link>
                    </td>
                    <td>{formatLocalTime(t.created_at_ms, now)}</td>
                    <td>{formatAgo(t.created_at_ms, now)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ))}
      </section>
      <section class="lc-section" aria-label="Orphaned traces" data-list="orphans">
        <h2>Orphaned {orphans.state === "done" && <span class="muted">({orphans.items.length})</span>}</h2>
        {orphans.state === "loading" && <p class="muted">Loading…</p>}
        {orphans.state === "error" && <p class="error-banner">{orphans.message}</p>}
        {orphans.state === "done" &&
          (orphans.items.length === 0 ? <p class="muted">No orphaned traces.</p> : <OrphanTable items={orphans.items} now={now} />)}
      </section>
    </div>
  );
}

function OrphanTable(props: { items: Lifecycle[]; now: number }) {
  return (
    <table class="lc-table">
      <thead>
        <tr>
          <th>Trace</th>
          <th>Created</th>
          <th>Orphaned</th>
          <th>Reason</th>
          <th>Metadata</th>
        </tr>
      </thead>
      <tbody>
        {props.items.map((t) => (
          <tr data-trace-id={t.id}>
            <td>
              <Link href={`/trace/${t.id}`} class="mono">
                {t.id}
              </Link>
            </td>
            <td>{formatLocalTime(t.created_at_ms, props.now)}</td>
            <td>{t.orphaned_at_ms !== null ? formatAgo(t.orphaned_at_ms, props.now) : ""}</td>
            <td class="errors-soft">{t.error ?? ""}</td>
            <td class="mono small">
              {Object.entries(t.metadata)
                .map(([k, v]) => `${k}=${v}`)
                .join(" ")}
            </td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
