/**
 * Headless Chromium for browser tests: Debian's /usr/bin/chromium driven by playwright-core (no
 * browser download). Missing binary: the suite says so loudly and skips; with CI=true it fails
 * (requireBinary).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { requireBinary } from './services.js';

/** Flags for a quiet, hermetic browser: no sandbox (containers), no GPU, no network besides the test's. */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** `{ skip }` when Chromium is missing (outside CI), else the binary's path. */
export function chromiumBinary(): { path?: string; skip?: string } {
  return requireBinary('chromium', 'chromium');
}

export async function launchChromium(executablePath: string): Promise<Browser> {
  return chromium.launch({ executablePath, headless: true, args: CHROMIUM_ARGS, timeout: 30_000 });
}

/** Where tests save screenshots (gitignored), created on demand. */
export function artifactPath(name: string): string {
  const dir = join(process.cwd(), 'test-artifacts');
  mkdirSync(dir, { recursive: true });
  return join(dir, name);
}
