// Browser test of the plan board, driven by tests/api/plan_board.rs: the real vscc binary, the
// run's ClickHouse, Debian's headless Chromium through playwright-core. It checks what a
// person in front of the board would see, at 1920×1080 and 3840×2160. Screenshots go to
// target/screenshots/.
import { SCREENSHOTS, base, check, fail, startServer, waitReady, stopServer, apiAs, record, launch, openPage } from "./harness.mjs";

const token = "board-test-admin";
const server = startServer(token);
const api = apiAs(token);
const ev = record;

let browser;
try {
  await waitReady();
  // A few records of old and new kinds, so that cells of several statuses show.
  await api("/api/v1/events", { method: "POST", body: JSON.stringify([
    ev("pb-s1", "staffing.reported", "440300", { approved_posts: 100, filled_posts: 99 }),
    ev("pb-s2", "staffing.reported", "440303", { approved_posts: 40, filled_posts: 20 }),
    ev("pb-l1", "legal_aid.station_reported", "440305", { established: true }),
    ev("pb-h1", "meeting.report_heard", "440305", {}),
    ev("pb-r1", "research.started", "440306", { project_id: "R-1" }),
    // Five days ago: the snapshots then cover past days, and a past day's brief can be opened.
    { ...ev("pb-old", "staffing.reported", "440306", { approved_posts: 80, filled_posts: 40 }), at: new Date(Date.now() - 5 * 86400000).toISOString() },
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

  browser = await launch();

  for (const [width, height] of [[1920, 1080], [3840, 2160]]) {
    const page = await openPage(browser, width, height);
    const errors = page.errors;
    await page.goto(`${base}/screen/plan-board?token=${token}&norotate=1`);
    await page.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.rendered > 0, null, { timeout: 15000 });
    rest = await api("/api/v1/metrics?scope=440300"); // after the records of the pass before

    // Every metric is on one of the pages; every cell equals REST.
    const seen = new Set();
    const pages = await page.$$eval("#pager .page", (els) => els.length);
    let cells = 0;
    for (let p = 0; p < pages; p++) {
      await page.click(`#pager .page:nth-child(${p + 1})`);
      if (await page.$eval("#scorecard", (e) => !e.hidden)) {
        // The first page: the scorecard, equal to the API's, whole on the screen.
        const card = await api("/api/v1/scorecard?scope=440300");
        const shownCard = await page.evaluate(() => ({
          counts: Object.fromEntries([...document.querySelectorAll(".score-line:first-child .count")].map((c) => [c.dataset.status, Number(c.querySelector("b").textContent)])),
          clauses: [...document.querySelectorAll(".clauses tbody tr")].map((tr) => tr.dataset.clause),
          deadlines: Object.fromEntries([...document.querySelectorAll(".deadlines tbody tr")].map((tr) => [tr.dataset.metric, tr.querySelector(".own").dataset.outcome])),
          bottom: Math.round(document.querySelector(".board-legend").getBoundingClientRect().bottom - innerHeight),
        }));
        check(JSON.stringify(shownCard.counts) === JSON.stringify(card.overall.scope)
          && shownCard.clauses.length === card.clauses.length
          && card.deadlines.every((d) => shownCard.deadlines[d.metric] === d.nodes.find((n) => n.code === "440300").outcome)
          && shownCard.bottom <= 1,
          `${width}×${height}: the scorecard opens the board, equal to the API (${JSON.stringify(shownCard.counts)}, ${shownCard.clauses.length} clauses, ${card.deadlines.length} one-off targets), whole on the screen`);
        await page.screenshot({ path: `${SCREENSHOTS}/board-${width}x${height}-scorecard.png` });
        continue;
      }
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

    // A posted record changes its cell live (the first page of rows, after the scorecard).
    await page.click("#pager .page:nth-child(2)");
    const cell = '#board-body td.cell[data-metric="staffing_rate"][data-code="440304"]';
    const before = await page.$eval(cell, (e) => e.dataset.status);
    await api("/api/v1/events", { method: "POST", body: JSON.stringify([ev("pb-s3", "staffing.reported", "440304", { approved_posts: 50, filled_posts: 50 })]) });
    await page.waitForFunction((sel) => document.querySelector(sel).dataset.value === "1", cell, { timeout: 3000 })
      .catch(() => fail("the 福田 staffing cell did not change within 3 s"));
    check(before !== "met", `福田's staffing cell went from ${before} to 100% live`);

    // A click on a cell opens that district's page for that metric: its trend from the
    // snapshots, with the target line and the deadline.
    const snap = await fetch(base + "/api/v1/jobs/snapshots", { method: "POST", headers: { Authorization: "Bearer " + token } });
    check(snap.ok, "the nightly snapshots ran");
    await page.click(cell);
    await page.waitForURL(/\/metric\/staffing_rate\?/, { timeout: 5000 });
    await page.waitForFunction(() => window.__vscc && window.__vscc.rendered > 0 && window.__vscc.dashboard, null, { timeout: 15000 });
    const drilled = await page.evaluate(() => ({ scope: window.__vscc.scope, map: window.__vscc.dashboard.map_metrics, title: document.title }));
    check(drilled.scope === "440304" && drilled.map[0] === "staffing_rate" && drilled.title.includes("编制人员到位率"),
      `the click opens 福田's page for staffing (${drilled.scope}, ${drilled.map}, ${drilled.title})`);
    await page.waitForFunction(() => window.__vscc.trendChart, null, { timeout: 10000 })
      .catch(() => fail("the metric's screen shows no trend"));
    const marks = await page.evaluate(() => window.__vscc.trendChart.getOption().series[0].markLine.data.map((d) => d.yAxis ?? d.xAxis));
    check(marks.includes(0.95) && marks.includes("2020-12-31"), `its trend carries the target and the deadline (${marks})`);
    await page.screenshot({ path: `${SCREENSHOTS}/board-drill-futian-staffing.png` });
  }

  // The daily brief: the snapshots of the day (run above), on a screen at both sizes and
  // printable on A4, with the map of the districts coloured by their metrics at risk.
  // A past day (the day before the newest), as that day's snapshots have it.
  const days = await api("/api/v1/brief/days");
  check(days.length >= 5, `the snapshots cover ${days.length} days`);
  const brief = await api("/api/v1/brief?date=" + days[1]);
  for (const [width, height] of [[1920, 1080], [3840, 2160], [1240, 1754]]) {
    const page = await openPage(browser, width, height);
    await page.goto(`${base}/brief?date=${brief.date}&token=${token}`);
    await page.waitForFunction(() => window.__vscc && window.__vscc.rendered > 0, null, { timeout: 15000 });
    // The metrics with a target in the table, the tracked ones in the line under it.
    const rows = await page.$$eval("#figures tbody tr, #tracked .item", (els) => els.map((e) => ({ m: e.dataset.metric, v: e.dataset.value })));
    check(rows.length === brief.metrics.length && rows.every((r) => {
      const m = brief.metrics.find((x) => x.id === r.m);
      return r.v === (m.day && m.day.value !== null ? String(m.day.value) : "");
    }), `${width}×${height}: the brief of ${brief.date} shows its ${rows.length} metrics as the snapshot has them`);
    // The map: every district, with the count of its metrics at risk or missed that day.
    const expected = {};
    for (const m of brief.metrics) for (const c of m.children) expected[c.code] = (expected[c.code] || 0) + (c.status === "at_risk" || c.status === "missed" ? 1 : 0);
    const map = await page.evaluate(() => ({ shown: !document.getElementById("map-box").hidden, counts: window.__vscc.counts,
      areas: document.querySelectorAll("#map svg path").length }));
    check(map.shown && map.areas >= 10 && JSON.stringify(map.counts) === JSON.stringify(expected),
      `${width}×${height}: the brief's map colours the 10 districts by metrics at risk (${JSON.stringify(map.counts)})`);
    check(page.errors.length === 0, `${width}×${height}: the brief loads without errors (${page.errors.join(" | ")})`);
    await page.screenshot({ path: `${SCREENSHOTS}/brief-${width}x${height}.png`, fullPage: true });
    if (width === 1240) {
      // Printed as the nightly job prints it (its own @page: A4, margins): one sheet.
      await page.emulateMedia({ media: "print" });
      await page.setViewportSize({ width: Math.round((210 - 24) * 96 / 25.4), height: 1000 }); // A4 less its margins
      const tall = await page.evaluate(() => Math.round(document.getElementById("brief").getBoundingClientRect().height * 25.4 / 96));
      const pdf = await page.pdf({ path: `${SCREENSHOTS}/brief.pdf`, preferCSSPageSize: true, printBackground: true });
      const sheets = (pdf.toString("latin1").match(/\/Type \/Page(?!s)/g) || []).length;
      check(sheets === 1, `the brief prints on one A4 sheet (${sheets}; the page is ${tall} mm tall)`);
    }
    await page.close();
  }
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  await stopServer(server);
}
