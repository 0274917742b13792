// The recipe's npm-shrinkwrap.json and its generated SRC_URI include: in step
// with package-lock.json and package.json, production packages only, every
// one fetched from the registry and checked against its locked sha512.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uriList } from './bitbake.js';
import { GENERATOR, loadRecipe, packageJson, REPO, SHRINKWRAP } from './layer.js';
import { nameAt, productionLocations, type Shrinkwrap, taskEnvironment } from './oe-npm.js';

const DEADLINE_MS = 120_000;
const shrinkwrap = JSON.parse(readFileSync(SHRINKWRAP, 'utf8')) as Shrinkwrap;
// Made before the tests run, not when the file loads: a file that fails to load leaves nothing behind.
let scratch = '';
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'dmx-agent-shrinkwrap-'));
});
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

/**
 * `npm ls --all --package-lock-only` over a package.json and a shrinkwrap: npm
 * checks every dependency edge of the locked tree against its range. The
 * devDependencies are dropped from package.json, as npm.bbclass drops them.
 */
function npmLsLocked(lock: Shrinkwrap): { status: number | null; problems: string[] } {
  const dir = mkdtempSync(join(scratch, 'ls-'));
  const { devDependencies: _dev, ...manifest } = packageJson;
  writeFileSync(join(dir, 'package.json'), JSON.stringify(manifest, null, 2));
  writeFileSync(join(dir, 'npm-shrinkwrap.json'), JSON.stringify(lock, null, 2));
  const env = taskEnvironment(dir, REPO);
  env.NPM_CONFIG_USERCONFIG = join(dir, 'npmrc-none');
  const result = spawnSync(
    'npm',
    ['ls', '--all', '--json', '--package-lock-only', '--offline', '--no-update-notifier'],
    { cwd: dir, env, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: DEADLINE_MS },
  );
  const report = JSON.parse(result.stdout || '{}') as { problems?: string[] };
  return { status: result.status, problems: report.problems ?? [] };
}

function sha512Hex(integrity: string | undefined): string {
  return Buffer.from(String(integrity).replace(/^sha512-/, ''), 'base64').toString('hex');
}

// npm and node run here: deadlines against hangs only.
describe("the recipe's npm-shrinkwrap.json", { timeout: 3 * DEADLINE_MS }, () => {
  it('is what yocto/update-npm-sources.mjs makes of package-lock.json now (with the SRC_URI include)', () => {
    const run = spawnSync(process.execPath, [GENERATOR, '--check'], {
      cwd: REPO,
      encoding: 'utf8',
      timeout: DEADLINE_MS,
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it("is lockfileVersion 2 or later, for package.json's name, version and dependency ranges", () => {
    expect(shrinkwrap.lockfileVersion).toBeGreaterThanOrEqual(2);
    expect(shrinkwrap.name).toBe(packageJson.name);
    expect(shrinkwrap.version).toBe(packageJson.version);
    const root = shrinkwrap.packages[''];
    expect(root).toMatchObject({ name: packageJson.name, version: packageJson.version });
    expect(root?.dependencies).toEqual(packageJson.dependencies);
    expect(root?.devDependencies).toBeUndefined();
  });

  it('locks versions that satisfy every range in the tree (npm ls), which npm ls does check', () => {
    expect(npmLsLocked(shrinkwrap)).toEqual({ status: 0, problems: [] });
    // The control: a direct dependency locked outside its range is reported.
    const broken = structuredClone(shrinkwrap);
    const ws = broken.packages['node_modules/ws'];
    if (!ws) throw new Error('ws is not locked');
    ws.version = '7.5.10';
    const report = npmLsLocked(broken);
    expect(report.status).not.toBe(0);
    expect(report.problems.join('\n')).toContain('invalid: ws@7.5.10');
  });

  it('holds only production packages from the npm registry, each with its sha512, none tied to a platform', () => {
    const entries = Object.entries(shrinkwrap.packages).filter(([location]) => location !== '');
    expect(entries.length).toBeGreaterThan(0);
    expect(productionLocations(shrinkwrap)).toHaveLength(entries.length);
    for (const [location, entry] of entries) {
      expect(location, location).toMatch(/^node_modules\//);
      expect(entry.dev, location).toBeUndefined();
      expect(entry.resolved, location).toBe(
        `https://registry.npmjs.org/${nameAt(location)}/-/${nameAt(location).split('/').at(-1)}-${entry.version}.tgz`,
      );
      expect(entry.integrity, location).toMatch(/^sha512-[A-Za-z0-9+/]{86}==$/);
      for (const field of ['os', 'cpu', 'libc', 'link', 'inBundle'])
        expect(entry[field], `${location} ${field}`).toBeUndefined();
    }
  });

  it('gives npm.bbclass the locked top-level version of every direct dependency', () => {
    // The class pins package.json's dependencies from one name -> version map
    // of all locations, the last in lock order winning: a direct dependency
    // also nested at a later location with another version would be
    // installed at that other version.
    const pinned = new Map<string, string>();
    for (const [location, entry] of productionLocations(shrinkwrap))
      pinned.set(nameAt(location), String(entry.version));
    for (const name of Object.keys(packageJson.dependencies)) {
      expect(pinned.get(name), name).toBe(shrinkwrap.packages[`node_modules/${name}`]?.version);
    }
  });
});

describe("the recipe's SRC_URI", () => {
  const sources = uriList(loadRecipe().get('SRC_URI'));

  it('fetches each shrinkwrap package once, from its resolved URL, checked against its sha512, unpacked at its location', () => {
    const fetched = sources.filter(({ url }) => url.startsWith('https://'));
    const locations = productionLocations(shrinkwrap);
    expect(fetched).toHaveLength(locations.length);
    // A download name stands for one tarball (the same package at two locations shares it).
    const downloads = new Map<string, string>();
    for (const [location, entry] of locations) {
      const source = fetched.find(({ params }) => params.subdir === `dmx-agent-${packageJson.version}/${location}`);
      expect(source, location).toBeDefined();
      expect(source?.url).toBe(entry.resolved);
      expect(source?.params).toMatchObject({ striplevel: '1', sha512sum: sha512Hex(entry.integrity) });
      const name = String(source?.params.downloadfilename);
      const tarball = `${source?.url} ${source?.params.sha512sum}`;
      expect(downloads.get(name) ?? tarball, name).toBe(tarball);
      downloads.set(name, tarball);
    }
  });

  it('uses neither npm:// nor npmsw:// (bitbake 2.18, wrynose, and later skip recipes that do)', () => {
    expect(sources.filter(({ url }) => /^npm(sw)?:\/\//.test(url))).toEqual([]);
  });
});
