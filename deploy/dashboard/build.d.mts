/** Types of build.mjs (run by node directly; imported by the browser tests). */
export const DEFAULT_OUTDIR: string;
export function buildDashboard(options?: { outdir?: string; dev?: boolean }): Promise<string>;
