import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { sesBrakeSettingsSchema } from '../../lambda/core/settings.ts';
import { ConfigurationError } from '../../lambda/core/validation.ts';
import type { RelayConfigInput } from '../../lib/config.ts';
import { MailRelayStack } from '../../lib/mail-relay-stack.ts';
import {
  alarmBasics,
  errorFrom,
  fastApp,
  logicalIdOf,
  relayFunctionIn,
  sesArn,
  settingsIn,
  statementsOfRole,
} from './support.ts';

const SES = { identities: ['example.com'], configurationSetName: 'mail-relay' };
const GRAPH = {
  tenantId: 'contoso.onmicrosoft.com',
  clientId: '11111111-2222-3333-4444-555555555555',
  senders: ['contoso.com'],
};
/** Values unlike the defaults, so each threshold is seen to come from the configuration. */
const MONITORING = {
  bounceRate: { warning: 0.03, critical: 0.07, minimumSent: 50, periodMinutes: 30 },
  complaintRate: 0.002,
  sesReputation: { bounceRate: 0.04, complaintRate: 0.0005 },
  outboxAgeMinutes: 20,
  fallbackRate: 0.2,
};
const RATE_PERIOD = 30 * 60;
/** The stack's name and the relay's id: every alarm name starts with it. */
const PREFIX = 'MailRelay-Relay';

function build(config: RelayConfigInput) {
  const stack = new MailRelayStack(fastApp(), 'MailRelay', { config });
  const template = Template.fromStack(stack);
  const topicId = logicalIdOf(stack, stack.relay.monitoring.alarmTopic);
  return { stack, template, topicId };
}

interface AlarmProperties {
  readonly AlarmName: string;
  readonly AlarmActions: unknown[];
  readonly OKActions: unknown[];
  readonly [key: string]: unknown;
}

function alarmsIn(template: Template): Map<string, AlarmProperties> {
  const alarms = template.findResources('AWS::CloudWatch::Alarm') as Record<
    string,
    { Properties: AlarmProperties }
  >;
  return new Map(Object.values(alarms).map((alarm) => [alarm.Properties.AlarmName, alarm.Properties]));
}

function alarmNamed(template: Template, name: string): AlarmProperties {
  const alarm = alarmsIn(template).get(`${PREFIX}-${name}`);
  if (!alarm) throw new Error(`no alarm named ${PREFIX}-${name}`);
  return alarm;
}

function relayMetricStat(id: string, metricName: string, provider: string) {
  return {
    Id: id,
    MetricStat: {
      Metric: {
        Namespace: 'MailRelay',
        MetricName: metricName,
        Dimensions: [
          { Name: 'Provider', Value: provider },
          { Name: 'service', Value: 'mail-relay' },
        ],
      },
      Period: RATE_PERIOD,
      Stat: 'Sum',
    },
    ReturnData: false,
  };
}

/** The metric math of a per-provider rate: numerator / Sent, 0 below minimumSent. */
function rateMetrics(provider: string, metricName: string, label: string) {
  const part = `${metricName.toLowerCase()}_${provider}`;
  return [
    {
      Id: 'expr_1',
      Expression: `IF(sent_${provider} >= 50, FILL(${part}, 0) / sent_${provider}, 0)`,
      Label: label,
      ReturnData: true,
    },
    relayMetricStat(`sent_${provider}`, 'Sent', provider),
    relayMetricStat(part, metricName, provider),
  ];
}

/** Graph's bounces reach the relay only through the bounce reports of its mailboxes. */
const BOUNCE_REPORTS = { mailboxes: ['soporte@contoso.com'] };

const SES_AND_GRAPH_ALARMS = [
  'graph-bounce-rate-warning',
  'graph-bounce-rate-critical',
  'ses-bounce-rate-warning',
  'ses-bounce-rate-critical',
  'ses-complaint-rate',
  'fallback-rate',
  'ses-reputation-bounce-rate',
  'ses-reputation-complaint-rate',
  'dead-letter-queue-not-empty',
  'feedback-dead-letter-queue-not-empty',
  'bounce-report-errors',
  'outbox-oldest-message-age',
  'send-function-errors',
  'daily-cap',
].map((name) => `${PREFIX}-${name}`);

/** What the alarms cost a month at list price: $0.10 per metric each reads, metric math included. */
function alarmBill(template: Template): { alarms: number; metrics: number } {
  const alarms = [...alarmsIn(template).values()];
  const metrics = alarms.reduce((sum, alarm) => {
    const math = alarm.Metrics as { MetricStat?: unknown }[] | undefined;
    return sum + (math ? math.filter((metric) => metric.MetricStat).length : 1);
  }, 0);
  return { alarms: alarms.length, metrics };
}

