// A unit's workspace: where the unit stands and what it must still do (GET /api/v1/pace), a
// form for each kind it may report built from the kind's definition (GET /api/v1/kinds), a
// ledger upload, and its own records with correct and withdraw. A unit's own clerk (or an
// admin) writes; the levels above look on read-only.
(function () {
  "use strict";
  const V = window.VSCC;
  const $ = (id) => document.getElementById(id);
  const { esc } = V;
  const auth = V.authHeader;
  const VIA_ZH = { form: "表单", api: "接口", ledger: "台账" };
  const ORDER = { missed: 0, at_risk: 1, no_data: 2, on_track: 3, tracked: 4, met: 5 };
  const S = { me: null, scope: V.params.get("scope"), pace: null, kinds: [], byKind: {}, records: [] };

  // Any method; the answer's status and JSON body (never throws on a refusal).
  async function call(method, path, body, type) {
    const headers = Object.assign({}, auth());
    if (body !== undefined) headers["Content-Type"] = type || "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined || type ? body : JSON.stringify(body) });
    if (r.status === 401) { V.askToken(); throw new Error("需要登录"); }
    return { status: r.status, body: await r.json().catch(() => ({})) };
  }

  // Today in Shenzhen, YYYY-MM-DD.
  const today = () => new Date().toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
  // A day picked on a form as the record's time: now for today, noon for another day.
  function atOf(day) {
    if (day === today()) {
      const t = new Date().toLocaleTimeString("en-GB", { timeZone: "Asia/Shanghai", hour12: false });
      return day + "T" + t + "+08:00";
    }
    return day + "T12:00:00+08:00";
  }

  // The server's reasons in Chinese, next to the field they name.
  function reasonZh(reason) {
    const rules = [
      [/^is required$/, () => "必填"],
      [/^is required \(是 or 否\)$/, () => "必填（是或否）"],
      [/^'(.*)' is not a stage/, (m) => "“" + m[1] + "”不是办理环节（登记、受理或办结）"],
      [/^unknown org '(.*)'$/, (m) => "单位代码“" + m[1] + "”不存在"],
      [/^must be (-?\d+) to (-?\d+)$/, (m) => "应在 " + m[1] + " 到 " + m[2] + " 之间"],
      [/^must not be negative$/, () => "不能为负数"],
      [/^must not be empty$/, () => "不能为空"],
      [/^must be an integer$/, () => "应为整数"],
      [/^must be true or false$/, () => "请选择是或否"],
      [/^must be a string$/, () => "应为文字"],
      [/^must be at most (\d+) characters$/, (m) => "最多 " + m[1] + " 个字符"],
      [/^is in the future$/, () => "不能晚于现在"],
      [/exceeds data\.(\w+)$/, (m) => "不能超过“" + labelOf(m[1]) + "”"],
      [/^unknown org code/, () => "单位代码不存在"],
      [/outside (your|the caller's|the importer's)? ?scope|not within/, () => "不在本单位的范围内"],
      [/^'(.*)' is not 是 or 否$/, (m) => "“" + m[1] + "”不是“是”或“否”"],
      [/^cannot tell which ledger this is/, () => "无法从表头判断是哪种台账，请在上方选择台账类型"],
      [/^the file is empty/, () => "文件是空的"],
      [/^the file exceeds the limit of (\d+) bytes/, (m) => "文件超过 " + Math.round(m[1] / 1048576) + " MB 的上限，未导入任何内容"],
      [/^'(.*)' is not a date/, (m) => "“" + m[1] + "”不是日期（如 2021-03-04 或 2021年3月4日）"],
      [/^'(.*)' is not a whole number/, (m) => "“" + m[1] + "”不是整数"],
    ];
    for (const [re, zh] of rules) { const m = reason.match(re); if (m) return zh(m); }
    return reason;
  }
  let formKind = null;
  const labelOf = (name) => {
    const f = formKind && formKind.fields.find((x) => x.name === name);
    return f ? f.label_zh : name;
  };

  // ---------------------------------------------------------------- standing and pace
  function card(m) {
    const meta = m;
    const status = m.status || "no_data";
    const value = V.judgedText(meta, m);
    const unit = m.unit !== "percent" && m.judged_on !== "overdue" && value !== "—" && m.unit_zh ? " " + m.unit_zh : "";
    const rank = m.rank ? "同级第 " + m.rank.position + " / " + m.rank.of + " 名" : "";
    let pace = "";
    if (m.pace) {
      const text = esc(m.pace.text_zh).replace(/(\d+)/, "<b>$1</b>");
      pace = '<div class="pace">' + text + "</div>";
    }
    return '<article class="card ' + status + '">' +
      '<div class="top"><span class="name"><a href="/metric/' + esc(m.metric) + "?scope=" + esc(S.pace.scope) + '">' + esc(m.label_zh) +
      '</a></span><span class="chip">' + esc(V.STATUS_ZH[status] || status) + "</span></div>" +
      '<div class="val">' + esc(value + unit) + '<span class="target">目标 ' + esc(m.target_zh) + "</span></div>" +
      (rank ? '<div class="rank">' + esc(rank) + "</div>" : "") + pace + "</article>";
  }

  function renderStanding() {
    const list = S.pace.metrics.slice().sort((a, b) =>
      (a.pace ? 0 : 1) - (b.pace ? 0 : 1) || (ORDER[a.status] ?? 9) - (ORDER[b.status] ?? 9));
    const todo = list.filter((m) => m.pace).length;
    const met = list.filter((m) => m.status === "met").length;
    $("standing-sum").textContent = "需行动 " + todo + " 项 · 已达标 " + met + " 项 · 共 " + list.length + " 项";
    $("cards").innerHTML = list.map(card).join("");
  }

  // The period a report is for, from its due day: "2026年12月", "2026年第4季度", "2026年".
  function periodZh(every, due) {
    const [y, m] = due.split("-").map(Number);
    if (every === "month") return y + "年" + m + "月";
    if (every === "quarter") return y + "年第" + (Math.floor((m - 1) / 3) + 1) + "季度";
    return y + "年";
  }
  const DUE_ZH = { on_time: "已按时报送", late: "已报送（逾期）", missing: "逾期未报", pending: "待报送" };
  function renderDue() {
    const list = S.pace.reports || [];
    const open = list.filter((r) => r.state === "missing" || r.state === "pending").length;
    $("due-sum").textContent = list.length ? "共 " + list.length + " 项 · 未报 " + open + " 项" : "本单位没有定期报表";
    $("due-rows").innerHTML = list.map((r) => {
      const left = r.state === "pending" ? "（剩 " + r.days_left + " 天）" : "";
      const act = S.pace.may_report && (r.state === "missing" || r.state === "pending")
        ? ' <button type="button" data-report="' + esc(r.kind) + '">去报送</button>' : "";
      return '<tr class="due-' + r.state + '"><td data-label="报表">' + esc(r.label_zh) + '</td><td data-label="周期">' + esc(periodZh(r.every, r.due)) +
        '</td><td data-label="截止">' + esc(r.due) + '</td><td data-label="状态" class="state">' + esc(DUE_ZH[r.state] || r.state) + esc(left) + act + "</td></tr>";
    }).join("");
    $("due-rows").querySelectorAll("[data-report]").forEach((b) => {
      b.onclick = () => { $("kind-select").value = b.dataset.report; renderReportForm(); location.hash = "#report"; };
    });
  }

  async function loadStanding() {
    S.pace = await V.getJSON("/api/v1/pace?scope=" + encodeURIComponent(S.scope));
    renderStanding();
    renderDue();
    V.stamp();
  }

  // ---------------------------------------------------------------- the units below
  // Each unit one level below: how many targets it must act on, how many it missed, and its
  // own reports past due and not sent — the furthest behind first; a click opens its workspace.
  async function loadChildren(kids) {
    if (!kids.length) return;
    $("children").hidden = false;
    document.querySelector("[data-parent]").hidden = false;
    const answers = await Promise.all(kids.map((c) => V.getJSON("/api/v1/pace?scope=" + encodeURIComponent(c.code)).catch(() => null)));
    const today = new Date().toLocaleDateString("sv-SE", { timeZone: "Asia/Shanghai" });
    const rows = kids.map((c, i) => {
      const a = answers[i];
      if (!a) return { c, act: -1, missed: 0, late: [] };
      return {
        c,
        act: a.metrics.filter((m) => m.pace).length,
        missed: a.metrics.filter((m) => m.status === "missed").length,
        late: (a.reports || []).filter((r) => r.state === "missing" && r.due < today).map((r) => r.label_zh),
      };
    }).sort((x, y) => y.late.length - x.late.length || y.act - x.act || x.c.name.localeCompare(y.c.name, "zh-CN"));
    const behind = rows.filter((r) => r.late.length).length;
    $("children-sum").textContent = "共 " + kids.length + " 个 · " + behind + " 个有逾期未报";
    $("children-rows").innerHTML = rows.map((r) =>
      '<tr><td data-label="单位"><a href="/unit?scope=' + esc(r.c.code) + '">' + esc(r.c.name) + '</a></td><td data-label="需行动">' +
      (r.act < 0 ? "—" : r.act + " 项") + '</td><td data-label="未达标">' + r.missed + " 项" + '</td><td data-label="逾期未报" class="' +
      (r.late.length ? "bad" : "") + '">' + esc(r.late.length ? r.late.join("、") : "无") + "</td></tr>").join("");
  }

  // ---------------------------------------------------------------- forms from definitions
  // The inputs of a kind's fields; `data` prefills them (a correction).
  function fieldsHTML(kind, data, day) {
    const parts = ['<label>日期<input type="date" name="at" required min="2020-01-01" max="' + today() + '" value="' + esc(day || today()) + '">' +
      '<span class="field-error" data-for="at"></span></label>'];
    for (const f of kind.fields) {
      const v = data ? data[f.name] : undefined;
      const subject = kind.subject === f.name ? '<span class="hint">记录对象</span>' : "";
      let input;
      if (f.type === "count") {
        const range = f.min !== undefined ? ' min="' + f.min + '" max="' + f.max + '"' : "";
        input = '<input type="number" inputmode="numeric" step="1" name="' + esc(f.name) + '"' + range + ' required value="' + esc(v === undefined ? "" : v) + '">';
        const bound = f.at_most ? "，不超过“" + esc(labelOf2(kind, f.at_most)) + "”" : "";
        input += '<span class="hint">' + f.min + "–" + f.max + bound + "</span>";
      } else if (f.type === "flag") {
        const sel = (x) => (v === x ? " selected" : "");
        input = '<select name="' + esc(f.name) + '" required><option value="">请选择</option><option value="true"' + sel(true) +
          '>是</option><option value="false"' + sel(false) + ">否</option></select>";
      } else {
        input = '<input type="text" name="' + esc(f.name) + '" maxlength="64" required value="' + esc(v === undefined ? "" : v) + '">';
      }
      parts.push("<label>" + esc(f.label_zh) + subject + input + '<span class="field-error" data-for="data.' + esc(f.name) + '"></span></label>');
    }
    return parts.join("");
  }
  const labelOf2 = (kind, name) => { const f = kind.fields.find((x) => x.name === name); return f ? f.label_zh : name; };

  // Reads a form's fields into {at, data}, or marks the fields at fault (in Chinese) and
  // answers null.
  function readFields(kind, form) {
    clearErrors(form);
    let ok = true;
    const bad = (field, text) => { showError(form, field, text); ok = false; };
    const day = form.querySelector('[name="at"]').value;
    if (!day) bad("at", "请选择日期");
    else if (day > today()) bad("at", "不能晚于今天");
    else if (day < "2020-01-01") bad("at", "不能早于 2020-01-01（三年行动计划开始）");
    const data = {};
    for (const f of kind.fields) {
      const el = form.querySelector('[name="' + f.name + '"]');
      const raw = el ? el.value.trim() : "";
      const key = "data." + f.name;
      if (raw === "") { bad(key, f.type === "flag" ? "请选择是或否" : "必填"); continue; }
      if (f.type === "count") {
        const n = Number(raw);
        if (!Number.isInteger(n)) { bad(key, "应为整数"); continue; }
        if (n < f.min || n > f.max) { bad(key, "应在 " + f.min + " 到 " + f.max + " 之间"); continue; }
        data[f.name] = n;
      } else if (f.type === "flag") {
        data[f.name] = raw === "true";
      } else {
        data[f.name] = raw;
      }
    }
    for (const f of kind.fields) {
      if (f.at_most && typeof data[f.name] === "number" && typeof data[f.at_most] === "number" && data[f.name] > data[f.at_most]) {
        bad("data." + f.name, "不能超过“" + labelOf2(kind, f.at_most) + "”");
      }
    }
    return ok ? { at: atOf(day), data } : null;
  }
  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach((e) => { e.textContent = ""; });
    form.querySelectorAll(".invalid").forEach((e) => e.classList.remove("invalid"));
  }
  function showError(form, field, text) {
    const slot = form.querySelector('.field-error[data-for="' + field + '"]');
    const name = field.startsWith("data.") ? field.slice(5) : field;
    const input = form.querySelector('[name="' + name + '"]');
    if (input) input.classList.add("invalid");
    if (slot) slot.textContent = text;
    return !!slot;
  }

  function renderReportForm() {
    const kind = S.byKind[$("kind-select").value];
    formKind = kind;
    const form = $("report-form");
    form.innerHTML = kind ? fieldsHTML(kind) + '<div class="actions"><button class="primary" type="submit">提交</button></div>' : "";
    $("report-result").textContent = "";
  }

  async function submitReport(ev) {
    ev.preventDefault();
    const kind = formKind;
    const form = $("report-form");
    const read = readFields(kind, form);
    const result = $("report-result");
    if (!read) { result.className = "result bad"; result.textContent = "请按提示修改后再提交"; return; }
    const id = "form-" + (crypto.randomUUID ? crypto.randomUUID() : Date.now() + "-" + Math.random().toString(16).slice(2));
    const record = { id, kind: kind.kind, org: S.pace.scope, at: read.at, data: read.data };
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const r = await call("POST", "/api/v1/events?via=form", [record]);
      if (r.status === 200 && (r.body.accepted || r.body.duplicates)) {
        result.className = "result ok";
        result.textContent = "已提交：" + kind.label_zh + "（记录编号 " + id + "）";
        renderReportForm();
        result.className = "result ok";
        result.textContent = "已提交：" + kind.label_zh + "（记录编号 " + id + "）";
        setTimeout(refresh, 800);
      } else {
        const errors = (r.body.errors || []);
        errors.forEach((e) => { if (!showError(form, e.field, reasonZh(e.reason))) result.textContent = reasonZh(e.reason); });
        result.className = "result bad";
        result.textContent = errors.length ? "未提交：请按提示修改" : "未提交：" + (r.body.error || r.status);
      }
    } catch (e) {
      result.className = "result bad";
      result.textContent = "未提交：网络错误，请重试（同一条记录重复提交不会重复计入）";
    } finally {
      button.disabled = false;
    }
  }

  // ---------------------------------------------------------------- ledger upload
  // The ledger families the importer knows, as a clerk names them.
  const FAMILY_ZH = { hires: "招录聘用", staffing: "编制人员情况", headcount: "在岗人数", classes: "业务培训班", attendance: "参加培训",
    ratings: "星级评定", appeals: "诉求（信访）", veterans: "退役军人登记", archives: "建档" };
  const familyZh = (f) => FAMILY_ZH[f] || (S.byKind[f] ? S.byKind[f].label_zh : f);
  async function download(url, name) {
    const r = await fetch(url, { headers: auth() });
    if (!r.ok) return;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob());
    a.download = name;
    a.click();
  }

  function table(head, rows) {
    return '<table class="plain"><thead><tr>' + head.map((h) => "<th>" + esc(h) + "</th>").join("") + "</tr></thead><tbody>" +
      rows.map((r) => "<tr>" + r.map((c) => "<td>" + esc(c) + "</td>").join("") + "</tr>").join("") + "</tbody></table>";
  }

  async function upload(file) {
    const out = $("import-result");
    out.innerHTML = "正在导入 " + esc(file.name) + " …";
    const family = $("family").value;
    const q = "name=" + encodeURIComponent(file.name) + (family ? "&family=" + encodeURIComponent(family) : "") +
      ($("withdraw-missing").checked ? "&withdraw_missing=true" : "");
    let r;
    try {
      r = await call("POST", "/api/v1/imports?" + q, file, "application/octet-stream");
    } catch (e) {
      out.innerHTML = '<p class="bad">导入失败：网络错误，请重试（重复导入不会重复计入）</p>';
      return;
    }
    if (r.status !== 200) {
      out.innerHTML = '<p class="bad">导入失败：' + esc(reasonZh(String(r.body.error || r.status))) + "</p>";
      return;
    }
    const s = r.body;
    let html = "<p>" + esc(s.file) + " · 识别为：" + esc(familyZh(s.family)) + " · 导入编号 " + s.import_no + "</p>" +
      '<div class="counts"><span>行数<b>' + s.rows + "</b></span><span>新增<b>" + s.accepted + "</b></span><span>重复<b>" + s.duplicates +
      "</b></span><span>更正<b>" + s.corrected + "</b></span><span>撤回<b>" + s.withdrawn + '</b></span><span class="' + (s.rejected ? "bad" : "") +
      '">拒收<b>' + s.rejected + "</b></span></div>";
    if (s.rejects && s.rejects.length) {
      html += "<h3>拒收的行" + (s.rejects_url ? ' <button type="button" id="dl-rejects">下载全部拒收行</button>' : "") + "</h3>" +
        table(["行号", "列", "内容", "原因"], s.rejects.map((x) => [x.row, x.column, x.value, reasonZh(x.reason)]));
    }
    if (s.changes && s.changes.length) {
      html += "<h3>发现的更正" + (s.changes_url ? ' <button type="button" id="dl-changes">下载更正清单</button>' : "") + "</h3>" +
        table(["行号", "记录编号", "列", "原值", "新值"], s.changes.map((x) => [x["行号"], x["记录编号"], x["列"], x["原值"], x["新值"]]));
    }
    if (s.ignored_columns && s.ignored_columns.length) html += '<p class="muted">未识别的列（已忽略）：' + esc(s.ignored_columns.join("、")) + "</p>";
    out.innerHTML = html;
    if ($("dl-rejects")) $("dl-rejects").onclick = () => download(s.rejects_url, s.file + ".rejects.csv");
    if ($("dl-changes")) $("dl-changes").onclick = () => download(s.changes_url, s.file + ".changes.csv");
    setTimeout(refresh, 800);
  }

  function setupUpload() {
    const drop = $("drop");
    const take = (files) => { if (files && files[0]) upload(files[0]); };
    $("file").onchange = (e) => take(e.target.files);
    drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
    drop.ondragleave = () => drop.classList.remove("over");
    drop.ondrop = (e) => { e.preventDefault(); drop.classList.remove("over"); take(e.dataTransfer.files); };
    drop.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); };
  }

  // ---------------------------------------------------------------- records
  function content(rec) {
    const kind = S.byKind[rec.record.kind];
    const data = rec.record.data || {};
    if (!kind) return JSON.stringify(data);
    return kind.fields.map((f) => {
      const v = data[f.name];
      const shown = v === true ? "是" : v === false ? "否" : v === undefined ? "—" : String(v);
      return f.label_zh + " " + shown;
    }).join(" · ");
  }

  function renderRecords() {
    const pick = $("records-kind").value;
    const all = S.records.filter((r) => !pick || r.record.kind === pick);
    const list = all.slice(0, S.shown || 20);
    const writer = S.pace && S.pace.may_report;
    $("records-more").hidden = all.length <= list.length;
    $("records-more").textContent = "再显示 20 条（共 " + all.length + " 条）";
    $("record-rows").innerHTML = list.map((r, i) => {
      const when = r.record.at.slice(0, 16).replace("T", " ");
      const ver = r.version > 1 ? "第 " + r.version + " 版（已更正）" : "原始";
      const acts = writer ? '<td class="acts"><button type="button" data-fix="' + i + '">更正</button><button type="button" data-drop="' + i + '">撤回</button></td>' : "";
      return '<tr><td class="when" data-label="时间">' + esc(when) + '</td><td data-label="事项">' + esc(r.kind_zh) +
        '</td><td data-label="内容">' + esc(content(r)) + '</td><td data-label="报送人">' + esc(r.by || "—") +
        '</td><td data-label="方式">' + esc(VIA_ZH[r.via] || r.via) + '</td><td class="ver" data-label="版本">' + esc(ver) + "</td>" + acts + "</tr>";
    }).join("") || '<tr><td colspan="7" class="muted">近 30 天没有记录</td></tr>';
    $("record-rows").querySelectorAll("[data-fix]").forEach((b) => { b.onclick = () => change(list[+b.dataset.fix], "fix"); });
    $("record-rows").querySelectorAll("[data-drop]").forEach((b) => { b.onclick = () => change(list[+b.dataset.drop], "drop"); });
  }

  async function loadRecords() {
    const days = $("records-days").value || "30";
    const r = await V.getJSON("/api/v1/records?limit=1000&days=" + days + "&scope=" + encodeURIComponent(S.scope));
    S.records = r.records;
    S.shown = 20;
    $("records-sum").textContent = "近 " + days + " 天 " + r.records.length + (r.truncated ? "+" : "") + " 条 · 自 " + r.since;
    const counts = {};
    r.records.forEach((x) => { counts[x.record.kind] = (counts[x.record.kind] || 0) + 1; });
    const sel = $("records-kind");
    const had = sel.value;
    sel.innerHTML = '<option value="">全部</option>' + Object.keys(counts).sort().map((k) =>
      '<option value="' + esc(k) + '">' + esc((S.byKind[k] || { label_zh: k }).label_zh) + "（" + counts[k] + "）</option>").join("");
    sel.value = had in counts ? had : "";
    renderRecords();
  }

  // A correction (the record's form, prefilled) or a withdrawal, with its reason.
  function change(rec, what) {
    const kind = S.byKind[rec.record.kind];
    const dialog = $("change");
    const form = $("change-form");
    formKind = kind;
    $("change-title").textContent = (what === "fix" ? "更正：" : "撤回：") + rec.kind_zh + "（" + rec.record.id + "）";
    $("change-fields").innerHTML = what === "fix" && kind ? fieldsHTML(kind, rec.record.data, rec.record.at.slice(0, 10)) : "<p>" + esc(content(rec)) + "</p>";
    form.reason.value = "";
    clearErrors(form);
    $("change-ok").onclick = async (ev) => {
      ev.preventDefault();
      const reason = form.reason.value.trim();
      let read = null;
      if (what === "fix") { read = readFields(kind, form); if (!read) return; }
      if (!reason) { showError(form, "reason", "请写明原因"); return; }
      const path = "/api/v1/events/" + encodeURIComponent(rec.record.id);
      // The same day keeps the record's own time (a correction of a value must not move it).
      const at = read && read.at.slice(0, 10) === rec.record.at.slice(0, 10) ? rec.record.at : read && read.at;
      const r = what === "fix"
        ? await call("PUT", path + "?via=form", { record: { kind: kind.kind, org: rec.record.org, at, data: read.data }, reason })
        : await call("DELETE", path, { reason });
      if (r.status === 200) { dialog.close(); toast(what === "fix" ? "已更正，第 " + r.body.version + " 版" : "已撤回"); refresh(); return; }
      const field = (r.body.field || "").replace(/^record\./, "");
      const text = r.status === 409 ? "记录已被撤回或刚被他人修改，请刷新后再试" : reasonZh(r.body.reason || r.body.error || String(r.status));
      if (!field || !showError(form, field, text)) showError(form, "reason", text);
    };
    dialog.showModal();
  }

  function toast(text) {
    const t = document.createElement("div");
    t.className = "toast";
    t.textContent = text;
    document.body.appendChild(t);
    setTimeout(() => t.remove(), 3000);
  }

  // ---------------------------------------------------------------- 督办: assignments
  // The unit's assignments of tasks sent down to it: sign (签收), answer (反馈), report done
  // (办结) and pass down (转派) — to sign and overdue first; the ones it passed down show how
  // its units answer, and its head accepts (销号) or returns (退回) what they submitted.
  const { PRIO_ZH } = V;
  const OVERDUE_ZH = { sign: "超期未签收", submit: "超期未办结" };
  const when = (iso) => (iso ? iso.slice(5, 16).replace("T", " ") : "");
  function daysLeft(iso) {
    const h = (Date.parse(iso) - Date.now()) / 3600000;
    return h < 0 ? "已过时限" : h < 48 ? "剩 " + Math.max(1, Math.round(h)) + " 小时" : "剩 " + Math.floor(h / 24) + " 天";
  }
  const URGENCY = (a) => (a.overdue ? 0 : a.state === "issued" ? 1 : a.state === "returned" ? 2 : a.state === "accepted" ? 9 : a.state === "submitted" ? 5 : 3);
  function assignmentHTML(x, i) {
    const t = x.task, a = x.assignment;
    const acts = S.tasks.may_act;
    const open = a.state !== "accepted" && a.state !== "submitted";
    const cls = "assignment" + (a.overdue ? " late" : "") + (a.state === "accepted" ? " done" : "") + (a.state === "submitted" ? " submitted" : "") +
      (a.state === "returned" ? " returned" : "");
    const history = (a.feedback || []).map((f) => '<li class="' + f.step + '"><span class="when">' + esc(when(f.at)) + "</span>" + esc(f.step_zh) + (f.text ? "：" + esc(f.text) : "") + "</li>").join("");
    const kids = (a.children || []).map((c, j) => {
      const judge = c.state === "submitted" && S.tasks.may_judge
        ? '<button type="button" class="primary" data-judge="accept" data-i="' + i + '" data-j="' + j + '">销号</button><button type="button" data-judge="return" data-i="' + i + '" data-j="' + j + '">退回</button>' : "";
      const last = (c.feedback || []).slice(-1)[0];
      return '<li><span class="n">' + esc(c.org_name) + " · " + esc(c.state_zh) + (c.overdue ? ' <span class="late-flag">' + OVERDUE_ZH[c.overdue] + "</span>" : "") +
        (last && last.text ? '<br><span class="muted">' + esc(last.step_zh + "：" + last.text) + "</span>" : "") + "</span>" + judge + "</li>";
    }).join("");
    let buttons = "";
    if (acts && a.state === "issued") buttons = '<button type="button" class="primary" data-act="sign" data-i="' + i + '">签收</button>';
    else if (acts && open) {
      buttons = '<textarea data-text="' + i + '" maxlength="1000" placeholder="办理进展，或办结时写明做了什么、结果如何（必填）"></textarea><p class="field-error" data-err="' + i + '"></p>' +
        '<div><button type="button" data-act="feedback" data-i="' + i + '">反馈进展</button><button type="button" class="primary" data-act="submit" data-i="' + i + '">办结上报</button>' +
        (S.kids.length ? '<button type="button" data-act="delegate" data-i="' + i + '">转派下级</button>' : "") + "</div>";
    }
    const deadline = a.state === "issued" ? "签收时限 " + when(a.sign_by) + "（" + daysLeft(a.sign_by) + "）· " : "";
    return '<article class="' + cls + '" data-task="' + esc(t.id) + '"><div class="top"><span class="prio ' + t.priority + '">' + PRIO_ZH[t.priority] + '</span><span class="title">' + esc(t.title) +
      '</span><span class="state">' + esc(a.state_zh) + "</span>" + (a.overdue ? '<span class="late-flag">' + OVERDUE_ZH[a.overdue] + "</span>" : "") + "</div>" +
      '<div class="a-meta">' + esc(t.scope_name) + " 下达 · " + deadline + "办结时限 " + esc(when(a.due)) + (open ? "（" + daysLeft(a.due) + "）" : "") +
      (a.parent ? " · 由" + esc((S.kidsOf[a.parent] || a.parent)) + "转派" : "") + "</div>" +
      '<div class="instruction" title="点击展开">' + esc(t.instruction) + "</div>" +
      (history ? '<ul class="history">' + history + "</ul>" : "") +
      (kids ? '<div class="kids">已转派：<ul class="history">' + kids + "</ul></div>" : "") + buttons + "</article>";
  }
  function renderTasks() {
    const list = S.tasks.assignments.slice().sort((x, y) => URGENCY(x.assignment) - URGENCY(y.assignment));
    S.tasks.sorted = list;
    const show = list.length > 0;
    $("tasks").hidden = !show;
    document.querySelector("[data-tasks]").hidden = !show;
    if (!show) return;
    const toSign = list.filter((x) => x.assignment.state === "issued").length;
    const late = list.filter((x) => x.assignment.overdue).length;
    const open = list.filter((x) => !["accepted", "submitted"].includes(x.assignment.state)).length;
    $("tasks-sum").textContent = "待签收 " + toSign + " · 在办 " + open + " · 超期 " + late + " · 共 " + list.length + " 项";
    $("assignments").innerHTML = list.map(assignmentHTML).join("");
    $("assignments").querySelectorAll(".instruction").forEach((el) => { el.onclick = () => el.classList.toggle("open"); });
    $("assignments").querySelectorAll("[data-act]").forEach((b) => { b.onclick = () => act(list[+b.dataset.i], b.dataset.act, +b.dataset.i); });
    $("assignments").querySelectorAll("[data-judge]").forEach((b) => {
      b.onclick = () => judgeChild(list[+b.dataset.i].assignment.children[+b.dataset.j], list[+b.dataset.i].task, b.dataset.judge);
    });
  }
  async function loadTasks() {
    S.tasks = await V.getJSON("/api/v1/tasks/mine?scope=" + encodeURIComponent(S.scope));
    S.tasks.may_judge = ["leader", "admin", "duty_officer"].includes(S.me.role) && (S.me.role === "admin" || S.me.scope === S.scope);
    renderTasks();
  }
  async function step(taskId, org, action, body) {
    return call("POST", "/api/v1/tasks/" + encodeURIComponent(taskId) + "/assignments/" + org + "/" + action, body || {});
  }
  const STEP_ZH = { sign: "已签收", feedback: "已反馈", submit: "已办结上报，等待销号", delegate: "已转派", accept: "已销号", return: "已退回" };
  function stepRefusal(r) {
    if (r.status === 409) return "该事项状态已变化（" + (r.body.error || "") + "），已刷新";
    if (r.status === 400 && r.body.field === "text") return "请填写反馈内容";
    return reasonZh(r.body.reason || r.body.error || String(r.status));
  }
  async function act(x, action, i) {
    const a = x.assignment;
    const err = $("assignments").querySelector('[data-err="' + i + '"]');
    const textEl = $("assignments").querySelector('[data-text="' + i + '"]');
    const text = textEl ? textEl.value.trim() : "";
    let body = {};
    if (action === "feedback" || action === "submit") {
      if (!text) {
        err.textContent = action === "feedback" ? "请填写办理进展" : "请写明办结情况（做了什么、结果如何）";
        textEl.classList.add("invalid");
        return;
      }
      // Reported done while units it passed the work to are still on it: said first.
      const open = (a.children || []).filter((c) => c.state !== "accepted" && c.state !== "submitted").length;
      if (action === "submit" && open && !confirm("转派的下级中还有 " + open + " 个尚未办结，仍要办结上报？")) return;
      body = { text };
    }
    if (action === "delegate") {
      const picked = await pickKids(a);
      if (!picked) return;
      body = { units: picked };
    }
    const r = await step(x.task.id, a.org, action, body);
    if (r.status === 200) { toast(STEP_ZH[action]); loadTasks().catch(() => {}); return; }
    if (err) err.textContent = stepRefusal(r); else toast(stepRefusal(r));
    loadTasks().catch(() => {});
  }
  async function judgeChild(c, task, action) {
    let body = {};
    if (action === "return") {
      const reason = prompt("退回 " + c.org_name + " 的原因（必填）");
      if (!reason || !reason.trim()) return;
      body = { reason: reason.trim() };
    }
    const r = await step(task.id, c.org, action, body);
    toast(r.status === 200 ? STEP_ZH[action] : stepRefusal(r));
    loadTasks().catch(() => {});
  }
  // Which units below to pass an assignment to: a dialog of checkboxes (those that have one of
  // this task already are not offered).
  function pickKids(a) {
    return new Promise((resolve) => {
      const taken = new Set((a.children || []).map((c) => c.org));
      const dialog = $("change");
      const form = $("change-form");
      $("change-title").textContent = "转派下级单位";
      $("change-fields").innerHTML = '<p><button type="button" id="pick-all">全选</button></p><div class="pick-kids">' +
        S.kids.filter((k) => !taken.has(k.code)).map((k) =>
          '<label><input type="checkbox" value="' + esc(k.code) + '"><span>' + esc(k.name) + "</span></label>").join("") + "</div>";
      $("pick-all").onclick = () => {
        const boxes = [...$("change-fields").querySelectorAll("input[type=checkbox]")];
        const all = boxes.every((b) => b.checked);
        boxes.forEach((b) => { b.checked = !all; });
      };
      form.reason.closest("label").hidden = true;
      clearErrors(form);
      const done = (v) => { form.reason.closest("label").hidden = false; dialog.onclose = null; resolve(v); };
      $("change-ok").onclick = (ev) => {
        ev.preventDefault();
        const picked = [...$("change-fields").querySelectorAll("input:checked")].map((c) => c.value);
        if (!picked.length) { showError(form, "reason", "请至少选择一个单位"); return; }
        dialog.close();
        done(picked);
      };
      dialog.onclose = () => done(null);
      dialog.showModal();
    });
  }

  // ---------------------------------------------------------------- the page
  async function refresh() {
    await Promise.all([loadStanding(), loadRecords(), loadTasks()]).catch((e) => console.warn(e));
  }

  function header(org) {
    const p = S.pace;
    $("title").textContent = p.name + " · 单位工作台";
    document.title = p.name + " · 单位工作台";
    const up = p.parent ? '上级：<a href="/unit?scope=' + esc(p.parent) + '">' + esc(p.parent_name) + "</a> · " : "";
    $("crumbs").innerHTML = up + esc(V.LEVEL_ZH[p.level] || p.level) + " · " + esc(p.scope);
    $("who").textContent = S.me.name + " · " + S.me.scope_name;
    const kids = (org.children || []);
    if (kids.length) {
      $("units-pick").hidden = false;
      $("units").innerHTML = '<option value="">选择…</option>' + kids.map((c) => '<option value="' + esc(c.code) + '">' + esc(c.name) + "</option>").join("");
      $("units").onchange = (e) => { if (e.target.value) location.href = "/unit?scope=" + e.target.value; };
    }
    const writer = p.may_report;
    document.querySelectorAll("[data-writer]").forEach((el) => { el.hidden = !writer; });
    if (!writer) {
      $("readonly").hidden = false;
      $("readonly").textContent = p.scope === S.me.scope
        ? "只读：本单位的报送和更正由经办人员（clerk 账号）进行。"
        : "只读：这是" + p.name + "的工作台，由该单位自己的经办人员报送和更正。";
    }
  }

  async function start() {
    S.me = await V.getJSON("/api/v1/me");
    // A workspace is a unit's own: without a login (a wall's open access) ask for one.
    if (S.me.name === "anonymous") { V.askToken(); return; }
    S.scope = S.scope || S.me.scope;
    const [org, kinds] = await Promise.all([
      V.getJSON("/api/v1/org/" + encodeURIComponent(S.scope) + "?depth=1"),
      V.getJSON("/api/v1/kinds?scope=" + encodeURIComponent(S.scope)),
      loadStanding(),
    ]);
    S.kinds = kinds;
    kinds.forEach((k) => { S.byKind[k.kind] = k; });
    S.kids = org.children || [];
    S.kidsOf = {};
    S.kids.forEach((k) => { S.kidsOf[k.code] = k.name; });
    if (org.parent) S.kidsOf[org.parent] = (S.pace && S.pace.parent_name) || org.parent;
    header(org);
    await loadTasks().catch((e) => console.warn(e));
    if (S.pace.may_report) {
      // The scheduled reports still to send first, then every other kind by its label.
      const open = (S.pace.reports || []).filter((r) => r.state === "missing" || r.state === "pending").map((r) => r.kind);
      const ordered = kinds.slice().sort((a, b) =>
        (open.includes(a.kind) ? 0 : 1) - (open.includes(b.kind) ? 0 : 1) || a.label_zh.localeCompare(b.label_zh, "zh-CN"));
      $("kind-select").innerHTML = ordered.map((k) => '<option value="' + esc(k.kind) + '">' + esc(k.label_zh) +
        (open.includes(k.kind) ? "（本期待报）" : "") + "</option>").join("");
      $("kind-select").onchange = renderReportForm;
      $("report-form").onsubmit = submitReport;
      renderReportForm();
      setupUpload();
    }
    loadChildren(org.children || []).catch(() => {});
    $("records-kind").onchange = () => { S.shown = 20; renderRecords(); };
    $("records-days").onchange = () => loadRecords().catch(() => {});
    $("records-more").onclick = () => { S.shown = (S.shown || 20) + 20; renderRecords(); };
    await loadRecords();
    // Live enough for a desk: the standing again every 20 s.
    setInterval(() => loadStanding().catch(() => {}), 20000);
    setInterval(() => loadTasks().catch(() => {}), 20000);
  }

  start().catch((e) => {
    if (String(e.message).includes("需要登录")) return;
    const m = String(e.message).match(/→ (\d+)$/);
    const why = m && (m[1] === "403" || m[1] === "404") ? "没有这个单位，或它不在你的权限范围内" : e.message;
    $("cards").innerHTML = '<p class="bad">无法打开工作台：' + esc(why) + '。<a href="/unit">回到本单位的工作台</a></p>';
  });
})();
