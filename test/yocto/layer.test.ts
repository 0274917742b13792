// biome-ignore-all lint/suspicious/noTemplateCurlyInString: BitBake's ${VAR} expansions, written in plain strings
// yocto/meta-dmx-agent as BitBake reads it, without bitbake: every file in
// the accepted syntax, the variables the layer and the recipe must set, the
// files the recipe fetches and installs, the kernel fragment against the
// conformance VM's kernel configuration.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BitbakeData, loadBitbake, parseBitbakeFile, uriList } from './bitbake.js';
import {
  CONFIG_FILE,
  KERNEL_BBAPPEND,
  KERNEL_DIR,
  KERNEL_FRAGMENT,
  LAYER,
  LAYER_CONF,
  loadRecipe,
  packageJson,
  RECIPE_DIR,
  REPO,
  recipePath,
  SERVICE_FILE,
} from './layer.js';
import { taskEnvironment } from './oe-npm.js';

// Made before the tests run, not when the file loads: a file that fails to load leaves nothing behind.
let scratch = '';
beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'dmx-agent-layer-'));
});
afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? filesUnder(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

/** A BBFILES glob (`*` within one path component) as a regular expression. */
function globPattern(glob: string): RegExp {
  const escaped = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*');
  return new RegExp(`^${escaped}$`);
}

function md5Of(file: string, params: Record<string, string>): string {
  const lines = readFileSync(file, 'utf8').split(/(?<=\n)/);
  const begin = Number(params.beginline ?? 1);
  const end = Number(params.endline ?? lines.length);
  return createHash('md5')
    .update(lines.slice(begin - 1, end).join(''))
    .digest('hex');
}

/** `Key=value` settings of a systemd unit, every value of a key in order. */
function unitSettings(path: string): Map<string, string[]> {
  const settings = new Map<string, string[]>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match) settings.set(match[1]!, [...(settings.get(match[1]!) ?? []), match[2]!]);
  }
  return settings;
}

/** A kernel config fragment's options: CONFIG_X -> value ("n" for "# CONFIG_X is not set"). */
function kernelOptions(path: string): Map<string, string> {
  const options = new Map<string, string>();
  readFileSync(path, 'utf8')
    .split('\n')
    .forEach((line, index) => {
      const unset = /^# (CONFIG_[A-Z0-9_]+) is not set$/.exec(line);
      if (unset) options.set(unset[1]!, 'n');
      else if (line === '' || line.startsWith('#')) return;
      else {
        const set = /^(CONFIG_[A-Z0-9_]+)=(y|m|-?\d+|0x[0-9a-fA-F]+|"[^"]*")$/.exec(line);
        if (!set) throw new Error(`${path}:${index + 1}: not a Kconfig assignment: ${line}`);
        if (options.has(set[1]!)) throw new Error(`${path}:${index + 1}: ${set[1]} set twice`);
        options.set(set[1]!, set[2]!);
      }
    });
  return options;
}

/** Where BitBake looks for a recipe's file:// entries (FILESPATH, plus FILESEXTRAPATHS). */
function filesPath(data: BitbakeData, extra: string[] = []): string[] {
  const thisdir = data.get('THISDIR') ?? '';
  return [...extra, join(thisdir, data.get('BP') ?? ''), join(thisdir, data.get('BPN') ?? ''), join(thisdir, 'files')];
}

describe('meta-dmx-agent', () => {
  it('is written in the BitBake syntax the strict parser accepts, every file of it', () => {
    const files = filesUnder(LAYER).filter((file) => /\.(bb|bbappend|inc|conf)$/.test(file));
    expect(files.map((file) => relative(LAYER, file)).sort()).toEqual([
      'conf/layer.conf',
      'recipes-kernel/linux/linux-yocto_%.bbappend',
      'recipes-media/dmx-agent/dmx-agent-npm-sources.inc',
      `recipes-media/dmx-agent/${basename(recipePath())}`,
    ]);
    for (const file of files) expect(() => parseBitbakeFile(file), relative(REPO, file)).not.toThrow();
  });

  it('layer.conf: a collection for scarthgap and every later release, depending on core and meta-oe', () => {
    const conf = loadBitbake(LAYER_CONF, { LAYERDIR: LAYER });
    expect(conf.get('BBFILE_COLLECTIONS')?.trim()).toBe('dmx-agent');
    expect(conf.get('BBFILE_PATTERN_dmx-agent')).toBe(`^${LAYER}/`);
    expect(conf.get('BBFILE_PRIORITY_dmx-agent')).toMatch(/^\d+$/);
    expect(conf.get('LAYERVERSION_dmx-agent')).toMatch(/^\d+$/);
    expect(conf.get('BBPATH')).toBe(`:${LAYER}`);
    expect(conf.get('LAYERDEPENDS_dmx-agent')?.split(/\s+/).sort()).toEqual(['core', 'openembedded-layer']);
    expect(conf.get('LAYERSERIES_COMPAT_dmx-agent')?.split(/\s+/)).toEqual([
      'scarthgap',
      'styhead',
      'walnascar',
      'whinlatter',
      'wrynose',
      'blacksail',
    ]);
    // BBFILES finds the recipe and the bbappend, and nothing else.
    const globs = (conf.get('BBFILES') ?? '').split(/\s+/).filter(Boolean).map(globPattern);
    const found = filesUnder(LAYER).filter((file) => globs.some((glob) => glob.test(file)));
    expect(found.sort()).toEqual([KERNEL_BBAPPEND, recipePath()].sort());
  });
});

