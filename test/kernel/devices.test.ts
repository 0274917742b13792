// What the conformance suite needs from the kernel inside the VM
// (test/kernel/run-kernel-suite.mjs): the vidtv DVB adapter, the vim2m and
// vicodec m2m devices, dmabuf helpers, and a kernel built with CONFIG_DVB_MMAP.
// Node built-ins only, no addon: this must pass before the addon exists.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';

const onKernel = process.env.DMX_TEST_BACKEND === 'kernel';
const adapter = '/dev/dvb/adapter0';

function isCharDevice(p: string): boolean {
  try {
    return fs.statSync(p).isCharacterDevice();
  } catch {
    return false;
  }
}

/** Name (from sysfs) to /dev node of every video4linux device. */
function videoDevices(): Map<string, string> {
  const byName = new Map<string, string>();
  const cls = '/sys/class/video4linux';
  for (const entry of fs.readdirSync(cls)) {
    const name = fs.readFileSync(path.join(cls, entry, 'name'), 'utf8').trim();
    byName.set(name, `/dev/${entry}`);
  }
  return byName;
}

function kernelConfig(): string {
  return gunzipSync(fs.readFileSync('/proc/config.gz')).toString('utf8');
}

describe.skipIf(!onKernel)('kernel devices in the VM', () => {
  it.each(['frontend0', 'demux0', 'dvr0'])('vidtv provides %s', (node) => {
    expect(isCharDevice(`${adapter}/${node}`), `${adapter}/${node}`).toBe(true);
  });

  // Names as registered by the drivers (drivers/media/test-drivers/vim2m.c,
  // vicodec/vicodec-core.c); device numbers depend on probe order, so look up by name.
  it.each(['vim2m', 'stateful-decoder', 'stateful-encoder', 'stateless-decoder'])(
    'video4linux device "%s" exists',
    (name) => {
      const devices = videoDevices();
      const node = devices.get(name);
      expect(node, `found: ${[...devices.keys()].join(', ')}`).toBeDefined();
      expect(isCharDevice(node as string), node).toBe(true);
    },
  );

  it.each(['/dev/udmabuf', '/dev/dma_heap/system'])('%s exists', (node) => {
    expect(isCharDevice(node), node).toBe(true);
  });

  it('kernel was built with the DVB mmap API and the test drivers', () => {
    const config = kernelConfig();
    for (const option of [
      'CONFIG_DVB_MMAP',
      'CONFIG_DVB_VIDTV',
      'CONFIG_VIDEO_VIM2M',
      'CONFIG_VIDEO_VICODEC',
      'CONFIG_UDMABUF',
    ]) {
      expect(config, option).toMatch(new RegExp(`^${option}=y$`, 'm'));
    }
  });

  it('dvr0 opens O_RDWR (EOPNOTSUPP without CONFIG_DVB_MMAP)', () => {
    // O_RDWR on the DVR is what enables mmap; without DVB_MMAP the open fails.
    // Closing right away leaves the adapter as it was for the suite.
    const fd = fs.openSync(`${adapter}/dvr0`, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    fs.closeSync(fd);
  });
});
