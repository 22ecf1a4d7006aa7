// TypeScript checks of web/scopecast.d.ts: usage examples (types/*.ts) must
// compile with `tsc --noEmit --strict`, in Node with the `ws` package and
// @types/ws 8, and in a page with the DOM lib. The examples import
// 'scopecast'; here that resolves to a package made of web/'s two files.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { HERE, webRoot, run, scratchDir, linkTestModules, TSC } from './helpers.mjs';

const json = (file, obj) => writeFileSync(file, JSON.stringify(obj, null, 2) + '\n');

/** Runs tsc with --noEmit --strict on a tsconfig; fails with tsc's output. */
async function tsc(dir, config) {
  const r = await run(process.execPath, [TSC, '--noEmit', '--strict', '-p', config], { cwd: dir });
  assert.equal(r.code, 0, `tsc -p ${config} --noEmit --strict failed:\n${r.stdout}${r.stderr}`);
}

describe('scopecast.d.ts under tsc --strict', () => {
  let scratch;
  before(() => {
    scratch = scratchDir('types');
    const { dir } = scratch;
    json(path.join(dir, 'package.json'), { name: 'types-check', private: true, type: 'module' });
    const pkg = path.join(dir, 'node_modules', 'scopecast');
    mkdirSync(pkg, { recursive: true });
    json(path.join(pkg, 'package.json'), {
      name: 'scopecast', version: '0.0.0', type: 'module',
      exports: { '.': { types: './scopecast.d.ts', default: './scopecast.js' } },
    });
    for (const f of ['scopecast.js', 'scopecast.d.ts']) copyFileSync(path.join(webRoot(), f), path.join(pkg, f));
    linkTestModules(dir, ['ws', '@types', 'undici-types']);
    for (const f of ['node-usage.ts', 'browser-usage.ts']) copyFileSync(path.join(HERE, 'types', f), path.join(dir, f));
    const base = { target: 'es2022', skipLibCheck: false, forceConsistentCasingInFileNames: true };
    json(path.join(dir, 'tsconfig.node.json'), {
      compilerOptions: { ...base, module: 'nodenext', moduleResolution: 'nodenext', lib: ['es2022'], types: ['node', 'ws'] },
      files: ['node-usage.ts'],
    });
    json(path.join(dir, 'tsconfig.browser.json'), {
      compilerOptions: { ...base, module: 'esnext', moduleResolution: 'bundler', lib: ['es2022', 'dom', 'dom.iterable'], types: [] },
      files: ['browser-usage.ts'],
    });
  });
  after(() => scratch?.cleanup());

  test('Node: connect(url, { WebSocket }) with ws and @types/ws 8 compiles under --strict', async () => {
    await tsc(scratch.dir, 'tsconfig.node.json');
  });

  test('browser: DOM WebSocket, events, errors compile under --strict', async () => {
    await tsc(scratch.dir, 'tsconfig.browser.json');
  });
});
