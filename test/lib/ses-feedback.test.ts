import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { feedbackSettingsSchema } from '../../lambda/core/settings.ts';
import { MailRelay, type MailRelayProps } from '../../lib/mail-relay.ts';
import { fastApp, logicalIdOf, relayFunctionIn, settingsIn, statementsOfRole } from './support.ts';

function build(props: MailRelayProps) {
  const stack = new Stack(fastApp(), 'Test');
  const relay = new MailRelay(stack, 'Relay', props);
  const feedback = relay.sesFeedback;
  return { stack, relay, feedback, template: Template.fromStack(stack) };
}

const SES = { identities: ['example.com'] };

describe('SES feedback', () => {
  const { stack, relay, feedback, template } = build({
    ses: SES,
    suppression: { retentionDays: 90 },
    events: { busName: 'orders-bus' },
  });
  if (!feedback) throw new Error('expected SES feedback with ses configured');
  const configurationSetId = logicalIdOf(stack, feedback.configurationSet);
  const deadLetterQueueId = logicalIdOf(stack, feedback.deadLetterQueue);
  const [functionId, feedbackFunction] = relayFunctionIn(template, 'feedback');

  it('creates a configuration set with reputation metrics, sending enabled', () => {
    template.hasResourceProperties('AWS::SES::ConfigurationSet', {
      ReputationOptions: { ReputationMetricsEnabled: true },
      SendingOptions: { SendingEnabled: true },
    });
  });

  it('publishes only the event types the feedback function acts on to the default EventBridge bus: no send, no delivery', () => {
    template.hasResourceProperties('AWS::SES::ConfigurationSetEventDestination', {
      ConfigurationSetName: { Ref: configurationSetId },
      EventDestination: {
        Enabled: true,
        EventBridgeDestination: { EventBusArn: Match.anyValue() },
        // Send and delivery come once per message each (an invocation apiece): not by default.
        MatchingEventTypes: ['bounce', 'complaint', 'reject', 'deliveryDelay', 'renderingFailure'],
      },
    });
    const destination = Object.values(
      template.findResources('AWS::SES::ConfigurationSetEventDestination'),
    )[0];
    expect(JSON.stringify(destination?.Properties.EventDestination.EventBridgeDestination)).toContain(
      ':event-bus/default',
    );
  });

  it('routes the SES events of that set, and only those, to the feedback function', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ses'],
        detail: { mail: { tags: { 'ses:configuration-set': [{ Ref: configurationSetId }] } } },
      },
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [functionId, 'Arn'] },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [deadLetterQueueId, 'Arn'] } },
          RetryPolicy: { MaximumRetryAttempts: 8, MaximumEventAgeInSeconds: 24 * 3600 },
        }),
      ],
    });
  });

  it('keeps an event the function fails on in the dead-letter queue, after two retries', () => {
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: functionId },
      MaximumRetryAttempts: 2,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [deadLetterQueueId, 'Arn'] } } },
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      MessageRetentionPeriod: 14 * 24 * 3600,
      SqsManagedSseEnabled: true,
    });
  });

  it('tells the function where suppressions and outcome events go, and for how long', () => {
    expect(feedbackFunction.Properties.Description).toMatch(/^Turns SES bounces/);
    expect(feedbackSettingsSchema.parse(settingsIn(template, 'feedback'))).toEqual({
      suppression: {
        tableName: `stack-${logicalIdOf(stack, relay.suppressionList.table)}-ABC123`,
        retentionDays: 90,
      },
      // The default kinds (bounced and complained of the feedback ones; delivered is opt-in) go unnamed.
      events: { busName: 'orders-bus' },
      ledger: { tableName: `stack-${logicalIdOf(stack, relay.deliveryLedger.table)}-ABC123` },
    });
  });

  it('lets the function write the suppression list, note feedback on ledger entries, put events, nothing else', () => {
    const roleId = (feedbackFunction.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
    const actions = statementsOfRole(template, roleId).map((statement) => [
      [statement.Action].flat(),
      JSON.stringify(statement.Resource),
    ]);

    expect(actions).toHaveLength(5);
    expect(actions).toEqual(
      expect.arrayContaining([
        [['logs:CreateLogStream', 'logs:PutLogEvents'], expect.stringContaining('FeedbackFunctionLogGroup')],
        [
          ['dynamodb:PutItem'],
          JSON.stringify({ 'Fn::GetAtt': [logicalIdOf(stack, relay.suppressionList.table), 'Arn'] }),
        ],
        [
          ['dynamodb:UpdateItem'],
          JSON.stringify({ 'Fn::GetAtt': [logicalIdOf(stack, relay.deliveryLedger.table), 'Arn'] }),
        ],
        [['events:PutEvents'], expect.stringContaining(':event-bus/orders-bus')],
        [
          ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'],
          JSON.stringify({ 'Fn::GetAtt': [deadLetterQueueId, 'Arn'] }),
        ],
      ]),
    );
  });

  it('has the send function use the created configuration set', () => {
    const settings = settingsIn(template) as { ses: { configurationSetName: string } };
    expect(settings.ses.configurationSetName).toBe(`${configurationSetId}-AbC123`);
  });
});

