#!/usr/bin/env node
/**
 * Writes the dmx-agent recipe's npm inputs from package-lock.json, the one
 * place dependency versions are decided:
 *
 *   meta-dmx-agent/recipes-media/dmx-agent/dmx-agent/npm-shrinkwrap.json
 *     the production packages only (what npm.bbclass reads from ${S});
 *   meta-dmx-agent/recipes-media/dmx-agent/dmx-agent-npm-sources.inc
 *     one SRC_URI entry per package, its sha512 taken from the lock, unpacked
 *     where npm puts it under ${S}/node_modules, and its license file.
 *
 * Why not bitbake's npmsw:// fetcher: bitbake 2.18 (wrynose) and later
 * disable it (and npm://), skipping every recipe that uses it, because it
 * trusted checksums served by the registry. Plain https:// entries with the
 * checksums in the layer work on every release from scarthgap on.
 *
 * Only the production tree goes in: devDependencies are never installed on
 * the receiver, and npm records only the host's platform packages of some
 * dev tools (@biomejs/biome), so they could not be fetched for a target
 * anyway. A production package limited to some os/cpu/libc is refused: npm
 * would choose by the build host, not the target.
 *
 * The license files are read from node_modules (what `npm ci` unpacked from
 * the same tarballs), so run `npm ci` first.
 *
 * Usage (from the repository root):
 *   node yocto/update-npm-sources.mjs           write both files
 *   node yocto/update-npm-sources.mjs --check   write nothing; exit 1 naming what is stale
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..');
const RECIPE_DIR = join(REPO, 'yocto/meta-dmx-agent/recipes-media/dmx-agent');
export const SHRINKWRAP_PATH = join(RECIPE_DIR, 'dmx-agent/npm-shrinkwrap.json');
export const SOURCES_INC_PATH = join(RECIPE_DIR, 'dmx-agent-npm-sources.inc');
const REGISTRY = 'https://registry.npmjs.org/';

/**
 * npm license expressions to OpenEmbedded license names: each of these is a
 * file in openembedded-core's meta/files/common-licenses (checked on the
 * scarthgap and wrynose branches). Anything else stops the generator, so a
 * new license is looked at before it ships.
 */
const KNOWN_LICENSES = new Set([
  '0BSD',
  'Apache-2.0',
  'BlueOak-1.0.0',
  'BSD-2-Clause',
  'BSD-3-Clause',
  'CC0-1.0',
  'CC-BY-4.0',
  'ISC',
  'MIT',
  'MIT-0',
  'Python-2.0',
  'Unlicense',
]);

const LICENSE_FILE = /^(licen[cs]e|copying)(\.(md|txt|markdown))?$/i;

class GeneratorError extends Error {}

function fail(message) {
  throw new GeneratorError(message);
}

function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** The package name a lock location holds ("node_modules/a/node_modules/@s/b" holds "@s/b"). */
function nameAt(location, entry) {
  return entry.name ?? location.slice(location.lastIndexOf('node_modules/') + 'node_modules/'.length);
}

