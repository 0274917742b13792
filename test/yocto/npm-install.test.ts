// The package as an OpenEmbedded image gets it: `npm pack` in a clean
// checkout (what CI releases and the recipe's SRC_URI names), then the
// recipe's do_unpack, npm.bbclass's do_configure, do_compile and do_install
// (test/yocto/oe-npm.ts), then the recipe's do_install:append, and the
// installed /usr/bin/dmx-agent run. Slow (TypeScript and the addon are
// compiled): the deadlines below only stop a hang, nothing is timed.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uriList } from './bitbake.js';
import { CONFIG_FILE, loadRecipe, packageJson, REPO, runInstallAppend, SERVICE_FILE, SHRINKWRAP } from './layer.js';
import {
  type CompileResult,
  compile,
  configure,
  findNpm,
  install,
  listFiles,
  type NpmInstallation,
  nameAt,
  productionLocations,
  type Shrinkwrap,
  taskEnvironment,
  unpack,
  type Workdir,
  workdirIn,
} from './oe-npm.js';

const BUILD_DEADLINE_MS = 20 * 60_000;
const RUN_DEADLINE_MS = 60_000;
/** For a test running commands: past their own deadline, so theirs reports first. */
const TEST_DEADLINE_MS = 2 * RUN_DEADLINE_MS;

const shrinkwrap = JSON.parse(readFileSync(SHRINKWRAP, 'utf8')) as Shrinkwrap;

interface Packed {
  filename: string;
  files: Array<{ path: string; mode: number }>;
}

let root = '';
let work: Workdir;
let npm: NpmInstallation;
let checkoutHadDist = true;
let packed: Packed;
let built: CompileResult;
let installAppend: ReturnType<typeof runInstallAppend>;
let installed = '';

/**
 * A checkout holding only what the package is built from: package.json,
 * tsconfig.json, agent/ and what "files" names (dist/ excepted), beside the
 * repository's node_modules (for tsc). No dist/: the pack must build it.
 */
function cleanCheckout(dir: string): void {
  const sources = new Set(['package.json', 'tsconfig.json', 'agent', 'README.md', 'LICENSE']);
  for (const entry of packageJson.files) sources.add(entry.replace(/\/$/, ''));
  sources.delete('dist');
  for (const source of sources) {
    if (existsSync(join(REPO, source))) cpSync(join(REPO, source), join(dir, source), { recursive: true });
  }
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'));
}

function npmPack(checkout: string, destination: string): Packed {
  const home = mkdtempSync(join(root, 'home-'));
  const env = taskEnvironment(home, REPO);
  env.NPM_CONFIG_USERCONFIG = join(home, 'npmrc-none');
  const result = spawnSync('npm', ['pack', '--json', '--pack-destination', destination], {
    cwd: checkout,
    env,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
    timeout: BUILD_DEADLINE_MS,
  });
  if (result.status !== 0) throw new Error(`npm pack failed (${result.status}):\n${result.stdout}${result.stderr}`);
  const [report] = JSON.parse(result.stdout) as Packed[];
  if (!report) throw new Error(`npm pack reported nothing:\n${result.stdout}`);
  return report;
}

/** Runs the installed command the way a shell on the receiver would. */
function dmxAgent(...args: string[]) {
  const home = mkdtempSync(join(root, 'home-'));
  const env = taskEnvironment(home, REPO);
  for (const key of Object.keys(env)) if (key.startsWith('DMX_')) delete env[key];
  return spawnSync(join(work.D, 'usr/bin/dmx-agent'), args, { env, encoding: 'utf8', timeout: RUN_DEADLINE_MS });
}

function md5Lines(file: string, params: Record<string, string>): string {
  const text = readFileSync(file);
  if (!params.beginline && !params.endline) return createHash('md5').update(text).digest('hex');
  const lines = text.toString('utf8').split(/(?<=\n)/);
  const begin = Number(params.beginline ?? 1);
  const end = Number(params.endline ?? lines.length);
  return createHash('md5')
    .update(lines.slice(begin - 1, end).join(''))
    .digest('hex');
}

