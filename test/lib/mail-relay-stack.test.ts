import { Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import type { RelayConfigInput } from '../../lib/config.ts';
import { MailRelayStack } from '../../lib/mail-relay-stack.ts';
import { fastApp, logicalIdOf } from './support.ts';

const SES = { identities: ['example.com'] };
const GRAPH = {
  tenantId: 'contoso.onmicrosoft.com',
  clientId: '11111111-2222-3333-4444-555555555555',
  senders: ['contoso.com'],
};

function buildStack(config: RelayConfigInput) {
  const stack = new MailRelayStack(fastApp(), 'MailRelay', { config });
  const outputs = Template.fromStack(stack).toJSON().Outputs as Record<
    string,
    { Description: string; Value: unknown }
  >;
  return { stack, outputs };
}

describe('MailRelayStack outputs', () => {
  it('name the outbox, the dead-letter queue and the send function', () => {
    const { stack, outputs } = buildStack({ ses: SES });

    expect(outputs.OutboxQueueUrl?.Value).toEqual({ Ref: logicalIdOf(stack, stack.relay.outbox) });
    expect(outputs.DeadLetterQueueUrl?.Value).toEqual({
      Ref: logicalIdOf(stack, stack.relay.deadLetterQueue),
    });
    expect(outputs.SendFunctionName?.Value).toEqual({ Ref: logicalIdOf(stack, stack.relay.sendFunction) });
  });

  it('describe the send function without naming a single provider', () => {
    const { outputs } = buildStack({ graph: GRAPH });

    expect(outputs.SendFunctionName?.Description).not.toMatch(/SES/);
  });

  it('leave out the bucket and the secret when neither attachments nor graph is configured', () => {
    const { outputs } = buildStack({ ses: SES });

    expect(Object.keys(outputs).sort()).toEqual([
      'AlarmTopicArn',
      'DeadLetterQueueUrl',
      'DeliveryLedgerTableName',
      'FeedbackDeadLetterQueueUrl',
      'OutboxQueueUrl',
      'PacingTableName',
      'SendFunctionName',
      'SesConfigurationSetName',
      'SuppressionListTableName',
    ]);
  });

  it('name the pacing table, and leave it out when pacing is off', () => {
    const { stack, outputs } = buildStack({ ses: SES });
    const table = stack.relay.pacingTable?.table;
    if (!table) throw new Error('no pacing table with pacing on by default');

    expect(outputs.PacingTableName?.Value).toEqual({
      Ref: stack.getLogicalId(table.node.defaultChild as never),
    });
    expect(Object.keys(buildStack({ ses: SES, pacing: { enabled: false } }).outputs)).not.toContain(
      'PacingTableName',
    );
  });

  it('name the SES configuration set and the feedback dead-letter queue', () => {
    const { stack, outputs } = buildStack({ ses: SES });
    const feedback = stack.relay.sesFeedback;
    if (!feedback) throw new Error('no SES feedback with ses configured');

    expect(outputs.SesConfigurationSetName?.Value).toEqual({
      Ref: logicalIdOf(stack, feedback.configurationSet),
    });
    expect(outputs.FeedbackDeadLetterQueueUrl?.Value).toEqual({
      Ref: logicalIdOf(stack, feedback.deadLetterQueue),
    });
  });

  it('name the delivery ledger for mail-relay status, and the suppression list', () => {
    const { stack, outputs } = buildStack({ ses: SES });

    expect(outputs.DeliveryLedgerTableName).toEqual({
      Description: 'What happened to each message: mail-relay status <id> --table <this> --region <region>',
      Value: { Ref: logicalIdOf(stack, stack.relay.deliveryLedger.table) },
    });
    expect(outputs.SuppressionListTableName?.Value).toEqual({
      Ref: logicalIdOf(stack, stack.relay.suppressionList.table),
    });
  });

  it('name the alarm topic, and the dashboard only with monitoring.dashboard', () => {
    const { stack, outputs } = buildStack({ ses: SES });

    expect(outputs.AlarmTopicArn?.Value).toEqual({
      Ref: logicalIdOf(stack, stack.relay.monitoring.alarmTopic),
    });
    expect(outputs.DashboardName).toBeUndefined();

    const withDashboard = buildStack({ ses: SES, monitoring: { dashboard: true } });
    const dashboard = withDashboard.stack.relay.monitoring.dashboard;
    if (!dashboard) throw new Error('expected the dashboard');
    expect(withDashboard.outputs.DashboardName?.Value).toEqual({
      Ref: logicalIdOf(withDashboard.stack, dashboard),
    });
  });

  it('name the attachment bucket and say what goes there', () => {
    const { stack, outputs } = buildStack({ ses: SES, attachments: {} });
    const bucket = stack.relay.attachmentBucket?.bucket;
    if (!bucket) throw new Error('expected an attachment bucket');

    expect(outputs.AttachmentBucketName).toEqual({
      Description:
        'Upload attachments larger than ~700 KB here and reference them as {"s3": {"bucket", "key"}}',
      Value: { Ref: logicalIdOf(stack, bucket) },
    });
  });

  it('name the secret created for the Graph credential', () => {
    const { stack, outputs } = buildStack({ graph: GRAPH });
    const secret = stack.relay.graphCredential?.secret;
    if (!secret) throw new Error('expected a Graph credential secret');

    expect(outputs.GraphCredentialSecretArn).toEqual({
      Description: 'Put the Microsoft Graph app credential (JSON) in this secret',
      Value: { Ref: logicalIdOf(stack, secret) },
    });
  });

  it('name a given Graph credential secret too, so scripts find it the same way', () => {
    const credentialSecretArn =
      'arn:aws:secretsmanager:eu-west-1:123456789012:secret:mail-relay/graph-AbCdEf';

    const { outputs } = buildStack({ graph: { ...GRAPH, credentialSecretArn } });

    expect(outputs.GraphCredentialSecretArn?.Value).toBe(credentialSecretArn);
  });
});

describe('MailRelayStack outputs with static egress', () => {
  /** An Exchange connector: what sends from the static IPs. */
  const CONNECTOR = { senders: ['scanner@contoso.com'], mode: 'connector' as const };

  it('name the static-egress queue and function', () => {
    const { stack, outputs } = buildStack({ ses: SES, smtp: CONNECTOR, egress: {} });
    const sender = stack.relay.staticEgressSender;
    if (!sender) throw new Error('no static-egress sender');

    expect(outputs.StaticEgressQueueUrl?.Value).toEqual({ Ref: logicalIdOf(stack, sender.queue) });
    expect(outputs.StaticEgressFunctionName?.Value).toEqual({ Ref: logicalIdOf(stack, sender.sendFunction) });
    expect(buildStack({ ses: SES }).outputs.StaticEgressQueueUrl).toBeUndefined();
  });

  function eipIds(stack: MailRelayStack): string[] {
    return (stack.relay.staticEgress?.addresses ?? []).map(
      (address) =>
        (stack.resolve(address.allocationId) as { 'Fn::GetAtt': [string, string] })['Fn::GetAtt'][0],
    );
  }
  const publicIp = (id: string) => ({ 'Fn::GetAtt': [id, 'PublicIp'] });

  it('list the egress IPs, comma-separated', () => {
    const { stack, outputs } = buildStack({ ses: SES, smtp: CONNECTOR, egress: { natCount: 2 } });
    const [first = '', second = ''] = eipIds(stack);

    expect(outputs.EgressIps?.Value).toEqual({ 'Fn::Join': [',', [publicIp(first), publicIp(second)]] });
  });

  it('give a ready-to-paste Exchange Online inbound connector command with the egress IPs', () => {
    const { stack, outputs } = buildStack({ ses: SES, smtp: CONNECTOR, egress: { natCount: 2 } });
    const [first = '', second = ''] = eipIds(stack);

    expect(outputs.InboundConnectorCommand?.Value).toEqual({
      'Fn::Join': [
        '',
        [
          'New-InboundConnector -Name "mail-relay" -ConnectorType OnPremises -SenderDomains * -SenderIPAddresses ',
          publicIp(first),
          ',',
          publicIp(second),
          ' -RequireTls $true -RestrictDomainsToIPAddresses $false',
        ],
      ],
    });
  });

  it('give the ip4: mechanisms to merge into the SPF record', () => {
    const { stack, outputs } = buildStack({ ses: SES, smtp: CONNECTOR, egress: { natCount: 2 } });
    const [first = '', second = ''] = eipIds(stack);

    expect(outputs.SpfRecord).toEqual({
      Description: "Merge these ip4: mechanisms into your domain's SPF record",
      Value: {
        'Fn::Join': [
          '',
          [
            'v=spf1 ip4:',
            publicIp(first),
            ' ip4:',
            publicIp(second),
            ' include:spf.protection.outlook.com -all',
          ],
        ],
      },
    });
  });

  it('name reused allocation IDs, how to look their addresses up, and placeholders to replace', () => {
    const elasticIpAllocationIds = ['eipalloc-0123456789abcdef0', 'eipalloc-0fedcba987654321f'];

    const { outputs } = buildStack({ ses: SES, smtp: CONNECTOR, egress: { elasticIpAllocationIds } });

    expect(outputs.EgressIps).toBeUndefined();
    expect(outputs.EgressAllocationIds?.Value).toBe(elasticIpAllocationIds.join(','));
    expect(outputs.EgressIpLookupCommand?.Value).toBe(
      'aws ec2 describe-addresses --allocation-ids eipalloc-0123456789abcdef0 eipalloc-0fedcba987654321f --query "Addresses[].PublicIp" --output text',
    );
    expect(outputs.InboundConnectorCommand?.Value).toContain(
      '-SenderIPAddresses <public IP of eipalloc-0123456789abcdef0>,<public IP of eipalloc-0fedcba987654321f> ',
    );
    expect(outputs.InboundConnectorCommand?.Description).toMatch(/given by allocation ID/);
    expect(outputs.SpfRecord?.Description).toMatch(/given by allocation ID/);
  });

  it('are left out without egress', () => {
    const { outputs } = buildStack({ ses: SES });

    for (const name of ['EgressIps', 'EgressAllocationIds', 'InboundConnectorCommand', 'SpfRecord']) {
      expect(outputs[name], name).toBeUndefined();
    }
  });
});
