// A few lines of History-API routing instead of a router library: the UI has a handful
// of routes and every one of them must be a URL that opens the view directly (the server
// answers every non-API path with index.html).

import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

export type Route =
  | { page: "search"; query: URLSearchParams }
  | { page: "trace"; traceId: string; query: URLSearchParams }
  | { page: "map"; query: URLSearchParams }
  | { page: "lifecycle" }
  | { page: "replay"; traceId: string; query: URLSearchParams }
  | { page: "diff"; a: string; b: string; query: URLSearchParams }
  | { page: "not-found"; path: string };

export function parseRoute(pathname: string, search: string): Route {
  const query = new URLSearchParams(search);
  const parts = pathname.split("/").filter(Boolean).map(decodeURIComponent);
  const [head, a, b, c] = parts;
  if (parts.length === 0 || (head === "search" && parts.length === 1)) return { page: "search", query };
  if (head === "trace" && a && parts.length === 2) return { page: "trace", traceId: a, query };
  if (head === "trace" && a && b === "replay" && parts.length === 3) return { page: "replay", traceId: a, query };
  if (head === "map" && parts.length === 1) return { page: "map", query };
  if (head === "lifecycle" && parts.length === 1) return { page: "lifecycle" };
  if (head === "diff" && a && b && c === undefined) return { page: "diff", a, b, query };
  return { page: "not-found", path: pathname };
}

const NAVIGATED = "clew:navigate";

/** Goes to `url` inside the app. `replace` for changes that should not make a Back step
 *  (a selected span, a toggled option). */
export function navigate(url: string, replace = false): void {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  window.dispatchEvent(new Event(NAVIGATED));
}

export function useLocation(): { pathname: string; search: string } {
  const read = () => ({ pathname: location.pathname, search: location.search });
  const [loc, setLoc] = useState(read);
  useEffect(() => {
    const update = () => setLoc(read());
    window.addEventListener("popstate", update);
    window.addEventListener(NAVIGATED, update);
    return () => {
      window.removeEventListener("popstate", update);
      window.removeEventListener(NAVIGATED, update);
    };
  }, []);
  return loc;
}

/** An ordinary link (so it can be opened in a new tab or copied) that navigates in place
 *  on a plain click. */
export function Link(props: { href: string; replace?: boolean; class?: string; title?: string; children: ComponentChildren }) {
  const { href, replace, children } = props;
  const onClick = (e: MouseEvent) => {
    if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(href, replace);
  };
  return (
    <a href={href} onClick={onClick} class={props.class} title={props.title}>
      {children}
    </a>
  );
}

/** `path?query`, dropping empty values so shared URLs stay short. */
export function withQuery(path: string, params: Record<string, string | string[] | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null) continue;
    for (const item of Array.isArray(v) ? v : [v]) if (item !== "") q.append(k, item);
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}
