// Builds the demo into dist/ (served by `folio serve --static examples/web-todo/dist`): the app (src/app.ts with
// folio-client bundled in), the service worker (src/sw.ts, told the version and the files of the app shell), the
// client's SharedWorker and .wasm (from clients/js/dist: run `npm run build` there first), and public/.
//
//   node examples/web-todo/build.mjs              (WEB_TODO_OUT=DIR writes elsewhere; WEB_TODO_VERSION_SALT=S forces a
//                                                 new version, for the update test)
//
// The version is a hash of every file of the shell: a changed file makes a new service worker (a new cache) and a
// new replica worker URL, which is how a new version is picked up (README.md).
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const client = join(here, "..", "..", "clients", "js");
const esbuild = createRequire(join(client, "package.json"))("esbuild");
const dist = process.env.WEB_TODO_OUT || join(here, "dist");
const clientDist = join(client, "dist");
for (const f of ["folio-client.js", "folio-worker.js", "folio-client.wasm"]) {
  if (!existsSync(join(clientDist, f))) throw new Error(`${join(clientDist, f)} is missing: run npm run build in clients/js`);
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
for (const f of readdirSync(join(here, "public"))) copyFileSync(join(here, "public", f), join(dist, f));
copyFileSync(join(clientDist, "folio-worker.js"), join(dist, "folio-worker.js"));
copyFileSync(join(clientDist, "folio-client.wasm"), join(dist, "folio-client.wasm"));

// The app first, with a placeholder version: the version is the hash of what the shell holds.
const app = await esbuild.build({
  entryPoints: [join(here, "src", "app.ts")],
  bundle: true,
  format: "esm",
  target: "es2022",
  write: false,
  alias: { "folio-client": join(clientDist, "folio-client.js") },
  define: { APP_VERSION: '"__APP_VERSION__"' },
  external: ["node:*"],
  logLevel: "warning",
});
const appText = app.outputFiles[0].text;
const hash = createHash("sha256");
hash.update(appText);
for (const f of readdirSync(dist).sort()) hash.update(f).update(readFileSync(join(dist, f)));
if (process.env.WEB_TODO_VERSION_SALT) hash.update(process.env.WEB_TODO_VERSION_SALT);
const version = hash.digest("hex").slice(0, 12);
writeFileSync(join(dist, "app.js"), appText.replaceAll("__APP_VERSION__", version));

const assets = ["/index.html", ...readdirSync(dist).filter((f) => f !== "index.html").map((f) => `/${f}`)].sort();
await esbuild.build({
  entryPoints: [join(here, "src", "sw.ts")],
  bundle: true,
  format: "iife",
  target: "es2022",
  outfile: join(dist, "sw.js"),
  define: { APP_VERSION: JSON.stringify(version), APP_ASSETS: JSON.stringify(assets) },
  logLevel: "warning",
});
writeFileSync(join(dist, "version.json"), JSON.stringify({ version, assets }) + "\n");
console.log(`built ${dist} (version ${version})`);
