// The fingerprint of everything that decides what `vite build` produces.
//
// `npm run build` writes it to dist/.source-hash; crates/clew-ui's freshness test
// recomputes it in Rust and fails when the committed dist was built from other sources.
// Both sides must agree byte for byte, so the recipe is deliberately dull:
//   files: every file under src/ and public/, plus the INPUTS below, as paths relative to
//          ui/ with '/' separators, sorted by those paths (byte order);
//   hash:  64-bit FNV-1a over, for each file, its path, a 0 byte, its contents, a 0 byte;
//   text:  16 lower-case hex digits and a newline.
// FNV is no defence against tampering; it only has to notice a forgotten rebuild.
//
// Usage: node scripts/source-hash.mjs            prints the hash
//        node scripts/source-hash.mjs --write    also writes dist/.source-hash
//        node scripts/source-hash.mjs --check    exits 1 when dist/.source-hash differs

import { readFileSync, readdirSync, writeFileSync, existsSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const ui = join(dirname(fileURLToPath(import.meta.url)), "..");
const DIRS = ["src", "public"];
const INPUTS = ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts"];

function walk(rel, out) {
  const abs = join(ui, rel);
  if (!existsSync(abs)) return;
  for (const entry of readdirSync(abs, { withFileTypes: true })) {
    const child = `${rel}/${entry.name}`;
    if (entry.isDirectory()) walk(child, out);
    else if (entry.isFile()) out.push(child);
  }
}

export function sourceFiles() {
  const files = [];
  for (const dir of DIRS) walk(dir, files);
  for (const file of INPUTS) if (existsSync(join(ui, file))) files.push(file);
  const bytes = (s) => Buffer.from(s, "utf8");
  return files.sort((a, b) => Buffer.compare(bytes(a), bytes(b)));
}

export function sourceHash() {
  const PRIME = 0x100000001b3n;
  const MASK = 0xffffffffffffffffn;
  let h = 0xcbf29ce484222325n;
  const feed = (buf) => {
    for (const b of buf) h = ((h ^ BigInt(b)) * PRIME) & MASK;
  };
  for (const file of sourceFiles()) {
    feed(Buffer.from(file, "utf8"));
    feed([0]);
    feed(readFileSync(join(ui, file)));
    feed([0]);
  }
  return h.toString(16).padStart(16, "0");
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const hash = sourceHash();
  const target = join(ui, "dist", ".source-hash");
  if (process.argv.includes("--write")) {
    writeFileSync(target, `${hash}\n`);
  } else if (process.argv.includes("--check")) {
    const have = existsSync(target) ? readFileSync(target, "utf8").trim() : "(none)";
    if (have !== hash) {
      console.error(`ui/dist is stale (built from ${have}, sources are ${hash}): run \`npm --prefix ui ci && npm --prefix ui run build\``);
      process.exit(1);
    }
  }
  console.log(hash);
}
