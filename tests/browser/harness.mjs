// What the browser tests share: the real vscc binary on the run's ClickHouse, the API as the
// admin, Debian's headless Chromium through playwright-core (installed under var/web by
// scripts/setup), pages that collect their console errors, and checks that print "ok: …".
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(process.env.VENDOR_DIR + "/");
const { chromium } = require("playwright-core");

export const { VSCC_BIN, CLICKHOUSE_URL, DATABASE, SPOOL_DIR, PORT, SCREENSHOTS } = process.env;
export const base = `http://127.0.0.1:${PORT}`;
export const fail = (msg) => { console.error("FAIL: " + msg); process.exitCode = 1; throw new Error(msg); };
export const check = (cond, msg) => { if (!cond) fail(msg); else console.log("ok: " + msg); };
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The binary, serving with `token` as its admin token (restartable on the same database);
// `extra`: more settings as environment variables.
export function startServer(token, extra = {}) {
  return spawn(VSCC_BIN, ["serve"], {
    env: { ...process.env, ...extra, VSCC_ADDR: `127.0.0.1:${PORT}`, VSCC__CLICKHOUSE__URL: CLICKHOUSE_URL,
      VSCC__CLICKHOUSE__DATABASE: DATABASE, VSCC__INGEST__SPOOL_DIR: SPOOL_DIR, VSCC_ADMIN_TOKEN: token,
      VSCC__STREAM__TICK_MS: "100", VSCC__SQL__USERS_DIR: process.env.SQL_USERS_DIR || "",
      VSCC__AUTH__SECRET_FILE: `${SPOOL_DIR}/auth-secret`, VSCC__BRIEF__DIR: `${SPOOL_DIR}/briefs`, RUST_LOG: "warn" },
    stdio: ["ignore", "ignore", "inherit"],
  });
}
export async function waitReady() {
  for (let i = 0; i < 600; i++) {
    try { if ((await fetch(base + "/readyz")).ok) return; } catch { /* not yet */ }
    await sleep(100);
  }
  fail("server did not become ready");
}
export async function stopServer(child) {
  const exited = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  await exited;
}

// The API as `token`: the JSON answer, or a failed check naming the path.
export const apiAs = (token) => async (path, init = {}) => {
  const r = await fetch(base + path, { ...init, headers: { Authorization: "Bearer " + token, "Content-Type": "application/json", ...(init.headers || {}) } });
  if (!r.ok) fail(`${path} answered ${r.status}`);
  return r.json();
};
// A user made by the admin (`admin`: its token), logged in: the session token.
export async function userToken(admin, name, role, scope) {
  const password = "pw-" + name + "-0123";
  await apiAs(admin)("/api/v1/users", { method: "POST", body: JSON.stringify({ name, role, scope, password }) });
  const r = await fetch(base + "/api/v1/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name, password }) });
  return (await r.json()).token;
}
// A record of `kind` a minute ago.
export const record = (id, kind, org, data) => ({ id, kind, org, at: new Date(Date.now() - 60000).toISOString(), data });

export async function launch() {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({ executablePath: "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"] });
}
// A page of `width`×`height` whose console errors and uncaught exceptions land in `page.errors`.
export async function openPage(browser, width, height) {
  const page = await browser.newPage({ viewport: { width, height } });
  page.errors = [];
  page.on("console", (m) => { if (m.type() === "error") page.errors.push(m.text()); });
  page.on("pageerror", (e) => page.errors.push(String(e)));
  return page;
}
