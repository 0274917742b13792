/**
 * The capability probe: what this receiver offers the media path. Which DVB
 * adapters exist, whether their kernel has the DVB mmap API
 * (CONFIG_DVB_MMAP, off by default: the five ioctls then answer ENOTTY and a
 * DVR O_RDWR open EOPNOTSUPP), and which V4L2 m2m decoders can import
 * DMABUFs on OUTPUT, with their OUTPUT formats. Every device access goes
 * through agent/native.
 */
import { Decoder, Demux, DmxError, Frontend, isDmxError, type Simulation } from './native/index.js';

export interface AdapterProbe {
  adapter: number;
  frontend: string | null;
  demux: boolean;
  dvr: boolean;
  /** DMX_REQBUFS accepted on the demux node. */
  demuxMmap: boolean;
  /** The DVR opened O_RDWR (what its mmap needs). */
  dvrMmap: boolean;
  problems: string[];
}

export interface DecoderProbe {
  path: string;
  name: string;
  driver: string;
  multiplanar: boolean;
  outputFormats: Array<{ fourcc: string; compressed: boolean }>;
  supportsDmabufImport: boolean;
  bufferCapabilities: number;
}

export interface ProbeResult {
  backend: 'kernel' | 'sim';
  adapters: AdapterProbe[];
  decoders: DecoderProbe[];
  otherVideoDevices: Array<{ path: string; name: string; reason: string }>;
  /** An adapter with DVB mmap, and a decoder importing DMABUFs (or none needed). */
  mediaPathUsable: boolean;
  problems: string[];
}

const MAX_ADAPTERS = 8;

function describe(err: unknown): string {
  if (isDmxError(err)) return err.detail ? `${err.code}: ${err.detail}` : err.code;
  return err instanceof Error ? err.message : String(err);
}

function probeAdapter(adapter: number, opts: { simulation?: Simulation }): AdapterProbe | null {
  const base = `/dev/dvb/adapter${adapter}`;
  const result: AdapterProbe = {
    adapter,
    frontend: null,
    demux: false,
    dvr: false,
    demuxMmap: false,
    dvrMmap: false,
    problems: [],
  };
  try {
    const fe = new Frontend(`${base}/frontend0`, { ...opts, readOnly: true });
    try {
      result.frontend = fe.info().name;
    } finally {
      fe.close();
    }
  } catch (err) {
    if (!(isDmxError(err) && err.code === 'ENOENT')) result.problems.push(`frontend0: ${describe(err)}`);
  }
  try {
    const demux = new Demux(`${base}/demux0`, opts);
    result.demux = true;
    try {
      demux.requestBuffers(2, 188 * 16);
      result.demuxMmap = true;
    } catch (err) {
      if (isDmxError(err) && err.code === 'ENOTTY') {
        result.problems.push('the kernel has no CONFIG_DVB_MMAP: DMX_REQBUFS answers ENOTTY');
      } else {
        result.problems.push(`demux0 DMX_REQBUFS: ${describe(err)}`);
      }
    } finally {
      demux.close();
    }
  } catch (err) {
    if (isDmxError(err) && err.code === 'ENOENT' && result.frontend === null) return null;
    result.problems.push(`demux0: ${describe(err)}`);
  }
  try {
    const dvr = new Demux(`${base}/dvr0`, { ...opts, kind: 'dvr' });
    result.dvr = true;
    result.dvrMmap = true;
    dvr.close();
  } catch (err) {
    if (isDmxError(err) && err.code === 'EOPNOTSUPP') {
      result.dvr = true;
      result.problems.push('dvr0 cannot be opened O_RDWR (EOPNOTSUPP): no DVB mmap on the DVR');
    } else if (isDmxError(err) && err.code === 'EBUSY') {
      result.dvr = true;
      result.problems.push('dvr0 is busy: another process owns the adapter (the agent must own it)');
    } else if (!(isDmxError(err) && err.code === 'ENOENT')) {
      result.problems.push(`dvr0: ${describe(err)}`);
    }
  }
  return result;
}

function probeDecoder(path: string, name: string, opts: { simulation?: Simulation }): DecoderProbe | string {
  let decoder: Decoder;
  try {
    decoder = new Decoder(path, opts);
  } catch (err) {
    return describe(err);
  }
  try {
    const cap = decoder.querycap();
    const outputFormats = decoder.enumFormats('output').map(({ fourcc, compressed }) => ({ fourcc, compressed }));
    // MMAP: a count-0 REQBUFS reads the capabilities even where DMABUF is missing (asking for it there is EINVAL).
    const buffers = decoder.probeBuffers('output', 'mmap');
    return {
      path,
      name,
      driver: cap.driver,
      multiplanar: cap.multiplanar,
      outputFormats,
      supportsDmabufImport: buffers.supportsDmabuf,
      bufferCapabilities: buffers.capabilities,
    };
  } catch (err) {
    return describe(err);
  } finally {
    decoder.close();
  }
}

export function probe(opts: { simulation?: Simulation } = {}): ProbeResult {
  const adapters: AdapterProbe[] = [];
  for (let n = 0; n < MAX_ADAPTERS; n++) {
    const a = probeAdapter(n, opts);
    if (a) adapters.push(a);
  }
  const decoders: DecoderProbe[] = [];
  const otherVideoDevices: ProbeResult['otherVideoDevices'] = [];
  for (const { path, name } of Decoder.list(opts)) {
    const d = probeDecoder(path, name, opts);
    if (typeof d === 'string') otherVideoDevices.push({ path, name, reason: d });
    else decoders.push(d);
  }
  const problems: string[] = [];
  if (adapters.length === 0) problems.push('no DVB adapter under /dev/dvb');
  else if (!adapters.some((a) => a.demuxMmap)) problems.push('no adapter offers the DVB mmap API (CONFIG_DVB_MMAP)');
  if (decoders.length > 0 && !decoders.some((d) => d.supportsDmabufImport)) {
    problems.push('no decoder imports DMABUFs on its OUTPUT queue');
  }
  return {
    backend: opts.simulation ? 'sim' : 'kernel',
    adapters,
    decoders,
    otherVideoDevices,
    mediaPathUsable: problems.length === 0,
    problems,
  };
}

export { DmxError };
