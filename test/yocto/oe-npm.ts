/**
 * What OpenEmbedded does with the dmx-agent recipe, from do_unpack to
 * do_install, done on the host with the host's node and npm, so the package
 * can be shown to install and run the way a firmware image gets it. Written
 * from a reading of openembedded-core's npm.bbclass, lib/oe/npm_registry.py
 * and meta-oe's oe-npm-cache (wrynose and master, which the older releases
 * differ from only in details noted below); none of their code is reused.
 *
 *   unpack     the `npm pack` tarball into S (SRC_URI subdir=${BP};striplevel=1),
 *              the recipe's npm-shrinkwrap.json beside it, and every
 *              production dependency at its lock location under S/node_modules
 *              (taken from this repository's node_modules: the same files the
 *              registry tarballs hold, as `npm ci` unpacked them);
 *   configure  each dependency re-packed with tar and published into a local
 *              registry inside the npm cache (packument and tarball, keyed by
 *              registry URL, written with the cacache module of the npm that
 *              runs the install, as oe-npm-cache does with nodejs-native's);
 *              the shrinkwrap rewritten to those tarballs' integrity; the
 *              main package's dependencies pinned to the locked versions;
 *   compile    `npm install` of the main package, global, into an empty
 *              prefix, offline, production only, with the addon built from
 *              source by the node-gyp npm bundles, nodedir pointing at node's
 *              headers, a throw-away HOME, no user npmrc, and a PATH without
 *              this repository's node_modules/.bin;
 *   install    lib/ and bin/ copied into D, every node-gyp build directory
 *              reduced to its build/Release/*.node, shrinkwrap files removed.
 *
 * The recipe's own do_install:append then runs over D (test/yocto/recipe.ts).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { delimiter, dirname, join, relative } from 'node:path';

export const REGISTRY = 'https://registry.npmjs.org';

type Json = Record<string, unknown>;

export interface LockEntry {
  version?: string;
  resolved?: string;
  integrity?: string;
  dev?: boolean;
  inBundle?: boolean;
  name?: string;
  [key: string]: unknown;
}

export interface Shrinkwrap {
  name: string;
  version: string;
  lockfileVersion: number;
  packages: Record<string, LockEntry>;
  [key: string]: unknown;
}

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

/** The packages OE fetches and installs, as bitbake's foreach_dependencies() picks them (dev=False). */
export function productionLocations(shrinkwrap: Shrinkwrap): Array<[string, LockEntry]> {
  return Object.entries(shrinkwrap.packages).filter(
    ([location, entry]) => location.startsWith('node_modules/') && !entry.dev && !entry.inBundle,
  );
}

export function nameAt(location: string): string {
  return location.slice(location.lastIndexOf('node_modules/') + 'node_modules/'.length);
}

/** The npm that runs the install: its package directory, bundled node-gyp version and cacache module. */
export interface NpmInstallation {
  dir: string;
  nodeGypVersion: string;
  cacache: { put(cache: string, key: string, data: Buffer, options: Json): Promise<unknown> };
}

export function findNpm(path: string): NpmInstallation {
  const found = path
    .split(delimiter)
    .filter(Boolean)
    .map((dir) => join(dir, 'npm'))
    .find((candidate) => existsSync(candidate));
  if (!found) throw new Error('npm is not on PATH');
  let dir = dirname(realpathSync(found));
  while (!(existsSync(join(dir, 'package.json')) && readJson<Json>(join(dir, 'package.json')).name === 'npm')) {
    if (dirname(dir) === dir) throw new Error(`cannot find the npm package behind ${found}`);
    dir = dirname(dir);
  }
  const bundled = join(dir, 'node_modules');
  const nodeGyp = join(bundled, 'node-gyp', 'package.json');
  if (!existsSync(nodeGyp)) throw new Error(`${dir} bundles no node-gyp: lifecycle scripts could not build addons`);
  const require = createRequire(join(bundled, 'noop.js'));
  return {
    dir,
    nodeGypVersion: String(readJson<Json>(nodeGyp).version),
    cacache: require('cacache') as NpmInstallation['cacache'],
  };
}

/**
 * npm.bbclass's npm_pack(): a plain tar of a directory (node_modules and
 * version control left out) under "package/", at a fixed mtime; it runs no
 * lifecycle script, unlike `npm pack`. (scarthgap's class meant to leave
 * node_modules out too; a typo kept it in.)
 */
