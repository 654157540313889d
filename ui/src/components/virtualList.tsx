// Windowed rendering: only the rows in (and just around) the viewport are in the DOM, so
// a 50,000-span trace costs as much to scroll as a 50-span one. Rows have one fixed
// height, which keeps the position of row i a multiplication instead of a measurement.

import type { ComponentChildren } from "preact";
import { useEffect, useLayoutEffect, useRef, useState } from "preact/hooks";

const OVERSCAN = 12;

export interface ScrollRequest {
  index: number;
  /** Changes on every request, so asking for the same row twice scrolls twice. */
  seq: number;
}

export function VirtualList(props: {
  count: number;
  rowHeight: number;
  renderRow: (index: number, top: number) => ComponentChildren;
  scrollTo?: ScrollRequest | null;
  class?: string;
  label?: string;
}) {
  const { count, rowHeight } = props;
  const ref = useRef<HTMLDivElement>(null);
  const [scrollTop, setScrollTop] = useState(0);
  const [height, setHeight] = useState(800);
  const frame = useRef(0);

  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    setHeight(el.clientHeight);
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    return () => observer.disconnect();
  }, []);

  useEffect(() => {
    const el = ref.current;
    const req = props.scrollTo;
    if (!el || !req || req.index < 0) return;
    const top = req.index * rowHeight;
    // Only move when the row is out of view; centre it then, so its context shows.
    if (top < el.scrollTop || top + rowHeight > el.scrollTop + el.clientHeight) {
      el.scrollTop = Math.max(0, top - el.clientHeight / 2 + rowHeight / 2);
      setScrollTop(el.scrollTop);
    }
  }, [props.scrollTo?.seq]);

  const onScroll = () => {
    // One state update per frame, however many scroll events the browser sends.
    if (frame.current) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = 0;
      if (ref.current) setScrollTop(ref.current.scrollTop);
    });
  };

  // When rows vanish (a subtree collapsed) the browser clamps its scroll position before
  // the scroll event reports it; clamp here too, or this render would draw nothing.
  const top = Math.min(scrollTop, Math.max(0, count * rowHeight - height));
  const first = Math.max(0, Math.floor(top / rowHeight) - OVERSCAN);
  const last = Math.min(count, Math.ceil((top + height) / rowHeight) + OVERSCAN);
  const rows: ComponentChildren[] = [];
  for (let i = first; i < last; i++) rows.push(props.renderRow(i, i * rowHeight));

  return (
    <div ref={ref} class={`vlist ${props.class ?? ""}`} onScroll={onScroll} role="list" aria-label={props.label}>
      <div class="vlist-spacer" style={{ height: `${count * rowHeight}px` }}>
        {rows}
      </div>
    </div>
  );
}