describe('RelayMonitoring alarms (ses and graph)', () => {
  const { stack, template, topicId } = build({
    ses: SES,
    graph: GRAPH,
    bounceReports: BOUNCE_REPORTS,
    monitoring: MONITORING,
  });

  it('are exactly these, each notifying the alarm topic on ALARM and on OK', () => {
    const alarms = alarmsIn(template);

    expect([...alarms.keys()].sort()).toEqual([...SES_AND_GRAPH_ALARMS].sort());
    for (const alarm of alarms.values()) {
      expect(alarm.AlarmActions, alarm.AlarmName).toEqual([{ Ref: topicId }]);
      expect(alarm.OKActions, alarm.AlarmName).toEqual([{ Ref: topicId }]);
      expect(alarm.AlarmDescription, alarm.AlarmName).toEqual(expect.any(String));
    }
    expect(stack.relay.monitoring.alarms).toHaveLength(SES_AND_GRAPH_ALARMS.length);
  });

  it.each(['graph', 'ses'])(
    'warn and page on the bounce rate of %s over the configured window',
    (provider) => {
      const metrics = rateMetrics(provider, 'Bounced', `Bounce rate (${provider})`);

      expect(alarmNamed(template, `${provider}-bounce-rate-warning`)).toEqual({
        AlarmName: `${PREFIX}-${provider}-bounce-rate-warning`,
        AlarmDescription: expect.stringContaining(`through ${provider} reached 0.03 over 30 minutes`),
        Metrics: metrics,
        ...alarmBasics(topicId, 0.03),
      });
      expect(alarmNamed(template, `${provider}-bounce-rate-critical`)).toEqual({
        AlarmName: `${PREFIX}-${provider}-bounce-rate-critical`,
        AlarmDescription: expect.stringContaining(`through ${provider} reached 0.07 over 30 minutes`),
        Metrics: metrics,
        ...alarmBasics(topicId, 0.07),
      });
    },
  );

  it('alarm when a mailbox or account stays at its recipients per day for two hours, of the providers paced per day', () => {
    const capMetric = (provider: string) => ({
      ...relayMetricStat(`cap_${provider}`, 'DailyCapReached', provider),
      MetricStat: {
        ...relayMetricStat(`cap_${provider}`, 'DailyCapReached', provider).MetricStat,
        Period: 3600,
      },
    });

    expect(alarmNamed(template, 'daily-cap')).toEqual({
      AlarmName: `${PREFIX}-daily-cap`,
      AlarmDescription: expect.stringContaining('recipients per day for two hours running'),
      Metrics: [
        {
          Id: 'expr_1',
          Label: 'Sends that found the day used up',
          // SES has no recipients-per-day limit unless its pacing sets one: it never writes DailyCapReached.
          Expression: 'FILL(cap_graph, 0)',
          ReturnData: true,
        },
        capMetric('graph'),
      ],
      ...alarmBasics(topicId, 1),
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
    });
  });

  it('alarm on the complaint rate of ses, the only provider that reports complaints', () => {
    expect(alarmNamed(template, 'ses-complaint-rate')).toEqual({
      AlarmName: `${PREFIX}-ses-complaint-rate`,
      AlarmDescription: expect.stringContaining('through ses reached 0.002'),
      Metrics: rateMetrics('ses', 'Complained', 'Complaint rate (ses)'),
      ...alarmBasics(topicId, 0.002),
    });
  });

  it('alarm on the share of messages sent by a fallback provider: Sent of all, FallbackUsed of those that can follow another', () => {
    const sent = 'FILL(sent_graph, 0) + FILL(sent_ses, 0)';

    // Without routes a sender's chain is graph, smtp, ses (those that cover it): graph is never a fallback.
    expect(alarmNamed(template, 'fallback-rate')).toEqual({
      AlarmName: `${PREFIX}-fallback-rate`,
      AlarmDescription: expect.stringContaining('fallback provider'),
      Metrics: [
        {
          Id: 'expr_1',
          Expression: `IF((${sent}) >= 50, (FILL(fallback_ses, 0)) / (${sent}), 0)`,
          Label: 'Fallback rate',
          ReturnData: true,
        },
        relayMetricStat('sent_graph', 'Sent', 'graph'),
        relayMetricStat('sent_ses', 'Sent', 'ses'),
        relayMetricStat('fallback_ses', 'FallbackUsed', 'ses'),
      ],
      ...alarmBasics(topicId, 0.2),
    });
  });

  it('cost $2.10 a month: 21 metrics read, no metric read for nothing, no composite alarm', () => {
    expect(alarmBill(template)).toEqual({ alarms: SES_AND_GRAPH_ALARMS.length, metrics: 21 });
    template.resourceCountIs('AWS::CloudWatch::CompositeAlarm', 0);
  });

  it.each([
    ['ses-reputation-bounce-rate', 'Reputation.BounceRate', 0.04],
    ['ses-reputation-complaint-rate', 'Reputation.ComplaintRate', 0.0005],
  ])('alarm on the SES account reputation: %s', (name, metricName, threshold) => {
    expect(alarmNamed(template, name)).toEqual({
      AlarmName: `${PREFIX}-${name}`,
      AlarmDescription: expect.stringContaining(metricName),
      Namespace: 'AWS/SES',
      MetricName: metricName,
      Statistic: 'Maximum',
      Period: 3600,
      ...alarmBasics(topicId, threshold),
    });
  });

  it('alarm as soon as one message is in the dead-letter queue', () => {
    expect(alarmNamed(template, 'dead-letter-queue-not-empty')).toEqual({
      AlarmName: `${PREFIX}-dead-letter-queue-not-empty`,
      AlarmDescription: expect.stringContaining('redrive'),
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [
        {
          Name: 'QueueName',
          Value: { 'Fn::GetAtt': [logicalIdOf(stack, stack.relay.deadLetterQueue), 'QueueName'] },
        },
      ],
      Statistic: 'Maximum',
      Period: 300,
      ...alarmBasics(topicId, 1),
    });
  });

  it('alarm as soon as one SES event is in the feedback dead-letter queue', () => {
    const feedback = stack.relay.sesFeedback;
    if (!feedback) throw new Error('expected SES feedback');
    expect(alarmNamed(template, 'feedback-dead-letter-queue-not-empty')).toEqual({
      AlarmName: `${PREFIX}-feedback-dead-letter-queue-not-empty`,
      AlarmDescription: expect.stringContaining('suppression list'),
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [
        {
          Name: 'QueueName',
          Value: { 'Fn::GetAtt': [logicalIdOf(stack, feedback.deadLetterQueue), 'QueueName'] },
        },
      ],
      Statistic: 'Maximum',
      Period: 300,
      ...alarmBasics(topicId, 1),
    });
  });

  it('alarm when the oldest outbox message is outboxAgeMinutes old', () => {
    expect(alarmNamed(template, 'outbox-oldest-message-age')).toEqual({
      AlarmName: `${PREFIX}-outbox-oldest-message-age`,
      AlarmDescription: expect.stringContaining('20 minutes'),
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateAgeOfOldestMessage',
      Dimensions: [
        { Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalIdOf(stack, stack.relay.outbox), 'QueueName'] } },
      ],
      Statistic: 'Maximum',
      Period: 300,
      ...alarmBasics(topicId, 20 * 60),
    });
  });

  it('alarm on the first send function error; throttles are left to the outbox age alarm', () => {
    expect(alarmNamed(template, 'send-function-errors')).toEqual({
      AlarmName: `${PREFIX}-send-function-errors`,
      AlarmDescription: expect.any(String),
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalIdOf(stack, stack.relay.sendFunction) } }],
      Statistic: 'Sum',
      Period: 300,
      ...alarmBasics(topicId, 1),
    });
  });

  it('use the defaults without a monitoring section', () => {
    const defaults = build({ ses: SES, graph: GRAPH }).template;

    expect(alarmNamed(defaults, 'ses-bounce-rate-warning').Threshold).toBe(0.02);
    expect(alarmNamed(defaults, 'ses-bounce-rate-critical').Threshold).toBe(0.05);
    expect(alarmNamed(defaults, 'ses-complaint-rate').Threshold).toBe(0.001);
    expect(JSON.stringify(alarmNamed(defaults, 'ses-bounce-rate-critical').Metrics)).toContain(
      'IF(sent_ses >= 100,',
    );
    expect(JSON.stringify(alarmNamed(defaults, 'ses-bounce-rate-critical').Metrics)).toContain(
      '"Period":3600',
    );
    expect(alarmNamed(defaults, 'ses-reputation-bounce-rate').Threshold).toBe(0.05);
    expect(alarmNamed(defaults, 'ses-reputation-complaint-rate').Threshold).toBe(0.001);
    expect(alarmNamed(defaults, 'outbox-oldest-message-age').Threshold).toBe(15 * 60);
    expect(alarmNamed(defaults, 'fallback-rate').Threshold).toBe(0.1);
  });
});

