import { RemovalPolicy, Token, Validations } from 'aws-cdk-lib';
import {
  CfnEIP,
  CfnEIPAssociation,
  FlowLogDestination,
  FlowLogTrafficType,
  GatewayVpcEndpointAwsService,
  InstanceType,
  IpAddresses,
  type NatInstanceProviderV2,
  NatProvider,
  NatTrafficDirection,
  Peer,
  Port,
  SecurityGroup,
  type SubnetSelection,
  SubnetType,
  Vpc,
} from 'aws-cdk-lib/aws-ec2';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ConfigurationError } from '../lambda/core/validation.ts';
import {
  DEFAULT_EGRESS_CIDR,
  DEFAULT_NAT_INSTANCE_TYPE,
  type EGRESS_NAT_KINDS,
  MAX_NAT_COUNT,
} from './config.ts';

/** Lambda places a function in a VPC only across at least two subnets (two Availability Zones). */
const MIN_AVAILABILITY_ZONES = 2;

/** One static address traffic leaves from. */
export interface EgressAddress {
  /** The Elastic IP's allocation ID (`eipalloc-…`), a deploy-time token when the construct allocated it. */
  readonly allocationId: string;
  /**
   * The public IPv4 address, a deploy-time token.
   *
   * @default - unknown: the Elastic IP was given by its allocation ID and CloudFormation cannot read
   * an existing Elastic IP's address (look it up with `aws ec2 describe-addresses`)
   */
  readonly publicIp?: string;
}

export interface StaticEgressProps {
  /**
   * TCP ports the function may connect to (any IPv4 destination); everything else is denied.
   * HTTPS (443) for the AWS APIs and Microsoft Graph; SMTP ports when an SMTP provider is used.
   */
  readonly egressPorts: number[];

  /**
   * What translates the private addresses to the static ones.
   *
   * @default 'gateway'
   */
  readonly nat?: (typeof EGRESS_NAT_KINDS)[number];

  /**
   * NATs, one per Availability Zone, so as many static addresses (1-3).
   *
   * @default - the number of `elasticIpAllocationIds`, else 1
   */
  readonly natCount?: number;

  /**
   * Existing Elastic IPs (allocation IDs), one per NAT, so the address outlives the stack.
   *
   * @default - Elastic IPs allocated here and retained when the stack is deleted or they are replaced
   */
  readonly elasticIpAllocationIds?: string[];

  /**
   * Instance type of the NAT instances (only with `nat: 'instance'`).
   *
   * @default 't4g.nano'
   */
  readonly instanceType?: string;

  /**
   * IPv4 CIDR block of the VPC.
   *
   * @default '10.80.0.0/16'
   */
  readonly cidr?: string;

  /**
   * How long the VPC flow logs are kept.
   *
   * @default RetentionDays.ONE_MONTH
   */
  readonly flowLogRetention?: RetentionDays;
}

/**
 * A VPC whose private subnets reach the internet only through NATs with static Elastic IPs, and the
 * security group a function placed there uses. For mail: Exchange Online inbound connectors, SPF
 * records and Conditional Access named locations trust the sending IP, so the IP must not change.
 *
 * Public and private subnets span max(NAT count, 2) Availability Zones (Lambda needs two subnets);
 * private subnets in a zone without a NAT route through another zone's. The Elastic IPs the
 * construct allocates are retained when the stack is deleted or they would be replaced, because a
 * new address breaks every connector that trusts the old one (Exchange Online: 550 5.7.64
 * TenantAttribution); give `elasticIpAllocationIds` to reuse them in a new stack.
 *
 * Every accepted and rejected flow is logged to CloudWatch Logs, so "which address did this mail
 * leave from, and was the connection refused" can be answered later.
 */
