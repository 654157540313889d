"""A small program instrumented with the real scout-apm Python agent.

Run by tests/scout_python.rs with SCOUT_* variables pointing the agent at a clew agent
(launching and downloading Scout's own core-agent disabled). It records one background
job and one web request, then waits until the agent has answered every queued command.
"""

import os
import sys
import time

import scout_apm.api as scout
from scout_apm.api import BackgroundTransaction, Context, WebTransaction, instrument
from scout_apm.core.agent.socket import CoreAgentSocketThread


def main():
    if not scout.install():
        sys.exit("scout_apm did not start: is SCOUT_MONITOR=true set?")

    with BackgroundTransaction("nightly-report"):
        Context.add("customer", "acme")
        Context.add("attempt", 2)
        Context.add("dry_run", False)
        Context.add("ratio", 0.25)
        with instrument("load-orders", kind="SQL", tags={"rows": 3}) as load:
            load.tag("db.statement", "SELECT * FROM orders")
            with instrument("decode", tags={"format": "json"}):
                time.sleep(0.002)
        with instrument("render"):
            pass

    with WebTransaction("orders#index"):
        Context.add("path", "/orders")
        Context.add("traceparent", os.environ["JOIN_TRACEPARENT"])
        with instrument("GET inventory", kind="HTTP"):
            pass

    # Commands are sent by a background thread, and task_done() is called only after the
    # agent's reply was read; wait for that rather than for the queue to look empty.
    deadline = time.time() + 20
    while CoreAgentSocketThread._command_queue.unfinished_tasks and time.time() < deadline:
        time.sleep(0.02)
    left = CoreAgentSocketThread._command_queue.unfinished_tasks
    print("unanswered commands:", left, flush=True)
    sys.exit(1 if left else 0)


if __name__ == "__main__":
    main()
