import { type CfnElement, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { SETTINGS_ENV_VAR } from '../../lambda/core/settings.ts';
import { ConfigurationError } from '../../lambda/core/validation.ts';
import { relaySettingsSchema } from '../../lambda/send/settings.ts';
import { ingestSettingsFor, parseRelayConfig } from '../../lib/config.ts';
import { MailRelay, type MailRelayProps } from '../../lib/mail-relay.ts';
import { SmtpIngress } from '../../lib/smtp-ingress.ts';
import {
  alarmBasics,
  errorFrom,
  type FunctionResource,
  fastApp,
  logicalIdOf,
  sesArn,
  settingsIn,
  statementsOfRole,
} from './support.ts';

const MiB = 1024 * 1024;
const PROPS: MailRelayProps = {
  ses: { identities: ['fabrikam.com', 'contoso.com'] },
  routes: [
    { name: 'crm', from: ['*@fabrikam.com'], providers: ['ses'] },
    { name: 'office', from: ['*@contoso.com'], providers: ['ses'] },
  ],
  message: { maxRecipients: 20 },
  ingress: {
    clients: [
      { name: 'crm', allowedCidrs: ['203.0.113.0/24'], senders: ['*@fabrikam.com'], route: 'crm' },
      {
        name: 'scan-01',
        allowedCidrs: ['198.51.100.7/32', '2001:db8:5c::/48'],
        senders: ['scanner@contoso.com'],
      },
    ],
    maxMessageBytes: 25 * MiB,
    retentionDays: 21,
    inlineMaxBytes: 10_000,
  },
};

function build(props: MailRelayProps = PROPS, env?: { region: string }) {
  const stack = new Stack(fastApp(), 'Test', env && { env: { account: '123456789012', ...env } });
  const relay = new MailRelay(stack, 'Relay', props);
  return { stack, relay, template: Template.fromStack(stack) };
}

const { stack, relay, template } = build();
const ingress = relay.smtpIngress;
if (!ingress) throw new Error('expected the SMTP front door with ingress configured');
const [crm, scanner] = ingress.clients;
if (!crm || !scanner) throw new Error('expected two clients');
const bucketId = logicalIdOf(stack, ingress.bucket);
const keyId = logicalIdOf(stack, ingress.secretKey);
const roleId = logicalIdOf(stack, ingress.mailManagerRole);
const queueId = logicalIdOf(stack, ingress.deadLetterQueue);
const outboxId = logicalIdOf(stack, relay.outbox);
const functionId = logicalIdOf(stack, ingress.ingestFunction);
const ingestRoleId = logicalIdOf(stack, ingress.ingestFunction.role ?? ingress.ingestFunction);
const sendRoleId = logicalIdOf(stack, relay.sendFunction.role ?? relay.sendFunction);
const topicId = logicalIdOf(stack, relay.monitoring.alarmTopic);
const idOf = (element: CfnElement) => stack.getLogicalId(element);
const crmSecretId = logicalIdOf(stack, crm.secret);
const scannerSecretId = logicalIdOf(stack, scanner.secret);
const fipsConditionId = Object.keys(template.toJSON().Conditions ?? {}).find((id) =>
  id.includes('FipsTlsRegion'),
);

const bucketArn = { 'Fn::GetAtt': [bucketId, 'Arn'] };
const ingressObjects = { 'Fn::Join': ['', [bucketArn, '/ingress/*']] };
const sourceConditions = (resource: string) => ({
  StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } },
  ArnLike: { 'aws:SourceArn': sesArn(resource) },
});

function resourceOf(
  type: string,
  logicalId: string,
): { Properties: Record<string, unknown>; DependsOn?: string[] } {
  const resource = template.findResources(type)[logicalId];
  if (!resource) throw new Error(`no ${type} ${logicalId}`);
  return resource as { Properties: Record<string, unknown>; DependsOn?: string[] };
}

