"use strict";
// A small program instrumented with the real OpenTelemetry JS SDK (@opentelemetry/sdk-trace-node
// and the OTLP exporters from npm, pinned in package.json), for
// crates/clew-cli/tests/otel_node.rs.
//
//   node otel_app.js --exporter json|proto|grpc --endpoint URL [--compression gzip]
//                    [--service NAME] [--scenario shop|non-finite]
//   (or OTEL_APP_EXPORTER, OTEL_APP_ENDPOINT, OTEL_APP_COMPRESSION, OTEL_APP_SERVICE,
//   OTEL_APP_SCENARIO)
//
// json:  @opentelemetry/exporter-trace-otlp-http (OTLP/HTTP JSON, its default), URL
//        http://HOST:PORT/v1/traces
// proto: @opentelemetry/exporter-trace-otlp-proto (OTLP/HTTP protobuf), same URL
// grpc:  @opentelemetry/exporter-trace-otlp-grpc, URL http://HOST:PORT
//
// The "shop" scenario (the default) records two traces with one BatchSpanProcessor, so
// every span goes out in one export request:
//
//   trace "main", service resource below, two instrumentation scopes
//     GET /orders/{id}        SERVER   root; attributes of every type; links to "tick"
//       SELECT orders         CLIENT   event "rows.fetched" with attributes; error status
//                                      and recordException
//       publish order.created PRODUCER explicit start/end times, injects its context into
//                                      a message's headers
//         process order.created CONSUMER (scope "clew-test-messaging") extracted from the
//                                      headers: a child of the producer with a remote parent
//   trace "tick"
//     scheduler.tick          INTERNAL the span the root links to
//
// The "non-finite" scenario records one span, "calibrate sensor", whose double attributes
// are NaN, Infinity and -Infinity (valid attribute values the SDK exports as they are over
// protobuf; OTLP/JSON cannot carry them).
//
// Then it force-flushes and shuts down, and prints one JSON document on stdout: the trace
// ids, the resource's attributes and every span exactly as the exporter was handed it
// (ids in hex, times in Unix nanoseconds as decimal strings, OTLP kind numbers; NaN and
// the infinities print as null) and each export's result. It exits non-zero if any export failed or a span is missing, and after
// 30 s in any case.

const api = require("@opentelemetry/api");
const { NodeTracerProvider } = require("@opentelemetry/sdk-trace-node");
const { BatchSpanProcessor } = require("@opentelemetry/sdk-trace-base");
const { defaultResource, resourceFromAttributes } = require("@opentelemetry/resources");
const { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } = require("@opentelemetry/semantic-conventions");

const watchdog = setTimeout(() => {
  console.error("otel_app: still running after 30 s");
  process.exit(3);
}, 30000);
watchdog.unref();

function option(name, variable) {
  const flag = `--${name}`;
  const at = process.argv.indexOf(flag);
  if (at >= 0 && at + 1 < process.argv.length) {
    return process.argv[at + 1];
  }
  return process.env[variable];
}

const exporterKind = option("exporter", "OTEL_APP_EXPORTER");
const endpoint = option("endpoint", "OTEL_APP_ENDPOINT");
const compression = option("compression", "OTEL_APP_COMPRESSION") || "none";
if (!exporterKind || !endpoint) {
  console.error("usage: node otel_app.js --exporter json|proto|grpc --endpoint URL [--compression gzip]");
  process.exit(2);
}
const serviceName = option("service", "OTEL_APP_SERVICE") || `checkout-node-${exporterKind}`;
const scenario = option("scenario", "OTEL_APP_SCENARIO") || "shop";

// Export problems the SDK only logs go to stderr, so a failing run says why.
api.diag.setLogger(new api.DiagConsoleLogger(), api.DiagLogLevel.WARN);

function makeExporter() {
  const config = { url: endpoint, timeoutMillis: 10000, compression };
  switch (exporterKind) {
    case "json":
      return new (require("@opentelemetry/exporter-trace-otlp-http").OTLPTraceExporter)(config);
    case "proto":
      return new (require("@opentelemetry/exporter-trace-otlp-proto").OTLPTraceExporter)(config);
    case "grpc":
      return new (require("@opentelemetry/exporter-trace-otlp-grpc").OTLPTraceExporter)(config);
    default:
      throw new Error(`unknown exporter ${exporterKind}: json, proto or grpc`);
  }
}

