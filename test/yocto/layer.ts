/** Paths of the Yocto layer, and its recipe read the way BitBake would read it. */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BitbakeData, loadBitbake } from './bitbake.js';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const LAYER = join(REPO, 'yocto/meta-dmx-agent');
export const LAYER_CONF = join(LAYER, 'conf/layer.conf');
export const RECIPE_DIR = join(LAYER, 'recipes-media/dmx-agent');
export const SHRINKWRAP = join(RECIPE_DIR, 'dmx-agent/npm-shrinkwrap.json');
export const SOURCES_INC = join(RECIPE_DIR, 'dmx-agent-npm-sources.inc');
export const KERNEL_DIR = join(LAYER, 'recipes-kernel/linux');
export const KERNEL_FRAGMENT = join(KERNEL_DIR, 'linux-yocto/dmx-agent.cfg');
export const KERNEL_BBAPPEND = join(KERNEL_DIR, 'linux-yocto_%.bbappend');
export const GENERATOR = join(REPO, 'yocto/update-npm-sources.mjs');
/** The files the lead's deploy/ provides and the recipe installs. */
export const SERVICE_FILE = 'deploy/systemd/dmx-agent.service';
export const CONFIG_FILE = 'deploy/config/config.json';

export const packageJson = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  name: string;
  version: string;
  license: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  files: string[];
  bin: Record<string, string>;
  scripts: Record<string, string>;
};

/** The one dmx-agent recipe: dmx-agent_<version>.bb. */
export function recipePath(): string {
  const recipes = readdirSync(RECIPE_DIR).filter((name) => /^dmx-agent_.*\.bb$/.test(name));
  if (recipes.length !== 1) throw new Error(`expected one dmx-agent_<version>.bb in ${RECIPE_DIR}, found ${recipes}`);
  return join(RECIPE_DIR, recipes[0]!);
}

/**
 * OE's directory variables (bitbake.conf, without usrmerge) and the recipe's
 * own names, as BitBake derives them from the file name. S and D are where
 * the caller says; by default markers that are easy to strip.
 */
export function recipeVariables(paths: { S?: string; D?: string } = {}): Record<string, string> {
  const file = recipePath();
  const [pn = '', pv = ''] = basename(file, '.bb').split('_');
  return {
    FILE: file,
    THISDIR: RECIPE_DIR,
    PN: pn,
    BPN: pn,
    PV: pv,
    BP: `${pn}-${pv}`,
    S: paths.S ?? '/@S@',
    D: paths.D ?? '/@D@',
    prefix: '/usr',
    exec_prefix: '/usr',
    bindir: '/usr/bin',
    sbindir: '/usr/sbin',
    libdir: '/usr/lib',
    nonarch_libdir: '/usr/lib',
    datadir: '/usr/share',
    sysconfdir: '/etc',
    localstatedir: '/var',
    base_bindir: '/bin',
    base_sbindir: '/sbin',
    nonarch_base_libdir: '/lib',
    systemd_unitdir: '/lib/systemd',
    systemd_system_unitdir: '/lib/systemd/system',
  };
}

export function loadRecipe(paths: { S?: string; D?: string } = {}): BitbakeData {
  return loadBitbake(recipePath(), recipeVariables(paths));
}

/**
 * Runs the recipe's do_install:append over an image directory, with sh and
 * `set -e` as BitBake runs shell tasks. chown and chgrp only record their
 * arguments (the build user cannot hand files to the recipe's users; under
 * pseudo, BitBake's can).
 */
export function runInstallAppend(
  S: string,
  D: string,
  scratch: string,
): { status: number | null; output: string; ownership: string[][] } {
  const data = loadRecipe({ S, D });
  const fn = data.functions.get('do_install:append');
  if (!fn) throw new Error('the recipe has no do_install:append');
  const body = data.expand(fn.body);
  const unexpanded = body.match(/\$\{[^}]*\}/g);
  if (unexpanded) throw new Error(`do_install:append uses variables this test does not know: ${unexpanded}`);
  const log = join(scratch, 'ownership.log');
  const script = join(scratch, 'do_install_append.sh');
  writeFileSync(log, '');
  writeFileSync(
    script,
    'set -e\n' +
      `chown() { echo "chown $*" >> '${log}'; }\n` +
      `chgrp() { echo "chgrp $*" >> '${log}'; }\n` +
      `${body}\n`,
  );
  const result = spawnSync('sh', [script], { encoding: 'utf8' });
  const ownership = readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(' '));
  return { status: result.status, output: `${result.stdout}${result.stderr}`, ownership };
}
