"""Sends traces to clew with the real OpenTelemetry Python SDK and OTLP exporter.

Usage: send_traces.py --protocol grpc|http --endpoint URL --service NAME --traces N

Each trace has the same shape (a SERVER root, a CLIENT call, a PRODUCER with an event,
a CONSUMER in a second service linked to the producer, an INTERNAL span with an error).
Prints one JSON line: {"trace_ids": [...], "spans_per_trace": 5}.
"""
import argparse
import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode


def exporter(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def provider(protocol, endpoint, service):
    p = TracerProvider(resource=Resource.create({"service.name": service, "host.name": "test-host"}))
    p.add_span_processor(BatchSpanProcessor(exporter(protocol, endpoint)))
    return p


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=["grpc", "http"], required=True)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--traces", type=int, default=3)
    args = parser.parse_args()

    front = provider(args.protocol, args.endpoint, args.service)
    worker = provider(args.protocol, args.endpoint, args.service + "-worker")
    tracer = front.get_tracer("clew-tests", "1.0")
    worker_tracer = worker.get_tracer("clew-tests", "1.0")

    trace_ids = []
    for i in range(args.traces):
        with tracer.start_as_current_span(
            "GET /orders", kind=SpanKind.SERVER, attributes={"http.method": "GET", "order.index": i}
        ) as root:
            trace_ids.append(format(root.get_span_context().trace_id, "032x"))
            with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}):
                pass
            with tracer.start_as_current_span(
                "publish orders", kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "redis", "messaging.destination.name": "orders"},
            ) as producer:
                producer.add_event("message_sent", {"bytes": 42, "ratio": 0.5, "urgent": True})
                producer_ctx = producer.get_span_context()
                with worker_tracer.start_as_current_span(
                    "consume orders", kind=SpanKind.CONSUMER, links=[Link(producer_ctx, {"link.reason": "batch"})],
                    attributes={"messaging.system": "redis", "messaging.destination.name": "orders"},
                ):
                    pass
            with tracer.start_as_current_span("validate", kind=SpanKind.INTERNAL) as failing:
                failing.set_status(Status(StatusCode.ERROR, "order rejected"))

    ok = front.force_flush(10_000) and worker.force_flush(10_000)
    front.shutdown()
    worker.shutdown()
    print(json.dumps({"trace_ids": trace_ids, "spans_per_trace": 5, "flushed": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