/** The ingest function's MAIL_RELAY_SETTINGS, each `Ref` written as `ref:<logical ID>`. */
function ingestSettingsInTemplate(): unknown {
  const fn = resourceOf('AWS::Lambda::Function', functionId) as unknown as FunctionResource;
  const value = fn.Properties.Environment.Variables[SETTINGS_ENV_VAR] as {
    'Fn::Join': [string, Array<string | { Ref: string }>];
  };
  return JSON.parse(
    value['Fn::Join'][1].map((part) => (typeof part === 'string' ? part : `ref:${part.Ref}`)).join(''),
  );
}

describe('the SMTP front door (ingress)', () => {
  describe('its bucket', () => {
    it('is private, encrypted with S3-managed keys, owner-enforced, and retained with the stack', () => {
      template.hasResource('AWS::S3::Bucket', {
        Properties: Match.objectLike({
          BucketEncryption: {
            ServerSideEncryptionConfiguration: [
              { ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } },
            ],
          },
          PublicAccessBlockConfiguration: {
            BlockPublicAcls: true,
            BlockPublicPolicy: true,
            IgnorePublicAcls: true,
            RestrictPublicBuckets: true,
          },
          OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
        }),
        DeletionPolicy: 'Retain',
        UpdateReplacePolicy: 'Retain',
      });
    });

    it('expires submissions after ingress.retentionDays and abandoned uploads after a day', () => {
      expect(resourceOf('AWS::S3::Bucket', bucketId).Properties.LifecycleConfiguration).toEqual({
        Rules: [
          {
            ExpirationInDays: 21,
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
            Status: 'Enabled',
          },
        ],
      });
    });

    it('has a name Mail Manager takes (at most 62 characters), unique per construct and stack', () => {
      const name = resourceOf('AWS::S3::Bucket', bucketId).Properties.BucketName as {
        'Fn::Join': [string, [string, unknown]];
      };
      const [separator, [prefix, stackUuid]] = name['Fn::Join'];

      expect(separator).toBe('-');
      expect(prefix).toBe(`relay-ingress-${ingress.node.addr.slice(0, 8)}`);
      expect(stackUuid).toEqual({ 'Fn::Select': [2, { 'Fn::Split': ['/', { Ref: 'AWS::StackId' }] }] });
      // A stack ID ends in a 36-character UUID.
      expect(`${prefix}-${'0'.repeat(36)}`.length).toBeLessThanOrEqual(62);
    });

    it('refuses requests without TLS', () => {
      template.hasResourceProperties('AWS::S3::BucketPolicy', {
        Bucket: { Ref: bucketId },
        PolicyDocument: {
          Statement: [
            {
              Action: 's3:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
              Effect: 'Deny',
              Principal: { AWS: '*' },
              Resource: [bucketArn, { 'Fn::Join': ['', [bucketArn, '/*']] }],
            },
          ],
          Version: '2012-10-17',
        },
      });
    });

    it('notifies the ingest function of every object created below ingress/', () => {
      template.hasResourceProperties('Custom::S3BucketNotifications', {
        BucketName: { Ref: bucketId },
        NotificationConfiguration: {
          LambdaFunctionConfigurations: [
            {
              Events: ['s3:ObjectCreated:*'],
              Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'ingress/' }] } },
              LambdaFunctionArn: { 'Fn::GetAtt': [functionId, 'Arn'] },
            },
          ],
        },
      });
      template.hasResourceProperties('AWS::Lambda::Permission', {
        Action: 'lambda:InvokeFunction',
        FunctionName: { 'Fn::GetAtt': [functionId, 'Arn'] },
        Principal: 's3.amazonaws.com',
        SourceAccount: { Ref: 'AWS::AccountId' },
        SourceArn: bucketArn,
      });
    });
  });

  describe('the key of the client secrets', () => {
    it('rotates, and is deleted with the stack', () => {
      const key = template.findResources('AWS::KMS::Key')[keyId];

      expect(key?.Properties.EnableKeyRotation).toBe(true);
      expect(key?.DeletionPolicy).toBe('Delete');
    });

    it('lets Mail Manager decrypt through Secrets Manager, for this account’s ingress endpoints only', () => {
      const policy = resourceOf('AWS::KMS::Key', keyId).Properties.KeyPolicy as { Statement: unknown[] };

      expect(policy.Statement).toContainEqual({
        Sid: 'MailManagerReadsIngressSecrets',
        Effect: 'Allow',
        Principal: { Service: 'ses.amazonaws.com' },
        Action: 'kms:Decrypt',
        Resource: '*',
        Condition: {
          StringEquals: {
            'kms:ViaService': {
              'Fn::Join': ['', ['secretsmanager.', { Ref: 'AWS::Region' }, '.', { Ref: 'AWS::URLSuffix' }]],
            },
            'aws:SourceAccount': { Ref: 'AWS::AccountId' },
          },
          ArnLike: { 'aws:SourceArn': sesArn('mailmanager-ingress-point/*') },
        },
      });
      const forSes = policy.Statement.filter((statement) =>
        JSON.stringify(statement).includes('ses.amazonaws.com'),
      );
      expect(forSes).toHaveLength(1);
    });
  });

  describe('each client', () => {
    it.each([
      ['crm', () => crmSecretId],
      ['scan-01', () => scannerSecretId],
    ])(
      '%s has a generated 32-character password under the key "password", encrypted with the key',
      (name, id) => {
        expect(resourceOf('AWS::SecretsManager::Secret', id()).Properties).toEqual({
          Description: `SMTP password of the mail relay ingress client ${name} (the user name is the endpoint ID)`,
          GenerateSecretString: {
            SecretStringTemplate: '{}',
            GenerateStringKey: 'password',
            PasswordLength: 32,
            ExcludePunctuation: true,
          },
          KmsKeyId: { 'Fn::GetAtt': [keyId, 'Arn'] },
        });
      },
    );

    it.each([
      ['crm', () => crmSecretId],
      ['scan-01', () => scannerSecretId],
    ])('%s lets Mail Manager read its secret, for this account’s ingress endpoints only', (_name, id) => {
      template.hasResourceProperties('AWS::SecretsManager::ResourcePolicy', {
        SecretId: { Ref: id() },
        ResourcePolicy: {
          Statement: [
            {
              Effect: 'Allow',
              Principal: { Service: 'ses.amazonaws.com' },
              Action: 'secretsmanager:GetSecretValue',
              Resource: '*',
              Condition: sourceConditions('mailmanager-ingress-point/*'),
            },
          ],
          Version: '2012-10-17',
        },
      });
    });

    const tls12 = {
      TlsExpression: {
        Evaluate: { Attribute: 'TLS_PROTOCOL' },
        Operator: 'MINIMUM_TLS_VERSION',
        Value: 'TLS1_2',
      },
    };

    it('allows only its IPv4 blocks with TLS 1.2 or later, up to ingress.maxMessageBytes', () => {
      expect(resourceOf('AWS::SES::MailManagerTrafficPolicy', idOf(crm.trafficPolicy)).Properties).toEqual({
        DefaultAction: 'DENY',
        MaxMessageSizeBytes: 25 * MiB,
        PolicyStatements: [
          {
            Action: 'ALLOW',
            Conditions: [
              {
                IpExpression: {
                  Evaluate: { Attribute: 'SENDER_IP' },
                  Operator: 'CIDR_MATCHES',
                  Values: ['203.0.113.0/24'],
                },
              },
              tls12,
            ],
          },
        ],
      });
    });

    it('allows its IPv6 blocks in a statement of their own', () => {
      expect(
        resourceOf('AWS::SES::MailManagerTrafficPolicy', idOf(scanner.trafficPolicy)).Properties,
      ).toEqual({
        DefaultAction: 'DENY',
        MaxMessageSizeBytes: 25 * MiB,
        PolicyStatements: [
          {
            Action: 'ALLOW',
            Conditions: [
              {
                IpExpression: {
                  Evaluate: { Attribute: 'SENDER_IP' },
                  Operator: 'CIDR_MATCHES',
                  Values: ['198.51.100.7/32'],
                },
              },
              tls12,
            ],
          },
          {
            Action: 'ALLOW',
            Conditions: [
              {
                Ipv6Expression: {
                  Evaluate: { Attribute: 'SENDER_IPV6' },
                  Operator: 'CIDR_MATCHES',
                  Values: ['2001:db8:5c::/48'],
                },
              },
              tls12,
            ],
          },
        ],
      });
    });

    it.each([
      ['crm', () => crm.ruleSet],
      ['scan-01', () => scanner.ruleSet],
    ])(
      '%s has a rule set writing every message below ingress/<client>/, dropping it if the write fails',
      (name, ruleSet) => {
        const resource = resourceOf('AWS::SES::MailManagerRuleSet', idOf(ruleSet()));

        expect(resource.Properties).toEqual({
          Rules: [
            {
              Name: 'store-for-relay',
              Actions: [
                {
                  WriteToS3: {
                    RoleArn: { 'Fn::GetAtt': [roleId, 'Arn'] },
                    S3Bucket: { Ref: bucketId },
                    S3Prefix: `ingress/${name}/`,
                    ActionFailurePolicy: 'DROP',
                  },
                },
              ],
            },
          ],
        });
        // Mail Manager checks the role when the rule set is created.
        expect(resource.DependsOn).toEqual(
          expect.arrayContaining([
            roleId,
            logicalIdOf(stack, ingress.mailManagerRole.node.findChild('DefaultPolicy')),
          ]),
        );
      },
    );

    it.each([
      ['crm', () => crm, () => crmSecretId, 'IPV4'],
      ['scan-01', () => scanner, () => scannerSecretId, 'DUAL_STACK'],
    ])(
      '%s has an authenticated endpoint with its secret, rule set and traffic policy, TLS required',
      (_name, client, secretId, ipType) => {
        const resource = resourceOf('AWS::SES::MailManagerIngressPoint', idOf(client().ingressPoint));

        expect(resource.Properties).toEqual({
          Type: 'AUTH',
          IngressPointConfiguration: { SecretArn: { Ref: secretId() } },
          RuleSetId: { 'Fn::GetAtt': [idOf(client().ruleSet), 'RuleSetId'] },
          TrafficPolicyId: { 'Fn::GetAtt': [idOf(client().trafficPolicy), 'TrafficPolicyId'] },
          TlsPolicy: { 'Fn::If': [fipsConditionId, 'FIPS', 'REQUIRED'] },
          NetworkConfiguration: { PublicNetworkConfiguration: { IpType: ipType } },
        });
        // Mail Manager reads the secret when the endpoint is created.
        expect(resource.DependsOn).toEqual(
          expect.arrayContaining([
            secretId(),
            keyId,
            logicalIdOf(stack, client().secret.node.findChild('Policy')),
          ]),
        );
      },
    );
  });

  describe('the TLS policy', () => {
    it('is FIPS where Mail Manager offers only that (US and Canada), else REQUIRED, by the deploy region', () => {
      const point = resourceOf('AWS::SES::MailManagerIngressPoint', idOf(crm.ingressPoint));
      const [conditionId] = (point.Properties.TlsPolicy as { 'Fn::If': [string] })['Fn::If'];
      const regions = [
        'us-east-1',
        'us-east-2',
        'us-west-1',
        'us-west-2',
        'ca-central-1',
        'ca-west-1',
        'us-gov-east-1',
        'us-gov-west-1',
      ];

      expect(template.toJSON().Conditions[conditionId]).toEqual({
        'Fn::Or': regions.map((region) => ({ 'Fn::Equals': [{ Ref: 'AWS::Region' }, region] })),
      });
      expect(
        resourceOf('AWS::SES::MailManagerIngressPoint', idOf(scanner.ingressPoint)).Properties.TlsPolicy,
      ).toEqual(point.Properties.TlsPolicy);
    });

    it.each([
      ['eu-west-1', 'REQUIRED'],
      ['us-east-1', 'FIPS'],
      ['ca-central-1', 'FIPS'],
    ])('is decided at synth for a stack in %s: %s', (region, policy) => {
      const regional = build(PROPS, { region }).template;

      regional.allResourcesProperties('AWS::SES::MailManagerIngressPoint', { TlsPolicy: policy });
      expect(regional.toJSON().Conditions).toBeUndefined();
    });
  });

  describe('the role Mail Manager writes with', () => {
    it('trusts Mail Manager for this account’s rule sets only', () => {
      expect(resourceOf('AWS::IAM::Role', roleId).Properties.AssumeRolePolicyDocument).toEqual({
        Statement: [
          {
            Action: 'sts:AssumeRole',
            Effect: 'Allow',
            Principal: { Service: 'ses.amazonaws.com' },
            Condition: sourceConditions('mailmanager-rule-set/*'),
          },
        ],
        Version: '2012-10-17',
      });
    });

    it('may put objects below ingress/ and list the bucket, nothing else', () => {
      expect(statementsOfRole(template, roleId)).toEqual([
        { Action: 's3:PutObject', Effect: 'Allow', Resource: ingressObjects },
        { Action: 's3:ListBucket', Effect: 'Allow', Resource: bucketArn },
      ]);
    });
  });

  describe('the ingest function', () => {
    it('gets its settings from ingestSettingsFor: the outbox, its own dead-letter queue, the bucket and the clients', () => {
      const config = parseRelayConfig(PROPS);

      expect(ingestSettingsInTemplate()).toEqual(
        ingestSettingsFor(config, {
          queueUrl: `ref:${outboxId}`,
          deadLetterQueueUrl: `ref:${queueId}`,
          bucket: `ref:${bucketId}`,
        }),
      );
      expect(ingestSettingsInTemplate()).toMatchObject({
        prefix: 'ingress/',
        inlineMaxBytes: 10_000,
        limits: { maxRecipients: 20, maxMessageBytes: 25 * MiB },
        clients: [
          { name: 'crm', senders: ['*@fabrikam.com'], route: 'crm' },
          { name: 'scan-01', senders: ['scanner@contoso.com'] },
        ],
      });
    });

    it('runs the ingest handler with room for a 40 MB message', () => {
      template.hasResourceProperties('AWS::Lambda::Function', {
        Description:
          'Turns messages submitted over SMTP (Mail Manager, stored in S3) into relay messages on the outbox',
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        MemorySize: 1024,
        Timeout: 60,
        Role: { 'Fn::GetAtt': [ingestRoleId, 'Arn'] },
      });
    });

    it('retries a failed event twice, then keeps it in its dead-letter queue', () => {
      template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
        FunctionName: { Ref: functionId },
        Qualifier: '$LATEST',
        MaximumRetryAttempts: 2,
        DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queueId, 'Arn'] } } },
      });
    });

    it('has a dead-letter queue of its own: encrypted, TLS only, 14 days', () => {
      expect(resourceOf('AWS::SQS::Queue', queueId).Properties).toEqual({
        SqsManagedSseEnabled: true,
        MessageRetentionPeriod: 14 * 24 * 3600,
      });
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: queueId }],
        PolicyDocument: {
          Statement: [
            {
              Action: 'sqs:*',
              Condition: { Bool: { 'aws:SecureTransport': 'false' } },
              Effect: 'Deny',
              Principal: { AWS: '*' },
              Resource: { 'Fn::GetAtt': [queueId, 'Arn'] },
            },
          ],
          Version: '2012-10-17',
        },
      });
    });

    it('may write its logs, send to the outbox and its queue, and read, list and delete submissions: nothing else', () => {
      expect(statementsOfRole(template, ingestRoleId)).toEqual([
        {
          Action: ['logs:CreateLogStream', 'logs:PutLogEvents'],
          Effect: 'Allow',
          Resource: { 'Fn::GetAtt': [logicalIdOf(stack, ingress.ingestFunction.logGroup), 'Arn'] },
        },
        {
          Action: ['sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:SendMessage'],
          Effect: 'Allow',
          Resource: [{ 'Fn::GetAtt': [queueId, 'Arn'] }, { 'Fn::GetAtt': [outboxId, 'Arn'] }],
        },
        { Action: ['s3:DeleteObject', 's3:GetObject'], Effect: 'Allow', Resource: ingressObjects },
        { Action: 's3:ListBucket', Effect: 'Allow', Resource: bucketArn },
      ]);
    });
  });

  describe('the send function', () => {
    it('may read stored submissions and list the bucket (a missing one is a 404)', () => {
      const statements = statementsOfRole(template, sendRoleId);

      expect(statements).toContainEqual({
        Action: 's3:GetObject',
        Effect: 'Allow',
        Resource: ingressObjects,
      });
      expect(statements).toContainEqual({ Action: 's3:ListBucket', Effect: 'Allow', Resource: bucketArn });
      expect(statements.filter((statement) => JSON.stringify(statement).includes(bucketId))).toHaveLength(2);
    });

    it('knows the ingress bucket', () => {
      expect(relaySettingsSchema.parse(settingsIn(template)).ingress).toEqual({
        bucket: bucketId.toLowerCase(),
      });
    });
  });

  it('alarms on the first message in the ingest dead-letter queue', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      ...alarmBasics(topicId, 1),
      AlarmName: 'Test-Relay-ingest-dead-letter-queue-not-empty',
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queueId, 'QueueName'] } }],
      Statistic: 'Maximum',
      Period: 300,
      AlarmDescription: Match.stringLikeRegexp(
        '^Messages an application submitted over SMTP were not relayed',
      ),
    });
  });

  describe('its outputs', () => {
    const outputs = template.toJSON().Outputs as Record<string, { Value: unknown; Description: string }>;
    const host = (client: typeof crm) => ({ 'Fn::GetAtt': [idOf(client.ingressPoint), 'ARecord'] });
    const user = (client: typeof crm) => ({ 'Fn::GetAtt': [idOf(client.ingressPoint), 'IngressPointId'] });

    it('are named after each client, made alphanumeric', () => {
      expect(Object.keys(outputs).filter((name) => name.startsWith('Ingress'))).toEqual([
        'IngressCrmHost',
        'IngressCrmPort',
        'IngressCrmUserName',
        'IngressCrmSecretArn',
        'IngressCrmSettings',
        'IngressScan01Host',
        'IngressScan01Port',
        'IngressScan01UserName',
        'IngressScan01SecretArn',
        'IngressScan01Settings',
      ]);
    });

    it('give the host, port 587, the endpoint ID as user name and the secret', () => {
      expect(outputs.IngressCrmHost?.Value).toEqual(host(crm));
      expect(outputs.IngressCrmPort?.Value).toBe('587');
      expect(outputs.IngressCrmUserName?.Value).toEqual(user(crm));
      expect(outputs.IngressCrmSecretArn?.Value).toEqual({ Ref: crmSecretId });
      expect(outputs.IngressScan01Host?.Value).toEqual(host(scanner));
      expect(outputs.IngressScan01SecretArn?.Value).toEqual({ Ref: scannerSecretId });
    });

    it('give a settings block for Django and for a CRM form, naming the secret but never the password', () => {
      expect(outputs.IngressCrmSettings?.Value).toEqual({
        'Fn::Join': [
          '',
          [
            'EMAIL_HOST=',
            host(crm),
            ' EMAIL_PORT=587 EMAIL_USE_TLS=True EMAIL_HOST_USER=',
            user(crm),
            ' EMAIL_HOST_PASSWORD=<the "password" of secret ',
            { Ref: crmSecretId },
            '> | host=',
            host(crm),
            ' port=587 encryption=STARTTLS user=',
            user(crm),
            ' password=(secret ',
            { Ref: crmSecretId },
            ', key password)',
          ],
        ],
      });
      // A dynamic reference would put the password itself into the stack outputs.
      expect(JSON.stringify(outputs)).not.toContain('resolve:secretsmanager');
    });
  });
});