export class StaticEgress extends Construct {
  readonly vpc: Vpc;
  /** For the function: egress to `egressPorts` over TCP only, no ingress. */
  readonly securityGroup: SecurityGroup;
  /** Where the function goes: the private subnets, whose default route is a NAT. */
  readonly subnets: SubnetSelection = { subnetType: SubnetType.PRIVATE_WITH_EGRESS };
  /** The static addresses, one per NAT, in NAT order. */
  readonly addresses: EgressAddress[];
  /**
   * The public IPv4 addresses (deploy-time tokens), or undefined when the Elastic IPs were given by
   * allocation ID, whose addresses CloudFormation cannot read.
   */
  readonly egressIps?: string[];
  /** The NAT gateway or instance IDs, one per address (tokens). */
  readonly natIds: string[];
  /** The TCP ports the security group lets out. */
  readonly egressPorts: readonly number[];

  constructor(scope: Construct, id: string, props: StaticEgressProps) {
    super(scope, id);
    const nat = props.nat ?? 'gateway';
    const natCount = props.natCount ?? props.elasticIpAllocationIds?.length ?? 1;
    this.egressPorts = [...new Set(props.egressPorts)].sort((a, b) => a - b);
    this.validate(props, nat, natCount);

    const given = props.elasticIpAllocationIds;
    const created = given ? undefined : this.allocateElasticIps(natCount);
    this.addresses =
      created?.map((eip) => ({ allocationId: eip.attrAllocationId, publicIp: eip.attrPublicIp })) ??
      (given ?? []).map((allocationId) => ({ allocationId }));
    this.egressIps = created?.map((eip) => eip.attrPublicIp);
    const allocationIds = this.addresses.map((address) => address.allocationId);

    const natProvider =
      nat === 'gateway'
        ? NatProvider.gateway({ eipAllocationIds: allocationIds })
        : NatProvider.instanceV2({
            instanceType: new InstanceType(props.instanceType ?? DEFAULT_NAT_INSTANCE_TYPE),
            // Inbound is opened below to the function's security group only, on the egress ports.
            defaultAllowedTraffic: NatTrafficDirection.OUTBOUND_ONLY,
          });

    this.vpc = new Vpc(this, 'Vpc', {
      ipAddresses: IpAddresses.cidr(props.cidr ?? DEFAULT_EGRESS_CIDR),
      maxAzs: Math.max(natCount, MIN_AVAILABILITY_ZONES),
      natGateways: natCount,
      natGatewayProvider: natProvider,
      subnetConfiguration: [
        { name: 'Public', subnetType: SubnetType.PUBLIC },
        { name: 'Private', subnetType: SubnetType.PRIVATE_WITH_EGRESS },
      ],
      // Nothing uses the default security group; locking it down takes a custom-resource function
      // (with its own role and runtime) in every relay stack, more to own than the rule it enforces.
      restrictDefaultSecurityGroup: false,
    });
    // Free gateway endpoints: the function's DynamoDB (ledger, suppression list, pacing) and S3
    // (attachments) traffic stays inside AWS instead of paying the NAT per gigabyte.
    this.vpc.addGatewayEndpoint('DynamoDbEndpoint', { service: GatewayVpcEndpointAwsService.DYNAMODB });
    this.vpc.addGatewayEndpoint('S3Endpoint', { service: GatewayVpcEndpointAwsService.S3 });
    if (this.vpc.availabilityZones.length < natCount) {
      throw new ConfigurationError(`Invalid StaticEgress at ${this.node.path}`, [
        `natCount: ${natCount} NATs need ${natCount} Availability Zones, but the stack knows ${this.vpc.availabilityZones.length}; an environment-agnostic stack knows only 2, so give the stack an explicit account and region (env) or use fewer NATs`,
      ]);
    }
    this.natIds = natProvider.configuredGateways.map((gateway) => gateway.gatewayId);

    this.securityGroup = new SecurityGroup(this, 'FunctionSecurityGroup', {
      vpc: this.vpc,
      description: `Mail relay send function: outbound TCP ${this.egressPorts.join(', ')} only`,
      allowAllOutbound: false,
    });
    for (const port of this.egressPorts) {
      this.securityGroup.addEgressRule(Peer.anyIpv4(), Port.tcp(port), `Outbound TCP ${port}`);
    }

    if (nat === 'instance') {
      this.configureNatInstances(natProvider as NatInstanceProviderV2, allocationIds);
    }

    const flowLogGroup = new LogGroup(this, 'FlowLogs', {
      retention: props.flowLogRetention ?? RetentionDays.ONE_MONTH,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    this.vpc.addFlowLog('FlowLog', {
      destination: FlowLogDestination.toCloudWatchLogs(flowLogGroup),
      trafficType: FlowLogTrafficType.ALL,
    });
  }

  private validate(props: StaticEgressProps, nat: string, natCount: number): void {
    const problems: string[] = [];
    if (!Number.isInteger(natCount) || natCount < 1 || natCount > MAX_NAT_COUNT) {
      problems.push(
        `natCount: must be 1 to ${MAX_NAT_COUNT} (one NAT per Availability Zone), not ${natCount}`,
      );
    }
    const ids = props.elasticIpAllocationIds;
    if (ids && !Token.isUnresolved(ids) && ids.length !== natCount) {
      problems.push(
        `natCount: is ${natCount} but elasticIpAllocationIds lists ${ids.length}; give one allocation ID per NAT`,
      );
    }
    if (props.instanceType !== undefined && nat !== 'instance') {
      problems.push('instanceType: applies only to nat: "instance"');
    }
    if (this.egressPorts.length === 0) {
      problems.push('egressPorts: list at least one TCP port, or the function can reach nothing');
    }
    for (const port of this.egressPorts) {
      if (!Number.isInteger(port) || port < 1 || port > 65_535) {
        problems.push(`egressPorts: ${port} is not a TCP port (1-65535)`);
      }
    }
    if (problems.length > 0) {
      throw new ConfigurationError(`Invalid StaticEgress at ${this.node.path}`, problems);
    }
  }

  /**
   * Allocates one Elastic IP per NAT, kept when the stack is deleted and when a change would replace
   * it: a new address breaks every inbound connector and SPF record that trusts the old one.
   */
  private allocateElasticIps(count: number): CfnEIP[] {
    return Array.from({ length: count }, (_, index) => {
      const eip = new CfnEIP(this, `ElasticIp${index + 1}`, {
        domain: 'vpc',
        tags: [{ key: 'Name', value: `${this.node.path}/ElasticIp${index + 1}` }],
      });
      // RETAIN sets both DeletionPolicy and UpdateReplacePolicy.
      eip.applyRemovalPolicy(RemovalPolicy.RETAIN);
      return eip;
    });
  }

  /**
   * Gives each NAT instance its Elastic IP and lets the function, and nothing else, send through it.
   * (A NAT gateway takes its Elastic IP as a property; an instance needs an association.)
   */
  private configureNatInstances(provider: NatInstanceProviderV2, allocationIds: string[]): void {
    provider.configuredGateways.forEach((gateway, index) => {
      new CfnEIPAssociation(this, `ElasticIpAssociation${index + 1}`, {
        allocationId: allocationIds[index],
        instanceId: gateway.gatewayId,
      });
    });
    for (const port of this.egressPorts) {
      provider.securityGroup.addIngressRule(
        this.securityGroup,
        Port.tcp(port),
        `TCP ${port} from the send function`,
      );
    }
    for (const instance of provider.gatewayInstances) {
      Validations.of(instance).acknowledge(
        {
          id: 'AwsSolutions-EC26',
          reason:
            'The NAT instance stores nothing but its operating system: it forwards packets (TLS sessions of the ' +
            'relay) without writing them to disk, so its root volume holds no data to protect; accounts that ' +
            'require encrypted volumes enable EBS encryption by default.',
        },
        {
          id: 'AwsSolutions-EC28',
          reason:
            'Detailed (1-minute) monitoring costs about as much per month as the t4g.nano NAT instance it ' +
            'would watch; the 5-minute basic metrics and the VPC flow logs show whether it forwards traffic.',
        },
        {
          id: 'AwsSolutions-EC29',
          reason:
            'The NAT instance is disposable: a redeploy replaces it and its retained Elastic IP moves to the ' +
            'new one, so termination protection or an Auto Scaling group would add nothing but friction ' +
            '(choose nat "gateway" for a managed, highly available NAT).',
        },
      );
    }
  }
}
