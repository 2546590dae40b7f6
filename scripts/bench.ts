/**
 * Measures the per-message CPU cost of the relay's own work (parse + validate, then compose MIME for
 * SES or the JSON body for Graph), the part that runs for every record before the provider call. Run with `npm run bench`; numbers are for
 * comparing changes on one machine, not guarantees.
 */
// Local tooling may run on Node 20; the function runs Node 22, where this warning never fires.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { inlineAttachments } from '../lambda/core/attachments.ts';
import { createMessageSchema, isRawMessage, parseMessage } from '../lambda/core/message.ts';
import { toGraphMessage } from '../lambda/providers/graph/graph-message.ts';
import { composeMime } from '../lambda/providers/mime.ts';

const schema = createMessageSchema({ maxRecipients: 50, maxMessageBytes: 1024 * 1024 });

const cases = {
  'text only, 1 recipient': { text: 'Hello', to: ['a@example.org'] },
  'html + text, 50 recipients': {
    html: `<p>${'x'.repeat(20_000)}</p>`,
    text: 'x'.repeat(10_000),
    to: Array.from({ length: 50 }, (_, index) => `Person ${index} <p${index}@example.org>`),
  },
  '700 KB attachment': {
    text: 'See attachment',
    to: ['a@example.org'],
    attachments: [
      {
        filename: 'big.pdf',
        contentType: 'application/pdf',
        content: randomBytes(700_000).toString('base64'),
      },
    ],
  },
};

const composers = {
  'SES MIME': (message: ReturnType<typeof inlineAttachments>) => composeMime(message),
  'Graph JSON': async (message: ReturnType<typeof inlineAttachments>) =>
    JSON.stringify({ message: toGraphMessage(message), saveToSentItems: true }),
};

for (const [composerName, compose] of Object.entries(composers)) {
  for (const [name, fields] of Object.entries(cases)) {
    const body = JSON.stringify({ v: 1, from: 'App <app@example.com>', subject: 'Benchmark', ...fields });
    const iterations = body.length > 100_000 ? 50 : 2_000;
    const run = async () => {
      const parsed = parseMessage(body, schema);
      if (!parsed.ok) throw new Error(parsed.problems.join('; '));
      if (isRawMessage(parsed.message)) throw new Error('the benchmark composes JSON messages');
      return compose(inlineAttachments(parsed.message));
    };
    for (let warmup = 0; warmup < 10; warmup += 1) await run();
    const started = performance.now();
    for (let iteration = 0; iteration < iterations; iteration += 1) await run();
    const perMessage = (performance.now() - started) / iterations;
    console.log(
      `${`${composerName}, ${name}`.padEnd(42)} ${perMessage.toFixed(3).padStart(9)} ms/message  (${iterations} runs, body ${body.length} bytes)`,
    );
  }
}

// What the delivery ledger costs per message: the relay core with a provider that accepts at once,
// against the DynamoDB emulator on loopback (a read and two conditional writes per message) and
// against an in-memory ledger. Loopback only: in AWS each DynamoDB call adds a few ms of network.
{
  const { DynamoDeliveryLedger } = await import('../lambda/core/dynamo-ledger.ts');
  const { DynamoSuppressionList } = await import('../lambda/core/dynamo-suppression.ts');
  const { createRelay } = await import('../lambda/core/relay.ts');
  const { startDynamo } = await import('../test/helpers/dynamo.ts');
  const { MemoryLedger, MemorySuppressionList } = await import('../test/helpers/memory-ledger.ts');
  const { sqsRecord } = await import('../test/helpers/peers.ts');
  const dynamo = await startDynamo();
  const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const settings = {
    limits: { maxRecipients: 50, maxMessageBytes: 1024 * 1024 },
    maxReceiveCount: 10,
    retry: { maxAttempts: 3, baseDelaySeconds: 30, maxDelaySeconds: 900 },
    circuitBreaker: { failureThreshold: 5, cooldownSeconds: 60 },
    ledger: { tableName: dynamo.ledgerTableName, leaseSeconds: 30, retentionDays: 1 },
  };
  const stores = {
    'in-memory ledger': { ledger: new MemoryLedger(), suppressions: new MemorySuppressionList() },
    'DynamoDB emulator': {
      ledger: new DynamoDeliveryLedger(dynamo.client, dynamo.ledgerTableName),
      suppressions: new DynamoSuppressionList(dynamo.client, dynamo.suppressionTableName),
    },
  };
  const body = { v: 1, from: 'app@example.com', to: ['a@example.org'], subject: 'Benchmark', text: 'Hello' };
  for (const [name, store] of Object.entries(stores)) {
    const relay = createRelay({
      providers: [
        {
          name: 'ses',
          canSendAs: () => true,
          send: async () => ({ provider: 'ses', providerMessageId: 'x' }),
        },
      ],
      deadLetters: { deadLetter: async () => undefined },
      settings,
      logger: quiet,
      ...store,
    });
    const iterations = 500;
    const started = performance.now();
    for (let iteration = 0; iteration < iterations; iteration += 1) {
      const outcome = await relay.processRecord(sqsRecord(body));
      if (outcome.outcome !== 'sent') throw new Error(`unexpected outcome ${outcome.outcome}`);
    }
    const perMessage = (performance.now() - started) / iterations;
    console.log(
      `${`relay core, ${name}`.padEnd(42)} ${perMessage.toFixed(3).padStart(9)} ms/message  (${iterations} runs)`,
    );
  }
  await dynamo.stop();
}
