// Copies the client from web/ (its one canonical copy, served by the server
// at /scopecast.js) and the LICENSE into this package before `npm pack` /
// `npm publish` (prepack); `--clean` removes the copies again (postpack).
// The copies are git-ignored.
import { copyFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const files = [
  [path.join(repo, 'web', 'scopecast.js'), 'scopecast.js'],
  [path.join(repo, 'web', 'scopecast.d.ts'), 'scopecast.d.ts'],
  [path.join(repo, 'LICENSE'), 'LICENSE'],
];

for (const [src, name] of files) {
  const dest = path.join(here, name);
  if (process.argv.includes('--clean')) rmSync(dest, { force: true });
  else copyFileSync(src, dest);
}
