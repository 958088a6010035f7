// Test helpers: a real `folio serve` on a free 127.0.0.1 port over a temporary SQLite data directory, the `folio`
// CLI as a Rust replica, and a proxy that can fail requests.
import { spawn, execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import http from "node:http";
import { promisify } from "node:util";

const BUILT = ["release", "debug"].map((p) => `/var/tmp/folio-browser-target/${p}/folio`);
export const FOLIO_BIN = process.env.FOLIO_BIN || BUILT.find((p) => existsSync(p)) || BUILT[0];
export const WASM = new URL("../dist/folio-client.wasm", import.meta.url);

export function tempDir(prefix = "folio-js-") {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts `folio serve`; resolves with { url, token, dataDir, stop }. */
export async function startServer(extraArgs = []) {
  const data = tempDir("folio-serve-");
  const child = spawn(FOLIO_BIN, ["serve", "--data-dir", data.dir, "--listen", "127.0.0.1:0", ...extraArgs], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info" },
  });
  let log = "";
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`folio serve did not start:\n${log}`)), 20_000);
    const onData = (chunk) => {
      log += chunk.toString();
      const m = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("exit", (code) => reject(new Error(`folio serve exited with ${code}:\n${log}`)));
  });
  const token = readFileSync(join(data.dir, "admin.token"), "utf8").trim();
  const stop = async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    data.remove();
  };
  return { url, token, dataDir: data.dir, stop, child, log: () => log };
}

const run = promisify(execFile);

/** Runs the folio CLI; resolves with stdout. */
export async function folio(args, opts = {}) {
  const { stdout } = await run(FOLIO_BIN, args, { maxBuffer: 64 * 1024 * 1024, ...opts });
  return stdout;
}

/** An HTTP call to the server: parsed JSON body. */
export async function api(server, path, init = {}) {
  const res = await fetch(`${server.url}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${server.token}`, "content-type": "application/json", ...(init.headers || {}) },
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${text}`);
  return JSON.parse(text);
}

/**
 * A proxy in front of `target` whose behaviour tests switch: "pass", "500" (answers 500), "drop" (closes the
 * connection without answering), "drop-after" (forwards the request, then drops the answer: the server did the work).
 */
export async function startProxy(target) {
  let mode = "pass";
  const counts = { requests: 0 };
  const server = http.createServer((req, res) => {
    counts.requests++;
    const current = typeof mode === "function" ? mode(req) : mode;
    if (current === "500") {
      res.writeHead(500, { "content-type": "application/json" });
      res.end('{"error":{"code":"INTERNAL","message":"injected"}}');
      return;
    }
    if (current === "drop") {
      req.socket.destroy();
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const up = http.request(
        `${target}${req.url}`,
        { method: req.method, headers: { ...req.headers, host: new URL(target).host } },
        (upRes) => {
          const body = [];
          upRes.on("data", (c) => body.push(c));
          upRes.on("end", () => {
            if (current === "drop-after") {
              req.socket.destroy();
              return;
            }
            res.writeHead(upRes.statusCode, upRes.headers);
            res.end(Buffer.concat(body));
          });
        },
      );
      up.on("error", () => req.socket.destroy());
      up.end(Buffer.concat(chunks));
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    counts,
    set mode(m) {
      mode = m;
    },
    get mode() {
      return mode;
    },
    stop: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
