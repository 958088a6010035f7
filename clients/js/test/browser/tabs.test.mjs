// The demo app (examples/web-todo) in real headless Chromium against a real `folio serve --static`, driven by
// clicks and typing: tabs share one replica (a SharedWorker; with SharedWorker removed, a leader tab elected with
// Web Locks), a todo added in one tab appears in the others, the network goes away (the browser offline and the
// server stopped), both tabs add and edit, a page reloads from the service worker's cache, the tab that held the
// connection closes (then every tab, and a new one starts the replica again with no network), the network comes
// back, and the server, the browser and a Rust replica (`folio sync`) end with the same state hash. A screenshot
// of the app is taken at the end and what it shows is checked. Also: a new version of the app picked up without
// losing pending actions, and a refused token replaced.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startProxy, tempDir } from "../helpers.mjs";
import {
  addTodo,
  appServer,
  badge,
  browser,
  buildApp,
  ready,
  ROOT,
  rustDoc,
  rustSync,
  served,
  titles,
  waitBadge,
  waitTitles,
} from "./web.mjs";

const shots = mkdtempSync(join(tmpdir(), "folio-web-todo-shots-"));
before(() => {
  buildApp();
});
after(() => console.log(`screenshots in ${shots}`));

const rowOf = (title) => `#items li:has(.title:text-is("${title}"))`;

async function rename(page, from, to) {
  await page.dblclick(`${rowOf(from)} .title`);
  await page.waitForSelector("#items li input.edit");
  await page.keyboard.press("Control+A");
  await page.keyboard.type(to);
  await page.keyboard.press("Enter");
}

async function mode(page) {
  return page.textContent("#mode");
}

/** The server, the page's replica and a Rust replica agree on the document (state hash and titles). */
async function converge(server, page, id, expected) {
  const rust = tempDir("folio-web-rust-");
  try {
    await rustSync(server, rust.dir);
    const onServer = await served(server, id);
    const inRust = await rustDoc(rust.dir, id);
    const inPage = await page.evaluate((id) => window.folio.get(id), id);
    assert.equal(inPage.stateHash, onServer.stateHash, "browser = server");
    assert.equal(inRust.stateHash, onServer.stateHash, "Rust replica = server");
    const items = Object.values(onServer.state.global.items);
    assert.deepEqual(items.map((i) => i.title).sort(), [...expected].sort(), "the server has every todo");
    return onServer;
  } finally {
    rust.remove();
  }
}

/** Screenshots the page, then reads the PNG back (decoded by Chromium) to check what it shows: the badge's colour
 * at its edge is the "synced" green, and the DOM shows `count` items and the badge text. */
async function checkScreenshot(br, page, name, count) {
  const path = join(shots, `${name}.png`);
  const png = await page.screenshot({ path, fullPage: true });
  const box = await page.$eval("#badge", (b) => {
    const r = b.getBoundingClientRect();
    return { x: Math.round(r.left + 3), y: Math.round(r.top + r.height / 2) };
  });
  const viewer = await br.context.newPage();
  try {
    const pixel = await viewer.evaluate(
      async ({ b64, x, y }) => {
        const img = new Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const canvas = document.createElement("canvas");
        canvas.width = img.width;
        canvas.height = img.height;
        const ctx = canvas.getContext("2d");
        ctx.drawImage(img, 0, 0);
        return { rgb: [...ctx.getImageData(x, y, 1, 1).data.slice(0, 3)], width: img.width, height: img.height };
      },
      { b64: png.toString("base64"), ...box },
    );
    assert.ok(pixel.width > 300 && pixel.height > 200, `screenshot size ${pixel.width}x${pixel.height}`);
    const [r, g, b] = pixel.rgb;
    assert.ok(g > 110 && r < 90 && b < 100, `the badge is green (synced) in the screenshot: rgb(${pixel.rgb})`);
  } finally {
    await viewer.close();
  }
  assert.equal(await page.$$eval("#items li", (l) => l.length), count, "items shown");
  assert.equal(await page.textContent("#badge"), "synced");
  writeFileSync(join(shots, `${name}.txt`), `${await badge(page)}\n${(await titles(page)).join("\n")}\n`);
  return path;
}

