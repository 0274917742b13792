/** Types of harness.mjs (the benchmarks are plain JavaScript run by node over dist/). */

export interface Metric {
  name: string;
  unit: string;
  value: number;
  baseline: number | null;
  /** value / baseline; null without a baseline or when it is zero. */
  ratio: number | null;
}

export interface BenchResult {
  id: number;
  title: string;
  rounds: number;
  /** What the figures are measured against. */
  baseline: string;
  metrics: Metric[];
  /** How to read the ratios. */
  reading: string;
  notes: string[];
  samples?: unknown;
}

export interface BenchModule {
  run(options: { smoke?: boolean; rounds?: number }): Promise<BenchResult>;
}

export function median(values: readonly number[]): number;
export function percentile(values: readonly number[], p: number): number;
export function ratio(measured: number, baseline: number): number | null;
export function alternationOrder(
  variantNames: readonly string[],
  rounds: number,
): Array<{ round: number; variant: string }>;
export function alternate<T>(variants: Record<string, () => Promise<T>>, rounds: number): Promise<Record<string, T[]>>;
export function metric(name: string, unit: string, value: number, baseline?: number | null): Metric;
export const RESULT_KEYS: ReadonlyArray<keyof BenchResult>;
export const METRIC_KEYS: ReadonlyArray<keyof Metric>;
export function formatTable(results: readonly BenchResult[]): string;
export function formatReadings(results: readonly BenchResult[]): string;
export function writeJson(file: string, document: unknown): void;
