/**
 * Writes the JSON Schemas generated from the zod schemas, so producers in any language can validate
 * messages and editors can complete the configuration file. `--check` fails when the committed files
 * are stale (run in `npm test`).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_RECIPIENTS } from '../lambda/core/limits.ts';
import { messageContractSchema } from '../lambda/core/message.ts';
import { relayConfigSchema } from '../lib/config.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export function generateSchemas(): Record<string, object> {
  const message = z.toJSONSchema(messageContractSchema, { io: 'input', unrepresentable: 'any' });
  const config = z.toJSONSchema(relayConfigSchema, { io: 'input', unrepresentable: 'any' });
  return {
    'schema/message.schema.json': {
      ...message,
      $id: 'https://mail-relay.dev/schema/message.v1.json',
      title: 'mail-relay message (contract v1)',
      description:
        'One JSON document per SQS message, in one of two forms: composed (subject, text/html and ' +
        'attachments as fields) or raw (the MIME message itself in "mime", with its envelope in ' +
        '"recipients"; a message with a "mime" field is read as raw). Also enforced by the relay, not ' +
        `expressible here: at least one recipient and at most ${DEFAULT_MAX_RECIPIENTS} (default) across ` +
        `to + cc + bcc (or recipients); text or html; decoded bodies + attachments (or the MIME) at most ` +
        `${DEFAULT_MAX_MESSAGE_BYTES} bytes (default); addresses must parse as "a@example.com" or ` +
        '"Name <a@example.com>"; no CR/LF in header values; a raw message\'s From header must name its "from".',
    },
    'schema/config.schema.json': {
      ...config,
      title: 'mail-relay configuration (mail-relay.config.json)',
    },
  };
}

const render = (schema: object) => `${JSON.stringify(schema, null, 2)}\n`;

const check = process.argv.includes('--check');
const stale: string[] = [];
for (const [file, schema] of Object.entries(generateSchemas())) {
  const target = path.join(root, file);
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // missing: written below, or reported as stale
  }
  if (current === render(schema)) continue;
  if (check) stale.push(file);
  else writeFileSync(target, render(schema));
}
if (stale.length > 0) {
  console.error(`Out of date: ${stale.join(', ')}. Run \`npm run schemas\` and commit the result.`);
  process.exit(1);
}