/** bitbake's npm_localfile(): the DL_DIR name its npm fetchers give a package tarball. */
function downloadFileName(name, version) {
  const flat = name
    .replace(/\//g, '-')
    .toLowerCase()
    .replace(/[^-a-z0-9]/g, '')
    .replace(/^-+|-+$/g, '');
  return `npm2/${flat}-${version}.tgz`;
}

function registryUrl(name, version) {
  const base = name.includes('/') ? name.slice(name.indexOf('/') + 1) : name;
  return `${REGISTRY}${name}/-/${base}-${version}.tgz`;
}

/** An npm SPDX expression as an OE LICENSE expression ("(MIT OR Apache-2.0)" -> "(MIT | Apache-2.0)"). */
function oeLicense(location, spdx) {
  if (typeof spdx !== 'string' || spdx.trim() === '') fail(`${location}: no license in package-lock.json`);
  const tokens = spdx.match(/\(|\)|[^\s()]+/g) ?? [];
  const out = tokens.map((token) => {
    if (token === '(' || token === ')') return token;
    if (token === 'OR') return '|';
    if (token === 'AND') return '&';
    if (!KNOWN_LICENSES.has(token)) {
      fail(`${location}: license "${token}" (from "${spdx}") is not in the list of checked OE license names`);
    }
    return token;
  });
  // Parenthesized whole, so joining the packages' expressions with & keeps each one's meaning.
  return out.length === 1 ? out[0] : `(${out.join(' ').replace(/\( /g, '(').replace(/ \)/g, ')')})`;
}

/** The hex sha512 of an npm integrity string (SRI: "sha512-<base64>"). */
function sha512Hex(location, integrity) {
  const sha512 = String(integrity ?? '')
    .split(/\s+/)
    .find((item) => item.startsWith('sha512-'));
  if (!sha512) fail(`${location}: no sha512 integrity in package-lock.json`);
  return Buffer.from(sha512.slice('sha512-'.length), 'base64').toString('hex');
}

function licenseFile(location) {
  const dir = join(REPO, location);
  const files = readdirSync(dir).filter((file) => LICENSE_FILE.test(file));
  if (files.length === 0) fail(`${location}: no license file (LICENSE, LICENCE, COPYING) in ${relative(REPO, dir)}`);
  files.sort();
  const file = files[0];
  const md5 = createHash('md5')
    .update(readFileSync(join(dir, file)))
    .digest('hex');
  return `file://${location}/${file};md5=${md5}`;
}

/** Both generated files' contents, from package.json, package-lock.json and node_modules. */
export function generate() {
  const manifest = readJson(join(REPO, 'package.json'));
  const lock = readJson(join(REPO, 'package-lock.json'));
  if (!(lock.lockfileVersion >= 2)) fail(`package-lock.json: lockfileVersion ${lock.lockfileVersion}, need 2 or later`);
  const root = lock.packages?.[''];
  if (!root) fail('package-lock.json: no root package entry');
  if (root.version !== manifest.version) {
    fail(`package-lock.json is for version ${root.version}, package.json says ${manifest.version}: run npm install`);
  }

  const packages = {
    '': {
      name: manifest.name,
      version: manifest.version,
      ...(root.hasInstallScript ? { hasInstallScript: true } : {}),
      license: manifest.license,
      dependencies: manifest.dependencies ?? {},
      ...(root.bin ? { bin: root.bin } : {}),
      ...(root.engines ? { engines: root.engines } : {}),
    },
  };
  const sources = [];
  const licenseFiles = [];
  const licenses = new Set();

  for (const [location, entry] of Object.entries(lock.packages)) {
    if (location === '' || entry.dev) continue;
    if (!location.startsWith('node_modules/')) fail(`${location}: a workspace or linked package, not supported`);
    if (entry.link || entry.inBundle) fail(`${location}: linked or bundled packages are not supported`);
    for (const field of ['os', 'cpu', 'libc']) {
      if (entry[field]) {
        fail(
          `${location}: limited to ${field} ${JSON.stringify(entry[field])}; npm would pick it by the build host, ` +
            'not the target: find another way to ship it',
        );
      }
    }
    const name = nameAt(location, entry);
    const { version } = entry;
    if (typeof version !== 'string') fail(`${location}: no version`);
    const resolved = entry.resolved ?? registryUrl(name, version);
    if (!resolved.startsWith(REGISTRY)) fail(`${location}: resolved from ${resolved}, only ${REGISTRY} is supported`);
    const installed = join(REPO, location, 'package.json');
    if (!existsSync(installed) || readJson(installed).version !== version) {
      fail(`${location}: node_modules does not hold ${name}@${version} as locked: run npm ci`);
    }

    const { version: _v, resolved: _r, integrity, funding: _f, ...rest } = entry;
    packages[location] = { version, resolved, integrity, ...rest };
    sources.push(
      `${resolved};downloadfilename=${downloadFileName(name, version)};subdir=\${BP}/${location};striplevel=1` +
        `;sha512sum=${sha512Hex(location, integrity)}`,
    );
    licenseFiles.push(licenseFile(location));
    licenses.add(oeLicense(location, entry.license));
  }

  const shrinkwrap = {
    name: manifest.name,
    version: manifest.version,
    lockfileVersion: lock.lockfileVersion,
    requires: true,
    packages,
  };
  const list = (items) => items.map((item) => `    ${item} \\\n`).join('');
  const inc =
    '# Generated by yocto/update-npm-sources.mjs from package-lock.json: do not edit.\n' +
    '# After any dependency change: npm ci && node yocto/update-npm-sources.mjs\n' +
    '#\n' +
    `# The ${sources.length} production packages of dmx-agent ${manifest.version}, each fetched from the npm\n` +
    "# registry, checked against the lock's sha512 and unpacked where npm puts it\n" +
    '# under ${S}/node_modules; npm.bbclass then installs them offline, as\n' +
    '# npm-shrinkwrap.json (beside this file) describes.\n' +
    '\n' +
    `DMX_AGENT_NPM_LICENSE = "${[...licenses].sort().join(' & ')}"\n` +
    '\n' +
    `LIC_FILES_CHKSUM += "\\\n${list(licenseFiles)}"\n` +
    '\n' +
    `SRC_URI += "\\\n${list(sources)}"\n`;
  return { shrinkwrap: `${JSON.stringify(shrinkwrap, null, 2)}\n`, inc };
}

function main(argv) {
  const check = argv.includes('--check');
  const unknown = argv.filter((arg) => arg !== '--check');
  if (unknown.length > 0) {
    process.stderr.write(`usage: node yocto/update-npm-sources.mjs [--check]\n`);
    return 2;
  }
  let generated;
  try {
    generated = generate();
  } catch (err) {
    if (!(err instanceof GeneratorError)) throw err;
    process.stderr.write(`update-npm-sources: ${err.message}\n`);
    return 1;
  }
  const outputs = [
    [SHRINKWRAP_PATH, generated.shrinkwrap],
    [SOURCES_INC_PATH, generated.inc],
  ];
  const stale = outputs.filter(([path, text]) => !existsSync(path) || readFileSync(path, 'utf8') !== text);
  if (check) {
    for (const [path] of stale) {
      process.stderr.write(`update-npm-sources: ${relative(REPO, path)} does not match package-lock.json\n`);
    }
    if (stale.length > 0) process.stderr.write('run: node yocto/update-npm-sources.mjs\n');
    return stale.length > 0 ? 1 : 0;
  }
  for (const [path, text] of stale) {
    mkdirSync(dirname(path), { recursive: true });
    writeFileSync(path, text);
    process.stdout.write(`wrote ${relative(REPO, path)}\n`);
  }
  if (stale.length === 0) process.stdout.write('up to date\n');
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main(process.argv.slice(2));
}
