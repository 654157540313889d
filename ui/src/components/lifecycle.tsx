// The lifecycle registry's verdict on a trace, as a badge. "Orphaned" is not a state of
// its own in the registry (the watchdog marks the trace ERRORED and stamps
// `orphaned_at_ms`), but it is the one people look for, so it wins over ERRORED.

import { formatLocalTime } from "../format";
import type { Lifecycle } from "../model";

export type BadgeKind = "active" | "completed" | "errored" | "orphaned";

export function badgeKind(l: Lifecycle): BadgeKind {
  if (l.orphaned_at_ms !== null) return "orphaned";
  if (l.state === "ERRORED") return "errored";
  if (l.state === "COMPLETED") return "completed";
  return "active";
}

function badgeLabel(l: Lifecycle): string {
  if (l.orphaned_at_ms !== null) return "ORPHANED";
  return l.state === "RECEIVED" ? "ACTIVE" : l.state.replace("_", " ");
}

export function lifecycleTitle(l: Lifecycle): string {
  const parts = [`${l.state} · created ${formatLocalTime(l.created_at_ms)}`];
  if (l.finished_at_ms !== null) parts.push(`finished ${formatLocalTime(l.finished_at_ms)}`);
  if (l.orphaned_at_ms !== null) parts.push(`marked orphaned ${formatLocalTime(l.orphaned_at_ms)}`);
  if (l.error) parts.push(l.error);
  return parts.join(" · ");
}

export function LifecycleBadge(props: { lifecycle: Lifecycle | null | undefined }) {
  const l = props.lifecycle;
  if (!l) return null;
  const kind = badgeKind(l);
  return (
    <span class={`lc-badge lc-${kind}`} data-state={kind} title={lifecycleTitle(l)}>
      {badgeLabel(l)}
    </span>
  );
}