test("two tabs of the demo share one replica (SharedWorker): offline, reload from the service worker, close, online, converge", async () => {
  const server = await appServer();
  const br = await browser();
  try {
    const a = await br.tab(server.url, `/#token=${server.token}`);
    assert.equal(await mode(a), "worker");
    await a.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 20_000 });
    const b = await br.tab(server.url, "/");
    assert.equal(await mode(b), "worker");
    assert.equal(await a.textContent("#replica"), await b.textContent("#replica"), "one replica for both tabs");
    const id = await a.getAttribute("body", "data-doc");
    assert.equal(await b.getAttribute("body", "data-doc"), id);

    // A todo added in one tab appears in the other without a reload.
    await addTodo(a, "Buy milk");
    await waitTitles(b, ["Buy milk"], "tab B sees tab A's todo");
    await waitBadge(a, "synced");
    await waitBadge(b, "synced");

    // The network goes away: the browser is offline and the server is gone.
    await br.context.setOffline(true);
    await server.stop();
    await addTodo(a, "Offline from A");
    await addTodo(b, "Offline from B");
    await a.click(`${rowOf("Buy milk")} input.toggle`);
    await waitTitles(b, ["Buy milk", "Offline from A", "Offline from B"], "tab B sees both offline todos");
    await rename(b, "Offline from A", "Renamed in B");
    const offline = ["Buy milk", "Renamed in B", "Offline from B"];
    await waitTitles(a, offline, "tab A sees tab B's edit");
    await a.waitForSelector(`${rowOf("Buy milk")}.done`);
    await waitBadge(a, "pending");
    await waitBadge(b, "pending");
    // An apply through the worker resolves with the status it left (its answer carries it; the status message to
    // every tab comes after).
    const counts = await b.evaluate(async (id) => {
      const f = window.folio;
      const before = f.status.pending;
      const items = (await f.get(id)).state.global.items;
      const key = Object.keys(items).find((k) => items[k].title === "Offline from B");
      await f.apply(id, [{ type: "UPDATE_TODO", input: { id: key, done: false } }]);
      return [before, f.status.pending];
    }, id);
    assert.equal(counts[1], counts[0] + 1, `pending before and after the apply: ${counts}`);

    // Tab A reloads with no network: the service worker's cache has the app, IndexedDB the todos.
    const response = await a.reload();
    assert.ok(response.fromServiceWorker(), "the page came from the service worker");
    await ready(a);
    await waitTitles(a, offline, "tab A after an offline reload");
    await waitBadge(a, "pending");

    // The tab that started the worker (and so the connection) closes; tab B goes on.
    await a.close();
    await addTodo(b, "After A closed");
    const all = [...offline, "After A closed"];
    await waitTitles(b, all, "tab B alone");

    // Every tab closes (the worker goes); a new one, still with no network, starts the worker again from the
    // service worker's cache and finds everything.
    await b.close();
    await new Promise((r) => setTimeout(r, 1000));
    const d = await br.tab(server.url, "/");
    assert.equal(await mode(d), "worker");
    await waitTitles(d, all, "a new tab, offline, after every tab closed");
    await waitBadge(d, "pending");

    // The network comes back.
    await server.start();
    await br.context.setOffline(false);
    await waitBadge(d, "synced", 60_000);
    const doc = await converge(server, d, id, all);
    assert.equal(doc.state.global.items[Object.keys(doc.state.global.items).find((k) => doc.state.global.items[k].title === "Buy milk")].done, true);
    await checkScreenshot(br, d, "worker", all.length);
  } finally {
    await br.close();
    await server.close();
  }
});

test("without SharedWorker the tabs elect a leader; it closes offline and the next tab takes over without losing an action", async () => {
  const server = await appServer();
  const br = await browser({ noSharedWorker: true });
  try {
    const a = await br.tab(server.url, `/#token=${server.token}`);
    assert.equal(await a.evaluate(() => typeof window.SharedWorker), "undefined");
    assert.equal(await mode(a), "leader");
    await a.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 20_000 });
    const b = await br.tab(server.url, "/");
    assert.equal(await mode(b), "follower");
    const id = await a.getAttribute("body", "data-doc");

    await addTodo(b, "From the follower");
    await waitTitles(a, ["From the follower"], "the leader sees the follower's todo");
    await waitBadge(b, "synced");

    await br.context.setOffline(true);
    await server.stop();
    await addTodo(a, "Leader offline");
    await addTodo(b, "Follower offline");
    await rename(b, "From the follower", "Edited by the follower");
    const offline = ["Edited by the follower", "Leader offline", "Follower offline"];
    await waitTitles(a, offline, "the leader sees the follower's offline work");
    await waitBadge(b, "pending");

    // The leader closes: tab B takes the lock and hosts the replica; nothing pending is lost. Tab B adds a todo at
    // once, while there may be no leader yet: its call waits and goes to the next leader (itself).
    await a.close();
    await addTodo(b, "After the hand-over");
    await b.waitForFunction(() => document.getElementById("mode").textContent === "leader", null, { timeout: 20_000 });
    const all = [...offline, "After the hand-over"];
    await waitTitles(b, all, "the new leader");
    assert.ok((await b.evaluate(() => window.folio.status.pending)) >= 4, "the pending actions are still pending");

    // A new tab, still offline, opens from the service worker's cache and follows the new leader.
    const c = await br.tab(server.url, "/");
    assert.equal(await mode(c), "follower");
    await waitTitles(c, all, "a new tab");

    await server.start();
    await br.context.setOffline(false);
    await waitBadge(b, "synced", 60_000);
    await waitBadge(c, "synced", 60_000);
    await converge(server, c, id, all);
    await checkScreenshot(br, c, "leader", all.length);
  } finally {
    await br.close();
    await server.close();
  }
});

