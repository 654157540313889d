import { defineConfig } from "vite";

// The UI is served by `clew serve` from the same origin as the API, so in development
// the API requests are proxied to a running clew (CLEW_HTTP, default 127.0.0.1:16686).
// `process` is read through globalThis so the config type-checks without @types/node.
const env = (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env ?? {};
const api = env.CLEW_HTTP ?? "http://127.0.0.1:16686";

export default defineConfig({
  // Absolute asset paths: deep links such as /trace/{id} load index.html from a nested URL.
  base: "/",
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    // No source maps in the binary: they would double its UI payload for no user benefit.
    sourcemap: false,
    target: "es2022",
  },
  server: { proxy: { "/api": api } },
});
