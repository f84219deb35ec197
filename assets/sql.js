// The analysts' SQL console: log in (or ?token=), pick a scope, run read-only SQL on
// ClickHouse, cancel, download CSV, history, saved queries, schema of what may be read.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  if (params.get("token")) localStorage.setItem("vscc.token", params.get("token"));
  let token = localStorage.getItem("vscc.token") || "";
  let running = null; // { id, controller }
  const ROLE = { leader: "领导", analyst: "分析员", duty_officer: "值班员", clerk: "录入员", admin: "管理员" };
  const OUTCOME = { ok: "成功", error: "失败", cancelled: "已取消" };

  const api = (path, opts = {}) =>
    fetch(path, { ...opts, headers: { Authorization: "Bearer " + token, "Content-Type": "application/json", ...(opts.headers || {}) } });
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = text; if (cls) e.className = cls; return e; };
  const status = (text, isError) => { $("status").textContent = text; $("status").className = isError ? "error" : ""; };
  const newId = () => (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + "-" + Math.random().toString(16).slice(2));

  async function start() {
    const me = token ? await api("/api/v1/me") : null;
    if (!me || !me.ok) { showLogin(); return; }
    const who = await me.json();
    $("who").textContent = `${who.name} · ${ROLE[who.role] || who.role} · ${who.scope_name}`;
    $("login").hidden = true; $("console").hidden = false;
    const org = await (await api(`/api/v1/org/${who.scope}?depth=1`)).json();
    const select = $("scope"); select.innerHTML = "";
    for (const n of [org, ...org.children]) {
      const o = el("option", (n === org ? "" : "　") + n.name); o.value = n.code; select.appendChild(o);
    }
    select.onchange = () => refreshSchema();
    await Promise.all([refreshSchema(), refreshSaved(), refreshHistory(), showSamples()]);
  }

  function showLogin() {
    $("console").hidden = true; $("login").hidden = false;
    $("login").onsubmit = async (ev) => {
      ev.preventDefault();
      const form = new FormData(ev.target);
      const r = await fetch("/api/v1/login", { method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ name: form.get("name"), password: form.get("password") }) });
      const body = await r.json();
      if (!r.ok) { $("login-error").textContent = body.error; return; }
      token = body.token; localStorage.setItem("vscc.token", token); start();
    };
  }

  async function refreshSchema() {
    const r = await api(`/api/v1/query/schema?scope=${$("scope").value}`);
    const box = $("schema"); box.innerHTML = "";
    if (!r.ok) { box.appendChild(el("p", (await r.json()).error, "error")); return; }
    const byTable = {};
    for (const c of await r.json()) (byTable[c.table] = byTable[c.table] || []).push(c);
    for (const [table, cols] of Object.entries(byTable)) {
      const d = el("details"); const s = el("summary", table); d.appendChild(s);
      s.ondblclick = () => insert(table);
      for (const c of cols) { const code = el("code", `${c.name}  ${c.type}`); code.ondblclick = () => insert(c.name); d.appendChild(code); }
      box.appendChild(d);
    }
  }

  // Worked examples over what every scope may read (the same queries are run on ClickHouse
  // 18.16 and on a current ClickHouse by the tests).
  async function showSamples() {
    const list = $("samples"); list.innerHTML = "";
    const r = await fetch("/assets/sql-samples.json"); if (!r.ok) return;
    for (const q of await r.json()) {
      const li = el("li"); li.appendChild(el("div", q.title));
      li.title = q.sql;
      li.onclick = () => { $("editor").value = q.sql; status("示例已放入编辑框：按“运行”或 Ctrl+Enter"); };
      list.appendChild(li);
    }
  }

  function insert(text) {
    const ed = $("editor"); const at = ed.selectionStart;
    ed.value = ed.value.slice(0, at) + text + ed.value.slice(ed.selectionEnd); ed.focus();
  }

  async function refreshSaved() {
    const list = $("saved"); list.innerHTML = "";
    const r = await api("/api/v1/queries/saved"); if (!r.ok) return;
    for (const q of await r.json()) {
      const li = el("li"); li.appendChild(el("div", q.name));
      li.appendChild(el("div", q.sql.slice(0, 80), "meta"));
      li.onclick = () => { $("editor").value = q.sql; };
      const del = el("button", "删除"); del.style.float = "right";
      del.onclick = async (e) => { e.stopPropagation(); await api(`/api/v1/queries/saved/${encodeURIComponent(q.name)}`, { method: "DELETE" }); refreshSaved(); };
      li.prepend(del); list.appendChild(li);
    }
  }

  async function refreshHistory() {
    const list = $("history"); list.innerHTML = "";
    const r = await api("/api/v1/query/history?limit=30"); if (!r.ok) return;
    for (const h of await r.json()) {
      const li = el("li", undefined, h.outcome);
      li.appendChild(el("div", h.sql.replace(/\s+/g, " ").slice(0, 90)));
      // Shown in Shenzhen's time, as everything else.
      const when = new Date(h.started_at).toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
      li.appendChild(el("div", `${when} · ${OUTCOME[h.outcome] || h.outcome} · ${h.rows} 行 · ${h.duration_ms} ms${h.error ? " · " + h.error : ""}`, "meta"));
      li.onclick = () => { $("editor").value = h.sql; };
      list.appendChild(li);
    }
  }

  function table(answer) {
    const t = el("table"); const head = el("tr");
    for (const m of answer.meta) { const th = el("th", m.name); th.appendChild(el("small", " " + m.type)); head.appendChild(th); }
    const thead = el("thead"); thead.appendChild(head); t.appendChild(thead);
    const body = el("tbody");
    for (const row of answer.data) { const tr = el("tr"); for (const v of row) tr.appendChild(el("td", v === null ? "NULL" : String(v))); body.appendChild(tr); }
    t.appendChild(body); return t;
  }

  async function run(format) {
    const sql = $("editor").value;
    const id = newId(); const controller = new AbortController();
    running = { id, controller };
    $("run").disabled = true; $("cancel").disabled = false; status("运行中…");
    const started = performance.now();
    try {
      const r = await api("/api/v1/query", { method: "POST", signal: controller.signal,
        body: JSON.stringify({ sql, format, scope: $("scope").value, id }) });
      const ms = Math.round(performance.now() - started);
      if (!r.ok) {
        const body = await r.json().catch(() => ({ error: r.statusText }));
        status(`${r.status} · ${body.error}`, true);
        // The last answer is not this query's: it goes, rather than sit under the error.
        $("result").innerHTML = "";
        if (r.status === 401) { localStorage.removeItem("vscc.token"); token = ""; showLogin(); }
        return;
      }
      if (format === "csv") {
        // The server names the file after what the query reads (events-20261207-1012.csv).
        const named = /filename="([^"]+)"/.exec(r.headers.get("Content-Disposition") || "");
        const blob = await r.blob(); const a = el("a"); a.href = URL.createObjectURL(blob); a.download = named ? named[1] : "query.csv"; a.click();
        status(`已下载 ${a.download}（UTF-8，Excel 可直接打开）· ${ms} ms`); return;
      }
      const answer = await r.json();
      $("result").innerHTML = ""; $("result").appendChild(table(answer));
      status(`${answer.rows} 行 · ${ms} ms · 读取 ${answer.statistics ? answer.statistics.rows_read : "?"} 行`);
    } catch (e) {
      status(e.name === "AbortError" ? "已取消" : "请求失败：" + e.message, e.name !== "AbortError");
      $("result").innerHTML = "";
    } finally {
      running = null; $("run").disabled = false; $("cancel").disabled = true; refreshHistory();
    }
  }

  $("run").onclick = () => run("json");
  $("csv").onclick = () => run("csv");
  $("cancel").onclick = async () => {
    if (!running) return;
    const { id, controller } = running;
    await api(`/api/v1/query/${id}`, { method: "DELETE" });
    controller.abort();
  };
  $("save").onclick = async () => {
    const name = prompt("查询名称"); if (!name) return;
    const r = await api(`/api/v1/queries/saved/${encodeURIComponent(name)}`, { method: "PUT", body: JSON.stringify({ sql: $("editor").value }) });
    if (!r.ok) status((await r.json()).error, true); else refreshSaved();
  };
  $("editor").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); run("json"); } });
  window.__vsccSql = { run, refreshHistory };
  start();
})();