test("a new version of the app is picked up at a safe point without losing pending actions", async () => {
  // Version 1 of the app in a directory of its own; the page's origin is a proxy that can cut the API off alone.
  const out = mkdtempSync(join(tmpdir(), "folio-web-todo-v-"));
  const build = (salt) => {
    execFileSync(process.execPath, [join(ROOT, "examples", "web-todo", "build.mjs")], {
      env: { ...process.env, WEB_TODO_OUT: out, WEB_TODO_VERSION_SALT: salt },
      stdio: "ignore",
    });
    return JSON.parse(readFileSync(join(out, "version.json"), "utf8")).version;
  };
  const v1 = build("one");
  const server = await appServer({ staticDir: out });
  const proxy = await startProxy(server.url);
  const br = await browser();
  try {
    const a = await br.tab(proxy.url, `/#token=${server.token}`);
    assert.equal(await a.textContent("#version"), v1);
    await a.waitForFunction(() => !!navigator.serviceWorker.controller, null, { timeout: 20_000 });
    const id = await a.getAttribute("body", "data-doc");
    await a.waitForFunction(() => window.folio.status.pending === 0 && window.folio.status.lastSyncAt, null, { timeout: 20_000 });

    // The API goes away (the app's files do not): two todos wait in the outbox.
    proxy.mode = (req) => (req.url.startsWith("/v1/") ? "drop" : "pass");
    await addTodo(a, "Made under v1");
    await addTodo(a, "Also under v1");
    await waitTitles(a, ["Made under v1", "Also under v1"], "before the update");
    await a.waitForFunction(() => window.folio.status.pending >= 2, null, { timeout: 10_000 });

    // Version 2 is deployed; the page finds it, offers it, and reloads into it when asked.
    const v2 = build("two");
    assert.notEqual(v2, v1);
    await a.evaluate(async () => (await navigator.serviceWorker.getRegistration()).update());
    await a.waitForSelector("#update:not([hidden])", { timeout: 20_000 });
    assert.equal(await a.textContent("#version"), v1, "nothing changes before the person says so");
    await Promise.all([a.waitForEvent("load", { timeout: 30_000 }), a.click("#update-now")]);
    await ready(a);
    assert.equal(await a.textContent("#version"), v2, "the page runs version 2");
    await waitTitles(a, ["Made under v1", "Also under v1"], "after the update");
    assert.ok((await a.evaluate(() => window.folio.status.pending)) >= 2, "the actions made under v1 are still pending");
    const caches = await a.evaluate(() => caches.keys());
    assert.deepEqual(caches, [`web-todo-${v2}`], "the old version's cache is gone");

    // The API comes back: they reach the server.
    proxy.mode = "pass";
    await a.evaluate(() => window.folio.sync());
    await a.waitForFunction(() => window.folio.status.pending === 0, null, { timeout: 20_000 });
    const doc = await served(server, id);
    assert.deepEqual(Object.values(doc.state.global.items).map((i) => i.title).sort(), ["Also under v1", "Made under v1"]);
  } finally {
    await br.close();
    await proxy.stop();
    await server.close();
    rmSync(out, { recursive: true, force: true });
  }
});

test("a refused token stops sync and the app asks for another; with it the same replica syncs", async () => {
  const server = await appServer();
  const br = await browser();
  try {
    const a = await br.tab(server.url, "/#token=not-a-token");
    await addTodo(a, "Made with a bad token");
    await waitBadge(a, "error");
    assert.equal(await a.textContent("#badge"), "token refused");
    await a.waitForSelector("#login:not([hidden])");
    const b = await br.tab(server.url, "/");
    assert.equal(await a.textContent("#replica"), await b.textContent("#replica"));
    await a.fill("#token", server.token);
    await Promise.all([a.waitForEvent("load"), a.click("#login button[type=submit]")]);
    await ready(a);
    await waitBadge(a, "synced");
    await waitBadge(b, "synced");
    const id = await a.getAttribute("body", "data-doc");
    const doc = await served(server, id);
    assert.deepEqual(Object.values(doc.state.global.items).map((i) => i.title), ["Made with a bad token"]);
  } finally {
    await br.close();
    await server.close();
  }
});