export function tarPackage(srcdir: string, workdir: string): { tarball: string; manifest: Json } {
  const manifest = readJson<Json>(join(srcdir, 'package.json'));
  const base = String(manifest.name).split('/').at(-1);
  const tarball = join(workdir, `${base}-${String(manifest.version ?? '0.0.0-unknown')}.tgz`);
  execFileSync(
    'tar',
    [
      'czf',
      tarball,
      '--exclude',
      './node_modules',
      '--exclude-vcs',
      '--transform',
      's,^\\./,package/,',
      '--mtime',
      '1985-10-26T08:15:00.000Z',
      '.',
    ],
    { cwd: srcdir },
  );
  return { tarball, manifest };
}

/** bitbake's npm_unpack(): the tarball's one top directory stripped, directories made searchable. */
export function untarPackage(tarball: string, destdir: string): void {
  mkdirSync(destdir, { recursive: true });
  execFileSync(
    'tar',
    [
      '--extract',
      '--gzip',
      `--file=${tarball}`,
      '--no-same-owner',
      '--delay-directory-restore',
      '--strip-components=1',
    ],
    { cwd: destdir },
  );
  execFileSync('chmod', ['-R', '+X', destdir]);
}

/** The base64 sha512 integrity npm records for a tarball. */
function integrityOf(file: string): string {
  return `sha512-${createHash('sha512').update(readFileSync(file)).digest('base64')}`;
}