describe('SES feedback with a soft-bounce threshold', () => {
  const { stack, relay, template } = build({
    ses: SES,
    graph: {
      tenantId: 'contoso.onmicrosoft.com',
      clientId: '11111111-2222-3333-4444-555555555555',
      senders: ['contoso.com'],
    },
    bounceReports: { mailboxes: ['noreply@contoso.com'] },
    suppression: { softBounces: { count: 5, days: 7 } },
  });
  const suppressionTable = JSON.stringify({
    'Fn::GetAtt': [logicalIdOf(stack, relay.suppressionList.table), 'Arn'],
  });

  it.each(['feedback', 'bounceReader'])(
    'gives the %s function the threshold, and lets it count soft bounces in the suppression table',
    (name) => {
      const settings = feedbackSettingsSchema
        .loose()
        .parse(settingsIn(template, name as 'feedback' | 'bounceReader'));
      expect(settings.suppression.softBounces).toEqual({ count: 5, days: 7 });
      const [, fn] = relayFunctionIn(template, name as 'feedback' | 'bounceReader');
      const roleId = (fn.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
      const onSuppressionTable = statementsOfRole(template, roleId)
        .filter((statement) => JSON.stringify(statement.Resource) === suppressionTable)
        .flatMap((statement) => [statement.Action].flat());
      expect(onSuppressionTable.sort()).toEqual([
        'dynamodb:GetItem',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
      ]);
    },
  );
});

describe('SES feedback with delivered outcome events asked for', () => {
  const { template } = build({
    ses: SES,
    events: { busName: 'orders-bus', publish: { delivered: true } },
  });

  it('subscribes the configuration set to delivery events too, still not to send events', () => {
    template.hasResourceProperties('AWS::SES::ConfigurationSetEventDestination', {
      EventDestination: Match.objectLike({
        MatchingEventTypes: [
          'delivery',
          'bounce',
          'complaint',
          'reject',
          'deliveryDelay',
          'renderingFailure',
        ],
      }),
    });
  });

  it('has the feedback function publish delivered with bounced and complained', () => {
    expect(feedbackSettingsSchema.parse(settingsIn(template, 'feedback')).events).toEqual({
      busName: 'orders-bus',
      kinds: ['delivered', 'bounced', 'complained'],
    });
  });
});

describe('SES feedback publishing no outcome events', () => {
  const { template } = build({
    ses: SES,
    events: { publish: { bounced: false, complained: false, 'dead-lettered': false, suppressed: false } },
  });
  const [, feedbackFunction] = relayFunctionIn(template, 'feedback');
  const [, sendFunction] = relayFunctionIn(template, 'send');
  const actionsOf = (fn: typeof feedbackFunction) =>
    statementsOfRole(
      template,
      (fn.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0],
    ).flatMap((statement) => [statement.Action].flat());

  it('gives neither the feedback nor the send function events settings or events:PutEvents', () => {
    expect(feedbackSettingsSchema.parse(settingsIn(template, 'feedback')).events).toBeUndefined();
    expect((settingsIn(template) as { events?: unknown }).events).toBeUndefined();
    expect(actionsOf(feedbackFunction)).not.toContain('events:PutEvents');
    expect(actionsOf(sendFunction)).not.toContain('events:PutEvents');
  });

  it('still suppresses: bounces and complaints reach the function', () => {
    template.hasResourceProperties('AWS::SES::ConfigurationSetEventDestination', {
      EventDestination: Match.objectLike({
        MatchingEventTypes: ['bounce', 'complaint', 'reject', 'deliveryDelay', 'renderingFailure'],
      }),
    });
  });
});

describe('SES feedback with an existing configuration set', () => {
  const { stack, feedback, template } = build({ ses: { ...SES, configurationSetName: 'marketing' } });

  it('creates no configuration set and adds its event destination to the existing one', () => {
    template.resourceCountIs('AWS::SES::ConfigurationSet', 0);
    template.hasResourceProperties('AWS::SES::ConfigurationSetEventDestination', {
      ConfigurationSetName: 'marketing',
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { detail: { mail: { tags: { 'ses:configuration-set': ['marketing'] } } } },
    });
    expect(feedback && logicalIdOf(stack, feedback.deadLetterQueue)).toBeTruthy();
    expect((settingsIn(template) as { ses: { configurationSetName: string } }).ses.configurationSetName).toBe(
      'marketing',
    );
  });
});

describe('without ses', () => {
  it('has no configuration set, rule or feedback function', () => {
    const { relay, template } = build({
      graph: {
        tenantId: 'contoso.onmicrosoft.com',
        clientId: '11111111-2222-3333-4444-555555555555',
        senders: ['contoso.com'],
      },
    });

    expect(relay.sesFeedback).toBeUndefined();
    template.resourceCountIs('AWS::SES::ConfigurationSet', 0);
    template.resourceCountIs('AWS::Events::Rule', 0);
    expect(() => relayFunctionIn(template, 'feedback')).toThrow(/no feedback function/);
  });
});
