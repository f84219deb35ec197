// Browser test of the wall screen, driven by the Rust test tests/wall_screen.rs.
// It starts the real vscc binary itself (so that it can restart it under the open page),
// opens the page in Debian's headless Chromium through playwright-core, and checks what a
// person in front of the screen would see. Screenshots go to target/screenshots/.
import { SCREENSHOTS, base, check, fail, sleep, startServer as startWith, waitReady, stopServer, apiAs, launch, openPage } from "./harness.mjs";

const token = "browser-test-admin";
const startServer = () => startWith(token);
const api = apiAs(token);
const hire = (id, org, veteran) => ({ id, kind: "staff.hired", org, at: new Date(Date.now() - 60000).toISOString(), data: { staff_id: id, veteran } });
const staffing = (id, org, approved, filled) => ({ id, kind: "staffing.reported", org, at: new Date(Date.now() - 60000).toISOString(), data: { approved_posts: approved, filled_posts: filled } });
const pct = (v) => (v * 100).toFixed(1) + "%";

let server = startServer();
let browser;
try {
  await waitReady();
  await api("/api/v1/events", { method: "POST", body: JSON.stringify([
    staffing("b-s1", "440300", 100, 90), staffing("b-s2", "440305", 50, 49), staffing("b-s3", "440303", 40, 30),
    hire("b-h1", "440305007003", true), hire("b-h2", "440305007003", false), hire("b-h3", "440303", false),
  ]) });

  browser = await launch();
  const page = await openPage(browser, 1920, 1080);
  const consoleErrors = page.errors;
  await page.goto(`${base}/?token=${token}&norotate=1`);
  // The page renders before its snapshot arrives (dashboard and map first): wait for the snapshot.
  await page.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.rendered > 0, null, { timeout: 15000 });

  // The map has the 10 districts.
  const districts = await page.evaluate(() => {
    const opt = window.__vscc.mapChart.getOption();
    return opt.series[0].data.map((d) => d.name);
  });
  check(districts.length === 10 && districts.includes("440399"), `the map has 10 districts (${districts.length})`);
  // The map uses its panel: its drawing area is most of the panel (not half of it, as when a
  // hidden grid took the rest).
  const geom = await page.evaluate(() => ({
    map: document.getElementById("map").getBoundingClientRect().height,
    panel: document.querySelector(".map-panel").getBoundingClientRect().height,
    chart: window.__vscc.mapChart.getHeight(),
  }));
  check(geom.map >= 0.75 * geom.panel && Math.abs(geom.chart - geom.map) < 2,
    `the map uses its panel (${Math.round(geom.map)} of ${Math.round(geom.panel)} px)`);

  // Tile values equal the REST figures.
  const rest = await api("/api/v1/metrics?scope=440300");
  const tiles = await page.$$eval(".tile", (els) => els.map((e) => ({ m: e.dataset.metric, v: e.dataset.value, text: e.querySelector(".value").textContent })));
  for (const t of tiles) {
    const f = rest.nodes["440300"][t.m];
    const expected = f && f.value !== null ? String(f.value) : "";
    check(t.v === expected, `tile ${t.m} shows ${t.text} = REST ${expected || "no data"}`);
  }
  const staffingTile = tiles.find((t) => t.m === "staffing_rate");
  check(staffingTile.text === pct(rest.nodes["440300"].staffing_rate.value), "staffing tile is formatted as a percentage");
  await page.screenshot({ path: `${SCREENSHOTS}/wall-1920x1080.png` });

  // Nodes that never reported are marked in the league table; those that did are not.
  await page.waitForFunction(() => document.querySelector('#league tr[data-code="440311"] .stale'), null, { timeout: 5000 })
    .catch(() => fail("光明 (no records) is not marked as not reporting"));
  const nanshanStale = await page.$('#league tr[data-code="440305"] .stale');
  check(nanshanStale === null, "南山 (reporting) carries no staleness marker; 光明 shows 从未报送");

  // A record posted now changes the tile within a second.
  const before = await page.$eval('.tile[data-metric="staffing_rate"] .value', (e) => e.textContent);
  const t0 = Date.now();
  await api("/api/v1/events", { method: "POST", body: JSON.stringify([staffing("b-s4", "440304", 60, 12)]) });
  const after = (await api("/api/v1/metrics?scope=440300&metrics=staffing_rate")).nodes["440300"].staffing_rate.value;
  await page.waitForFunction((text) => document.querySelector('.tile[data-metric="staffing_rate"] .value').textContent === text,
    pct(after), { timeout: 1000 }).catch(() => fail("the tile did not change within 1 s"));
  check(true, `tile changed from ${before} to ${pct(after)} in ${Date.now() - t0} ms`);

  // Drill-down: a click on 南山 in the league table shows its streets as a ranked grid.
  await page.click('#league tr[data-code="440305"]');
  await page.waitForFunction(() => document.querySelectorAll("#grid .cell").length > 0 && !document.getElementById("grid").hidden, null, { timeout: 5000 });
  const cells = await page.$$eval("#grid .cell", (els) => els.map((e) => e.dataset.code));
  check(cells.length === 8 && cells.every((c) => c.startsWith("440305")), `南山 shows its 8 streets (${cells.length})`);
  const crumbs = await page.$$eval("#crumbs a", (els) => els.map((e) => e.textContent));
  check(crumbs.join(">") === "深圳市>南山区", `breadcrumb reads ${crumbs.join(" › ")}`);
  await page.waitForFunction(() => window.__vscc.view["440305"] && window.__vscc.view["440305"].staffing_rate, null, { timeout: 5000 });
  await page.screenshot({ path: `${SCREENSHOTS}/wall-drill-nanshan.png` });
  await page.click("#crumbs a[data-code='440300']");
  await page.waitForFunction(() => !document.getElementById("map").hidden, null, { timeout: 5000 });
  check(true, "the breadcrumb returns to the city map");

  check(consoleErrors.length === 0, `no console errors while serving (${consoleErrors.join(" | ")})`);

  // The page survives a server restart and resumes.
  await stopServer(server);
  await page.waitForFunction(() => !window.__vscc.connected, null, { timeout: 10000 });
  check(true, "the page notices the server went away");
  server = startServer();
  await waitReady();
  await page.waitForFunction(() => window.__vscc.connected, null, { timeout: 20000 });
  await api("/api/v1/events", { method: "POST", body: JSON.stringify([staffing("b-s5", "440306", 80, 80)]) });
  const now = (await api("/api/v1/metrics?scope=440300&metrics=staffing_rate")).nodes["440300"].staffing_rate.value;
  await page.waitForFunction((text) => document.querySelector('.tile[data-metric="staffing_rate"] .value').textContent === text,
    pct(now), { timeout: 5000 }).catch(() => fail("after the restart the tile did not follow new records"));
  check(true, "after the restart the page reconnected and follows new records");

  const unexpected = consoleErrors.filter((e) => !/WebSocket|ERR_CONNECTION_REFUSED|Failed to fetch/.test(e));
  check(unexpected.length === 0, `no console errors across the restart other than the refused connections (${unexpected.join(" | ")})`);

  // The duty console loads with its tables.
  const duty = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  const dutyErrors = [];
  duty.on("pageerror", (e) => dutyErrors.push(String(e)));
  await duty.goto(`${base}/duty?token=${token}`);
  await duty.waitForFunction(() => document.querySelector("#current tr"), null, { timeout: 10000 });
  check(dutyErrors.length === 0, `the duty console loads without errors (${dutyErrors.join(" | ")})`);
  await duty.screenshot({ path: `${SCREENSHOTS}/duty-console.png` });

  // The SQL console: log in through the form, browse the schema, run, history, save.
  await api("/api/v1/users", { method: "POST", body: JSON.stringify({ name: "analyst-sz", role: "analyst", scope: "440300", password: "browser-analyst-1" }) });
  const sql = await browser.newPage({ viewport: { width: 1920, height: 1080 } });
  const sqlErrors = [];
  sql.on("pageerror", (e) => sqlErrors.push(String(e)));
  sql.on("dialog", (d) => d.accept("各区记录数"));
  await sql.goto(`${base}/sql`);
  await sql.evaluate(() => localStorage.removeItem("vscc.token"));
  await sql.goto(`${base}/sql`);
  await sql.waitForSelector("#login:not([hidden])");
  await sql.fill("input[name=name]", "analyst-sz");
  await sql.fill("input[name=password]", "browser-analyst-1");
  await sql.click("#login button");
  await sql.waitForFunction(() => document.querySelectorAll("#schema details").length >= 3, null, { timeout: 15000 });
  check(true, "the SQL console logs in and lists the tables the analyst may read");
  await sql.click("#run");
  await sql.waitForFunction(() => document.querySelector("#result table tbody tr"), null, { timeout: 15000 });
  const shown = await sql.evaluate(() => ({ rows: document.querySelectorAll("#result tbody tr").length, head: [...document.querySelectorAll("#result th")].map((t) => t.firstChild.textContent) }));
  check(shown.rows > 0 && shown.head.includes("记录数"), `the query's result is a table (${shown.rows} rows; ${shown.head.join(", ")})`);
  await sql.click("#save");
  await sql.waitForFunction(() => document.querySelector("#saved li"), null, { timeout: 10000 });
  await sql.fill("#editor", "INSERT INTO events (id) VALUES ('x')");
  await sql.click("#run");
  await sql.waitForFunction(() => document.querySelector("#status").classList.contains("error"), null, { timeout: 10000 });
  const refusal = await sql.textContent("#status");
  check(refusal.includes("403") && refusal.includes("readonly"), `a write is refused by ClickHouse: ${refusal}`);
  await sql.waitForFunction(() => document.querySelectorAll("#history li").length >= 2, null, { timeout: 10000 });
  // A sample query, picked from the list, runs as it is in the analyst's scope.
  const samples = await sql.$$("#samples li");
  check(samples.length >= 5, `the console offers sample queries (${samples.length})`);
  await samples[3].click();
  check((await sql.inputValue("#editor")).includes("toStartOfMonth"), "a sample goes into the editor");
  await sql.click("#run");
  await sql.waitForFunction(() => [...document.querySelectorAll("#result th")].some((t) => t.firstChild.textContent === "月份"), null, { timeout: 15000 });
  const sampleRows = await sql.evaluate(() => document.querySelectorAll("#result tbody tr").length);
  check(sampleRows > 0, `the sample answers (${sampleRows} rows)`);
  check(sqlErrors.length === 0, `the SQL console works without page errors (${sqlErrors.join(" | ")})`);
  await sql.fill("#editor", "SELECT district, kind, count() AS `记录数`\nFROM events\nGROUP BY district, kind\nORDER BY district, kind");
  await sql.click("#run");
  await sql.waitForFunction(() => !document.querySelector("#status").classList.contains("error") && document.querySelector("#status").textContent.includes("行"), null, { timeout: 10000 });
  await sql.screenshot({ path: `${SCREENSHOTS}/sql-console.png` });

  // 4K.
  const big = await browser.newPage({ viewport: { width: 3840, height: 2160 } });
  await big.goto(`${base}/?token=${token}&norotate=1`);
  await big.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.rendered > 0, null, { timeout: 15000 });
  await sleep(500);
  await big.screenshot({ path: `${SCREENSHOTS}/wall-3840x2160.png` });
  check(true, "screenshots written");
} catch (e) {
  console.error(e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
  await stopServer(server);
}
