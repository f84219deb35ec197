// The daily brief (每日简报): one day's figures from the nightly snapshots, printable on A4. It
// speaks of its scope (the city, a district, a street): its own status, its children by their
// level, only the metrics shown at its level, and targets, statuses and alerts worded as every
// other page words them (common.js).
(function () {
  "use strict";
  const V = window.VSCC;
  const { STATUS_ZH, SEV_ZH, LEVEL_ZH, params, getJSON, clauseText, fmt } = V;
  const S = { brief: null, rendered: 0 };
  window.__vscc = S; // for the browser tests
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const short = (name) => window.VSCC.shortPlace(name);
  // The change since the day before of what the status is judged on (appeals: the overdue
  // count, not the open one beside it).
  function change(m) {
    const a = V.judged(m, m.day), b = V.judged(m, m.before);
    if (a === null || a === undefined || b === null || b === undefined) return el("span", "muted", "—");
    const d = a - b;
    // Unchanged as the page shows numbers: a change that rounds to zero is none.
    const shown = m.unit === "percent" ? (Math.abs(d) * 100).toFixed(m.precision) : V.number(Math.abs(d), m.precision);
    if (Number(shown.replace(/[,万]/g, "")) === 0) return el("span", "muted", "持平");
    const text = (d > 0 ? "+" : "−") + shown + (m.unit === "percent" ? "个百分点" : "");
    // The metric's own direction (the catalogue's: fewer is better for open cases, waiting time).
    const better = m.lower_is_better ? d < 0 : d > 0;
    return el("span", better ? "up" : "down", text);
  }
  // The day's figure as the table shows it: the judged number for a metric judged on it.
  function dayText(m) {
    const f = m.day;
    if (!f) return "—";
    if (m.judged_on === "overdue") return f.value === null ? "—" : "超期 " + (f.overdue ?? "—");
    return V.fmtUnit(m, f.value);
  }

  function render(b) {
    const scopeName = b.scope_name;
    const kids = LEVEL_ZH[b.child_level] || "下级";
    const self = LEVEL_ZH[b.scope_level] || "";
    document.getElementById("title").textContent = (b.scope_level === "city" ? "" : scopeName + " · ") + document.getElementById("title").dataset.base;
    document.getElementById("date").textContent = b.date;
    document.getElementById("scope").textContent = scopeName;
    // Today's snapshot is of a day not yet over: said so, not "nightly".
    const today = new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10);
    document.getElementById("generated").textContent = b.date === today
      ? "数据来源：今日快照（当日尚未结束，数字仍会变化）" : "数据来源：" + b.date + " 日终快照（当日所知）";
    document.title = "每日简报 " + b.date + " · " + scopeName;
    // Corrections change the figures from the day they are made; a past day's snapshot stays
    // what was known that day.
    const fixes = b.corrections || { corrected: 0, withdrawn: 0 };
    const fixed = fixes.corrected + fixes.withdrawn > 0
      ? "当日更正 " + fixes.corrected + " 条、撤回 " + fixes.withdrawn + " 条记录，此后的数字按更正后的记录计算"
      : "当日无更正或撤回的记录";
    // Scheduled reports not sent by their due day: "在岗人数：12 个社区、3 个街道未按时报送（截止 12-05）".
    const LEVEL_ORDER = ["district", "street", "community"];
    const late = (b.late_reports || []).filter((r) => Object.keys(r.late).length).map((r) =>
      r.label_zh + "：" + LEVEL_ORDER.concat(["city"]).filter((l) => r.late[l]).map((l) => r.late[l] + " 个" + V.LEVEL_ZH[l]).join("、") +
      "未按时报送（截止 " + r.due.slice(5) + "）");
    document.getElementById("late-reports").textContent = (b.late_reports || []).length
      ? "定期报表：" + (late.length ? late.join("；") : "到期的报表均已按时报送") : "";
    // 督办: what was issued to the scope's units, answered and closed that day, and what is
    // overdue at the day's end (the task_assignments snapshot).
    const t = b.tasks || { assigned: 0, tasks: 0, submitted: 0, accepted: 0 };
    const open = (b.metrics.find((m) => m.id === "task_assignments") || {}).day;
    const overdue = open && open.overdue !== null && open.overdue !== undefined ? "；日终在办 " + V.number(open.value || 0, 0) + " 项，其中超期 " + open.overdue + " 项" : "";
    document.getElementById("tasks-day").textContent = "督办：" + (t.assigned ? "当日下达 " + t.tasks + " 项任务（" + t.assigned + " 个承办单位）" : "当日未下达新任务") +
      "，办结上报 " + t.submitted + " 项，销号 " + t.accepted + " 项" + overdue + "。";
    document.getElementById("corrections").textContent =
      "数据更正：" + fixed + "；以往各日的快照保持当日所知，不因此后的更正而改变。";
    const body = document.querySelector("#figures tbody");
    body.innerHTML = "";
    document.getElementById("figures-kids").textContent = kids;
    // Metrics with a target are the table; tracked ones (no target) one line under it.
    const tracked = document.getElementById("tracked");
    tracked.innerHTML = "";
    tracked.appendChild(el("strong", "", "跟踪指标（无目标）："));
    for (const m of b.metrics.filter((x) => x.target === null || x.target === undefined)) {
      const item = el("span", "item");
      item.dataset.metric = m.id;
      item.dataset.value = m.day && m.day.value !== null ? String(m.day.value) : "";
      item.dataset.status = V.statusOf(m.day);
      item.appendChild(document.createTextNode(m.label_zh + " " + V.fmtUnit(m, m.day && m.day.value) + " "));
      item.appendChild(change(m));
      tracked.appendChild(item);
    }
    for (const m of b.metrics.filter((x) => x.target !== null && x.target !== undefined)) {
      const tr = el("tr");
      tr.dataset.metric = m.id;
      tr.dataset.value = m.day && m.day.value !== null ? String(m.day.value) : "";
      const status = V.statusOf(m.day);
      tr.dataset.status = status;
      tr.appendChild(el("td", "clause", clauseText(m.clause)));
      tr.appendChild(el("td", "", m.label_zh));
      tr.appendChild(el("td", "target", V.targetText(m)));
      tr.appendChild(el("td", "num", dayText(m)));
      const c = el("td", "num"); c.appendChild(change(m)); tr.appendChild(c);
      tr.appendChild(el("td", "status " + status, STATUS_ZH[status] || status));
      // Missed children in red; at-risk ones are said apart, as every other page says them.
      const missedKids = m.children.filter((x) => x.status === "missed").length;
      const riskyKids = m.children.filter((x) => x.status === "at_risk").length;
      const kidsCell = el("td", "num" + (missedKids ? " down" : " muted"), m.children.length ? missedKids + "/" + m.children.length : "—");
      if (riskyKids) kidsCell.appendChild(el("span", "status at_risk", " 有风险" + riskyKids));
      kidsCell.dataset.missed = String(missedKids);
      kidsCell.dataset.atRisk = String(riskyKids);
      tr.appendChild(kidsCell);
      body.appendChild(tr);
    }
    const risks = document.getElementById("risks");
    risks.innerHTML = "";
    document.getElementById("risks-title").textContent = "二、有风险和未达标的指标（" + self + "及各" + kids + "）";
    for (const m of b.metrics) {
      if (m.measure === "cases") continue; // their own section
      const bad = m.children.filter((c) => c.status === "at_risk" || c.status === "missed");
      const own = m.day && (m.day.status === "at_risk" || m.day.status === "missed");
      if (!bad.length && !own) continue;
      const li = el("li");
      li.dataset.metric = m.id;
      li.appendChild(el("strong", "", m.label_zh + "（" + self + STATUS_ZH[V.statusOf(m.day)] + "）："));
      // How many children, then the three farthest from the target by name (a line each, so
      // that the brief stays one sheet).
      const missed = bad.filter((c) => c.status === "missed").length, risky = bad.length - missed;
      const gap = (c) => (c.value === null ? -Infinity : m.at_most ? c.value - m.target : m.target - c.value);
      // Each with what it must still do, on the newest day's brief ("每月 2 名").
      const worst = bad.slice().sort((x, y) => gap(y) - gap(x)).slice(0, 3).map((c) =>
        short(c.name) + " " + fmt(m, c.value) + (c.pace ? "（" + V.paceShort(c.pace) + "）" : ""));
      const counted = [missed ? "未达标 " + missed + " 个" + kids : "", risky ? "有风险 " + risky + " 个" + kids : ""].filter(Boolean).join("、");
      li.appendChild(document.createTextNode(bad.length
        ? counted + "：" + worst.join("，") + (bad.length > 3 ? " 等" : "")
        : (m.children.length ? "各" + kids + "无风险" : "只考核" + self)));
      risks.appendChild(li);
    }
    if (!risks.children.length) risks.appendChild(el("li", "muted", "无"));
    renderMap(b);
    const cases = document.getElementById("cases");
    cases.innerHTML = "";
    // Every cases metric (appeals, work orders, mailbox items): open and overdue that day, and
    // the children with most overdue; a tracked one says it has no target.
    for (const m of b.metrics.filter((x) => x.measure === "cases")) {
      const li = el("li");
      li.dataset.metric = m.id;
      const day = m.day || {};
      const status = V.statusOf(m.day);
      li.dataset.status = status;
      // No data is said once, not as "0 overdue".
      const known = day.value !== undefined && day.value !== null && day.overdue !== undefined && day.overdue !== null;
      const by = known ? (c) => c.overdue || 0 : (c) => c.value || 0;
      const worst = m.children.filter((c) => by(c) > 0).sort((x, y) => by(y) - by(x)).slice(0, 3);
      const judgedHere = m.judged_on === "overdue";
      li.appendChild(el("strong", "", m.label_zh + "："));
      li.appendChild(document.createTextNode("在办 " + V.fmtUnit(m, day.value) + (known ? "，其中超期 " + day.overdue + " " + (m.unit_zh || "件") : "") +
        "（" + (judgedHere ? "目标" + V.targetText(m) + "，" + STATUS_ZH[status] : "跟踪，无目标") + "）" +
        (worst.length ? (known ? "；超期较多：" : "；在办较多：") + worst.map((c) => short(c.name) + " " + by(c)).join("、") : "")));
      cases.appendChild(li);
    }
    if (!cases.children.length) cases.appendChild(el("li", "muted", "本级无在办事项指标"));
    renderAlerts(b, kids, self);
    S.rendered++;
  }

  // The day's alerts: a line per rule and area (a district of the city, a street of a
  // district): how many fired that day and how many were still open at its end.
  function renderAlerts(b, kids, self) {
    const alerts = document.getElementById("alerts");
    alerts.innerHTML = "";
    const groups = b.alert_groups;
    const SHOWN = 7;
    for (const g of groups.slice(0, SHOWN)) {
      const li = el("li");
      li.dataset.rule = g.rule;
      li.dataset.area = g.area;
      li.className = "sev-" + g.severity;
      const where = g.area === b.scope ? self + "本级" : short(g.area_name);
      li.appendChild(el("strong", "", "[" + (SEV_ZH[g.severity] || g.severity) + "] " + where + " · " + g.title + "："));
      const parts = [];
      if (g.open_at_end) parts.push((b.date === new Date(Date.now() + 8 * 3600e3).toISOString().slice(0, 10) ? "目前未解除 " : "日终未解除 ") + g.open_at_end + " 处");
      if (g.fired) parts.push("当日新发 " + g.fired + " 处");
      // The units, unless the only one is the area itself.
      const units = g.nodes.length && !(g.nodes.length === 1 && g.nodes[0] === g.area_name);
      li.appendChild(document.createTextNode(parts.join("，") + (units ? "（" + g.nodes.slice(0, 3).join("、") + (g.nodes.length > 3 ? " 等" : "") + "）" : "")));
      alerts.appendChild(li);
    }
    if (groups.length > SHOWN) {
      const rest = groups.slice(SHOWN);
      // Counted as the sum line counts: open at the day's end, and new that day.
      const restOpen = rest.reduce((n, g) => n + g.open_at_end, 0), restFired = rest.reduce((n, g) => n + g.fired, 0);
      alerts.appendChild(el("li", "muted", "另有 " + rest.length + " 组：" +
        [restOpen ? "未解除 " + restOpen + " 处" : "", restFired ? "当日新发 " + restFired + " 处" : ""].filter(Boolean).join("，") + "（见值班台）"));
    }
    const open = groups.reduce((n, g) => n + g.open_at_end, 0), fired = groups.reduce((n, g) => n + g.fired, 0);
    document.getElementById("alerts-sum").textContent = groups.length
      ? groups.length + " 组（含当日已解除的）：日终未解除 " + open + " 处，当日新发 " + fired + " 处" : "";
    if (!groups.length) {
      // No alert record is not the same as no alert: say which.
      const before = !b.alerts_since || b.date < b.alerts_since;
      alerts.appendChild(el("li", "muted", before
        ? "预警记录" + (b.alerts_since ? "始于 " + b.alerts_since : "尚无") + "，当日无记录；超期与未达标情况见第二、三部分"
        : "当日无预警，日终无未解除预警"));
    }
  }

  // The children shaded by how many of their metrics were at risk or missed that day (from the
  // fewest to the most of them).
  function renderMap(b) {
    const box = document.getElementById("map-box");
    if (!S.geo || !window.echarts) return;
    const count = {}, names = {};
    for (const m of b.metrics) for (const c of m.children) {
      count[c.code] = (count[c.code] || 0) + (c.status === "at_risk" || c.status === "missed" ? 1 : 0);
      names[c.code] = c.name;
    }
    const codes = new Set(S.geo.features.map((f) => f.properties.code));
    const data = Object.keys(count).filter((c) => codes.has(c)).map((code) => ({ name: code, value: count[code] }));
    if (!data.length) { box.hidden = true; return; } // a district's brief: streets have no outline
    box.hidden = false;
    S.counts = count;
    const values = data.map((d) => d.value);
    const lo = Math.min(...values), hi = Math.max(Math.max(...values), lo + 1);
    document.getElementById("map-scale").innerHTML = '<span class="lo">少 ' + lo + '</span><span class="ramp"></span><span class="hi">' + hi + " 多</span>";
    if (!S.map) {
      echarts.registerMap("shenzhen", S.geo);
      S.map = echarts.init(document.getElementById("map"), null, { renderer: "svg" });
    }
    S.map.setOption({
      animation: false,
      // The scale is drawn under the map in HTML, above the caption (a chart's own legend sat
      // on the caption when printed).
      visualMap: { show: false, type: "continuous", min: lo, max: hi, inRange: { color: ["#f6d8a8", "#e8853a", "#b3141c"] } },
      series: [{
        type: "map", map: "shenzhen", nameProperty: "code", roam: false, selectedMode: false,
        aspectScale: V.ASPECT_SCALE, layoutCenter: ["50%", "50%"],
        layoutSize: V.fitSize(document.getElementById("map"), V.aspectOf(S.geo), 0.98, 0.96),
        label: { show: true, fontSize: 8, color: "#111", formatter: (p) => short(names[p.name] || p.name) + " " + (count[p.name] ?? "") },
        itemStyle: { borderColor: "#fff", borderWidth: 0.8 },
        emphasis: { disabled: true },
        data,
      }],
    });
  }

  async function start() {
    const q = new URLSearchParams();
    if (params.get("date")) q.set("date", params.get("date"));
    if (params.get("scope")) q.set("scope", params.get("scope"));
    const [brief, days, geo] = await Promise.all([getJSON("/api/v1/brief?" + q), getJSON("/api/v1/brief/days"),
      getJSON("/api/v1/geo/districts").catch(() => null)]);
    S.brief = brief;
    S.geo = geo;
    if (brief.pdf) {
      const a = document.getElementById("pdf");
      a.hidden = false;
      a.href = brief.pdf + (V.token ? "&token=" + encodeURIComponent(V.token) : "");
    }
    const nav = document.getElementById("history");
    nav.appendChild(el("span", "muted", "历史简报："));
    for (const d of days.slice(0, 31)) {
      const a = el("a", d === brief.date ? "on" : "", d.slice(5));
      // The scope stays as the reader moves between days.
      a.href = "/brief?date=" + d + (params.get("scope") ? "&scope=" + encodeURIComponent(params.get("scope")) : "");
      nav.appendChild(a);
    }
    render(brief);
  }
  start().catch((e) => {
    const p = document.getElementById("error");
    p.hidden = false;
    p.textContent = "简报加载失败：" + e.message;
  });
})();