describe('RelayMonitoring with static egress', () => {
  const { stack, template, topicId } = build({
    ses: SES,
    smtp: { senders: ['scanner@example.com'], mode: 'connector', tls: 'starttls' },
    egress: { nat: 'instance' },
  });
  const sender = stack.relay.staticEgressSender;
  if (!sender) throw new Error('expected the static-egress sender');

  it("adds the sender's queue to the age alarm and its errors to the errors alarm, not alarms of their own", () => {
    const age = alarmNamed(template, 'outbox-oldest-message-age');
    const errors = alarmNamed(template, 'send-function-errors');

    expect(age.Metrics).toEqual([
      expect.objectContaining({ Id: 'expr_1', Expression: 'MAX([FILL(m0, 0), FILL(m1, 0)])' }),
      expect.objectContaining({ Id: 'm0' }),
      expect.objectContaining({ Id: 'm1' }),
    ]);
    expect(JSON.stringify(age.Metrics)).toContain(logicalIdOf(stack, sender.queue));
    expect(errors.Metrics).toEqual([
      expect.objectContaining({ Id: 'expr_1', Expression: 'FILL(m0, 0) + FILL(m1, 0)' }),
      expect.objectContaining({ Id: 'm0' }),
      expect.objectContaining({ Id: 'm1' }),
    ]);
    expect(JSON.stringify(errors.Metrics)).toContain(logicalIdOf(stack, sender.sendFunction));
    expect(errors).toMatchObject(alarmBasics(topicId, 1));
  });
});

