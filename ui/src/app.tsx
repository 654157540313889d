import { useState } from "preact/hooks";
import { DiffPage } from "./pages/diff";
import { LifecyclePage } from "./pages/lifecycle";
import { MapPage } from "./pages/map";
import { ReplayPage } from "./pages/replay";
import { SearchPage } from "./pages/search";
import { TracePage } from "./pages/trace";
import { Link, navigate, parseRoute, useLocation } from "./router";

export function App() {
  const loc = useLocation();
  const route = parseRoute(loc.pathname, loc.search);
  return (
    <div class="app">
      <header class="top">
        <Link href="/search" class="brand" title="clew: search traces">
          clew
        </Link>
        <nav>
          <Link href="/search" class={route.page === "search" ? "active" : ""}>
            Search
          </Link>
          <Link href="/map" class={route.page === "map" ? "active" : ""}>
            Service map
          </Link>
          <Link href="/lifecycle" class={route.page === "lifecycle" ? "active" : ""}>
            Lifecycle
          </Link>
        </nav>
        <GoToTrace />
      </header>
      <main>
        {route.page === "search" && <SearchPage query={route.query} />}
        {route.page === "trace" && <TracePage key={route.traceId} traceId={route.traceId} query={route.query} />}
        {route.page === "map" && <MapPage query={route.query} />}
        {route.page === "lifecycle" && <LifecyclePage />}
        {route.page === "replay" && <ReplayPage key={route.traceId} traceId={route.traceId} query={route.query} />}
        {route.page === "diff" && <DiffPage a={route.a} b={route.b} />}
        {route.page === "not-found" && (
          <div class="notice">
            <h2>No page at {route.path}</h2>
            <p>
              Try the <Link href="/search">search</Link>, a trace at <code>/trace/&#123;id&#125;</code> or the{" "}
              <Link href="/map">service map</Link>.
            </p>
          </div>
        )}
      </main>
    </div>
  );
}

function GoToTrace() {
  const [id, setId] = useState("");
  return (
    <form
      class="goto"
      onSubmit={(e) => {
        e.preventDefault();
        const trimmed = id.trim().replace(/-/g, "");
        if (trimmed) navigate(`/trace/${encodeURIComponent(trimmed)}`);
      }}
    >
      <input
        aria-label="Open a trace by id"
        placeholder="Trace id…"
        value={id}
        onInput={(e) => setId((e.target as HTMLInputElement).value)}
        spellcheck={false}
      />
    </form>
  );
}
