// The README is the firmware team's reference: every configuration key and
// every diagnosis cause the code knows must be documented there.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeConfigKeys } from '../../agent/config/load.js';
import { describeCauses } from '../../agent/diagnosis/causes.js';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('documents every configuration key with its environment variable', () => {
    for (const key of describeConfigKeys()) {
      expect(readme, key.key).toContain(`\`${key.key}\``);
      if (key.env) expect(readme, key.env).toContain(key.env);
    }
  });

  it('documents every diagnosis cause', () => {
    for (const cause of describeCauses()) expect(readme, cause.cause).toContain(`\`${cause.cause}\``);
  });

  it('documents every buffer health field', () => {
    for (const field of ['ledger', 'fillRatio', 'rate', 'flags', 'ccGaps', 'zeroQueued', 'sinkLatencyMs', 'errors']) {
      expect(readme, field).toContain(`\`${field}\``);
    }
    for (const field of ['exportedFds', 'anomalies', 'watermark']) expect(readme, field).toContain(`\`${field}\``);
  });
});
