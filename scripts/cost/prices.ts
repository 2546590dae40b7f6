/**
 * us-east-1 list prices the cost model uses: data, not fetched (the model runs offline). Each says
 * where it comes from and whether it was checked against a second source in this repository
 * (docs/static-egress.md, docs/smtp-ingress.md); the others are the AWS pricing pages' list
 * prices as of PRICES_READ_ON, unverified here. Free tiers are not counted anywhere.
 */
export const PRICES_READ_ON = '2026-11-29';

export interface Price {
  /** Dollars per `unit`. */
  readonly dollars: number;
  readonly unit: string;
  readonly source: string;
  /** Where in this repository the same figure is stated, when it is. */
  readonly verifiedBy?: string;
}

const STATIC_EGRESS_DOC = 'docs/static-egress.md';

export const PRICES = {
  lambdaArmGbSecond: {
    dollars: 0.0000133334,
    unit: 'GB-second (arm64)',
    source: 'https://aws.amazon.com/lambda/pricing/',
  },
  lambdaX86GbSecond: {
    dollars: 0.0000166667,
    unit: 'GB-second (x86_64)',
    source: 'https://aws.amazon.com/lambda/pricing/',
  },
  lambdaRequest: { dollars: 0.2 / 1e6, unit: 'invocation', source: 'https://aws.amazon.com/lambda/pricing/' },
  sqsRequest: {
    dollars: 0.4 / 1e6,
    unit: 'request (per 64 KB chunk, standard queue)',
    source: 'https://aws.amazon.com/sqs/pricing/',
  },
  dynamoWriteUnit: {
    dollars: 0.625 / 1e6,
    unit: 'write request unit (on-demand)',
    source: 'https://aws.amazon.com/dynamodb/pricing/on-demand/',
  },
  dynamoReadUnit: {
    dollars: 0.125 / 1e6,
    unit: 'read request unit (on-demand)',
    source: 'https://aws.amazon.com/dynamodb/pricing/on-demand/',
  },
  eventBridgeEvent: {
    dollars: 1 / 1e6,
    unit: 'custom event (per 64 KB chunk)',
    source: 'https://aws.amazon.com/eventbridge/pricing/',
  },
  logsIngestedGb: {
    dollars: 0.5,
    unit: 'GB ingested (CloudWatch Logs, standard)',
    source: 'https://aws.amazon.com/cloudwatch/pricing/',
  },
  customMetricMonth: {
    dollars: 0.3,
    unit: 'metric-month (first 10,000)',
    source: 'https://aws.amazon.com/cloudwatch/pricing/',
  },
  standardAlarmMonth: {
    dollars: 0.1,
    unit: 'metric in an alarm, per month (standard resolution)',
    source: 'https://aws.amazon.com/cloudwatch/pricing/',
  },
  compositeAlarmMonth: {
    dollars: 0.5,
    unit: 'composite alarm-month',
    source: 'https://aws.amazon.com/cloudwatch/pricing/',
  },
  dashboardMonth: {
    dollars: 3,
    unit: 'dashboard-month (the first 3 of an account are free: not counted)',
    source: 'https://aws.amazon.com/cloudwatch/pricing/',
  },
  kmsKeyMonth: {
    dollars: 1,
    unit: 'customer managed key-month',
    source: 'https://aws.amazon.com/kms/pricing/',
  },
  kmsRequest: { dollars: 0.03 / 1e4, unit: 'request', source: 'https://aws.amazon.com/kms/pricing/' },
  natGatewayHour: {
    dollars: 0.045,
    unit: 'NAT gateway-hour',
    source: 'https://aws.amazon.com/vpc/pricing/',
    verifiedBy: STATIC_EGRESS_DOC,
  },
  natGatewayGb: {
    dollars: 0.045,
    unit: 'GB processed by a NAT gateway',
    source: 'https://aws.amazon.com/vpc/pricing/',
    verifiedBy: STATIC_EGRESS_DOC,
  },
  publicIpv4Hour: {
    dollars: 0.005,
    unit: 'public IPv4 address-hour',
    source: 'https://aws.amazon.com/vpc/pricing/',
    verifiedBy: STATIC_EGRESS_DOC,
  },
  interfaceEndpointHour: {
    dollars: 0.01,
    unit: 'interface endpoint-hour per Availability Zone',
    source: 'https://aws.amazon.com/privatelink/pricing/',
  },
  interfaceEndpointGb: {
    dollars: 0.01,
    unit: 'GB processed by an interface endpoint',
    source: 'https://aws.amazon.com/privatelink/pricing/',
  },
  secretMonth: {
    dollars: 0.4,
    unit: 'secret-month',
    source: 'https://aws.amazon.com/secrets-manager/pricing/',
    verifiedBy: 'docs/smtp-ingress.md',
  },
  secretsManagerCall: {
    dollars: 0.05 / 1e4,
    unit: 'API call',
    source: 'https://aws.amazon.com/secrets-manager/pricing/',
  },
  mailManagerIngressMonth: {
    dollars: 50,
    unit: 'Mail Manager ingress endpoint-month',
    source: 'https://aws.amazon.com/ses/pricing/',
    verifiedBy: 'docs/smtp-ingress.md (from a third-party copy of the AWS Price List)',
  },
  sesEmail: {
    dollars: 0.1 / 1000,
    unit: 'email sent through SES (the provider: not relay overhead)',
    source: 'https://aws.amazon.com/ses/pricing/',
  },
} as const satisfies Record<string, Price>;

/** EC2 on-demand Linux, per hour, for NAT instance types the template may name. */
export const EC2_INSTANCE_HOUR: Readonly<Record<string, Price>> = {
  't4g.nano': {
    dollars: 0.0042,
    unit: 't4g.nano instance-hour',
    source: 'https://aws.amazon.com/ec2/pricing/on-demand/',
    verifiedBy: STATIC_EGRESS_DOC,
  },
  't4g.micro': {
    dollars: 0.0084,
    unit: 't4g.micro instance-hour',
    source: 'https://aws.amazon.com/ec2/pricing/on-demand/',
  },
  't4g.small': {
    dollars: 0.0168,
    unit: 't4g.small instance-hour',
    source: 'https://aws.amazon.com/ec2/pricing/on-demand/',
  },
};

/** Hours in the month the model prices (730: AWS's own convention, 365 × 24 / 12). */
export const HOURS_PER_MONTH = 730;
/** Billing chunk of SQS requests, EventBridge events and DynamoDB reads (4 KB) / writes (1 KB). */
export const SQS_CHUNK_BYTES = 64 * 1024;
export const EVENTBRIDGE_CHUNK_BYTES = 64 * 1024;