function interpreterLine(file: string): string | null {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(256);
    const length = readSync(fd, buffer, 0, buffer.length, 0);
    const head = buffer.subarray(0, length).toString('latin1');
    return head.startsWith('#!') ? (head.slice(2).split('\n')[0] ?? '').trim() : null;
  } finally {
    closeSync(fd);
  }
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'dmx-agent-oe-'));
  work = workdirIn(root);
  npm = findNpm(taskEnvironment(root, REPO).PATH ?? '');

  const checkout = join(root, 'checkout');
  mkdirSync(checkout);
  cleanCheckout(checkout);
  checkoutHadDist = existsSync(join(checkout, 'dist'));
  const release = join(root, 'release');
  mkdirSync(release);
  packed = npmPack(checkout, release);

  unpack(work, join(release, packed.filename), SHRINKWRAP, REPO);
  await configure(work, npm);
  built = compile(work, REPO, BUILD_DEADLINE_MS);
  if (built.status !== 0) throw new Error(`npm install failed (${built.status}):\n${built.log.slice(-20_000)}`);
  install(work);
  installed = join(work.D, 'usr/lib/node_modules', packageJson.name);
  installAppend = runInstallAppend(work.S, work.D, root);
}, BUILD_DEADLINE_MS);

afterAll(() => {
  // The checkout's node_modules is a symbolic link: removed, not followed.
  if (root) rmSync(root, { recursive: true, force: true });
  if (root) expect(existsSync(root)).toBe(false);
  expect(existsSync(join(REPO, 'node_modules', '.package-lock.json'))).toBe(true);
});

