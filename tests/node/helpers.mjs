// Shared helpers for the Node integration tests: start a hubbub binary on a free port,
// connect the official socket.io-client, and await events (never fixed sleeps).
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { io } from "socket.io-client";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** Path of a built binary: target/debug/<name> unless HUBBUB_TARGET_DIR says otherwise. */
export function binary(name) {
  const dir = process.env.HUBBUB_TARGET_DIR || path.join(root, "target", "debug");
  return path.join(dir, name);
}

/**
 * Starts `bin` with `args` on 127.0.0.1:0 and resolves once it logs the address it listens on.
 * Returns { url, port, proc, logs, stop(signal) -> Promise<{code, signal}> }.
 */
export async function startServer(bin, args = [], { env = {} } = {}) {
  const proc = spawn(bin, ["--bind", "127.0.0.1:0", "--log-format", "json", ...args], {
    env: { ...process.env, HUBBUB_LOG: "info", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const logs = [];
  const logWaiters = [];
  let buffer = "";
  const ready = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${bin} did not start:\n${logs.join("\n")}`)), 15000);
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited with ${code} before listening:\n${logs.join("\n")}`));
    });
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (chunk) => {
      buffer += chunk;
      let nl;
      while ((nl = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        logs.push(line);
        try {
          const entry = JSON.parse(line);
          for (const w of logWaiters.splice(0)) if (!w(entry)) logWaiters.push(w);
          if (entry.message === "hubbub-server listening" && entry.addr) {
            clearTimeout(timer);
            resolve(entry.addr);
          }
        } catch {
          // not JSON (e.g. a panic message): kept in logs for the failure report
        }
      }
    });
  });
  const addr = await ready;
  const port = Number(addr.split(":").pop());
  const exited = once(proc, "exit").then(([code, signal]) => ({ code, signal }));
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    proc,
    logs,
    exited,
    /** Resolves with the first log entry (parsed JSON) whose message is `message`, past or future. */
    logged(message) {
      const match = (e) => e.message === message;
      for (const line of logs) {
        try {
          const entry = JSON.parse(line);
          if (match(entry)) return Promise.resolve(entry);
        } catch {
          // not JSON
        }
      }
      return new Promise((resolve, reject) => {
        logWaiters.push((e) => match(e) && (resolve(e), true));
        exited.then(() => reject(new Error(`exited before logging "${message}":\n${logs.join("\n")}`)));
      });
    },
    async stop(signal = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/**
 * Connects with the official client and resolves once connected. `setup(socket)` runs
 * before the connection is made, to attach listeners for events sent on connection.
 */
export async function connect(url, opts = {}, setup = () => {}) {
  const socket = io(url, { reconnection: false, forceNew: true, ...opts });
  setup(socket);
  await Promise.race([
    once(socket, "connect"),
    once(socket, "connect_error").then(([err]) => {
      throw err;
    }),
  ]);
  return socket;
}

/** Resolves with the arguments of the next `event` on `emitter`, or rejects after `ms`. */
export function next(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, handler);
      reject(new Error(`timed out waiting for '${event}'`));
    }, ms);
    function handler(...args) {
      clearTimeout(timer);
      emitter.off(event, handler);
      resolve(args);
    }
    emitter.on(event, handler);
  });
}

/** Records every `event` received by `socket` (arguments arrays). */
export function record(socket, event) {
  const seen = [];
  socket.on(event, (...args) => seen.push(args));
  return seen;
}

/** Resolves once `predicate()` is true, checking after every `event` on `socket`. */
export function until(socket, event, predicate, ms = 5000) {
  return new Promise((resolve, reject) => {
    if (predicate()) return resolve();
    const timer = setTimeout(() => {
      socket.off(event, check);
      reject(new Error(`timed out waiting on '${event}'`));
    }, ms);
    function check() {
      if (predicate()) {
        clearTimeout(timer);
        socket.off(event, check);
        resolve();
      }
    }
    socket.on(event, check);
  });
}

/** Fetches a URL and returns { status, text, headers }. */
export async function get(url) {
  const res = await fetch(url);
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/**
 * Starts a private `redis-server` on a free loopback port with its own data directory and no
 * persistence. Returns { url, port, stop() }. Fails with the install command when it is missing.
 */
export async function startRedis() {
  const port = await freePort();
  const dir = await mkdtemp(path.join(os.tmpdir(), "hubbub-redis-"));
  const proc = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--dir", dir, "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  const logs = [];
  proc.stdout.setEncoding("utf8");
  proc.stdout.on("data", (c) => logs.push(c));
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`redis-server did not start:\n${logs.join("")}`)), 10000);
    proc.on("error", (err) => {
      clearTimeout(timer);
      reject(new Error(`redis-server could not run (${err.message}); install it: apt-get install redis-server`));
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`redis-server exited with ${code}:\n${logs.join("")}`));
    });
    proc.stdout.on("data", () => {
      if (logs.join("").includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  const exited = once(proc, "exit");
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A free TCP port on 127.0.0.1 (bound once by the OS, then released). */
export async function freePort() {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  server.close();
  await once(server, "close");
  return port;
}

/**
 * A TCP proxy on a free loopback port that forwards each new connection to the port it
 * currently points at, as a Kubernetes Service sends new connections to a ready pod.
 * `point(port)` re-points it (existing connections stay where they are); `point(null)`
 * refuses new connections. Returns { url, port, point, close }.
 */
export async function startProxy(target) {
  let current = target;
  const open = new Set();
  const server = net.createServer((client) => {
    if (current === null) {
      client.destroy();
      return;
    }
    const upstream = net.connect(current, "127.0.0.1");
    open.add(client);
    open.add(upstream);
    const done = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on("error", done).on("close", done);
    upstream.on("error", done).on("close", done);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    point(port) {
      current = port;
    },
    async close() {
      for (const s of open) s.destroy();
      server.close();
    },
  };
}
