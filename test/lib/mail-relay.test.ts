import { type CfnResource, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AccountRootPrincipal, Role } from 'aws-cdk-lib/aws-iam';
import type { IConstruct } from 'constructs';
import { describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../lambda/core/validation.ts';
import { parseGraphCredential } from '../../lambda/providers/graph/credentials.ts';
import { relaySettingsSchema } from '../../lambda/send/settings.ts';
import { parseRelayConfig } from '../../lib/config.ts';
import { MailRelay, type MailRelayGraphProps, type MailRelayProps } from '../../lib/mail-relay.ts';
import {
  errorFrom,
  fastApp,
  logicalIdOf,
  secretArn,
  sesArn,
  settingsIn,
  statementsOfRole,
} from './support.ts';

const MiB = 1024 * 1024;
const MINIMAL: MailRelayProps = { ses: { identities: ['example.com'] } };
const GRAPH: MailRelayGraphProps = {
  tenantId: 'contoso.onmicrosoft.com',
  clientId: '11111111-2222-3333-4444-555555555555',
  senders: ['contoso.com'],
};

function buildRelay(props: MailRelayProps = MINIMAL) {
  const stack = new Stack(fastApp(), 'Test');
  const relay = new MailRelay(stack, 'Relay', props);
  return { stack, relay, template: Template.fromStack(stack) };
}

interface PolicyStatementJson {
  readonly Sid?: string;
  readonly Action: string | string[];
  readonly Resource: unknown;
}

function allPolicyStatements(template: Template): PolicyStatementJson[] {
  const policies = template.findResources('AWS::IAM::Policy') as Record<
    string,
    { Properties: { PolicyDocument: { Statement: PolicyStatementJson[] } } }
  >;
  return Object.values(policies).flatMap((policy) => policy.Properties.PolicyDocument.Statement);
}

/** Statements with at least one action of the service (`ses`, `s3`, …), across every policy. */
function statementsFor(service: string, template: Template): PolicyStatementJson[] {
  return allPolicyStatements(template).filter((statement) =>
    [statement.Action].flat().some((action) => action.startsWith(`${service}:`)),
  );
}

/** The statements that let the function send through SES (not the account read pacing needs). */
function sesStatementsIn(template: Template): PolicyStatementJson[] {
  return statementsFor('ses', template).filter((statement) =>
    [statement.Action].flat().includes('ses:SendRawEmail'),
  );
}

/** The single resource of a type the template must hold, with its logical ID. */
function onlyResource(template: Template, type: string): { id: string; resource: Record<string, unknown> } {
  const found = Object.entries(template.findResources(type));
  expect(found, `resources of type ${type}`).toHaveLength(1);
  const [id, resource] = found[0] ?? [];
  return { id: id ?? '', resource: resource ?? {} };
}

function withProducer(props: MailRelayProps) {
  const stack = new Stack(fastApp(), 'Test');
  const relay = new MailRelay(stack, 'Relay', props);
  const producer = new Role(stack, 'Producer', { assumedBy: new AccountRootPrincipal() });
  relay.grantEnqueue(producer);
  const template = Template.fromStack(stack);
  const producerPolicy = Object.values(
    template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: logicalIdOf(stack, producer) }] },
    }),
  )[0] as { Properties: { PolicyDocument: { Statement: PolicyStatementJson[] } } } | undefined;
  return { stack, relay, statements: producerPolicy?.Properties.PolicyDocument.Statement ?? [] };
}

function functionRoleId(stack: Stack, relay: MailRelay): string {
  const role = relay.sendFunction.role;
  if (!role) throw new Error('the send function has no role');
  return logicalIdOf(stack, role);
}

describe('MailRelay queues', () => {
  it('dead-letters a message after 10 deliveries by default', () => {
    const { stack, relay, template } = buildRelay();

    template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [logicalIdOf(stack, relay.deadLetterQueue), 'Arn'] },
        maxReceiveCount: 10,
      },
    });
  });

  it('dead-letters a message after the configured number of deliveries', () => {
    const { template } = buildRelay({ ...MINIMAL, queue: { maxReceiveCount: 8 } });

    template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: Match.objectLike({ maxReceiveCount: 8 }),
    });
  });

  it('sets the outbox visibility timeout to 6 x the function timeout by default', () => {
    const { stack, relay, template } = buildRelay({ ...MINIMAL, sendFunction: { timeoutSeconds: 45 } });

    expect(template.toJSON().Resources[logicalIdOf(stack, relay.outbox)].Properties.VisibilityTimeout).toBe(
      270,
    );
  });

  it('uses the configured outbox visibility timeout', () => {
    const { stack, relay, template } = buildRelay({ ...MINIMAL, queue: { visibilityTimeoutSeconds: 900 } });

    expect(template.toJSON().Resources[logicalIdOf(stack, relay.outbox)].Properties.VisibilityTimeout).toBe(
      900,
    );
  });

  it('keeps outbox messages for the configured number of days', () => {
    const { stack, relay, template } = buildRelay({ ...MINIMAL, queue: { retentionDays: 4 } });

    expect(
      template.toJSON().Resources[logicalIdOf(stack, relay.outbox)].Properties.MessageRetentionPeriod,
    ).toBe(4 * 24 * 3600);
  });

  it('keeps dead-lettered messages for 14 days, since a redriven message keeps its original age', () => {
    const { stack, relay, template } = buildRelay({ ...MINIMAL, queue: { retentionDays: 4 } });

    expect(
      template.toJSON().Resources[logicalIdOf(stack, relay.deadLetterQueue)].Properties
        .MessageRetentionPeriod,
    ).toBe(14 * 24 * 3600);
  });

  it('encrypts every queue at rest with SQS-managed keys: outbox, dead-letter queue, feedback dead-letter queue', () => {
    const { template } = buildRelay();

    template.resourceCountIs('AWS::SQS::Queue', 3);
    template.resourcePropertiesCountIs('AWS::SQS::Queue', { SqsManagedSseEnabled: true }, 3);
  });

  it.each(['outbox', 'deadLetterQueue'] as const)(
    'denies every request to the %s that does not use TLS',
    (name) => {
      const { stack, relay, template } = buildRelay();
      const queueId = logicalIdOf(stack, relay[name]);

      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: queueId }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            {
              Effect: 'Deny',
              Principal: { AWS: '*' },
              Action: 'sqs:*',
              Resource: { 'Fn::GetAtt': [queueId, 'Arn'] },
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
            },
          ]),
        },
      });
    },
  );
});

