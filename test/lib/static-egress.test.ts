import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { ConfigurationError } from '../../lambda/core/validation.ts';
import { MailRelay, type MailRelayProps } from '../../lib/mail-relay.ts';
import { StaticEgress } from '../../lib/static-egress.ts';
import type { StaticEgressSender } from '../../lib/static-egress-sender.ts';
import { errorFrom, fastApp, logicalIdOf, relayFunctionIn } from './support.ts';

const SES = { identities: ['example.com'] };
const REUSED = ['eipalloc-0123456789abcdef0', 'eipalloc-0fedcba987654321f'];

function buildRelay(
  egress?: MailRelayProps['egress'],
  stackProps: { env?: { account: string; region: string } } = {},
) {
  const stack = new Stack(fastApp(), 'Test', stackProps);
  // SES sends from the static IPs here: the VPC and its NATs are what these tests look at.
  const relay = new MailRelay(stack, 'Relay', {
    ses: SES,
    ...(egress && { egress: { providers: ['ses'], ...egress } }),
  });
  return { stack, relay, template: Template.fromStack(stack) };
}

function senderOf(relay: MailRelay): StaticEgressSender {
  if (!relay.staticEgressSender) throw new Error('expected a static-egress sender');
  return relay.staticEgressSender;
}

function egressOf(relay: MailRelay): StaticEgress {
  if (!relay.staticEgress) throw new Error('expected static egress');
  return relay.staticEgress;
}

interface SecurityGroupRule {
  readonly CidrIp?: string;
  readonly IpProtocol: string;
  readonly FromPort?: number;
  readonly ToPort?: number;
}

describe('MailRelay without egress', () => {
  it('creates no VPC, NAT or Elastic IP and leaves the function outside any VPC', () => {
    const { relay, template } = buildRelay();

    expect(relay.staticEgress).toBeUndefined();
    template.resourceCountIs('AWS::EC2::VPC', 0);
    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::EIP', 0);
    template.hasResourceProperties('AWS::Lambda::Function', { VpcConfig: Match.absent() });
  });
});

