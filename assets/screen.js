// The wall screen: one map of Shenzhen, live over /ws, drillable, unattended.
(function () {
  "use strict";
  const { STATUS_ZH, params, getJSON } = window.VSCC;
  const STALE_DAYS = 7; // a node silent this long is marked as having stopped reporting
  const COLORS = { met: "#19c37d", on_track: "#3a8cff", at_risk: "#f5a524", missed: "#ff4d4f", no_data: "#4a5a70" };
  const pathName = (location.pathname.match(/^\/screen\/([\w-]+)/) || [])[1];
  const dashboardName = pathName || "city-overview";
  // /metric/<id>: one metric's page (its figure, map, league, trend, nodes at risk).
  const metricId = (location.pathname.match(/^\/metric\/([\w-]+)/) || [])[1];
  const focusMetric = () => metricId || params.get("metric");

  const S = {
    catalogue: {}, org: {}, freshness: {}, dashboard: null, version: null, scope: null, view: {},
    epoch: null, seq: 0, ws: null, mapMetricIndex: 0, connected: false, stream: null,
    mapChart: null, trendChart: null, rendered: 0, mapAspect: 2, atRisk: null, atRiskAt: 0,
  };
  window.__vscc = S; // for the browser tests

  const fmt = (metric, f) => window.VSCC.fmt(S.catalogue[metric], f && f.value);
  const LEVEL_ZH = { city: "市", district: "区", street: "街道", community: "社区" };
  // Whether `metric` is shown at `code`'s level (staffing, for one, is reported by districts:
  // its streets are not "no data" but not applicable).
  const shownAt = (metric, code) => {
    const levels = (S.catalogue[metric] || {}).levels;
    return !levels || !S.org[code] || levels.includes(S.org[code].level);
  };
  const cellText = (metric, code, f) => (shownAt(metric, code) ? fmt(metric, f) : "不适用");
  function targetText(metric, f) {
    const meta = S.catalogue[metric];
    if (!meta || !f) return "";
    if (meta.judged_on === "overdue") {
      // Cases: the overdue count, then each deadline's (受理超期 · 办结超期 …).
      const each = (meta.deadlines || []).map((d) => d.label_zh + "超期 " + (f["overdue_" + d.name] ?? 0));
      return ["超期 " + (f.overdue ?? 0) + " 件"].concat(each).join(" · ");
    }
    if (f.target === null || f.target === undefined) return "跟踪指标";
    const t = meta.unit === "percent" ? (f.target * 100).toFixed(f.target < 0.5 ? 1 : 0) + "%" : String(f.target);
    const op = meta.at_most ? "≤" : "≥";
    const due = f.due ? " · 截止 " + f.due : "";
    return "目标 " + op + t + due;
  }
  const { ASPECT_SCALE, aspectOf } = window.VSCC;
  const nameOf = (code) => (S.org[code] ? S.org[code].name : code);
  const childrenOf = (code) => (S.org[code] ? S.org[code].children : []);

  function neededMetrics() {
    const d = S.dashboard;
    const all = new Set([...d.tiles, ...d.map_metrics, d.league_metric]);
    return [...all];
  }
  function mapMetric() {
    const list = S.dashboard.map_metrics;
    return list[S.mapMetricIndex % list.length];
  }

  // ---- rendering -------------------------------------------------------------------------
  function renderCrumbs() {
    const path = [];
    for (let c = S.scope; c; c = S.org[c] && S.org[c].parent) path.unshift(c);
    const nav = document.getElementById("crumbs");
    nav.innerHTML = "";
    path.forEach((c, i) => {
      if (i) nav.insertAdjacentHTML("beforeend", '<span class="sep">›</span>');
      const a = document.createElement("a");
      a.textContent = nameOf(c);
      a.dataset.code = c;
      a.onclick = () => drill(c);
      nav.appendChild(a);
    });
  }

  function renderTiles() {
    const box = document.getElementById("tiles");
    const figs = S.view[S.scope] || {};
    box.innerHTML = "";
    for (const m of S.dashboard.tiles) {
      const f = figs[m];
      const meta = S.catalogue[m] || { label_zh: m };
      const status = f ? f.status : "no_data";
      const el = document.createElement("div");
      el.className = "tile " + status;
      el.dataset.metric = m;
      el.dataset.value = f && f.value !== null ? String(f.value) : "";
      el.innerHTML = '<div class="label"></div><div class="value"></div><div class="sub"></div><div class="status"></div>';
      el.querySelector(".label").textContent = meta.label_zh;
      el.querySelector(".value").textContent = fmt(m, f);
      el.querySelector(".sub").textContent = f ? targetText(m, f) : (S.org[S.scope] && meta.levels && !meta.levels.includes(S.org[S.scope].level) ? "本级不适用" : "");
      el.querySelector(".status").textContent = STATUS_ZH[status] || status;
      box.appendChild(el);
    }
  }

  function renderMap() {
    const metric = mapMetric();
    const meta = S.catalogue[metric] || { label_zh: metric };
    document.getElementById("map-title").textContent = nameOf(S.scope) + " · " + meta.label_zh;
    const level = S.org[S.scope] && S.org[S.scope].level;
    const mapEl = document.getElementById("map");
    const grid = document.getElementById("grid");
    if (level === "city" && S.mapChart) {
      mapEl.hidden = false; grid.hidden = true;
      document.getElementById("map-hint").textContent = "点击行政区下钻";
      const data = childrenOf(S.scope).map((code) => {
        const f = (S.view[code] || {})[metric];
        const status = f ? f.status : "no_data";
        return { name: code, value: f && f.value !== null ? f.value : null, status, itemStyle: { areaColor: COLORS[status] } };
      });
      // As large as the panel allows at the map's own proportions, centred (a box layout
      // would pin the wide outline to the top of a tall panel).
      const size = window.VSCC.fitSize(mapEl, S.mapAspect, 0.94, 0.88);
      S.mapChart.setOption({
        series: [{
          type: "map", map: "shenzhen", nameProperty: "code", roam: false, selectedMode: false,
          aspectScale: ASPECT_SCALE, layoutCenter: ["50%", "50%"], layoutSize: size,
          label: { show: true, color: "#fff", fontSize: Math.round(innerHeight / 60),
            formatter: (p) => nameOf(p.name) + "\n" + fmt(metric, (S.view[p.name] || {})[metric]) },
          itemStyle: { borderColor: "#9cc7ff", borderWidth: 1 },
          emphasis: { label: { color: "#fff" }, itemStyle: { areaColor: "#2b5d9a" } },
          data,
        }],
      });
      S.mapChart.resize();
    } else {
      mapEl.hidden = true; grid.hidden = false;
      const kids = childrenOf(S.scope).map((code) => ({ code, f: (S.view[code] || {})[metric] }));
      const childLevel = kids.length && S.org[kids[0].code] ? S.org[kids[0].code].level : "";
      document.getElementById("map-hint").textContent = kids.length && !shownAt(metric, kids[0].code)
        ? "本指标统计到" + (meta.levels || []).map((l) => LEVEL_ZH[l]).join("、") + "，" + LEVEL_ZH[childLevel] + "不单列"
        : level === "district" ? "街道暂无边界数据，按排名显示" : "社区按排名显示";
      kids.sort((a, b) => (b.f && b.f.value !== null ? b.f.value : -1) - (a.f && a.f.value !== null ? a.f.value : -1));
      grid.innerHTML = "";
      kids.forEach((k, i) => {
        const status = k.f ? k.f.status : "no_data";
        const cell = document.createElement("div");
        cell.className = "cell " + status;
        cell.dataset.code = k.code;
        cell.innerHTML = '<span class="rank"></span><div class="name"></div><div class="v"></div>';
        cell.querySelector(".rank").textContent = "#" + (i + 1);
        cell.querySelector(".name").textContent = nameOf(k.code);
        cell.querySelector(".v").textContent = cellText(metric, k.code, k.f);
        if (childrenOf(k.code).length) cell.onclick = () => drill(k.code);
        grid.appendChild(cell);
      });
    }
  }

  function renderLeague() {
    const metric = S.dashboard.league_metric;
    const meta = S.catalogue[metric] || { label_zh: metric };
    document.getElementById("league-title").textContent = "排名 · " + meta.label_zh;
    const rows = childrenOf(S.scope).map((code) => ({ code, f: (S.view[code] || {})[metric] }));
    const key = (r) => (r.f && r.f.value !== null ? r.f.value : -Infinity);
    rows.sort((a, b) => (meta.at_most ? key(a) - key(b) : key(b) - key(a)));
    const table = document.getElementById("league");
    table.innerHTML = "";
    rows.forEach((r, i) => {
      const tr = document.createElement("tr");
      tr.dataset.code = r.code;
      tr.dataset.value = r.f && r.f.value !== null ? String(r.f.value) : "";
      tr.innerHTML = '<td class="rank"></td><td class="name"></td><td class="num"></td>';
      tr.querySelector(".rank").textContent = i + 1;
      tr.querySelector(".name").textContent = nameOf(r.code);
      const num = tr.querySelector(".num");
      num.textContent = cellText(metric, r.code, r.f);
      num.style.color = COLORS[r.f ? r.f.status : "no_data"];
      const fresh = S.freshness[r.code];
      if (fresh && (fresh.days_silent === null || fresh.days_silent >= STALE_DAYS)) {
        const mark = document.createElement("span");
        mark.className = "stale";
        mark.textContent = fresh.days_silent === null ? "从未报送" : fresh.days_silent + "天未报送";
        tr.querySelector(".name").appendChild(mark);
      }
      if (childrenOf(r.code).length) tr.onclick = () => drill(r.code);
      table.appendChild(tr);
    });
  }

  // A metric's page: how the children stand (met, on track, at risk, missed).
  function renderCounts() {
    const box = document.getElementById("counts");
    if (!box) return;
    const n = { met: 0, on_track: 0, at_risk: 0, missed: 0 };
    childrenOf(S.scope).forEach((c) => {
      const f = (S.view[c] || {})[metricId];
      if (f && f.status in n) n[f.status]++;
    });
    const kids = childrenOf(S.scope).length;
    box.innerHTML = "";
    for (const status of Object.keys(n)) {
      const el = document.createElement("div");
      el.className = "tile " + status;
      el.dataset.status = status;
      el.innerHTML = '<div class="label"></div><div class="value"></div>';
      el.querySelector(".label").textContent = "下级" + STATUS_ZH[status];
      el.querySelector(".value").textContent = n[status] + "/" + kids;
      box.appendChild(el);
    }
  }

  // A metric's page: the nodes at risk or missed under the scope, farthest from the target first.
  function gapText(meta, node) {
    if (meta.judged_on === "overdue") return "超期 " + (node.overdue ?? 0) + " 件";
    const g = Math.abs(node.shortfall);
    const amount = meta.unit === "percent" ? (g * 100).toFixed(Math.max(1, meta.precision)) + "个百分点" : g.toFixed(meta.precision);
    return (meta.at_most ? "超出 " : "差 ") + amount;
  }
  function renderAtRisk() {
    const list = document.getElementById("atrisk");
    if (!list || !S.atRisk) return;
    const meta = S.catalogue[metricId] || {};
    document.getElementById("atrisk-count").textContent = "共 " + S.atRisk.total + " 个";
    list.innerHTML = "";
    if (!S.atRisk.nodes.length) list.innerHTML = '<li class="muted">无风险单位</li>';
    S.atRisk.nodes.forEach((node) => {
      const li = document.createElement("li");
      li.className = node.status;
      li.dataset.code = node.code;
      li.dataset.shortfall = String(node.shortfall);
      li.innerHTML = '<span class="where"></span><span class="v"></span><span class="gap"></span>';
      const where = li.querySelector(".where");
      where.textContent = node.name;
      if (node.level !== "district" && node.parent_name) {
        const small = document.createElement("small");
        small.textContent = node.parent_name;
        where.appendChild(small);
      }
      li.querySelector(".v").textContent = window.VSCC.fmt(meta, node.value);
      li.querySelector(".gap").textContent = gapText(meta, node);
      li.title = STATUS_ZH[node.status];
      // A node with children opens; a community opens its street.
      li.onclick = () => drill(childrenOf(node.code).length ? node.code : S.org[node.code].parent);
      list.appendChild(li);
    });
  }
  async function loadAtRisk() {
    if (!metricId || !S.scope) return;
    S.atRiskAt = Date.now();
    const scope = S.scope;
    try {
      const r = await getJSON("/api/v1/at-risk?metric=" + metricId + "&scope=" + scope + "&limit=40");
      if (scope === S.scope) { S.atRisk = r; renderAtRisk(); }
    } catch (e) { /* keep the last */ }
  }

  function render() {
    if (!S.dashboard || !S.scope) return;
    renderCrumbs();
    renderTiles();
    renderCounts();
    renderMap();
    renderLeague();
    // Live figures move the at-risk list too; it is re-read at most every 3 s, and once more
    // after the last change.
    if (metricId && !S.atRiskTimer) {
      S.atRiskTimer = setTimeout(() => { S.atRiskTimer = null; loadAtRisk(); }, Math.max(0, S.atRiskAt + 3000 - Date.now()));
    }
    S.rendered++;
  }

  // ---- the stream ------------------------------------------------------------------------
  function connect() {
    S.stream = window.VSCC.live(S, {
      id: "main",
      subscription: () => ({ scope: S.scope, metrics: neededMetrics() }),
      onFigures: render,
      onAlert: addAlert,
    });
  }
  const resubscribe = () => S.stream && S.stream.resubscribe();

  async function loadFreshness() {
    try { S.freshness = await getJSON("/api/v1/freshness?scope=" + S.scope); renderLeague(); } catch (e) { /* keep the last */ }
  }

  // ---- trend lines from the daily snapshots ------------------------------------------------------
  async function loadTrends() {
    if (!S.dashboard || !S.scope || !window.echarts) return;
    const metrics = S.dashboard.trend_metrics || [];
    const box = document.getElementById("trend");
    if (!metrics.length) return;
    let data;
    // A metric's page shows the whole plan (from 2020, so that its deadline is on the axis);
    // a wall screen the last two years.
    const days = metricId ? Math.ceil((Date.now() - Date.UTC(2020, 0, 1)) / 86400000) + 1 : 730;
    try { data = await getJSON("/api/v1/trends?scope=" + S.scope + "&metrics=" + metrics.join(",") + "&days=" + days); }
    catch (e) { return; }
    const series = metrics
      .map((m) => ({ m, points: ((data[m] || {})[S.scope] || []).filter((p) => p[1] !== null) }))
      .filter((x) => x.points.length);
    if (!series.length) {
      if (S.trendChart) { S.trendChart.dispose(); S.trendChart = null; }
      box.innerHTML = '<p class="muted">暂无历史快照（每日凌晨生成）</p>';
      return;
    }
    if (!S.trendChart) { box.innerHTML = ""; S.trendChart = echarts.init(box); }
    const pctAxis = series.every((x) => (S.catalogue[x.m] || {}).unit === "percent");
    const fs = Math.round(innerHeight / 70);
    // A one-off deadline stays on the axis even when the snapshots began after it (a young
    // store): the axis reaches a few months before it (room for its label), and half a month
    // past the last point (a lone point is not cut in half by the edge).
    const deadline = metricId && (S.catalogue[metricId] || {}).deadline;
    const due = /^\d{4}-\d{2}-\d{2}$/.test(deadline || "") ? Date.parse(deadline) : null;
    const month = 30 * 86400000;
    S.trendChart.setOption({
      grid: { left: "6%", right: "3%", top: "18%", bottom: "14%" },
      legend: { top: 0, itemWidth: fs * 1.8, itemHeight: fs * 0.9, textStyle: { color: "#d8e6ff", fontSize: fs } },
      tooltip: { trigger: "axis" },
      xAxis: { type: "time", axisLabel: { color: "#6f8bb3", fontSize: fs },
        min: due === null ? null : (v) => Math.min(v.min, due - 4 * month),
        max: due === null ? null : (v) => Math.max(v.max + month / 2, due + month) },
      yAxis: { type: "value", max: pctAxis ? 1 : null, axisLabel: { color: "#6f8bb3", fontSize: fs,
        formatter: (v) => (pctAxis ? Math.round(v * 100) + "%" : v) }, splitLine: { lineStyle: { color: "#1d3d66" } } },
      series: series.map((x) => ({ type: "line", name: (S.catalogue[x.m] || {}).label_zh || x.m, showSymbol: x.points.length < 3,
        data: x.points, lineStyle: { width: 2 }, markLine: targetMarks(x.m) })),
    }, true);
    S.trendChart.resize();
  }

  // The target as a line and a one-off deadline as a mark, on the trend of a screen's one
  // metric (?metric=, as the plan board opens it).
  function targetMarks(metric) {
    const meta = S.catalogue[metric];
    if (!focusMetric() || !meta || meta.target === null || meta.target === undefined || meta.judged_on === "overdue") return undefined;
    const fontSize = Math.round(innerHeight / 70); // legible on a 4K wall as on 1080p
    const data = [{ yAxis: meta.target, name: "目标", label: { formatter: "目标", position: "insideEndTop", color: "#f5a524", fontSize } }];
    if (/^\d{4}-\d{2}-\d{2}$/.test(meta.deadline || "")) data.push({ xAxis: meta.deadline, name: "截止", label: { formatter: "截止 " + meta.deadline, color: "#ff4d4f", fontSize } });
    return { symbol: "none", silent: true, lineStyle: { type: "dashed", color: "#f5a524" }, data };
  }

  // ---- the alert ticker ----------------------------------------------------------------------
  const SEV_ZH = { critical: "紧急", warning: "警告", info: "提示" };
  function addAlert(a) {
    const list = document.getElementById("ticker");
    if (!list) return; // a metric's page has no ticker
    if (list.querySelector(".muted")) list.innerHTML = "";
    const li = document.createElement("li");
    li.className = "sev-" + a.severity;
    const when = (a.at || a.since || "").slice(11, 16);
    li.textContent = (a.state === "resolved" ? "✓ 已恢复 " : "● " + (SEV_ZH[a.severity] || "") + " ") + when + " " + a.summary;
    list.prepend(li);
    while (list.children.length > 30) list.lastChild.remove();
  }
  async function loadAlerts() {
    try {
      const r = await getJSON("/api/v1/alerts?state=firing");
      const list = document.getElementById("ticker");
      list.innerHTML = r.alerts.length ? "" : '<li class="muted">暂无预警</li>';
      r.alerts.slice(0, 30).reverse().forEach(addAlert);
    } catch (e) { /* the ticker keeps what it has */ }
  }

  function drill(code) {
    if (code === S.scope || !S.org[code]) return;
    S.scope = code;
    S.epoch = null; S.seq = 0; S.view = {}; S.atRisk = null; S.atRiskAt = 0;
    if (metricId) {
      const q = new URLSearchParams(location.search);
      q.set("scope", code);
      history.replaceState(null, "", location.pathname + "?" + q);
    }
    render();
    loadTrends();
    loadFreshness();
    resubscribe();
  }
  S.drill = drill;

  // ---- dashboards as files -----------------------------------------------------------------
  // A metric's page is a dashboard of that one metric, made here rather than read from a file.
  function metricDashboard() {
    const meta = S.catalogue[metricId];
    if (!meta) throw new Error("未知指标 " + metricId);
    const title = meta.label_zh + " · " + window.VSCC.clauseText(meta.clause) + " · " + window.VSCC.targetText(meta);
    return { title, tiles: [metricId], map_metrics: [metricId], map_rotate_seconds: 3600,
      league_metric: metricId, trend_metrics: [metricId], next: null, dwell_seconds: 0 };
  }

  async function loadDashboard(initial) {
    if (metricId) {
      if (!initial) return;
      S.dashboard = metricDashboard();
      document.getElementById("title").textContent = S.dashboard.title;
      document.title = S.catalogue[metricId].label_zh + " · 指标详情";
      S.scope = S.org[params.get("scope")] ? params.get("scope") : "440300";
      render();
      return;
    }
    const d = await getJSON("/api/v1/dashboards/" + dashboardName);
    if (d.version === S.version) return;
    S.version = d.version;
    S.dashboard = d.dashboard;
    // ?metric=…: the screen for one metric (the plan board opens it): its map, league table
    // and trend, and its tile first.
    const focus = params.get("metric");
    if (focus && S.catalogue[focus]) {
      const f = Object.assign({}, d.dashboard);
      f.map_metrics = [focus];
      f.league_metric = focus;
      f.trend_metrics = [focus];
      if (!f.tiles.includes(focus)) f.tiles = [focus].concat(f.tiles.slice(0, 4));
      f.title = d.dashboard.title + " · " + S.catalogue[focus].label_zh;
      S.dashboard = f;
    }
    document.getElementById("title").textContent = S.dashboard.title;
    document.title = S.dashboard.title;
    if (initial) {
      const templ = d.dashboard.scope === "{district}";
      S.scope = params.get("scope") || (templ ? "440303" : d.dashboard.scope);
    } else {
      resubscribe(); // the metric set may have changed
    }
    render();
  }

  async function start() {
    const tick = () => {
      document.getElementById("clock").textContent = new Date().toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
    };
    tick();
    setInterval(tick, 1000);
    const [catalogue, org, geo] = await Promise.all([
      getJSON("/api/v1/catalogue"), getJSON("/api/v1/org"), getJSON("/api/v1/geo/districts"),
    ]);
    catalogue.forEach((m) => (S.catalogue[m.id] = m));
    (function index(n) {
      S.org[n.code] = { name: n.name, level: n.level, parent: n.parent, children: n.children.map((c) => c.code) };
      n.children.forEach(index);
    })(org);
    if (window.echarts) {
      echarts.registerMap("shenzhen", geo);
      S.mapAspect = aspectOf(geo);
      S.mapChart = echarts.init(document.getElementById("map"), null, { renderer: "canvas" });
      S.mapChart.on("click", (p) => drill(p.name));
      addEventListener("resize", () => { S.mapChart.resize(); renderMap(); });
    }
    await loadDashboard(true);
    connect();
    if (!metricId) loadAlerts();
    loadTrends();
    loadFreshness();
    setInterval(loadTrends, 300000);
    setInterval(loadFreshness, 60000);
    if (metricId) setInterval(loadAtRisk, 20000);
    addEventListener("resize", () => S.trendChart && S.trendChart.resize());
    setInterval(() => loadDashboard(false).catch(() => {}), 5000);
    setInterval(() => { S.mapMetricIndex++; render(); }, Math.max(5, S.dashboard.map_rotate_seconds) * 1000);
    if (S.dashboard.next && S.dashboard.dwell_seconds > 0 && !params.get("norotate")) {
      setTimeout(() => { location.href = "/screen/" + S.dashboard.next + location.search; }, S.dashboard.dwell_seconds * 1000);
    }
  }
  start().catch((e) => { window.VSCC.showConn("down", "加载失败：" + e.message); setTimeout(() => location.reload(), 10000); });
})();