describe('RelayMonitoring reads only metrics that can have data', () => {
  it('has no bounce or complaint rate alarm for graph without bounceReports, nor a fallback rate alarm for one provider', () => {
    const { template } = build({ graph: GRAPH });

    expect([...alarmsIn(template).keys()].sort()).toEqual(
      ['dead-letter-queue-not-empty', 'outbox-oldest-message-age', 'send-function-errors', 'daily-cap']
        .map((name) => `${PREFIX}-${name}`)
        .sort(),
    );
  });

  it('costs $1.20 a month with ses alone (examples/minimal.config.json): no daily cap without a per-day limit', () => {
    const { template } = build({ ses: { identities: ['example.com'] } });

    expect([...alarmsIn(template).keys()]).not.toContain(`${PREFIX}-daily-cap`);
    expect([...alarmsIn(template).keys()]).not.toContain(`${PREFIX}-fallback-rate`);
    expect(alarmBill(template)).toEqual({ alarms: 9, metrics: 12 });
  });

  it('adds ses to the daily cap alarm when its pacing sets recipientsPerDay', () => {
    const { template } = build({
      ses: { identities: ['example.com'], pacing: { perProvider: { recipientsPerDay: 50_000 } } },
    });

    expect(JSON.stringify(alarmNamed(template, 'daily-cap').Metrics)).toContain('FILL(cap_ses, 0)');
  });

  it("reads FallbackUsed only of the providers second or later in a route's chain", () => {
    const { template } = build({
      ses: { identities: ['example.com', 'contoso.com'] },
      graph: GRAPH,
      routes: [
        { name: 'contoso', from: ['*@contoso.com'], providers: ['graph', 'ses'] },
        { name: 'default', from: ['*@example.com'], providers: ['ses'] },
      ],
    });
    const metrics = alarmNamed(template, 'fallback-rate').Metrics as { Id: string; Expression?: string }[];

    expect(metrics.map((metric) => metric.Id)).toEqual(['expr_1', 'sent_graph', 'sent_ses', 'fallback_ses']);
  });

  it('has no fallback rate alarm when no route has a second provider', () => {
    const { template } = build({
      ses: SES,
      graph: GRAPH,
      routes: [
        { name: 'contoso', from: ['*@contoso.com'], providers: ['graph'] },
        { name: 'default', from: ['*@example.com'], providers: ['ses'] },
      ],
    });

    expect([...alarmsIn(template).keys()]).not.toContain(`${PREFIX}-fallback-rate`);
  });

  it('never reads the Route dimension, in the alarms or on the dashboard', () => {
    const { template } = build({
      ses: SES,
      graph: GRAPH,
      bounceReports: BOUNCE_REPORTS,
      monitoring: { dashboard: true },
    });
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));

    expect(JSON.stringify([...alarmsIn(template).values()])).not.toContain('"Route"');
    expect(dashboards).toHaveLength(1);
    expect(JSON.stringify(dashboards[0]?.Properties.DashboardBody)).not.toContain('\\"Route\\"');
    expect(JSON.stringify(dashboards[0]?.Properties.DashboardBody)).toContain('\\"Provider\\"');
  });
});

