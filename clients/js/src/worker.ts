/**
 * The SharedWorker hosting the replica of one origin and name (`folio-worker.js`, started by `Folio.open` as
 * `new SharedWorker(url, { type: "module", name: "folio:<name>" })`). It owns the IndexedDB replica and its one
 * network connection for every tab; before opening the database it takes the Web Lock `folio-replica:<name>`, so a
 * replica hosted elsewhere (an older worker of a previous app version, a leader tab) lets go first.
 */
import { Host } from "./host.js";
import type { ToHost } from "./protocol.js";

interface ConnectEvent {
  ports: readonly MessagePort[];
}

const scope = globalThis as unknown as { onconnect: ((e: ConnectEvent) => void) | null };

function randomId(): string {
  const b = new Uint8Array(12);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

const host = new Host(randomId(), (name) => {
  const locks = navigator.locks;
  if (!locks) return Promise.resolve();
  return new Promise<void>((granted) => {
    // Held as long as this worker lives.
    void locks.request(`folio-replica:${name}`, () => {
      granted();
      return new Promise<void>(() => undefined);
    });
  });
});

scope.onconnect = (event) => {
  const port = event.ports[0];
  if (!port) return;
  const deliver = host.connect({ post: (m) => port.postMessage(m), close: () => port.close() });
  port.onmessage = (e: MessageEvent<ToHost>) => deliver(e.data);
};

// Where the worker hears it, the network coming back retries at once (tabs tell it too).
globalThis.addEventListener?.("online", () => host.reconnect());
