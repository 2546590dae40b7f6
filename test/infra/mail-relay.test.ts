import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AccountRootPrincipal, Role } from 'aws-cdk-lib/aws-iam';
import { describe, expect, it } from 'vitest';
import { relaySettingsSchema, SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { ConfigurationError } from '../../lambda/core/validation.ts';
import { MailRelay, type MailRelayProps } from '../../lib/mail-relay.ts';
import { fastApp, logicalIdOf } from './support.ts';

const MINIMAL: MailRelayProps = { ses: { identities: ['example.com'] } };

function buildRelay(props: MailRelayProps = MINIMAL) {
  const stack = new Stack(fastApp(), 'Test');
  const relay = new MailRelay(stack, 'Relay', props);
  return { stack, relay, template: Template.fromStack(stack) };
}

function errorFrom(action: () => unknown): Error {
  try {
    action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the action to throw');
}

/** `arn:<partition>:ses:<region>:<account>:<resource>` as CloudFormation renders it. */
function sesArn(resource: string) {
  return {
    'Fn::Join': [
      '',
      [
        'arn:',
        { Ref: 'AWS::Partition' },
        ':ses:',
        { Ref: 'AWS::Region' },
        ':',
        { Ref: 'AWS::AccountId' },
        `:${resource}`,
      ],
    ],
  };
}

interface PolicyStatementJson {
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

function sesStatementsIn(template: Template): PolicyStatementJson[] {
  return allPolicyStatements(template).filter((statement) =>
    [statement.Action].flat().some((action) => action.startsWith('ses:')),
  );
}

function functionRoleId(stack: Stack, relay: MailRelay): string {
  const role = relay.sendFunction.role;
  if (!role) throw new Error('the send function has no role');
  return logicalIdOf(stack, role);
}

/** Reads MAIL_RELAY_SETTINGS back from the template, standing in a URL for each `Ref`. */
function settingsIn(template: Template): unknown {
  const functions = template.findResources('AWS::Lambda::Function') as Record<
    string,
    { Properties: { Environment: { Variables: Record<string, unknown> } } }
  >;
  const [sendFunction] = Object.values(functions);
  const value = sendFunction?.Properties.Environment.Variables[SETTINGS_ENV_VAR] as {
    'Fn::Join': [string, Array<string | { Ref: string }>];
  };
  const parts = value['Fn::Join'][1];
  return JSON.parse(
    parts.map((part) => (typeof part === 'string' ? part : `https://sqs.test/${part.Ref}`)).join(''),
  );
}

describe('MailRelay queues', () => {
  it('dead-letters a message after 5 failed deliveries by default', () => {
    const { stack, relay, template } = buildRelay();

    template.hasResourceProperties('AWS::SQS::Queue', {
      RedrivePolicy: {
        deadLetterTargetArn: { 'Fn::GetAtt': [logicalIdOf(stack, relay.deadLetterQueue), 'Arn'] },
        maxReceiveCount: 5,
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

  it('encrypts both queues at rest with SQS-managed keys', () => {
    const { template } = buildRelay();

    template.resourceCountIs('AWS::SQS::Queue', 2);
    template.resourcePropertiesCountIs('AWS::SQS::Queue', { SqsManagedSseEnabled: true }, 2);
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

    expect(relay.config).toEqual({
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
    const logStatements = allPolicyStatements(template).filter((statement) =>
      [statement.Action].flat().some((action) => action.startsWith('logs:')),
    );
    expect(logStatements).toEqual([
      expect.objectContaining({
        Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
        Resource: { 'Fn::GetAtt': [logGroupId, 'Arn'] },
      }),
    ]);
  });

  it('enables source maps and names the service for Powertools', () => {
    const { template } = buildRelay();

    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: {
        Variables: Match.objectLike({
          NODE_OPTIONS: '--enable-source-maps',
          POWERTOOLS_SERVICE_NAME: 'mail-relay',
          POWERTOOLS_LOG_LEVEL: 'INFO',
        }),
      },
    });
  });

  it('writes settings the function accepts: identities, limits, receive count and the dead-letter queue URL', () => {
    const { stack, relay, template } = buildRelay({
      ses: { identities: ['example.com', 'noreply@example.org'], configurationSetName: 'relay' },
      message: { maxRecipients: 20 },
      queue: { maxReceiveCount: 3 },
    });

    expect(relaySettingsSchema.parse(settingsIn(template))).toEqual({
      deadLetterQueueUrl: `https://sqs.test/${logicalIdOf(stack, relay.deadLetterQueue)}`,
      maxReceiveCount: 3,
      limits: { maxRecipients: 20, maxMessageBytes: 1_048_576 },
      ses: { identities: ['example.com', 'noreply@example.org'], configurationSetName: 'relay' },
    });
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
  it('lets the function send only from the configured SES identities', () => {
    const { stack, relay, template } = buildRelay({
      ses: { identities: ['example.com', 'noreply@example.org'] },
    });

    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: functionRoleId(stack, relay) }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Allow',
            Action: ['ses:SendEmail', 'ses:SendRawEmail'],
            Resource: [sesArn('identity/example.com'), sesArn('identity/noreply@example.org')],
          },
        ]),
      },
    });
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

  it('never grants an SES action on every resource', () => {
    const { template } = buildRelay({ ses: { identities: ['example.com'], configurationSetName: 'relay' } });
    const sesStatements = sesStatementsIn(template);

    expect(sesStatements).toHaveLength(1);
    for (const statement of sesStatements) {
      expect([statement.Action].flat()).not.toContain('ses:*');
      expect([statement.Resource].flat()).not.toContain('*');
    }
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