/** Percent-encoding as npm writes registry keys: lower-case hex, a few characters safe. */
function uriQuote(text: string, safe: string): string {
  let out = '';
  for (const ch of text) {
    if (/[A-Za-z0-9_.\-~()]/.test(ch) || safe.includes(ch)) out += ch;
    else out += `%${ch.charCodeAt(0).toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** The fields of package.json npm needs in a packument version entry. */
const PACKUMENT_FIELDS = [
  'name',
  'description',
  'version',
  'bin',
  'man',
  'scripts',
  'directories',
  'dependencies',
  'devDependencies',
  'optionalDependencies',
  'license',
];

/** The local registry inside the npm cache that `npm install --offline` resolves from. */
class LocalRegistry {
  private readonly packuments = new Map<string, { name: string; description: string; versions: Json }>();

  constructor(
    private readonly dir: string,
    private readonly cache: string,
    private readonly npm: NpmInstallation,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  private put(key: string, data: Buffer, accept: string, contentType: string): Promise<unknown> {
    return this.npm.cacache.put(this.cache, `make-fetch-happen:request-cache:${key}`, data, {
      metadata: {
        time: Date.now(),
        url: key,
        reqHeaders: { accept },
        resHeaders: { 'content-type': contentType, status: 200 },
        options: { compress: true },
      },
    });
  }

  async add(tarball: string, manifest: Json): Promise<void> {
    const name = String(manifest.name);
    const version = String(manifest.version);
    const packumentUrl = `${REGISTRY}/${uriQuote(name, '@')}`;
    const tarballUrl = `${REGISTRY}/${uriQuote(name, '@')}/-/${uriQuote(name, '@/')}-${version}.tgz`;
    let packument = this.packuments.get(name);
    if (!packument) {
      packument = { name, description: String(manifest.description ?? ''), versions: {} };
      this.packuments.set(name, packument);
    }
    const entry: Json = {};
    for (const field of PACKUMENT_FIELDS) if (field in manifest) entry[field] = manifest[field];
    entry.description ??= '';
    entry.license ??= 'unknown';
    entry.dist = { tarball: tarballUrl };
    packument.versions[version] = entry;
    const file = join(this.dir, `${uriQuote(name, '@')}.meta`);
    writeJson(file, packument);
    await this.put(packumentUrl, readFileSync(file), 'application/json', 'application/json');
    await this.put(tarballUrl, readFileSync(tarball), '*/*', 'application/octet-stream');
  }
}

export interface Workdir {
  root: string;
  S: string;
  npmPackage: string;
  npmCache: string;
  npmBuild: string;
  D: string;
}

export function workdirIn(root: string): Workdir {
  return {
    root,
    S: join(root, 'S'),
    npmPackage: join(root, 'npm-package'),
    npmCache: join(root, 'npm-cache'),
    npmBuild: join(root, 'npm-build'),
    D: join(root, 'image'),
  };
}

/**
 * do_unpack: the package tarball and the shrinkwrap into S, each production
 * dependency from `modulesRoot` (a directory holding node_modules laid out as
 * the lock says) at its location, without its own nested node_modules (those
 * are locations of their own).
 */
export function unpack(work: Workdir, packageTarball: string, shrinkwrapFile: string, modulesRoot: string): void {
  untarPackage(packageTarball, work.S);
  copyFileSync(shrinkwrapFile, join(work.S, 'npm-shrinkwrap.json'));
  const shrinkwrap = readJson<Shrinkwrap>(shrinkwrapFile);
  for (const [location, entry] of productionLocations(shrinkwrap)) {
    const from = join(modulesRoot, location);
    const manifest = join(from, 'package.json');
    if (!existsSync(manifest) || readJson<Json>(manifest).version !== entry.version) {
      throw new Error(`${location}: node_modules does not hold version ${entry.version} as locked: run npm ci`);
    }
    const nested = join(from, 'node_modules');
    cpSync(from, join(work.S, location), {
      recursive: true,
      filter: (source) => source !== nested && !source.startsWith(`${nested}/`),
    });
  }
}

/** do_configure (npm_do_configure). */
export async function configure(work: Workdir, npm: NpmInstallation): Promise<void> {
  rmSync(work.npmCache, { recursive: true, force: true });
  rmSync(work.npmPackage, { recursive: true, force: true });
  const registry = new LocalRegistry(join(work.root, 'npm-registry'), join(work.npmCache, '_cacache'), npm);
  const manifest = readJson<Json>(join(work.S, 'package.json'));
  const shrinkwrap = readJson<Shrinkwrap>(join(work.S, 'npm-shrinkwrap.json'));
  if (!(shrinkwrap.lockfileVersion >= 2))
    throw new Error('npm-shrinkwrap.json: lockfileVersion 2 or later is required');

  const { dependencies: _dependencies, devDependencies: _devDependencies, ...cachedManifest } = manifest;
  const root = { ...shrinkwrap.packages[''] };
  delete root.dependencies;
  delete root.devDependencies;
  delete root.peerDependencies;
  const pinned: Record<string, string> = {};
  const cached: Shrinkwrap = { ...shrinkwrap, packages: { '': root } };

  const scratch = mkdtempSync(join(work.root, 'pack-'));
  for (const [location, entry] of productionLocations(shrinkwrap)) {
    const { tarball, manifest: dependency } = tarPackage(join(work.S, location), scratch);
    await registry.add(tarball, dependency);
    // As the class does: one map for every package name, nested ones included;
    // the last location of a name in lock order wins.
    pinned[nameAt(location)] = String(dependency.version);
    cached.packages[location] = { ...entry, version: String(dependency.version), integrity: integrityOf(tarball) };
    rmSync(tarball);
  }
  root.dependencies = pinned;

  const { tarball } = tarPackage(work.S, scratch);
  untarPackage(tarball, work.npmPackage);
  rmSync(scratch, { recursive: true, force: true });

  const dependencies: Record<string, string> = {};
  for (const name of Object.keys((manifest.dependencies ?? {}) as Record<string, string>)) {
    const version = pinned[name];
    if (version === undefined) throw new Error(`dependency ${name} is not in npm-shrinkwrap.json`);
    dependencies[name] = version;
  }
  writeJson(join(work.npmPackage, 'package.json'), { ...cachedManifest, dependencies });
  writeJson(join(work.npmPackage, 'npm-shrinkwrap.json'), cached);
}

/**
 * The environment a task runs npm in: no npm_* variables, a given HOME, and a
 * PATH without what npm and npx add for their scripts (node_modules/.bin
 * directories, npm's node-gyp-bin) or anything inside the repository.
 */
export function taskEnvironment(home: string, repo: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || key === 'DMX_NATIVE_ADDON' || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  env.HOME = home;
  env.PATH = (process.env.PATH ?? '')
    .split(delimiter)
    .filter((dir) => dir !== '' && relative(repo, dir).startsWith('..'))
    .filter((dir) => !/\/node_modules\/\.bin\/?$|\/node-gyp-bin\/?$/.test(dir))
    .join(delimiter);
  return env;
}

/** Where node's own headers are (npm.bbclass: NPM_NODEDIR, nodejs-native's prefix). */
export function nodeDir(): string {
  const prefix = dirname(dirname(process.execPath));
  const header = join(prefix, 'include', 'node', 'node_api.h');
  if (!existsSync(header)) {
    throw new Error(`node's headers are not at ${dirname(header)}: the addon cannot be built offline without them`);
  }
  return prefix;
}

