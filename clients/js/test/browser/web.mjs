// Helpers for the tests and benchmarks of tabs and the demo app: a `folio serve --static examples/web-todo/dist`
// that can be stopped and started again on the same port and data directory (the network "goes away"), Chromium
// with a fresh profile, and the demo app driven like a person would.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";
import { FOLIO_BIN, folio } from "../helpers.mjs";
import { ARGS, CHROMIUM } from "./chromium.mjs";

export const ROOT = fileURLToPath(new URL("../../../..", import.meta.url));
export const APP = join(ROOT, "examples", "web-todo", "dist");

/** Builds examples/web-todo/dist from clients/js/dist when it is missing or older than the client. */
export function buildApp() {
  const stamp = join(APP, "version.json");
  const client = join(ROOT, "clients", "js", "dist", "folio-client.js");
  const { mtimeMs } = existsSync(stamp) ? statOf(stamp) : { mtimeMs: 0 };
  if (mtimeMs < statOf(client).mtimeMs || process.env.WEB_TODO_REBUILD === "1") {
    execFileSync(process.execPath, [join(ROOT, "examples", "web-todo", "build.mjs")], { stdio: "inherit" });
  }
  return JSON.parse(readFileSync(stamp, "utf8"));
}

function statOf(path) {
  return { mtimeMs: Number(execFileSync("stat", ["-c", "%Y", path], { encoding: "utf8" }).trim()) * 1000 };
}

/** `folio serve --static APP` on a fixed port over a kept data directory: `stop()` and `start()` again. */
export async function appServer({ staticDir = APP, args: extraArgs = [] } = {}) {
  const data = mkdtempSync(join(tmpdir(), "folio-web-"));
  let child = null;
  let url = null;
  let log = "";
  const start = async () => {
    const listen = url ? url.replace("http://", "") : "127.0.0.1:0";
    child = spawn(FOLIO_BIN, ["serve", "--data-dir", data, "--listen", listen, "--static", staticDir, ...extraArgs], {
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info" },
    });
    const started = child;
    url = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`folio serve did not start:\n${log}`)), 20_000);
      const onData = (chunk) => {
        log += chunk.toString();
        const m = log.slice(-4000).match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
        if (m) {
          clearTimeout(timer);
          started.stdout.off("data", onData);
          started.stderr.off("data", onData);
          started.stdout.on("data", (c) => (log += c));
          started.stderr.on("data", (c) => (log += c));
          resolve(m[1]);
        }
      };
      started.stdout.on("data", onData);
      started.stderr.on("data", onData);
      started.on("exit", (code) => reject(new Error(`folio serve exited with ${code}:\n${log}`)));
    });
  };
  const stop = async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    child = null;
  };
  await start();
  const token = readFileSync(join(data, "admin.token"), "utf8").trim();
  return {
    get url() {
      return url;
    },
    token,
    dataDir: data,
    start,
    stop,
    log: () => log,
    async close() {
      await stop();
      rmSync(data, { recursive: true, force: true });
    },
  };
}

/** Chromium with a fresh profile (persistent: service workers, IndexedDB and the HTTP cache behave as for a person). */
export async function browser({ noSharedWorker = false } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "folio-chromium-"));
  const context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, headless: true, args: ARGS });
  if (noSharedWorker) {
    // As on Chrome for Android: no SharedWorker, so the tabs elect a leader with Web Locks.
    await context.addInitScript(() => {
      delete window.SharedWorker;
    });
  }
  const logs = [];
  const watch = (page, name) => {
    page.on("console", (m) => {
      logs.push(`[${name} ${m.type()}] ${m.text()}`);
      // Failed requests while the tests take the network away are expected; other errors are shown.
      const expected = /ERR_INTERNET_DISCONNECTED|ERR_CONNECTION_REFUSED|ERR_EMPTY_RESPONSE|ERR_CONNECTION_RESET|WebSocket connection/.test(m.text());
      if (process.env.FOLIO_BROWSER_LOG || (m.type() === "error" && !expected)) console.log(`[${name} ${m.type()}] ${m.text()}`);
    });
    page.on("pageerror", (e) => console.log(`[${name} pageerror] ${e.message}`));
  };
  let n = 0;
  return {
    context,
    logs,
    /** A tab of the demo at `url` (`path` e.g. `/#token=…`), once the app is ready. */
    async tab(url, path = "/") {
      const page = context.pages().find((p) => p.url() === "about:blank") ?? (await context.newPage());
      watch(page, `tab${++n}`);
      await page.goto(url + path);
      await ready(page);
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function ready(page) {
  await page.waitForSelector("body[data-ready=true]", { timeout: 30_000 });
}

/** Adds a todo by typing its title and clicking Add. */
export async function addTodo(page, title) {
  await page.click("#title");
  await page.keyboard.type(title);
  await page.click("#add button[type=submit]");
}

/** The titles the page shows, in order. */
export function titles(page) {
  return page.$$eval("#items li .title", (els) => els.map((e) => e.textContent));
}

export async function waitTitles(page, expected, what) {
  const want = [...expected].sort();
  try {
    await page.waitForFunction(
      (want) => JSON.stringify([...document.querySelectorAll("#items li .title")].map((e) => e.textContent).sort()) === JSON.stringify(want),
      want,
      { timeout: 20_000, polling: 50 },
    );
  } catch (e) {
    throw new Error(`${what}: wanted ${JSON.stringify(want)}, the page shows ${JSON.stringify(await titles(page))} (badge ${await badge(page)})`);
  }
}

export async function badge(page) {
  return page.$eval("#badge", (b) => `${b.dataset.state}: ${b.textContent}`);
}

export async function waitBadge(page, state, timeout = 30_000) {
  try {
    await page.waitForSelector(`#badge[data-state=${state}]`, { timeout });
  } catch (e) {
    const status = await page.evaluate(() => window.folio?.status).catch(() => null);
    throw new Error(`badge ${state}: the page shows ${await badge(page)} (status ${JSON.stringify(status)})`);
  }
}

/** The Rust replica: `folio sync` into `dir`, then the document as it folds it. */
export async function rustSync(server, dir) {
  return JSON.parse(await folio(["sync", "--remote", server.url, "--token", server.token, "--data-dir", dir, "--json"]));
}

export async function rustDoc(dir, id) {
  return JSON.parse(await folio(["doc", "get", id, "--json", "--data-dir", dir]));
}

export async function served(server, id) {
  const res = await fetch(`${server.url}/v1/documents/${id}`, { headers: { authorization: `Bearer ${server.token}` } });
  if (!res.ok) throw new Error(`GET /v1/documents/${id}: ${res.status} ${await res.text()}`);
  return res.json();
}
