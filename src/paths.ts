/**
 * Room: shared. Where the project's own files are at run time: the same code runs from `src/` (tsx) and from
 * `dist/src/` (compiled), so paths are found from the package root, not from this file.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | undefined;

/** The directory holding telebridge's package.json. */
export function projectRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir)
      throw new Error('telebridge: package.json not found above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
  root = dir;
  return dir;
}

/** The built-in `.proto` files. */
export function builtinSchemaDir(): string {
  return join(projectRoot(), 'src', 'schemas');
}
