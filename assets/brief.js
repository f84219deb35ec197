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
    for (const m of b.metrics) {
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
      if (m.id === "open_appeals" || m.id === "work_orders" || m.id === "feedback") continue;
      const bad = m.children.filter((c) => c.status === "at_risk" || c.status === "missed");
      const self = m.day && (m.day.status === "at_risk" || m.day.status === "missed");
      if (!bad.length && !self) continue;
      const li = el("li");
      li.dataset.metric = m.id;
      li.appendChild(el("strong", "", m.label_zh + "（全市" + STATUS_ZH[m.day ? m.day.status : "no_data"] + "）："));
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
    for (const m of b.metrics.filter((x) => ["open_appeals", "work_orders", "feedback"].includes(x.id))) {
      const li = el("li");
      const worst = m.children.filter((c) => c.value).sort((x, y) => y.value - x.value).slice(0, 3);
      li.textContent = m.label_zh + "：在办 " + fmt(m, m.day && m.day.value) + " 件（" + (STATUS_ZH[m.day ? m.day.status : "no_data"]) + "）" +
        (worst.length ? "；较多的区：" + worst.map((c) => c.name + " " + fmt(m, c.value)).join("，") : "");
      cases.appendChild(li);
    }
    const alerts = document.getElementById("alerts");
    alerts.innerHTML = "";
    const SEV = { critical: "紧急", warning: "警告", info: "提示" };
    // The most severe first, then the latest; the rest counted (the duty console has them all).
    const RANK = { critical: 0, warning: 1, info: 2 };
    const firing = b.alerts.filter((x) => x.state === "firing")
      .sort((x, y) => (RANK[x.severity] ?? 3) - (RANK[y.severity] ?? 3) || (x.at < y.at ? 1 : -1));
    const SHOWN = 12;
    for (const a of firing.slice(0, SHOWN)) {
      alerts.appendChild(el("li", "", a.at.slice(11, 16) + " [" + (SEV[a.severity] || a.severity) + "] " + a.summary));
    }
    if (firing.length > SHOWN) alerts.appendChild(el("li", "muted", "另有 " + (firing.length - SHOWN) + " 条（见值班台）"));
    if (!alerts.children.length) alerts.appendChild(el("li", "muted", "当日无预警"));
    S.rendered++;
  }

  // The districts coloured by how many of their metrics were at risk or missed that day.
  const KEY = ["#2e9d62", "#d98c00", "#c01c28"];
  function renderMap(b) {
    const box = document.getElementById("map-box");
    if (!S.geo || !window.echarts) return;
    const count = {};
    for (const m of b.metrics) for (const c of m.children) {
      count[c.code] = (count[c.code] || 0) + (c.status === "at_risk" || c.status === "missed" ? 1 : 0);
    }
    const codes = new Set(S.geo.features.map((f) => f.properties.code));
    const data = Object.keys(count).filter((c) => codes.has(c)).map((code) => ({
      name: code, value: count[code], itemStyle: { areaColor: KEY[count[code] === 0 ? 0 : count[code] <= 3 ? 1 : 2] },
    }));
    if (!data.length) { box.hidden = true; return; } // a district's brief: streets have no outline
    box.hidden = false;
    const names = {};
    for (const m of b.metrics) for (const c of m.children) names[c.code] = c.name;
    S.counts = count;
    if (!S.map) {
      echarts.registerMap("shenzhen", S.geo);
      S.map = echarts.init(document.getElementById("map"), null, { renderer: "svg" });
    }
    S.map.setOption({
      animation: false,
      series: [{
        type: "map", map: "shenzhen", nameProperty: "code", roam: false, selectedMode: false,
        aspectScale: window.VSCC.ASPECT_SCALE, layoutCenter: ["50%", "50%"],
        layoutSize: window.VSCC.fitSize(document.getElementById("map"), window.VSCC.aspectOf(S.geo), 0.98, 0.96),
        label: { show: true, fontSize: 9, color: "#fff", formatter: (p) => (names[p.name] || p.name).replace(/(新)?区$/, "") + " " + (count[p.name] ?? "") },
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