describe('RelayMonitoring without ses', () => {
  it('has no SES reputation alarms and rates only for the configured providers', () => {
    const { template } = build({ graph: GRAPH, bounceReports: BOUNCE_REPORTS });

    expect([...alarmsIn(template).keys()].sort()).toEqual(
      [
        'graph-bounce-rate-warning',
        'graph-bounce-rate-critical',
        'dead-letter-queue-not-empty',
        'bounce-report-errors',
        'outbox-oldest-message-age',
        'send-function-errors',
        'daily-cap',
      ]
        .map((name) => `${PREFIX}-${name}`)
        .sort(),
    );
    expect(JSON.stringify(template.toJSON())).not.toContain('AWS/SES');
  });

  it('has no daily cap alarm when the relay does not pace', () => {
    const { template } = build({ graph: GRAPH, pacing: { enabled: false } });

    expect([...alarmsIn(template).keys()]).not.toContain(`${PREFIX}-daily-cap`);
  });
});

describe('RelayMonitoring with named SMTP connections', () => {
  const SECRET = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mail-relay/smtp-AbCdEf';
  const { template, topicId } = build({
    ses: SES,
    graph: GRAPH,
    bounceReports: BOUNCE_REPORTS,
    smtp: {
      connections: {
        'billing-ovh': {
          senders: ['facturas@contoso.com'],
          mode: 'smarthost',
          host: 'smtp-relay.example.com',
          credentialSecretArn: SECRET,
        },
        hve: { senders: ['alerts@contoso.com'], mode: 'smarthost', host: 'smtp-hve.office365.com' },
      },
    },
    monitoring: { ...MONITORING, dashboard: true },
  });

  it('has bounce rate alarms for every connection (their reports reach the relay), next to the other providers', () => {
    const names = [...alarmsIn(template).keys()];

    for (const provider of ['smtp-billing-ovh', 'smtp-hve', 'graph', 'ses']) {
      for (const alarm of ['bounce-rate-warning', 'bounce-rate-critical']) {
        expect(names, `${provider}-${alarm}`).toContain(`${PREFIX}-${provider}-${alarm}`);
      }
    }
    expect(names.filter((name) => /-smtp-bounce-rate/.test(name))).toEqual([]);
    expect(names.filter((name) => name.endsWith('-complaint-rate') && !name.includes('reputation'))).toEqual([
      `${PREFIX}-ses-complaint-rate`,
    ]);
  });

  it("computes a connection's rate from the metrics with its provider name as the Provider dimension", () => {
    const part = 'bounced_smtp_billing_ovh';

    expect(alarmNamed(template, 'smtp-billing-ovh-bounce-rate-critical')).toEqual({
      AlarmName: `${PREFIX}-smtp-billing-ovh-bounce-rate-critical`,
      AlarmDescription: expect.stringContaining('through smtp:billing-ovh reached 0.07 over 30 minutes'),
      Metrics: [
        {
          Id: 'expr_1',
          Expression: `IF(sent_smtp_billing_ovh >= 50, FILL(${part}, 0) / sent_smtp_billing_ovh, 0)`,
          Label: 'Bounce rate (smtp:billing-ovh)',
          ReturnData: true,
        },
        relayMetricStat('sent_smtp_billing_ovh', 'Sent', 'smtp:billing-ovh'),
        relayMetricStat(part, 'Bounced', 'smtp:billing-ovh'),
      ],
      ...alarmBasics(topicId, 0.07),
    });
  });

  it('counts every connection in the fallback rate', () => {
    const expression = alarmNamed(template, 'fallback-rate').Metrics as { Expression?: string }[];
    const sent =
      '(FILL(sent_graph, 0) + FILL(sent_smtp_billing_ovh, 0) + FILL(sent_smtp_hve, 0) + FILL(sent_ses, 0))';

    // Without routes, graph comes first in every chain it is in: it is never a fallback.
    expect(expression[0]?.Expression).toBe(
      `IF(${sent} >= 50, ` +
        '(FILL(fallback_smtp_billing_ovh, 0) + FILL(fallback_smtp_hve, 0) + FILL(fallback_ses, 0)) / ' +
        `${sent}, 0)`,
    );
  });

  it('draws every connection on the per-provider dashboard widgets', () => {
    const [dashboard] = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
    const body = JSON.stringify(dashboard?.Properties.DashboardBody);

    for (const label of ['Delivered (smtp:billing-ovh)', 'Bounced (smtp:hve)', 'smtp:hve p99']) {
      expect(body, label).toContain(`\\"label\\":\\"${label}\\"`);
    }
    expect(body).toContain('\\"Provider\\",\\"smtp:billing-ovh\\"');
  });
});

