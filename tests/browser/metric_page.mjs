// Browser test of a metric's page (/metric/<id>), driven by tests/api/metric_page.rs: at
// 1920×1080 and 3840×2160 it shows the city's figure, the map, the league of districts, the
// trend with the target and deadline, and the nodes at risk as REST lists them; a posted
// record moves it live; a click on a node at risk drills down. Screenshots in target/screenshots.
import { SCREENSHOTS, base, check, fail, startServer, waitReady, stopServer, apiAs, record, launch, openPage } from "./harness.mjs";

const token = "metric-test-admin";
const api = apiAs(token);
const DISTRICTS = ["440303", "440304", "440305", "440306", "440307", "440308", "440309", "440310", "440311", "440399"];
const server = startServer(token);
let browser, page;
try {
  await waitReady();
  // Staffing (≥ 95 % by 2020-12-31, so short is missed) from 60 % to 100 % over the districts.
  await api("/api/v1/events", { method: "POST", body: JSON.stringify(DISTRICTS.map((d, i) =>
    record(`mp-st-${d}`, "staffing.reported", d, { approved_posts: 100, filled_posts: 60 + 4 * i + (i === 9 ? 4 : 0) }))) });
  const snap = await fetch(base + "/api/v1/jobs/snapshots", { method: "POST", headers: { Authorization: "Bearer " + token } });
  check(snap.ok, "the nightly snapshots ran");
  browser = await launch();

  for (const [width, height] of [[1920, 1080], [3840, 2160]]) {
    const size = `${width}×${height}`;
    page = await openPage(browser, width, height);
    await page.goto(`${base}/metric/staffing_rate?token=${token}`);
    await page.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch
      && window.__vscc.atRisk && window.__vscc.trendChart, null, { timeout: 15000 });
    const rest = await api("/api/v1/metrics?scope=440300&metrics=staffing_rate");
    const atRisk = await api("/api/v1/at-risk?metric=staffing_rate&scope=440300&limit=40");
    const shown = await page.evaluate(() => ({
      title: document.title,
      tile: document.querySelector("#tiles .tile").dataset.value,
      league: [...document.querySelectorAll("#league tr")].map((tr) => [tr.dataset.code, tr.dataset.value]),
      atRisk: [...document.querySelectorAll("#atrisk li[data-code]")].map((li) => li.dataset.code),
      counts: Object.fromEntries([...document.querySelectorAll("#counts .tile")].map((t) => [t.dataset.status, t.querySelector(".value").textContent])),
      mapAreas: window.__vscc.mapChart.getOption().series[0].data.length,
      marks: window.__vscc.trendChart.getOption().series[0].markLine.data.map((d) => d.yAxis ?? d.xAxis),
    }));
    check(shown.title.includes("编制人员到位率"), `${size}: the page is the metric's (${shown.title})`);
    check(shown.tile === String(rest.nodes["440300"].staffing_rate.value), `${size}: the city's figure equals REST (${shown.tile})`);
    check(shown.league.length === 10 && shown.league.every(([code, v]) => v === String(rest.nodes[code].staffing_rate.value)),
      `${size}: the league of 10 districts equals REST`);
    const leagueValues = shown.league.map(([, v]) => Number(v));
    check(leagueValues.every((v, i) => i === 0 || leagueValues[i - 1] >= v), `${size}: the league is best first`);
    check(JSON.stringify(shown.atRisk) === JSON.stringify(atRisk.nodes.map((n) => n.code)) && shown.atRisk.length === atRisk.total && atRisk.total >= 8,
      `${size}: the at-risk list is REST's, farthest first (${shown.atRisk.join(",")})`);
    const missed = DISTRICTS.filter((d) => rest.nodes[d].staffing_rate.status === "missed").length;
    check(shown.counts.missed === `${missed}/10` && shown.counts.met === `${10 - missed}/10`, `${size}: the districts' statuses are counted (${JSON.stringify(shown.counts)})`);
    check(shown.mapAreas === 10, `${size}: the map colours the 10 districts`);
    check(shown.marks.includes(0.95) && shown.marks.includes("2020-12-31"), `${size}: the trend carries the target and the deadline (${shown.marks})`);
    // Legible and whole: nothing of the at-risk list or the legend falls off the screen.
    const fit = await page.evaluate(() => ({
      legend: Math.round(document.querySelector(".legend").getBoundingClientRect().bottom - innerHeight),
      font: parseFloat(getComputedStyle(document.querySelector("#atrisk li")).fontSize),
      map: document.getElementById("map").getBoundingClientRect().height / document.querySelector(".map-panel").getBoundingClientRect().height,
    }));
    check(fit.legend <= 0 && fit.font >= height * 0.015 && fit.map > 0.75, `${size}: it fits (legend ${fit.legend}px, list ${fit.font}px, map ${Math.round(fit.map * 100)}% of its panel)`);
    await page.screenshot({ path: `${SCREENSHOTS}/metric-staffing-${width}x${height}.png` });
    check(page.errors.length === 0, `${size}: no console errors (${page.errors.join(" | ")})`);
    if (width === 3840) break;

    // Live: the farthest district reaches its target; it leaves the list and its league row
    // shows 100 % without a reload.
    const first = shown.atRisk[0];
    await api("/api/v1/events", { method: "POST", body: JSON.stringify([record(`mp-fix-${first}`, "staffing.reported", first, { approved_posts: 100, filled_posts: 100 })]) });
    await page.waitForFunction((code) => document.querySelector(`#league tr[data-code="${code}"]`).dataset.value === "1"
      && !document.querySelector(`#atrisk li[data-code="${code}"]`), first, { timeout: 8000 })
      .catch(() => fail(`${first} did not reach 100 % and leave the at-risk list live`));
    check(true, `live: ${first} went to 100 % and left the at-risk list`);

    // A click on a district at risk drills to it: its page for the metric, its own at-risk list.
    const next = await page.$eval("#atrisk li[data-code]", (li) => li.dataset.code);
    await page.click(`#atrisk li[data-code="${next}"]`);
    await page.waitForFunction((code) => window.__vscc.scope === code && window.__vscc.rendered && window.__vscc.atRisk
      && window.__vscc.atRisk.scope === code, next, { timeout: 8000 }).catch(() => fail(`the click did not drill to ${next}`));
    check(new URL(page.url()).searchParams.get("scope") === next, `the click drills to ${next} (the address says so too)`);
    await page.screenshot({ path: `${SCREENSHOTS}/metric-staffing-drilled-${next}.png` });
    await page.close();
  }
} catch (e) {
  console.error(e);
  if (page) {
    console.error("page errors: " + page.errors.join(" | "));
    console.error("page state: " + await page.evaluate(() => JSON.stringify(window.__vscc && { scope: window.__vscc.scope,
      connected: window.__vscc.connected, epoch: window.__vscc.epoch, atRisk: !!window.__vscc.atRisk, trend: !!window.__vscc.trendChart, box: document.getElementById("trend").innerHTML.slice(0, 200) })).catch(String));
  }
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  await stopServer(server);
}
