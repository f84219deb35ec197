// Browser test of "one truth at a glance", driven by tests/api/one_truth.rs: after a simulated
// history, the status of every node × metric reads the same on the wall screen, the plan
// board, the metric's page and the daily brief (and equals REST); no text of a wall page is
// smaller than 2.4 % of the screen's height at 1920×1080 and 3840×2160; the duty console
// groups alerts by rule and district and names them; a district's wall shows its own alerts.
import { spawn } from "node:child_process";
import { SCREENSHOTS, base, check, fail, startServer, waitReady, stopServer, apiAs, launch, openPage, VSCC_BIN } from "./harness.mjs";

const token = "one-truth-admin";
const api = apiAs(token);
const server = startServer(token, { VSCC__ALERTS__EVAL_INTERVAL_MS: "500" });
const shanghaiToday = () => new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10);
let browser;

// Every visible piece of text of the page: its font size (px) and what it says (a sample).
const textSizes = () => {
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const e = n.parentElement;
    const r = e.getBoundingClientRect();
    const style = getComputedStyle(e);
    if (r.width === 0 || r.height === 0 || style.visibility === "hidden" || e.closest("[hidden]")) continue;
    if (r.bottom < 0 || r.top > innerHeight) continue; // scrolled out of the ticker
    out.push({ size: parseFloat(style.fontSize), text: n.textContent.trim().slice(0, 24), tag: e.tagName + "." + e.className });
  }
  return out;
};
// The font sizes an ECharts chart on the page draws its text at (map labels, axes, legends).
const chartSizes = () => {
  const sizes = [];
  for (const chart of [window.__vscc.mapChart, window.__vscc.trendChart].filter(Boolean)) {
    const o = chart.getOption();
    for (const s of o.series || []) if (s.label && s.label.show !== false && s.label.fontSize) sizes.push(["series label", s.label.fontSize]);
    for (const a of [].concat(o.xAxis || [], o.yAxis || [])) if (a.axisLabel && a.axisLabel.fontSize) sizes.push(["axis", a.axisLabel.fontSize]);
    for (const l of o.legend || []) if (l.textStyle && l.textStyle.fontSize) sizes.push(["legend", l.textStyle.fontSize]);
  }
  return sizes;
};
async function legible(page, what, height) {
  const min = height * 0.024;
  const small = (await page.evaluate(textSizes)).filter((t) => t.size < min - 0.01);
  const charts = (await page.evaluate(chartSizes)).filter(([, s]) => s < min - 0.01);
  check(small.length === 0 && charts.length === 0,
    `${what}: no text under 2.4 % of ${height}px (${min.toFixed(1)}px)${small.length ? ": " + JSON.stringify(small.slice(0, 5)) : ""}${charts.length ? " charts: " + JSON.stringify(charts) : ""}`);
}

