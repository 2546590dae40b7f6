import { readFileSync } from 'node:fs';
import { DeleteItemCommand } from '@aws-sdk/client-dynamodb';
import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { createBounceReportHandler } from '../../../lambda/bounce-reports/create-handler.ts';
import { DynamoDeliveryLedger } from '../../../lambda/core/dynamo-ledger.ts';
import { DynamoSuppressionList } from '../../../lambda/core/dynamo-suppression.ts';
import { BounceReportError } from '../../../lambda/core/feedback/bounce-reports.ts';
import { DynamoReportCursors } from '../../../lambda/core/feedback/dynamo-report-cursors.ts';
import { SETTINGS_ENV_VAR } from '../../../lambda/core/settings.ts';
import { createHttpTransport } from '../../../lambda/providers/http-transport.ts';
import { type EventBridgePeer, startEventBridgePeer } from '../../../local/peers/eventbridge-peer.ts';
import { type GraphPeer, startGraphPeer } from '../../../local/peers/graph-peer.ts';
import {
  type SecretsManagerEmulator,
  startSecretsManagerEmulator,
} from '../../../local/secrets-manager-emulator.ts';
import { type DynamoPeer, startDynamo } from '../../helpers/dynamo.ts';
import { captureStdout, emfPoints } from '../../helpers/emf.ts';
import { exchangeNdr } from '../../helpers/ndr.ts';

const context = {
  functionName: 'bounce-reports',
  awsRequestId: 'request-1',
  getRemainingTimeInMillis: () => 300_000,
} as unknown as Context;

const TENANT = 'contoso.onmicrosoft.com';
const CLIENT_ID = '3c2b1a00-0000-4000-8000-0000000000c1';
const NOREPLY = 'noreply@contoso.com';
const SCANNER = 'scanner@fabrikam.com';