// Its npm pack --dry-run may be slow on a busy machine: deadlines against hangs only.
describe('the dmx-agent recipe', { timeout: 180_000 }, () => {
  const recipe = loadRecipe();
  const code = readFileSync(recipePath(), 'utf8')
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .join('\n');

  it("is named for package.json's version and inherits npm, systemd and useradd", () => {
    expect(basename(recipePath())).toBe(`dmx-agent_${packageJson.version}.bb`);
    expect(recipe.inherits).toEqual(expect.arrayContaining(['npm', 'systemd', 'useradd']));
    for (const name of ['SUMMARY', 'DESCRIPTION', 'SECTION']) expect(recipe.get(name), name).toBeTruthy();
  });

  it('declares the licenses of dmx-agent and its dependencies, with checksums of the files that state them', () => {
    const license = recipe.get('LICENSE') ?? '';
    expect(license.split(' & ')[0]).toBe(packageJson.license);
    expect(license).not.toContain('${');
    expect(license.split(/\s*&\s*/)).toEqual(expect.arrayContaining(['MIT', 'ISC']));
    const files = uriList(recipe.get('LIC_FILES_CHKSUM'));
    expect(files[0]?.url).toBe('file://LICENSE');
    // S holds the package and node_modules: the repository holds the same files.
    for (const { url, params } of files) {
      const path = join(REPO, url.replace(/^file:\/\//, ''));
      expect(existsSync(path), url).toBe(true);
      expect(md5Of(path, params), url).toBe(params.md5);
    }
    // The LICENSE file is the license package.json names (and npm packs it whatever "files" says).
    expect(packageJson.license).toBe('Apache-2.0');
    expect(readFileSync(join(REPO, 'LICENSE'), 'utf8')).toMatch(/^\s*Apache License\s+Version 2\.0, January 2004/);
  });

  it('fetches the npm pack tarball and the shrinkwrap into ${S}, and works on scarthgap (no UNPACKDIR)', () => {
    const sources = uriList(recipe.get('SRC_URI'));
    const bp = `dmx-agent-${packageJson.version}`;
    expect(sources[0]).toEqual({
      url: `file://${packageJson.name}-${packageJson.version}.tgz`,
      params: { subdir: bp, striplevel: '1' },
    });
    expect(sources[1]).toEqual({ url: 'file://npm-shrinkwrap.json', params: { subdir: bp } });
    // The tarball is built (`npm pack`), the shrinkwrap is in the layer.
    for (const { url } of sources.slice(1).filter(({ url }) => url.startsWith('file://'))) {
      const name = url.slice('file://'.length);
      expect(
        filesPath(recipe).some((dir) => existsSync(join(dir, name))),
        url,
      ).toBe(true);
    }
    // scarthgap has no UNPACKDIR; the default S (.../${BP}) is right everywhere.
    expect(code).not.toMatch(/UNPACKDIR|WORKDIR|^S\s*=/m);
  });

  it('installs the unit and the config from the package, both in the packed file list', () => {
    const body = recipe.functions.get('do_install:append')?.body ?? '';
    const fromS = [...body.matchAll(/\$\{S\}\/(\S+)/g)].map((match) => match[1]);
    expect(fromS.sort()).toEqual([CONFIG_FILE, SERVICE_FILE].sort());
    const home = mkdtempSync(join(scratch, 'home-'));
    const env = taskEnvironment(home, REPO);
    env.NPM_CONFIG_USERCONFIG = join(home, 'npmrc-none');
    const pack = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts', '--no-update-notifier'], {
      cwd: REPO,
      env,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 120_000,
    });
    expect(pack.status).toBe(0);
    const [report] = JSON.parse(pack.stdout) as Array<{ files: Array<{ path: string }> }>;
    const packed = new Set(report?.files.map((file) => file.path));
    for (const path of fromS) {
      expect(existsSync(join(REPO, path!)), path).toBe(true);
      expect(packed.has(path!), path).toBe(true);
    }
  });

  it("enables the unit, whose user, group and config path are the recipe's", () => {
    const unit = unitSettings(join(REPO, SERVICE_FILE));
    expect(recipe.get('SYSTEMD_SERVICE:dmx-agent')).toBe(basename(SERVICE_FILE));
    expect(recipe.get('SYSTEMD_AUTO_ENABLE:dmx-agent')).toBe('enable');
    expect(recipe.get('USERADD_PACKAGES')).toBe('dmx-agent');
    const useradd = (recipe.get('USERADD_PARAM:dmx-agent') ?? '').split(/\s+/);
    const user = useradd.at(-1);
    expect(useradd).toEqual(expect.arrayContaining(['--system', '--user-group', '--no-create-home']));
    expect(useradd[useradd.indexOf('--groups') + 1]).toBe('video');
    expect(useradd[useradd.indexOf('--shell') + 1]).toBe('/sbin/nologin');
    expect(unit.get('User')).toEqual([user]);
    expect(unit.get('Group')).toEqual([user]);
    expect(unit.get('SupplementaryGroups')).toEqual(['video']);
    const conffiles = (recipe.get('CONFFILES:dmx-agent') ?? '').split(/\s+/);
    expect(conffiles).toEqual(['/etc/dmx-agent/config.json']);
    expect(unit.get('ExecStart')).toEqual([`/usr/bin/dmx-agent run --config ${conffiles[0]}`]);
    // The MQTT override goes to the unit's state directory, writable when /etc is not.
    expect(unit.get('StateDirectory')).toEqual(['dmx-agent']);
    const config = JSON.parse(readFileSync(join(REPO, CONFIG_FILE), 'utf8')) as { overrideFile: string };
    expect(config.overrideFile.startsWith('/var/lib/dmx-agent/')).toBe(true);
  });

  it('maps the build directory node-gyp compiles in out of the debug information (buildpaths QA)', () => {
    expect(code).toMatch(/^DEBUG_PREFIX_MAP:append = " -ffile-prefix-map=\$\{NPM_BUILD\}=\$\{TARGET_DBGSRC_DIR\}"$/m);
  });
});

