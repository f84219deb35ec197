// The plan board (三年行动计划总览): first a scorecard of the whole plan — how many figures are
// met, on track, at risk, missed or tracked, overall and per clause, and whether each one-off
// target of 2020 and 2022 was met by its date, late, or not — then every metric of the catalogue
// as a row, grouped by the plan's clauses, the city and its districts as columns, live over /ws.
// Pages rotate so that each stays legible from across a room; a click on a cell opens that
// district's page for that metric.
(function () {
  "use strict";
  const V = window.VSCC;
  const { STATUS_ZH, STATUSES, params, token, getJSON, clauseText } = V;
  const dashboardName = (location.pathname.match(/^\/screen\/([\w-]+)/) || [])[1] || "plan-board";
  const ROWS_PER_PAGE = Number(params.get("rows")) || 12;
  const MIN_ROWS_PER_PAGE = 5;
  const OUTCOME_ZH = { met_on_time: "按期达成", slipped: "按期达成后回落", met_late: "逾期达成", met_undated: "已达成", missed: "未达成", pending: "未到期", no_data: "无数据" };
  // Reached now: on time, late; not reached now: slipped after the deadline, never reached.
  const OUTCOMES = ["met_on_time", "met_late", "slipped", "missed"];

  const S = {
    catalogue: [], byId: {}, org: {}, dashboard: null, version: null, scope: "440300",
    view: {}, epoch: null, seq: 0, ws: null, connected: false, page: 0, rendered: 0,
    rowsPerPage: ROWS_PER_PAGE, scorecard: null,
  };
  window.__vscc = S; // for the browser tests

  const nameOf = (code) => (S.org[code] ? S.org[code].name : code);
  // The board's own scope when it is a city or above: 全市, 全省, 全国.
  const shortName = (code) => (code === S.scope && S.org[code] && { nation: "全国", province: "全省", city: "全市" }[S.org[code].level]) || nameOf(code);
  const columns = () => [S.scope].concat(S.org[S.scope] ? S.org[S.scope].children : []);
  const oneOff = (meta) => /^\d{4}-\d{2}-\d{2}$/.test(meta.deadline || "");
  // One outcome of a one-off target at a node, from the scorecard.
  function outcomeOf(metric, code) {
    const d = S.scorecard && S.scorecard.deadlines.find((x) => x.metric === metric);
    const n = d && d.nodes.find((x) => x.code === code);
    return n ? n.outcome : null;
  }
  // The line under a cell's number: what a leader should know that the colour does not say.
  function cellNote(meta, f, code) {
    if (!f) return "";
    if (oneOff(meta) && V.daysUntil(meta.deadline) < 0) {
      // The deadline is said once, in the row's label; a cell met after it says so (green
      // alone would read "on time").
      return outcomeOf(meta.id, code) === "met_late" ? OUTCOME_ZH.met_late : "";
    }
    if (meta.measure === "cases" && meta.judged_on !== "overdue") return f.overdue ? "超期" + f.overdue : "";
    // Behind: what the node must still do ("每月 2 名", "需 3 个").
    const p = paceOf(meta.id, code);
    if (p && (f.status === "at_risk" || f.status === "missed")) return V.paceShort(p);
    return "";
  }
  const paceOf = (metric, code) => ((S.paces || {})[code] || {})[metric];
  // The required pace of every column (the scope and its children), re-read every 30 s.
  async function loadPaces() {
    const codes = columns();
    const answers = await Promise.all(codes.map((c) => getJSON("/api/v1/pace?scope=" + c).catch(() => null)));
    S.paces = {};
    codes.forEach((c, i) => {
      if (!answers[i]) return;
      S.paces[c] = Object.fromEntries(answers[i].metrics.filter((m) => m.pace).map((m) => [m.metric, m.pace]));
    });
    render();
  }
  // The row's target, with the time left or the deadline passed — once per row, not per cell.
  function rowTarget(meta) {
    const t = V.targetText(meta);
    if (oneOff(meta)) {
      // "2022-12-31 前" reads "2022年底前" in a narrow column.
      const left = V.daysUntil(meta.deadline);
      const day = t.replace(/(\d{4})-12-31 前$/, "$1年底前");
      return left < 0 ? day.replace(/前$/, "已截止") : day + " · 剩" + left + "天";
    }
    const f = (S.view[S.scope] || {})[meta.id];
    if (f && f.due && /^(yearly|quarterly|monthly)$/.test(meta.deadline || "")) return t + " · 剩" + V.daysUntil(f.due) + "天";
    return t;
  }

  // Pages: the scorecard, then pages of whole clauses, at most rowsPerPage rows each (a clause
  // longer than a page is split).
  function pages() {
    const out = [[]];
    let clause = null;
    for (const m of S.catalogue) {
      const page = out[out.length - 1];
      const groupLeft = S.catalogue.filter((x) => x.clause === m.clause).length;
      const startsGroup = m.clause !== clause;
      const rows = S.rowsPerPage;
      if (page.length && (page.length >= rows || (startsGroup && page.length + Math.min(groupLeft, rows) > rows))) {
        out.push([]);
      }
      out[out.length - 1].push(m);
      clause = m.clause;
    }
    return ["scorecard"].concat(out);
  }

  // Renders, then takes rows off a page while the page does not fit the screen, so that
  // nothing is ever cut off.
  function render() {
    for (;;) {
      draw();
      const legend = document.querySelector(".board-legend");
      if (!legend || legend.getBoundingClientRect().bottom <= innerHeight || S.rowsPerPage <= MIN_ROWS_PER_PAGE) return;
      S.rowsPerPage--;
    }
  }

  function countsHTML(counts, shown) {
    return shown.map((s) => '<span class="count ' + s + '" data-status="' + s + '"><b>' + (counts[s] || 0) + "</b>" + STATUS_ZH[s] + "</span>").join("");
  }

  function drawScorecard() {
    const box = document.getElementById("scorecard");
    const sc = S.scorecard;
    if (!sc) { box.innerHTML = '<p class="muted">加载中</p>'; return; }
    const shown = STATUSES;
    box.innerHTML = "";
    const head = document.createElement("div");
    head.className = "score-head";
    head.innerHTML = '<div class="score-line"><span class="score-label">' + shortName(S.scope) + "自身 " + sc.overall.metrics.length +
      " 项指标</span>" + countsHTML(sc.overall.scope, shown) + '</div><div class="score-line"><span class="score-label">含各' +
      (V.LEVEL_ZH[(S.org[columns()[1]] || {}).level] || "下级") + "，共 " + Object.values(sc.overall.cells).reduce((a, b) => a + b, 0) +
      " 格</span>" + countsHTML(sc.overall.cells, shown) + "</div>";
    box.appendChild(head);
    const cols = document.createElement("div");
    cols.className = "score-cols";
    // Per clause: a bar of its cells' statuses, and the counts.
    const clauses = document.createElement("table");
    clauses.className = "score-table clauses";
    // "全市及各区" for Shenzhen's city; the scope and its children's level anywhere else.
    const childWord = V.LEVEL_ZH[(S.org[columns()[1]] || {}).level] || "下级";
    const whole = { nation: "全国", province: "全省", city: "全市" }[(S.org[S.scope] || {}).level] || shortName(S.scope);
    clauses.innerHTML = '<thead><tr><th>条款</th><th>指标</th><th>各状态格数（' + V.esc(whole) + "及各" + childWord + "）</th></tr></thead>";
    const tb = document.createElement("tbody");
    for (const c of sc.clauses) {
      const tr = document.createElement("tr");
      tr.dataset.clause = c.clause;
      const total = Object.values(c.cells).reduce((a, b) => a + b, 0) || 1;
      const bar = STATUSES.filter((s) => c.cells[s]).map((s) =>
        '<span class="seg ' + s + '" style="flex:' + c.cells[s] + '" title="' + STATUS_ZH[s] + ' ' + c.cells[s] + '">' + (c.cells[s] / total >= 0.12 ? c.cells[s] : "") + "</span>").join("");
      tr.innerHTML = '<td class="clause"></td><td class="n"></td><td><div class="bar">' + bar + "</div></td>";
      tr.querySelector(".clause").textContent = clauseText(c.clause);
      tr.querySelector(".n").textContent = c.metrics.length;
      tb.appendChild(tr);
    }
    clauses.appendChild(tb);
    // The one-off targets: the scope's outcome and its children's.
    const dl = document.createElement("table");
    dl.className = "score-table deadlines";
    dl.innerHTML = '<thead><tr><th>限期目标</th><th>截止</th><th>' + shortName(S.scope) + '</th><th>下级：按期 · 逾期 · 回落 · 未达成</th></tr></thead>';
    const db = document.createElement("tbody");
    for (const d of sc.deadlines) {
      const own = d.nodes.find((n) => n.code === S.scope);
      const tr = document.createElement("tr");
      tr.dataset.metric = d.metric;
      tr.innerHTML = '<td class="what"></td><td class="when"></td><td class="own"></td><td class="kids"></td>';
      tr.querySelector(".what").textContent = d.label_zh;
      tr.querySelector(".when").textContent = d.deadline.slice(0, 4) + " 年底";
      const o = own ? own.outcome : "no_data";
      tr.querySelector(".own").textContent = OUTCOME_ZH[o];
      tr.querySelector(".own").className = "own outcome-" + o;
      tr.querySelector(".own").dataset.outcome = o;
      tr.querySelector(".kids").innerHTML = Object.keys(d.children).length
        ? OUTCOMES.map((k) => '<span class="outcome-' + k + '">' + (d.children[k] || 0) + "</span>").join(" · ")
        : '<span class="muted">只考核' + shortName(S.scope) + "</span>";
      tr.onclick = () => open(S.scope, d.metric);
      db.appendChild(tr);
    }
    dl.appendChild(db);
    // The note under the deadlines it explains: the clauses' column is the taller one (with 26
    // clauses it reached the legend and the note sat over its last row).
    const note = document.createElement("p");
    note.className = "score-note";
    note.textContent = "限期目标按截止日当天的快照判定：按期达成（至今保持）、逾期达成、按期达成后回落（现未达标）、未达成；回落与未达成的，在各页均为红色。";
    const right = document.createElement("div");
    right.appendChild(dl);
    right.appendChild(note);
    cols.appendChild(clauses);
    cols.appendChild(right);
    box.appendChild(cols);
  }

  function draw() {
    if (!S.catalogue.length || !S.org[S.scope]) return;
    const all = pages();
    S.page = S.page % all.length;
    const isScore = all[S.page] === "scorecard";
    document.getElementById("scorecard").hidden = !isScore;
    document.getElementById("board").hidden = isScore;
    if (isScore) drawScorecard();
    else drawRows(all[S.page]);
    const pager = document.getElementById("pager");
    pager.innerHTML = "";
    all.forEach((p, i) => {
      const span = document.createElement("span");
      span.className = "page" + (i === S.page ? " on" : "");
      if (p === "scorecard") span.textContent = "总体情况";
      else {
        const first = p[0].clause, last = p[p.length - 1].clause;
        span.textContent = clauseText(first) + (first !== last ? "–" + clauseText(last).replace(/^第/, "") : "");
      }
      span.onclick = () => { S.page = i; render(); };
      pager.appendChild(span);
    });
    S.rendered++;
  }

  function drawRows(rows) {
    const head = document.getElementById("board-head");
    head.innerHTML = '<th class="clause-head">条款</th><th class="metric-head">指标 · 目标</th>';
    for (const code of columns()) {
      const th = document.createElement("th");
      th.textContent = V.shortPlace(shortName(code));
      th.dataset.code = code;
      head.appendChild(th);
    }
    const body = document.getElementById("board-body");
    body.innerHTML = "";
    let lastClause = null;
    for (const meta of rows) {
      const tr = document.createElement("tr");
      tr.dataset.metric = meta.id;
      const clause = document.createElement("td");
      clause.className = "clause";
      // 第二十一条 → 二十一: the header says 条款.
      clause.textContent = meta.clause !== lastClause ? meta.clause : "";
      lastClause = meta.clause;
      tr.appendChild(clause);
      const label = document.createElement("td");
      label.className = "metric";
      label.innerHTML = '<span class="name"></span><span class="target"></span>';
      label.querySelector(".name").textContent = meta.label_zh + (meta.judged_on === "overdue" ? "（超期）" : "");
      label.querySelector(".target").textContent = rowTarget(meta);
      tr.appendChild(label);
      for (const code of columns()) {
        const td = document.createElement("td");
        td.dataset.metric = meta.id;
        td.dataset.code = code;
        const level = S.org[code] && S.org[code].level;
        if (!meta.levels.includes(level)) {
          td.className = "cell na";
          td.innerHTML = '<div class="v">·</div>';
          td.title = "本级不适用";
          tr.appendChild(td);
          continue;
        }
        const f = (S.view[code] || {})[meta.id];
        const status = V.statusOf(f);
        td.className = "cell " + status;
        td.dataset.value = f && f.value !== null ? String(f.value) : "";
        td.dataset.status = status;
        const p = paceOf(meta.id, code);
        td.title = nameOf(code) + " · " + meta.label_zh + " · " + (STATUS_ZH[status] || status) + (p ? "：" + p.text_zh : "");
        td.innerHTML = '<div class="v"></div><div class="d"></div>';
        td.querySelector(".v").textContent = V.judgedText(meta, f).replace(/^超期 /, "");
        td.querySelector(".d").textContent = cellNote(meta, f, code);
        td.onclick = () => open(code, meta.id);
        // 督办 in one click: a task to the units below that are behind on this metric.
        if (S.mayIssue && (status === "at_risk" || status === "missed")) {
          const kids = (S.org[code] || { children: [] }).children;
          const level = kids.length && S.org[kids[0]] ? S.org[kids[0]].level : null;
          if (level && meta.levels.includes(level)) {
            const a = document.createElement("a");
            a.className = "issue";
            a.textContent = "督办";
            a.title = "下达督办任务：" + nameOf(code) + "“" + meta.label_zh + "”有风险或未达标的" + V.LEVEL_ZH[level];
            a.href = "/tasks?" + new URLSearchParams({ new: "1", metric: meta.id, scope: code, level, status: "at_risk,missed" });
            a.onclick = (ev) => ev.stopPropagation();
            td.appendChild(a);
          }
        }
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
  }

  // The metric's page for that district (the city column: for the city).
  function open(code, metric) {
    const q = "?scope=" + code + (token ? "&token=" + encodeURIComponent(token) : "");
    location.href = "/metric/" + encodeURIComponent(metric) + q;
  }
  S.open = open;

  // ---- the stream ----------------------------------------------------------------------------
  const connect = () => V.live(S, {
    id: "board",
    subscription: () => ({ scope: S.scope, metrics: [] }),
    onFigures: render,
  });

  async function loadCatalogue() {
    const list = await getJSON("/api/v1/catalogue");
    S.catalogue = list;
    S.byId = Object.fromEntries(list.map((m) => [m.id, m]));
  }
  async function loadScorecard() {
    try { S.scorecard = await getJSON("/api/v1/scorecard?scope=" + S.scope); render(); } catch (e) { /* keep the last */ }
  }
  async function loadDashboard(initial) {
    const d = await getJSON("/api/v1/dashboards/" + dashboardName);
    if (d.version === S.version) return;
    S.version = d.version;
    S.dashboard = d.dashboard;
    // The region's root (org.region: Shenzhen's city by default, a province, the nation).
    const root = Object.keys(S.org).find((c) => !S.org[c].parent) || d.dashboard.scope;
    const title = d.dashboard.title.replace("{root}", nameOf(root));
    document.getElementById("title").textContent = title;
    document.title = title;
    if (initial) {
      const own = await V.homeScope();
      S.mayIssue = await V.mayIssue();
      S.scope = params.get("scope") || (own && own !== root && S.org[own] ? own : d.dashboard.scope);
    }
    render();
  }

  async function start() {
    const tick = () => {
      document.getElementById("clock").textContent = new Date().toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
    };
    tick();
    setInterval(tick, 1000);
    document.querySelector(".board-legend .dots").innerHTML = V.legendHTML();
    const [, org] = await Promise.all([loadCatalogue(), getJSON("/api/v1/org")]);
    S.org = V.indexOrg(org);
    if (params.get("page")) S.page = Number(params.get("page")) || 0;
    await loadDashboard(true);
    await loadScorecard();
    addEventListener("resize", () => { S.rowsPerPage = ROWS_PER_PAGE; render(); });
    connect();
    setInterval(() => loadDashboard(false).catch(() => {}), 5000);
    setInterval(loadScorecard, 30000);
    loadPaces().catch(() => {});
    setInterval(() => loadPaces().catch(() => {}), 30000);
    // A changed catalogue (a metric added while running) shows up without a reload.
    setInterval(() => loadCatalogue().then(render).catch(() => {}), 30000);
    const pageSeconds = Math.max(5, (S.dashboard && S.dashboard.map_rotate_seconds) || 20);
    if (!params.get("norotate")) setInterval(() => { S.page++; render(); }, pageSeconds * 1000);
    if (S.dashboard.next && S.dashboard.dwell_seconds > 0 && !params.get("norotate")) {
      setTimeout(() => { location.href = "/screen/" + S.dashboard.next + location.search; }, S.dashboard.dwell_seconds * 1000);
    }
  }
  start().catch((e) => { V.showConn("down", "加载失败：" + e.message); setTimeout(() => location.reload(), 10000); });
})();
