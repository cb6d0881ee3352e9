/**
 * Room: cli. Where the CLI finds the data directory.
 */
import { loadConfig } from '../config.js';

/** `--data-dir` when given, else BRIDGE_DATA_DIR (validated like the bridge does), else `./data`. */
export function dataDirOf(options: { dataDir?: string }): string {
  return options.dataDir ?? loadConfig(process.env).dataDir;
}

export function splitList(text: string | undefined): string[] {
  return (text ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
