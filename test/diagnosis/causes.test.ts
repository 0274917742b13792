// The catalog itself: the README table, the size window behind the import
// remedies, the names decoded from flags and capabilities, and wording that
// stays whole when a call carried no numbers at all.
import { describe, expect, it } from 'vitest';
import {
  bufferCapabilityNames,
  CAUSES,
  type CauseFacts,
  describeCauses,
  explainCause,
  isCauseCode,
  pageAlign,
  poolSizeWindow,
  unsupportedExportFlags,
} from '../../agent/diagnosis/causes.js';
import type { CauseCode } from '../../agent/diagnosis/types.js';

describe('describeCauses', () => {
  it('lists every cause once with its errnos, when it applies and a remedy', () => {
    const table = describeCauses();
    const causes = table.map((row) => row.cause);
    expect(new Set(causes).size).toBe(causes.length);
    expect(causes.sort()).toEqual((Object.keys(CAUSES) as CauseCode[]).sort());
    expect(causes).toHaveLength(30);
    for (const row of table) {
      expect(row.when.length).toBeGreaterThan(10);
      expect(row.remedy.length).toBeGreaterThan(10);
      for (const errno of row.errnos) expect(errno).toMatch(/^E[A-Z0-9]+$/);
    }
    expect(table.find((row) => row.cause === 'dvb-mmap-missing')?.errnos).toEqual(['ENOTTY', 'EOPNOTSUPP']);
  });

  it('returns copies, so a caller cannot change the catalog', () => {
    const first = describeCauses();
    first[0]?.errnos.push('EMUTATED');
    expect(describeCauses()[0]?.errnos).not.toContain('EMUTATED');
  });
});

describe('isCauseCode', () => {
  it('accepts the catalog codes only', () => {
    expect(isCauseCode('import-dmabuf-below-sizeimage')).toBe(true);
    expect(isCauseCode('unexplained')).toBe(true);
    expect(isCauseCode('Unexplained')).toBe(false);
    expect(isCauseCode('toString')).toBe(false);
    expect(isCauseCode(undefined)).toBe(false);
  });
});

describe('poolSizeWindow', () => {
  it('gives the 188-multiples whose full buffer fits sizeimage and whose dmabuf reaches it', () => {
    expect(poolSizeWindow(6144)).toEqual({ min: 4136, max: 6016 });
    expect(poolSizeWindow(12288)).toEqual({ min: 8272, max: 12220 });
    expect(poolSizeWindow(3072)).toEqual({ min: 188, max: 3008 });
  });

  it('is null when no multiple of 188 fits, or sizeimage is unusable', () => {
    // 4100 needs a two-page dmabuf (more than 4096 bytes) but a buffer of at most 4100: 4136 is the next multiple.
    expect(poolSizeWindow(4100)).toBeNull();
    expect(poolSizeWindow(1_000_000)).toBeNull();
    expect(poolSizeWindow(0)).toBeNull();
    expect(poolSizeWindow(Number.NaN)).toBeNull();
  });

  it('holds both import rules at its ends and is as wide as they allow', () => {
    for (let sizeimage = 188; sizeimage <= 40_000; sizeimage += 97) {
      const window = poolSizeWindow(sizeimage);
      if (!window) continue;
      for (const size of [window.min, window.max]) {
        expect(size % 188).toBe(0);
        expect(size).toBeLessThanOrEqual(sizeimage);
        expect(pageAlign(size)).toBeGreaterThanOrEqual(sizeimage);
      }
      // One packet less at the bottom loses rule 2; one more at the top loses rule 1.
      expect(window.min - 188 <= 0 || pageAlign(window.min - 188) < sizeimage).toBe(true);
      expect(window.max + 188).toBeGreaterThan(sizeimage);
    }
  });
});

describe('names', () => {
  it('decodes V4L2_BUF_CAP_* bits, unknown ones in hex', () => {
    expect(bufferCapabilityNames(0x1f)).toEqual(['MMAP', 'USERPTR', 'DMABUF', 'REQUESTS', 'ORPHANED_BUFS']);
    expect(bufferCapabilityNames(0x104)).toEqual(['DMABUF', '0x100']);
    expect(bufferCapabilityNames(0)).toEqual([]);
  });

  it('names the DMX_EXPBUF flags beyond O_CLOEXEC and the access mode', () => {
    expect(unsupportedExportFlags(0o2000002)).toEqual({ bits: 0, names: [] });
    expect(unsupportedExportFlags(0o2002000)).toEqual({ bits: 0o2000, names: ['O_APPEND'] });
    expect(unsupportedExportFlags(0o40004000)).toEqual({
      bits: 0o40004000,
      names: ['O_NONBLOCK', 'other bits 040000000'],
    });
  });
});

describe('wording without numbers', () => {
  const bare: CauseFacts = {
    ioctl: 'DMX_QBUF',
    syscall: 'ioctl',
    errno: 'EINVAL',
    device: null,
    args: {},
    prevented: false,
    context: {},
  };

  it.each(Object.keys(CAUSES) as CauseCode[])('%s still reads as sentences', (cause) => {
    const { summary, remedy } = explainCause(cause, bare);
    expect(summary.length).toBeGreaterThan(20);
    expect(remedy.length).toBeGreaterThan(20);
    expect(`${summary} ${remedy}`).not.toMatch(/undefined|NaN|null|\[object/);
  });

  it('a caveat is appended to the summary', () => {
    const { summary } = explainCause('export-unsupported', {
      ...bare,
      ioctl: 'DMX_EXPBUF',
      caveat: 'the pool was unknown',
    });
    expect(summary).toMatch(/\(the pool was unknown\)$/);
  });
});