describe('MailRelay props validation', () => {
  it('throws one error at synth that names every problem in the props', () => {
    const error = errorFrom(() =>
      buildRelay({
        ses: { identities: [] },
        message: { maxRecipients: 51 },
        queue: { maxReceiveCount: 0 },
        sendFunction: { batchSize: 11, logRetentionDays: 2 },
      }),
    );

    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain('Invalid MailRelay props at Test/Relay');
    for (const field of [
      'ses.identities',
      'message.maxRecipients',
      'queue.maxReceiveCount',
      'sendFunction.batchSize',
      'sendFunction.logRetentionDays',
    ]) {
      expect(error.message).toContain(`  - ${field}: `);
    }
  });

  it('rejects a visibility timeout shorter than 6 x the function timeout', () => {
    const error = errorFrom(() =>
      buildRelay({
        ...MINIMAL,
        queue: { visibilityTimeoutSeconds: 100 },
        sendFunction: { timeoutSeconds: 30 },
      }),
    );

    expect(error.message).toContain(
      'queue.visibilityTimeoutSeconds: must be at least 6 x sendFunction.timeoutSeconds',
    );
  });

  it('rejects an unknown (for example misspelt) property', () => {
    const queue = { retentionDays: 7, maxRecieveCount: 3 };

    expect(errorFrom(() => buildRelay({ ...MINIMAL, queue })).message).toContain(
      'queue.maxRecieveCount: unknown field',
    );
  });

  it('exposes the validated configuration with every default filled in', () => {
    const { relay } = buildRelay();

    // The defaults themselves are asserted in test/lib/config.test.ts.
    expect(relay.config).toEqual(parseRelayConfig(MINIMAL));
    expect(relay.config.queue.maxReceiveCount).toBe(10);
  });
});

describe('MailRelay send function', () => {
  it('runs on Node.js 22 on arm64', () => {
    const { template } = buildRelay();

    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
    });
  });

  it('uses the configured timeout and memory', () => {
    const { template } = buildRelay({ ...MINIMAL, sendFunction: { timeoutSeconds: 60, memoryMiB: 1024 } });

    template.hasResourceProperties('AWS::Lambda::Function', { Timeout: 60, MemorySize: 1024 });
  });

  it('logs to its own log group, kept for the configured number of days', () => {
    const { stack, relay, template } = buildRelay({ ...MINIMAL, sendFunction: { logRetentionDays: 90 } });
    const logGroupId = logicalIdOf(stack, relay.sendFunction.logGroup);

    expect(template.toJSON().Resources[logGroupId].Properties.RetentionInDays).toBe(90);
    template.hasResourceProperties('AWS::Lambda::Function', {
      LoggingConfig: { LogGroup: { Ref: logGroupId } },
    });
  });

  it('has a role without AWS managed policies that may write only to its own log group', () => {
    const { stack, relay, template } = buildRelay();
    const logGroupId = logicalIdOf(stack, relay.sendFunction.logGroup);

    template.hasResourceProperties('AWS::IAM::Role', {
      AssumeRolePolicyDocument: Match.objectLike({
        Statement: [Match.objectLike({ Principal: { Service: 'lambda.amazonaws.com' } })],
      }),
      ManagedPolicyArns: Match.absent(),
    });
    const logStatements = statementsOfRole(template, functionRoleId(stack, relay)).filter((statement) =>
      [statement.Action].flat().some((action) => action.startsWith('logs:')),
    );
    expect(logStatements).toEqual([
      expect.objectContaining({
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: { 'Fn::GetAtt': [logGroupId, 'Arn'] },
      }),
    ]);
  });

  it('names the service for Powertools and leaves source maps off (a cold-start cost)', () => {
    const { template } = buildRelay();

    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          NODE_OPTIONS: Match.absent(),
          POWERTOOLS_SERVICE_NAME: 'mail-relay',
          POWERTOOLS_LOG_LEVEL: 'INFO',
        }),
      },
    });
  });

  it('ships every function with its source map when sourceMaps is on', () => {
    const { template } = buildRelay({
      ses: { identities: ['example.com'] },
      monitoring: { pauseSesOnCriticalBounces: true },
      sourceMaps: true,
    });

    const functions = Object.values(template.findResources('AWS::Lambda::Function')).filter((resource) =>
      resource.Properties.Runtime?.startsWith('nodejs'),
    );
    // The send, feedback and SES brake functions.
    expect(functions.length).toBeGreaterThanOrEqual(3);
    for (const resource of functions) {
      expect(resource.Properties.Environment.Variables.NODE_OPTIONS).toBe('--enable-source-maps');
    }
  });

  it('writes settings the function accepts: identities, limits, receive count and both queue URLs', () => {
    const { stack, relay, template } = buildRelay({
      ses: { identities: ['example.com', 'noreply@example.org'], configurationSetName: 'relay' },
      message: { maxRecipients: 20 },
      queue: { maxReceiveCount: 3 },
    });

    expect(relaySettingsSchema.parse(settingsIn(template))).toEqual({
      queueUrl: `https://sqs.test/${logicalIdOf(stack, relay.outbox)}`,
      deadLetterQueueUrl: `https://sqs.test/${logicalIdOf(stack, relay.deadLetterQueue)}`,
      maxReceiveCount: 3,
      limits: { maxRecipients: 20, maxMessageBytes: 40 * MiB },
      ses: {
        identities: ['example.com', 'noreply@example.org'],
        configurationSetName: 'relay',
      },
      retry: { maxAttempts: 3, baseDelaySeconds: 30, maxDelaySeconds: 900 },
      circuitBreaker: { failureThreshold: 5, cooldownSeconds: 60 },
      ledger: {
        tableName: `stack-${logicalIdOf(stack, relay.deliveryLedger.table)}-ABC123`,
        leaseSeconds: 30,
        retentionDays: 14,
      },
      suppression: { tableName: `stack-${logicalIdOf(stack, relay.suppressionList.table)}-ABC123` },
      // The default events.publish (for this function dead-lettered and suppressed) goes unnamed.
      events: { busName: 'default' },
      pacing: {
        tableName: `stack-${logicalIdOf(stack, relay.pacingTable?.table as never)}-ABC123`,
        maxWaitSeconds: 5,
      },
    });
  });

  it('writes the routes, retry and circuit breaker settings, and the lease from the function timeout', () => {
    const routes = [
      { name: 'contoso', from: ['*@contoso.com'], providers: ['graph' as const, 'ses' as const] },
      {
        name: 'crm',
        from: ['*@crm.example.com'],
        providers: ['ses' as const],
        rewriteFrom: { address: 'crm@example.com', name: 'CRM' },
      },
    ];
    const { template } = buildRelay({
      ses: { identities: ['example.com', 'contoso.com'] },
      graph: GRAPH,
      routes,
      retry: { maxAttempts: 5, baseDelaySeconds: 10, maxDelaySeconds: 60 },
      circuitBreaker: { failureThreshold: 2, cooldownSeconds: 30 },
      ledger: { retentionDays: 3 },
      sendFunction: { timeoutSeconds: 45 },
    });

    expect(relaySettingsSchema.parse(settingsIn(template))).toMatchObject({
      routes,
      retry: { maxAttempts: 5, baseDelaySeconds: 10, maxDelaySeconds: 60 },
      circuitBreaker: { failureThreshold: 2, cooldownSeconds: 30 },
      ledger: { leaseSeconds: 45, retentionDays: 3 },
    });
  });
});

