/**
 * The contract's JSON Schemas, bundled into the page, compiled once by the
 * contract's own Ajv (agent/mqtt/contract-ajv.ts):
 * every payload the page shows has passed the schema the agent itself
 * publishes against.
 */
import type { ValidateFunction } from 'ajv';
import { contractAjv, describeValidationErrors } from '../../../agent/mqtt/contract-ajv.js';
import capabilities from '../../../agent/mqtt/schemas/capabilities.schema.json' with { type: 'json' };
import command from '../../../agent/mqtt/schemas/command-request.schema.json' with { type: 'json' };
import response from '../../../agent/mqtt/schemas/command-response.schema.json' with { type: 'json' };
import commandRejected from '../../../agent/mqtt/schemas/event-command-rejected.schema.json' with { type: 'json' };
import errno from '../../../agent/mqtt/schemas/event-errno.schema.json' with { type: 'json' };
import ledger from '../../../agent/mqtt/schemas/event-ledger.schema.json' with { type: 'json' };
import queueOverflow from '../../../agent/mqtt/schemas/event-queue-overflow.schema.json' with { type: 'json' };
import streamState from '../../../agent/mqtt/schemas/event-stream-state.schema.json' with { type: 'json' };
import watermark from '../../../agent/mqtt/schemas/event-watermark.schema.json' with { type: 'json' };
import status from '../../../agent/mqtt/schemas/status.schema.json' with { type: 'json' };
import telemetry from '../../../agent/mqtt/schemas/telemetry.schema.json' with { type: 'json' };
import type { PayloadCheck, PayloadName } from './contract.js';

const SCHEMAS: Record<PayloadName, object> = {
  status,
  capabilities,
  telemetry,
  errno,
  watermark,
  'stream-state': streamState,
  ledger,
  'command-rejected': commandRejected,
  'queue-overflow': queueOverflow,
  command,
  response,
};

export function contractCheck(): PayloadCheck {
  const ajv = contractAjv();
  const compiled = new Map<PayloadName, ValidateFunction>();
  return (name, json) => {
    let validate = compiled.get(name);
    if (validate === undefined) {
      validate = ajv.compile(SCHEMAS[name]);
      compiled.set(name, validate);
    }
    return validate(json) ? null : describeValidationErrors(validate.errors);
  };
}
