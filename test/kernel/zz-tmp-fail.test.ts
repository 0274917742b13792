import { describe, expect, it } from 'vitest';
describe('tmp', () => {
  it('fails on purpose', () => { expect(1).toBe(2); });
  it.skip('skipped', () => {});
});