describe('RelayMonitoring alarm topic', () => {
  /** The topic policy: TLS required (cdk-nag AwsSolutions-SNS3), CloudWatch alarms of this account may publish. */
  function expectAlarmTopicPolicy(template: Template, topicId: string): void {
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topicId }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 'sns:Publish',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: 'sns:Publish',
            Condition: Match.objectLike({ StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } }),
          }),
        ]),
      },
    });
  }

  it('has no key of its own by default (no $1 a month): no server-side encryption, TLS required', () => {
    const { stack, template, topicId } = build({ ses: SES });

    template.resourceCountIs('AWS::KMS::Key', 0);
    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.absent() });
    expectAlarmTopicPolicy(template, topicId);
    expect(stack.relay.monitoring.topicKey).toBeUndefined();
  });

  it('uses an existing customer managed key given by ARN, creating none', () => {
    const keyArn = 'arn:aws:kms:eu-west-1:123456789012:key/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0';
    const { template, topicId } = build({ ses: SES, monitoring: { alarmTopicKey: keyArn } });

    template.resourceCountIs('AWS::KMS::Key', 0);
    template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: keyArn });
    expectAlarmTopicPolicy(template, topicId);
  });

  it('refuses an alarmTopicKey that is neither none, create nor a key ARN (the AWS managed key cannot serve)', () => {
    const error = errorFrom(() => build({ ses: SES, monitoring: { alarmTopicKey: 'alias/aws/sns' } }));

    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain('monitoring.alarmTopicKey');
  });

  it('with alarmTopicKey create, is encrypted with a rotated customer managed key that CloudWatch alarms may use, and requires TLS', () => {
    const { stack, template, topicId } = build({ ses: SES, monitoring: { alarmTopicKey: 'create' } });
    const [keyId] = Object.keys(template.findResources('AWS::KMS::Key'));

    template.resourceCountIs('AWS::SNS::Topic', 1);
    template.hasResourceProperties('AWS::SNS::Topic', {
      KmsMasterKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] },
    });
    template.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      KeyPolicy: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
            // Only this account's alarms may use the key (confused deputy).
            Condition: { StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
          }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topicId }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Deny',
            Action: 'sns:Publish',
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
          Match.objectLike({
            Effect: 'Allow',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
            Action: 'sns:Publish',
            Condition: Match.objectLike({ StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } }),
          }),
        ]),
      },
    });
    expect(stack.relay.monitoring.alarmTopic).toBeDefined();
  });

  it('has no subscriber without alarmEmail', () => {
    const { template } = build({ ses: SES });

    template.resourceCountIs('AWS::SNS::Subscription', 0);
  });

  it('subscribes alarmEmail', () => {
    const { template, topicId } = build({ ses: SES, monitoring: { alarmEmail: 'ops@example.com' } });

    template.resourceCountIs('AWS::SNS::Subscription', 1);
    template.hasResourceProperties('AWS::SNS::Subscription', {
      Protocol: 'email',
      Endpoint: 'ops@example.com',
      TopicArn: { Ref: topicId },
    });
  });
});

