// Durations and times written the way `clew trace show` writes them, so what a user
// reads in the browser and in the terminal can be compared at a glance.

/** `x` with `digits` decimals, rounded as Rust's `format!("{x:.digits$}")` rounds: on
 *  the exact binary value, ties to even. `toFixed` breaks ties upwards, so 746.5 would
 *  print as 747 here and 746 in the terminal. */
export function toFixedEven(x: number, digits: number): string {
  const rounded = x.toFixed(digits);
  // toFixed is exact for any number of digits; 100 covers the whole expansion of the
  // values printed here, so a tie shows as "5" followed by zeros only.
  const exact = x.toFixed(100);
  const point = exact.indexOf(".");
  const rest = exact.slice(point + 1 + digits);
  if (!/^50*$/.test(rest)) return rounded;
  const kept = exact.slice(0, point + 1 + digits).replace(/\.$/, "");
  const last = kept.charCodeAt(kept.length - 1) - 48;
  return last % 2 === 0 ? kept : rounded;
}

/** `850ns`, `12.3µs`, `4.1ms`, `245ms`, `1.5s`, `2m03s` (the CLI's `format_duration`). */
export function formatDuration(nanos: number): string {
  if (nanos <= 0) return "0s";
  if (nanos < 1_000) return `${Math.round(nanos)}ns`;
  for (const [scale, unit] of [
    [1e3, "µs"],
    [1e6, "ms"],
  ] as const) {
    const value = nanos / scale;
    // Just below the rounding point, so 99.96 never prints as "100.0".
    if (value < 99.95) return `${toFixedEven(value, 1)}${unit}`;
    if (value < 999.5) return `${toFixedEven(value, 0)}${unit}`;
  }
  const seconds = nanos / 1e9;
  if (seconds < 59.95) return `${toFixedEven(seconds, 1)}s`;
  const total = Math.floor((nanos + 500_000_000) / 1_000_000_000);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor(total / 60) % 60;
  const secs = total % 60;
  const two = (n: number) => String(n).padStart(2, "0");
  return hours > 0 ? `${hours}h${two(minutes)}m${two(secs)}s` : `${minutes}m${two(secs)}s`;
}

/** `+3.2ms`, `-850ns`: the sign always shown. */
export function formatSignedDuration(nanos: number): string {
  return `${nanos < 0 ? "-" : "+"}${formatDuration(Math.abs(nanos))}`;
}

/** RFC 3339 with milliseconds in UTC, as the CLI's header prints the start. */
export function formatIsoMillis(unixMillis: number): string {
  return new Date(unixMillis).toISOString();
}

/** A local wall-clock time for lists: `14:03:22.517` today, with the date otherwise. */
export function formatLocalTime(unixMillis: number, now = Date.now()): string {
  const d = new Date(unixMillis);
  const time = d.toLocaleTimeString(undefined, { hour12: false }) + `.${String(d.getMilliseconds()).padStart(3, "0")}`;
  const sameDay = new Date(now).toDateString() === d.toDateString();
  return sameDay ? time : `${d.toLocaleDateString()} ${time}`;
}

/** `5s ago`, `3m ago`, `2h ago`, `4d ago`. */
export function formatAgo(unixMillis: number, now = Date.now()): string {
  const s = Math.max(0, Math.round((now - unixMillis) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

/** Parses what people type into a duration box (`250ms`, `1.5s`, `2m`, `100us`) into
 *  nanoseconds; `null` for anything else. The server accepts more; this only has to
 *  catch typos before a round trip. */
export function parseDurationText(text: string): number | null {
  const units: Record<string, number> = { ns: 1, us: 1e3, "µs": 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  const re = /(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m|h)/gy;
  const trimmed = text.trim();
  if (trimmed === "") return null;
  let total = 0;
  let pos = 0;
  re.lastIndex = 0;
  for (let m = re.exec(trimmed); m; m = re.exec(trimmed)) {
    total += Number(m[1]) * (units[m[2] ?? ""] ?? 0);
    pos = re.lastIndex;
  }
  return pos === trimmed.length ? total : null;
}
