import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { bounceReportSettingsSchema } from '../../lambda/bounce-reports/settings.ts';
import { ConfigurationError } from '../../lambda/core/validation.ts';
import { MailRelay, type MailRelayProps } from '../../lib/mail-relay.ts';
import {
  alarmBasics,
  errorFrom,
  fastApp,
  logicalIdOf,
  relayFunctionIn,
  settingsIn,
  statementsOfRole,
} from './support.ts';

const GRAPH = {
  tenantId: 'contoso.onmicrosoft.com',
  clientId: '11111111-2222-3333-4444-555555555555',
  senders: ['contoso.com'],
};

function build(props: MailRelayProps) {
  const stack = new Stack(fastApp(), 'Test');
  const relay = new MailRelay(stack, 'Relay', props);
  return { stack, relay, template: Template.fromStack(stack) };
}

describe('the bounce report reader', () => {
  const { stack, relay, template } = build({
    graph: GRAPH,
    bounceReports: { mailboxes: ['noreply@contoso.com', 'soporte@contoso.com'], scheduleMinutes: 10 },
    suppression: { retentionDays: 180 },
  });
  const reader = relay.bounceReportReader;
  if (!reader) throw new Error('expected the bounce report reader');
  const [functionId, readerFunction] = relayFunctionIn(template, 'bounceReader');
  const roleId = (readerFunction.Properties.Role as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0];
  const ledgerId = logicalIdOf(stack, relay.deliveryLedger.table);

  it('runs on the configured schedule, without Lambda retries (the next run is the retry)', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(10 minutes)',
      State: 'ENABLED',
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [functionId, 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 0 },
        }),
      ],
    });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: functionId },
      MaximumRetryAttempts: 0,
    });
    template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('^Reads non-delivery reports'),
      Timeout: 300,
    });
  });

  it('tells the function which mailboxes, how to reach Graph, and where feedback goes', () => {
    const settings = bounceReportSettingsSchema.parse(settingsIn(template, 'bounceReader'));
    expect(settings).toMatchObject({
      mailboxes: ['noreply@contoso.com', 'soporte@contoso.com'],
      lookbackMinutes: 24 * 60,
      maxMessagesPerMailbox: 100,
      ledger: { tableName: `stack-${ledgerId}-ABC123` },
      suppression: { retentionDays: 180 },
      events: { busName: 'default' },
      graph: {
        tenantId: 'contoso.onmicrosoft.com',
        clientId: '11111111-2222-3333-4444-555555555555',
        graphEndpoint: 'https://graph.microsoft.com',
      },
    });
  });

  it('may read the credential and the ledger, write its own cursor items, suppressions and feedback notes, and put events', () => {
    const statements = statementsOfRole(template, roleId).map((statement) => ({
      actions: [statement.Action].flat(),
      resource: JSON.stringify(statement.Resource),
      condition: (statement as { Condition?: unknown }).Condition,
    }));

    expect(statements).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          actions: ['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue'],
        }),
        expect.objectContaining({
          // Read entries; note bounces on them (for `mail-relay status`).
          actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
          resource: JSON.stringify({ 'Fn::GetAtt': [ledgerId, 'Arn'] }),
        }),
        expect.objectContaining({
          actions: ['dynamodb:Query'],
          resource: expect.stringMatching(new RegExp(`${ledgerId}.*/index/messageId`)),
        }),
        {
          actions: ['dynamodb:PutItem'],
          resource: JSON.stringify({ 'Fn::GetAtt': [ledgerId, 'Arn'] }),
          condition: { 'ForAllValues:StringLike': { 'dynamodb:LeadingKeys': ['bounce-reports#*'] } },
        },
        {
          actions: ['dynamodb:PutItem'],
          resource: JSON.stringify({
            'Fn::GetAtt': [logicalIdOf(stack, relay.suppressionList.table), 'Arn'],
          }),
          condition: undefined,
        },
        expect.objectContaining({
          actions: ['events:PutEvents'],
          resource: expect.stringContaining(':event-bus/default'),
        }),
      ]),
    );
    expect(
      statements.flatMap((statement) => statement.actions).filter((action) => action.startsWith('dynamodb:')),
    ).toEqual([
      'dynamodb:GetItem',
      'dynamodb:UpdateItem',
      'dynamodb:Query',
      'dynamodb:PutItem',
      'dynamodb:PutItem',
    ]);
  });

  it('alarms when a run fails, on the alarm topic', () => {
    const topicId = logicalIdOf(stack, relay.monitoring.alarmTopic);
    const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).filter((alarm) =>
      String(alarm.Properties.AlarmName).endsWith('-bounce-report-errors'),
    );

    expect(alarms.map((alarm) => alarm.Properties)).toEqual([
      {
        AlarmName: expect.stringMatching(/-bounce-report-errors$/),
        AlarmDescription: expect.stringContaining('Mail.Read'),
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: functionId } }],
        Statistic: 'Sum',
        Period: 300,
        ...alarmBasics(topicId, 1),
      },
    ]);
  });
});

describe('bounceReports without graph', () => {
  it('is refused at synth, with the reason', () => {
    const error = errorFrom(() =>
      build({ ses: { identities: ['example.com'] }, bounceReports: { mailboxes: ['noreply@example.com'] } }),
    );
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as ConfigurationError).problems).toEqual([
      expect.stringMatching(/^bounceReports: reads the mailboxes through Microsoft Graph/),
    ]);
  });

  it('refuses a domain where a mailbox is needed, and a mailbox listed twice', () => {
    const error = errorFrom(() =>
      build({
        graph: GRAPH,
        bounceReports: { mailboxes: ['contoso.com', 'A@contoso.com', 'a@contoso.com'] },
      }),
    );
    expect((error as ConfigurationError).problems).toEqual([
      'bounceReports.mailboxes[0]: must be a mailbox address (not a domain)',
      'bounceReports.mailboxes: lists a mailbox twice',
    ]);
  });
});