try {
  await waitReady();
  // Four years of the simulated city, as the demo has it (small scale), then the nightly jobs.
  const t0 = Date.now();
  await new Promise((resolve, reject) => {
    const sim = spawn(VSCC_BIN, ["simulate", "--server", base, "--token", token, "--scale", "0.01", "--until", shanghaiToday()],
      { stdio: ["ignore", "ignore", "inherit"], env: { ...process.env, RUST_LOG: "warn" } });
    sim.on("exit", (code) => (code === 0 ? resolve() : reject(new Error("simulate exited " + code))));
  });
  const jobs = await fetch(base + "/api/v1/jobs/all", { method: "POST", headers: { Authorization: "Bearer " + token } });
  check(jobs.ok, `a simulated history was posted and the nightly jobs ran (${Math.round((Date.now() - t0) / 1000)} s)`);

  const catalogue = await api("/api/v1/catalogue");
  const rest = (await api("/api/v1/metrics?scope=440300")).nodes;
  const codes = Object.keys(rest);
  const DISTRICTS = codes.filter((c) => c !== "440300");
  // What REST says: the truth every page must tell.
  const truth = {};
  for (const code of codes) for (const m of catalogue) if (rest[code][m.id]) truth[code + "/" + m.id] = rest[code][m.id].status;
  const untracked = Object.entries(truth).filter(([k, s]) => s === "on_track" && catalogue.find((m) => k.endsWith("/" + m.id)).target === null);
  check(untracked.length === 0, `no metric without a target reads on_track (${untracked.length}); ${Object.values(truth).filter((s) => s === "tracked").length} figures read tracked`);
  const seen = {}; // "code/metric" → {page: status}
  const saw = (code, metric, page, status) => { (seen[code + "/" + metric] = seen[code + "/" + metric] || {})[page] = status; };

  browser = await launch();
  for (const [width, height] of [[1920, 1080], [3840, 2160]]) {
    const page = await openPage(browser, width, height);
    // The plan board: every cell, every page.
    await page.goto(`${base}/board?token=${token}&norotate=1`);
    await page.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.scorecard, null, { timeout: 20000 });
    const pages = await page.$$eval("#pager .page", (els) => els.length);
    for (let p = 0; p < pages; p++) {
      await page.click(`#pager .page:nth-child(${p + 1})`);
      for (const c of await page.$$eval("#board-body td.cell:not(.na)", (els) => els.map((e) => [e.dataset.code, e.dataset.metric, e.dataset.status]))) {
        saw(c[0], c[1], "board", c[2]);
      }
      await legible(page, `${width}×${height} board page ${p + 1}`, height);
      await page.screenshot({ path: `${SCREENSHOTS}/one-truth-board-${width}x${height}-p${p + 1}.png` });
    }
    if (width === 3840) {
      // At 4K, the size of the text is what is checked: one wall screen, one metric page.
      for (const path of ["/?norotate=1", "/metric/open_appeals?"]) {
        await page.goto(`${base}${path}&token=${token}`);
        await page.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.rendered > 0 && window.__vscc.trendChart, null, { timeout: 20000 });
        await legible(page, `${width}×${height} ${path}`, height);
        await page.screenshot({ path: `${SCREENSHOTS}/one-truth-${path.replace(/\W+/g, "_")}-${width}x${height}.png` });
      }
      await page.close();
      break;
    }
    // Every metric on the wall screen (its map and league show it) and on its own page.
    for (const m of catalogue) {
      await page.goto(`${base}/?metric=${m.id}&norotate=1&token=${token}`);
      await page.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.rendered > 0, null, { timeout: 20000 });
      const wall = await page.evaluate((metric) => ({
        tile: (document.querySelector(`.tile[data-metric="${metric}"]`) || {}).dataset,
        league: [...document.querySelectorAll("#league tr[data-code]")].map((tr) => [tr.dataset.code, tr.dataset.status]),
        map: window.__vscc.mapChart.getOption().series[0].data.map((d) => [d.name, d.status]),
      }), m.id);
      if (wall.tile && wall.tile.status) saw("440300", m.id, "wall tile", wall.tile.status);
      for (const [code, status] of wall.league) saw(code, m.id, "wall league", status);
      for (const [code, status] of wall.map) if (truth[code + "/" + m.id]) saw(code, m.id, "wall map", status);
      if (m.id === "open_appeals") await legible(page, `${width}×${height} wall screen`, height);

      await page.goto(`${base}/metric/${m.id}?token=${token}`);
      await page.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.rendered > 0, null, { timeout: 20000 });
      const own = await page.evaluate(() => ({
        tile: document.querySelector("#tiles .tile").dataset.status,
        league: [...document.querySelectorAll("#league tr[data-code]")].map((tr) => [tr.dataset.code, tr.dataset.status]),
      }));
      if (truth["440300/" + m.id]) saw("440300", m.id, "metric page", own.tile);
      for (const [code, status] of own.league) saw(code, m.id, "metric league", status);
      if (m.id === "staffing_rate") {
        await page.waitForFunction(() => window.__vscc.trendChart, null, { timeout: 10000 });
        await legible(page, `${width}×${height} metric page`, height);
      }
    }
    // The brief of today (the snapshot the jobs just wrote): the city's status of every metric.
    await page.goto(`${base}/brief?token=${token}`);
    await page.waitForFunction(() => window.__vscc && window.__vscc.rendered > 0, null, { timeout: 15000 });
    const brief = await page.evaluate(() => ({
      date: window.__vscc.brief.date,
      rows: [...document.querySelectorAll("#figures tbody tr, #tracked .item")].map((e) => [e.dataset.metric, e.dataset.status]),
    }));
    check(brief.date === shanghaiToday(), `the brief is today's (${brief.date})`);
    for (const [metric, status] of brief.rows) saw("440300", metric, "brief", status);
    // A district's brief speaks of the district.
    await page.goto(`${base}/brief?scope=440304&token=${token}`);
    await page.waitForFunction(() => window.__vscc && window.__vscc.rendered > 0, null, { timeout: 15000 });
    const district = await page.evaluate(() => ({
      title: document.getElementById("title").textContent, scope: document.getElementById("scope").textContent,
      risks: document.getElementById("risks").textContent, links: [...document.querySelectorAll("#history a")].map((a) => a.getAttribute("href")),
      rows: [...document.querySelectorAll("#figures tbody tr, #tracked .item")].map((e) => [e.dataset.metric, e.dataset.status]),
    }));
    for (const [metric, status] of district.rows) saw("440304", metric, "district brief", status);
    check(district.title.startsWith("福田区") && district.scope === "福田区" && !/市未达标|个区/.test(district.risks)
      && district.links.every((l) => l.includes("scope=440304")),
      `福田's brief speaks of 福田: its name, "区…", "… 个街道", links that keep the scope (${district.risks.slice(0, 60)}…)`);
    const cityOnly = catalogue.filter((m) => !m.levels.includes("district")).map((m) => m.id);
    check(district.rows.every(([m]) => !cityOnly.includes(m)), `福田's brief leaves out the city-only metrics (${cityOnly.join(", ")})`);
    await page.screenshot({ path: `${SCREENSHOTS}/one-truth-brief-440304.png`, fullPage: true });
    await page.close();
  }

  // One answer per node × metric, on every page that shows it, equal to REST.
  let compared = 0;
  const disagree = [];
  for (const [key, pages] of Object.entries(seen)) {
    const want = truth[key];
    for (const [where, status] of Object.entries(pages)) {
      compared++;
      if (status !== want) disagree.push(`${key}: ${where} ${status}, REST ${want}`);
    }
  }
  const metricsSeen = new Set(Object.keys(seen).map((k) => k.split("/")[1]));
  check(disagree.length === 0 && metricsSeen.size === catalogue.length,
    `every metric (${metricsSeen.size}/${catalogue.length}) reads the same status on the wall, the board, its page and the brief: ${compared} readings of ${Object.keys(seen).length} node × metric pairs${disagree.length ? " — " + disagree.slice(0, 8).join("; ") : ""}`);
  const statuses = new Set(Object.values(truth));
  check(["met", "missed", "tracked"].every((s) => statuses.has(s)), `the history gives several statuses (${[...statuses].join(", ")})`);

  // The duty console: groups by rule and district, named, with breach dates from the data.
  let alerts;
  for (let i = 0; i < 60; i++) {
    alerts = await api("/api/v1/alerts?state=firing");
    if (alerts.groups.length > 0 && alerts.groups.some((g) => g.rule === "appeals_overdue")) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  check(alerts.groups.some((g) => g.rule === "appeals_overdue"), `alerts fire on the simulated history (${alerts.alerts.length} in ${alerts.groups.length} groups)`);
  const street = alerts.alerts.find((a) => a.level === "street");
  check(street && alerts.groups.find((g) => g.key === street.rule + "/" + street.district).alerts.some((a) => a.fingerprint === street.fingerprint),
    `a street's alert (${street && street.node_name}) is inside its district's group (${street && street.district_name})`);
  const duty = await openPage(browser, 1920, 1080);
  await duty.goto(`${base}/duty?token=${token}`);
  await duty.waitForFunction(() => window.__vscc && window.__vscc.rendered > 0 && document.querySelector("#current tbody.group"), null, { timeout: 15000 });
  const groups = await duty.$$eval("#current tbody.group", (els) => els.map((e) => ({ key: e.dataset.key, district: e.querySelector(".district").textContent, title: e.querySelector(".what").textContent })));
  check(groups.length === alerts.groups.length && groups.every((g) => !/\d{6}/.test(g.district)),
    `the duty console shows the ${alerts.groups.length} firing groups, named by district (${groups.slice(0, 3).map((g) => g.district + g.title).join(", ")} …)`);
  const appeals = alerts.groups.find((g) => g.rule === "appeals_overdue");
  await duty.click(`#current tbody.group[data-key="${appeals.key}"] tr.group-row`);
  await duty.waitForSelector(`#current tbody.group[data-key="${appeals.key}"] tr.alert-row`);
  const rows = await duty.$$eval(`#current tbody.group[data-key="${appeals.key}"] tr.alert-row`, (els) => els.map((tr) => ({
    fp: tr.dataset.fingerprint, unit: tr.querySelector(".unit b").textContent, since: tr.querySelector(".since").textContent, age: tr.querySelector(".age").textContent })));
  check(rows.length === appeals.alerts.length && rows.every((r) => {
    const a = appeals.alerts.find((x) => x.fingerprint === r.fp);
    return a && r.unit === a.node_name && r.since.includes(a.breach_since.slice(0, 10)) && r.age.includes("超期 " + a.days_overdue + " 天");
  }), `a group opens to its units by name, each with when its breach began and its days overdue (${rows[0].unit} ${rows[0].since} ${rows[0].age})`);
  // Filtered to one district, only its groups.
  await duty.selectOption("#filters select[name=district]", appeals.district);
  const only = await duty.$$eval("#current tbody.group", (els) => [...new Set(els.map((e) => e.dataset.district))]);
  check(only.length === 1 && only[0] === appeals.district, `the district filter leaves ${appeals.district_name}'s groups only`);
  // Acknowledging goes through a dialog, not a browser prompt.
  let prompted = false;
  duty.on("dialog", (d) => { prompted = true; d.dismiss(); });
  await duty.click(`#current tbody.group[data-key="${appeals.key}"] tr.alert-row button`);
  await duty.waitForSelector("#ack-dialog[open]");
  await duty.fill("#ack-dialog textarea", "已电话联系街道");
  await duty.click("#ack-dialog button.primary");
  await duty.waitForFunction((key) => [...document.querySelectorAll(`#current tbody.group[data-key="${key}"] tr.alert-row .ack`)].some((td) => td.textContent.includes("已电话联系街道")), appeals.key, { timeout: 10000 });
  check(!prompted, "an alert is acknowledged through the console's own dialog, with its comment");
  await duty.screenshot({ path: `${SCREENSHOTS}/one-truth-duty-1920x1080.png` });
  check(duty.errors.length === 0, `the duty console works without errors (${duty.errors.join(" | ")})`);

  // A district's wall: its own alerts only, grouped, named with the district.
  const scoped = await openPage(browser, 1920, 1080);
  await scoped.goto(`${base}/screen/district?scope=${appeals.district}&norotate=1&token=${token}`);
  await scoped.waitForFunction(() => document.querySelector("#ticker li[data-key]"), null, { timeout: 15000 });
  const ticker = await scoped.$$eval("#ticker li[data-key]", (els) => els.map((e) => e.dataset.district));
  const own = (await api(`/api/v1/alerts?scope=${appeals.district}`)).groups.filter((g) => g.counts.firing > 0).length;
  check(ticker.length === own && ticker.every((d) => d === appeals.district),
    `${appeals.district_name}'s wall shows its own ${own} alert groups and no other district's`);
  const city = await openPage(browser, 1920, 1080);
  await city.goto(`${base}/?norotate=1&token=${token}`);
  await city.waitForFunction(() => document.querySelector("#ticker li[data-key]"), null, { timeout: 15000 });
  const cityTicker = await city.$$eval("#ticker li[data-key]", (els) => new Set(els.map((e) => e.dataset.district)).size);
  check(cityTicker > 1, `the city's wall shows the alerts of ${cityTicker} districts`);
  await scoped.screenshot({ path: `${SCREENSHOTS}/one-truth-district-wall.png` });
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  await stopServer(server);
}
