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
    expect(listed).toMatch(
      /^bounced@example\.org {2}since \d{4}-\d\d-\d\dT.* {2}operator {2}hard bounce: 550 5\.1\.1$/m,
    );
    const relayView = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    expect([...(await relayView.find(['BOUNCED@example.org'])).keys()]).toEqual(['bounced@example.org']);

    expect((await relayView.find(['bounced@example.org'])).get('bounced@example.org')?.cause).toBe(
      'operator',
    );

    await suppression('remove', 'bounced@example.org');
    expect((await relayView.find(['bounced@example.org'])).size).toBe(0);
  });

  it('lists each address with its cause and evidence, and as JSON with --json', async () => {
    const relayView = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    await relayView.suppress({
      address: 'nobody@fabrikam.com',
      reason: 'hard bounce 5.1.1 via ses: 550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected',
      since: '2026-11-22T11:59:00.000Z',
      cause: 'user-unknown',
      evidence: {
        status: '5.1.1',
        diagnostic: '550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected',
        provider: 'ses',
      },
    });
    try {
      expect((await suppression('list')).stdout).toBe(
        [
          'nobody@fabrikam.com  since 2026-11-22T11:59:00.000Z  user-unknown  hard bounce 5.1.1 via ses: 550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected',
          '    evidence: status 5.1.1  via ses  "550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected"',
          '',
        ].join('\n'),
      );
      expect(JSON.parse((await suppression('list', '--json')).stdout)).toEqual([
        {
          address: 'nobody@fabrikam.com',
          reason: 'hard bounce 5.1.1 via ses: 550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected',
          since: '2026-11-22T11:59:00.000Z',
          cause: 'user-unknown',
          evidence: {
            status: '5.1.1',
            diagnostic: '550 5.1.1 <nobody@fabrikam.com>: Recipient address rejected',
            provider: 'ses',
          },
        },
      ]);
    } finally {
      await suppression('remove', 'nobody@fabrikam.com');
    }
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

  it('shows a soft-bounce suppression with its count, cause and evidence, and old entries as before', () => {
    expect(
      describeSuppressions([
        {
          address: 'full@fabrikam.com',
          reason: '5 soft bounces in 7 days, the last 4.2.2 via graph: 452 4.2.2 Mailbox full',
          since: 'S',
          cause: 'over-quota',
          evidence: { status: '4.2.2', diagnostic: '452 4.2.2 Mailbox full', provider: 'graph' },
        },
        { address: 'old@fabrikam.com', reason: 'hard bounce', since: 'S' },
      ]),
    ).toBe(
      [
        'full@fabrikam.com  since S  over-quota  5 soft bounces in 7 days, the last 4.2.2 via graph: 452 4.2.2 Mailbox full',
        '    evidence: status 4.2.2  via graph  "452 4.2.2 Mailbox full"',
        'old@fabrikam.com  since S  hard bounce',
      ].join('\n'),
    );
  });

  it('shows when an entry expires', () => {
    expect(
      describeSuppressions([{ address: 'a@example.org', reason: 'complaint', since: 'S', expiresAt: 0 }]),
    ).toBe('a@example.org  since S  complaint  (until 1970-01-01T00:00:00.000Z)');
  });
});
