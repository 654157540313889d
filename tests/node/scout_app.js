"use strict";
// A small program instrumented with the real Node Scout APM agent (@scout_apm/scout-apm).
//
// Run by crates/clew-cli/tests/agent_scout_node.rs with SCOUT_* variables pointing the
// agent at clew's agent socket (launching and downloading Scout's own core-agent
// disabled):
//
//   SCOUT_MONITOR=true SCOUT_CORE_AGENT_LAUNCH=false SCOUT_CORE_AGENT_DOWNLOAD=false
//   SCOUT_SOCKET_PATH=/path/to/agent.sock   (or tcp://127.0.0.1:PORT)
//   SCOUT_NAME=... SCOUT_KEY=... SCOUT_HOSTNAME=...
//
// It records one background job and one web request, then shuts the agent down once every
// command has been answered. It exits non-zero if the agent answered anything with a
// failure, if a reply is missing, or if it takes longer than 30 s.

const scout = require("@scout_apm/scout-apm");

// The agent's own event names (types/enum.js of the package); the Scout instance forwards
// them from its socket pool.
const RESPONSE_RECEIVED = "agent-event-socket-response-received";
const REQUEST_SENT = "agent-event-request-sent";
const SOCKET_ERROR = "agent-event-socket-error";
const PARSE_ERROR = "agent-event-socket-response-parse-error";
const FAILURE = "v1-failure-response";

const watchdog = setTimeout(() => {
  console.error("scout_app: still running after 30 s");
  process.exit(3);
}, 30000);
watchdog.unref();

const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

async function main() {
  if (!process.env.SCOUT_SOCKET_PATH) {
    throw new Error("set SCOUT_SOCKET_PATH to the agent's unix socket path or tcp://HOST:PORT");
  }
  // The environment (SCOUT_*) takes precedence over this object in the agent's
  // configuration; it only supplies safe defaults. Log lines go to stdout/stderr at
  // SCOUT_LOG_LEVEL (none when unset).
  const defaults = { monitor: true, coreAgentLaunch: false, coreAgentDownload: false };
  const config = scout.buildScoutConfiguration(defaults);
  if (config.coreAgentLaunch || config.coreAgentDownload) {
    throw new Error("refusing to run with Scout's own core-agent launch or download enabled");
  }
  if (!config.monitor) {
    throw new Error("scout would not monitor: is SCOUT_MONITOR=false set?");
  }
  const instance = await scout.install(defaults, { logFn: scout.consoleLogFn });
  if (!instance || !instance.hasAgent()) {
    throw new Error("scout did not connect to the agent: is SCOUT_SOCKET_PATH right?");
  }

  const counts = { sent: 0, answered: 0 };
  const problems = [];
  instance.on(REQUEST_SENT, () => counts.sent++);
  instance.on(RESPONSE_RECEIVED, msg => {
    counts.answered++;
    if (msg.type === FAILURE) {
      problems.push(`failure reply: ${msg.message}`);
    }
  });
  instance.on(SOCKET_ERROR, err => problems.push(`socket error: ${err}`));
  instance.on(PARSE_ERROR, err => problems.push(`unreadable reply: ${err}`));

  // A background job: request tags of several JSON types, an SQL span with a nested span.
  await scout.api.BackgroundTransaction.run("nightly-report", async (finishRequest, { request }) => {
    await scout.api.Context.add("customer", "acme");
    await scout.api.Context.add("attempt", 2);
    await scout.api.Context.add("dry_run", false);
    await scout.api.Context.add("ratio", 0.25);
    await scout.api.instrument("SQL/load-orders", async (done, { span }) => {
      span.addContextSync("db.statement", "SELECT * FROM orders");
      span.addContextSync("rows", 3);
      await scout.api.instrument("Custom/decode", async (decoded, { span: decode }) => {
        decode.addContextSync("format", "json");
        await sleep(2);
        await decoded();
      });
      await done();
    });
    await scout.api.instrument("Custom/render", async done => {
      await done();
    });
    await finishRequest();
  });

  // A web request: the controller span with an SQL query and an outgoing HTTP call under it.
  await scout.api.WebTransaction.run("orders#index", async (finishRequest, { request }) => {
    await scout.api.Context.add("path", "/orders");
    await scout.api.Context.add("user_id", 42);
    if (process.env.JOIN_TRACEPARENT) {
      await scout.api.Context.add("traceparent", process.env.JOIN_TRACEPARENT);
    }
    await scout.api.instrument("SQL/Query", async (done, { span }) => {
      span.addContextSync("db.statement", "SELECT id FROM orders WHERE shop = $1");
      await done();
    });
    await scout.api.instrument("HTTP/GET", async (done, { span }) => {
      span.addContextSync("url", "http://inventory.internal/stock");
      await done();
    });
    await finishRequest();
  });

  // Every send above waited for its reply, but give a straggler a moment before closing.
  const deadline = Date.now() + 10000;
  while (counts.answered < counts.sent && Date.now() < deadline) {
    await sleep(20);
  }
  await instance.shutdown();

  console.log(`commands sent: ${counts.sent}, answered: ${counts.answered}`);
  if (counts.answered < counts.sent) {
    problems.push(`${counts.sent - counts.answered} commands were never answered`);
  }
  if (problems.length > 0) {
    throw new Error(problems.join("\n"));
  }
}

main().then(
  () => process.exit(0),
  err => {
    console.error(`scout_app failed: ${err && err.stack ? err.stack : err}`);
    process.exit(1);
  },
);
