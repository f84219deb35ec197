// Browser test of the plan board, driven by tests/api/plan_board.rs: the real vscc binary, the
// run's ClickHouse, Debian's headless Chromium through playwright-core. It checks what a
// person in front of the board would see, at 1920×1080 and 3840×2160. Screenshots go to
// target/screenshots/.
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.VENDOR_DIR + "/");
const { chromium } = require("playwright-core");

const { VSCC_BIN, CLICKHOUSE_URL, DATABASE, SPOOL_DIR, PORT, SCREENSHOTS } = process.env;
const base = `http://127.0.0.1:${PORT}`;
const token = "board-test-admin";
const fail = (msg) => { console.error("FAIL: " + msg); process.exitCode = 1; throw new Error(msg); };
const check = (cond, msg) => { if (!cond) fail(msg); else console.log("ok: " + msg); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const server = spawn(VSCC_BIN, ["serve"], {
  env: { ...process.env, VSCC_ADDR: `127.0.0.1:${PORT}`, VSCC__CLICKHOUSE__URL: CLICKHOUSE_URL,
    VSCC__CLICKHOUSE__DATABASE: DATABASE, VSCC__INGEST__SPOOL_DIR: SPOOL_DIR, VSCC_ADMIN_TOKEN: token,
    VSCC__STREAM__TICK_MS: "100", VSCC__SQL__USERS_DIR: process.env.SQL_USERS_DIR || "",
    VSCC__AUTH__SECRET_FILE: `${SPOOL_DIR}/auth-secret`, RUST_LOG: "warn" },
  stdio: ["ignore", "ignore", "inherit"],
});
const api = async (path, init = {}) => {
  const r = await fetch(base + path, { ...init, headers: { Authorization: "Bearer " + token, "Content-Type": "application/json", ...(init.headers || {}) } });
  if (!r.ok) fail(`${path} answered ${r.status}`);
  return r.json();
};
const at = () => new Date(Date.now() - 60000).toISOString();
const ev = (id, kind, org, data) => ({ id, kind, org, at: at(), data });

let browser;
try {
  for (let i = 0; ; i++) {
    try { if ((await fetch(base + "/readyz")).ok) break; } catch { /* not yet */ }
    if (i > 600) fail("server did not become ready");
    await sleep(100);
  }
  // A few records of old and new kinds, so that cells of several statuses show.
  await api("/api/v1/events", { method: "POST", body: JSON.stringify([
    ev("pb-s1", "staffing.reported", "440300", { approved_posts: 100, filled_posts: 99 }),
    ev("pb-s2", "staffing.reported", "440303", { approved_posts: 40, filled_posts: 20 }),
    ev("pb-l1", "legal_aid.station_reported", "440305", { established: true }),
    ev("pb-h1", "meeting.report_heard", "440305", {}),
    ev("pb-r1", "research.started", "440306", { project_id: "R-1" }),
    // Staffing short of its target in every district: cells with a deadline line, the tallest.
    ...["440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311", "440399"].map((d, i) =>
      ev(`pb-st-${d}`, "staffing.reported", d, { approved_posts: 50, filled_posts: 30 + i })),
    ...["440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311", "440399"].map((d) =>
      ev(`pb-cl-${d}`, "training.class_held", d, { class_id: `C-${d}` })),
  ]) });

  const catalogue = await api("/api/v1/catalogue");
  let rest = await api("/api/v1/metrics?scope=440300");
  const columns = Object.keys(rest.nodes);
  check(columns.length === 11, `REST gives the city and its 10 districts (${columns.length})`);

  mkdirSync(SCREENSHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"] });

  for (const [width, height] of [[1920, 1080], [3840, 2160]]) {
    const page = await browser.newPage({ viewport: { width, height } });
    const errors = [];
    page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(`${base}/screen/plan-board?token=${token}&norotate=1`);
    await page.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.rendered > 0, null, { timeout: 15000 });
    rest = await api("/api/v1/metrics?scope=440300"); // after the records of the pass before

    // Every metric is on one of the pages; every cell equals REST.
    const seen = new Set();
    const pages = await page.$$eval("#pager .page", (els) => els.length);
    let cells = 0;
    for (let p = 0; p < pages; p++) {
      await page.click(`#pager .page:nth-child(${p + 1})`);
      const shown = await page.$$eval("#board-body td.cell", (els) => els.map((e) => ({
        m: e.dataset.metric, code: e.dataset.code, v: e.dataset.value, status: e.dataset.status, na: e.classList.contains("na"),
      })));
      for (const c of shown) {
        seen.add(c.m);
        if (c.na) continue;
        const f = rest.nodes[c.code][c.m];
        const expected = f && f.value !== null ? String(f.value) : "";
        if (c.v !== expected || (f ? f.status : "no_data") !== c.status) {
          fail(`${c.code} ${c.m}: the board shows ${c.v} (${c.status}), REST ${expected} (${f && f.status})`);
        }
        cells++;
      }
      // Legible from across a room: nothing scrolls, and the value text is at least 2.4 % of the height.
      const fit = await page.evaluate(() => ({
        // The legend, last on the page, still inside the screen (the page itself never scrolls).
        overflow: Math.round(document.querySelector(".board-legend").getBoundingClientRect().bottom - innerHeight),
        font: parseFloat(getComputedStyle(document.querySelector("#board-body td.cell .v")).fontSize),
      }));
      check(fit.overflow <= 1 && fit.font >= height * 0.024, `${width}×${height} page ${p + 1}/${pages} fits (overflow ${fit.overflow}px) with ${fit.font}px values`);
      await page.screenshot({ path: `${SCREENSHOTS}/board-${width}x${height}-p${p + 1}.png` });
    }
    check(seen.size === catalogue.length, `${width}×${height}: all ${catalogue.length} metrics shown (${seen.size}); ${cells} cells equal REST`);
    check(errors.length === 0, `${width}×${height}: no console errors (${errors.join(" | ")})`);
    if (width === 3840) break;

    // A posted record changes its cell live.
    await page.click("#pager .page:nth-child(1)");
    const cell = '#board-body td.cell[data-metric="staffing_rate"][data-code="440304"]';
    const before = await page.$eval(cell, (e) => e.dataset.status);
    await api("/api/v1/events", { method: "POST", body: JSON.stringify([ev("pb-s3", "staffing.reported", "440304", { approved_posts: 50, filled_posts: 50 })]) });
    await page.waitForFunction((sel) => document.querySelector(sel).dataset.value === "1", cell, { timeout: 3000 })
      .catch(() => fail("the 福田 staffing cell did not change within 3 s"));
    check(before !== "met", `福田's staffing cell went from ${before} to 100% live`);

    // A click on a cell opens that district's screen for that metric: its trend from the
    // snapshots, with the target line and the deadline.
    const snap = await fetch(base + "/api/v1/jobs/snapshots", { method: "POST", headers: { Authorization: "Bearer " + token } });
    check(snap.ok, "the nightly snapshots ran");
    await page.click(cell);
    await page.waitForURL(/\/screen\/district\?/, { timeout: 5000 });
    await page.waitForFunction(() => window.__vscc && window.__vscc.rendered > 0 && window.__vscc.dashboard, null, { timeout: 15000 });
    const drilled = await page.evaluate(() => ({ scope: window.__vscc.scope, map: window.__vscc.dashboard.map_metrics, title: document.title }));
    check(drilled.scope === "440304" && drilled.map[0] === "staffing_rate" && drilled.title.includes("编制人员到位率"),
      `the click opens 福田's screen for staffing (${drilled.scope}, ${drilled.map}, ${drilled.title})`);
    await page.waitForFunction(() => window.__vscc.trendChart, null, { timeout: 10000 })
      .catch(() => fail("the metric's screen shows no trend"));
    const marks = await page.evaluate(() => window.__vscc.trendChart.getOption().series[0].markLine.data.map((d) => d.yAxis ?? d.xAxis));
    check(marks.includes(0.95) && marks.includes("2020-12-31"), `its trend carries the target and the deadline (${marks})`);
    await page.screenshot({ path: `${SCREENSHOTS}/board-drill-futian-staffing.png` });
  }

  // The daily brief: the snapshots of the day (run above), printable on A4.
  const brief = await api("/api/v1/brief");
  const page = await browser.newPage({ viewport: { width: 1240, height: 1754 } });
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(`${base}/brief?date=${brief.date}&token=${token}`);
  await page.waitForFunction(() => window.__vscc && window.__vscc.rendered > 0, null, { timeout: 15000 });
  const rows = await page.$$eval("#figures tbody tr", (els) => els.map((e) => ({ m: e.dataset.metric, v: e.dataset.value })));
  check(rows.length === brief.metrics.length && rows.every((r) => {
    const m = brief.metrics.find((x) => x.id === r.m);
    return r.v === (m.day && m.day.value !== null ? String(m.day.value) : "");
  }), `the brief of ${brief.date} shows its ${rows.length} metrics as the snapshot has them`);
  check(errors.length === 0, `the brief loads without errors (${errors.join(" | ")})`);
  await page.screenshot({ path: `${SCREENSHOTS}/brief.png`, fullPage: true });
  await page.pdf({ path: `${SCREENSHOTS}/brief.pdf`, format: "A4", printBackground: true });
  check(true, "the brief printed to A4 PDF");
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  const exited = new Promise((r) => server.once("exit", r));
  server.kill("SIGTERM");
  await exited;
}
