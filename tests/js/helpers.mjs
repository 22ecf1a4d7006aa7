// Shared helpers of the JS tests: start/stop a real scopecast server, poll,
// run commands in scratch projects.
import { spawn } from 'node:child_process';
import {
  existsSync, statSync, readdirSync, mkdirSync, mkdtempSync, rmSync, symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { createHmac } from 'node:crypto';
import { createServer as createTcpServer, connect as tcpConnect } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, '..', '..');
export const ARTIFACTS = path.join(REPO, 'tests', 'artifacts');

function argValue(name) {
  const pre = `--${name}=`;
  const a = process.argv.find((x) => x.startsWith(pre));
  return a ? a.slice(pre.length) : null;
}

/** The server binary: $SCOPECAST_BIN, --bin=PATH, or the newest build-dir server/scopecast. */
export function serverBinary() {
  const bin = process.env.SCOPECAST_BIN || argValue('bin');
  if (bin) return path.resolve(bin);
  const found = readdirSync(REPO)
    .filter((d) => d.startsWith('build'))
    .map((d) => path.join(REPO, d, 'server', 'scopecast'))
    .filter((p) => existsSync(p))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
  if (!found.length) {
    throw new Error('scopecast binary not found: set SCOPECAST_BIN (or pass --bin=PATH)');
  }
  return found[0];
}

export function webRoot() {
  return path.resolve(process.env.SCOPECAST_WEB_ROOT || argValue('web-root') || path.join(REPO, 'web'));
}

export function artifactPath(name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn (sync or async) until it returns a truthy value; throws after `timeout` ms. */
export async function waitFor(fn, { timeout = 5000, interval = 20, message = 'condition' } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= end) {
      const why = last ? ` (last error: ${last.message})` : '';
      throw new Error(`timed out after ${timeout} ms waiting for ${message}${why}`);
    }
    await sleep(interval);
  }
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch { /* gone */ }
  }
});

/**
 * Starts scopecast on 127.0.0.1. port 0 lets the server pick a free port
 * (read back from its log). Resolves once /healthz answers 200.
 */
export async function startServer({ port = 0, demo = true, jwtSecret = null, args = [], timeout = 10000 } = {}) {
  const argv = ['--host', '127.0.0.1', '--port', String(port), '--web-root', webRoot(),
    '--drain-timeout', '1', '--log-level', process.env.SCOPECAST_TEST_LOG || 'info'];
  if (demo) argv.push('--demo');
  if (jwtSecret) argv.push('--jwt-secret', jwtSecret);
  argv.push(...args);
  const end = Date.now() + timeout;
  for (;;) {
    try {
      return await spawnOnce(argv, end);
    } catch (err) {
      // Restarting on the same port can race the old socket's release.
      if (port === 0 || Date.now() >= end || !/exited/.test(err.message)) throw err;
      await sleep(100);
    }
  }
}

function spawnOnce(argv, end) {
  const bin = serverBinary();
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('SCOPECAST_')) delete env[k];
  const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'], env });
  running.add(child);
  let log = '';
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    running.delete(child);
    resolve({ code, signal });
  }));
  return new Promise((resolve, reject) => {
    let done = false;
    const fail = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      try { child.kill('SIGKILL'); } catch { /* gone */ }
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`server did not start in time; log:\n${log}`)),
      Math.max(100, end - Date.now()));
    const onData = (buf) => {
      log += buf.toString();
      if (log.length > 200000) log = log.slice(-100000);
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m && !done) {
        const port = Number(m[1]);
        healthy(port, end).then(() => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve(new ServerHandle(child, port, exited, () => log));
        }, fail);
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    exited.then(({ code, signal }) => fail(new Error(`server exited (code ${code}, signal ${signal}) before it was ready; log:\n${log}`)));
    child.once('error', fail);
  });
}

async function healthy(port, end) {
  for (;;) {
    try {
      const r = await fetch(`http://127.0.0.1:${port}/healthz`);
      if (r.status === 200) return;
    } catch { /* not yet */ }
    if (Date.now() >= end) throw new Error('server did not answer /healthz in time');
    await sleep(20);
  }
}

class ServerHandle {
  constructor(child, port, exited, log) {
    this.child = child;
    this.pid = child.pid;
    this.port = port;
    this.exited = exited;
    this.log = log;
    this.http = `http://127.0.0.1:${port}`;
    this.ws = `ws://127.0.0.1:${port}/ws`;
  }
  get alive() {
    return this.child.exitCode === null && this.child.signalCode === null;
  }
  /** SIGTERM (graceful drain), SIGKILL after `grace` ms. */
  async stop(grace = 5000) {
    if (!this.alive) return this.exited;
    process.kill(this.pid, 'SIGTERM');
    const t = setTimeout(() => { if (this.alive) process.kill(this.pid, 'SIGKILL'); }, grace);
    const r = await this.exited;
    clearTimeout(t);
    return r;
  }
  /** SIGKILL: the server dies without closing anything. */
  async kill() {
    if (this.alive) process.kill(this.pid, 'SIGKILL');
    return this.exited;
  }
  pause() { process.kill(this.pid, 'SIGSTOP'); }
  resume() { process.kill(this.pid, 'SIGCONT'); }

