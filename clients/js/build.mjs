// Builds dist/: folio-wasm for wasm32 (cargo), its JavaScript glue (wasm-bindgen --target web), wasm-opt when
// installed, then one ES module bundle (esbuild) with its .wasm beside it and .d.ts types (tsc).
//
// Environment: CARGO_TARGET_DIR (default /var/tmp/folio-wasm-target), WASM_BINDGEN (default: wasm-bindgen on PATH,
// or /var/tmp/folio-tools/bin/wasm-bindgen), FOLIO_WASM_PROFILE (wasm, default: the workspace's size-first profile
// with LTO; or release, or dev).
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const target = process.env.CARGO_TARGET_DIR || "/var/tmp/folio-wasm-target";
const profile = process.env.FOLIO_WASM_PROFILE || "wasm";
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { stdio: "inherit", ...opts });
const which = (name) => {
  try {
    return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
};

run("nice", ["-n", "10", "cargo", "build", "-p", "folio-wasm", "--target", "wasm32-unknown-unknown", "--profile", profile],
  { cwd: root, env: { ...process.env, CARGO_TARGET_DIR: target } });
const wasm = join(target, "wasm32-unknown-unknown", profile === "dev" ? "debug" : profile, "folio_wasm.wasm");

const bindgen = process.env.WASM_BINDGEN || which("wasm-bindgen") || "/var/tmp/folio-tools/bin/wasm-bindgen";
if (!existsSync(bindgen)) {
  throw new Error(
    `wasm-bindgen not found (${bindgen}): install wasm-bindgen-cli at the wasm-bindgen crate's version in Cargo.lock ` +
      "(see clients/js/README.md; scripts/test-js installs it), or point WASM_BINDGEN at it",
  );
}
const pkg = join(here, "wasm-pkg");
rmSync(pkg, { recursive: true, force: true });
run(bindgen, ["--target", "web", "--out-dir", pkg, "--out-name", "folio_wasm", wasm]);

const dist = join(here, "dist");
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
const optimised = join(dist, "folio-client.wasm");
// wasm-opt only when asked: FOLIO_WASM_OPT=<path of a wasm-opt> (binaryen 116 or later: npm's `binaryen` package
// works, e.g. node_modules/.bin/wasm-opt after `npm i --no-save binaryen`; 825 KB become 666 KB). Debian bookworm's
// binaryen 108 breaks wasm-bindgen 0.2.130's externref table ("WebAssembly.Table.set(): Argument 1 is invalid").
const opt = process.env.FOLIO_WASM_OPT || null;
if (opt) {
  // The features rustc used (reference types for wasm-bindgen's externref table, bulk memory, …) are read from
  // the module's target_features section.
  run(opt, ["-O2", join(pkg, "folio_wasm_bg.wasm"), "-o", optimised]);
} else {
  copyFileSync(join(pkg, "folio_wasm_bg.wasm"), optimised);
}

await esbuild.build({
  entryPoints: [join(here, "src", "index.ts")],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  outfile: join(dist, "folio-client.js"),
  external: ["node:*"],
  sourcemap: true,
  logLevel: "warning",
});

// The SharedWorker that hosts the replica for every tab of an origin (src/worker.ts): beside folio-client.js, which
// starts it as `new URL("./folio-worker.js", import.meta.url)`; it loads folio-client.wasm from beside itself.
await esbuild.build({
  entryPoints: [join(here, "src", "worker.ts")],
  bundle: true,
  format: "esm",
  platform: "neutral",
  target: "es2022",
  outfile: join(dist, "folio-worker.js"),
  external: ["node:*"],
  sourcemap: true,
  logLevel: "warning",
});

run(process.execPath, [join(here, "node_modules", "typescript", "bin", "tsc"), "-p", here, "--emitDeclarationOnly",
  "--declaration", "--noEmit", "false", "--outDir", join(dist, "types")]);
writeFileSync(join(dist, "folio-client.d.ts"), 'export * from "./types/src/index.js";\n');
// The declarations of wasm-bindgen's glue, which src/wasm.ts imports as ../wasm-pkg/folio_wasm.js.
mkdirSync(join(dist, "types", "wasm-pkg"), { recursive: true });
// Without its `[Symbol.dispose]` member, which needs TypeScript's esnext library in the app (free() stays).
const glue = readFileSync(join(pkg, "folio_wasm.d.ts"), "utf8").replace(/^.*\[Symbol\.dispose\]\(\).*\n/gm, "");
writeFileSync(join(dist, "types", "wasm-pkg", "folio_wasm.d.ts"), glue);
if (!existsSync(join(dist, "types", "src", "index.d.ts"))) throw new Error("types were not written");
console.log(`built ${dist}`);
