// What the pages share (the wall screen, the plan board, the brief): the token, the API, how
// figures and targets read in Chinese, and the live stream with epoch + seq resume.
window.VSCC = (function () {
  "use strict";
  const STATUS_ZH = { met: "已达标", on_track: "进度正常", at_risk: "有风险", missed: "未达标", no_data: "无数据" };
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || localStorage.getItem("vscc.token") || "";
  if (params.get("token")) localStorage.setItem("vscc.token", params.get("token"));

  const getJSON = async (path) => {
    const r = await fetch(path, { headers: token ? { Authorization: "Bearer " + token } : {} });
    if (!r.ok) throw new Error(path + " → " + r.status);
    return r.json();
  };

  // 三 → 第三条; 总体要求 stays.
  const clauseText = (c) => (/^[一二三四五六七八九十]+$/.test(c) ? "第" + c + "条" : c);

  // A value as the metric's unit and precision show it; no data is "—", never 0.
  function fmt(meta, value) {
    if (value === null || value === undefined) return "—";
    if (!meta) return value.toFixed(0);
    if (meta.unit === "percent") return (value * 100).toFixed(meta.precision) + "%";
    return value.toFixed(meta.precision);
  }

  // A catalogue entry's target: "≥95% · 2020-12-31 前", "≥1 · 每月", "无超期", or "跟踪".
  function targetText(meta) {
    if (meta.judged_on === "overdue") return "无超期";
    if (meta.target === null || meta.target === undefined) return "跟踪";
    const t = meta.unit === "percent" ? Math.round(meta.target * 1000) / 10 + "%" : String(meta.target);
    const when = { yearly: "每年", quarterly: "每季度", monthly: "每月", standing: "持续" }[meta.deadline] ||
      (meta.deadline ? meta.deadline + " 前" : "");
    return (meta.at_most ? "≤" : "≥") + t + (when ? " · " + when : "");
  }

  // A live subscription over /ws kept in `S` (ws, epoch, seq, view, connected): resumes from
  // its last seq on reconnect, starts over on a gap, reconnects with jitter so that a wall of
  // screens does not come back in step. `opts`: id, subscription() → {scope, metrics},
  // onFigures() after each snapshot or delta, onAlert(notice).
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
        if (msg.sub !== opts.id) return;
        if (msg.type === "snapshot") {
          S.view = msg.nodes; S.epoch = msg.epoch; S.seq = msg.seq;
          opts.onFigures();
        } else if (msg.type === "delta") {
          if (msg.epoch !== S.epoch || msg.seq !== S.seq + 1) { subscribe(false); return; }
          S.seq = msg.seq;
          for (const [code, figs] of Object.entries(msg.nodes)) S.view[code] = Object.assign(S.view[code] || {}, figs);
          opts.onFigures();
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

  // The connection line of the page header; answers whether it is up.
  function showConn(state, text) {
    const el = document.getElementById("conn");
    el.className = "conn conn-" + state;
    el.textContent = text;
    return state === "ok";
  }

  return { STATUS_ZH, params, token, getJSON, clauseText, fmt, targetText, live, showConn, ASPECT_SCALE, aspectOf, fitSize };
})();
