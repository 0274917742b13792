/**
 * Retry delays after consecutive failures: exponential from an initial delay
 * up to a cap, with jitter so a fleet that lost the same device at the same
 * moment does not retry in lockstep.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
  /** 0..1: the delay is drawn from [d * (1 - jitter), d]. */
  jitter?: number;
  random?: () => number;
}

export function backoffDelay(failures: number, options: BackoffOptions): number {
  if (failures <= 0) return 0;
  const { initialMs, maxMs, jitter = 0.2, random = Math.random } = options;
  // 2^(failures-1), capped before it can overflow.
  const exponent = Math.min(failures - 1, 30);
  const base = Math.min(maxMs, initialMs * 2 ** exponent);
  return Math.round(base * (1 - jitter * random()));
}
