/**
 * How the MQTT contract's JSON Schemas are checked, wherever they are: by the
 * agent (payloads.ts) and by the fleet dashboard in the browser. No Node
 * imports, so the browser bundle takes this module as it is.
 */
import { Ajv, type ErrorObject } from 'ajv';

// RFC 3339 date-time (what JSON Schema's date-time means), with a calendar check by Date.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

/**
 * An Ajv in strict mode with the contract's `date-time` format. allErrors
 * stays off: commands are untrusted, and the first error is all an answer needs.
 */
export function contractAjv(): Ajv {
  const ajv = new Ajv({ strict: true });
  ajv.addFormat('date-time', {
    type: 'string',
    validate: (value: string) => DATE_TIME.test(value) && !Number.isNaN(Date.parse(value)),
  });
  return ajv;
}

/** "/streams/main/bps must be integer; ..." for logs and error answers. */
export function describeValidationErrors(errors: ErrorObject[] | null | undefined): string {
  if (!errors || errors.length === 0) return 'valid';
  return errors.map((e) => `${e.instancePath || '/'} ${e.message ?? e.keyword}`).join('; ');
}
