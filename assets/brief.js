// The daily brief (每日简报): one day's figures from the nightly snapshots, printable on A4.
(function () {
  "use strict";
  const { STATUS_ZH, params, getJSON, clauseText } = window.VSCC;
  const S = { brief: null, rendered: 0 };
  window.__vscc = S; // for the browser tests
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const { fmt, targetText } = window.VSCC;
  function change(m) {
    const a = m.day && m.day.value, b = m.before && m.before.value;
    if (a === null || a === undefined || b === null || b === undefined) return el("span", "muted", "—");
    const d = a - b;
    // Unchanged as the page shows numbers: a change that rounds to zero is none.
    const shown = m.unit === "percent" ? (Math.abs(d) * 100).toFixed(m.precision) : Math.abs(d).toFixed(m.precision);
    if (Number(shown) === 0) return el("span", "muted", "持平");
    const text = (d > 0 ? "+" : "−") + shown + (m.unit === "percent" ? "个百分点" : "");
    // Fewer is better where the target is a most, and for open cases (and their time to take).
    const better = m.at_most || m.measure === "cases" || m.measure === "elapsed" ? d < 0 : d > 0;
    return el("span", better ? "up" : "down", text);
  }

  function render(b) {
    document.getElementById("date").textContent = b.date;
    document.getElementById("scope").textContent = "范围 " + b.scope;
    document.getElementById("generated").textContent = "数据来源：" + b.date + " 夜间快照";
    document.title = "每日简报 " + b.date;
    const body = document.querySelector("#figures tbody");
    body.innerHTML = "";
    // Metrics with a target are the table; tracked ones (no target) one line under it.
    const tracked = document.getElementById("tracked");
    tracked.innerHTML = "";
    tracked.appendChild(el("strong", "", "跟踪指标（无目标）："));
    for (const m of b.metrics.filter((x) => x.target === null || x.target === undefined)) {
      const item = el("span", "item");
      item.dataset.metric = m.id;
      item.dataset.value = m.day && m.day.value !== null ? String(m.day.value) : "";
      item.appendChild(document.createTextNode(m.label_zh + " " + fmt(m, m.day && m.day.value) + " "));
      item.appendChild(change(m));
      tracked.appendChild(item);
    }
    for (const m of b.metrics.filter((x) => x.target !== null && x.target !== undefined)) {
      const tr = el("tr");
      tr.dataset.metric = m.id;
      tr.dataset.value = m.day && m.day.value !== null ? String(m.day.value) : "";
      tr.appendChild(el("td", "clause", clauseText(m.clause)));
      tr.appendChild(el("td", "", m.label_zh));
      tr.appendChild(el("td", "", targetText(m)));
      tr.appendChild(el("td", "num", fmt(m, m.day && m.day.value)));
      const c = el("td", "num"); c.appendChild(change(m)); tr.appendChild(c);
      const status = m.day ? m.day.status : "no_data";
      tr.appendChild(el("td", "status " + status, STATUS_ZH[status] || status));
      body.appendChild(tr);
    }
    const risks = document.getElementById("risks");
    risks.innerHTML = "";
    for (const m of b.metrics) {
      if (m.measure === "cases") continue; // their own section
      const bad = m.children.filter((c) => c.status === "at_risk" || c.status === "missed");
      const self = m.day && (m.day.status === "at_risk" || m.day.status === "missed");
      if (!bad.length && !self) continue;
      const li = el("li");
      li.dataset.metric = m.id;
      li.appendChild(el("strong", "", m.label_zh + "（市" + STATUS_ZH[m.day ? m.day.status : "no_data"] + "）："));
      // How many districts, then the three farthest from the target by name (a line each, so
      // that the brief stays one sheet).
      const missed = bad.filter((c) => c.status === "missed").length, risky = bad.length - missed;
      const gap = (c) => (c.value === null ? -Infinity : m.at_most ? c.value - m.target : m.target - c.value);
      const worst = bad.slice().sort((x, y) => gap(y) - gap(x)).slice(0, 3)
        .map((c) => c.name.replace(/(新)?区$/, "") + " " + fmt(m, c.value));
      const counted = [missed ? "未达标 " + missed + " 个区" : "", risky ? "有风险 " + risky + " 个区" : ""].filter(Boolean).join("、");
      li.appendChild(document.createTextNode(bad.length
        ? counted + "：" + worst.join("，") + (bad.length > 3 ? " 等" : "")
        : (m.children.length ? "各区无风险" : "市级指标")));
      risks.appendChild(li);
    }
    if (!risks.children.length) risks.appendChild(el("li", "muted", "无"));
    renderMap(b);
    const cases = document.getElementById("cases");
    cases.innerHTML = "";
    // Every cases metric (appeals, work orders, mailbox items): open and overdue that day, and
    // the districts with most overdue (days snapshotted before overdue counts were kept: most open).
    for (const m of b.metrics.filter((x) => x.measure === "cases")) {
      const li = el("li");
      li.dataset.metric = m.id;
      const day = m.day || {};
      // No data is said once, not as "0 overdue".
      const known = day.value !== undefined && day.value !== null && day.overdue !== undefined && day.overdue !== null;
      const by = known ? (c) => c.overdue || 0 : (c) => c.value || 0;
      const worst = m.children.filter((c) => by(c) > 0).sort((x, y) => by(y) - by(x)).slice(0, 3);
      li.textContent = m.label_zh + "：在办 " + fmt(m, day.value) + " 件" + (known ? "，超期 " + day.overdue + " 件" : "") +
        "（" + STATUS_ZH[day.status || "no_data"] + "）" +
        (worst.length ? (known ? "；超期较多：" : "；在办较多：") + worst.map((c) => c.name.replace(/(新)?区$/, "") + " " + by(c)).join("、") : "");
      cases.appendChild(li);
    }
    const alerts = document.getElementById("alerts");
    alerts.innerHTML = "";
    const SEV = { critical: "紧急", warning: "警告", info: "提示" };
    // One line per rule, the most severe and most frequent first: how many fired and where
    // (the duty console has each of them).
    const RANK = { critical: 0, warning: 1, info: 2 };
    const groups = new Map();
    for (const a of b.alerts.filter((x) => x.state === "firing")) {
      const g = groups.get(a.rule) || { a, nodes: [] };
      if (!g.nodes.includes(a.node_name)) g.nodes.push(a.node_name);
      g.n = (g.n || 0) + 1;
      groups.set(a.rule, g);
    }
    const lines = [...groups.values()].sort((x, y) => (RANK[x.a.severity] ?? 3) - (RANK[y.a.severity] ?? 3) || y.n - x.n);
    const SHOWN = 6;
    for (const g of lines.slice(0, SHOWN)) {
      const li = el("li");
      li.dataset.rule = g.a.rule;
      li.appendChild(el("strong", "", "[" + (SEV[g.a.severity] || g.a.severity) + "] " + (g.a.title || g.a.rule) + " " + g.n + " 条："));
      li.appendChild(document.createTextNode(g.nodes.slice(0, 4).join("、") + (g.nodes.length > 4 ? " 等 " + g.nodes.length + " 处" : "")));
      alerts.appendChild(li);
    }
    if (lines.length > SHOWN) {
      const rest = lines.slice(SHOWN);
      alerts.appendChild(el("li", "muted", "另有 " + rest.length + " 类 " + rest.reduce((n, g) => n + g.n, 0) + " 条（见值班台）"));
    }
    if (!alerts.children.length) alerts.appendChild(el("li", "muted", "当日无预警"));
    S.rendered++;
  }

  // The districts shaded by how many of their metrics were at risk or missed that day (from
  // the fewest to the most of them).
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
    if (!S.map) {
      echarts.registerMap("shenzhen", S.geo);
      S.map = echarts.init(document.getElementById("map"), null, { renderer: "svg" });
    }
    S.map.setOption({
      animation: false,
      visualMap: { type: "continuous", min: Math.min(...values), max: Math.max(Math.max(...values), Math.min(...values) + 1),
        inRange: { color: ["#f6d8a8", "#e8853a", "#b3141c"] }, calculable: false, orient: "horizontal",
        left: "center", bottom: 0, itemHeight: 90, itemWidth: 9, text: ["多", "少"], textStyle: { fontSize: 8, color: "#444" } },
      series: [{
        type: "map", map: "shenzhen", nameProperty: "code", roam: false, selectedMode: false,
        aspectScale: window.VSCC.ASPECT_SCALE, layoutCenter: ["50%", "44%"],
        layoutSize: window.VSCC.fitSize(document.getElementById("map"), window.VSCC.aspectOf(S.geo), 0.98, 0.78),
        label: { show: true, fontSize: 8, color: "#111", formatter: (p) => (names[p.name] || p.name).replace(/(新)?区$/, "") + " " + (count[p.name] ?? "") },
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
      a.href = brief.pdf + (window.VSCC.token ? "&token=" + encodeURIComponent(window.VSCC.token) : "");
    }
    const nav = document.getElementById("history");
    nav.appendChild(el("span", "muted", "历史简报："));
    for (const d of days.slice(0, 31)) {
      const a = el("a", d === brief.date ? "on" : "", d.slice(5));
      a.href = "/brief?date=" + d;
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
