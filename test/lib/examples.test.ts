import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { bounceReportSettingsSchema } from '../../lambda/bounce-reports/settings.ts';
import { feedbackSettingsSchema } from '../../lambda/core/settings.ts';
import { relaySettingsSchema } from '../../lambda/send/settings.ts';
import { loadRelayConfig, relayConfigSchema } from '../../lib/config.ts';
import { MailRelayStack } from '../../lib/mail-relay-stack.ts';
import { fastApp, REPO_ROOT, settingsIn } from './support.ts';

const EXAMPLES_DIR = fileURLToPath(new URL('examples/', REPO_ROOT));
const exampleFiles = readdirSync(EXAMPLES_DIR).filter((name) => name.endsWith('.json'));

function synthesize(file: string) {
  const config = loadRelayConfig(`${EXAMPLES_DIR}${file}`);
  const stack = new MailRelayStack(fastApp(), 'MailRelay', { config });
  return { config, template: Template.fromStack(stack) };
}

describe('the example configurations', () => {
  it('include a minimal, a full and a Graph-only example', () => {
    expect(exampleFiles).toEqual(
      expect.arrayContaining(['minimal.config.json', 'full.config.json', 'graph-only.config.json']),
    );
  });

  it('include a full example that sets every section of the configuration', () => {
    const full = JSON.parse(readFileSync(`${EXAMPLES_DIR}full.config.json`, 'utf8')) as object;

    expect(Object.keys(full).sort()).toEqual(Object.keys(relayConfigSchema.shape).sort());
  });

  it.each(exampleFiles)(
    '%s synthesizes into an outbox with a dead-letter queue and the send function',
    (file) => {
      const { config, template } = synthesize(file);

      // Outbox and dead-letter queue; with ses, the feedback function's dead-letter queue too; with
      // ingress, the ingest function's; with egress, the static-egress function's queue.
      template.resourceCountIs(
        'AWS::SQS::Queue',
        2 + (config.ses ? 1 : 0) + (config.ingress ? 1 : 0) + (config.egress ? 1 : 0),
      );
      template.hasResourceProperties('AWS::SQS::Queue', {
        RedrivePolicy: Match.objectLike({ maxReceiveCount: config.queue.maxReceiveCount }),
      });
      // The send function; with egress, the static-egress one; with ses, the feedback function; the
      // SES brake, which pauses the configuration set on critical bounces, when enabled; the bounce
      // report reader; with ingress, the ingest function and CDK's handler that sets the bucket
      // notification.
      template.resourceCountIs(
        'AWS::Lambda::Function',
        1 +
          (config.egress ? 1 : 0) +
          (config.ses ? 1 : 0) +
          (config.monitoring.pauseSesOnCriticalBounces ? 1 : 0) +
          (config.bounceReports ? 1 : 0) +
          (config.ingress ? 2 : 0),
      );
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        BatchSize: config.sendFunction.batchSize,
        ScalingConfig: { MaximumConcurrency: config.sendFunction.maxConcurrency },
      });
    },
  );

  it('include a full example whose routes, retries and circuit breaker reach the send function', () => {
    const { config, template } = synthesize('full.config.json');
    const settings = relaySettingsSchema.parse(settingsIn(template));

    expect(config.routes?.map((route) => route.name)).toEqual(['contoso', 'scanner', 'crm', 'default']);
    expect(settings.routes).toEqual(config.routes);
    expect(settings.routes?.find((route) => route.name === 'crm')?.rewriteFrom).toEqual({
      address: 'facturas@fabrikam.com',
      name: 'Fabrikam CRM',
    });
    expect(settings.routes?.map((route) => route.onUnknownOutcome)).toEqual([
      'dead-letter',
      'dead-letter',
      'dead-letter',
      'resend',
    ]);
    expect(settings.graph?.sentItemsLookupSeconds).toBe(300);
    expect(settings.retry).toEqual(config.retry);
    expect(settings.circuitBreaker).toEqual(config.circuitBreaker);
    expect(settings.ledger).toMatchObject({
      leaseSeconds: config.sendFunction.timeoutSeconds,
      retentionDays: config.ledger.retentionDays,
    });
    expect(settings.maxReceiveCount).toBe(8);
  });

  it('include a full example that sees bounces from every provider and alarms on them', () => {
    const { config, template } = synthesize('full.config.json');

    // SES: the existing configuration set named in the example publishes to EventBridge.
    template.hasResourceProperties('AWS::SES::ConfigurationSetEventDestination', {
      ConfigurationSetName: config.ses?.configurationSetName,
      EventDestination: Match.objectLike({ MatchingEventTypes: Match.arrayWith(['bounce', 'complaint']) }),
    });
    template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({ source: ['aws.ses'] }),
    });
    // Graph and SMTP: the reports of the configured mailboxes, on the configured schedule.
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: `rate(${config.bounceReports?.scheduleMinutes} minutes)`,
    });
    expect(bounceReportSettingsSchema.parse(settingsIn(template, 'bounceReader'))).toMatchObject({
      mailboxes: config.bounceReports?.mailboxes,
      suppression: { retentionDays: config.suppression.retentionDays },
    });
    expect(feedbackSettingsSchema.parse(settingsIn(template, 'feedback')).suppression.retentionDays).toBe(
      config.suppression.retentionDays,
    );
    const alarmNames = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((alarm) =>
      String(alarm.Properties.AlarmName),
    );
    for (const name of [
      'graph-bounce-rate-critical',
      'smtp-bounce-rate-critical',
      'ses-bounce-rate-critical',
      'ses-complaint-rate',
      'ses-reputation-bounce-rate',
      'feedback-dead-letter-queue-not-empty',
      'bounce-report-errors',
    ]) {
      expect(
        alarmNames.some((alarmName) => alarmName.endsWith(`-${name}`)),
        name,
      ).toBe(true);
    }
    // The dashboard ($3 a month) is opt-in (monitoring.dashboard).
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
  });

  it('include a named SMTP connections example whose connections each reach the send function and the alarms', () => {
    const { template } = synthesize('smtp-connections.config.json');
    const settings = relaySettingsSchema.parse(settingsIn(template));
    const providers = ['smtp:newsletter', 'smtp:antispam', 'smtp:hve', 'smtp:certified'];

    expect(settings.smtp?.map((connection) => connection.name)).toEqual(providers);
    expect(settings.smtp?.every((connection) => connection.credentialSecretId !== undefined)).toBe(true);
    expect(settings.routes?.find((route) => route.name === 'certified')?.providers).toEqual([
      'smtp:certified',
    ]);
    // Without bounceReports no connection's bounces reach the relay, so no bounce rate alarm reads
    // them; each connection's Sent is in the fallback rate alarm (the rate's denominator).
    const fallbackAlarm = Object.values(template.findResources('AWS::CloudWatch::Alarm')).find((alarm) =>
      String(alarm.Properties.AlarmName).endsWith('-fallback-rate'),
    );
    for (const provider of providers) {
      expect(JSON.stringify(fallbackAlarm?.Properties.Metrics), provider).toContain(
        `{"Name":"Provider","Value":"${provider}"}`,
      );
    }
  });

  it.each(exampleFiles)('%s sets the function timeout and memory it names', (file) => {
    const { config, template } = synthesize(file);

    template.hasResourceProperties('AWS::Lambda::Function', {
      Timeout: config.sendFunction.timeoutSeconds,
      MemorySize: config.sendFunction.memoryMiB,
    });
  });
});

