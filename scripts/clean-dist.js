#!/usr/bin/env node
// Empties dist/ before a build: tsc never deletes the output of a source file that was moved or
// removed, and the test runner would still find and run a stale `*.test.js` left there.
import { rmSync } from 'node:fs';

rmSync(new URL('../dist/', import.meta.url), { recursive: true, force: true });
