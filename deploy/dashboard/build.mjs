#!/usr/bin/env node
/**
 * Builds the fleet dashboard into a directory of static files (index.html,
 * app.js, style.css) that any web server can serve: `npm run build:dashboard`
 * writes deploy/dashboard/dist/. One bundle, MQTT.js and Preact inside, the
 * contract's JSON Schemas inside; nothing is fetched from elsewhere at run time.
 *
 *   node deploy/dashboard/build.mjs [--outdir DIR] [--dev]
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const here = dirname(fileURLToPath(import.meta.url));
export const DEFAULT_OUTDIR = join(here, 'dist');

/** Builds into `outdir`; resolves to the outdir. */
export async function buildDashboard({ outdir = DEFAULT_OUTDIR, dev = false } = {}) {
  mkdirSync(outdir, { recursive: true });
  await build({
    entryPoints: [join(here, 'src', 'main.tsx')],
    outfile: join(outdir, 'app.js'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    // Chromium, Firefox and Safari of the last few years (ES2020 + import.meta).
    target: ['chrome100', 'firefox100', 'safari15'],
    jsx: 'automatic',
    jsxImportSource: 'preact',
    minify: !dev,
    sourcemap: true,
    legalComments: 'linked',
    logLevel: 'warning',
    define: { 'process.env.NODE_ENV': dev ? '"development"' : '"production"' },
  });
  for (const file of ['index.html', 'style.css']) copyFileSync(join(here, file), join(outdir, file));
  return outdir;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const at = args.indexOf('--outdir');
  const outdir = at >= 0 ? resolve(args[at + 1]) : DEFAULT_OUTDIR;
  await buildDashboard({ outdir, dev: args.includes('--dev') });
  process.stdout.write(`dashboard built into ${outdir}\n`);
}
