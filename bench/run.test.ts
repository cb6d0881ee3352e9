/**
 * The benchmark's command line as a user runs it (child processes): `--help` prints usage and runs
 * nothing, a bad option is a clear error with exit code 2. Both entry points share one parser.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { projectRoot } from '../src/paths.js';
import { tempDir } from '../test/support/services.js';

const run = promisify(execFile);
const ENTRIES = {
  'node dist/bench/run.js': [join(projectRoot(), 'dist', 'bench', 'run.js')],
  'telebridge bench': [join(projectRoot(), 'bin', 'telebridge.js'), 'bench'],
};

for (const [label, entry] of Object.entries(ENTRIES)) {
  test(`${label} --help prints usage and exits without running anything`, async () => {
    const out = join(tempDir('bench-help'), 'results');
    try {
      const { stdout, stderr } = await run(
        process.execPath,
        [...entry, '--only', 'ingest', '--out', out, '--help'],
        {
          timeout: 20_000,
        },
      );
      assert.match(stdout, /^Usage: npm run bench -- \[options\]/);
      assert.match(stdout, /--only <scenario> +run this one scenario/);
      assert.match(stdout, /Scenarios: ingest, spool-ingest, mqtt-fanout, /);
      assert.doesNotMatch(stdout, /\[bench /, 'no scenario started');
      assert.equal(stderr, '');
      assert.equal(existsSync(out), false, 'no results written');
    } finally {
      rmSync(join(out, '..'), { recursive: true, force: true });
    }
  });

  test(`${label}: an unknown option or scenario is a clear error (exit 2)`, async () => {
    for (const [args, message] of [
      [['--bogus'], 'bench: unknown option --bogus (see --help)'],
      [
        ['--only', 'nope'],
        'bench: unknown scenario nope; known: ingest, spool-ingest, mqtt-fanout, live-fanout, live-fanout-scale, idle, storm, history-ingest, history-query, history-resume (see --help)',
      ],
    ] as const) {
      const err = (await run(process.execPath, [...entry, ...args], { timeout: 20_000 }).then(
        () => assert.fail(`${args.join(' ')} should fail`),
        (e: unknown) => e,
      )) as { code: number; stdout: string; stderr: string };
      assert.equal(err.code, 2, args.join(' '));
      assert.equal(err.stderr.trim(), message);
      assert.equal(err.stdout, '');
    }
  });
}

test('a label becomes part of the results file names', async () => {
  const { slug } = await import('./run.js');
  assert.equal(slug('baseline before issue 14'), 'baseline-before-issue-14');
  assert.equal(slug('  Issue 14: after / 2 cores '), 'issue-14-after-2-cores');
});