describe('MailRelay with static egress through a NAT gateway', () => {
  it('creates one VPC with a NAT gateway per configured NAT', () => {
    const { template } = buildRelay({ natCount: 2 });

    template.resourceCountIs('AWS::EC2::VPC', 1);
    template.resourceCountIs('AWS::EC2::NatGateway', 2);
  });

  it('spreads public and private subnets over two Availability Zones even with one NAT, as Lambda needs', () => {
    const { relay, template } = buildRelay({});

    template.resourceCountIs('AWS::EC2::NatGateway', 1);
    template.resourceCountIs('AWS::EC2::Subnet', 4);
    expect(egressOf(relay).vpc.privateSubnets).toHaveLength(2);
  });

  it('uses the default CIDR block, or the configured one', () => {
    buildRelay({}).template.hasResourceProperties('AWS::EC2::VPC', { CidrBlock: '10.80.0.0/16' });
    buildRelay({ cidr: '192.168.10.0/24' }).template.hasResourceProperties('AWS::EC2::VPC', {
      CidrBlock: '192.168.10.0/24',
    });
  });

  it('allocates one Elastic IP per NAT, kept when the stack is deleted or the address would be replaced', () => {
    const { template } = buildRelay({ natCount: 2 });

    const eips = Object.values(template.findResources('AWS::EC2::EIP'));
    expect(eips).toHaveLength(2);
    for (const eip of eips) {
      expect(eip).toMatchObject({ DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
    }
  });

  it('gives each NAT gateway one of its own Elastic IPs', () => {
    const { stack, relay, template } = buildRelay({ natCount: 2 });
    const eipIds = Object.keys(template.findResources('AWS::EC2::EIP'));

    const allocations = Object.values(template.findResources('AWS::EC2::NatGateway')).map(
      (gateway) => gateway.Properties.AllocationId,
    );
    expect(allocations).toEqual(eipIds.map((id) => ({ 'Fn::GetAtt': [id, 'AllocationId'] })));
    expect(stack.resolve(egressOf(relay).egressIps)).toEqual(
      eipIds.map((id) => ({ 'Fn::GetAtt': [id, 'PublicIp'] })),
    );
  });

  it('reuses configured Elastic IPs instead of allocating any', () => {
    const { relay, template } = buildRelay({ elasticIpAllocationIds: REUSED });

    template.resourceCountIs('AWS::EC2::EIP', 0);
    const allocations = Object.values(template.findResources('AWS::EC2::NatGateway')).map(
      (gateway) => gateway.Properties.AllocationId,
    );
    expect(allocations).toEqual(REUSED);
    expect(egressOf(relay).egressIps).toBeUndefined();
    expect(egressOf(relay).addresses).toEqual(REUSED.map((allocationId) => ({ allocationId })));
  });

  it('runs the static-egress function, and only it, in the private subnets with its own security group', () => {
    const { stack, relay, template } = buildRelay({});
    const egress = egressOf(relay);

    const [, sender] = relayFunctionIn(template, 'staticEgress');
    expect(sender.Properties.VpcConfig).toEqual({
      SubnetIds: egress.vpc.privateSubnets.map((subnet) => ({ Ref: logicalIdOf(stack, subnet) })),
      SecurityGroupIds: [{ 'Fn::GetAtt': [logicalIdOf(stack, egress.securityGroup), 'GroupId'] }],
    });
    // Graph, SES and the rest are sent from outside the VPC: their traffic never pays the NAT.
    expect(relayFunctionIn(template, 'send')[1].Properties.VpcConfig).toBeUndefined();
    const inVpc = Object.values(template.findResources('AWS::Lambda::Function')).filter(
      (resource) => resource.Properties.VpcConfig !== undefined,
    );
    expect(inVpc).toHaveLength(1);
  });

  it('gives the VPC free gateway endpoints for DynamoDB and S3', () => {
    const { template } = buildRelay({});
    const services = Object.values(template.findResources('AWS::EC2::VPCEndpoint')).map((endpoint) => ({
      type: endpoint.Properties.VpcEndpointType,
      service: JSON.stringify(endpoint.Properties.ServiceName),
    }));
    expect(services).toHaveLength(2);
    expect(services.every((endpoint) => endpoint.type === 'Gateway')).toBe(true);
    expect(services.map((endpoint) => endpoint.service).join(' ')).toMatch(/dynamodb.*s3|s3.*dynamodb/);
  });

  it('lets the function out on TCP 443 only and in on nothing', () => {
    const { stack, relay, template } = buildRelay({});
    const group = template.toJSON().Resources[logicalIdOf(stack, egressOf(relay).securityGroup)];

    expect(group.Properties.SecurityGroupEgress).toEqual([
      expect.objectContaining({ CidrIp: '0.0.0.0/0', IpProtocol: 'tcp', FromPort: 443, ToPort: 443 }),
    ]);
    expect(group.Properties.SecurityGroupIngress).toBeUndefined();
    const allTraffic = (group.Properties.SecurityGroupEgress as SecurityGroupRule[]).filter(
      (rule) => rule.IpProtocol === '-1',
    );
    expect(allTraffic).toEqual([]);
  });

  it('lets the static-egress function manage its VPC network interfaces through its own role', () => {
    const { stack, relay, template } = buildRelay({});
    const role = senderOf(relay).sendFunction.role;
    if (!role) throw new Error('the static-egress function has no role');

    template.hasResourceProperties('AWS::IAM::Policy', {
      Roles: [{ Ref: logicalIdOf(stack, role) }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Action: Match.arrayWith(['ec2:CreateNetworkInterface', 'ec2:DeleteNetworkInterface']),
            Resource: '*',
          }),
        ]),
      },
    });
    template.hasResourceProperties('AWS::IAM::Role', {
      Description: 'Mail relay send function',
      ManagedPolicyArns: Match.absent(),
    });
  });

  it('creates the function only once the NAT route exists', () => {
    const { template } = buildRelay({});
    const sendFunction = template.toJSON().Resources[relayFunctionIn(template, 'staticEgress')[0]];
    const privateRoutes = Object.keys(template.findResources('AWS::EC2::Route')).filter((id) =>
      id.includes('PrivateSubnet'),
    );

    expect(privateRoutes).toHaveLength(2);
    expect(sendFunction?.DependsOn).toEqual(expect.arrayContaining(privateRoutes));
  });

  it('logs every flow of the VPC to CloudWatch Logs for as long as the function logs', () => {
    const stack = new Stack(fastApp(), 'Test');
    new MailRelay(stack, 'Relay', {
      ses: SES,
      egress: { providers: ['ses'] },
      sendFunction: { logRetentionDays: 90 },
    });
    const template = Template.fromStack(stack);

    const [flowLog] = Object.values(template.findResources('AWS::EC2::FlowLog'));
    expect(flowLog?.Properties).toMatchObject({
      ResourceType: 'VPC',
      TrafficType: 'ALL',
      LogDestinationType: 'cloud-watch-logs',
    });
    const logGroupId = flowLog?.Properties.LogGroupName.Ref as string;
    expect(template.toJSON().Resources[logGroupId].Properties.RetentionInDays).toBe(90);
  });

  it('refuses three NATs in an environment-agnostic stack, which knows only two Availability Zones', () => {
    const error = errorFrom(() => buildRelay({ natCount: 3 }));

    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toMatch(/natCount: 3 NATs need 3 Availability Zones.*explicit account and region/);
  });

  it('creates three NAT gateways in a stack with an explicit account and region', () => {
    const { template } = buildRelay(
      { natCount: 3 },
      { env: { account: '123456789012', region: 'eu-west-1' } },
    );

    template.resourceCountIs('AWS::EC2::NatGateway', 3);
    template.resourceCountIs('AWS::EC2::EIP', 3);
  });
});