describe('MailRelay outcome events', () => {
  it.each([
    [undefined, 'default'],
    ['orders-bus', 'orders-bus'],
  ])('lets the function put events on the configured bus only (%s)', (busName, expected) => {
    const { stack, relay, template } = buildRelay(
      busName === undefined ? MINIMAL : { ...MINIMAL, events: { busName } },
    );
    const statements = statementsOfRole(template, functionRoleId(stack, relay));
    const putEvents = statements.filter((statement) =>
      [statement.Action].flat().includes('events:PutEvents'),
    );

    expect(putEvents).toHaveLength(1);
    expect(JSON.stringify(putEvents[0]?.Resource)).toContain(`:event-bus/${expected}`);
    expect(relaySettingsSchema.parse(settingsIn(template)).events).toEqual({ busName: expected });
  });

  it('publishes sent only when asked, and writes Route metrics only when asked', () => {
    const { template } = buildRelay({
      ...MINIMAL,
      events: { publish: { sent: true, suppressed: false } },
      monitoring: { routeMetrics: true },
    });
    const settings = relaySettingsSchema.parse(settingsIn(template));

    expect(settings.events).toEqual({ busName: 'default', kinds: ['sent', 'dead-lettered'] });
    expect(settings.routeMetrics).toBe(true);
    expect(relaySettingsSchema.parse(settingsIn(buildRelay().template)).routeMetrics).toBeUndefined();
  });

  it('gives the send function no events settings and no events:PutEvents when it publishes no kind', () => {
    const { stack, relay, template } = buildRelay({
      ...MINIMAL,
      events: { publish: { 'dead-lettered': false, suppressed: false } },
    });
    const actions = statementsOfRole(template, functionRoleId(stack, relay)).flatMap((statement) =>
      [statement.Action].flat(),
    );

    expect(actions).not.toContain('events:PutEvents');
    expect(relaySettingsSchema.parse(settingsIn(template)).events).toBeUndefined();
  });
});

describe('MailRelay delivery ledger and suppression list', () => {
  it('creates both tables on demand, encrypted, with TTL and point-in-time recovery', () => {
    const { stack, relay, template } = buildRelay();

    for (const [table, key, deletion] of [
      [relay.deliveryLedger.table, 'key', 'Delete'],
      [relay.suppressionList.table, 'address', 'Retain'],
    ] as const) {
      template.hasResource('AWS::DynamoDB::Table', {
        DeletionPolicy: deletion,
        Properties: {
          KeySchema: [{ AttributeName: key, KeyType: 'HASH' }],
          AttributeDefinitions: Match.arrayWith([{ AttributeName: key, AttributeType: 'S' }]),
          BillingMode: 'PAY_PER_REQUEST',
          TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
          SSESpecification: { SSEEnabled: true },
          PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        },
      });
      expect(
        template.toJSON().Resources[logicalIdOf(stack, table)].Properties.KeySchema[0].AttributeName,
      ).toBe(key);
    }
    // The third: the pacing table (see the pacing tests).
    template.resourceCountIs('AWS::DynamoDB::Table', 3);
    // For `mail-relay status <SQS message id>` of a message keyed by its idempotency key.
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'key', KeyType: 'HASH' }],
      GlobalSecondaryIndexes: [
        {
          IndexName: 'messageId',
          KeySchema: [{ AttributeName: 'messageId', KeyType: 'HASH' }],
          Projection: { ProjectionType: 'KEYS_ONLY' },
        },
      ],
    });
  });

  it('lets the function read and conditionally write the ledger, and only look up the suppression list', () => {
    const { stack, relay, template } = buildRelay();
    const statements = statementsOfRole(template, functionRoleId(stack, relay));
    const dynamoStatements = statements
      .map((statement) => ({
        actions: [statement.Action].flat().filter((action) => action.startsWith('dynamodb:')),
        resource: statement.Resource,
      }))
      .filter((statement) => statement.actions.length > 0);
    const arnOf = (table: object) => ({ 'Fn::GetAtt': [logicalIdOf(stack, table as never), 'Arn'] });

    expect(dynamoStatements).toEqual([
      {
        actions: ['dynamodb:BatchGetItem', 'dynamodb:GetItem', 'dynamodb:PutItem'],
        resource: arnOf(relay.deliveryLedger.table),
      },
      {
        actions: ['dynamodb:BatchGetItem', 'dynamodb:GetItem'],
        resource: arnOf(relay.suppressionList.table),
      },
      {
        actions: ['dynamodb:DeleteItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:UpdateItem'],
        resource: arnOf(relay.pacingTable?.table as never),
      },
    ]);
  });

  it('creates the pacing table on demand with TTL, and none when pacing is off', () => {
    const { stack, relay, template } = buildRelay();

    template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Delete',
      Properties: {
        KeySchema: [{ AttributeName: 'key', KeyType: 'HASH' }],
        BillingMode: 'PAY_PER_REQUEST',
        TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
        SSESpecification: { SSEEnabled: true },
      },
    });
    expect(relay.pacingTable).toBeDefined();
    expect(template.toJSON().Resources[logicalIdOf(stack, relay.pacingTable?.table as never)]).toBeDefined();

    const off = buildRelay({ ses: { identities: ['example.com'] }, pacing: { enabled: false } });
    expect(off.relay.pacingTable).toBeUndefined();
    off.template.resourceCountIs('AWS::DynamoDB::Table', 2);
    expect(relaySettingsSchema.parse(settingsIn(off.template)).pacing).toBeUndefined();
  });
});