describe.each(exampleFiles)('the example %s', (file) => {
  it('creates a Graph credential secret exactly when it configures graph, and one per ingress client', () => {
    const { config, template } = synthesize(file);

    template.resourceCountIs(
      'AWS::SecretsManager::Secret',
      (config.graph && !config.graph.credentialSecretArn ? 1 : 0) + (config.ingress?.clients.length ?? 0),
    );
  });

  it('lets the function out on 443, plus the SMTP port when it configures smtp, behind static egress', () => {
    const { config, template } = synthesize(file);
    if (!config.egress) return;
    const ports = config.smtp ? [25, 443] : [443];
    const groups = template.findResources('AWS::EC2::SecurityGroup', {
      Properties: { GroupDescription: Match.stringLikeRegexp('send function') },
    }) as Record<string, { Properties: { SecurityGroupEgress: { FromPort: number }[] } }>;
    const [group] = Object.values(groups);

    expect(group?.Properties.SecurityGroupEgress.map((rule) => rule.FromPort)).toEqual(ports);
  });

  it('creates the delivery ledger, the suppression list and, with pacing, the pacing table', () => {
    const { config, template } = synthesize(file);

    template.resourceCountIs('AWS::DynamoDB::Table', config.pacing.enabled ? 3 : 2);
  });

  it('creates an attachment bucket exactly when it configures attachments, and an ingress bucket with ingress', () => {
    const { config, template } = synthesize(file);

    template.resourceCountIs('AWS::S3::Bucket', (config.attachments ? 1 : 0) + (config.ingress ? 1 : 0));
  });
});
