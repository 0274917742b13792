import { defineConfig } from 'vitest/config';

// Three projects: `unit` (host-only tests), and the one conformance suite run
// twice, against the simulation on the host (`conformance-sim`) and against
// the real kernel inside qemu (`conformance-kernel`, started by
// test/kernel/run-kernel-suite.mjs; see README).
const conformance = ['test/conformance/**/*.test.ts'];

export default defineConfig({
  test: {
    pool: 'forks',
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: [...conformance, 'test/kernel/**'],
        },
      },
      {
        extends: true,
        test: { name: 'conformance-sim', include: conformance, env: { DMX_TEST_BACKEND: 'sim' } },
      },
      {
        extends: true,
        test: {
          name: 'conformance-kernel',
          include: [...conformance, 'test/kernel/**/*.test.ts'],
          env: { DMX_TEST_BACKEND: 'kernel' },
          // Inside the VM: one fork, tests in order; the kernel devices are shared.
          fileParallelism: false,
        },
      },
    ],
  },
});
