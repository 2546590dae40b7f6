import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../lambda/core/validation.ts';
import { DEFAULT_CONFIG_PATH, loadRelayConfig, parseRelayConfig } from '../../lib/config.ts';

const REPO_ROOT = new URL('../../', import.meta.url);
const scratchDir = mkdtempSync(join(tmpdir(), 'mail-relay-config-'));
afterAll(() => rmSync(scratchDir, { recursive: true, force: true }));

function writeScratchFile(name: string, text: string): string {
  const path = join(scratchDir, name);
  writeFileSync(path, text);
  return path;
}

function configurationErrorFrom(action: () => unknown): ConfigurationError {
  try {
    action();
  } catch (error) {
    if (error instanceof ConfigurationError) return error;
    throw error;
  }
  throw new Error('expected a ConfigurationError');
}

describe('parseRelayConfig', () => {
  it('fills every default when only the SES identities are given', () => {
    expect(parseRelayConfig({ ses: { identities: ['example.com'] } })).toEqual({
      ses: { identities: ['example.com'] },
      message: { maxRecipients: 50, maxMessageBytes: 1_048_576 },
      queue: { maxReceiveCount: 5, retentionDays: 14 },
      sendFunction: {
        timeoutSeconds: 30,
        memoryMiB: 512,
        batchSize: 10,
        maxConcurrency: 10,
        logRetentionDays: 30,
      },
    });
  });

  it('reports every problem at once, naming each field', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ses: { identities: ['not an identity'] },
        message: { maxRecipients: 0 },
        queue: { retentionDays: 15 },
        sendFunction: { memoryMiB: 64, logRetentionDays: 2 },
      }),
    );

    expect(error.problems.map((problem) => problem.split(':')[0])).toEqual(
      expect.arrayContaining([
        'ses.identities[0]',
        'message.maxRecipients',
        'queue.retentionDays',
        'sendFunction.memoryMiB',
        'sendFunction.logRetentionDays',
      ]),
    );
    expect(error.problems).toHaveLength(5);
  });

  it('reports a missing SES section', () => {
    expect(configurationErrorFrom(() => parseRelayConfig({})).problems).toEqual([
      expect.stringMatching(/^ses: /),
    ]);
  });

  it('rejects unknown fields, naming each one', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ses: { identities: ['example.com'], region: 'eu-west-1' }, queues: {} }),
    );

    expect(error.problems).toEqual(
      expect.arrayContaining(['ses.region: unknown field', 'queues: unknown field']),
    );
  });

  it('rejects a visibility timeout below 6 x the function timeout and explains why', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({
        ses: { identities: ['example.com'] },
        queue: { visibilityTimeoutSeconds: 359 },
        sendFunction: { timeoutSeconds: 60 },
      }),
    );

    expect(error.problems).toEqual([
      'queue.visibilityTimeoutSeconds: must be at least 6 x sendFunction.timeoutSeconds (360) so a slow batch is not delivered twice',
    ]);
  });

  it('accepts a visibility timeout of exactly 6 x the function timeout', () => {
    const config = parseRelayConfig({
      ses: { identities: ['example.com'] },
      queue: { visibilityTimeoutSeconds: 360 },
      sendFunction: { timeoutSeconds: 60 },
    });

    expect(config.queue.visibilityTimeoutSeconds).toBe(360);
  });

  it('rejects an identity containing an IAM wildcard character, which would widen the send permission', () => {
    const error = configurationErrorFrom(() => parseRelayConfig({ ses: { identities: ['*@example.com'] } }));

    expect(error.problems).toEqual([
      expect.stringMatching(/^ses\.identities\[0\]: must not contain \* or \?/),
    ]);
  });

  it("rejects so many identities that the function settings would not fit in Lambda's 4 KB environment", () => {
    const identities = Array.from({ length: 150 }, (_, index) => `sender${index}@example.com`);

    const error = configurationErrorFrom(() => parseRelayConfig({ ses: { identities } }));

    expect(error.problems).toEqual([
      expect.stringMatching(/^ses\.identities: the function settings would take ~\d+ bytes/),
    ]);
  });

  it('accepts a realistic list of identities within the environment limit', () => {
    const identities = Array.from({ length: 40 }, (_, index) => `sender${index}@example.com`);

    expect(parseRelayConfig({ ses: { identities } }).ses.identities).toHaveLength(40);
  });

  it('rejects a configuration set name SES would not accept', () => {
    const error = configurationErrorFrom(() =>
      parseRelayConfig({ ses: { identities: ['example.com'], configurationSetName: 'relay/*' } }),
    );

    expect(error.problems).toEqual([expect.stringMatching(/^ses\.configurationSetName: may contain only/)]);
  });

  it('names the source in the error title', () => {
    expect(configurationErrorFrom(() => parseRelayConfig({}, 'test settings')).message).toMatch(
      /^Invalid test settings:\n {2}- /,
    );
  });
});

describe('loadRelayConfig', () => {
  it('says a missing file was not found and how to choose another', () => {
    const missing = join(scratchDir, 'absent.json');

    const error = configurationErrorFrom(() => loadRelayConfig(missing));

    expect(error.message).toContain(`Cannot read mail-relay configuration ${missing}`);
    expect(error.problems).toEqual([expect.stringContaining('file not found')]);
    expect(error.problems[0]).toContain('-c config=PATH');
  });

  it('says a file that is not JSON is not valid JSON', () => {
    const path = writeScratchFile('broken.json', '{ "ses": ');

    const error = configurationErrorFrom(() => loadRelayConfig(path));

    expect(error.message).toContain(`Invalid mail-relay configuration ${path}`);
    expect(error.problems).toEqual([expect.stringMatching(/^not valid JSON: /)]);
  });

  it('names the file when its content is invalid', () => {
    const path = writeScratchFile('invalid.json', JSON.stringify({ ses: { identities: [] } }));

    const error = configurationErrorFrom(() => loadRelayConfig(path));

    expect(error.message).toContain(`Invalid mail-relay configuration ${path}`);
    expect(error.problems).toEqual([expect.stringMatching(/^ses\.identities: /)]);
  });

  it('accepts the $schema reference editors use', () => {
    const path = writeScratchFile(
      'with-schema.json',
      JSON.stringify({ $schema: './schema/config.schema.json', ses: { identities: ['example.com'] } }),
    );

    expect(loadRelayConfig(path).ses.identities).toEqual(['example.com']);
  });

  it('accepts the repository root mail-relay.config.json', () => {
    const rootConfig = fileURLToPath(new URL(DEFAULT_CONFIG_PATH, REPO_ROOT));

    expect(loadRelayConfig(rootConfig).ses.identities.length).toBeGreaterThan(0);
  });
});