describe('MailRelay event source', () => {
  it('invokes the function from the outbox in batches of 10 by default', () => {
    const { stack, relay, template } = buildRelay();

    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalIdOf(stack, relay.outbox), 'Arn'] },
      FunctionName: { Ref: logicalIdOf(stack, relay.sendFunction) },
      BatchSize: 10,
    });
  });

  it('reports failed records individually so one bad message does not retry its whole batch', () => {
    const { template } = buildRelay();

    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('caps concurrent invocations at the configured maximum concurrency', () => {
    const { template } = buildRelay({ ...MINIMAL, sendFunction: { maxConcurrency: 25, batchSize: 4 } });

    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 4,
      ScalingConfig: { MaximumConcurrency: 25 },
    });
  });
});

describe('MailRelay permissions', () => {
  it('lets the function send only from the configured SES identities, with the relay configuration set', () => {
    const { stack, relay, template } = buildRelay({
      ses: { identities: ['example.com', 'noreply@example.org'] },
    });
    const sesStatements = statementsOfRole(template, functionRoleId(stack, relay)).filter((statement) =>
      [statement.Action].flat().some((action) => action.startsWith('ses:Send')),
    );

    expect(sesStatements).toHaveLength(1);
    expect(sesStatements[0]?.Action).toEqual(['ses:SendEmail', 'ses:SendRawEmail']);
    // Order-insensitive: the minimizePolicies feature flag sorts resources.
    expect(sesStatements[0]?.Resource).toHaveLength(3);
    expect(sesStatements[0]?.Resource).toEqual(
      expect.arrayContaining([
        sesArn('identity/example.com'),
        sesArn('identity/noreply@example.org'),
        // The configuration set the stack created, which every SES send uses.
        sesArn('configuration-set/', logicalIdOf(stack, relay.sesFeedback?.configurationSet as IConstruct)),
      ]),
    );
  });

  it('includes the configuration set in the SES permission when one is configured', () => {
    const { template } = buildRelay({ ses: { identities: ['example.com'], configurationSetName: 'relay' } });
    const [sesStatement] = sesStatementsIn(template);

    // Order-insensitive: the minimizePolicies feature flag sorts resources.
    expect(sesStatement?.Resource).toHaveLength(2);
    expect(sesStatement?.Resource).toEqual(
      expect.arrayContaining([sesArn('identity/example.com'), sesArn('configuration-set/relay')]),
    );
  });

  it('never grants an SES action on every resource, except reading the account send rate to pace to', () => {
    const { template } = buildRelay({ ses: { identities: ['example.com'], configurationSetName: 'relay' } });
    const sesStatements = statementsFor('ses', template);

    expect(sesStatements).toHaveLength(2);
    for (const statement of sesStatements) {
      expect([statement.Action].flat()).not.toContain('ses:*');
      if ([statement.Resource].flat().includes('*')) expect(statement.Action).toBe('ses:GetAccount');
    }
    // With SES pacing off (or a rate set), nothing on *.
    const fixedRate = buildRelay({ ses: { identities: ['example.com'], pacing: false } });
    expect(
      statementsFor('ses', fixedRate.template).flatMap((statement) => [statement.Resource].flat()),
    ).not.toContain('*');
  });

  it('lets the function change the visibility of outbox messages, to wait out a Retry-After', () => {
    const { stack, relay, template } = buildRelay();

    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: functionRoleId(stack, relay) }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: Match.arrayWith(['sqs:ChangeMessageVisibility']),
            Resource: { 'Fn::GetAtt': [logicalIdOf(stack, relay.outbox), 'Arn'] },
          }),
        ]),
      },
    });
  });

  it('lets the function put a message waiting for a provider limit back on the outbox, only when pacing', () => {
    const sendsToOutbox = (props: MailRelayProps) => {
      const { stack, relay, template } = buildRelay(props);
      return statementsOfRole(template, functionRoleId(stack, relay)).some(
        (statement) =>
          [statement.Action].flat().includes('sqs:SendMessage') &&
          JSON.stringify(statement.Resource) ===
            JSON.stringify({ 'Fn::GetAtt': [logicalIdOf(stack, relay.outbox), 'Arn'] }),
      );
    };

    expect(sendsToOutbox({ ses: { identities: ['example.com'] } })).toBe(true);
    expect(sendsToOutbox({ ses: { identities: ['example.com'] }, pacing: { enabled: false } })).toBe(false);
  });

  it('lets the function move invalid requests to the dead-letter queue', () => {
    const { stack, relay, template } = buildRelay();

    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: functionRoleId(stack, relay) }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: Match.arrayWith(['sqs:SendMessage']),
            Resource: { 'Fn::GetAtt': [logicalIdOf(stack, relay.deadLetterQueue), 'Arn'] },
          }),
        ]),
      },
    });
  });

  it('grantEnqueue lets a producer send messages to the outbox', () => {
    const stack = new Stack(fastApp(), 'Test');
    const relay = new MailRelay(stack, 'Relay', MINIMAL);
    const producer = new Role(stack, 'Producer', { assumedBy: new AccountRootPrincipal() });

    relay.grantEnqueue(producer);

    Template.fromStack(stack).hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: logicalIdOf(stack, producer) }],
      PolicyDocument: {
        Statement: [
          Match.objectLike({
            Effect: 'Allow',
            Action: Match.arrayWith(['sqs:SendMessage']),
            Resource: { 'Fn::GetAtt': [logicalIdOf(stack, relay.outbox), 'Arn'] },
          }),
        ],
      },
    });
  });
});

