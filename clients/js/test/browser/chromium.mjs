// Real headless Chromium (Debian's, driven by playwright-core: no browser download) with the test app served
// through request routing: `ORIGIN/app/*` comes from clients/js (so a reload works offline too), on the folio
// server's own origin or on another one (then the server runs with `--cors-origin ORIGIN`).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL("../..", import.meta.url));
const types = { ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".html": "text/html", ".map": "application/json" };

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  // The test page is served through request routing, which Chromium does not count as a loopback origin: without
  // this, its calls to the 127.0.0.1 server are refused (net::ERR_BLOCKED_BY_LOCAL_NETWORK_ACCESS_CHECKS).
  "--disable-features=LocalNetworkAccessChecks",
];

/** Launches Chromium with a fresh profile; `open(origin)` gives a page of the test app on `origin`. */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "folio-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
  });
  const routed = new Set();
  const page = context.pages()[0] ?? (await context.newPage());
  page.on("console", (m) => {
    if (process.env.FOLIO_BROWSER_LOG || m.type() === "error") console.log(`[chromium ${m.type()}] ${m.text()}`);
  });
  page.on("pageerror", (e) => console.log(`[chromium pageerror] ${e.message}`));
  return {
    context,
    page,
    async open(origin) {
      if (!routed.has(origin)) {
        routed.add(origin);
        await context.route(`${origin}/app/**`, async (route) => {
          const path = new URL(route.request().url()).pathname.replace(/^\/app\//, "");
          try {
            const body = path === "page.html" ? PAGE : readFileSync(join(root, path));
            await route.fulfill({ status: 200, body, contentType: types[extname(path)] ?? "application/octet-stream" });
          } catch {
            await route.fulfill({ status: 404, body: "not found" });
          }
        });
      }
      await page.goto(`${origin}/app/page.html`);
      await page.waitForFunction(() => window.ready === true);
      return page;
    },
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>folio e2e</title></head>
<body>
<script type="module">
  import { Folio, FolioError } from "/app/dist/folio-client.js";
  window.Folio = Folio;
  window.FolioError = FolioError;
  window.ready = true;
</script>
</body></html>`;
