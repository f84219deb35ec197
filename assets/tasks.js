// 督办台: the tasks sent down the tree from a scope (GET /api/v1/tasks), one task's units on the
// map, in a table and on a timeline (GET /api/v1/tasks/{id}), accepting (销号) and returning
// (退回) what the units submitted, and issuing a task — prefilled when opened from an alert, a
// plan-board cell or a metric page's at-risk list (?new=1&…). Steps arrive live over /ws.
(function () {
  "use strict";
  const V = window.VSCC;
  const $ = (id) => document.getElementById(id);
  const { esc } = V;
  const auth = V.authHeader;
  const { PRIO_ZH } = V;
  const STATE_ZH = { issued: "待签收", signed: "已签收", in_progress: "办理中", submitted: "已办结待销号", accepted: "已销号", returned: "已退回" };
  const STATE_ORDER = ["accepted", "submitted", "in_progress", "signed", "returned", "issued"];
  const OVERDUE_ZH = { sign: "超期未签收", submit: "超期未办结" };
  const S = { me: null, org: {}, catalogue: {}, scope: null, tasks: [], selected: V.params.get("id"), task: null,
    view: {}, epoch: null, seq: 0, backoff: 500, map: null };
  window.__tasks = S; // for the browser tests

  const nameOf = (code) => (S.org[code] ? S.org[code].name : code);
  const within = (code, scope) => { for (let c = code; c; c = S.org[c] && S.org[c].parent) if (c === scope) return true; return false; };
  const time = (iso) => (iso ? iso.slice(5, 16).replace("T", " ") : "—");

  async function call(method, path, body) {
    const headers = Object.assign({ "Content-Type": "application/json" }, auth());
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 401) { V.askToken(); throw new Error("需要登录"); }
    return { status: r.status, body: await r.json().catch(() => ({})) };
  }
  function toast(text, bad) {
    const t = $("toast");
    t.textContent = text;
    t.className = "toast" + (bad ? " bad" : "");
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => { t.hidden = true; }, 3500);
  }
  // The server's reasons in Chinese.
  function reasonZh(reason) {
    const rules = [
      [/is in the past/, () => "不能早于现在"],
      [/is required/, () => "必填"],
      [/at most (\d+) characters/, (m) => "最多 " + m[1] + " 个字"],
      [/matches no unit/, () => "按此条件没有选到任何单位（目前没有符合条件的单位）"],
      [/a task goes to at most (\d+)/, (m) => "一次最多下达 " + m[1] + " 个单位"],
      [/give either units or selector/, () => "请指定单位或选取条件"],
      [/name at least one unit/, () => "请至少指定一个单位"],
      [/is the issuing unit itself/, () => "不能下达给本单位自己，请选下级单位"],
      [/^org (\d+) not found/, (m) => "单位 " + m[1] + " 不存在或不在本单位范围内"],
      [/the assignment is (\w+)/, (m) => "该事项当前为“" + (STATE_ZH[m[1]] || m[1]) + "”，不能进行此操作"],
      [/changed meanwhile/, () => "该事项刚被他人处理，已刷新"],
    ];
    for (const [re, zh] of rules) { const m = String(reason).match(re); if (m) return zh(m); }
    return reason;
  }

  // ---------------------------------------------------------------- the list
  function barHTML(states, total) {
    return '<div class="bar">' + STATE_ORDER.map((s) => (states[s] ? '<span class="s-' + s + '" style="width:' +
      (100 * states[s] / total).toFixed(2) + '%" title="' + STATE_ZH[s] + " " + states[s] + '"></span>' : "")).join("") + "</div>";
  }
  function renderList() {
    const list = $("task-list");
    $("list-count").textContent = S.tasks.length + " 项";
    list.innerHTML = S.tasks.map((t) => {
      const done = t.states.accepted || 0;
      const cls = "task" + (t.id === S.selected ? " selected" : "") + (t.overdue ? " late" : "") + (t.closed ? " closed" : "");
      return '<li class="' + cls + '" data-id="' + esc(t.id) + '"><div class="t-title"><span class="prio ' + t.priority + '">' + PRIO_ZH[t.priority] +
        "</span>" + esc(t.title) + '</div><div class="t-meta">' + esc(t.scope_name) + " 下达 · 截止 " + esc(time(t.due)) + " · 已销号 " + done + "/" + t.assignments_total +
        (t.overdue ? ' · <span class="overdue">超期 ' + t.overdue + "</span>" : "") + "</div>" + barHTML(t.states, t.assignments_total) + "</li>";
    }).join("") || '<li class="muted">没有符合条件的督办任务</li>';
    list.querySelectorAll("li.task").forEach((li) => { li.onclick = () => select(li.dataset.id); });
  }
  function renderSummary() {
    const open = S.tasks.filter((t) => !t.closed).length;
    const late = S.tasks.reduce((n, t) => n + t.overdue, 0);
    const waiting = S.tasks.reduce((n, t) => n + (t.states.submitted || 0), 0);
    const mine = S.task ? flat(S.task.assignments, 0).filter((a) => a.state === "submitted" && mayJudge(a)).length : null;
    const f = (S.view[S.scope] || {}).task_assignments;
    const onTime = (S.view[S.scope] || {}).task_on_time;
    const sum = (cls, label, value, sub) => '<div class="sum ' + cls + '"><span class="label">' + label + "</span><b>" + value + '</b><span class="sub">' + (sub || "") + "</span></div>";
    $("summary").innerHTML =
      sum("info", "列表中的任务", S.tasks.length, "其中在办 " + open) +
      sum("firing", "在办事项（本级及下级）", f && f.value !== null ? V.number(f.value, 0) : "—", "每个承办单位一项") +
      sum(late ? "critical" : "info", "超期事项", f && f.overdue !== null && f.overdue !== undefined ? f.overdue : late, "未按时签收或办结") +
      sum("warning", "待销号", waiting, mine === null ? "单位已办结，等待审核" : "本任务中待我方销号 " + mine + " 项") +
      sum("info", "按时办结率（本年）", onTime && onTime.value !== null && onTime.value !== undefined ? Math.round(onTime.value * 100) + "%" : "—", "已销号事项中按时办结的比例");
  }
  async function loadList() {
    const state = $("filters").state.value;
    const r = await V.getJSON("/api/v1/tasks?scope=" + S.scope + "&state=" + state);
    S.tasks = r.tasks;
    renderList();
    renderSummary();
    V.stamp();
    if (!S.selected && S.tasks.length) select(S.tasks[0].id);
  }

  // ---------------------------------------------------------------- one task
  const flat = (list, depth) => list.flatMap((a) => [Object.assign({ depth }, a)].concat(flat(a.children || [], depth + 1)));
  // Whether the caller accepts and returns an assignment: the issuer's side (the task's issuer,
  // or the unit that passed it down), as a leader, duty officer or admin.
  function mayJudge(a) {
    if (!["leader", "duty_officer", "admin"].includes(S.me.role)) return false;
    return within(a.parent || S.task.scope, S.me.scope);
  }
  function renderDetail() {
    const t = S.task;
    const box = $("detail");
    if (!t) { box.innerHTML = '<p class="muted">选择左侧的任务查看各单位办理情况</p>'; return; }
    const rows = flat(t.assignments, 0);
    const src = t.source || {};
    const source = src.metric ? '来源：<a href="/metric/' + esc(src.metric) + "?scope=" + esc(src.scope || "") + '">' + esc((S.catalogue[src.metric] || {}).label_zh || src.metric) + "</a>"
      : src.alert ? '来源：<a href="/duty">预警 ' + esc(src.alert) + "</a>" : "";
    const counts = STATE_ORDER.filter((s) => t.states[s]).map((s) =>
      '<div class="sum ' + (s === "accepted" ? "info" : s === "returned" ? "warning" : "firing") + '"><span class="label">' + STATE_ZH[s] + "</span><b>" + t.states[s] + "</b></div>").join("") +
      (t.overdue ? '<div class="sum critical"><span class="label">超期</span><b>' + t.overdue + "</b></div>" : "");
    box.innerHTML = '<h2><span class="prio ' + t.priority + '">' + PRIO_ZH[t.priority] + "</span> " + esc(t.title) + "</h2>" +
      '<div class="facts"><span>' + esc(t.scope_name) + " · " + esc(t.issuer) + " 下达于 " + esc(time(t.issued_at)) + "</span><span>办结时限 " + esc(time(t.due)) +
      "</span><span>承办单位 " + t.assignments_total + " 个</span>" + (source ? "<span>" + source + "</span>" : "") + "</div>" +
      '<div class="instruction">' + esc(t.instruction) + "</div>" +
      '<div class="states">' + counts + "</div>" + barHTML(t.states, t.assignments_total) +
      '<div id="task-map" class="task-map"></div>' +
      '<h2>各单位办理情况</h2><table class="plain"><thead><tr><th>单位</th><th>状态</th><th>签收</th><th>办结</th><th>最新反馈</th><th></th></tr></thead><tbody>' +
      rows.map((a, i) => {
        const last = (a.feedback || []).slice(-1)[0];
        const kids = a.children && a.children.length ? '<div class="muted">已转派 ' + a.children.length + " 个：" +
          STATE_ORDER.filter((s) => a.children_states[s]).map((s) => STATE_ZH[s] + " " + a.children_states[s]).join("、") + "</div>" : "";
        const acts = a.state === "submitted" && mayJudge(a)
          ? '<button type="button" class="primary" data-accept="' + i + '">销号</button><button type="button" data-return="' + i + '">退回</button>' : "";
        return '<tr class="' + (a.depth ? "child" : "") + '"><td>' + (a.depth ? "↳ " : "") + '<a href="/unit?scope=' + esc(a.org) + '">' + esc(a.org_name) + "</a>" + kids + "</td>" +
          '<td><span class="state-chip ' + a.state + '">' + esc(a.state_zh) + "</span>" + (a.overdue ? ' <span class="overdue">' + OVERDUE_ZH[a.overdue] + "</span>" : "") +
          '</td><td class="when">' + esc(a.signed_at ? time(a.signed_at) + (a.signed_late ? "（逾期）" : "") : "时限 " + time(a.sign_by)) + '</td><td class="when">' +
          esc(a.submitted_at ? time(a.submitted_at) + (a.on_time === false ? "（逾期）" : "") : "时限 " + time(a.due)) + "</td><td>" +
          (last ? esc(last.step_zh + "：" + (last.text || "")) : '<span class="muted">—</span>') + '</td><td class="actions">' + acts + "</td></tr>";
      }).join("") + "</tbody></table>" +
      '<h2>时间线</h2><ul class="timeline">' + t.timeline.slice(0, 200).map((e) =>
        '<li><span class="when">' + esc(time(e.at)) + "</span>" + esc(e.org_name) + " · " + esc(e.step_zh) + (e.text ? "：" + esc(e.text) : "") +
        (e.units && e.units.length ? "（" + e.units.map(nameOf).map(esc).join("、") + "）" : "") + ' <span class="muted">' + esc(e.by) + "</span></li>").join("") + "</ul>";
    box.querySelectorAll("[data-accept]").forEach((b) => { b.onclick = () => judge(rows[+b.dataset.accept], "accept"); });
    box.querySelectorAll("[data-return]").forEach((b) => { b.onclick = () => judge(rows[+b.dataset.return], "return"); });
    renderMap(rows);
  }
  // The districts coloured by how this task stands in each: red with anything overdue, green
  // when every assignment there is closed, amber while some are open.
  function renderMap(rows) {
    const el = $("task-map");
    if (!window.echarts || !S.geo) { el.hidden = true; return; }
    const per = {};
    rows.forEach((a) => {
      let d = a.org;
      while (S.org[d] && S.org[d].level !== "district" && S.org[d].parent) d = S.org[d].parent;
      const x = per[d] || (per[d] = { total: 0, done: 0, late: 0 });
      x.total++; if (a.state === "accepted") x.done++; if (a.overdue) x.late++;
    });
    if (!Object.keys(per).length) { el.hidden = true; return; }
    if (S.map) S.map.dispose();
    S.map = echarts.init(el);
    const fs = Math.max(12, Math.round(innerHeight * 0.018));
    S.map.setOption({
      series: [{ type: "map", map: "shenzhen", nameProperty: "code", roam: false, selectedMode: false, aspectScale: V.ASPECT_SCALE,
        label: { show: true, color: "#fff", fontSize: fs, formatter: (p) => V.shortPlace(nameOf(p.name)) + (per[p.name] ? "\n" + per[p.name].done + "/" + per[p.name].total : "") },
        itemStyle: { borderColor: "#9cc7ff", areaColor: "#15273f" },
        data: Object.entries(per).map(([code, x]) => ({ name: code, itemStyle: { areaColor: x.late ? V.COLORS.missed : x.done === x.total ? V.COLORS.met : V.COLORS.at_risk } })) }],
    });
  }
  async function select(id) {
    S.selected = id;
    const q = new URLSearchParams(location.search);
    q.set("id", id); q.delete("new");
    history.replaceState(null, "", location.pathname + "?" + q);
    renderList();
    try { S.task = await V.getJSON("/api/v1/tasks/" + encodeURIComponent(id)); } catch (e) { S.task = null; }
    renderDetail();
    renderSummary();
  }
  async function judge(a, action) {
    let body = {};
    if (action === "return") {
      const reason = await ask("退回：" + a.org_name, "退回原因（必填）");
      if (reason === null) return;
      body = { reason };
    } else {
      const open = (a.children || []).filter((c) => c.state !== "accepted").length;
      const warn = open ? "\n注意：" + a.org_name + "转派的 " + a.children.length + " 个单位中还有 " + open + " 个尚未销号。" : "";
      if (!confirm("确认对 " + a.org_name + " 的办结情况销号？" + warn)) return;
    }
    const r = await call("POST", "/api/v1/tasks/" + encodeURIComponent(S.task.id) + "/assignments/" + a.org + "/" + action, body);
    if (r.status === 200) { toast(action === "accept" ? "已销号" : "已退回"); select(S.task.id); loadList(); return; }
    toast(reasonZh(r.body.reason || r.body.error || r.status), true);
    select(S.task.id);
  }
  // A short text asked in a dialog; null when cancelled.
  function ask(title, label) {
    return new Promise((resolve) => {
      const d = $("step-dialog");
      const form = $("step-form");
      $("step-title").textContent = title;
      $("step-label").firstChild.textContent = label;
      form.text.value = "";
      form.querySelector('[data-for="text"]').textContent = "";
      $("step-ok").onclick = (ev) => {
        const v = form.text.value.trim();
        if (!v) { ev.preventDefault(); form.querySelector('[data-for="text"]').textContent = "必填"; return; }
        resolve(v);
      };
      d.onclose = () => { if (d.returnValue !== "ok") resolve(null); };
      d.showModal();
    });
  }

  // ---------------------------------------------------------------- issuing
  function openIssue() {
    const p = V.params;
    const form = $("issue-form");
    form.reset();
    form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
    const metric = p.get("metric");
    const m = metric && S.catalogue[metric];
    const units = (p.get("units") || "").split(",").filter((c) => S.org[c]);
    form.title.value = p.get("title") || (m ? "「" + m.label_zh + "」整改督办" : "");
    form.instruction.value = p.get("instruction") || (m ? "请对照「" + m.label_zh + "」的目标（" + V.targetText(m) + "）查找差距，制定整改措施，按时限反馈进展并办结。" : "");
    const due = new Date(Date.now() + 7 * 86400000).toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
    form.due.value = due;
    form.due.min = new Date().toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
    if (p.get("alert")) form.priority.value = "urgent";
    if (["normal", "urgent", "incident"].includes(p.get("priority"))) form.priority.value = p.get("priority");
    const scopes = [S.me.scope].concat((S.org[S.me.scope] || { children: [] }).children);
    form.sel_scope.innerHTML = scopes.map((c) => '<option value="' + c + '">' + esc(nameOf(c)) + "</option>").join("");
    if (p.get("scope") && S.org[p.get("scope")] && within(p.get("scope"), S.me.scope)) {
      if (!scopes.includes(p.get("scope"))) form.sel_scope.insertAdjacentHTML("beforeend", '<option value="' + p.get("scope") + '">' + esc(nameOf(p.get("scope"))) + "</option>");
      form.sel_scope.value = p.get("scope");
    }
    if (p.get("level")) form.sel_level.value = p.get("level");
    form.sel_metric.innerHTML = '<option value="">（全部单位）</option>' + Object.values(S.catalogue).map((c) =>
      '<option value="' + c.id + '">' + esc(c.label_zh) + "</option>").join("");
    if (m) form.sel_metric.value = metric;
    if (p.get("status")) form.sel_status.value = p.get("status");
    // A status is a metric's: without one, the selector takes every unit of the level.
    const syncStatus = () => { form.sel_status.disabled = !form.sel_metric.value; };
    form.sel_metric.onchange = syncStatus;
    syncStatus();
    form.querySelectorAll('[name="how"]').forEach((r) => { r.disabled = r.value === "list" && !units.length; });
    $("units-chips").innerHTML = units.map((c) => "<span>" + esc(nameOf(c)) + "</span>").join("") || '<span class="muted">（未指定：请用下方条件选取）</span>';
    $("units-label").textContent = units.length ? "指定单位（" + units.length + " 个）" : "指定单位";
    form.how.value = units.length ? "list" : "selector";
    const src = p.get("alert") ? { alert: p.get("alert") } : m ? { metric, scope: p.get("scope") || S.scope } : null;
    $("issue-source").textContent = p.get("alert") ? "来自预警：" + (p.get("title") || p.get("alert")) : m ? "来自指标：" + m.label_zh + " · " + nameOf(p.get("scope") || S.scope) : "";
    $("issue-ok").onclick = async (ev) => {
      ev.preventDefault();
      form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
      const body = { title: form.title.value.trim(), instruction: form.instruction.value.trim(), due: form.due.value,
        priority: form.priority.value, sign_hours: Number(form.sign_hours.value) };
      if (src) body.source = src;
      if (form.how.value === "list" && units.length) body.units = units;
      else {
        body.selector = { scope: form.sel_scope.value, level: form.sel_level.value };
        if (form.sel_metric.value) { body.selector.metric = form.sel_metric.value; body.selector.status = form.sel_status.value.split(","); }
      }
      const bad = (field, text) => { const e = form.querySelector('[data-for="' + field + '"]'); if (e) e.textContent = text; };
      if (!body.title) return bad("title", "必填");
      if (!body.instruction) return bad("instruction", "必填");
      if (!body.due) return bad("due", "请选择办结时限");
      // Who it goes to, said before it goes: a selector may pick many.
      const preview = await call("POST", "/api/v1/tasks", Object.assign({}, body, { preview: true }));
      if (preview.status !== 200) {
        const field = (preview.body.field || "").split(".")[0];
        const text = reasonZh(preview.body.reason || preview.body.error || String(preview.status));
        return bad(["title", "instruction", "due", "units", "selector"].includes(field) ? field : units.length ? "units" : "selector", text);
      }
      const names = preview.body.orgs.map(nameOf);
      const shown = names.length > 12 ? names.slice(0, 12).join("、") + " 等 " + names.length + " 个单位" : names.join("、");
      if (!confirm("将下达到 " + preview.body.units + " 个单位：" + shown + "。确定下达？")) return;
      const r = await call("POST", "/api/v1/tasks", body);
      if (r.status === 201 || r.status === 200) {
        $("issue-dialog").close();
        toast("已下达到 " + r.body.units + " 个单位");
        S.selected = r.body.id;
        await loadList();
        select(r.body.id);
        return;
      }
      const field = (r.body.field || "").split(".")[0];
      const text = reasonZh(r.body.reason || r.body.error || String(r.status));
      if (["title", "instruction", "due", "units", "selector"].includes(field)) bad(field, text);
      else bad(units.length ? "units" : "selector", text);
    };
    $("issue-dialog").showModal();
  }

  // ---------------------------------------------------------------- live
  function connect() {
    V.live(S, {
      id: "tasks",
      subscription: () => ({ scope: S.scope, metrics: ["task_assignments", "task_on_time"] }),
      onFigures: renderSummary,
      onTask: (step) => {
        if (!within(step.org, S.scope)) return;
        clearTimeout(S.reload);
        S.reload = setTimeout(() => {
          loadList().catch(() => {});
          if (S.selected === step.task) select(step.task);
        }, 200);
      },
    });
  }

  async function start() {
    S.me = await V.getJSON("/api/v1/me");
    if (S.me.name === "anonymous") { V.askToken(); return; }
    const [catalogue, org, geo] = await Promise.all([
      V.getJSON("/api/v1/catalogue"), V.getJSON("/api/v1/org"), V.getJSON("/api/v1/geo/districts").catch(() => null),
    ]);
    catalogue.forEach((m) => { S.catalogue[m.id] = m; });
    S.org = V.indexOrg(org);
    // Above a city (a province, the nation) a task may go to cities, or provinces.
    const root = Object.keys(S.org).find((c) => !S.org[c].parent);
    const levelSelect = document.querySelector('select[name="sel_level"]');
    const order = ["nation", "province", "city"];
    for (const level of ["city", "province"]) {
      if (root && levelSelect && order.indexOf(S.org[root].level) < order.indexOf(level)) {
        levelSelect.insertAdjacentHTML("afterbegin", '<option value="' + level + '">' + V.LEVEL_ZH[level] + "</option>");
      }
    }
    S.geo = geo;
    if (geo && window.echarts) echarts.registerMap("shenzhen", geo);
    S.scope = V.params.get("scope") && within(V.params.get("scope"), S.me.scope) ? V.params.get("scope") : S.me.scope;
    $("title").textContent = "督办台 · " + nameOf(S.scope);
    $("who").textContent = S.me.name + " · " + S.me.scope_name;
    const issuer = ["leader", "duty_officer", "admin"].includes(S.me.role);
    document.querySelectorAll("[data-issuer]").forEach((el) => { el.hidden = !issuer; });
    $("new-task").onclick = openIssue;
    $("filters").state.onchange = () => loadList().catch(() => {});
    await loadList();
    if (S.selected) select(S.selected);
    if (V.params.get("new") && issuer) openIssue();
    connect();
    setInterval(() => loadList().catch(() => {}), 60000);
  }
  start().catch((e) => { if (!String(e.message).includes("需要登录")) $("detail").innerHTML = '<p class="bad">无法打开督办台：' + esc(e.message) + "</p>"; });
})();