describe('MailRelay with Microsoft Graph', () => {
  it('creates a placeholder secret for the credential when none is given, kept when the stack goes', () => {
    const { template } = buildRelay({ graph: GRAPH });

    const { resource } = onlyResource(template, 'AWS::SecretsManager::Secret');
    expect(resource).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });

  it('fills the placeholder secret with a value the send function reports as "credential not set yet"', () => {
    const { template } = buildRelay({ graph: GRAPH });
    const { resource } = onlyResource(template, 'AWS::SecretsManager::Secret');
    const secretString = (resource as { Properties: { SecretString: string } }).Properties.SecretString;

    expect(() => parseGraphCredential(secretString)).toThrow(
      expect.objectContaining({ code: 'GraphCredentialNotSet' }),
    );
  });

  it('keeps the placeholder text unchanged, since a new text would overwrite the credential on the next deploy', () => {
    const { template } = buildRelay({ graph: GRAPH });

    template.hasResourceProperties('AWS::SecretsManager::Secret', {
      SecretString: JSON.stringify({
        placeholder:
          'Replace this value with {"clientSecret": "..."} or {"certificate": "-----BEGIN CERTIFICATE-----...", "privateKey": "-----BEGIN PRIVATE KEY-----..."}; see the README, Microsoft Graph setup',
      }),
    });
  });

  it('lets the function read only the placeholder secret', () => {
    const { stack, relay, template } = buildRelay({ graph: GRAPH });
    const secretId = stack.getLogicalId(relay.graphCredential?.secret.node.defaultChild as CfnResource);

    expect(statementsFor('secretsmanager', template)).toEqual([
      expect.objectContaining({
        Effect: 'Allow',
        Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'],
        Resource: { Ref: secretId },
      }),
    ]);
  });

  it('uses a secret given by its complete ARN, granting read on exactly that ARN', () => {
    const credentialSecretArn = secretArn('mail-relay/graph-AbCdEf');
    const { template } = buildRelay({ graph: { ...GRAPH, credentialSecretArn } });

    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    expect(statementsFor('secretsmanager', template)).toEqual([
      expect.objectContaining({
        Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'],
        Resource: credentialSecretArn,
      }),
    ]);
  });

  it('grants a secret given by a partial ARN with the 6 characters Secrets Manager appends', () => {
    const credentialSecretArn = secretArn('mail-relay/graph');
    const { template } = buildRelay({ graph: { ...GRAPH, credentialSecretArn } });

    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    expect(statementsFor('secretsmanager', template)).toEqual([
      expect.objectContaining({ Resource: `${credentialSecretArn}-??????` }),
    ]);
  });

  it('refuses at synth a secret in another region than the stack, which the function could not read', () => {
    const stack = new Stack(fastApp(), 'Test', { env: { account: '123456789012', region: 'eu-central-1' } });
    const credentialSecretArn = secretArn('mail-relay/graph-AbCdEf', 'eu-west-1');

    const error = errorFrom(
      () => new MailRelay(stack, 'Relay', { graph: { ...GRAPH, credentialSecretArn } }),
    );

    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain(
      'graph.credentialSecretArn: the secret is in eu-west-1 but the stack deploys to eu-central-1',
    );
  });

  it('accepts a secret in the region the stack deploys to', () => {
    const stack = new Stack(fastApp(), 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
    const credentialSecretArn = secretArn('mail-relay/graph-AbCdEf', 'eu-west-1');

    const relay = new MailRelay(stack, 'Relay', { graph: { ...GRAPH, credentialSecretArn } });

    expect(relay.graphCredential?.secret.secretArn).toBe(credentialSecretArn);
  });

  it('writes graph settings with the hosts of the chosen cloud and the secret to read', () => {
    const { stack, relay, template } = buildRelay({ graph: { ...GRAPH, cloud: 'usgov' } });
    const secretId = stack.getLogicalId(relay.graphCredential?.secret.node.defaultChild as CfnResource);

    expect(relaySettingsSchema.parse(settingsIn(template)).graph).toEqual({
      ...GRAPH,
      credentialSecretId: secretArn(`${secretId}-AbCdEf`),
      saveToSentItems: true,
      sentItemsLookupSeconds: 300,
      authorityHost: 'https://login.microsoftonline.us',
      graphEndpoint: 'https://graph.microsoft.us',
    });
  });

  it('writes the configured hosts instead of the cloud ones, and the given secret ARN', () => {
    const credentialSecretArn = secretArn('mail-relay/graph-AbCdEf');
    const { template } = buildRelay({
      graph: {
        ...GRAPH,
        credentialSecretArn,
        saveToSentItems: false,
        authorityHost: 'https://login.example.test',
        graphEndpoint: 'https://graph.example.test',
      },
    });

    expect(relaySettingsSchema.parse(settingsIn(template)).graph).toMatchObject({
      credentialSecretId: credentialSecretArn,
      saveToSentItems: false,
      // Without a copy in Sent Items there is nothing to look up after a lost answer.
      sentItemsLookupSeconds: 0,
      authorityHost: 'https://login.example.test',
      graphEndpoint: 'https://graph.example.test',
    });
  });

  it('sends through Graph alone: no SES settings and no SES permission', () => {
    const { template } = buildRelay({ graph: GRAPH });

    expect(relaySettingsSchema.parse(settingsIn(template)).ses).toBeUndefined();
    expect(sesStatementsIn(template)).toEqual([]);
  });

  it('creates no secret and writes no graph settings without a graph section', () => {
    const { relay, template } = buildRelay();

    expect(relay.graphCredential).toBeUndefined();
    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    expect(statementsFor('secretsmanager', template)).toEqual([]);
    expect(relaySettingsSchema.parse(settingsIn(template)).graph).toBeUndefined();
  });

  it('rejects a configuration without any provider', () => {
    const error = errorFrom(() => buildRelay({}));

    expect(error.message).toContain('(root): configure at least one provider');
  });
});

describe('MailRelay attachment bucket', () => {
  const WITH_ATTACHMENTS: MailRelayProps = { ...MINIMAL, attachments: { retentionDays: 3 } };

  it('creates no bucket and writes no attachment settings unless attachments is configured', () => {
    const { relay, template } = buildRelay();

    expect(relay.attachmentBucket).toBeUndefined();
    template.resourceCountIs('AWS::S3::Bucket', 0);
    expect(relaySettingsSchema.parse(settingsIn(template)).attachments).toBeUndefined();
  });

  it('tells the function which bucket attachments may come from', () => {
    const { stack, relay, template } = buildRelay(WITH_ATTACHMENTS);
    const bucketId = logicalIdOf(stack, relay.attachmentBucket?.bucket as IConstruct);

    expect(relaySettingsSchema.parse(settingsIn(template)).attachments).toEqual({
      bucket: bucketId.toLowerCase(),
    });
  });

  it('encrypts objects with S3-managed keys and blocks every kind of public access', () => {
    const { template } = buildRelay(WITH_ATTACHMENTS);

    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    });
  });

  it('denies every request to the bucket that does not use TLS', () => {
    const { stack, relay, template } = buildRelay(WITH_ATTACHMENTS);
    const bucketId = logicalIdOf(stack, relay.attachmentBucket?.bucket as IConstruct);

    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      Bucket: { Ref: bucketId },
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 's3:*',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ]),
      },
    });
  });

  it('expires attachments after the configured days and abandoned multipart uploads after one', () => {
    const { template } = buildRelay(WITH_ATTACHMENTS);

    template.hasResourceProperties('AWS::S3::Bucket', {
      LifecycleConfiguration: {
        Rules: [
          {
            Status: 'Enabled',
            ExpirationInDays: 3,
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
          },
        ],
      },
    });
  });

  it('keeps the bucket when the stack is deleted, so a deletion never fails on a waiting attachment', () => {
    const { template } = buildRelay(WITH_ATTACHMENTS);

    expect(onlyResource(template, 'AWS::S3::Bucket').resource).toMatchObject({ DeletionPolicy: 'Retain' });
  });

  it('lets the function download objects from the bucket and list it, nothing more', () => {
    const { stack, relay, template } = buildRelay(WITH_ATTACHMENTS);
    const bucketArn = {
      'Fn::GetAtt': [logicalIdOf(stack, relay.attachmentBucket?.bucket as IConstruct), 'Arn'],
    };

    expect(statementsFor('s3', template)).toEqual([
      expect.objectContaining({ Action: 's3:GetObject', Resource: { 'Fn::Join': ['', [bucketArn, '/*']] } }),
      expect.objectContaining({ Action: 's3:ListBucket', Resource: bucketArn }),
    ]);
  });

  it('grantEnqueue also lets a producer upload attachments to the bucket', () => {
    const { stack, relay, statements } = withProducer(WITH_ATTACHMENTS);
    const bucketArn = {
      'Fn::GetAtt': [logicalIdOf(stack, relay.attachmentBucket?.bucket as IConstruct), 'Arn'],
    };

    expect(statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          Action: expect.arrayContaining(['sqs:SendMessage']),
          Resource: { 'Fn::GetAtt': [logicalIdOf(stack, relay.outbox), 'Arn'] },
        }),
        expect.objectContaining({
          Action: expect.arrayContaining(['s3:PutObject']),
          Resource: { 'Fn::Join': ['', [bucketArn, '/*']] },
        }),
      ]),
    );
    // Uploading is all: a producer cannot read what others uploaded.
    const s3Actions = statements
      .flatMap((statement) => [statement.Action].flat())
      .filter((a) => a.startsWith('s3:'));
    expect(s3Actions).not.toContain('s3:GetObject');
  });

  it('grantEnqueue grants nothing on S3 without an attachment bucket', () => {
    const { statements } = withProducer(MINIMAL);

    expect(statements.flatMap((statement) => [statement.Action].flat())).not.toEqual(
      expect.arrayContaining([expect.stringMatching(/^s3:/)]),
    );
  });
});