describe('the bounce report reader (Graph peer, dynalite, EventBridge peer)', () => {
  const clientSecret = `reader-test-${Math.random().toString(36).slice(2)}`;
  let graph: GraphPeer;
  let secrets: SecretsManagerEmulator;
  let dynamo: DynamoPeer;
  let events: EventBridgePeer;
  let secretArn: string;
  const saved = { ...process.env };

  beforeAll(async () => {
    [graph, secrets, dynamo, events] = await Promise.all([
      startGraphPeer({ tenantId: TENANT, clients: [{ clientId: CLIENT_ID, clientSecret }] }),
      startSecretsManagerEmulator(0),
      startDynamo(),
      startEventBridgePeer(),
    ]);
    secretArn = secrets.putSecret('relay/graph', JSON.stringify({ clientSecret }));
    Object.assign(process.env, {
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
      AWS_ENDPOINT_URL_EVENTBRIDGE: events.endpoint,
      AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
      POWERTOOLS_LOG_LEVEL: 'ERROR',
    });
  });
  afterAll(async () => {
    process.env = saved;
    await Promise.all([graph.close(), secrets.stop(), dynamo.stop(), events.close()]);
  });
  afterEach(() => vi.restoreAllMocks());

  /** A message the relay sent, as the send function records it in the ledger. */
  async function recordSent(messageId: string, provider: string, idempotencyKey?: string): Promise<void> {
    const now = new Date().toISOString();
    await new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName).put(
      {
        key: idempotencyKey ?? `sqs:${messageId}`,
        state: 'sent',
        version: 1,
        messageId,
        bodyHash: 'x',
        providerIndex: 0,
        attempts: 1,
        failures: [],
        provider,
        createdAt: now,
        updatedAt: now,
        sentAt: now,
        expiresAt: Math.floor(Date.now() / 1000) + 86_400,
      },
      undefined,
    );
  }

  function handlerFor(mailboxes: string[]) {
    return createBounceReportHandler(
      {
        ...process.env,
        [SETTINGS_ENV_VAR]: JSON.stringify({
          graph: {
            tenantId: TENANT,
            clientId: CLIENT_ID,
            senders: ['contoso.com'],
            credentialSecretId: secretArn,
            saveToSentItems: true,
            authorityHost: graph.authorityHost,
            graphEndpoint: graph.graphEndpoint,
          },
          mailboxes,
          lookbackMinutes: 60,
          maxMessagesPerMailbox: 50,
          ledger: { tableName: dynamo.ledgerTableName },
          suppression: { tableName: dynamo.suppressionTableName, retentionDays: 365 },
          events: { busName: 'relay-bus' },
        }),
      },
      { graphTransport: createHttpTransport({ ca: graph.caCertificate }) },
    );
  }

  it('turns a hard bounce into a suppression, a Bounced metric and a Mail Bounced event, once', async () => {
    // The message went out through SMTP (the ledger says so), from a Graph-covered mailbox.
    await recordSent('sqs-ab12', 'smtp', 'order-1234');
    graph.deliverToInbox(
      NOREPLY,
      exchangeNdr({
        mailbox: NOREPLY,
        recipient: 'Nobody@Fabrikam.com',
        status: '5.1.10',
        diagnostic: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup',
        relayMessageId: 'sqs-ab12',
        idempotencyKey: 'order-1234',
      }),
    );
    graph.deliverToInbox(NOREPLY, 'From: Ana <ana@fabrikam.com>\r\nSubject: Thanks!\r\n\r\nGot it.\r\n');
    // Report-shaped, but about no message the relay sent: anyone can mail this to a sending mailbox.
    graph.deliverToInbox(
      NOREPLY,
      exchangeNdr({
        mailbox: NOREPLY,
        recipient: 'ceo@fabrikam.com',
        status: '5.1.1',
        diagnostic: '550 5.1.1 User unknown',
        relayMessageId: 'forged-0000',
      }),
    );
    graph.deliverToInbox(
      NOREPLY,
      exchangeNdr({
        mailbox: NOREPLY,
        recipient: 'full@fabrikam.com',
        status: '5.2.2',
        diagnostic: '552 5.2.2 Mailbox full',
        relayMessageId: 'sqs-unknown-to-the-ledger',
      }),
    );

    const stdout = captureStdout();
    const results = await handlerFor([NOREPLY])({}, context).finally(() => stdout.stop());

    expect(results).toEqual([{ mailbox: NOREPLY, messagesRead: 4, reports: 3 }]);
    const list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    const found = await list.find(['nobody@fabrikam.com', 'full@fabrikam.com', 'ceo@fabrikam.com']);
    expect([...found.keys()]).toEqual(['nobody@fabrikam.com']);
    expect(found.get('nobody@fabrikam.com')?.reason).toMatch(
      /^hard bounce 5\.1\.10 via smtp: 550 5\.1\.10 RESOLVER/,
    );

    const bounced = emfPoints(stdout.written).filter((point) => point.name === 'Bounced');
    // One EMF document per set of dimension values at the end of the run, counts summed.
    expect(bounced.map((point) => [point.dimensions, point.value])).toEqual([
      [{ service: 'mail-relay', Provider: 'smtp' }, 1],
      // Not in the ledger: the mailbox's own path, Graph (graph.senders covers contoso.com).
      [{ service: 'mail-relay', Provider: 'graph' }, 2],
    ]);
    expect(
      events.events.map((event) => [
        event.detailType,
        event.detail.messageId,
        event.detail.bounceType,
        event.detail.suppressedRecipients,
      ]),
    ).toEqual([
      ['Mail Bounced', 'sqs-ab12', 'hard', ['nobody@fabrikam.com']],
      // The forged report is counted and published, and suppresses no one.
      ['Mail Bounced', 'forged-0000', 'hard', undefined],
      ['Mail Bounced', 'sqs-unknown-to-the-ledger', 'soft', undefined],
    ]);
    expect(events.events[0]?.detail).toMatchObject({
      idempotencyKey: 'order-1234',
      provider: 'smtp',
      code: '5.1.10',
      recipients: ['nobody@fabrikam.com'],
      suppressedRecipients: ['nobody@fabrikam.com'],
    });

    expect(
      (await new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName).get('order-1234'))?.feedback,
    ).toEqual([
      expect.objectContaining({ kind: 'bounced', provider: 'smtp', status: '5.1.10', suppressed: true }),
    ]);

    // The next run finds nothing new.
    const again = await handlerFor([NOREPLY])({}, context);
    expect(again).toEqual([{ mailbox: NOREPLY, messagesRead: 0, reports: 0 }]);
    expect(events.events).toHaveLength(3);
    expect(await new DynamoReportCursors(dynamo.client, dynamo.ledgerTableName).get(NOREPLY)).toMatchObject({
      seenIds: expect.any(Array),
    });
  });

  it('reads the other mailboxes when one refuses (no Mail.Read), fails the run, and reads it once allowed', async () => {
    await recordSent('sqs-scan-1', 'smtp');
    await recordSent('sqs-late-1', 'graph');
    graph.deliverToInbox(
      SCANNER,
      exchangeNdr({
        mailbox: SCANNER,
        recipient: 'left@example.com',
        status: '5.1.1',
        diagnostic: '550 5.1.1 <left@example.com>: Recipient address rejected: User unknown',
        relayMessageId: 'sqs-scan-1',
      }),
    );
    graph.injectFault({
      operation: 'listMessages',
      mailbox: NOREPLY,
      status: 403,
      code: 'ErrorAccessDenied',
    });

    const error = await handlerFor([NOREPLY, SCANNER])({}, context).catch((caught: unknown) => caught);

    expect(error).toBeInstanceOf(BounceReportError);
    expect((error as BounceReportError).results).toEqual([
      expect.objectContaining({ mailbox: NOREPLY, error: expect.stringContaining('ErrorAccessDenied') }),
      { mailbox: SCANNER, messagesRead: 1, reports: 1 },
    ]);
    const list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    expect((await list.find(['left@example.com'])).get('left@example.com')?.reason).toMatch(/via smtp/);

    graph.deliverToInbox(
      NOREPLY,
      exchangeNdr({
        mailbox: NOREPLY,
        recipient: 'late@fabrikam.com',
        status: '5.1.1',
        diagnostic: '550 5.1.1 User unknown',
        relayMessageId: 'sqs-late-1',
      }),
    );
    const allowed = await handlerFor([NOREPLY, SCANNER])({}, context);
    expect(allowed).toEqual([
      { mailbox: NOREPLY, messagesRead: 1, reports: 1 },
      { mailbox: SCANNER, messagesRead: 0, reports: 0 },
    ]);
    expect((await list.find(['late@fabrikam.com'])).size).toBe(1);
  });

  it('reads the other shapes real servers write: plain text, headers quoted in the text, Action first', async () => {
    const mailbox = 'avisos@contoso.com';
    await recordSent('sqs-text-1', 'smtp', 'order-text-1');
    await recordSent('sqs-quoted-1', 'smtp', 'order-quoted-1');
    const trace = (relayMessageId: string) => [
      'Message-ID: <original@contoso.com>',
      `X-Mail-Relay-Message-Id: ${relayMessageId}`,
      'From: avisos@contoso.com',
      'Subject: Your invoice',
    ];
    // qmail's plain text, the relay's headers below its marker.
    graph.deliverToInbox(
      mailbox,
      [
        'From: MAILER-DAEMON@mx.fabrikam.com',
        'Subject: failure notice',
        '',
        'Hi. This is the qmail-send program at mx.fabrikam.com.',
        "I'm afraid I wasn't able to deliver your message to the following addresses.",
        '',
        '<gone@fabrikam.com>:',
        'Sorry, no mailbox here by that name. (#5.1.1)',
        '',
        '--- Below this line is a copy of the message.',
        '',
        ...trace('sqs-text-1'),
        '',
      ].join('\r\n'),
    );
    // A delivery report whose only copy of the original's header is quoted in its text (Exchange
    // Online), and whose recipient blocks start with Action (Amazon SES): one unknown address and one
    // 5.1.1 whose words name a blocklist.
    const boundary = 'b-quoted';
    graph.deliverToInbox(
      mailbox,
      [
        'From: postmaster@fabrikam.com',
        'Subject: Undeliverable: Your invoice',
        `Content-Type: multipart/report; report-type=delivery-status; boundary="${boundary}"`,
        '',
        `--${boundary}`,
        'Content-Type: text/plain',
        '',
        'Delivery has failed to these recipients.',
        '',
        'Original message headers:',
        '',
        ...trace('sqs-quoted-1'),
        '',
        `--${boundary}`,
        'Content-Type: message/delivery-status',
        '',
        'Reporting-MTA: dns; mx.fabrikam.com',
        '',
        'Action: failed',
        'Final-Recipient: rfc822; left@fabrikam.com',
        'Status: 5.1.1',
        'Diagnostic-Code: smtp; 550 5.1.1 RESOLVER.ADR.RecipientNotFound',
        'Action: failed',
        'Final-Recipient: rfc822; listed@fabrikam.com',
        'Status: 5.1.1',
        'Diagnostic-Code: smtp; 550 5.7.1 Service unavailable, client host blocked using Spamhaus',
        '',
        `--${boundary}--`,
        '',
      ].join('\r\n'),
    );
    const before = events.events.length;

    const results = await handlerFor([mailbox])({}, context);

    expect(results).toEqual([{ mailbox, messagesRead: 2, reports: 2 }]);
    const list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    const found = await list.find(['gone@fabrikam.com', 'left@fabrikam.com', 'listed@fabrikam.com']);
    expect([...found.keys()].sort()).toEqual(['gone@fabrikam.com', 'left@fabrikam.com']);
    expect(found.get('gone@fabrikam.com')).toMatchObject({
      cause: 'user-unknown',
      evidence: { status: '5.1.1', provider: 'smtp', diagnostic: expect.stringContaining('no mailbox here') },
    });
    expect(found.get('left@fabrikam.com')).toMatchObject({
      cause: 'user-unknown',
      evidence: { status: '5.1.1' },
    });
    expect(
      events.events
        .slice(before)
        .map((event) => [event.detail.messageId, event.detail.bounceType, event.detail.suppressedRecipients]),
    ).toEqual([
      ['sqs-text-1', 'hard', ['gone@fabrikam.com']],
      ['sqs-quoted-1', 'hard', ['left@fabrikam.com']],
      // Blocklisted, whatever the Status says: soft, and no one suppressed.
      ['sqs-quoted-1', 'soft', undefined],
    ]);
  });

  it('reads a real-format Exchange Online report (fixture) sent through Graph', async () => {
    const mailbox = 'facturas@contoso.com';
    // The fixture's original carries X-Mail-Relay-Idempotency-Key: order-1234.
    await dynamo.client.send(
      new DeleteItemCommand({ TableName: dynamo.ledgerTableName, Key: { key: { S: 'order-1234' } } }),
    );
    await recordSent('d630ec51-7f2e-4145-9285-3f98349eb824', 'graph', 'order-1234');
    graph.deliverToInbox(
      mailbox,
      readFileSync(
        new URL('../../fixtures/feedback/ndr/exchange-online-recipient-not-found.eml', import.meta.url),
      ),
    );
    graph.deliverToInbox(
      mailbox,
      readFileSync(new URL('../../fixtures/feedback/ndr/exchange-online-auto-reply.eml', import.meta.url)),
    );
    const before = events.events.length;

    const results = await handlerFor([mailbox])({}, context);

    expect(results).toEqual([{ mailbox, messagesRead: 2, reports: 1 }]);
    const list = new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName);
    expect((await list.find(['nils.ekberg@fabrikam.com'])).get('nils.ekberg@fabrikam.com')?.reason).toMatch(
      /^hard bounce 5\.1\.10 via graph: 550 5\.1\.10 RESOLVER\.ADR\.RecipientNotFound/,
    );
    expect(events.events.slice(before)).toEqual([
      expect.objectContaining({
        detailType: 'Mail Bounced',
        detail: expect.objectContaining({
          messageId: 'd630ec51-7f2e-4145-9285-3f98349eb824',
          idempotencyKey: 'order-1234',
          provider: 'graph',
          suppressedRecipients: ['nils.ekberg@fabrikam.com'],
        }),
      }),
    ]);
  });
});
