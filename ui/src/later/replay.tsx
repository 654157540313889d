// Reserved places for what arrives with the replay and registry APIs (issue 7, points 5
// and 6). The routes exist so that the URLs can be handed out now and keep working; the
// pages say plainly that nothing is behind them yet, and never show invented data.
//
// When the replay API lands:
//   - /trace/{id}/replay?at=N  → ReplayPage: a stepper over the replay timeline, the
//     snapshot at index N (open spans per service, services alive/dead, messages in
//     flight), "jump to first fault". The trace page's toolbar gets a "Replay" link
//     (see TRACE_PAGE_EXTRAS in pages/trace.tsx).
//   - /diff/{a}/{b}            → DiffPage: structure and duration differences.
// When the registry API lands:
//   - a lifecycle badge per trace (search results, trace header) and a lifecycle filter
//     in the search form (see LIFECYCLE_SLOT in pages/search.tsx), plus a page of
//     active and orphaned traces (a new route, e.g. /lifecycle).

import { Link } from "../router";

function NotYet(props: { what: string; back: string; backLabel: string }) {
  return (
    <div class="notice">
      <h2>{props.what}: not available yet</h2>
      <p>This view arrives with the replay API. The address is reserved so links made today keep working.</p>
      <p>
        <Link href={props.back}>{props.backLabel}</Link>
      </p>
    </div>
  );
}

export function ReplayPage(props: { traceId: string }) {
  return <NotYet what="Time travel" back={`/trace/${props.traceId}`} backLabel="Open the trace instead" />;
}

export function DiffPage(props: { a: string; b: string }) {
  return <NotYet what="Trace diff" back={`/trace/${props.a}`} backLabel="Open the first trace" />;
}
