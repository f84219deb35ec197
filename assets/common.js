// What the pages share (the wall screen, the plan board, the metric pages, the brief, the duty
// console): the token, the API, how figures, statuses and targets read in Chinese — one way
// for every page, so that the same figure never reads two ways — and the live stream with
// epoch + seq resume.
window.VSCC = (function () {
  "use strict";
  const STATUS_ZH = { met: "已达标", on_track: "进度正常", at_risk: "有风险", missed: "未达标", no_data: "无数据", tracked: "跟踪" };
  // The order a legend and a scorecard list statuses in.
  const STATUSES = ["met", "on_track", "at_risk", "missed", "tracked", "no_data"];
  const COLORS = { met: "#19c37d", on_track: "#3a8cff", at_risk: "#f5a524", missed: "#ff4d4f", no_data: "#4a5a70", tracked: "#9aa8bc" };
  const SEV_ZH = { critical: "紧急", warning: "警告", info: "提示" };
  // "福田区" → "福田" where space is short; never down to one character ("城区" stays).
  const shortPlace = (name) => {
    const short = String(name).replace(/(新)?区$/, "");
    return short.length >= 2 ? short : String(name);
  };
  const LEVEL_ZH = { nation: "全国", province: "省", city: "市", district: "区", street: "街道", community: "社区" };
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || localStorage.getItem("vscc.token") || "";
  if (params.get("token")) localStorage.setItem("vscc.token", params.get("token"));

  const getJSON = async (path) => {
    const r = await fetch(path, { headers: token ? { Authorization: "Bearer " + token } : {} });
    if (r.status === 401) { askToken(); throw new Error("需要登录"); }
    if (!r.ok) throw new Error(path + " → " + r.status);
    return r.json();
  };

  // The pages are shells: the figures need a token. Without one (or with one that expired),
  // a login form — or a screen token in the address (?token=…) for an unattended wall.
  function askToken() {
    if (document.getElementById("login-gate")) return;
    const gate = document.createElement("div");
    gate.id = "login-gate";
    gate.className = "login-gate";
    gate.innerHTML = '<form><h2>请登录</h2><p>此页面的数据需要令牌：请用账号登录，或在地址后加上大屏令牌 <code>?token=…</code>。</p>' +
      '<label>用户名 <input name="name" autocomplete="username" required></label>' +
      '<label>密码 <input name="password" type="password" autocomplete="current-password" required></label>' +
      '<button type="submit">登录</button><p class="error"></p></form>';
    gate.querySelector("form").onsubmit = async (ev) => {
      ev.preventDefault();
      const form = new FormData(ev.target);
      const r = await fetch("/api/v1/login", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: form.get("name"), password: form.get("password") }) });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) {
        const zh = { 401: "用户名或密码错误", 429: "尝试次数过多，请稍后再试" };
        gate.querySelector(".error").textContent = zh[r.status] || body.error || "登录失败";
        return;
      }
      localStorage.setItem("vscc.token", body.token);
      const q = new URLSearchParams(location.search); q.delete("token");
      location.search = q.toString();
    };
    document.body.appendChild(gate);
  }

  // 三 → 第三条; 总体要求 stays.
  const clauseText = (c) => (/^[一二三四五六七八九十]+$/.test(c) ? "第" + c + "条" : c);

  // A number as a wall shows it: thousands separated, and from 10,000 on in 万 (1485518 →
  // 148.6万, 46419 → 4.6万), so that it reads at a glance and a row reads one way.
  function number(v, precision) {
    if (Math.abs(v) >= 10000) return (v / 10000).toLocaleString("zh-CN", { maximumFractionDigits: 1 }) + "万";
    return v.toLocaleString("zh-CN", { minimumFractionDigits: precision || 0, maximumFractionDigits: precision || 0 });
  }

  // A value as the metric's unit and precision show it; no data is "—", never 0.
  function fmt(meta, value) {
    if (value === null || value === undefined) return "—";
    if (!meta) return number(value, 0);
    if (meta.unit === "percent") return (value * 100).toFixed(meta.precision) + "%";
    return number(value, meta.precision);
  }
  // The same with what it is counted in: "27 件", "148.6万 小时", "95.4%".
  function fmtUnit(meta, value) {
    const text = fmt(meta, value);
    return text !== "—" && meta && meta.unit_zh ? text + " " + meta.unit_zh : text;
  }

  // The target as the definition judges it ("≥95% · 2020-12-31 前", "无超期", "跟踪（无目标）"):
  // the server words it once for every page.
  const targetText = (meta) => (meta && meta.target_zh) || "";

  // What a figure's status is judged on, and so what every page ranks and colours by: the
  // overdue count for a metric judged on it (appeals), else the value.
  function judged(meta, f) {
    if (!f) return null;
    if (meta && meta.judged_on === "overdue") return f.value === null || f.value === undefined ? null : (f.overdue || 0);
    return f.value === null || f.value === undefined ? null : f.value;
  }
  // The judged number as shown: "超期 3" for appeals, the value otherwise.
  function judgedText(meta, f) {
    if (meta && meta.judged_on === "overdue") {
      const v = judged(meta, f);
      return v === null ? "—" : "超期 " + number(v, 0);
    }
    return fmt(meta, f && f.value);
  }
  // Sorts `rows` best first by the judged number in the metric's direction; nodes without a
  // figure last. `figOf(row)` gives a row's figure.
  function rank(meta, rows, figOf) {
    const lower = !!(meta && meta.lower_is_better);
    const key = (r) => judged(meta, figOf(r));
    return rows.slice().sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null && y === null) return 0;
      if (x === null) return 1;
      if (y === null) return -1;
      return lower ? x - y : y - x;
    });
  }

  // A figure's status, and the metric's shown-at-levels check.
  const statusOf = (f) => (f ? f.status : "no_data");
  const shownAtLevel = (meta, level) => !meta || !meta.levels || !level || meta.levels.includes(level);

  // Days from today (Asia/Shanghai) to a YYYY-MM-DD day (negative: past).
  function daysUntil(day) {
    const today = new Date(new Date().toLocaleString("en-US", { timeZone: "Asia/Shanghai" }));
    today.setHours(0, 0, 0, 0);
    return Math.round((new Date(day + "T00:00:00") - today) / 86400000);
  }
  // "3 天", "2 小时" …: how long ago an RFC 3339 instant was.
  function ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 3600) return Math.max(1, Math.round(s / 60)) + " 分钟";
    if (s < 86400 * 2) return Math.round(s / 3600) + " 小时";
    return Math.floor(s / 86400) + " 天";
  }

  // "更新于 10:12:05": that the page is live, in its header.
  function stamp() {
    const el = document.getElementById("updated");
    if (el) el.textContent = "更新于 " + new Date().toLocaleTimeString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
  }
  // Marks an element whose text just changed (a pulse, gone in a few seconds).
  function flashIfChanged(el, text) {
    if (el.textContent !== text) {
      const had = el.textContent !== "";
      el.textContent = text;
      if (had) { el.classList.remove("changed"); void el.offsetWidth; el.classList.add("changed"); }
    }
  }

  // A live subscription over /ws kept in `S` (ws, epoch, seq, view, connected): resumes from
  // its last seq on reconnect, starts over on a gap, reconnects with jitter so that a wall of
  // screens does not come back in step. `opts`: id, subscription() → {scope, metrics},
  // onFigures(changed) after each snapshot or delta (changed: {code: [metric]}, null for a
  // snapshot), onAlert(notice).
  function live(S, opts) {
    S.backoff = 500;
    const setConn = (state, text) => { S.connected = showConn(state, text); };
    function subscribe(resume) {
      const msg = Object.assign({ type: "subscribe", id: opts.id }, opts.subscription());
      if (resume && S.epoch) msg.resume = { epoch: S.epoch, seq: S.seq };
      S.ws.send(JSON.stringify(msg));
    }
    function retry() {
      S.backoff = Math.min(S.backoff * 2, 10000);
      setTimeout(connect, S.backoff * (0.5 + Math.random() / 2));
    }
    function connect() {
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const url = proto + "//" + location.host + "/ws" + (token ? "?token=" + encodeURIComponent(token) : "");
      let ws;
      try { ws = new WebSocket(url); } catch (e) { return retry(); }
      S.ws = ws;
      setConn("wait", "连接中");
      ws.onopen = () => { S.backoff = 500; setConn("ok", "● 实时"); subscribe(true); };
      ws.onmessage = (ev) => {
        const msg = JSON.parse(ev.data);
        if (msg.type === "alert") { if (opts.onAlert) opts.onAlert(msg); return; }
        if (msg.type === "task") { if (opts.onTask) opts.onTask(msg); return; }
        if (msg.sub !== opts.id) return;
        if (msg.type === "snapshot") {
          S.view = msg.nodes; S.epoch = msg.epoch; S.seq = msg.seq;
          stamp();
          opts.onFigures(null);
        } else if (msg.type === "delta") {
          if (msg.epoch !== S.epoch || msg.seq !== S.seq + 1) { subscribe(false); return; }
          S.seq = msg.seq;
          const changed = {};
          // A delta's metric object replaces the whole object for that node and metric.
          for (const [code, figs] of Object.entries(msg.nodes)) {
            S.view[code] = Object.assign(S.view[code] || {}, figs);
            changed[code] = Object.keys(figs);
          }
          stamp();
          opts.onFigures(changed);
        } else if (msg.type === "error") {
          setConn("down", "订阅被拒绝：" + msg.reason);
        }
      };
      ws.onclose = () => { setConn("down", "连接中断，重连中…"); retry(); };
      ws.onerror = () => { try { ws.close(); } catch (e) { /* closing anyway */ } };
    }
    connect();
    return {
      // The subscription changed (another scope, other metrics): start it over.
      resubscribe() { if (S.ws && S.ws.readyState === 1) subscribe(false); },
    };
  }

  // Text for innerHTML, escaped.
  const esc = (s) => String(s === null || s === undefined ? "" : s)
    .replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  // The caller's bearer header for fetch (none without a token).
  const authHeader = () => (token ? { Authorization: "Bearer " + token } : {});
  // A task's priority (督办), as every page says it.
  const PRIO_ZH = { normal: "一般", urgent: "紧急", incident: "应急事件" };

  // The org tree as {code: {name, level, parent, children}}.
  function indexOrg(root) {
    const org = {};
    (function index(n) {
      org[n.code] = { name: n.name, level: n.level, parent: n.parent, children: n.children.map((c) => c.code) };
      n.children.forEach(index);
    })(root);
    return org;
  }

  // A degree of longitude is cos(latitude) of a degree of latitude: at Shenzhen (22.6° N) 0.92.
  const ASPECT_SCALE = Math.cos((22.6 * Math.PI) / 180);
  // Width ÷ height of a GeoJSON outline as drawn.
  function aspectOf(geo) {
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    const walk = (c) => {
      if (typeof c[0] === "number") {
        x0 = Math.min(x0, c[0]); x1 = Math.max(x1, c[0]); y0 = Math.min(y0, c[1]); y1 = Math.max(y1, c[1]);
      } else c.forEach(walk);
    };
    geo.features.forEach((f) => walk(f.geometry.coordinates));
    return x1 > x0 && y1 > y0 ? ((x1 - x0) / (y1 - y0)) * ASPECT_SCALE : 2;
  }
  // The size (ECharts' layoutSize, the drawing's width) that fills `el` at the outline's own
  // proportions, leaving the given shares of its width and height free, centred.
  function fitSize(el, aspect, wide, high) {
    const box = el.getBoundingClientRect();
    return Math.max(50, Math.min(box.width * wide, box.height * high * aspect));
  }
  // Text on a chart (axis, labels, legends) at the walls' minimum: 2.4 % of the screen's
  // height, readable from five metres on 1080p and 4K alike; lines scale the same way.
  const chartFont = () => Math.ceil(innerHeight * 0.025);
  const chartLine = () => Math.max(2, Math.round(innerHeight / 360));

  // The connection line of the page header; answers whether it is up.
  function showConn(state, text) {
    const el = document.getElementById("conn");
    el.className = "conn conn-" + state;
    el.textContent = text;
    return state === "ok";
  }

  // The caller's own scope (a district leader's district), for pages opened without ?scope=:
  // they start there, not at the city the token may not read. Null without a login.
  let who = null;
  // The caller (/api/v1/me), asked once; null without a login.
  async function me() {
    if (!who) who = getJSON("/api/v1/me").then((m) => (m && m.name !== "anonymous" ? m : null)).catch(() => null);
    return who;
  }
  async function homeScope() {
    const m = await me();
    return m ? m.scope : null;
  }
  // Whether the caller issues tasks (督办): leaders, duty officers and admins.
  async function mayIssue() {
    const m = await me();
    return !!m && ["leader", "duty_officer", "admin"].includes(m.role);
  }

  // The required pace in a few words, for lists: "每月 2 名", "需招录退役军人 3 名", "5 天内将超期 2 件".
  function paceShort(p) {
    if (!p) return "";
    const EVERY = { week: "每周", month: "每月", quarter: "每季度" };
    if (p.soon && !p.needed) return p.soon_days + " 天内将超期 " + p.soon + " " + p.unit_zh;
    if (p.per && p.per.length) return EVERY[p.per[0].every] + " " + p.per[0].each + " " + p.unit_zh;
    return "需" + p.action_zh + " " + p.needed + " " + p.unit_zh;
  }

  // A legend of the statuses: coloured dots and their names.
  function legendHTML() {
    return STATUSES.map((s) => '<span class="dot ' + s + '"></span>' + STATUS_ZH[s]).join(" ");
  }

  return {
    askToken, STATUS_ZH, STATUSES, COLORS, SEV_ZH, LEVEL_ZH, params, token, getJSON, clauseText, number, fmt, fmtUnit,
    targetText, judged, judgedText, rank, statusOf, shownAtLevel, daysUntil, ago, stamp, flashIfChanged, live,
    indexOrg, showConn, legendHTML, shortPlace, paceShort, homeScope, me, mayIssue, esc, authHeader, PRIO_ZH, ASPECT_SCALE, aspectOf, fitSize, chartFont, chartLine,
  };
})();
