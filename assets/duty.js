// The duty console (值班台): current alerts grouped by rule and district as Alertmanager groups
// them — which districts need a call and why — with filters, each unit's name, how long its
// breach has lasted and its cases' age; acknowledgement and silences through dialogs; the
// history, with a resolved alert in the resolved colour and its value at resolution.
(function () {
  "use strict";
  const V = window.VSCC;
  const { SEV_ZH, token } = V;
  const $ = (id) => document.getElementById(id);
  const headers = token ? { Authorization: "Bearer " + token, "Content-Type": "application/json" } : { "Content-Type": "application/json" };
  const STATE = { pending: "待定", firing: "告警中", no_data: "无数据", resolved: "已恢复", notified: "已通知", acknowledged: "已确认", unacknowledged: "取消确认", inactive: "已解除", silenced: "已静默", escalated: "已升级" };
  const RANK = { critical: 3, warning: 2, info: 1 };
  const S = { answer: null, open: new Set(), rendered: 0, districts: {} };
  window.__vscc = S; // for the browser tests

  const el = (tag, cls, text) => { const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e; };
  const cell = (tr, text, cls) => { const td = el("td", cls, text); tr.appendChild(td); return td; };
  const day = (iso) => iso.slice(0, 10);
  const filters = () => Object.fromEntries(new FormData($("filters")));
  function toast(text, bad) {
    const t = $("toast");
    t.textContent = text; t.className = "toast" + (bad ? " bad" : ""); t.hidden = false;
    clearTimeout(S.toastTimer); S.toastTimer = setTimeout(() => { t.hidden = true; }, 4000);
  }
  async function call(method, path, body) {
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401) { V.askToken(); throw new Error("需要登录"); }
    if (!r.ok) {
      const e = await r.json().catch(() => ({ error: r.statusText }));
      throw new Error(e.error || r.status);
    }
    return r.status === 204 ? null : r.json();
  }

  // A dialog's answer: the form's fields, or null when cancelled.
  function ask(dialog, what) {
    const d = $(dialog);
    d.querySelector(".muted").textContent = what;
    d.querySelector("form").reset();
    d.showModal();
    return new Promise((resolve) => {
      d.onclose = () => resolve(d.returnValue === "ok" ? Object.fromEntries(new FormData(d.querySelector("form"))) : null);
    });
  }
  async function acknowledge(alerts, what) {
    const answer = await ask("ack-dialog", what);
    if (!answer) return;
    let done = 0;
    for (const a of alerts.filter((x) => !x.ack)) {
      const [rule, node] = a.fingerprint.split("/");
      try { await call("POST", `/api/v1/alerts/${rule}/${node}/ack`, { comment: answer.comment }); done++; } catch (e) { toast("确认失败：" + e.message, true); }
    }
    toast("已确认 " + done + " 条");
    refresh();
  }
  async function unacknowledge(a) {
    const [rule, node] = a.fingerprint.split("/");
    try { await call("DELETE", `/api/v1/alerts/${rule}/${node}/ack`); } catch (e) { toast("操作失败：" + e.message, true); }
    refresh();
  }
  async function silence(rule, scope, what) {
    const answer = await ask("silence-dialog", what);
    if (!answer) return;
    const now = new Date();
    const body = { rule, scope, starts_at: now.toISOString(), ends_at: new Date(now.getTime() + Number(answer.hours) * 3600e3).toISOString(), comment: answer.comment };
    try { await call("POST", "/api/v1/silences", body); toast("已静默 " + answer.hours + " 小时"); } catch (e) { toast("静默失败：" + e.message, true); }
    refresh();
  }

  // The groups the filters let through, each with the alerts that pass, sorted as asked.
  // Severity is the group's (what the console shows on its row); state is each alert's, and a
  // group's units, size and age are of the alerts shown.
  function visibleGroups() {
    const f = filters();
    const keep = (a) => f.state === "" || (f.state === "unacked" ? a.state === "firing" && !a.ack : a.state === f.state);
    const groups = S.answer.groups
      .filter((g) => (!f.district || g.district === f.district) && (!f.severity || g.severity === f.severity))
      .map((g) => {
        const shown = g.alerts.filter(keep);
        const adds = g.value_sum !== null && g.value_sum !== undefined;
        return Object.assign({}, g, {
          shown,
          value_sum: adds ? shown.reduce((n, a) => n + (a.value || 0), 0) : null,
          breach_days: shown.reduce((n, a) => Math.max(n, a.breach_days), 0),
        });
      })
      .filter((g) => g.shown.length);
    const by = {
      // The most severe first; within a severity the widest (most units), then the newest.
      urgency: (a, b) => RANK[b.severity] - RANK[a.severity] || b.shown.length - a.shown.length || a.breach_days - b.breach_days,
      age: (a, b) => b.breach_days - a.breach_days || RANK[b.severity] - RANK[a.severity],
      newest: (a, b) => a.breach_days - b.breach_days || RANK[b.severity] - RANK[a.severity],
      district: (a, b) => a.district.localeCompare(b.district) || RANK[b.severity] - RANK[a.severity],
      size: (a, b) => (b.value_sum ?? b.shown.length) - (a.value_sum ?? a.shown.length),
    }[f.sort || "urgency"];
    return groups.sort(by);
  }

  function renderSummary() {
    const all = S.answer.alerts;
    const box = $("summary");
    box.innerHTML = "";
    const firing = all.filter((a) => a.state === "firing");
    const groups = S.answer.groups.filter((g) => g.counts.firing > 0);
    const districts = new Set(groups.filter((g) => g.severity === "critical").map((g) => g.district));
    const items = [
      ["critical", "紧急", groups.filter((g) => g.severity === "critical").length + " 组", "涉及 " + districts.size + " 个区"],
      ["warning", "警告", groups.filter((g) => g.severity === "warning").length + " 组", ""],
      ["info", "提示", groups.filter((g) => g.severity === "info").length + " 组", ""],
      ["firing", "告警中", firing.length + " 条", firing.filter((a) => !a.ack).length + " 条未确认"],
      ["pending", "待定", all.filter((a) => a.state === "pending").length + " 条", "持续未满观察期"],
    ];
    for (const [cls, label, n, sub] of items) {
      const d = el("div", "sum " + cls);
      d.dataset.kind = cls;
      d.appendChild(el("span", "label", label));
      d.appendChild(el("b", "", n));
      if (sub) d.appendChild(el("span", "sub", sub));
      box.appendChild(d);
    }
  }

  // One group: a header row (what, where, how big, how long) and, opened, a row per unit.
  function renderGroups() {
    const table = $("current");
    table.querySelectorAll("tbody").forEach((b) => b.remove());
    const groups = visibleGroups();
    $("current-count").textContent = groups.length + " 组 · " + groups.reduce((n, g) => n + g.shown.length, 0) + " 条";
    if (!groups.length) {
      const tb = el("tbody"); const tr = el("tr"); cell(tr, "当前筛选下暂无预警", "muted").colSpan = 8; tb.appendChild(tr); table.appendChild(tb);
    }
    for (const g of groups) {
      const tb = el("tbody", "group sev-" + g.severity);
      tb.dataset.key = g.key;
      tb.dataset.district = g.district;
      tb.dataset.severity = g.severity;
      const head = el("tr", "group-row");
      const open = S.open.has(g.key);
      // Raised by the group's total (thirty overdue across a district), not by one alert.
      const own = g.shown.reduce((m, a) => Math.max(m, RANK[a.severity]), 0);
      const sev = cell(head, SEV_ZH[g.severity], "sev " + g.severity);
      if (RANK[g.severity] > own) sev.appendChild(el("small", "muted", "（按合计）"));
      cell(head, g.district_name, "district");
      const what = cell(head, "", "what");
      what.appendChild(el("span", "caret", open ? "▾ " : "▸ "));
      what.appendChild(document.createTextNode(g.title));
      const firing = g.shown.filter((a) => a.state === "firing").length;
      cell(head, g.shown.length + " 个单位" + (firing && firing < g.shown.length ? "（告警 " + firing + "）" : ""), "units");
      const one = g.shown.length === 1 ? g.shown[0] : null;
      cell(head, g.value_sum !== null && g.value_sum !== undefined ? (/overdue/.test(g.rule) ? "超期 " : "") + V.number(g.value_sum, 0) + " 件"
        : one ? one.value_text : "—", "size");
      cell(head, g.breach_days > 0 ? "最久 " + g.breach_days + " 天" : "今日", "age");
      const acked = g.shown.filter((a) => a.ack).length;
      cell(head, acked + "/" + g.shown.length, "acked");
      const actions = cell(head, "", "actions");
      const ackAll = el("button", "", "全部确认");
      ackAll.disabled = acked === g.shown.length;
      ackAll.onclick = (e) => { e.stopPropagation(); acknowledge(g.shown, g.district_name + " · " + g.title + "：" + (g.shown.length - acked) + " 条"); };
      const mute = el("button", "", "静默本组");
      mute.onclick = (e) => { e.stopPropagation(); silence(g.rule, g.district, g.district_name + " · " + g.title); };
      actions.appendChild(ackAll); actions.appendChild(mute);
      // 督办: the units behind this group get a task, prefilled on the 督办台.
      const units = [...new Set(g.shown.map((a) => a.node).filter((n) => n && !/^\d{4}00$/.test(n)))];
      if (units.length) {
        const task = el("button", "", "转为督办");
        task.onclick = (e) => {
          e.stopPropagation();
          // A critical group is raised as an incident (应急事件), the others as urgent tasks.
          const q = new URLSearchParams({ new: "1", alert: g.key, title: g.district_name + " · " + g.title, units: units.join(","),
            priority: g.severity === "critical" ? "incident" : "urgent" });
          const metric = (g.shown[0] || {}).metric;
          if (metric) q.set("metric", metric);
          location.href = "/tasks?" + q;
        };
        actions.appendChild(task);
      }
      head.onclick = () => { if (S.open.has(g.key)) S.open.delete(g.key); else S.open.add(g.key); renderGroups(); };
      tb.appendChild(head);
      if (open) {
        for (const a of g.shown) {
          const tr = el("tr", "alert-row " + a.state);
          tr.dataset.fingerprint = a.fingerprint;
          // The group's columns: 级别 · 区 (the unit) · 事项 (the text) · 涉及 (its state) ·
          // 规模 (its value) · 持续 (since when, days overdue, the oldest case) · 确认.
          cell(tr, SEV_ZH[a.severity], "sev " + a.severity);
          const who = cell(tr, "", "unit");
          who.appendChild(el("b", "", a.node_name));
          if (a.node !== a.district) who.appendChild(el("small", "muted", " " + a.district_name));
          cell(tr, a.summary, "summary");
          cell(tr, STATE[a.state] || a.state, "state");
          cell(tr, a.value_text, "size");
          const age = ["自 " + day(a.breach_since), a.days_overdue !== undefined ? "超期 " + a.days_overdue + " 天" : "持续 " + a.breach_days + " 天"];
          if (a.case_age_days !== undefined && a.case_age_days !== null) age.push("最久案龄 " + a.case_age_days + " 天");
          const since = cell(tr, "", "since age");
          since.textContent = age.join(" · ");
          cell(tr, a.ack ? (a.ack.by + (a.ack.comment ? "：" + a.ack.comment : "")) : "", "ack");
          const act = cell(tr, "", "actions");
          const b = el("button", "", a.ack ? "取消确认" : "确认");
          b.onclick = () => (a.ack ? unacknowledge(a) : acknowledge([a], a.node_name + " · " + a.summary));
          const m = el("button", "", "静默");
          m.onclick = () => silence(a.rule, a.node, a.node_name + " · " + a.summary);
          act.appendChild(b); act.appendChild(m);
          tb.appendChild(tr);
        }
      }
      table.appendChild(tb);
    }
    S.rendered++;
  }

  // 督办: the open tasks of the console's scope, the most urgent first (incidents, then the
  // most overdue), each opening on the 督办台.
  const { PRIO_ZH } = V;
  async function loadTasks() {
    const box = $("tasks-rows");
    if (!box) return;
    let r;
    try { r = await call("GET", "/api/v1/tasks?state=open"); } catch (e) { return; }
    $("tasks-count").textContent = r.tasks.length + " 项在办";
    box.innerHTML = "";
    for (const t of r.tasks.slice(0, 20)) {
      const tr = el("tr", t.overdue ? "task-late" : "");
      cell(tr, PRIO_ZH[t.priority] || t.priority, "sev " + (t.priority === "incident" ? "critical" : t.priority === "urgent" ? "warning" : "info"));
      const what = cell(tr, "", "what");
      const a = el("a", "", t.title);
      a.href = "/tasks?id=" + encodeURIComponent(t.id);
      what.appendChild(a);
      cell(tr, t.scope_name, "");
      cell(tr, (t.due || "").slice(5, 16).replace("T", " "), "age");
      cell(tr, "已销号 " + (t.states.accepted || 0) + "/" + t.assignments_total + " · 待销号 " + (t.states.submitted || 0), "units");
      cell(tr, t.overdue ? "超期 " + t.overdue : "—", t.overdue ? "critical" : "muted");
      box.appendChild(tr);
    }
    if (!r.tasks.length) { const tr = el("tr"); cell(tr, "暂无在办督办任务", "muted").colSpan = 6; box.appendChild(tr); }
  }

  async function refresh() {
    loadTasks();
    S.answer = await call("GET", "/api/v1/alerts");
    for (const g of S.answer.groups) S.districts[g.district] = g.district_name;
    const select = $("filters").elements.district;
    const chosen = select.value;
    select.innerHTML = '<option value="">全部</option>';
    for (const [code, name] of Object.entries(S.districts).sort()) { const o = el("option", "", name); o.value = code; select.appendChild(o); }
    select.value = chosen;
    renderSummary();
    renderGroups();
    V.stamp();
    const sil = await call("GET", "/api/v1/silences");
    const sb = $("silences"); sb.innerHTML = "";
    for (const x of sil) {
      const tr = el("tr");
      cell(tr, x.rule || "全部"); cell(tr, (x.scope && S.districts[x.scope]) || x.scope || "全市"); cell(tr, x.starts_at.slice(0, 16).replace("T", " ")); cell(tr, x.ends_at.slice(0, 16).replace("T", " "));
      cell(tr, x.daily ? x.daily.from + "–" + x.daily.to : "全天"); cell(tr, x.comment); cell(tr, x.created_by);
      sb.appendChild(tr);
    }
    if (!sil.length) { const tr = el("tr"); cell(tr, "无", "muted"); sb.appendChild(tr); }
    // Records the live figures refused (stored under other rules, or failing to apply).
    const q = await fetch("/api/v1/quarantine", { headers });
    if (q.ok) {
      const body = await q.json();
      $("quarantine").hidden = body.total === 0;
      $("quarantine-total").textContent = body.total ? `共 ${body.total} 条` : "";
      const qb = $("quarantine-rows"); qb.innerHTML = "";
      for (const r of body.recent) {
        const tr = el("tr");
        cell(tr, r.at.slice(0, 19).replace("T", " ")); cell(tr, r.id); cell(tr, r.kind); cell(tr, r.org); cell(tr, r.reason);
        qb.appendChild(tr);
      }
    }
    const hist = await call("GET", "/api/v1/alerts/history?limit=100");
    const hb = $("history"); hb.innerHTML = "";
    for (const h of hist) {
      const tr = el("tr", "h-" + h.state);
      cell(tr, new Date(h.at * 1000).toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" }));
      // Resolved is good news: the resolved colour, never the alarm's.
      cell(tr, STATE[h.state] || h.state, h.state === "resolved" || h.state === "inactive" ? "resolved" : h.severity);
      cell(tr, h.district_name); cell(tr, h.node_name || h.node); cell(tr, h.summary);
      cell(tr, h.state === "resolved" && h.value !== null ? V.number(h.value, h.value % 1 ? 2 : 0) : "");
      cell(tr, h.actor); cell(tr, h.comment);
      hb.appendChild(tr);
    }
  }

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : ""));
    ws.onopen = () => V.showConn("ok", "● 实时");
    ws.onmessage = (ev) => { const m = JSON.parse(ev.data); if (m.type === "alert") { clearTimeout(S.wsTimer); S.wsTimer = setTimeout(() => refresh().catch(() => {}), 300); } };
    ws.onclose = () => { V.showConn("down", "连接中断，重连中…"); setTimeout(connect, 2000 + Math.random() * 2000); };
  }
  $("filters").onchange = () => renderGroups();
  fetch("/api/v1/me", { headers }).then((r) => (r.ok ? r.json() : null)).then((me) => { if (me) $("who").textContent = me.name + " · " + me.scope_name; }).catch(() => {});
  refresh().catch((e) => { const tb = el("tbody"); const tr = el("tr"); cell(tr, "加载失败：" + e.message, "bad"); tb.appendChild(tr); $("current").appendChild(tb); });
  setInterval(() => refresh().catch(() => {}), 15000);
  connect();
})();