describe('the package as OpenEmbedded installs it', { timeout: TEST_DEADLINE_MS }, () => {
  it('npm pack builds dist/ in a clean checkout and packs what the recipe needs, and no build output', () => {
    expect(checkoutHadDist).toBe(false);
    expect(packed.filename).toBe(`${packageJson.name}-${packageJson.version}.tgz`);
    const files = packed.files.map((file) => file.path);
    for (const needed of [
      packageJson.bin['dmx-agent']!,
      'dist/agent/native/index.js',
      'dist/agent/mqtt/schemas',
      'native/binding.gyp',
      'native/common.gypi',
      'native/src/addon.cc',
      'config/default.json',
      SERVICE_FILE,
      CONFIG_FILE,
    ]) {
      expect(
        files.some((file) => file === needed || file.startsWith(`${needed}/`)),
        needed,
      ).toBe(true);
    }
    const unwanted = files.filter((file) => /(^|\/)(node_modules|build|test)\/|\.node$|^agent\//.test(file));
    expect(unwanted).toEqual([]);
  });

  it('installs offline the locked production packages, a tree npm finds valid, no devDependency', () => {
    // npm.bbclass pins every package name at the root of the shrinkwrap, the
    // last location of a name winning (buffer 5.7.1 over 6.0.3): npm then
    // hoists differently from the lock, but installs the same name@versions.
    const packageRoot = /^node_modules\/(?:@[^/]+\/)?[^/]+(?:\/node_modules\/(?:@[^/]+\/)?[^/]+)*$/;
    const present = new Set(
      listFiles(installed)
        .filter((file) => file.endsWith('/package.json'))
        .map((file) => file.slice(0, -'/package.json'.length))
        .filter((dir) => packageRoot.test(dir))
        .map((dir) => {
          const manifest = JSON.parse(readFileSync(join(installed, dir, 'package.json'), 'utf8')) as Record<
            string,
            string
          >;
          return `${manifest.name}@${manifest.version}`;
        }),
    );
    const locked = new Set(
      productionLocations(shrinkwrap).map(([location, entry]) => `${nameAt(location)}@${entry.version}`),
    );
    expect([...present].sort()).toEqual([...locked].sort());
    // @types/node and @types/ws are devDependencies and also in mqtt's production tree; the rest must be absent.
    const lockedNames = new Set([...locked].map((id) => id.slice(0, id.lastIndexOf('@'))));
    const devOnly = Object.keys(packageJson.devDependencies).filter((name) => !lockedNames.has(name));
    expect(devOnly).toContain('node-gyp');
    for (const name of devOnly) expect(existsSync(join(installed, 'node_modules', name)), name).toBe(false);
    const home = mkdtempSync(join(root, 'home-'));
    const env = taskEnvironment(home, REPO);
    env.NPM_CONFIG_USERCONFIG = join(home, 'npmrc-none');
    const ls = spawnSync('npm', ['ls', '--all', '--json', '--offline', '--no-update-notifier'], {
      cwd: installed,
      env,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: RUN_DEADLINE_MS,
    });
    expect((JSON.parse(ls.stdout) as { problems?: string[] }).problems ?? []).toEqual([]);
    expect(ls.status).toBe(0);
  });

  it("builds the addon from source with npm's own node-gyp and keeps only the .node (npm.bbclass)", () => {
    // The task's PATH has no node-gyp: the one that ran is npm's (npm_config_node_gyp).
    expect(built.log).toContain(`gyp verb cli '${join(npm.dir, 'node_modules/node-gyp/bin/node-gyp.js')}'`);
    expect(built.log).toContain(`gyp info using node-gyp@${npm.nodeGypVersion}`);
    expect(built.log).toContain('gyp info ok');
    expect(listFiles(join(installed, 'native/build'))).toEqual(['Release/dmx_native.node']);
  });

  it("/usr/bin/dmx-agent --version prints package.json's version", () => {
    const run = dmxAgent('--version');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toBe(`${packageJson.version}\n`);
  });

  it('probe --sim reports a usable media path on the simulated receiver', () => {
    const run = dmxAgent('probe', '--sim');
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    const result = JSON.parse(run.stdout) as {
      backend: string;
      adapters: Array<{ demuxMmap: boolean; dvrMmap: boolean }>;
      decoders: Array<{ supportsDmabufImport: boolean }>;
      mediaPathUsable: boolean;
      problems: string[];
    };
    expect(result.backend).toBe('sim');
    expect(result.adapters.some((adapter) => adapter.demuxMmap && adapter.dvrMmap)).toBe(true);
    expect(result.decoders.some((decoder) => decoder.supportsDmabufImport)).toBe(true);
    expect(result).toMatchObject({ mediaPathUsable: true, problems: [] });
  });

  it('check-config accepts the packaged simulation config, read with the packaged defaults', () => {
    const run = dmxAgent('check-config', '--config', join(installed, 'config/development.json'));
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toMatch(/^configuration valid: backend sim, 2 stream\(s\): hd, sd\n$/);
  });

  it('do_install:append installs the unit and the config, the config for the agent group only', () => {
    expect(installAppend.output).toBe('');
    expect(installAppend.status).toBe(0);
    const unit = join(work.D, 'lib/systemd/system/dmx-agent.service');
    const config = join(work.D, 'etc/dmx-agent/config.json');
    expect(readFileSync(unit, 'utf8')).toBe(readFileSync(join(REPO, SERVICE_FILE), 'utf8'));
    expect(readFileSync(config, 'utf8')).toBe(readFileSync(join(REPO, CONFIG_FILE), 'utf8'));
    expect(statSync(unit).mode & 0o777).toBe(0o644);
    expect(statSync(config).mode & 0o777).toBe(0o640);
    expect(statSync(join(work.D, 'etc/dmx-agent')).mode & 0o777).toBe(0o750);
    const recipe = loadRecipe();
    const groups = installAppend.ownership.filter(([command]) => command === 'chgrp').map(([, group]) => group);
    expect(groups).toEqual(['dmx-agent']);
    expect(recipe.get('USERADD_PARAM:dmx-agent')).toMatch(/--user-group\b.*\bdmx-agent$/);
    expect(installAppend.ownership[0]?.slice(2)).toEqual([join(work.D, 'etc/dmx-agent'), config]);
  });

  it('ships no script whose interpreter the image lacks (file-rdeps QA)', () => {
    // /bin/sh and /usr/bin/env are always there (insane.bbclass ignores them); node is RDEPENDS.
    const allowed = /^(\/bin\/sh|\/usr\/bin\/env (node|sh)|\/usr\/bin\/node)(\s|$)/;
    const offending: string[] = [];
    for (const file of listFiles(work.D)) {
      const path = join(work.D, file);
      const stat = statSync(path, { throwIfNoEntry: false });
      if (!stat?.isFile() || (stat.mode & 0o111) === 0) continue;
      const interpreter = interpreterLine(path);
      if (interpreter !== null && !allowed.test(interpreter)) offending.push(`${file}: #!${interpreter}`);
    }
    expect(offending).toEqual([]);
  });

  it("LIC_FILES_CHKSUM's checksums match the files in S", () => {
    const entries = uriList(loadRecipe().get('LIC_FILES_CHKSUM'));
    expect(entries.length).toBe(productionLocations(shrinkwrap).length + 1);
    for (const { url, params } of entries) {
      const file = join(work.S, url.replace(/^file:\/\//, ''));
      expect(md5Lines(file, params), url).toBe(params.md5);
    }
  });
});
