// End-to-end test of clew's UI in a real headless Chromium (Debian's package, driven by
// playwright-core; no browser is downloaded).
//
//   node ui/e2e/run.mjs --base-url http://127.0.0.1:16686 --fixtures fixtures.json \
//        [--screenshots DIR] [--chromium /usr/bin/chromium]
//
// The fixtures file (written by crates/clew-cli/tests/ui_browser.rs, which also loads
// the traces into clew) names the seed's two drone traces and a 50,000-span trace, and
// carries `clew trace show`'s output for the intercept trace so the text tab can be
// compared with it. Exits 0 when every check passes; otherwise prints what failed,
// saves a screenshot of the page as it was, and exits 1.

import { mkdtempSync, readFileSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: args } = parseArgs({
  options: {
    "base-url": { type: "string" },
    fixtures: { type: "string" },
    screenshots: { type: "string" },
    chromium: { type: "string", default: process.env.CHROMIUM ?? "/usr/bin/chromium" },
  },
});
if (!args["base-url"] || !args.fixtures) {
  console.error("usage: node ui/e2e/run.mjs --base-url URL --fixtures FILE [--screenshots DIR]");
  process.exit(2);
}
const base = args["base-url"].replace(/\/$/, "");
const fx = JSON.parse(readFileSync(args.fixtures, "utf8"));
const shots = args.screenshots;
if (shots) mkdirSync(shots, { recursive: true });

class CheckFailed extends Error {}
function check(condition, message) {
  if (!condition) throw new CheckFailed(message);
}

const WAIT = { timeout: 30_000 };
const profile = mkdtempSync(join(tmpdir(), "clew-e2e-"));
// The flags this machine needs: no sandbox as root, and none of Chromium's own network
// traffic (it would be refused, many connections at a time).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: args.chromium,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
  ],
  viewport: { width: 1440, height: 900 },
});
const page = context.pages()[0] ?? (await context.newPage());
const problems = [];
page.on("pageerror", (e) => problems.push(`uncaught exception: ${e.message}`));
page.on("console", (m) => {
  // A 404 from the API is how "trace not found" is checked; the page handles it.
  if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) problems.push(`console error: ${m.text()}`);
});

