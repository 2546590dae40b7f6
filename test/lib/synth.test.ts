import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEAD_LETTER_ATTRIBUTES } from '../../lambda/core/dead-letter.ts';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { loadRelayConfig } from '../../lib/config.ts';
import { MailRelayStack } from '../../lib/mail-relay-stack.ts';
import { createClientCertificate } from '../../local/peers/certificates.ts';
import { startGraphPeer } from '../../local/peers/graph-peer.ts';
import { startSecretsManagerEmulator } from '../../local/secrets-manager-emulator.ts';
import { startDynamo } from '../helpers/dynamo.ts';
import { createQueue, drain, type Peers, sqsRecord, startPeers, validMessage } from '../helpers/peers.ts';
import { cdkJsonContext, REPO_ROOT, relayFunctionIn } from './support.ts';

/** The parts of `<stack>.assets.json` (cloud assembly schema) this test reads. */
interface FileAsset {
  readonly source: { readonly path: string; readonly packaging?: string };
  readonly destinations: Record<string, { readonly objectKey: string }>;
}

/** The one synth that runs esbuild for real (and the built-in CloudFormation validator), like `cdk synth`. */
describe('a full synth with bundling', () => {
  let outdir: string;
  let template: Template;
  let fileAssets: FileAsset[];

  beforeAll(() => {
    delete process.env.CDK_VALIDATION;
    outdir = mkdtempSync(join(tmpdir(), 'mail-relay-synth-'));
    const app = new App({ outdir, context: cdkJsonContext() });
    // Every optional part (Graph secret, attachment bucket) goes through the CloudFormation validator too.
    const config = loadRelayConfig(fileURLToPath(new URL('examples/full.config.json', REPO_ROOT)));
    const stack = new MailRelayStack(app, 'MailRelay', { config });
    app.synth();
    template = Template.fromStack(stack);
    const manifest = JSON.parse(readFileSync(join(outdir, 'MailRelay.assets.json'), 'utf8')) as {
      files: Record<string, FileAsset>;
    };
    fileAssets = Object.values(manifest.files);
  });

  afterAll(() => {
    if (outdir) rmSync(outdir, { recursive: true, force: true });
  });

  /** Follows the link the CLI follows when it publishes: the function's S3 key -> asset manifest entry. */
  function functionAsset(which: Parameters<typeof relayFunctionIn>[1] = 'send'): FileAsset {
    const s3Key = relayFunctionIn(template, which)[1].Properties.Code.S3Key;
    const asset = fileAssets.find((file) =>
      Object.values(file.destinations).some((destination) => destination.objectKey === s3Key),
    );
    if (!asset) throw new Error(`no asset in the manifest is published to ${s3Key}`);
    return asset;
  }

  function bundleFile(name: string, which: Parameters<typeof relayFunctionIn>[1] = 'send'): string {
    return join(outdir, functionAsset(which).source.path, name);
  }

  /** Imports a bundle in a child process with only what Lambda's environment would hold. */
  function exportedHandlerType(bundle: string, settings: unknown): string {
    return execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(pathToFileURL(bundle).href)}); console.log(typeof m.handler);`,
      ],
      {
        env: {
          PATH: process.env.PATH,
          AWS_REGION: 'eu-west-1',
          [SETTINGS_ENV_VAR]: JSON.stringify(settings),
        },
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'], // stderr lands in the error if the import fails
      },
    ).trim();
  }

  it('points the function at a zipped asset holding the bundle and its exported handler', () => {
    expect(functionAsset().source.packaging).toBe('zip');
    expect(existsSync(bundleFile('index.mjs'))).toBe(true);
    template.hasResourceProperties('AWS::Lambda::Function', { Handler: 'index.handler' });
  });

  it('bundles the send handler with its dependencies into a non-trivial ESM file', () => {
    // The SDK clients, Powertools and zod are inside: far more than a stub.
    expect(statSync(bundleFile('index.mjs')).size).toBeGreaterThan(200_000);
  });

  it('writes no source map next to the bundle (they are opt-in: sourceMaps)', () => {
    expect(existsSync(bundleFile('index.mjs.map'))).toBe(false);
  });

  const GRAPH_SETTINGS = {
    tenantId: 'contoso.onmicrosoft.com',
    clientId: '11111111-2222-3333-4444-555555555555',
    senders: ['contoso.com'],
    credentialSecretId: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:graph-AbCdEf',
    saveToSentItems: true,
    authorityHost: 'https://login.microsoftonline.com',
    graphEndpoint: 'https://graph.microsoft.com',
  };
  const queueSettings = {
    queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/outbox',
    deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/dead-letters',
    ...relaySettings('mail-relay-ledger', 'mail-relay-suppression'),
  };
  it.each([
    ['SES', { ...queueSettings, ses: { identities: ['example.com'] } }],
    [
      'Microsoft Graph and an attachment bucket',
      {
        ...queueSettings,
        graph: GRAPH_SETTINGS,
        attachments: { bucket: 'mail-relay-attachments' },
      },
    ],
  ])(
    'produces a bundle that loads in Node.js with %s settings and exports the handler function',
    (_, settings) => {
      // A child process, so the cold-start code runs with only the environment Lambda would give it.
      expect(exportedHandlerType(bundleFile('index.mjs'), settings)).toBe('function');
    },
  );

  it('bundles the feedback function and the bounce report reader (mailparser inside) into loadable handlers', () => {
    const feedback = { suppression: { tableName: 'mail-relay-suppression', retentionDays: 30 } };
    expect(exportedHandlerType(bundleFile('index.mjs', 'feedback'), feedback)).toBe('function');
    const reader = {
      ...feedback,
      graph: GRAPH_SETTINGS,
      mailboxes: ['noreply@contoso.com'],
      lookbackMinutes: 60,
      maxMessagesPerMailbox: 10,
      ledger: { tableName: 'mail-relay-ledger' },
    };
    expect(exportedHandlerType(bundleFile('index.mjs', 'bounceReader'), reader)).toBe('function');
  });

  it('bundles the ingest function (the MIME toolkit inside) into a loadable handler', () => {
    const ingest = {
      queueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/outbox',
      deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/123456789012/ingest-dead-letters',
      bucket: 'relay-ingress-0123abcd',
      prefix: 'ingress/',
      inlineMaxBytes: 49152,
      limits: { maxRecipients: 20, maxMessageBytes: 26214400 },
      clients: [{ name: 'scanner', senders: ['scanner@fabrikam.com'], route: 'scanner' }],
    };
    expect(exportedHandlerType(bundleFile('index.mjs', 'ingest'), ingest)).toBe('function');
  });

  it('bundles the SES brake (pauseSesOnCriticalBounces in the example) into a loadable handler', () => {
    const brake = { configurationSetName: 'mail-relay' };
    expect(exportedHandlerType(bundleFile('index.mjs', 'sesBrake'), brake)).toBe('function');
  });

  it('runs the bundled handler against SQS and SES peers: sends a valid record, dead-letters an invalid one', async () => {
    const peers: Peers = await startPeers();
    const dynamo = await startDynamo();
    try {
      const outbox = await createQueue(peers.sqs);
      const dlq = await createQueue(peers.sqs);
      const valid = sqsRecord(validMessage({ subject: 'From the bundle' }), { messageId: 'valid-1' });
      const invalid = sqsRecord(validMessage({ to: [] }), { messageId: 'invalid-1' });
      const settings = {
        queueUrl: outbox.url,
        deadLetterQueueUrl: dlq.url,
        ...relaySettings(dynamo.ledgerTableName, dynamo.suppressionTableName),
        ses: { identities: ['example.com'] },
      };
      const script = `
        const { handler } = await import(${JSON.stringify(pathToFileURL(bundleFile('index.mjs')).href)});
        const context = { functionName: 'send', awsRequestId: 'r1', getRemainingTimeInMillis: () => 30000 };
        const result = await handler({ Records: ${JSON.stringify([valid, invalid])} }, context);
        console.log(JSON.stringify(result));`;

      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
        env: {
          PATH: process.env.PATH,
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'test',
          AWS_SECRET_ACCESS_KEY: 'test',
          AWS_ENDPOINT_URL_SQS: peers.sqsEndpoint,
          AWS_ENDPOINT_URL_SESV2: peers.sesEndpoint,
          AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
          POWERTOOLS_LOG_LEVEL: 'ERROR',
          [SETTINGS_ENV_VAR]: JSON.stringify(settings),
        },
      });

      expect(JSON.parse(stdout.trim().split('\n').at(-1) ?? '')).toEqual({ batchItemFailures: [] });
      expect(peers.capture.sent).toHaveLength(1);
      const [dead] = await drain(peers.sqs, dlq.url);
      expect(dead?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.sourceMessageId]?.StringValue).toBe(
        'invalid-1',
      );
      expect(dead?.MessageAttributes?.[DEAD_LETTER_ATTRIBUTES.reason]?.StringValue).toContain('no recipient');
    } finally {
      await Promise.all([peers.stop(), dynamo.stop()]);
    }
  });

  it('runs the bundled handler against the Entra ID + Graph peer: certificate credential, token, sendMail', async () => {
    const tenantId = 'contoso.onmicrosoft.com';
    const clientId = '11111111-2222-3333-4444-555555555555';
    const certificate = await createClientCertificate();
    const graphPeer = await startGraphPeer({
      tenantId,
      clients: [{ clientId, certificatePem: certificate.certificatePem }],
    });
    const secrets = await startSecretsManagerEmulator(0);
    const peers: Peers = await startPeers();
    const dynamo = await startDynamo();
    try {
      // The bundle builds its own HTTPS transport, as in Lambda: trust the peer the standard Node.js way.
      const caFile = join(outdir, 'graph-peer-ca.pem');
      writeFileSync(caFile, graphPeer.caCertificate);
      const settings = {
        queueUrl: (await createQueue(peers.sqs)).url,
        deadLetterQueueUrl: (await createQueue(peers.sqs)).url,
        ...relaySettings(dynamo.ledgerTableName, dynamo.suppressionTableName),
        graph: {
          tenantId,
          clientId,
          senders: ['contoso.com'],
          credentialSecretId: secrets.putSecret(
            'graph',
            JSON.stringify({
              certificate: certificate.certificatePem,
              privateKey: certificate.privateKeyPem,
            }),
          ),
          saveToSentItems: true,
          authorityHost: graphPeer.authorityHost,
          graphEndpoint: graphPeer.graphEndpoint,
        },
      };
      const records = [1, 2].map((n) =>
        sqsRecord(validMessage({ from: 'billing@contoso.com', subject: `Bundle via Graph ${n}` })),
      );
      const script = `
        const { handler } = await import(${JSON.stringify(pathToFileURL(bundleFile('index.mjs')).href)});
        const context = { functionName: 'send', awsRequestId: 'r1', getRemainingTimeInMillis: () => 30000 };
        const result = await handler({ Records: ${JSON.stringify(records)} }, context);
        console.log(JSON.stringify(result));`;

      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
        env: {
          PATH: process.env.PATH,
          NODE_EXTRA_CA_CERTS: caFile,
          AWS_REGION: 'us-east-1',
          AWS_ACCESS_KEY_ID: 'test',
          AWS_SECRET_ACCESS_KEY: 'test',
          AWS_ENDPOINT_URL_SQS: peers.sqsEndpoint,
          AWS_ENDPOINT_URL_SECRETS_MANAGER: secrets.endpoint,
          AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
          POWERTOOLS_LOG_LEVEL: 'ERROR',
          [SETTINGS_ENV_VAR]: JSON.stringify(settings),
        },
      });

      expect(JSON.parse(stdout.trim().split('\n').at(-1) ?? '')).toEqual({ batchItemFailures: [] });
      expect(graphPeer.delivered.map((message) => message.message.subject).sort()).toEqual([
        'Bundle via Graph 1',
        'Bundle via Graph 2',
      ]);
      expect(graphPeer.tokenRequests).toEqual([
        expect.objectContaining({ credential: 'certificate', granted: true }),
      ]);
    } finally {
      await Promise.all([peers.stop(), secrets.stop(), graphPeer.close(), dynamo.stop()]);
    }
  });
});

/** The settings every function needs besides its queues and providers. */
function relaySettings(ledgerTableName: string, suppressionTableName: string) {
  return {
    maxReceiveCount: 5,
    limits: { maxRecipients: 50, maxMessageBytes: 1_048_576 },
    retry: { maxAttempts: 3, baseDelaySeconds: 1, maxDelaySeconds: 2 },
    circuitBreaker: { failureThreshold: 5, cooldownSeconds: 60 },
    ledger: { tableName: ledgerTableName, leaseSeconds: 30, retentionDays: 1 },
    suppression: { tableName: suppressionTableName },
  };
}
