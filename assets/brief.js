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
      li.appendChild(el("strong", "", m.label_zh + "（全市" + STATUS_ZH[m.day ? m.day.status : "no_data"] + "）："));
      li.appendChild(document.createTextNode(bad.map((c) => c.name + " " + fmt(m, c.value) + (c.status === "missed" ? "（未达标）" : "（有风险）")).join("，") ||
        (m.children.length ? "各区无风险" : "市级指标")));
      risks.appendChild(li);
    }
    if (!risks.children.length) risks.appendChild(el("li", "muted", "无"));
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
    for (const a of b.alerts.filter((x) => x.state === "firing").slice(0, 40)) {
      alerts.appendChild(el("li", "", a.at.slice(11, 16) + " [" + (SEV[a.severity] || a.severity) + "] " + a.summary));
    }
    if (!alerts.children.length) alerts.appendChild(el("li", "muted", "当日无预警"));
    S.rendered++;
  }

  async function start() {
    const q = new URLSearchParams();
    if (params.get("date")) q.set("date", params.get("date"));
    if (params.get("scope")) q.set("scope", params.get("scope"));
    const [brief, days] = await Promise.all([getJSON("/api/v1/brief?" + q), getJSON("/api/v1/brief/days")]);
    S.brief = brief;
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
