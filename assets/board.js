// The plan board (三年行动计划总览): every metric of the catalogue as a row, grouped by the
// plan's clauses, the city and its districts as columns, live over /ws. Rows are paged so that
// each stays legible from across a room; a click on a cell opens that district's screen for
// that metric.
(function () {
  "use strict";
  const { STATUS_ZH, params, token, getJSON, clauseText } = window.VSCC;
  const dashboardName = (location.pathname.match(/^\/screen\/([\w-]+)/) || [])[1] || "plan-board";
  const ROWS_PER_PAGE = Number(params.get("rows")) || 13;
  const MIN_ROWS_PER_PAGE = 6;

  const S = {
    catalogue: [], byId: {}, org: {}, dashboard: null, version: null, scope: "440300",
    view: {}, epoch: null, seq: 0, ws: null, connected: false, page: 0, rendered: 0,
    rowsPerPage: ROWS_PER_PAGE,
  };
  window.__vscc = S; // for the browser tests

  const nameOf = (code) => (S.org[code] ? S.org[code].name : code);
  const columns = () => [S.scope].concat(S.org[S.scope] ? S.org[S.scope].children : []);
  const fmt = (meta, f) => window.VSCC.fmt(meta, f && f.value);
  function targetText(meta) {
    const t = window.VSCC.targetText(meta);
    return t === "跟踪" ? "跟踪指标" : "目标 " + t;
  }
  // Days to the deadline, or since it passed, for a cell at risk or missed.
  function deadlineText(meta, f) {
    if (!f) return "";
    if (meta.judged_on === "overdue") return f.overdue ? "超期 " + f.overdue + " 件" : "";
    if ((f.status !== "at_risk" && f.status !== "missed") || !f.due) return "";
    const today = new Date(new Date().toLocaleString("en-US", { timeZone: "Asia/Shanghai" }));
    today.setHours(0, 0, 0, 0);
    const due = new Date(f.due + "T00:00:00");
    const days = Math.round((due - today) / 86400000);
    return days >= 0 ? "剩 " + days + " 天" : "逾期 " + -days + " 天";
  }

  // Pages of whole clauses, at most ROWS_PER_PAGE rows each (a clause longer than a page is split).
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
    return out;
  }

  // Renders, then takes rows off a page while the page does not fit the screen (cells with a
  // deadline line are taller), so that nothing is ever cut off.
  function render() {
    for (;;) {
      draw();
      const legend = document.querySelector(".board-legend");
      if (!legend || legend.getBoundingClientRect().bottom <= innerHeight || S.rowsPerPage <= MIN_ROWS_PER_PAGE) return;
      S.rowsPerPage--;
    }
  }

  function draw() {
    if (!S.catalogue.length || !S.org[S.scope]) return;
    const all = pages();
    S.page = S.page % all.length;
    const head = document.getElementById("board-head");
    head.innerHTML = '<th class="clause-head">条款</th><th class="metric-head">指标</th>';
    for (const code of columns()) {
      const th = document.createElement("th");
      th.textContent = nameOf(code).replace(/^深圳市$/, "全市");
      th.dataset.code = code;
      head.appendChild(th);
    }
    const body = document.getElementById("board-body");
    body.innerHTML = "";
    let lastClause = null;
    for (const meta of all[S.page]) {
      const tr = document.createElement("tr");
      tr.dataset.metric = meta.id;
      const clause = document.createElement("td");
      clause.className = "clause";
      clause.textContent = meta.clause !== lastClause ? clauseText(meta.clause) : "";
      lastClause = meta.clause;
      tr.appendChild(clause);
      const label = document.createElement("td");
      label.className = "metric";
      label.innerHTML = '<span class="name"></span><span class="target"></span>';
      label.querySelector(".name").textContent = meta.label_zh;
      label.querySelector(".target").textContent = targetText(meta);
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
        const status = f ? f.status : "no_data";
        td.className = "cell " + status;
        td.dataset.value = f && f.value !== null ? String(f.value) : "";
        td.dataset.status = status;
        td.title = nameOf(code) + " · " + meta.label_zh + " · " + (STATUS_ZH[status] || status);
        td.innerHTML = '<div class="v"></div><div class="d"></div>';
        td.querySelector(".v").textContent = fmt(meta, f);
        td.querySelector(".d").textContent = deadlineText(meta, f);
        td.onclick = () => open(code, meta.id);
        tr.appendChild(td);
      }
      body.appendChild(tr);
    }
    const pager = document.getElementById("pager");
    pager.innerHTML = "";
    all.forEach((p, i) => {
      const span = document.createElement("span");
      span.className = "page" + (i === S.page ? " on" : "");
      const first = p[0].clause, last = p[p.length - 1].clause;
      span.textContent = (i + 1) + "/" + all.length + " " + clauseText(first) + (first !== last ? "–" + clauseText(last) : "");
      span.onclick = () => { S.page = i; render(); };
      pager.appendChild(span);
    });
    S.rendered++;
  }

  // The metric's page for that district (the city column: for the city).
  function open(code, metric) {
    const q = "?scope=" + code + (token ? "&token=" + encodeURIComponent(token) : "");
    location.href = "/metric/" + encodeURIComponent(metric) + q;
  }
  S.open = open;

  // ---- the stream ----------------------------------------------------------------------------
  const connect = () => window.VSCC.live(S, {
    id: "board",
    subscription: () => ({ scope: S.scope, metrics: [] }),
    onFigures: render,
  });

  async function loadCatalogue() {
    const list = await getJSON("/api/v1/catalogue");
    S.catalogue = list;
    S.byId = Object.fromEntries(list.map((m) => [m.id, m]));
  }
  async function loadDashboard(initial) {
    const d = await getJSON("/api/v1/dashboards/" + dashboardName);
    if (d.version === S.version) return;
    S.version = d.version;
    S.dashboard = d.dashboard;
    document.getElementById("title").textContent = d.dashboard.title;
    document.title = d.dashboard.title;
    if (initial) S.scope = params.get("scope") || d.dashboard.scope;
    render();
  }

  async function start() {
    const tick = () => {
      document.getElementById("clock").textContent = new Date().toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
    };
    tick();
    setInterval(tick, 1000);
    const [, org] = await Promise.all([loadCatalogue(), getJSON("/api/v1/org")]);
    (function index(n) {
      S.org[n.code] = { name: n.name, level: n.level, parent: n.parent, children: n.children.map((c) => c.code) };
      n.children.forEach(index);
    })(org);
    await loadDashboard(true);
    addEventListener("resize", () => { S.rowsPerPage = ROWS_PER_PAGE; render(); });
    connect();
    setInterval(() => loadDashboard(false).catch(() => {}), 5000);
    // A changed catalogue (a metric added while running) shows up without a reload.
    setInterval(() => loadCatalogue().then(render).catch(() => {}), 30000);
    const pageSeconds = Math.max(5, (S.dashboard && S.dashboard.map_rotate_seconds) || 20);
    if (!params.get("norotate")) setInterval(() => { S.page++; render(); }, pageSeconds * 1000);
    if (S.dashboard.next && S.dashboard.dwell_seconds > 0 && !params.get("norotate")) {
      setTimeout(() => { location.href = "/screen/" + S.dashboard.next + location.search; }, S.dashboard.dwell_seconds * 1000);
    }
  }
  start().catch((e) => { window.VSCC.showConn("down", "加载失败：" + e.message); setTimeout(() => location.reload(), 10000); });
})();