describe('the kernel fragment', () => {
  const options = kernelOptions(KERNEL_FRAGMENT);

  it('turns on the DVB mmap API, DVB core and DMABUF sharing', () => {
    expect(options.get('CONFIG_DVB_MMAP')).toBe('y');
    expect(['y', 'm']).toContain(options.get('CONFIG_DVB_CORE'));
    expect(options.get('CONFIG_DMA_SHARED_BUFFER')).toBe('y');
    // DVB_MMAP depends on VIDEO_DEV=y or VIDEO_DEV=DVB_CORE.
    expect([options.get('CONFIG_DVB_CORE'), 'y']).toContain(options.get('CONFIG_VIDEO_DEV'));
  });

  it('sets every option as test/kernel/kernel.config does (the kernel the conformance suite passes on)', () => {
    const vm = kernelOptions(join(REPO, 'test/kernel/kernel.config'));
    for (const [option, value] of options) expect(`${option}=${vm.get(option)}`).toBe(`${option}=${value}`);
  });

  it('is added to linux-yocto kernels by the bbappend', () => {
    const append = loadBitbake(KERNEL_BBAPPEND, { THISDIR: KERNEL_DIR, PN: 'linux-yocto' });
    expect(append.get('FILESEXTRAPATHS')).toBe(`${join(KERNEL_DIR, 'linux-yocto')}:`);
    const sources = uriList(append.get('SRC_URI'));
    expect(sources).toEqual([{ url: `file://${basename(KERNEL_FRAGMENT)}`, params: {} }]);
    expect(join(KERNEL_DIR, 'linux-yocto', basename(KERNEL_FRAGMENT))).toBe(KERNEL_FRAGMENT);
  });
});

describe('yocto/README.md', () => {
  const readme = readFileSync(join(REPO, 'yocto/README.md'), 'utf8');

  it('tells the firmware team what to add, what the kernel needs and how to check an image', () => {
    for (const text of [
      'BBLAYERS',
      'IMAGE_INSTALL:append = " dmx-agent"',
      'CONFIG_DVB_MMAP=y',
      'dmx-agent probe',
      'node yocto/update-npm-sources.mjs',
      relative(REPO, RECIPE_DIR),
    ]) {
      expect(readme, text).toContain(text);
    }
  });
});
