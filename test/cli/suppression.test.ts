import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeSuppressions } from '../../cli/suppression.ts';
import { DynamoSuppressionList } from '../../lambda/core/dynamo-suppression.ts';
import { type DynamoPeer, startDynamo } from '../helpers/dynamo.ts';

const run = promisify(execFile);

describe('mail-relay suppression', () => {
  let dynamo: DynamoPeer;
  beforeAll(async () => {
    dynamo = await startDynamo();
  });
  afterAll(() => dynamo.stop());

  const suppression = (...args: string[]) =>
    run(
      process.execPath,
      [
        'cli/mail-relay.js',
        'suppression',
        ...args,
        '--endpoint',
        dynamo.endpoint,
        '--table',
        dynamo.suppressionTableName,
      ],
      {
        env: { ...process.env, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'x' },
      },
    );

  it('adds, lists and removes addresses on the table the relay reads', async () => {
    expect((await suppression('list')).stdout.trim()).toBe('The suppression list is empty.');

    await suppression('add', 'Bounced@Example.org', '--reason', 'hard bounce: 550 5.1.1');
    const listed = (await suppression('list')).stdout;
    expect(listed).toMatch(/^bounced@example\.org {2}since \d{4}-\d\d-\d\dT.* {2}hard bounce: 550 5\.1\.1$/m);
    const relayView = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    expect([...(await relayView.find(['BOUNCED@example.org'])).keys()]).toEqual(['bounced@example.org']);

    await suppression('remove', 'bounced@example.org');
    expect((await relayView.find(['bounced@example.org'])).size).toBe(0);
  });

  it('refuses what is not an address, and a missing action, with exit code 1', async () => {
    const notAnAddress = await suppression('add', 'nope').catch(
      (error: { code: number; stderr: string }) => error,
    );
    expect(notAnAddress).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('"nope" is not an email address'),
    });
    const noAction = await suppression().catch((error: { code: number; stderr: string }) => error);
    expect(noAction).toMatchObject({ code: 1, stderr: expect.stringContaining('suppression takes list') });
  });

  it('shows when an entry expires', () => {
    expect(
      describeSuppressions([{ address: 'a@example.org', reason: 'complaint', since: 'S', expiresAt: 0 }]),
    ).toBe('a@example.org  since S  complaint  (until 1970-01-01T00:00:00.000Z)');
  });
});