const rows = (selector = "") => page.locator(`.wf-row${selector}`);
const count = (selector) => page.locator(selector).count();
const url = () => new URL(page.url());
async function screenshot(name) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`) });
}

let current = "start";
async function step(name, body) {
  current = name;
  const t0 = performance.now();
  await body();
  console.log(`ok   ${name} (${Math.round(performance.now() - t0)} ms)`);
}

const I = fx.intercept;
const L = fx.lock;
const B = fx.big;
const R = fx.rejected;
const O = fx.orphans;
// The real demo's traces, from `clew demo --once` run twice into the same store: once
// healthy, once with ares down.
const D = fx.demo;
const DD = fx.demoAresDown;

/** The trace ids on the search page, once they include every one of `want`. */
async function resultsIncluding(want) {
  await page.waitForFunction(
    (want) => {
      const ids = [...document.querySelectorAll(".result")].map((e) => e.dataset.traceId);
      return want.every((id) => ids.includes(id));
    },
    want,
    WAIT,
  );
  return page.$$eval(".result", (els) => els.map((e) => e.dataset.traceId));
}

/** The lifecycle badge's kind on a search result, or null when it has none. */
const resultState = (id) => page.locator(`.result[data-trace-id="${id}"] .lc-badge`).getAttribute("data-state", { timeout: 2_000 }).catch(() => null);

try {
  await step("search finds both drone traces", async () => {
    await page.goto(`${base}/search`);
    await page.waitForSelector(".result", WAIT);
    const found = await page.$$eval(".result", (els) => els.map((e) => e.dataset.traceId));
    check(found.includes(I.traceId) && found.includes(L.traceId), `search results ${found} lack a drone trace`);
    check(found.includes(B.traceId), "the 50k-span trace is not listed");
    const intercept = page.locator(`.result[data-trace-id="${I.traceId}"]`);
    check((await intercept.locator(".result-title").innerText()) === "drone-cmd: calculate_intercept_commands", "intercept root");
    check((await intercept.locator(".chip").count()) === 6, "the intercept trace involves six services");
    check((await intercept.locator(".errors").innerText()) === "1 error", "the intercept trace has one error");
    check((await count(".scatter .dot")) === found.length, "one scatter dot per trace");
  });

  await step("search filters: service from the form, attribute from the URL", async () => {
    await page.selectOption("select[name=service]", "ares");
    await page.click("form.search-form button[type=submit]");
    await page.waitForURL(/service=ares/, WAIT);
    // The fixture's intercept and the healthy demo's involve ares; with ares down, the
    // demo's intercept never reaches it.
    const withAres = await resultsIncluding([I.traceId, D.intercept]);
    check(!withAres.includes(L.traceId) && !withAres.includes(DD.intercept), `service=ares found ${withAres}`);
    await page.goto(`${base}/search?attr=${encodeURIComponent("ops_team=fpv-ops-alpha")}&lookback=15m`);
    // The demo's fpv-ops is team alpha too; the rejected rerun is bravo.
    const alpha = await resultsIncluding([L.traceId]);
    check(!alpha.includes(R.traceId) && !alpha.includes(I.traceId), `ops_team=fpv-ops-alpha found ${alpha}`);
    check((await page.inputValue("input[name=attrs]")) === "ops_team=fpv-ops-alpha", "the form shows the URL's filter");
    check((await page.inputValue("select[name=lookback]")) === "15m", "the form shows the URL's time range");
  });

  await step("search page screenshot, scatter dot opens a trace", async () => {
    await page.goto(`${base}/search`);
    await page.waitForSelector(".result", WAIT);
    await screenshot("search");
    await page.click(`circle.dot[data-trace-id="${I.traceId}"]`);
    await page.waitForURL(`**/trace/${I.traceId}`, WAIT);
  });

  await step("trace view shows the death notice fan-out", async () => {
    await page.waitForSelector('.wf-row[data-name="publish_death_striker"]', WAIT);
    check((await rows().count()) === I.spans, `expected ${I.spans} rows, got ${await rows().count()}`);
    const producer = rows('[data-name="publish_death_striker"]');
    check((await producer.getAttribute("data-kind")) === "Producer", "publish_death_striker is a PRODUCER");
    const badge = (await producer.locator(".fanout").innerText()).trim();
    check(badge === "→ 3 consumers on death-knell", `fan-out badge says ${JSON.stringify(badge)}`);
    await producer.click();
    await page.waitForSelector(`.detail[data-span-id="${I.deathStriker}"]`, WAIT);
    check(url().searchParams.get("span") === I.deathStriker, "the selected span is in the URL");
    const consumers = await page.$$eval(".detail .consumers .span-ref", (els) => els.map((e) => e.textContent.trim()));
    for (const want of ["tower-sidecar: tower_receive_death-knell", "striker: consume_death-knell", "drone-cmd: consume_death-knell"]) {
      check(consumers.includes(want), `consumers ${JSON.stringify(consumers)} lack ${want}`);
    }
    check((await page.locator(".detail .channel").first().innerText()).includes("death-knell"), "the channel is named");
    check((await rows(".error").getAttribute("data-service")) === "orlan", "orlan's failed consumer is marked as an error");
    check((await rows('[data-name="execute_intercept"]').locator(".ev").count()) === 1, "events are marked on the bar");
    await screenshot("trace");
  });

  await step("critical path and clock skew are shown and switchable", async () => {
    const critical = await page.$$eval(".wf-row.critical", (els) => els.map((e) => e.dataset.name));
    for (const want of ["calculate_intercept_commands", "execute_intercept", "receive_prayer", "execute_judgment"]) {
      check(critical.includes(want), `critical path ${JSON.stringify(critical)} lacks ${want}`);
    }
    check(!critical.includes("send_lock_ack"), "the lock ack is off the critical path");
    await page.click("input[name=critical]");
    await page.waitForFunction(() => document.querySelectorAll(".wf-row.critical").length === 0, null, WAIT);
    check(url().searchParams.get("cp") === "off", "cp=off in the URL");
    await page.click("input[name=critical]");

    const summary = await page.locator(".skew-summary").innerText();
    check(summary.includes("ares +8.0ms"), `skew summary says ${JSON.stringify(summary)}`);
    check((await rows('[data-service="ares"]').locator(".skew-badge").count()) === 2, "both ares receive_prayer spans carry a skew badge");
    await page.click("input[name=skew]");
    await page.waitForFunction(() => document.querySelector(".skew-summary")?.textContent === "times as recorded", null, WAIT);
    check(url().searchParams.get("skew") === "off", "skew=off in the URL");
    check((await count(".skew-badge")) === 0, "no skew badges with the adjustment off");
    await page.click("input[name=skew]");
    await page.waitForFunction(() => document.querySelectorAll(".skew-badge").length === 2, null, WAIT);
  });

  await step("expanding and collapsing", async () => {
    const consumers = () => count('.wf-row[data-name="consume_death-knell"]');
    check((await consumers()) === 4, "four death-knell consumers visible");
    const toggle = rows('[data-name="publish_death_striker"]').locator(".toggle");
    await toggle.click();
    check((await toggle.getAttribute("aria-expanded")) === "false", "collapsed");
    check((await consumers()) === 2, "the collapsed producer's consumers are hidden");
    check((await rows('[data-name="publish_death_striker"]').locator(".hidden-count").innerText()) === "+4", "hidden count");
    await toggle.click();
    check((await consumers()) === 4, "expanded again");
    // The same from the keyboard: ← closes the selected span, → opens it, ↓ moves on.
    await rows('[data-name="publish_death_striker"]').click();
    await page.keyboard.press("ArrowLeft");
    check((await consumers()) === 2, "← collapses the selected span");
    await page.keyboard.press("ArrowRight");
    check((await consumers()) === 4, "→ expands it");
    await page.keyboard.press("ArrowDown");
    await page.waitForSelector('.wf-row.selected[data-name="tower_receive_death-knell"]', WAIT);
    await page.click("text=Collapse all");
    check((await rows().count()) === 1, "collapse all leaves the root");
    await page.click("text=Expand all");
    check((await rows().count()) === I.spans, "expand all shows every span");
  });

  await step("links navigate across traces", async () => {
    await rows('[data-name="calculate_intercept_commands"]').click();
    await page.click(".detail .span-link");
    await page.waitForURL(`**/trace/${L.traceId}?span=${L.droneCmdConsumer}`, WAIT);
    await page.waitForSelector(`.wf-row.selected[data-span-id="${L.droneCmdConsumer}"]`, WAIT);
    await page.waitForSelector(`.detail[data-span-id="${L.droneCmdConsumer}"]`, WAIT);
    await page.goBack();
    await page.waitForURL(`**/trace/${I.traceId}?span=${I.root}`, WAIT);
    await page.waitForSelector(`.detail[data-span-id="${I.root}"]`, WAIT);
  });

  await step("the text tab is exactly `clew trace show`", async () => {
    await page.goto(`${base}/trace/${I.traceId}?view=text`);
    const text = async () => {
      await page.waitForSelector(".text-line", WAIT);
      const href = await page.locator(".text-tools a[download]").getAttribute("href");
      return page.evaluate((u) => fetch(u).then((r) => r.text()), href);
    };
    const compare = (got, want, label) => {
      if (got === want) return;
      const g = got.split("\n");
      const w = want.split("\n");
      const i = g.findIndex((line, k) => line !== w[k]);
      throw new CheckFailed(`${label}: line ${i + 1} differs\n  ui:  ${JSON.stringify(g[i])}\n  cli: ${JSON.stringify(w[i])}`);
    };
    compare(await text(), I.textSkewOn, "skew adjusted");
    await page.click("input[name=skew]");
    await page.waitForFunction(() => document.querySelector(".skew-summary")?.textContent === "times as recorded", null, WAIT);
    compare(await text(), I.textSkewOff, "--no-skew-adjust");
  });

  await step("orphans hang under visible placeholders, as in the CLI", async () => {
    await page.goto(`${base}/trace/${fx.orphans.traceId}`);
    await page.waitForSelector(".wf-row", WAIT);
    check((await rows(".placeholder").count()) === 2, "one placeholder per missing parent");
    check((await rows(".placeholder").first().innerText()).includes("(not received)"), "placeholders say what they are");
    const facts = await page.locator(".trace-facts").innerText();
    check(facts.includes("2 orphaned under 2 missing parents"), `trace facts: ${facts}`);
    await page.click("text=Text tree");
    await page.waitForSelector(".text-line", WAIT);
    const href = await page.locator(".text-tools a[download]").getAttribute("href");
    const text = await page.evaluate((u) => fetch(u).then((r) => r.text()), href);
    check(text === fx.orphans.text, `text tab differs from clew trace show:\n${text}\n---\n${fx.orphans.text}`);
  });

  await step("deep links open directly", async () => {
    await page.goto(`${base}/trace/${I.traceId}?span=${I.deathOrlan}`);
    await page.waitForSelector(`.detail[data-span-id="${I.deathOrlan}"]`, WAIT);
    await page.waitForSelector(`.wf-row.selected[data-span-id="${I.deathOrlan}"]`, WAIT);
    await page.goto(`${base}/search?service=ares`);
    await resultsIncluding([I.traceId]);
    check((await page.inputValue("select[name=service]")) === "ares", "service filter restored from the URL");
    await page.goto(`${base}/trace/${I.traceId}/replay?at=3`);
    await page.waitForSelector('.stepper-pos[data-at="3"]', WAIT);
    await page.waitForSelector('.snapshot[data-index="3"]', WAIT);
    await page.waitForSelector('.event-list li.current[data-index="3"]', WAIT);
    await page.goto(`${base}/diff/${L.traceId}/${R.traceId}`);
    await page.waitForSelector(".edit", WAIT);
    await page.goto(`${base}/trace/ffffffffffffffffffffffffffffffff`);
    await page.waitForSelector("text=Trace not found", WAIT);
  });

  await step(`the ${B.spans}-span trace opens and scrolls`, async () => {
    const t0 = performance.now();
    await page.goto(`${base}/trace/${B.traceId}`);
    await page.waitForSelector(".wf-row", { timeout: 120_000 });
    console.log(`     opened in ${Math.round(performance.now() - t0)} ms`);
    check((await page.locator(".trace-facts").innerText()).includes(`${B.spans} spans`), "the header counts every span");
    const inDom = await rows().count();
    check(inDom > 10 && inDom < 200, `${inDom} rows in the DOM`);
    const height = await page.$eval(".wf-rows .vlist-spacer", (e) => e.getBoundingClientRect().height);
    check(Math.round(height) === B.spans * 28, `the list is ${height}px tall for ${B.spans} rows`);
    // A few wheel turns, as a reader would scroll, then the end.
    await page.hover(".wf-rows");
    for (let i = 0; i < 10; i++) await page.mouse.wheel(0, 2_000);
    await page.waitForFunction(() => Number(document.querySelector(".wf-row")?.dataset.node) > 0, null, WAIT);
    const t1 = performance.now();
    await page.$eval(".wf-rows", (e) => {
      e.scrollTop = e.scrollHeight;
    });
    await page.waitForSelector(`.wf-row[data-span-id="${B.lastSpanId}"]`, WAIT);
    console.log(`     jumped to the last row in ${Math.round(performance.now() - t1)} ms`);
    await screenshot("large-trace");
    const after = await rows().count();
    check(after < 200, `${after} rows in the DOM after scrolling`);
    await page.click("text=Collapse all");
    check((await rows().count()) === 1, "collapse all on the large trace");
    await page.click("text=Expand all");
    await page.waitForSelector(".wf-row", WAIT);
  });

  await step("the service map shows services and channels", async () => {
    await page.goto(`${base}/map`);
    await page.waitForSelector(".map-node", WAIT);
    const nodes = await page.$$eval(".map-node", (els) => els.map((e) => `${e.dataset.kind}:${e.dataset.name}`));
    for (const want of [
      "channel:death-knell",
      "channel:drone_command",
      "channel:striker_control_channel",
      "channel:striker_lock_response_channel",
      "service:ares",
      "service:orlan",
      "service:fpv-ops",
      "service:tower-sidecar",
    ]) {
      check(nodes.includes(want), `map nodes ${JSON.stringify(nodes)} lack ${want}`);
    }
    check((await count('.edge.has-errors[data-from="death-knell"][data-to="orlan"]')) === 1, "the failed delivery to orlan is an error edge");
    check((await count('.edge[data-from="fpv-ops"][data-to="ares"]')) === 1, "the TCP call fpv-ops → ares is an edge");
    await screenshot("map");
    await page.click('.map-node[data-name="ares"]');
    await page.waitForURL(/\/search\?service=ares/, WAIT);
  });


  await step("time travel: stepping changes the snapshot, and the first fault is reached", async () => {
    await page.goto(`${base}/trace/${I.traceId}`);
    await page.click(".toolbar a:text('Replay')");
    await page.waitForURL(`**/trace/${I.traceId}/replay`, WAIT);
    await page.waitForSelector('.snapshot[data-index="0"]', WAIT);
    const snapshotText = () => page.locator(".snapshot").innerText();
    const first = await snapshotText();
    await page.click("button[name=next]");
    await page.waitForURL(/at=1$/, WAIT);
    await page.waitForSelector('.snapshot[data-index="1"]', WAIT);
    check((await snapshotText()) !== first, "the snapshot after event 1 is not the one after event 0");
    await page.keyboard.press("ArrowRight");
    await page.waitForURL(/at=2$/, WAIT);
    await page.waitForSelector('.snapshot[data-index="2"]', WAIT);
    await page.waitForSelector('.event-list li.current[data-index="2"]', WAIT);
    await page.keyboard.press("ArrowLeft");
    await page.waitForURL(/at=1$/, WAIT);
    // Orlan's consumer fails as its process exits: the only fault of the trace.
    const button = page.locator("button[name=first-fault]");
    check(!(await button.isDisabled()), "the intercept trace has a first fault");
    await button.click();
    await page.waitForURL(/at=\d+$/, WAIT);
    const at = url().searchParams.get("at");
    check(at !== "1", "the jump moved");
    await page.waitForSelector(`.snapshot[data-index="${at}"]`, WAIT);
    await page.waitForSelector(`.event-list li.current.fault[data-index="${at}"]`, WAIT);
    const lastError = await page.locator(".snapshot .last-error").innerText();
    check(lastError.includes("orlan"), `the last fault is orlan's: ${lastError}`);
    check((await count('.snap-services tr[data-service="orlan"][data-status="exited"]')) === 1, "orlan's process has exited");
    await screenshot("replay");
    // Before the fault there is none.
    await page.keyboard.press("ArrowLeft");
    await page.waitForSelector(`.snapshot[data-index="${Number(at) - 1}"]`, WAIT);
    check((await count(".snapshot .last-error")) === 0, "no fault before the first one");
  });

  await step("search (service drone-cmd) finds the demo's intercept traces and lock request", async () => {
    await page.goto(`${base}/search`);
    await page.waitForSelector(".result", WAIT);
    await page.selectOption("select[name=service]", "drone-cmd");
    await page.click("form.search-form button[type=submit]");
    await page.waitForURL(/service=drone-cmd/, WAIT);
    const want = [D.intercept, DD.intercept, D.lockRequest, DD.lockRequest];
    const found = await resultsIncluding(want);
    check(!found.includes(O.traceId) && !found.includes(B.traceId), `service=drone-cmd found ${found}`);
    for (const id of [D.intercept, DD.intercept]) {
      const title = await page.locator(`.result[data-trace-id="${id}"] .result-title`).innerText();
      check(title === "drone-cmd: calculate_intercept_commands", `demo intercept ${id} is titled ${JSON.stringify(title)}`);
    }
    const lock = await page.locator(`.result[data-trace-id="${D.lockRequest}"] .result-title`).innerText();
    check(lock === "fpv-ops: publish_lock_request_striker", `the demo's lock request is titled ${JSON.stringify(lock)}`);
  });

  await step("the demo's intercept trace shows the death notice fan-out", async () => {
    await page.goto(`${base}/trace/${D.intercept}`);
    await page.waitForSelector('.wf-row[data-name="publish_death_striker"]', WAIT);
    const producer = rows('[data-name="publish_death_striker"]');
    check((await producer.getAttribute("data-kind")) === "Producer", "the demo's publish_death_striker is a PRODUCER");
    const badge = (await producer.locator(".fanout").innerText()).trim();
    check(badge === "→ 3 consumers on death-knell", `the demo's fan-out badge says ${JSON.stringify(badge)}`);
  });

  await step("time travel on the ares-down demo run reaches the first fault", async () => {
    await page.goto(`${base}/trace/${DD.intercept}/replay`);
    await page.waitForSelector('.snapshot[data-index="0"]', WAIT);
    const button = page.locator("button[name=first-fault]");
    check(!(await button.isDisabled()), "the ares-down intercept trace has a first fault");
    await button.click();
    await page.waitForURL(/at=\d+$/, WAIT);
    const at = url().searchParams.get("at");
    await page.waitForSelector(`.snapshot[data-index="${at}"]`, WAIT);
    const fault = page.locator(`.event-list li.current.fault[data-index="${at}"]`);
    await fault.waitFor(WAIT);
    const faultText = await fault.innerText();
    const lastError = await page.locator(".snapshot .last-error").innerText();
    check(
      faultText.includes("send_prayer_tcp") || lastError.includes("send_prayer_tcp"),
      `the first fault is not on send_prayer_tcp: event ${JSON.stringify(faultText)}, last error ${JSON.stringify(lastError)}`,
    );
  });

  await step("the diff view shows the changed span between two runs", async () => {
    // Picking the second trace from a search that remembers the first.
    await page.goto(`${base}/trace/${L.traceId}`);
    await page.click(".compare a");
    await page.waitForURL(`**/search?compare=${L.traceId}`, WAIT);
    await page.waitForSelector(`.result[data-trace-id="${R.traceId}"] .diff-link`, WAIT);
    check((await count(`.result[data-trace-id="${L.traceId}"] .diff-link`)) === 0, "no diff of a trace with itself");
    await page.click(`.result[data-trace-id="${R.traceId}"] .diff-link`);
    await page.waitForURL(`**/diff/${L.traceId}/${R.traceId}`, WAIT);
    await page.waitForSelector(".edit", WAIT);
    const edits = await page.$$eval(".edit", (els) => els.map((e) => `${e.dataset.op} ${e.dataset.path} ${e.innerText}`));
    check(
      edits.some((e) => e.startsWith("changed ") && e.includes("drone-cmd/consume_striker_control_channel") && e.includes("status")),
      `no changed status on drone-cmd's consumer in ${JSON.stringify(edits)}`,
    );
    const slower = await page.$$eval(".durations tr[data-path]", (els) => els.map((e) => e.dataset.path));
    check(slower.some((p) => p.includes("striker/consume_striker_control_channel")), `durations ${JSON.stringify(slower)} lack striker's consumer`);
    check((await count(".divergence")) === 1, "the first divergence is named");
    await screenshot("diff");
    // The same from the trace page's box, by id.
    await page.goto(`${base}/trace/${R.traceId}`);
    await page.fill("input[name=compare]", L.traceId);
    await page.press("input[name=compare]", "Enter");
    await page.waitForURL(`**/diff/${R.traceId}/${L.traceId}`, WAIT);
    await page.waitForSelector('.edit[data-op="changed"]', WAIT);
  });

  await step("lifecycle badges on search results and the trace header", async () => {
    // The server completes a trace a quiet period after its root ends; by now every
    // trace with a root has had it. The crashed publisher's trace has no root: active.
    const want = { [I.traceId]: "errored", [L.traceId]: "completed", [B.traceId]: "completed", [R.traceId]: "errored", [O.traceId]: "active" };
    let got = {};
    for (let attempt = 0; attempt < 30; attempt++) {
      await page.goto(`${base}/search`);
      await page.waitForSelector(".result", WAIT);
      got = {};
      for (const id of Object.keys(want)) got[id] = await resultState(id);
      if (Object.keys(want).every((id) => got[id] === want[id])) break;
      await page.waitForTimeout(1_000);
    }
    check(Object.keys(want).every((id) => got[id] === want[id]), `lifecycle badges ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    await page.goto(`${base}/trace/${R.traceId}`);
    await page.waitForSelector(".trace-head .lc-badge", WAIT);
    check((await page.locator(".trace-head .lc-badge").innerText()) === "ERRORED", "the rejected lock's header says ERRORED");
  });

  await step("a sweep orphans the crashed publisher's trace; the filter and /lifecycle find it", async () => {
    await page.goto(`${base}/lifecycle`);
    await page.waitForSelector(`[data-list="active"] tr[data-trace-id="${O.traceId}"]`, WAIT);
    check((await count('[data-list="active"] tbody tr')) === 1, "only the rootless trace is active");
    const report = await page.evaluate(() => fetch("/api/clew/lifecycle/sweep?threshold=0s", { method: "POST" }).then((r) => r.json()));
    check(JSON.stringify(report).includes(O.traceId), `the sweep did not orphan ${O.traceId}: ${JSON.stringify(report)}`);

    await page.goto(`${base}/search`);
    await page.selectOption("select[name=state]", "orphaned");
    await page.click("form.search-form button[type=submit]");
    await page.waitForURL(/state=orphaned/, WAIT);
    await page.waitForFunction(
      (id) => {
        const r = [...document.querySelectorAll(".result")];
        return r.length === 1 && r[0].dataset.traceId === id;
      },
      O.traceId,
      WAIT,
    );
    check((await resultState(O.traceId)) === "orphaned", "the result's badge says orphaned");
    await page.goto(`${base}/search?state=completed`);
    await page.waitForSelector(".result", WAIT);
    // The fixtures' finished traces, and the demo runs' (their lifecycle was kept in the
    // data directory), but none that errored or was orphaned.
    const completed = await page.$$eval(".result", (els) => els.map((e) => e.dataset.traceId));
    check(
      [L.traceId, B.traceId].every((id) => completed.includes(id)) &&
        ![I.traceId, R.traceId, O.traceId].some((id) => completed.includes(id)),
      `state=completed found ${completed}`,
    );
    for (const id of completed) check((await resultState(id)) === "completed", `${id} in the completed filter is ${await resultState(id)}`);

    await page.click("text=Lifecycle");
    await page.waitForURL("**/lifecycle", WAIT);
    await page.waitForSelector(`[data-list="orphans"] tr[data-trace-id="${O.traceId}"]`, WAIT);
    check((await count('[data-list="active"] tbody tr')) === 0, "nothing is active after the sweep");
    await screenshot("lifecycle");
    await page.click(`[data-list="orphans"] tr[data-trace-id="${O.traceId}"] a`);
    await page.waitForURL(`**/trace/${O.traceId}`, WAIT);
    await page.waitForSelector('.trace-head .lc-badge[data-state="orphaned"]', WAIT);
    check((await page.locator(".lc-reason").innerText()).startsWith("Lifecycle: "), "the header says why");
  });

  check(problems.length === 0, `the page reported problems:\n  ${problems.join("\n  ")}`);
  console.log("all UI checks passed");
} catch (e) {
  console.error(`FAIL ${current}: ${e instanceof CheckFailed ? e.message : e.stack}`);
  if (problems.length > 0) console.error(`page problems:\n  ${problems.join("\n  ")}`);
  if (shots) await page.screenshot({ path: join(shots, "failure.png") }).catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
