#!/usr/bin/env node
// The `telebridge` command: runs the compiled CLI (npm ci builds it through `prepare`).
import { run } from '../dist/src/cli/index.js';

await run();