  async demoToken(name) {
    const r = await fetch(`${this.http}/demo/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
    if (r.status !== 200) throw new Error(`/demo/token: HTTP ${r.status}`);
    return (await r.json()).token;
  }

  async apiEmit(body) {
    const r = await fetch(`${this.http}/api/emit`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: r.status, body: await r.json() };
  }
}

/** An HS256 JWT signed with `secret` (for claims the demo endpoint does not give). */
export function signJwt(claims, secret) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const head = b64({ alg: 'HS256', typ: 'JWT' });
  const body = b64({ exp: Math.floor(Date.now() / 1000) + 3600, ...claims });
  const sig = createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url');
  return `${head}.${body}.${sig}`;
}

/** A small seeded PRNG (mulberry32) for reproducible samples. */
export function seeded(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Runs a command; resolves with {code, signal, stdout, stderr} (never rejects
 * on a non-zero exit). Killed (SIGKILL) after `timeout` ms.
 */
export function run(cmd, args, { cwd, env, timeout = 120000, input = null } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd, env: env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b) => { stdout += b; });
    child.stderr.on('data', (b) => { stderr += b; });
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${timeout} ms]`;
      try { process.kill(child.pid, 'SIGKILL'); } catch { /* gone */ }
    }, timeout);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    child.stdin.end(input ?? undefined);
  });
}

/** A new empty directory under the system's temp dir (removed by `cleanup()`). */
export function scratchDir(prefix) {
  const dir = mkdtempSync(path.join(tmpdir(), `scopecast-${prefix}-`));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Links packages of tests/js/node_modules (e.g. 'ws', '@types') into
 * `dir`/node_modules, so a scratch project uses them without a registry.
 */
export function linkTestModules(dir, names) {
  const nm = path.join(dir, 'node_modules');
  mkdirSync(nm, { recursive: true });
  for (const name of names) {
    const src = path.join(HERE, 'node_modules', name);
    if (!existsSync(src)) throw new Error(`tests/js/node_modules/${name} missing: run tests/js/ensure-deps.sh`);
    mkdirSync(path.dirname(path.join(nm, name)), { recursive: true });
    symlinkSync(src, path.join(nm, name), 'dir');
  }
}

/** tsc of tests/js/node_modules (devDependency typescript); $SCOPECAST_TSC
 *  (a tsc script of another TypeScript version) overrides. */
export const TSC = process.env.SCOPECAST_TSC || path.join(HERE, 'node_modules', 'typescript', 'bin', 'tsc');

/**
 * A TCP proxy on 127.0.0.1 (a free port) to `target` (a port on 127.0.0.1):
 * clients go through it so that a test can cut their connections the way a
 * network does. kill(): every proxied connection is reset at once (the
 * client sees an abrupt close, the server a connection gone without a
 * closing handshake); block(): new connections are refused (reset) until
 * unblock(); close(): both and the listener. `http`/`ws` are its URLs.
 */
export function startProxy(target) {
  const pairs = new Set();
  let blocked = false;
  const cut = (sock) => {
    if (typeof sock.resetAndDestroy === 'function' && sock._handle) sock.resetAndDestroy();
    else sock.destroy();
  };
  const server = createTcpServer((down) => {
    if (blocked) {
      down.on('error', () => {});
      cut(down);
      return;
    }
    const up = tcpConnect(typeof target === 'number' ? target : target.port, '127.0.0.1');
    const pair = { down, up };
    pairs.add(pair);
    const end = () => {
      if (!pairs.delete(pair)) return;
      down.destroy();
      up.destroy();
    };
    for (const s of [down, up]) {
      s.setNoDelay(true);
      s.on('error', end);
      s.on('close', end);
    }
    down.pipe(up);
    up.pipe(down);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      resolve({
        port,
        http: `http://127.0.0.1:${port}`,
        ws: `ws://127.0.0.1:${port}/ws`,
        get connections() { return pairs.size; },
        get blocked() { return blocked; },
        /** Resets every proxied connection; returns how many there were. */
        kill() {
          const n = pairs.size;
          for (const pair of [...pairs]) {
            pairs.delete(pair);
            cut(pair.down);
            cut(pair.up);
          }
          return n;
        },
        block() { blocked = true; },
        unblock() { blocked = false; },
        close() {
          blocked = true;
          this.kill();
          return new Promise((r) => server.close(() => r()));
        },
      });
    });
  });
}
