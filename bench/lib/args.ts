/**
 * The benchmark's command line, shared by `node dist/bench/run.js`, `npm run bench --` and
 * `npx telebridge bench` (src/cli/bench.ts hands its arguments here): one parser, one usage text.
 */
import { parseArgs as parseNodeArgs } from 'node:util';

export interface BenchOptions {
  /** Scenario names to run, in the runner's order; default all. */
  readonly scenarios?: readonly string[];
  readonly quick?: boolean;
  /**
   * Profile the bridge (`--cpu-prof`) in a short extra run of every scenario that ran, and say in the
   * report what dominates each of its figures. Default: on in a full run, off with `quick`.
   */
  readonly profile?: boolean;
  /**
   * Also run the spool engine benchmark (bench/spool.ts) and keep its output (ingest with the spool
   * on and off is the `spool-ingest` scenario). Default: on in a full run of every scenario, off with
   * `quick`, `--only` or `--scenarios`.
   */
  readonly spool?: boolean;
  /** Directory for the results; default bench/results in the repository. */
  readonly outDir?: string;
  /** Label written into the report (e.g. `baseline before issue 14`). */
  readonly label?: string;
}

export type ParsedArgs = { readonly help: true } | { readonly help: false; readonly options: BenchOptions };

/** A command-line mistake: the message says what was wrong; print it with a pointer to --help. */
export class BenchArgsError extends Error {
  override readonly name = 'BenchArgsError';
}

export function usage(scenarios: readonly string[]): string {
  return `Usage: npm run bench -- [options]
       npx telebridge bench [options]
       node dist/bench/run.js [options]

Runs the benchmark scenarios on loopback, each bounded in time, with every system under test pinned
to core 0 and the load generator to core 1, and writes bench/results/<date>.json and .md (the
label appended when given), latest.json, latest.md and latest.svg. A full run takes about 15
minutes, --quick about 3. How each figure is measured: docs/benchmarks.md.

Options:
  --only <scenario>        run this one scenario
  --scenarios <a,b,...>    run these scenarios (comma-separated)
  --quick                  shorter runs and fewer connections
  --profile, --no-profile  profile the bridge in a short extra run of each scenario and report what
                           dominates each of its figures (default: on, off with --quick)
  --spool, --no-spool      also run the spool engine benchmark bench/spool.ts (default: on in a full
                           run of every scenario)
  --out <dir>              write the results here (default: bench/results)
  --label <text>           label the report (e.g. "baseline before issue 14")
  -h, --help               print this help and exit

Scenarios: ${scenarios.join(', ')}
`;
}

const SPEC = {
  help: { type: 'boolean', short: 'h' },
  only: { type: 'string', multiple: true },
  scenarios: { type: 'string', multiple: true },
  quick: { type: 'boolean' },
  profile: { type: 'boolean' },
  'no-profile': { type: 'boolean' },
  spool: { type: 'boolean' },
  'no-spool': { type: 'boolean' },
  out: { type: 'string' },
  label: { type: 'string' },
} as const;

/**
 * Parses the benchmark's arguments against the known scenario names. Throws BenchArgsError on an
 * unknown option or scenario, a missing value, a stray argument, or options that contradict.
 */
export function parseBenchArgs(argv: readonly string[], known: readonly string[]): ParsedArgs {
  let values: ReturnType<typeof parseNodeArgs<{ options: typeof SPEC; strict: true }>>['values'];
  try {
    ({ values } = parseNodeArgs({ args: [...argv], options: SPEC, strict: true, allowPositionals: false }));
  } catch (err) {
    const e = err as Error & { code?: string };
    const option = /'([^']+)'/.exec(e.message)?.[1];
    if (e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new BenchArgsError(`unknown option ${option}`);
    if (e.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL')
      throw new BenchArgsError(`unexpected argument ${option ?? ''}`.trim());
    if (e.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      const name = /--[\w-]+/.exec(e.message)?.[0] ?? option;
      throw new BenchArgsError(
        `option ${name} ${e.message.includes('argument missing') ? 'needs a value' : 'takes no value'}`,
      );
    }
    throw new BenchArgsError(e.message);
  }
  if (values.help) return { help: true };

  if (values.only && values.only.length > 1)
    throw new BenchArgsError('--only takes one scenario (use --scenarios a,b for several)');
  if (values.only && values.scenarios) throw new BenchArgsError('use either --only or --scenarios, not both');
  if (values.profile && values['no-profile'])
    throw new BenchArgsError('--profile and --no-profile contradict');
  if (values.spool && values['no-spool']) throw new BenchArgsError('--spool and --no-spool contradict');

  const listed = values.only
    ? values.only
    : values.scenarios?.flatMap((v) =>
        v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean),
      );
  if (listed && listed.length === 0) throw new BenchArgsError('--scenarios needs at least one scenario name');
  if (listed) {
    const unknown = listed.filter((n) => !known.includes(n));
    if (unknown.length)
      throw new BenchArgsError(`unknown scenario ${unknown.join(', ')}; known: ${known.join(', ')}`);
  }
  if (values.out === '') throw new BenchArgsError('--out needs a directory');
  return {
    help: false,
    options: {
      quick: values.quick === true,
      ...(listed ? { scenarios: known.filter((n) => listed.includes(n)) } : {}),
      ...(values.profile ? { profile: true } : values['no-profile'] ? { profile: false } : {}),
      ...(values.spool ? { spool: true } : values['no-spool'] ? { spool: false } : {}),
      ...(values.out ? { outDir: values.out } : {}),
      ...(values.label ? { label: values.label } : {}),
    },
  };
}
