// Browser test of a unit's workspace, driven by tests/api/unit.rs: a street's clerk on a phone
// (390×844) sees where the street stands and what it must still do, reports the month's
// headcount through the form (a bad value refused in Chinese next to the field, before
// anything is sent), finds the record in its list, corrects it and withdraws it; the district's
// leader sees the same workspace read-only on a desktop. Screenshots go to target/screenshots/.
import { SCREENSHOTS, base, check, startServer, waitReady, stopServer, apiAs, record, launch, openPage, userToken as makeUser } from "./harness.mjs";

const admin = "unit-test-admin";
const server = startServer(admin);
const api = apiAs(admin);
const STREET = "440304001";

const userToken = (name, role, scope) => makeUser(admin, name, role, scope);

let browser;
try {
  await waitReady();
  // Hires short of one third veterans: a target the street must act on.
  await api("/api/v1/events", { method: "POST", body: JSON.stringify(
    [0, 1, 2, 3, 4, 5].map((i) => record(`uw-h${i}`, "staff.hired", STREET, { staff_id: `uw-h${i}`, veteran: i === 0 }))) });
  const clerk = await userToken("uw-clerk", "clerk", STREET);
  const leader = await userToken("uw-leader", "leader", "440304");
  browser = await launch();

  // A wall screen on the street's training coverage (whose denominator is the staff on duty,
  // the headcount the clerk is about to report), live.
  const wall = await openPage(browser, 1920, 1080);
  await wall.goto(`${base}/metric/training_coverage?scope=${STREET}&token=${admin}`);
  await wall.waitForFunction(() => window.__vscc && window.__vscc.connected && window.__vscc.epoch && window.__vscc.rendered > 0, null, { timeout: 15000 });

  // The clerk, on a phone.
  const page = await openPage(browser, 390, 844);
  const opened = Date.now();
  await page.goto(`${base}/unit?token=${clerk}`);
  await page.waitForSelector("#cards .card");
  await page.waitForFunction(() => document.querySelectorAll("#due-rows tr").length > 0);
  console.log(`measured: the workspace showed its standing and what is due ${Date.now() - opened} ms after it was opened`);
  const title = await page.textContent("#title");
  check(title.includes("南园街道"), `the clerk lands on the street's own workspace (${title})`);
  const pace = await apiAs(clerk)("/api/v1/pace");
  const cards = await page.$$eval("#cards .card", (els) => els.length);
  check(cards === pace.metrics.length, `a card per metric shown at a street (${cards} of ${pace.metrics.length})`);
  const paces = await page.$$eval("#cards .card .pace", (els) => els.map((e) => e.textContent));
  const wanted = pace.metrics.filter((m) => m.pace).map((m) => m.pace.text_zh);
  check(paces.length === wanted.length && wanted.every((t) => paces.includes(t)), `every pace on the cards is the API's (${paces.length})`);
  const hireCard = await page.$eval("#cards", (el) => [...el.querySelectorAll(".card")].map((c) => c.innerText).find((t) => t.includes("招录聘用比例")) || "");
  check(/还需招录退役军人 \d+ 名/.test(hireCard), `the hire share says how many veterans to hire: ${hireCard.replace(/\n/g, " | ")}`);
  const due = await page.$$eval("#due-rows tr", (rows) => rows.map((r) => r.innerText.replace(/\s+/g, " ")));
  check(due.some((r) => r.includes("在岗人数") && /\d{4}年\d{1,2}月/.test(r)), `what is due lists the month's headcount: ${due.join(" / ")}`);
  await page.screenshot({ path: `${SCREENSHOTS}/unit-390.png` });

  // The headcount through its form: a negative number refused in Chinese, before sending.
  await page.selectOption("#kind-select", "staff.headcount");
  await page.fill('#report-form [name="headcount"]', "-5");
  await page.click("#report-form button[type=submit]");
  const refusal = await page.textContent('#report-form .field-error[data-for="data.headcount"]');
  check(refusal.includes("应在 0 到 100000 之间"), `a bad headcount is refused next to its field: ${refusal}`);
  await page.fill('#report-form [name="headcount"]', "12");
  const sentAt = Date.now();
  await page.click("#report-form button[type=submit]");
  await wall.waitForFunction((s) => {
    const f = (window.__vscc.view[s] || {}).training_coverage;
    return f && f.den === 12;
  }, STREET, { timeout: 10000, polling: 20 });
  console.log(`measured: the wall screen showed the form's headcount ${Date.now() - sentAt} ms after it was sent`);
  check(true, "the wall screen changed with the form's record");
  await page.waitForFunction(() => document.getElementById("report-result").textContent.startsWith("已提交"));
  const sent = await page.textContent("#report-result");
  const id = sent.match(/记录编号 (form-[^）]+)/)[1];
  check(id.length > 8, `the form says it was sent, with the record's id (${id})`);
  await page.waitForFunction(() => [...document.querySelectorAll("#record-rows tr")].some((r) => r.innerText.includes("在岗人数 12")), null, { timeout: 10000 });
  const row = await page.$$eval("#record-rows tr", (rows) => rows.map((r) => r.innerText.replace(/\s+/g, " ")).find((t) => t.includes("在岗人数 12")));
  check(row.includes("表单") && row.includes("uw-clerk") && row.includes("原始"), `the record is listed: sent by the clerk through the form (${row})`);

  // Corrected: 12 was 13; the list shows the second version.
  await page.$$eval("#record-rows tr", (rows) => {
    const r = rows.find((x) => x.innerText.includes("在岗人数 12"));
    r.querySelector("[data-fix]").click();
  });
  await page.waitForSelector("#change[open]");
  await page.fill('#change-fields [name="headcount"]', "13");
  await page.click("#change-ok");
  const noReason = await page.textContent('#change .field-error[data-for="reason"]');
  check(noReason.includes("原因"), `a correction without a reason is refused: ${noReason}`);
  await page.fill('#change-form [name="reason"]', "少报了一人");
  await page.click("#change-ok");
  await page.waitForFunction(() => [...document.querySelectorAll("#record-rows tr")].some((r) => r.innerText.includes("在岗人数 13") && r.innerText.includes("第 2 版")), null, { timeout: 10000 });
  const fixed = await page.$$eval("#record-rows tr", (rows) => rows.map((r) => r.innerText.replace(/\s+/g, " ")).find((t) => t.includes("在岗人数 13")));
  const when = row.match(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}/)[0];
  check(fixed.includes(when) && fixed.includes("表单"), `corrected: version 2 with 13, its time (${when}) and its way (表单) kept: ${fixed}`);

  // Withdrawn: gone from the list.
  await page.$$eval("#record-rows tr", (rows) => {
    const r = rows.find((x) => x.innerText.includes("在岗人数 13"));
    r.querySelector("[data-drop]").click();
  });
  await page.waitForSelector("#change[open]");
  await page.fill('#change-form [name="reason"]', "重复上报");
  await page.click("#change-ok");
  await page.waitForFunction(() => ![...document.querySelectorAll("#record-rows tr")].some((r) => r.innerText.includes("在岗人数 13")), null, { timeout: 10000 });
  check(true, "withdrawn: the record is gone from the list");
  // A ledger with a good row and a bad one: the bad one is refused, in Chinese, with its row.
  const day = new Date().toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
  await page.setInputFiles("#file", { name: "招录台账.csv", mimeType: "text/csv",
    buffer: Buffer.from(`记录编号,单位代码,日期,人员编号,是否退役军人\nNY-001,${STREET},${day},P-1,是\nNY-002,${STREET},${day},P-2,也许\n`) });
  await page.waitForFunction(() => document.getElementById("import-result").textContent.includes("拒收"), null, { timeout: 15000 });
  const imported = await page.textContent("#import-result");
  check(/新增\s*1/.test(imported) && /拒收\s*1/.test(imported) && imported.includes("“也许”不是“是”或“否”") && imported.includes("招录聘用"),
    `a ledger's bad row is refused with its reason in Chinese, the good one loaded: ${imported.replace(/\s+/g, " ").slice(0, 200)}`);
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  check(wide <= 390, `nothing runs off a phone's width (${wide} px)`);
  check(page.errors.length === 0, `no console errors on the phone: ${page.errors.join("; ")}`);
  await page.close();
  await wall.close();

  // The district's leader: the street's workspace, read-only, on a desktop.
  const desk = await openPage(browser, 1920, 1080);
  await desk.goto(`${base}/unit?token=${leader}&scope=${STREET}`);
  await desk.waitForSelector("#cards .card");
  const banner = await desk.textContent("#readonly");
  const formsHidden = await desk.$eval("#report", (el) => el.hidden);
  const buttons = await desk.$$eval("#record-rows button", (els) => els.length);
  check(banner.includes("只读") && formsHidden && buttons === 0, `the district sees the street read-only (${banner})`);
  await desk.screenshot({ path: `${SCREENSHOTS}/unit-1920.png` });
  check(desk.errors.length === 0, `no console errors on the desktop: ${desk.errors.join("; ")}`);
  await desk.close();
} finally {
  if (browser) await browser.close();
  await stopServer(server);
}
