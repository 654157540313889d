// Service colours. The CLI picks one of eight ANSI colours by a 32-bit FNV-1a hash of
// the service name (crates/clew-cli/src/render.rs, `Paint::service`); the UI uses the
// same hash and the same eight slots, so "striker is magenta" holds in the terminal and
// in the browser, across traces and restarts. Red and yellow stay free for errors and
// warnings, as in the CLI.

// In the CLI's palette order: green, blue, magenta, cyan, then their bright variants.
const PALETTE = [
  "#2f9e44", // 32 green
  "#1c6fd1", // 34 blue
  "#a33ea1", // 35 magenta
  "#0e8f9e", // 36 cyan
  "#7cb518", // 92 bright green
  "#5b8cff", // 94 bright blue
  "#d45fcf", // 95 bright magenta
  "#2fc1cf", // 96 bright cyan
] as const;

export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) {
    h = Math.imul(h ^ b, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const cache = new Map<string, string>();

export function serviceColor(service: string): string {
  let colour = cache.get(service);
  if (colour === undefined) {
    colour = PALETTE[fnv1a32(service) % PALETTE.length] ?? PALETTE[0];
    cache.set(service, colour);
  }
  return colour;
}

export const ERROR_COLOR = "#d92d20";
export const CHANNEL_COLOR = "#7a5af8";

/** The service colour darkened for text on white: the bright slots are for bars. */
export function textColor(colour: string): string {
  return `color-mix(in srgb, ${colour} 78%, #000)`;
}