describe('MailRelay with SMTP', () => {
  const CONNECTOR: MailRelayProps = {
    egress: {},
    smtp: { senders: ['scanner@contoso.com'], mode: 'connector' },
  };

  it('writes smtp settings the function accepts, with the connector host derived from the sender', () => {
    const { template } = buildRelay(CONNECTOR);

    expect(relaySettingsSchema.parse(settingsIn(template, 'staticEgress')).smtp).toEqual([
      {
        name: 'smtp',
        senders: ['scanner@contoso.com'],
        mode: 'connector',
        host: 'contoso-com.mail.protection.outlook.com',
        port: 25,
        tls: 'starttls',
        requireTls: true,
        auth: 'none',
        maxConnections: 10,
      },
    ]);
  });

  it('lets the function out on 443 and on the SMTP port through the egress security group', () => {
    const { stack, relay, template } = buildRelay(CONNECTOR);
    const group =
      template.toJSON().Resources[logicalIdOf(stack, relay.staticEgress?.securityGroup as IConstruct)];

    expect(relay.staticEgress?.egressPorts).toEqual([25, 443]);
    expect(group.Properties.SecurityGroupEgress).toEqual([
      expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 25, ToPort: 25 }),
      expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 }),
    ]);
  });

  it('reads no secret without a credentialSecretArn', () => {
    const { relay, template } = buildRelay(CONNECTOR);

    expect(relay.credentials.get('smtp')).toBeUndefined();
    expect(statementsFor('secretsmanager', template)).toEqual([]);
  });

  it('lets the function read exactly the SMTP credential secret, and tells it which one', () => {
    const credentialSecretArn = secretArn('mail-relay/smtp-AbCdEf');
    const { template } = buildRelay({
      smtp: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net', credentialSecretArn },
    });

    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    expect(statementsFor('secretsmanager', template)).toEqual([
      expect.objectContaining({
        Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'],
        Resource: credentialSecretArn,
      }),
    ]);
    expect(relaySettingsSchema.parse(settingsIn(template)).smtp).toMatchObject([
      { auth: 'plain', port: 587, credentialSecretId: credentialSecretArn },
    ]);
  });

  it('refuses at synth an SMTP credential secret in another region than the stack', () => {
    const stack = new Stack(fastApp(), 'Test', { env: { account: '123456789012', region: 'eu-central-1' } });
    const credentialSecretArn = secretArn('mail-relay/smtp-AbCdEf', 'eu-west-1');

    const error = errorFrom(
      () =>
        new MailRelay(stack, 'Relay', {
          smtp: {
            senders: ['contoso.com'],
            mode: 'smarthost',
            host: 'mail.example.net',
            credentialSecretArn,
          },
        }),
    );

    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain(
      'smtp.credentialSecretArn: the secret is in eu-west-1 but the stack deploys to eu-central-1',
    );
  });

  it('sends SMTP from the static-egress function: the send function passes those messages to its queue', () => {
    const { stack, relay, template } = buildRelay({ ...CONNECTOR, ses: { identities: ['example.com'] } });
    const sender = relay.staticEgressSender;
    if (!sender) throw new Error('no static-egress sender');
    const egressQueue = `https://sqs.test/${logicalIdOf(stack, sender.queue)}`;

    // The send function names whom smtp sends as (to route by) and the queue to pass its messages
    // to; the smtp section itself is only the static-egress function's.
    const main = relaySettingsSchema.parse(settingsIn(template));
    expect(main.staticEgress).toEqual({
      queueUrl: egressQueue,
      providers: [{ name: 'smtp', senders: ['scanner@contoso.com'] }],
    });
    expect(main.smtp).toBeUndefined();
    expect(main.queueUrl).toBe(`https://sqs.test/${logicalIdOf(stack, relay.outbox)}`);
    // The static-egress function sends through every provider (a route may fall back), and its
    // retries and waits go back on its own queue.
    const egress = relaySettingsSchema.parse(settingsIn(template, 'staticEgress'));
    expect(egress.staticEgress).toBeUndefined();
    expect(egress.queueUrl).toBe(egressQueue);
    expect(egress.smtp).toMatchObject([{ name: 'smtp', host: 'contoso-com.mail.protection.outlook.com' }]);
    expect(egress.ses).toEqual(main.ses);

    // Its queue dead-letters to the relay's one DLQ, after as many receives as the outbox (the default).
    template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [logicalIdOf(stack, relay.deadLetterQueue), 'Arn'] },
        maxReceiveCount: parseRelayConfig({ ses: { identities: ['example.com'] } }).queue.maxReceiveCount,
      },
      KmsMasterKeyId: Match.absent(),
      SqsManagedSseEnabled: true,
    });
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [logicalIdOf(stack, sender.queue), 'Arn'] },
      FunctionName: { Ref: logicalIdOf(stack, sender.sendFunction) },
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
    const mainRole = logicalIdOf(stack, relay.sendFunction.role as IConstruct);
    const queueArn = { 'Fn::GetAtt': [logicalIdOf(stack, sender.queue), 'Arn'] };
    const mayPassOn = statementsOfRole(template, mainRole).some(
      (statement) =>
        [statement.Action].flat().includes('sqs:SendMessage') &&
        [statement.Resource].flat().some((resource) => JSON.stringify(resource) === JSON.stringify(queueArn)),
    );
    expect(mayPassOn).toBe(true);
  });

  it('lets only the static-egress function read the SMTP credential secret', () => {
    const credentialSecretArn = secretArn('mail-relay/smtp-AbCdEf');
    const { stack, relay, template } = buildRelay({
      egress: {},
      smtp: { senders: ['contoso.com'], mode: 'smarthost', host: 'mail.example.net', credentialSecretArn },
    });
    const readsSecret = (role: IConstruct) =>
      statementsOfRole(template, logicalIdOf(stack, role)).some((statement) =>
        [statement.Action].flat().includes('secretsmanager:GetSecretValue'),
      );

    expect(readsSecret(relay.sendFunction.role as IConstruct)).toBe(false);
    expect(readsSecret(relay.staticEgressSender?.sendFunction.role as IConstruct)).toBe(true);
  });

  it('rejects connector mode without egress at synth', () => {
    const error = errorFrom(() => buildRelay({ smtp: { senders: ['contoso.com'], mode: 'connector' } }));

    expect(error.message).toContain('smtp.mode: connector mode needs a static egress IP');
  });
});

