// The npm package clients/js: `npm pack` gives a tarball with exactly web/'s
// scopecast.js and scopecast.d.ts (the server's copy), installable into a
// scratch npm project (CommonJS by default: no "type" in its package.json)
// without the registry; imported there by name it subscribes and receives an
// HTTP-emitted event from a real server, and it type-checks under --strict.
// Also: the single file saved as scopecast.mjs works in such a project.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync, mkdirSync, copyFileSync } from 'node:fs';
import path from 'node:path';
import { REPO, HERE, webRoot, startServer, run, scratchDir, linkTestModules, TSC } from './helpers.mjs';

const PKG_DIR = path.join(REPO, 'clients', 'js');
const NPM = process.env.SCOPECAST_NPM || 'npm';
const json = (file, obj) => writeFileSync(file, JSON.stringify(obj, null, 2) + '\n');
const serverVersion = () => /project\(scopecast VERSION ([0-9.]+)/.exec(readFileSync(path.join(REPO, 'CMakeLists.txt'), 'utf8'))[1];
/** Node flag that turns off ESM syntax detection in typeless files, where this Node has it. */
const NO_DETECT = process.allowedNodeEnvironmentFlags.has('--no-experimental-detect-module')
  ? ['--no-experimental-detect-module'] : [];

/** A script that subscribes with the client `spec` and receives an event emitted over HTTP. */
const checkScript = (spec) => `import WebSocket from 'ws';
import { connect } from '${spec}';

const [wsUrl, httpUrl] = process.argv.slice(2);
const client = connect(wsUrl, { WebSocket, pingInterval: 0, requestTimeout: 5000 });
const sub = client.subscribe('pkg:check');
await sub.ready;
const got = new Promise((resolve) => sub.once('event', resolve));
const r = await fetch(httpUrl + '/api/emit', {
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ scope: 'pkg:check', paths: ['p'], data: { from: 'http', n: 1 } }),
});
const ev = await got;
console.log(JSON.stringify({ status: r.status, scope: ev.scope, seq: ev.seq, data: ev.data }));
client.close();
`;

describe('npm package (clients/js)', () => {
  let scratch;
  let server;
  let tarball;
  let proj;
  before(async () => {
    scratch = scratchDir('package');
    server = await startServer({ demo: true });
  });
  after(async () => {
    await server?.stop();
    scratch?.cleanup();
  });

  const npm = (args, cwd) => run(NPM, [...args, '--no-audit', '--no-fund', '--loglevel=error',
    '--cache', path.join(scratch.dir, 'npm-cache')], {
    cwd, env: { ...process.env, npm_config_update_notifier: 'false' },
  });

  test('npm pack: web/ files, README, LICENSE; the server version; copies cleaned up', async () => {
    assert.ok(existsSync(path.join(PKG_DIR, 'package.json')), 'the npm package clients/js/package.json exists');
    const r = await npm(['pack', '--json', '--pack-destination', scratch.dir], PKG_DIR);
    assert.equal(r.code, 0, `npm pack failed:\n${r.stdout}\n${r.stderr}`);
    const [info] = JSON.parse(r.stdout.slice(r.stdout.indexOf('[')));
    assert.equal(info.name, 'scopecast');
    assert.equal(info.version, serverVersion(), 'clients/js/package.json version = CMakeLists.txt project VERSION');
    assert.deepEqual(info.files.map((f) => f.path).sort(),
      ['LICENSE', 'README.md', 'package.json', 'scopecast.d.ts', 'scopecast.js']);
    tarball = path.join(scratch.dir, info.filename);
    assert.ok(existsSync(tarball));
    const pkg = JSON.parse(readFileSync(path.join(PKG_DIR, 'package.json'), 'utf8'));
    assert.equal(pkg.type, 'module');
    assert.deepEqual(pkg.exports['.'], { types: './scopecast.d.ts', default: './scopecast.js' });
    for (const f of ['scopecast.js', 'scopecast.d.ts', 'LICENSE']) {
      assert.ok(!existsSync(path.join(PKG_DIR, f)), `postpack removed the copy clients/js/${f}`);
    }
  });

  test('installed from the tarball into a CommonJS-typed project: imported by name, subscribe + HTTP event', async () => {
    assert.ok(tarball, 'the pack test made the tarball');
    proj = path.join(scratch.dir, 'proj');
    mkdirSync(proj);
    json(path.join(proj, 'package.json'), { name: 'scratch', version: '1.0.0', private: true });
    const r = await npm(['install', '--offline', tarball, path.join(HERE, 'node_modules', 'ws')], proj);
    assert.equal(r.code, 0, `npm install failed:\n${r.stdout}\n${r.stderr}`);
    const installed = path.join(proj, 'node_modules', 'scopecast');
    for (const f of ['scopecast.js', 'scopecast.d.ts']) {
      assert.ok(readFileSync(path.join(installed, f)).equals(readFileSync(path.join(webRoot(), f))),
        `the packed ${f} is byte-identical to web/${f}`);
    }

    writeFileSync(path.join(proj, 'check.mjs'), checkScript('scopecast'));
    const c = await run(process.execPath, [...NO_DETECT, 'check.mjs', server.ws, server.http], { cwd: proj, timeout: 30000 });
    assert.equal(c.code, 0, `check.mjs failed:\n${c.stdout}\n${c.stderr}`);
    assert.doesNotMatch(c.stderr, /MODULE_TYPELESS_PACKAGE_JSON|Reparsing/);
    const out = JSON.parse(c.stdout.trim().split('\n').pop());
    assert.equal(out.status, 202);
    assert.equal(out.scope, 'pkg:check');
    assert.ok(out.seq >= 1);
    assert.deepEqual(out.data, { from: 'http', n: 1 });

    // CommonJS code of that project loads it with import().
    writeFileSync(path.join(proj, 'cjs.js'),
      "import('scopecast').then((m) => console.log(typeof m.connect, typeof m.default, m.PROTOCOL));\n");
    const cj = await run(process.execPath, [...NO_DETECT, 'cjs.js'], { cwd: proj });
    assert.equal(cj.code, 0, cj.stderr);
    assert.equal(cj.stdout.trim(), 'function function scopecast.v1');
  });

  test('the installed package type-checks under tsc --strict (nodenext, ws, @types/ws 8)', async () => {
    assert.ok(proj, 'the install test made the project');
    linkTestModules(proj, ['@types', 'undici-types']);
    // A .mts file: the project is CommonJS, the package is ESM.
    copyFileSync(path.join(HERE, 'types', 'node-usage.ts'), path.join(proj, 'usage.mts'));
    json(path.join(proj, 'tsconfig.json'), {
      compilerOptions: { target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2022'], types: ['node', 'ws'] },
      files: ['usage.mts'],
    });
    const r = await run(process.execPath, [TSC, '--noEmit', '--strict', '-p', 'tsconfig.json'], { cwd: proj });
    assert.equal(r.code, 0, `tsc failed:\n${r.stdout}${r.stderr}`);
  });

  test('the single file: as scopecast.mjs it loads in a CommonJS-typed project; as scopecast.js it does not load as ESM', async () => {
    const dir = path.join(scratch.dir, 'single');
    mkdirSync(dir);
    json(path.join(dir, 'package.json'), { name: 'single', version: '1.0.0', private: true });
    linkTestModules(dir, ['ws']);
    copyFileSync(path.join(webRoot(), 'scopecast.js'), path.join(dir, 'scopecast.mjs'));
    writeFileSync(path.join(dir, 'check.mjs'), checkScript('./scopecast.mjs'));
    const c = await run(process.execPath, [...NO_DETECT, 'check.mjs', server.ws, server.http], { cwd: dir, timeout: 30000 });
    assert.equal(c.code, 0, `check.mjs failed:\n${c.stdout}\n${c.stderr}`);
    assert.deepEqual(JSON.parse(c.stdout.trim().split('\n').pop()).data, { from: 'http', n: 1 });

    // What the README warns of: the same file as scopecast.js is CommonJS
    // there (an error, or a warning and a reparse where Node detects syntax).
    copyFileSync(path.join(webRoot(), 'scopecast.js'), path.join(dir, 'scopecast.js'));
    writeFileSync(path.join(dir, 'plain.mjs'), "import { connect } from './scopecast.js';\nconsole.log(typeof connect);\n");
    const p = await run(process.execPath, ['plain.mjs'], { cwd: dir });
    assert.ok(p.code !== 0 || /MODULE_TYPELESS_PACKAGE_JSON/.test(p.stderr), `expected a failure or a warning:\n${p.stderr}`);
  });
});
