import { fileURLToPath } from 'node:url';

/** The reference consumer built by test/consumer/build.sh (global setup). */
export const REFERENCE_CONSUMER = fileURLToPath(new URL('../../build/test-tools/reference-consumer', import.meta.url));