describe('MailRelay with named SMTP connections', () => {
  const BILLING_SECRET = secretArn('mail-relay/billing-ovh-AbCdEf');
  const HVE_SECRET = secretArn('mail-relay/hve-GhIjKl');
  const CONNECTIONS: MailRelayProps = {
    egress: {},
    smtp: {
      connections: {
        'billing-ovh': {
          senders: ['facturas@contoso.com'],
          mode: 'smarthost',
          host: 'smtp-relay.example.com',
          port: 465,
          tls: 'implicit',
          credentialSecretArn: BILLING_SECRET,
        },
        hve: {
          senders: ['alerts@contoso.com'],
          mode: 'smarthost',
          host: 'smtp-hve.office365.com',
          auth: 'login',
          credentialSecretArn: HVE_SECRET,
          maxConnections: 4,
        },
        // A second account at the same server: it shares the HVE secret.
        'hve-reports': {
          senders: ['reports@contoso.com'],
          mode: 'smarthost',
          host: 'smtp-hve.office365.com',
          auth: 'login',
          credentialSecretArn: HVE_SECRET,
        },
      },
    },
  };

  it('writes one settings entry per connection, named smtp:<name>, in order', () => {
    const { template } = buildRelay(CONNECTIONS);

    expect(relaySettingsSchema.parse(settingsIn(template, 'staticEgress')).smtp).toEqual([
      expect.objectContaining({
        name: 'smtp:billing-ovh',
        port: 465,
        auth: 'plain',
        credentialSecretId: BILLING_SECRET,
        maxConnections: 10,
      }),
      expect.objectContaining({ name: 'smtp:hve', port: 587, auth: 'login', maxConnections: 4 }),
      expect.objectContaining({ name: 'smtp:hve-reports', credentialSecretId: HVE_SECRET }),
    ]);
  });

  it("lets the function out on 443 and on every connection's port through the egress security group", () => {
    const { stack, relay, template } = buildRelay(CONNECTIONS);
    const group =
      template.toJSON().Resources[logicalIdOf(stack, relay.staticEgress?.securityGroup as IConstruct)];

    expect(relay.staticEgress?.egressPorts).toEqual([443, 465, 587]);
    expect(group.Properties.SecurityGroupEgress).toEqual([
      expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 }),
      expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 465, ToPort: 465 }),
      expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 587, ToPort: 587 }),
    ]);
  });

  it("lets the function read exactly each connection's secret, a shared one once", () => {
    const { relay, template } = buildRelay(CONNECTIONS);

    template.resourceCountIs('AWS::SecretsManager::Secret', 0);
    // CDK merges the two grants into one statement: exactly the two secrets, each once.
    expect(statementsFor('secretsmanager', template)).toEqual([
      expect.objectContaining({
        Action: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'],
        Resource: [BILLING_SECRET, HVE_SECRET],
      }),
    ]);
    expect([...relay.credentials.keys()]).toEqual(['smtp:billing-ovh', 'smtp:hve', 'smtp:hve-reports']);
    expect(relay.credentials.get('smtp:hve-reports')).toBe(relay.credentials.get('smtp:hve'));
    expect(relay.credentials.get('smtp')).toBeUndefined();
  });

  it('refuses at synth a connection secret in another region, naming the connection', () => {
    const stack = new Stack(fastApp(), 'Test', { env: { account: '123456789012', region: 'eu-central-1' } });

    const error = errorFrom(
      () =>
        new MailRelay(stack, 'Relay', {
          smtp: {
            connections: {
              hve: {
                senders: ['alerts@contoso.com'],
                mode: 'smarthost',
                host: 'smtp-hve.office365.com',
                credentialSecretArn: HVE_SECRET,
              },
            },
          },
        }),
    );

    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain(
      'smtp.connections.hve.credentialSecretArn: the secret is in eu-west-1 but the stack deploys to eu-central-1',
    );
  });

  it('refuses at synth a route naming a connection that does not exist', () => {
    const error = errorFrom(() =>
      buildRelay({
        ...CONNECTIONS,
        routes: [{ name: 'billing', from: ['facturas@contoso.com'], providers: ['smtp:billing'] }],
      }),
    );

    expect(error.message).toContain(
      'routes[0].providers[0]: "smtp:billing" is not a configured SMTP connection (configured: smtp:billing-ovh, smtp:hve, smtp:hve-reports)',
    );
  });
});