describe('RelayMonitoring SES brake (pauseSesOnCriticalBounces)', () => {
  it('is absent unless enabled', () => {
    const { stack, template } = build({ ses: SES, graph: GRAPH });

    expect(stack.relay.monitoring.brakeFunction).toBeUndefined();
    // The send function and the SES feedback function.
    template.resourceCountIs('AWS::Lambda::Function', 2);
    template.resourceCountIs('AWS::SNS::Topic', 1);
    expect(JSON.stringify(template.toJSON())).not.toContain('PutConfigurationSetSendingOptions');
  });

  describe('when enabled', () => {
    const { stack, template, topicId } = build({
      ses: SES,
      graph: GRAPH,
      monitoring: { ...MONITORING, pauseSesOnCriticalBounces: true },
    });
    const brake = stack.relay.monitoring.brakeFunction;
    if (!brake) throw new Error('expected the brake function');
    const brakeId = logicalIdOf(stack, brake);
    const topics = Object.keys(template.findResources('AWS::SNS::Topic'));
    const brakeTopicId = topics.find((id) => id !== topicId) ?? '';

    it('gives the ses critical bounce alarm, and only it, a second action: the brake topic', () => {
      const alarms = alarmsIn(template);

      expect(topics).toHaveLength(2);
      expect(alarmNamed(template, 'ses-bounce-rate-critical').AlarmActions).toEqual([
        { Ref: topicId },
        { Ref: brakeTopicId },
      ]);
      expect(alarmNamed(template, 'ses-bounce-rate-critical').OKActions).toEqual([{ Ref: topicId }]);
      expect(alarmNamed(template, 'ses-bounce-rate-critical').AlarmDescription).toContain(
        'aws sesv2 put-configuration-set-sending-options --configuration-set-name mail-relay --sending-enabled',
      );
      for (const alarm of alarms.values()) {
        if (alarm.AlarmName === `${PREFIX}-ses-bounce-rate-critical`) continue;
        expect(alarm.AlarmActions, alarm.AlarmName).toEqual([{ Ref: topicId }]);
      }
    });

    it('subscribes the brake function to the brake topic, and only to it', () => {
      template.hasResourceProperties('AWS::SNS::Subscription', {
        Protocol: 'lambda',
        TopicArn: { Ref: brakeTopicId },
        Endpoint: { 'Fn::GetAtt': [brakeId, 'Arn'] },
      });
      template.resourceCountIs('AWS::SNS::Subscription', 1);
      template.hasResourceProperties('AWS::Lambda::Permission', {
        Action: 'lambda:InvokeFunction',
        FunctionName: { 'Fn::GetAtt': [brakeId, 'Arn'] },
        Principal: 'sns.amazonaws.com',
        SourceArn: { Ref: brakeTopicId },
      });
      // Like the alarm topic: no key of its own by default, TLS required.
      template.resourceCountIs('AWS::KMS::Key', 0);
      template.hasResourceProperties('AWS::SNS::TopicPolicy', {
        Topics: [{ Ref: brakeTopicId }],
        PolicyDocument: {
          Statement: Match.arrayWith([
            Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
          ]),
        },
      });
    });

    it('encrypts the brake topic with the alarm topics key when there is one', () => {
      const encrypted = build({
        ses: SES,
        monitoring: { pauseSesOnCriticalBounces: true, alarmTopicKey: 'create' },
      }).template;
      const [keyId] = Object.keys(encrypted.findResources('AWS::KMS::Key'));

      encrypted.resourceCountIs('AWS::KMS::Key', 1);
      expect(
        Object.values(encrypted.findResources('AWS::SNS::Topic')).map(
          (topic) => topic.Properties.KmsMasterKeyId,
        ),
      ).toEqual([{ 'Fn::GetAtt': [keyId, 'Arn'] }, { 'Fn::GetAtt': [keyId, 'Arn'] }]);
    });

    it("runs the bundled brake handler like the relay's other functions: Node.js 22 on arm64", () => {
      const [functionId, fn] = relayFunctionIn(template, 'sesBrake');

      expect(functionId).toBe(brakeId);
      expect(fn.Properties).toMatchObject({
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        Handler: 'index.handler',
        Timeout: 30,
        MemorySize: 128,
        Description:
          'Pauses sending on the SES configuration set mail-relay when the critical bounce alarm fires',
      });
      expect(fn.Properties.Code).toEqual({ S3Bucket: expect.anything(), S3Key: expect.any(String) });
      // No NODE_OPTIONS: source maps are opt-in (lib/relay-function.ts).
      expect(Object.keys(fn.Properties.Environment.Variables).sort()).toEqual([
        'MAIL_RELAY_SETTINGS',
        'POWERTOOLS_LOG_LEVEL',
        'POWERTOOLS_SERVICE_NAME',
      ]);
    });

    it('tells the brake, in its settings, which configuration set to pause', () => {
      expect(sesBrakeSettingsSchema.parse(settingsIn(template, 'sesBrake'))).toEqual({
        configurationSetName: 'mail-relay',
      });
    });

    it('retries a failed pause twice, with no on-failure destination (nothing to replay)', () => {
      template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
        FunctionName: { Ref: brakeId },
        MaximumRetryAttempts: 2,
        DestinationConfig: Match.absent(),
      });
    });

    it('alarms on the alarm topic when the brake fails, with the command to pause by hand', () => {
      expect(alarmNamed(template, 'ses-brake-errors')).toEqual({
        AlarmName: `${PREFIX}-ses-brake-errors`,
        AlarmDescription: expect.stringContaining(
          'aws sesv2 put-configuration-set-sending-options --configuration-set-name mail-relay --no-sending-enabled',
        ),
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: brakeId } }],
        Statistic: 'Sum',
        Period: 300,
        ...alarmBasics(topicId, 1),
      });
    });

    it("keeps the brake's log, its audit of pauses, for a year", () => {
      const logGroupIds = Object.keys(
        template.findResources('AWS::Logs::LogGroup', { Properties: { RetentionInDays: 365 } }),
      );

      expect(logGroupIds).toHaveLength(1);
      expect(template.toJSON().Resources[brakeId].Properties.LoggingConfig).toEqual({
        LogGroup: { Ref: logGroupIds[0] },
      });
    });

    it('lets the function call ses:PutConfigurationSetSendingOptions on that configuration set only', () => {
      const roleId = logicalIdOf(stack, brake.role ?? brake);
      const statements = statementsOfRole(template, roleId);
      const logGroupId = Object.keys(
        template.findResources('AWS::Logs::LogGroup', { Properties: { RetentionInDays: 365 } }),
      )[0];

      expect(statements).toEqual([
        {
          Effect: 'Allow',
          Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          Resource: { 'Fn::GetAtt': [logGroupId, 'Arn'] },
        },
        {
          Effect: 'Allow',
          Action: 'ses:PutConfigurationSetSendingOptions',
          Resource: sesArn('configuration-set/mail-relay'),
        },
      ]);
      // Its own role, with no AWS managed policy.
      expect(template.toJSON().Resources[roleId].Properties).toEqual({
        AssumeRolePolicyDocument: {
          Statement: [
            {
              Action: 'sts:AssumeRole',
              Effect: 'Allow',
              Principal: { Service: 'lambda.amazonaws.com' },
            },
          ],
          Version: '2012-10-17',
        },
        Description: 'Mail relay SES brake',
      });
    });
  });

  it('pauses the configuration set the stack created when ses names none', () => {
    const { stack, template } = build({
      ses: { identities: ['example.com'] },
      monitoring: { pauseSesOnCriticalBounces: true },
    });
    const created = stack.relay.sesFeedback?.configurationSet;
    if (!created) throw new Error('expected the relay configuration set');

    template.hasResourceProperties('AWS::IAM::Policy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Allow',
            Action: 'ses:PutConfigurationSetSendingOptions',
            Resource: sesArn('configuration-set/', logicalIdOf(stack, created)),
          },
        ]),
      },
    });
  });

  it('is refused at synth without ses', () => {
    const error = errorFrom(() => build({ graph: GRAPH, monitoring: { pauseSesOnCriticalBounces: true } }));

    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as ConfigurationError).problems).toEqual([
      expect.stringMatching(/^monitoring\.pauseSesOnCriticalBounces: .*configure ses too/),
    ]);
    expect(error.message).toContain('MailRelay/Relay');
  });
});