// The real exporter, wrapped to keep what it was handed and what it answered.
const exported = [];
const results = [];
const inner = makeExporter();
const recordingExporter = {
  export(spans, resultCallback) {
    exported.push(...spans);
    inner.export(spans, result => {
      results.push({
        // ExportResultCode.SUCCESS is 0 (@opentelemetry/core).
        code: result.code,
        spans: spans.length,
        error: result.error ? String(result.error.stack || result.error) : null,
      });
      resultCallback(result);
    });
  },
  shutdown() {
    return inner.shutdown();
  },
  forceFlush() {
    return inner.forceFlush ? inner.forceFlush() : Promise.resolve();
  },
};

const resource = defaultResource().merge(
  resourceFromAttributes({
    [ATTR_SERVICE_NAME]: serviceName,
    [ATTR_SERVICE_VERSION]: "1.4.2",
    "deployment.environment.name": "e2e",
    "clew.test.shard": 3,
  }),
);

const provider = new NodeTracerProvider({
  resource,
  spanProcessors: [
    new BatchSpanProcessor(recordingExporter, {
      // Everything in one request, sent by forceFlush.
      maxExportBatchSize: 512,
      scheduledDelayMillis: 60000,
    }),
  ],
});
// The global tracer provider, context manager (async hooks) and W3C propagator.
provider.register();

const httpTracer = api.trace.getTracer("clew-test-http", "1.0.0");
const messagingTracer = api.trace.getTracer("clew-test-messaging", "0.3.0");

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

/** Now as [seconds, nanoseconds], the digits below the millisecond set to `subMilli`. */
function hrTimeNow(subMilli) {
  const now = Date.now();
  return [Math.floor(now / 1000), (now % 1000) * 1000000 + subMilli];
}

/** The "shop" scenario; returns the ids of its two traces. */
async function shop() {
  // A separate trace, for the link.
  const tick = httpTracer.startSpan("scheduler.tick", {
    kind: api.SpanKind.INTERNAL,
    root: true,
    attributes: { "scheduler.name": "orders-sync" },
  });
  tick.end();
  const tickContext = tick.spanContext();

  const root = httpTracer.startSpan("GET /orders/{id}", {
    kind: api.SpanKind.SERVER,
    root: true,
    attributes: {
      "http.request.method": "GET",
      "http.route": "/orders/{id}",
      "http.response.status_code": 200,
      "order.total": 1234.5,
      "order.discount_ratio": 0.125,
      "order.gift": true,
      "order.express": false,
      "order.tags": ["priority", "eu", "gift-wrap"],
      "order.line_counts": [1, 2, 40],
      "order.weights": [0.5, 1.25],
      "order.flags": [true, false],
      "order.big_id": Number.MAX_SAFE_INTEGER,
      "order.adjustment": -42,
    },
    links: [
      {
        // The tick's context with a tracestate, to see it kept on the link.
        context: { ...tickContext, traceState: api.createTraceState("clew=t61rcWkgMzE,vendor=v1") },
        attributes: { "link.reason": "scheduled-by", "link.attempt": 2 },
      },
    ],
  });
  const rootContext = api.trace.setSpan(api.context.active(), root);

  await api.context.with(rootContext, async () => {
    const query = httpTracer.startSpan("SELECT orders", {
      kind: api.SpanKind.CLIENT,
      attributes: { "db.system.name": "postgresql", "db.query.text": "SELECT * FROM orders WHERE id = $1" },
    });
    await sleep(5);
    query.addEvent("rows.fetched", {
      "db.rows": 3,
      "db.fetch_ms": 4.75,
      "db.cached": false,
      "db.tables": ["orders", "order_lines"],
      "db.note": "first page",
    });
    const failure = new TypeError("connection reset by peer");
    query.recordException(failure);
    query.setStatus({ code: api.SpanStatusCode.ERROR, message: "query failed: connection reset" });
    query.end();

    // The message leaves with the producer's context in its headers…
    const producer = messagingTracer.startSpan(
      "publish order.created",
      {
        kind: api.SpanKind.PRODUCER,
        attributes: { "messaging.system": "clew-bus", "messaging.destination.name": "order.created" },
        // Explicit times (every nanosecond digit set): the SDK keeps them as given.
        startTime: hrTimeNow(123457),
      },
      api.context.active(),
    );
    const headers = {};
    api.propagation.inject(api.trace.setSpan(api.context.active(), producer), headers);
    await sleep(3);
    producer.end(hrTimeNow(987654));

    // …and the consumer continues it from there (a remote parent).
    const consumed = api.propagation.extract(api.ROOT_CONTEXT, headers);
    const consumer = messagingTracer.startSpan(
      "process order.created",
      {
        kind: api.SpanKind.CONSUMER,
        attributes: {
          "messaging.system": "clew-bus",
          "messaging.destination.name": "order.created",
          "messaging.message.body.size": 512,
        },
      },
      consumed,
    );
    await sleep(2);
    consumer.setStatus({ code: api.SpanStatusCode.OK });
    consumer.end();
  });
  root.end();
  return { trace_id: root.spanContext().traceId, linked_trace_id: tickContext.traceId, spans: 5 };
}