describe('a relay without an ingress section', () => {
  const { relay: plain, template: plainTemplate } = build({ ses: { identities: ['fabrikam.com'] } });

  it('creates no Mail Manager resources, bucket, key, secret or ingest function', () => {
    expect(plain.smtpIngress).toBeUndefined();
    for (const type of [
      'AWS::SES::MailManagerIngressPoint',
      'AWS::SES::MailManagerTrafficPolicy',
      'AWS::SES::MailManagerRuleSet',
      'AWS::S3::Bucket',
      'AWS::KMS::Key',
      'AWS::SecretsManager::Secret',
      'Custom::S3BucketNotifications',
    ]) {
      // Not even a key: the alarm topic has none of its own unless monitoring.alarmTopicKey asks.
      plainTemplate.resourceCountIs(type, 0);
    }
    const descriptions = Object.values(plainTemplate.findResources('AWS::Lambda::Function')).map(
      (fn) => fn.Properties.Description as string,
    );
    expect(descriptions.some((description) => description.includes('submitted over SMTP'))).toBe(false);
  });

  it('has no ingress outputs, no ingest alarm, and no ingress bucket in the send function settings', () => {
    expect(
      Object.keys(plainTemplate.toJSON().Outputs ?? {}).filter((name) => name.startsWith('Ingress')),
    ).toEqual([]);
    const alarmNames = Object.values(plainTemplate.findResources('AWS::CloudWatch::Alarm')).map(
      (alarm) => alarm.Properties.AlarmName as string,
    );
    expect(alarmNames.some((name) => name.includes('ingest'))).toBe(false);
    expect(relaySettingsSchema.parse(settingsIn(plainTemplate)).ingress).toBeUndefined();
  });
});