describe('MailRelay producers', () => {
  const PRODUCER = 'arn:aws:iam::123456789012:role/billing-app';

  const queuePolicyStatements = (template: Template) =>
    Object.values(template.findResources('AWS::SQS::QueuePolicy')).flatMap(
      (policy) =>
        (policy as { Properties: { PolicyDocument: { Statement: PolicyStatementJson[] } } }).Properties
          .PolicyDocument.Statement,
    );

  it('denies SendMessage on the outbox to every principal but the listed producers and its own functions', () => {
    const { stack, relay, template } = buildRelay({
      ses: { identities: ['example.com'] },
      queue: { producers: [PRODUCER] },
    });
    const deny = queuePolicyStatements(template).find((statement) => statement.Sid === 'OnlyListedProducers');

    expect(deny).toMatchObject({
      Effect: 'Deny',
      Principal: { AWS: '*' },
      Action: 'sqs:SendMessage',
      Resource: { 'Fn::GetAtt': [logicalIdOf(stack, relay.outbox), 'Arn'] },
      Condition: {
        ArnNotLike: {
          'aws:PrincipalArn': [PRODUCER, { 'Fn::GetAtt': [functionRoleId(stack, relay), 'Arn'] }],
        },
      },
    });
  });

  it('lets anyone with an IAM grant enqueue when no producers are listed', () => {
    const { template } = buildRelay({ ses: { identities: ['example.com'] } });

    expect(queuePolicyStatements(template).map((statement) => statement.Sid)).not.toContain(
      'OnlyListedProducers',
    );
  });

  it('refuses at synth a producer that is not an IAM role or user ARN', () => {
    expect(() =>
      buildRelay({ ses: { identities: ['example.com'] }, queue: { producers: ['billing-app'] } }),
    ).toThrow(/queue\.producers\[0\]: must be the ARN of an IAM role or user/);
  });
});