describe('RelayMonitoring dashboard', () => {
  const TITLES = [
    'Alarms',
    'Messages sent per provider',
    'Outcomes',
    'Bounce rate per provider vs thresholds',
    'Complaint rate vs threshold',
    'Feedback per provider: delivered, bounced, complained',
    'Outbox depth and oldest message age',
    'Dead-letter queue depth',
    'Send latency p50/p90/p99 per provider',
    'End-to-end latency p50/p99',
    'Fallbacks',
    'Send function errors and throttles',
  ];
  const SES_TITLES = ['SES reputation: bounce rate', 'SES reputation: complaint rate'];

  function bodyOf(template: Template): string {
    const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
    expect(dashboards).toHaveLength(1);
    return JSON.stringify(dashboards[0]?.Properties.DashboardBody);
  }

  it('is absent by default ($3 a month when asked for)', () => {
    const { stack, template } = build({ ses: SES, graph: GRAPH });

    template.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    expect(stack.relay.monitoring.dashboard).toBeUndefined();
  });

  it('has a widget for each concern, and the SES reputation with ses', () => {
    const body = bodyOf(
      build({ ses: SES, graph: GRAPH, monitoring: { ...MONITORING, dashboard: true } }).template,
    );

    for (const title of [...TITLES, ...SES_TITLES])
      expect(body, title).toContain(`\\"title\\":\\"${title}\\"`);
    expect(body).toContain('Reputation.BounceRate');
    // The thresholds are drawn on the rate graphs.
    expect(body).toContain('\\"value\\":0.03');
    expect(body).toContain('\\"value\\":0.07');
    // Feedback counts per provider, and the suppressions by cause (which bounces were hard).
    for (const label of [
      'Delivered (ses)',
      'Bounced (graph)',
      'Bounced (ses)',
      'Complained (graph)',
      'user-unknown',
    ])
      expect(body, label).toContain(`\\"label\\":\\"${label}\\"`);
    expect(body).toContain('SuppressionAdded');
  });

  it('leaves out the SES reputation without ses', () => {
    const body = bodyOf(build({ graph: GRAPH, monitoring: { dashboard: true } }).template);

    for (const title of TITLES) expect(body, title).toContain(`\\"title\\":\\"${title}\\"`);
    for (const title of SES_TITLES) expect(body, title).not.toContain(title);
  });
});
