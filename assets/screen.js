// The wall screen: one map of Shenzhen, live over /ws, drillable, unattended — and, at
// /metric/<id>, one metric's page. Every figure is ranked, coloured and worded the way the
// other pages do it (common.js): by what its status is judged on, in the metric's direction.
(function () {
  "use strict";
  const V = window.VSCC;
  const { STATUS_ZH, COLORS, SEV_ZH, LEVEL_ZH, params, getJSON } = V;
  const STALE_DAYS = 7; // a node silent this long is marked as having stopped reporting
  const pathName = (location.pathname.match(/^\/screen\/([\w-]+)/) || [])[1];
  const dashboardName = pathName || "city-overview";
  // /metric/<id>: one metric's page (its figure, map, league, trend, nodes at risk).
  const metricId = (location.pathname.match(/^\/metric\/([\w-]+)/) || [])[1];

  const S = {
    catalogue: {}, org: {}, freshness: {}, dashboard: null, version: null, scope: null, view: {},
    epoch: null, seq: 0, ws: null, mapMetricIndex: 0, connected: false, stream: null,
    mapChart: null, trendChart: null, rendered: 0, mapAspect: 2, atRisk: null, atRiskAt: 0,
    groups: [], resolved: [], colorBy: params.get("color") === "value" ? "value" : "status",
  };
  window.__vscc = S; // for the browser tests

  const meta = (m) => S.catalogue[m] || { id: m, label_zh: m };
  const nameOf = (code) => (S.org[code] ? S.org[code].name : code);
  const levelOf = (code) => (S.org[code] ? S.org[code].level : null);
  const childrenOf = (code) => (S.org[code] ? S.org[code].children : []);
  // The region's root (org.region: Shenzhen's city by default, a province, the nation).
  const rootCode = () => Object.keys(S.org).find((c) => !S.org[c].parent) || "440300";
  const titled = (t) => t.replace("{root}", nameOf(rootCode()));
  const figOf = (code, m) => (S.view[code] || {})[m];
  // Whether `metric` is shown at `code`'s level (staffing is reported by districts: its streets
  // are not "no data" but not applicable).
  const shownAt = (m, code) => V.shownAtLevel(S.catalogue[m], levelOf(code));
  // "本指标统计到区，街道不单列": said once, where a level is not applicable.
  const notShownText = (m, childLevel) =>
    "本指标统计到" + (meta(m).levels || []).map((l) => LEVEL_ZH[l]).join("、") + "，" + LEVEL_ZH[childLevel] + "不单列";

  // The line under a tile's number: the target, and for cases what the number leaves out.
  function tileSub(m, f) {
    const d = meta(m);
    if (d.measure === "cases" && f && f.value !== null && f.value !== undefined) {
      const each = (d.deadlines || []).map((x) => x.label_zh + "超期 " + (f["overdue_" + x.name] ?? 0));
      const open = "在办 " + V.fmtUnit(d, f.value);
      // Judged on overdue: the number is the overdue count, the line says the target and the
      // open count.
      return (d.judged_on === "overdue" ? ["目标" + V.targetText(d), open] : ["超期 " + (f.overdue ?? 0) + " " + (d.unit_zh || ""), V.targetText(d)]).concat(each).join(" · ");
    }
    return "目标 " + V.targetText(d) + (f && f.due && d.deadline && !/^\d/.test(d.deadline) ? " · 本期剩" + V.daysUntil(f.due) + "天" : "");
  }

  // The 督办 panel's figures, where the page has the panel.
  const TASK_METRICS = ["task_assignments", "task_on_time"];
  const hasTasks = () => !!document.getElementById("tasks-panel") && TASK_METRICS.every((m) => S.catalogue[m]);
  function neededMetrics() {
    const d = S.dashboard;
    return [...new Set([...d.tiles, ...d.map_metrics, ...(d.trend_metrics || []), ...(hasTasks() ? TASK_METRICS : [])])];
  }
  // The metric the map and the league show: always the same one (they rotate together).
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
    const want = S.dashboard.tiles.join(",");
    if (box.dataset.tiles !== want || box.dataset.scope !== S.scope) {
      box.innerHTML = "";
      box.dataset.tiles = want;
      box.dataset.scope = S.scope;
      for (const m of S.dashboard.tiles) {
        const el = document.createElement("div");
        el.dataset.metric = m;
        el.innerHTML = '<div class="label"></div><div class="value"></div><div class="sub"></div><div class="status"></div>';
        el.querySelector(".label").textContent = meta(m).label_zh;
        box.appendChild(el);
      }
    }
    for (const el of box.children) {
      const m = el.dataset.metric;
      const f = figOf(S.scope, m);
      const d = meta(m);
      const status = V.statusOf(f);
      el.className = "tile " + status;
      el.dataset.value = f && f.value !== null ? String(f.value) : "";
      el.dataset.status = status;
      const applies = shownAt(m, S.scope);
      const value = !applies ? "不适用" : d.judged_on === "overdue" ? V.judgedText(d, f) + (f && f.value !== null ? " " + (d.unit_zh || "") : "") : V.fmtUnit(d, f && f.value);
      V.flashIfChanged(el.querySelector(".value"), value);
      el.querySelector(".sub").textContent = !applies ? "本级不适用" : tileSub(m, f);
      el.querySelector(".status").textContent = applies ? STATUS_ZH[status] || status : "";
    }
  }

  // The map's colours: by status (the legend's), or by the judged number on a scale.
  function mapSeriesData(m, codes) {
    const d = meta(m);
    return codes.map((code) => {
      const f = figOf(code, m);
      const status = V.statusOf(f);
      const v = V.judged(d, f);
      const item = { name: code, value: v, status };
      if (S.colorBy === "status" || v === null) item.itemStyle = { areaColor: COLORS[status] };
      return item;
    });
  }
  function valueScale(m, data) {
    const d = meta(m);
    const values = data.map((x) => x.value).filter((v) => v !== null);
    if (S.colorBy !== "value" || !values.length) return { show: false, min: 0, max: 1, inRange: { color: ["#000", "#000"] }, seriesIndex: 1 };
    const min = Math.min(...values), max = Math.max(...values);
    // Darker is better, in the metric's direction.
    const colors = d.lower_is_better ? ["#2f6de0", "#7fb0ff", "#dbe9ff"] : ["#dbe9ff", "#7fb0ff", "#2f6de0"];
    return {
      show: true, type: "continuous", min, max: max > min ? max : min + 1, calculable: false, orient: "horizontal",
      left: "center", bottom: 0, itemWidth: V.chartFont(), itemHeight: innerHeight * 0.16,
      text: [V.fmt(d, max), V.fmt(d, min)], textStyle: { color: "#d8e6ff", fontSize: V.chartFont() },
      inRange: { color: colors }, seriesIndex: 0,
    };
  }

  function renderMap() {
    const m = mapMetric();
    const d = meta(m);
    document.getElementById("map-title").textContent = nameOf(S.scope) + " · " + d.label_zh + (d.judged_on === "overdue" ? "（超期件数）" : "");
    const level = levelOf(S.scope);
    const mapEl = document.getElementById("map");
    const grid = document.getElementById("grid");
    const note = document.getElementById("map-note");
    const kids = childrenOf(S.scope);
    const childLevel = kids.length ? levelOf(kids[0]) : null;
    const applies = kids.length && shownAt(m, kids[0]);
    if (note) note.hidden = true;
    if (S.scope === rootCode() && S.mapChart) {
      mapEl.hidden = false; grid.hidden = true;
      document.getElementById("map-hint").textContent = "点击行政区下钻";
      const data = mapSeriesData(m, kids);
      // As large as the panel allows at the map's own proportions, centred (a box layout
      // would pin the wide outline to the top of a tall panel).
      const size = V.fitSize(mapEl, S.mapAspect, 0.94, S.colorBy === "value" ? 0.8 : 0.88);
      S.mapChart.setOption({
        visualMap: valueScale(m, data),
        series: [{
          type: "map", map: "shenzhen", nameProperty: "code", roam: false, selectedMode: false,
          aspectScale: V.ASPECT_SCALE, layoutCenter: ["50%", S.colorBy === "value" ? "45%" : "50%"], layoutSize: size,
          // Many areas (a province's 21 cities): names only, smaller; the figure on hover and
          // in the ranking, so that the crowded delta stays readable.
          label: { show: true, color: "#fff", fontSize: V.chartFont() * (kids.length > 12 ? 0.75 : 1), lineHeight: V.chartFont() * 1.15,
            textBorderColor: "#04101f", textBorderWidth: Math.max(2, V.chartLine()),
            formatter: (p) => V.shortPlace(nameOf(p.name)).replace(/市$/, "") + (kids.length > 12 ? "" : "\n" + V.judgedText(d, figOf(p.name, m))) },
          itemStyle: { borderColor: "#9cc7ff", borderWidth: V.chartLine() / 2 },
          emphasis: { label: { color: "#fff" }, itemStyle: { areaColor: "#2b5d9a" } },
          data,
        }],
      }, { replaceMerge: ["visualMap"] });
      S.mapChart.resize();
      return;
    }
    mapEl.hidden = true;
    if (!applies) {
      // Said once, not a grid of 不适用 cards.
      grid.hidden = true;
      if (note) { note.hidden = false; note.textContent = notShownText(m, childLevel); }
      document.getElementById("map-hint").textContent = "";
      return;
    }
    grid.hidden = false;
    document.getElementById("map-hint").textContent = (LEVEL_ZH[childLevel] || "下级") + (childLevel === "community" ? "按排名显示" : "暂无边界数据，按排名显示");
    const ranked = V.rank(d, kids, (c) => figOf(c, m));
    const values = ranked.map((c) => V.judged(d, figOf(c, m))).filter((v) => v !== null);
    const [lo, hi] = values.length ? [Math.min(...values), Math.max(...values)] : [0, 1];
    grid.innerHTML = "";
    ranked.forEach((code, i) => {
      const f = figOf(code, m);
      const status = V.statusOf(f);
      const cell = document.createElement("div");
      cell.className = "cell " + status;
      cell.dataset.code = code;
      cell.dataset.value = f && f.value !== null ? String(f.value) : "";
      cell.innerHTML = '<span class="rank"></span><div class="name"></div><div class="v"></div>';
      cell.querySelector(".rank").textContent = "#" + (i + 1);
      cell.querySelector(".name").textContent = nameOf(code);
      cell.querySelector(".v").textContent = V.judgedText(d, f);
      const v = V.judged(d, f);
      if (S.colorBy === "value" && v !== null) {
        const share = hi > lo ? (v - lo) / (hi - lo) : 1;
        const good = d.lower_is_better ? 1 - share : share;
        cell.style.background = "rgba(58, 140, 255, " + (0.12 + 0.55 * good).toFixed(2) + ")";
      }
      if (childrenOf(code).length) cell.onclick = () => drill(code);
      grid.appendChild(cell);
    });
  }

  function renderLeague() {
    const m = mapMetric();
    const d = meta(m);
    document.getElementById("league-title").textContent = "排名 · " + d.label_zh + (d.judged_on === "overdue" ? "（超期件数）" : "");
    const table = document.getElementById("league");
    table.innerHTML = "";
    const kids = childrenOf(S.scope);
    if (kids.length && !shownAt(m, kids[0])) {
      const tr = document.createElement("tr");
      tr.innerHTML = '<td class="muted"></td>';
      tr.firstChild.textContent = notShownText(m, levelOf(kids[0]));
      table.appendChild(tr);
      return;
    }
    // A wall shows the best and the worst when there are more than fit (a province's 21
    // cities pushed the alerts below off the screen).
    const ranked = V.rank(d, kids, (c) => figOf(c, m));
    const FITS = 12;
    const gap = ranked.length > FITS ? FITS / 2 : -1;
    ranked.forEach((code, i) => {
      if (gap >= 0 && i >= gap && i < ranked.length - gap) {
        if (i === gap) {
          const more = document.createElement("tr");
          more.className = "league-gap";
          more.innerHTML = '<td class="rank"></td><td class="name muted"></td><td class="num"></td>';
          more.querySelector(".name").textContent = "…… 第 " + (gap + 1) + "–" + (ranked.length - gap) + " 名（共 " + ranked.length + " 个）";
          table.appendChild(more);
        }
        return;
      }
      const f = figOf(code, m);
      const tr = document.createElement("tr");
      tr.dataset.code = code;
      tr.dataset.value = f && f.value !== null ? String(f.value) : "";
      tr.dataset.status = V.statusOf(f);
      tr.innerHTML = '<td class="rank"></td><td class="name"></td><td class="num"></td>';
      tr.querySelector(".rank").textContent = i + 1;
      tr.querySelector(".name").textContent = nameOf(code);
      const num = tr.querySelector(".num");
      num.textContent = V.judgedText(d, f);
      num.style.color = COLORS[V.statusOf(f)];
      const fresh = S.freshness[code];
      if (fresh && (fresh.days_silent === null || fresh.days_silent >= STALE_DAYS)) {
        const mark = document.createElement("span");
        mark.className = "stale";
        mark.textContent = fresh.days_silent === null ? "从未报送" : fresh.days_silent + "天未报送";
        tr.querySelector(".name").appendChild(mark);
      }
      if (childrenOf(code).length) tr.onclick = () => drill(code);
      table.appendChild(tr);
    });
  }

  // A metric's page: how the children stand.
  function renderCounts() {
    const box = document.getElementById("counts");
    if (!box) return;
    const d = meta(metricId);
    const kids = childrenOf(S.scope);
    box.innerHTML = "";
    if (kids.length && !shownAt(metricId, kids[0])) {
      box.innerHTML = '<div class="tile no_data"><div class="label"></div></div>';
      box.querySelector(".label").textContent = notShownText(metricId, levelOf(kids[0]));
      return;
    }
    const shown = d.target === null || d.target === undefined ? ["tracked", "no_data"] : ["met", "on_track", "at_risk", "missed"];
    const n = Object.fromEntries(shown.map((s) => [s, 0]));
    kids.forEach((c) => { const s = V.statusOf(figOf(c, metricId)); if (s in n) n[s]++; });
    for (const status of shown) {
      const el = document.createElement("div");
      el.className = "tile " + status;
      el.dataset.status = status;
      el.innerHTML = '<div class="label"></div><div class="value"></div>';
      el.querySelector(".label").textContent = "下级" + STATUS_ZH[status];
      el.querySelector(".value").textContent = n[status] + "/" + kids.length;
      box.appendChild(el);
    }
  }

  // A metric's page: the nodes at risk or missed under the scope, by level, farthest from the
  // target first.
  function gapText(d, node) {
    if (d.judged_on === "overdue") return "超期 " + (node.overdue ?? 0) + " " + (d.unit_zh || "件");
    // Scheduled reports: how many of those due are short (missing, or not on time), by count.
    if (d.measure === "reporting" && node.den !== undefined) {
      return "差 " + (node.den - node.num) + "/" + node.den + " 份";
    }
    const g = Math.abs(node.shortfall);
    const amount = d.unit === "percent" ? (g * 100).toFixed(Math.max(1, d.precision)) + "个百分点" : V.number(g, d.precision) + (d.unit_zh ? " " + d.unit_zh : "");
    return (d.at_most ? "超出 " : "差 ") + amount;
  }
  function renderAtRisk() {
    const list = document.getElementById("atrisk");
    if (!list || !S.atRisk) return;
    const d = meta(metricId);
    document.getElementById("atrisk-count").textContent = "共 " + S.atRisk.total + " 个";
    list.innerHTML = "";
    if (d.target === null || d.target === undefined) { list.innerHTML = '<li class="muted">跟踪指标，无目标，不判断风险</li>'; return; }
    if (!S.atRisk.nodes.length) list.innerHTML = '<li class="muted">无风险单位</li>';
    // Every district (there are ten), the farthest streets and communities.
    const PER_LEVEL = { district: 10, street: 10, community: 6 };
    for (const level of ["district", "street", "community"]) {
      const all = S.atRisk.nodes.filter((n) => n.level === level);
      if (!all.length) continue;
      const head = document.createElement("li");
      head.className = "level";
      const most = PER_LEVEL[level];
      const count = (S.atRisk.by_level || {})[level] || all.length;
      head.textContent = LEVEL_ZH[level] + " " + count + " 个" + (count > most ? "（列出最远的 " + most + " 个）" : "");
      // 督办: one click issues a task to these units (prefilled on the 督办台).
      if (S.mayIssue) {
        const q = new URLSearchParams({ new: "1", metric: metricId, scope: S.scope, level, status: "at_risk,missed" });
        if (count <= all.length) q.set("units", all.map((n) => n.code).join(","));
        const a = document.createElement("a");
        a.className = "issue-link";
        a.href = "/tasks?" + q;
        a.textContent = "督办这 " + count + " 个" + LEVEL_ZH[level];
        a.onclick = (ev) => ev.stopPropagation();
        head.appendChild(a);
      }
      list.appendChild(head);
      all.slice(0, most).forEach((node) => {
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
        // Judged on overdue: the overdue count in the status colour, the open count beside it.
        li.querySelector(".v").textContent = d.judged_on === "overdue" ? "超期 " + V.number(node.overdue || 0, 0) : V.fmt(d, node.value);
        const gap = d.judged_on === "overdue" ? "在办 " + V.number(node.value || 0, 0) : gapText(d, node);
        // What the node must do to get there in time, where it says more than the gap: a rate
        // ("每月 2 名") or cases about to turn overdue. The whole sentence is the tooltip.
        const more = node.pace && ((node.pace.per && node.pace.per.length) || node.pace.soon);
        li.querySelector(".gap").textContent = more ? gap + " · " + V.paceShort(node.pace) : gap;
        if (node.pace) li.title = STATUS_ZH[node.status] + "：" + node.pace.text_zh;
        if (!node.pace) li.title = STATUS_ZH[node.status];
        // A node with children opens; a community opens its street.
        li.onclick = () => drill(childrenOf(node.code).length ? node.code : S.org[node.code].parent);
        list.appendChild(li);
      });
    }
  }
  async function loadAtRisk() {
    if (!metricId || !S.scope) return;
    S.atRiskAt = Date.now();
    const scope = S.scope;
    try {
      // The farthest of each level apart, with each level's count: many far communities do not
      // push the districts out.
      const r = await getJSON("/api/v1/at-risk?metric=" + metricId + "&scope=" + scope + "&limit=20&per_level=true");
      if (scope === S.scope) { S.atRisk = r; renderAtRisk(); }
    } catch (e) { /* keep the last */ }
  }

  // ---- 督办: the tasks sent down the tree ------------------------------------------------------
  // The units below with assignments open: overdue, open and done on time — the most overdue
  // first; the line above sums the scope.
  function renderTasks() {
    const table = document.getElementById("tasks-table");
    if (!table || !hasTasks()) return;
    const open = (c) => figOf(c, "task_assignments");
    const pct = (f) => (f && f.value !== null && f.value !== undefined ? Math.round(f.value * 100) + "%" : "—");
    const own = open(S.scope);
    const sum = document.getElementById("tasks-sum");
    V.flashIfChanged(sum, own && own.value !== null ? "在办" + V.number(own.value || 0, 0) + " 超期" + V.number(own.overdue || 0, 0) +
      " 按时" + pct(figOf(S.scope, "task_on_time")) : "暂无督办任务");
    const rows = childrenOf(S.scope)
      .map((c) => ({ c, f: open(c) }))
      .filter((x) => x.f && (x.f.value || x.f.overdue))
      .sort((a, b) => (b.f.overdue || 0) - (a.f.overdue || 0) || (b.f.value || 0) - (a.f.value || 0))
      .slice(0, 3);
    table.innerHTML = rows.length ? "<tr><th></th><th>在办</th><th>超期</th><th>按时</th></tr>" + rows.map((x) =>
      '<tr data-code="' + x.c + '"><td class="name"></td><td class="num">' + V.number(x.f.value || 0, 0) + '</td><td class="num' +
      (x.f.overdue ? " bad" : "") + '">' + V.number(x.f.overdue || 0, 0) + '</td><td class="num">' + pct(figOf(x.c, "task_on_time")) + "</td></tr>").join("") : "";
    table.querySelectorAll("tr[data-code]").forEach((tr) => {
      tr.querySelector(".name").textContent = nameOf(tr.dataset.code);
      tr.onclick = () => drill(tr.dataset.code);
    });
  }
  function taskLine(s) {
    const li = document.createElement("li");
    li.className = "step-" + s.step;
    const when = (s.at || "").slice(11, 16);
    li.innerHTML = '<span class="when"></span> <span class="who"></span> <span class="what"></span>';
    li.querySelector(".when").textContent = when;
    li.querySelector(".who").textContent = s.org_name;
    // The answer itself; the task's title in the tooltip (the panel is narrow).
    li.querySelector(".what").textContent = s.step_zh + (s.text ? "：" + s.text : "「" + s.title + "」");
    li.title = s.org_name + " " + s.step_zh + "「" + s.title + "」" + (s.text ? "：" + s.text : "") + (s.by ? "（" + s.by + "）" : "");
    return li;
  }
  function renderTaskFeed(fresh) {
    const list = document.getElementById("task-feed");
    if (!list) return;
    list.innerHTML = "";
    // 应急事件 first, in the alarm colour, while they are open.
    (S.incidents || []).forEach((t) => {
      const li = document.createElement("li");
      li.className = "incident";
      const done = t.states.accepted || 0;
      li.textContent = "应急 " + t.title + " · 签收 " + (t.assignments_total - (t.states.issued || 0)) + "/" + t.assignments_total +
        " · 销号 " + done + (t.overdue ? " · 超期 " + t.overdue : "");
      list.appendChild(li);
    });
    (S.taskSteps || []).slice(0, 8).forEach((s, i) => {
      const li = taskLine(s);
      if (fresh && i === 0) li.classList.add("fresh");
      list.appendChild(li);
    });
    if (!list.children.length) list.innerHTML = '<li class="muted">暂无反馈</li>';
  }
  async function loadTaskFeed() {
    if (!document.getElementById("task-feed") || !S.scope) return;
    const scope = S.scope;
    try {
      const r = await getJSON("/api/v1/tasks/feed?scope=" + scope + "&limit=8");
      if (scope === S.scope) { S.taskSteps = r.steps; S.incidents = r.incidents; renderTaskFeed(false); }
    } catch (e) { /* keep the last */ }
  }
  // A step just taken (pushed over the stream): on the panel at once.
  function onTask(step) {
    if (!within(step.org)) return;
    S.taskSteps = [step].concat(S.taskSteps || []).slice(0, 20);
    renderTaskFeed(true);
    // An incident's counts move with its steps.
    if ((S.incidents || []).some((t) => t.id === step.task)) { clearTimeout(S.feedTimer); S.feedTimer = setTimeout(loadTaskFeed, 500); }
  }

  function render() {
    if (!S.dashboard || !S.scope) return;
    renderCrumbs();
    renderTiles();
    renderCounts();
    renderMap();
    renderLeague();
    renderTasks();
    // Live figures move the at-risk list too; it is re-read at most every 3 s, and once more
    // after the last change.
    if (metricId && !S.atRiskTimer) {
      S.atRiskTimer = setTimeout(() => { S.atRiskTimer = null; loadAtRisk(); }, Math.max(0, S.atRiskAt + 3000 - Date.now()));
    }
    S.rendered++;
  }

  // ---- the stream ------------------------------------------------------------------------
  function connect() {
    S.stream = V.live(S, {
      id: "main",
      subscription: () => ({ scope: S.scope, metrics: neededMetrics() }),
      onFigures: render,
      onAlert,
      onTask,
    });
  }
  const resubscribe = () => S.stream && S.stream.resubscribe();

  async function loadFreshness() {
    try { S.freshness = await getJSON("/api/v1/freshness?scope=" + S.scope); renderLeague(); } catch (e) { /* keep the last */ }
  }

  // ---- trend lines from the daily snapshots ------------------------------------------------------
  const PLAN_START = Date.UTC(2020, 0, 1), PLAN_END = Date.UTC(2022, 11, 31);
  async function loadTrends() {
    if (!S.dashboard || !S.scope || !window.echarts) return;
    const metrics = S.dashboard.trend_metrics || [];
    const box = document.getElementById("trend");
    if (!metrics.length) return;
    let data;
    // The plan's years and now: from 2020 on.
    const days = Math.ceil((Date.now() - PLAN_START) / 86400000) + 1;
    try { data = await getJSON("/api/v1/trends?scope=" + S.scope + "&metrics=" + metrics.join(",") + "&days=" + days); }
    catch (e) { return; }
    // Plotted is what the status is judged on: a cases metric's overdue count, else the value.
    const series = metrics
      .map((m) => {
        const onOverdue = meta(m).judged_on === "overdue";
        const points = ((data[m] || {})[S.scope] || [])
          .map((p) => [p[0], onOverdue ? p[2] : p[1]])
          .filter((p) => p[1] !== null && p[1] !== undefined);
        return { m, points, onOverdue };
      })
      .filter((x) => x.points.length);
    if (!series.length) {
      if (S.trendChart) { S.trendChart.dispose(); S.trendChart = null; }
      box.innerHTML = '<p class="muted">暂无历史快照（每日凌晨生成）</p>';
      return;
    }
    if (!S.trendChart) { box.innerHTML = ""; S.trendChart = echarts.init(box); }
    const pctAxis = series.every((x) => meta(x.m).unit === "percent");
    const fs = V.chartFont();
    const lw = V.chartLine();
    // The axis spans the plan (2020–2022) and now, whatever the snapshots cover; the plan's
    // years are shaded.
    const last = Math.max(...series.map((x) => Date.parse(x.points[x.points.length - 1][0])));
    S.trendChart.setOption({
      grid: { left: fs * 3.2, right: fs * 1.2, top: fs * 2.4, bottom: fs * 2.2 },
      legend: { top: 0, itemWidth: fs * 1.6, itemHeight: fs * 0.8, textStyle: { color: "#d8e6ff", fontSize: fs } },
      tooltip: { trigger: "axis", textStyle: { fontSize: fs } },
      xAxis: { type: "time", min: PLAN_START, max: Math.max(Date.now(), last), splitNumber: box.clientWidth < fs * 18 ? 2 : 4,
        axisLabel: { color: "#9fb6d8", fontSize: fs, formatter: { year: "{yyyy}", month: "{M}月", day: "{M}/{d}" } },
        axisLine: { lineStyle: { color: "#6f8bb3", width: lw / 2 } } },
      yAxis: { type: "value", max: pctAxis ? 1 : null, splitNumber: 2, axisLabel: { color: "#9fb6d8", fontSize: fs,
        formatter: (v) => (pctAxis ? Math.round(v * 100) + "%" : V.number(v, 0)) }, splitLine: { lineStyle: { color: "#1d3d66", width: lw / 2 } } },
      series: series.map((x, i) => ({ type: "line", name: meta(x.m).label_zh + (x.onOverdue ? "（超期件数）" : ""), showSymbol: x.points.length < 3,
        symbolSize: lw * 4, data: x.points, lineStyle: { width: lw }, markLine: targetMarks(x.m),
        markArea: i === 0 ? { silent: true, itemStyle: { color: "rgba(58, 140, 255, 0.08)" },
          label: { color: "#6f8bb3", fontSize: fs, position: "insideTopLeft" },
          data: [[{ name: "计划期", xAxis: PLAN_START }, { xAxis: PLAN_END }]] } : undefined })),
    }, true);
    S.trendChart.resize();
  }

  // The target as a line and a one-off deadline as a mark, on the trend of a screen's one
  // metric (a metric page, or ?metric= as the plan board opens it).
  function targetMarks(m) {
    const d = S.catalogue[m];
    if (!(metricId || params.get("metric")) || !d || d.target === null || d.target === undefined || d.judged_on === "overdue") return undefined;
    const fontSize = V.chartFont();
    const data = [{ yAxis: d.target, name: "目标", label: { formatter: "目标", position: "insideEndTop", color: "#f5a524", fontSize } }];
    if (/^\d{4}-\d{2}-\d{2}$/.test(d.deadline || "")) data.push({ xAxis: d.deadline, name: "截止", label: { formatter: "截止 " + d.deadline, color: "#ff4d4f", fontSize } });
    return { symbol: "none", silent: true, lineStyle: { type: "dashed", color: "#f5a524", width: V.chartLine() }, data };
  }

  // ---- the alert ticker: the screen's own scope, grouped ---------------------------------------
  // A group line: "紧急 福田区 · 信访超期 3 个街道 12 件 · 最久 20 天".
  // A group line: "福田 信访超期 5件 · 4个街道 · 最久12天".
  function groupText(g) {
    const where = g.district === S.scope ? "" : V.shortPlace(g.district_name) + " ";
    const one = g.alerts.length === 1 ? g.alerts[0] : null;
    const units = one ? (one.node === g.district ? "" : " · " + one.node_name) : " · " + g.counts.total + "个单位";
    const size = g.value_sum !== null && g.value_sum !== undefined ? " " + V.number(g.value_sum, 0) + "件" : "";
    const age = g.breach_days > 0 ? " · 最久" + g.breach_days + "天" : " · 今日";
    return where + g.title + size + units + age;
  }
  function renderTicker() {
    const list = document.getElementById("ticker");
    if (!list) return; // a metric's page has no ticker
    // A refresh keeps the place the scrolling had reached (else the wall never gets past the
    // first page of a long list).
    const reached = list.scrollTop;
    list.innerHTML = "";
    const firing = S.groups.filter((g) => g.counts.firing > 0);
    for (const g of firing) {
      const li = document.createElement("li");
      li.className = "sev-" + g.severity;
      li.dataset.key = g.key;
      li.dataset.district = g.district;
      li.textContent = "● " + (SEV_ZH[g.severity] || "") + " " + groupText(g);
      list.appendChild(li);
    }
    // Resolved in the last ten minutes: said so, in the resolved colour.
    const recent = S.resolved.filter((r) => Date.now() - r.seen < 600000);
    for (const r of recent) {
      const li = document.createElement("li");
      li.className = "resolved";
      li.textContent = "✓ 已恢复 " + (r.district_name && r.district !== r.node ? r.district_name + " " : "") + r.summary;
      list.appendChild(li);
    }
    if (!list.children.length) list.innerHTML = '<li class="muted">本范围暂无预警</li>';
    document.getElementById("ticker-count").textContent = firing.length ? firing.length + " 组 · " + firing.reduce((n, g) => n + g.counts.firing, 0) + " 条" : "";
    list.scrollTop = Math.min(reached, Math.max(0, list.scrollHeight - list.clientHeight));
  }
  // The ticker pages through what does not fit (the last line of a page stays as the first of
  // the next, to read on from), and starts over.
  function scrollTicker() {
    const list = document.getElementById("ticker");
    if (!list || list.scrollHeight <= list.clientHeight + 2) return;
    const line = list.firstElementChild ? list.firstElementChild.getBoundingClientRect().height : 20;
    const page = Math.max(line, Math.floor(list.clientHeight / line - 1) * line);
    list.scrollTop = list.scrollTop + list.clientHeight >= list.scrollHeight - 2 ? 0 : list.scrollTop + page;
  }
  const within = (code) => { for (let c = code; c; c = S.org[c] && S.org[c].parent) if (c === S.scope) return true; return false; };
  function onAlert(a) {
    if (!within(a.node)) return; // another scope's alert: not this screen's
    if (a.state === "resolved") S.resolved.unshift(Object.assign({ seen: Date.now() }, a));
    S.resolved = S.resolved.slice(0, 10);
    clearTimeout(S.alertTimer);
    S.alertTimer = setTimeout(loadAlerts, 300);
  }
  async function loadAlerts() {
    if (!document.getElementById("ticker") || !S.scope) return;
    try {
      const r = await getJSON("/api/v1/alerts?scope=" + S.scope);
      S.groups = r.groups;
      renderTicker();
    } catch (e) { /* the ticker keeps what it has */ }
  }

  function drill(code) {
    if (code === S.scope || !S.org[code]) return;
    S.scope = code;
    S.epoch = null; S.seq = 0; S.view = {}; S.atRisk = null; S.atRiskAt = 0; S.resolved = [];
    if (metricId) {
      const q = new URLSearchParams(location.search);
      q.set("scope", code);
      history.replaceState(null, "", location.pathname + "?" + q);
    }
    render();
    loadTrends();
    loadFreshness();
    loadAlerts();
    loadTaskFeed();
    resubscribe();
  }
  S.drill = drill;

  // ---- dashboards as files -----------------------------------------------------------------
  // A metric's page is a dashboard of that one metric, made here rather than read from a file.
  function metricDashboard() {
    const d = S.catalogue[metricId];
    if (!d) throw new Error("未知指标 " + metricId);
    const title = d.label_zh + " · " + V.clauseText(d.clause) + " · " + V.targetText(d);
    return { title, tiles: [metricId], map_metrics: [metricId], map_rotate_seconds: 3600,
      trend_metrics: [metricId], next: null, dwell_seconds: 0 };
  }

  async function loadDashboard(initial) {
    if (metricId) {
      if (!initial) return;
      S.dashboard = metricDashboard();
      document.getElementById("title").textContent = S.dashboard.title;
      document.title = S.catalogue[metricId].label_zh + " · 指标详情";
      const d = S.catalogue[metricId];
      document.getElementById("trend-title").textContent = d.target === null || d.target === undefined || d.judged_on === "overdue"
        ? "趋势 · 2020 年以来" : "趋势 · 2020 年以来 · 目标线与截止日";
      const own = await V.homeScope();
      S.mayIssue = await V.mayIssue();
      S.scope = S.org[params.get("scope")] ? params.get("scope") : S.org[own] ? own : rootCode();
      render();
      return;
    }
    const answer = await getJSON("/api/v1/dashboards/" + dashboardName);
    if (answer.version === S.version) return;
    S.version = answer.version;
    S.dashboard = answer.dashboard;
    // The league shows the map's metric: the file's league metric leads the rotation.
    const lead = answer.dashboard.league_metric;
    if (lead && answer.dashboard.map_metrics.includes(lead)) {
      const list = answer.dashboard.map_metrics;
      S.dashboard = Object.assign({}, answer.dashboard, { map_metrics: list.slice(list.indexOf(lead)).concat(list.slice(0, list.indexOf(lead))) });
    }
    // ?metric=…: the screen for one metric (the plan board opens it): its map, league table
    // and trend, and its tile first.
    const focus = params.get("metric");
    if (focus && S.catalogue[focus]) {
      const f = Object.assign({}, S.dashboard);
      f.map_metrics = [focus];
      f.trend_metrics = [focus];
      if (!f.tiles.includes(focus)) f.tiles = [focus].concat(f.tiles.slice(0, 4));
      f.title = titled(answer.dashboard.title) + " · " + S.catalogue[focus].label_zh;
      S.dashboard = f;
    }
    document.getElementById("title").textContent = titled(S.dashboard.title);
    document.title = titled(S.dashboard.title);
    if (initial) {
      const templ = answer.dashboard.scope === "{district}";
      const own = await V.homeScope();
      // A district's leader opens the city's screens at the district (the city is not theirs).
      const home = own && own !== rootCode() && S.org[own] ? own : null;
      S.scope = params.get("scope") || home || (templ ? "440303" : answer.dashboard.scope);
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
    document.querySelectorAll(".legend").forEach((el) => { el.innerHTML = V.legendHTML(); });
    const [catalogue, org, geo] = await Promise.all([
      getJSON("/api/v1/catalogue"), getJSON("/api/v1/org"), getJSON("/api/v1/geo/districts"),
    ]);
    catalogue.forEach((m) => (S.catalogue[m.id] = m));
    S.org = V.indexOrg(org);
    if (window.echarts) {
      echarts.registerMap("shenzhen", geo);
      S.mapAspect = V.aspectOf(geo);
      S.mapChart = echarts.init(document.getElementById("map"), null, { renderer: "canvas" });
      S.mapChart.on("click", (p) => drill(p.name));
      addEventListener("resize", () => { S.mapChart.resize(); renderMap(); });
    }
    const toggle = document.getElementById("color-by");
    if (toggle) {
      const label = () => { toggle.textContent = S.colorBy === "value" ? "按数值着色 ⇄ 按状态" : "按状态着色 ⇄ 按数值"; };
      label();
      toggle.onclick = () => { S.colorBy = S.colorBy === "value" ? "status" : "value"; label(); renderMap(); };
    }
    await loadDashboard(true);
    connect();
    loadAlerts();
    loadTaskFeed();
    setInterval(loadTaskFeed, 60000);
    loadTrends();
    loadFreshness();
    setInterval(loadTrends, 300000);
    setInterval(loadFreshness, 60000);
    setInterval(loadAlerts, 30000);
    setInterval(scrollTicker, 8000);
    if (metricId) setInterval(loadAtRisk, 20000);
    addEventListener("resize", () => { if (S.trendChart) loadTrends(); });
    setInterval(() => loadDashboard(false).catch(() => {}), 5000);
    setInterval(() => { S.mapMetricIndex++; render(); }, Math.max(5, S.dashboard.map_rotate_seconds) * 1000);
    if (S.dashboard.next && S.dashboard.dwell_seconds > 0 && !params.get("norotate")) {
      setTimeout(() => { location.href = "/screen/" + S.dashboard.next + location.search; }, S.dashboard.dwell_seconds * 1000);
    }
  }
  start().catch((e) => { V.showConn("down", "加载失败：" + e.message); setTimeout(() => location.reload(), 10000); });
})();