/** The "non-finite" scenario: one span with NaN and infinite double attributes. */
async function nonFinite() {
  const span = httpTracer.startSpan("calibrate sensor", {
    kind: api.SpanKind.INTERNAL,
    root: true,
    attributes: {
      "sensor.id": "s-7",
      "sensor.reading": NaN,
      "sensor.max": Infinity,
      "sensor.min": -Infinity,
      "sensor.gain": 1.5,
    },
  });
  span.end();
  return { trace_id: span.spanContext().traceId, linked_trace_id: null, spans: 1 };
}

async function main() {
  const scenarios = { shop, "non-finite": nonFinite };
  if (!scenarios[scenario]) {
    throw new Error(`unknown scenario ${scenario}: shop or non-finite`);
  }
  const recorded = await scenarios[scenario]();

  await provider.forceFlush();
  await provider.shutdown();

  const nanos = hr => (BigInt(Math.trunc(hr[0])) * 1000000000n + BigInt(Math.trunc(hr[1]))).toString();
  const attributes = attrs => attrs || {};
  const report = {
    exporter: exporterKind,
    endpoint,
    compression,
    scenario,
    service: serviceName,
    trace_id: recorded.trace_id,
    linked_trace_id: recorded.linked_trace_id,
    resource: resource.attributes,
    results,
    spans: exported.map(span => ({
      name: span.name,
      trace_id: span.spanContext().traceId,
      span_id: span.spanContext().spanId,
      parent_span_id: span.parentSpanContext ? span.parentSpanContext.spanId : null,
      parent_is_remote: span.parentSpanContext ? Boolean(span.parentSpanContext.isRemote) : null,
      // The API's SpanKind has no UNSPECIFIED: OTLP's number is one more.
      kind: span.kind + 1,
      trace_flags: span.spanContext().traceFlags,
      start_unix_nano: nanos(span.startTime),
      end_unix_nano: nanos(span.endTime),
      status: { code: span.status.code, message: span.status.message || "" },
      attributes: attributes(span.attributes),
      events: span.events.map(event => ({
        name: event.name,
        time_unix_nano: nanos(event.time),
        attributes: attributes(event.attributes),
      })),
      links: span.links.map(link => ({
        trace_id: link.context.traceId,
        span_id: link.context.spanId,
        trace_state: link.context.traceState ? link.context.traceState.serialize() : "",
        attributes: attributes(link.attributes),
      })),
      scope: { name: span.instrumentationScope.name, version: span.instrumentationScope.version || "" },
    })),
  };
  console.log(JSON.stringify(report));

  const failed = results.filter(r => r.code !== 0);
  if (failed.length > 0 || results.length === 0) {
    console.error(`otel_app: ${failed.length} of ${results.length} exports failed: ${JSON.stringify(failed)}`);
    process.exitCode = 1;
  } else if (exported.length !== recorded.spans) {
    console.error(`otel_app: ${exported.length} spans exported, ${recorded.spans} expected`);
    process.exitCode = 1;
  }
}

main().catch(error => {
  console.error("otel_app:", error);
  process.exitCode = 1;
});