describe('SmtpIngress misuse', () => {
  it('refuses a configuration without an ingress section', () => {
    const scope = new Stack(fastApp(), 'Test');
    const config = parseRelayConfig({ ses: { identities: ['fabrikam.com'] } });
    const error = errorFrom(
      () =>
        new SmtpIngress(scope, 'Ingress', {
          config,
          outbox: new MailRelay(scope, 'Relay', { ses: config.ses }).outbox,
        }),
    );

    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as ConfigurationError).problems).toEqual([
      'config.ingress: required (the clients that submit over SMTP)',
    ]);
  });

  it('refuses two relays in one stack whose clients would share output names', () => {
    const scope = new Stack(fastApp(), 'Test');
    new MailRelay(scope, 'Relay', PROPS);
    const error = errorFrom(() => new MailRelay(scope, 'Other', PROPS));

    expect((error as ConfigurationError).problems).toEqual([
      'ingress client "crm": Test/Relay/Ingress already has a client whose stack outputs are named IngressCrm… in stack Test; rename one of the clients, or put the relays in separate stacks',
    ]);
  });
});

describe('SmtpIngress with the local-mode default client', () => {
  it('warns at synth that a client allowing only loopback addresses cannot be reached in AWS', () => {
    const local = build({
      ...PROPS,
      ingress: {
        clients: [{ name: 'app', allowedCidrs: ['127.0.0.1/32', '::1/128'], senders: ['*@fabrikam.com'] }],
      },
    });
    const warnings = Annotations.fromStack(local.stack).findWarning('*', Match.anyValue());

    expect(warnings.map((warning) => warning.entry.data)).toEqual([
      expect.stringContaining(
        'ingress client app allows only loopback addresses (127.0.0.1/32, ::1/128): no application can reach its endpoint in AWS',
      ),
    ]);
  });

  it('does not warn for clients with real addresses', () => {
    expect(Annotations.fromStack(stack).findWarning('*', Match.stringLikeRegexp('loopback'))).toEqual([]);
  });
});