export interface CompileResult {
  status: number | null;
  log: string;
}

/** do_compile (npm_do_compile): npm install of the configured package, global, into npmBuild. */
export function compile(work: Workdir, repo: string, deadlineMs: number): CompileResult {
  rmSync(work.npmBuild, { recursive: true, force: true });
  const home = mkdtempSync(join(work.root, 'home-'));
  const userconfig = join(work.root, 'npmrc');
  const configs: Array<[string, string]> = [
    ['offline', 'true'],
    ['proxy', 'http://invalid'],
    ['fund', 'false'],
    ['audit', 'false'],
    ['cache', work.npmCache],
    ['only', 'production'],
    ['loglevel', 'silly'],
    ['global', 'true'],
    ['prefix', work.npmBuild],
    ['arch', process.arch],
    ['release', 'true'],
    ['nodedir', nodeDir()],
    ['python', 'python3'],
    // Not set by the class: shows the install scripts' output (which node-gyp ran) in the log.
    ['foreground-scripts', 'true'],
  ];
  writeFileSync(userconfig, configs.map(([key, value]) => `${key}=${value}\n`).join(''));
  const scratch = mkdtempSync(join(work.root, 'pack-'));
  const { tarball } = tarPackage(work.npmPackage, scratch);
  const env = taskEnvironment(home, repo);
  env.NPM_CONFIG_USERCONFIG = userconfig;
  env.NPM_CONFIG_GLOBALCONFIG = '/dev/null';
  const result = spawnSync(
    'npm',
    ['install', tarball, `--target_arch=${process.arch}`, '--build-from-source=true', '--legacy-peer-deps=true'],
    { cwd: home, env, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024, timeout: deadlineMs },
  );
  rmSync(scratch, { recursive: true, force: true });
  const log = `${result.stdout ?? ''}${result.stderr ?? ''}${result.error ?? ''}`;
  writeFileSync(join(work.root, 'npm-install.log'), log);
  return { status: result.status, log };
}

/** Visits everything under dir; symbolic links are visited, not followed. */
function walk(dir: string, visit: (path: string) => void): void {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    visit(path);
    if (lstatSync(path).isDirectory()) walk(path, visit);
  }
}

const ADDON = /\/build\/Release\/[^/]*\.node$/;

/**
 * do_install (npm_do_install): npmBuild's lib/ and bin/ copied into D under
 * /usr; every node-gyp build directory in D dropped and only its
 * build/Release/*.node put back; the packages' npm-shrinkwrap.json removed.
 */
export function install(work: Workdir): void {
  rmSync(work.D, { recursive: true, force: true });
  const libdir = join(work.D, 'usr/lib');
  mkdirSync(libdir, { recursive: true });
  cpSync(join(work.npmBuild, 'lib'), libdir, { recursive: true, verbatimSymlinks: true });
  if (existsSync(join(work.npmBuild, 'bin'))) {
    cpSync(join(work.npmBuild, 'bin'), join(work.D, 'usr/bin'), { recursive: true, verbatimSymlinks: true });
  }
  const addons: string[] = [];
  walk(work.D, (path) => {
    if (ADDON.test(path)) addons.push(path);
  });
  for (const addon of addons) rmSync(addon.slice(0, addon.lastIndexOf('/Release/')), { recursive: true, force: true });
  const built: string[] = [];
  walk(work.npmBuild, (path) => {
    if (ADDON.test(path)) built.push(path);
  });
  for (const addon of built) {
    const target = join(work.D, 'usr', relative(work.npmBuild, addon));
    mkdirSync(dirname(target), { recursive: true });
    copyFileSync(addon, target);
    chmodSync(target, 0o755);
  }
  const modules = join(libdir, 'node_modules');
  for (const name of readdirSync(modules)) {
    const dirs = name.startsWith('@') ? readdirSync(join(modules, name)).map((sub) => join(name, sub)) : [name];
    for (const dir of dirs) rmSync(join(modules, dir, 'npm-shrinkwrap.json'), { force: true });
  }
}

/** Every file under a directory, relative to it (symlinks listed, not followed). */
export function listFiles(dir: string): string[] {
  const files: string[] = [];
  walk(dir, (path) => {
    if (!lstatSync(path).isDirectory()) files.push(relative(dir, path));
  });
  return files.sort();
}