describe('MailRelay with static egress through NAT instances', () => {
  it('creates a t4g.nano NAT instance per NAT and no NAT gateway', () => {
    const { template } = buildRelay({ nat: 'instance', natCount: 2 });

    template.resourceCountIs('AWS::EC2::NatGateway', 0);
    template.resourceCountIs('AWS::EC2::Instance', 2);
    template.hasResourceProperties('AWS::EC2::Instance', {
      InstanceType: 't4g.nano',
      SourceDestCheck: false,
    });
  });

  it('uses the configured instance type', () => {
    buildRelay({ nat: 'instance', instanceType: 't4g.micro' }).template.hasResourceProperties(
      'AWS::EC2::Instance',
      { InstanceType: 't4g.micro' },
    );
  });

  it('associates each allocated Elastic IP with one NAT instance', () => {
    const { template } = buildRelay({ nat: 'instance', natCount: 2 });
    const eipIds = Object.keys(template.findResources('AWS::EC2::EIP'));
    const instanceIds = Object.keys(template.findResources('AWS::EC2::Instance'));

    const associations = Object.values(template.findResources('AWS::EC2::EIPAssociation')).map(
      (association) => association.Properties,
    );
    expect(associations).toEqual(
      eipIds.map((eipId, index) => ({
        AllocationId: { 'Fn::GetAtt': [eipId, 'AllocationId'] },
        InstanceId: { Ref: instanceIds[index] },
      })),
    );
  });

  it('associates a reused Elastic IP with the NAT instance, allocating none', () => {
    const { template } = buildRelay({ nat: 'instance', elasticIpAllocationIds: [REUSED[0] ?? ''] });
    const [instanceId] = Object.keys(template.findResources('AWS::EC2::Instance'));

    template.resourceCountIs('AWS::EC2::EIP', 0);
    template.hasResourceProperties('AWS::EC2::EIPAssociation', {
      AllocationId: REUSED[0],
      InstanceId: { Ref: instanceId },
    });
  });

  it('lets only the send function into the NAT instance, on the egress ports', () => {
    const { stack, relay, template } = buildRelay({ nat: 'instance' });
    const functionGroupId = logicalIdOf(stack, egressOf(relay).securityGroup);

    const ingress = [
      ...Object.values(template.findResources('AWS::EC2::SecurityGroupIngress')).map(
        (rule) => rule.Properties,
      ),
      ...Object.values(template.findResources('AWS::EC2::SecurityGroup')).flatMap(
        (group) => group.Properties.SecurityGroupIngress ?? [],
      ),
    ];
    expect(ingress).toEqual([
      expect.objectContaining({
        IpProtocol: 'tcp',
        FromPort: 443,
        ToPort: 443,
        SourceSecurityGroupId: { 'Fn::GetAtt': [functionGroupId, 'GroupId'] },
      }),
    ]);
  });
});

describe('StaticEgress', () => {
  it('lets out exactly the TCP ports it is given, so an SMTP provider can add its port', () => {
    const stack = new Stack(fastApp(), 'Test');
    const egress = new StaticEgress(stack, 'Egress', { egressPorts: [587, 443, 25, 443] });
    const group = Template.fromStack(stack).toJSON().Resources[logicalIdOf(stack, egress.securityGroup)];

    expect(egress.egressPorts).toEqual([25, 443, 587]);
    expect(
      (group.Properties.SecurityGroupEgress as SecurityGroupRule[]).map((rule) => [
        rule.IpProtocol,
        rule.FromPort,
      ]),
    ).toEqual([
      ['tcp', 25],
      ['tcp', 443],
      ['tcp', 587],
    ]);
  });

  it('reports every problem with its props in one error', () => {
    const stack = new Stack(fastApp(), 'Test');

    const error = errorFrom(
      () =>
        new StaticEgress(stack, 'Egress', {
          egressPorts: [0],
          natCount: 2,
          elasticIpAllocationIds: [REUSED[0] ?? ''],
          instanceType: 't4g.nano',
        }),
    ) as ConfigurationError;

    expect(error.problems).toEqual([
      'natCount: is 2 but elasticIpAllocationIds lists 1; give one allocation ID per NAT',
      'instanceType: applies only to nat: "instance"',
      'egressPorts: 0 is not a TCP port (1-65535)',
    ]);
  });
});
