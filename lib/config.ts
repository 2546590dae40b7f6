import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { isEmailAddress } from '../lambda/core/address.ts';
import { providerFamily } from '../lambda/core/failures.ts';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_RECEIVE_COUNT,
  DEFAULT_MAX_RECIPIENTS,
  GRAPH_MAX_MESSAGE_BYTES,
} from '../lambda/core/limits.ts';
import {
  OUTCOME_KINDS,
  type OutcomeKind,
  outcomeEventSettings,
  SEND_OUTCOME_KINDS,
} from '../lambda/core/outcomes.ts';
import { patternKind, patternMatches, senderCoversPattern } from '../lambda/core/routing.ts';
import {
  circuitBreakerSettingsSchema,
  fromPatternSchema,
  type IngestSettings,
  LIMIT_ACTIONS,
  messageLimitsSchema,
  retrySettingsSchema,
  rewriteFromSchema,
  routeNameSchema,
  routeSettingsSchemaFor,
  UNKNOWN_OUTCOME_ACTIONS,
} from '../lambda/core/settings.ts';
import { ConfigurationError, describeIssues, formatPath } from '../lambda/core/validation.ts';
import {
  type CredentialSecret,
  fieldOf,
  type ProviderDefinition,
  type SectionResources,
} from '../lambda/providers/provider-definition.ts';
import {
  configuredProviders,
  configuredSections,
  definitionOf,
  NO_PROVIDER_MESSAGE,
  PROVIDERS,
  providerConfigShape,
  providerNameSchema,
} from '../lambda/providers/registry.ts';
import type { SmtpConnectionConfig } from '../lambda/providers/smtp/config.ts';
import { SMTP_PROVIDER_NAME } from '../lambda/providers/smtp/settings.ts';
import type { RelaySettings } from '../lambda/send/settings.ts';

export const DEFAULT_CONFIG_PATH = 'mail-relay.config.json';

/** CloudWatch Logs accepts only these retention periods. */
export const LOG_RETENTION_DAYS = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653,
] as const;

const queueConfigSchema = z.strictObject({
  maxReceiveCount: z
    .int()
    .min(1)
    .max(1000)
    .default(DEFAULT_MAX_RECEIVE_COUNT)
    .describe('Deliveries of one message before it is dead-lettered (SQS redrive maxReceiveCount).'),
  retentionDays: z
    .int()
    .min(1)
    .max(14)
    .default(14)
    .describe(
      'Days SQS keeps an unconsumed message in the outbox. The dead-letter queue always keeps 14 days, because a redriven message keeps its original age.',
    ),
  visibilityTimeoutSeconds: z
    .int()
    .min(0)
    .max(43_200)
    .optional()
    .describe('Outbox visibility timeout. Default and minimum: 6 x sendFunction.timeoutSeconds.'),
  producers: z
    .array(
      z
        .string()
        .regex(
          /^arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)\/[\w+=,.@/-]+$/,
          'must be the ARN of an IAM role or user (arn:aws:iam::123456789012:role/billing-app)',
        ),
    )
    .min(1)
    .optional()
    .describe(
      "The only IAM roles and users that may put messages on the outbox: its queue policy denies SendMessage to every other principal (the relay's own functions excepted), whatever their IAM policies allow. Grant each one with grantEnqueue (or its own policy) too. Add the role your operators redrive the dead-letter queue with. Default: any principal whose IAM policy allows it.",
    ),
});

const sendFunctionConfigSchema = z.strictObject({
  timeoutSeconds: z.int().min(5).max(900).default(30).describe('Send function timeout.'),
  memoryMiB: z.int().min(128).max(10_240).default(512).describe('Send function memory.'),
  batchSize: z.int().min(1).max(10).default(10).describe('SQS records per invocation.'),
  maxConcurrency: z
    .int()
    .min(2)
    .max(1000)
    .default(10)
    .describe('Maximum concurrent invocations the SQS event source may start (caps the provider send rate).'),
  logRetentionDays: z
    .int()
    .refine((days) => (LOG_RETENTION_DAYS as readonly number[]).includes(days), {
      message: `must be one of the retention periods CloudWatch Logs accepts: ${LOG_RETENTION_DAYS.join(', ')}`,
    })
    .default(30)
    .describe(`Log retention in days, one of ${LOG_RETENTION_DAYS.join(', ')}.`),
});

const attachmentsConfigSchema = z.strictObject({
  retentionDays: z
    .int()
    .min(1)
    .max(365)
    .default(7)
    .describe(
      'Days S3 keeps an uploaded attachment before deleting it. The relay does not delete objects after sending, so upload shortly before enqueueing and keep this above the time a message may wait in the outbox.',
    ),
});

/** Elastic IP allocation IDs as EC2 prints them: `eipalloc-` and 8 or 17 hex digits. */
const EIP_ALLOCATION_ID_PATTERN = /^eipalloc-[0-9a-f]{8,17}$/;
/** EC2 instance types: family, optional generation/attributes, size (t4g.nano, c7gn.medium, m5a.large). */
const INSTANCE_TYPE_PATTERN = /^[a-z][a-z0-9-]*\.[a-z0-9]+$/;
/** The VPC sizes the static egress accepts: large enough for the subnets, small enough to be a valid VPC. */
const EGRESS_CIDR_PREFIXES = { min: 16, max: 24 } as const;
export const EGRESS_NAT_KINDS = ['gateway', 'instance'] as const;
export const DEFAULT_EGRESS_CIDR = '10.80.0.0/16';
export const DEFAULT_NAT_INSTANCE_TYPE = 't4g.nano';
/** One NAT per Availability Zone, in at most three zones. */
export const MAX_NAT_COUNT = 3;

/** Why an IPv4 CIDR block cannot be the static-egress VPC, or undefined when it can. */
export function egressCidrProblem(cidr: string): string | undefined {
  const match = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  const octets = match?.slice(1, 5).map(Number) ?? [];
  if (!match || octets.some((octet) => octet > 255)) {
    return 'must be an IPv4 CIDR block such as 10.80.0.0/16';
  }
  const prefix = Number(match[5]);
  if (prefix < EGRESS_CIDR_PREFIXES.min || prefix > EGRESS_CIDR_PREFIXES.max) {
    return `must be a /${EGRESS_CIDR_PREFIXES.min} to /${EGRESS_CIDR_PREFIXES.max} block (VPCs are /16 to /28, and the subnets of three Availability Zones need at least a /24)`;
  }
  const address = octets.reduce((value, octet) => value * 256 + octet, 0);
  const hostBits = 2 ** (32 - prefix);
  if (address % hostBits !== 0) {
    const network = address - (address % hostBits);
    const dotted = [24, 16, 8, 0].map((shift) => Math.floor(network / 2 ** shift) % 256).join('.');
    return `must be the network address of the block: ${dotted}/${prefix}`;
  }
  return undefined;
}

const egressConfigSchema = z
  .strictObject({
    nat: z
      .enum(EGRESS_NAT_KINDS)
      .default('gateway')
      .describe(
        'gateway: managed NAT gateways (about $32/month each plus $0.045/GB of the static-egress function traffic). instance: one EC2 NAT instance per NAT (t4g.nano about $3/month, no per-GB fee, but you own its availability). AWS lifts the port-25 block for either on request (docs/static-egress.md).',
      ),
    natCount: z
      .int()
      .min(1)
      .max(MAX_NAT_COUNT)
      .optional()
      .describe(
        `NATs, one per Availability Zone (1-${MAX_NAT_COUNT}), so as many egress IPs. Default: the number of elasticIpAllocationIds, else 1. More than 2 needs a stack with an explicit account and region.`,
      ),
    elasticIpAllocationIds: z
      .array(
        z
          .string()
          .regex(
            EIP_ALLOCATION_ID_PATTERN,
            'must be an Elastic IP allocation ID, eipalloc- and 8 or 17 hex digits (EC2 console > Elastic IPs > Allocation ID)',
          ),
      )
      .min(1)
      .max(MAX_NAT_COUNT)
      .refine((ids) => new Set(ids).size === ids.length, { message: 'lists an allocation ID twice' })
      .optional()
      .describe(
        'Existing Elastic IPs (allocation IDs, one per NAT) to send from, so the address survives deleting and redeploying the stack. Default: the stack allocates Elastic IPs and keeps them when it is deleted.',
      ),
    instanceType: z
      .string()
      .regex(INSTANCE_TYPE_PATTERN, 'must be an EC2 instance type such as t4g.nano')
      .optional()
      .describe(
        `EC2 instance type of the NAT instances (nat: "instance" only). Default ${DEFAULT_NAT_INSTANCE_TYPE}.`,
      ),
    providers: z
      .array(z.string())
      .min(1)
      .refine((names) => new Set(names).size === names.length, { message: 'lists a provider twice' })
      .optional()
      .describe(
        'The providers that send from the static Elastic IPs. Their messages go to a second send function, the only one in the VPC; everything else (Graph, SES, other connections) is sent by the send function outside it and never pays the NAT. Default: every SMTP connection (smtp, smtp:<name>). Add graph when an Entra Conditional Access policy limits the app to named locations (IP ranges).',
      ),
    cidr: z
      .string()
      .superRefine((cidr, ctx) => {
        const problem = egressCidrProblem(cidr);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      })
      .default(DEFAULT_EGRESS_CIDR)
      .describe(
        `IPv4 CIDR block of the relay's VPC, /${EGRESS_CIDR_PREFIXES.min} to /${EGRESS_CIDR_PREFIXES.max}. Default ${DEFAULT_EGRESS_CIDR}; pick another if you peer the VPC with a network that uses it.`,
      ),
  })
  // Runs even when a field failed, so these are reported together with field errors; the value may
  // then be partly unparsed, so it is only read through fieldOf.
  .superRefine(
    (egress, ctx) => {
      const natCount = fieldOf(egress, 'natCount');
      const ids = fieldOf(egress, 'elasticIpAllocationIds');
      if (typeof natCount === 'number' && Array.isArray(ids) && natCount !== ids.length) {
        ctx.addIssue({
          code: 'custom',
          path: ['natCount'],
          message: `is ${natCount} but elasticIpAllocationIds lists ${ids.length}: each NAT sends from one Elastic IP, so give one allocation ID per NAT (or leave natCount out)`,
        });
      }
      // An unknown nat kind is reported by its own field; this is only about a valid one.
      const nat = fieldOf(egress, 'nat') ?? 'gateway';
      if (fieldOf(egress, 'instanceType') !== undefined && nat === 'gateway') {
        ctx.addIssue({
          code: 'custom',
          path: ['instanceType'],
          message: 'applies only to nat: "instance" (a NAT gateway has no instance type)',
        });
      }
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  )
  .transform((egress) => ({
    ...egress,
    natCount: egress.natCount ?? egress.elasticIpAllocationIds?.length ?? 1,
  }));
export type EgressConfig = z.output<typeof egressConfigSchema>;

/** Where Mail Manager writes submissions: `ingress/<client>/…`, read by the ingest function. */
export const INGRESS_PREFIX = 'ingress/';
/** The submission port of an authenticated Mail Manager ingress endpoint (STARTTLS; 25 works too). */
export const INGRESS_SMTP_PORT = 587;
/** Mail Manager's largest message, headers included (not adjustable). */
export const MAIL_MANAGER_MAX_MESSAGE_BYTES = 41_943_040;
/**
 * Each client has its own authenticated ingress endpoint (Mail Manager allows 50 per region) and its
 * own rule set (40 per region), so at most 40 clients.
 */
export const MAX_INGRESS_CLIENTS = 40;
/** Mail Manager's S3 prefix has at most 62 characters: `ingress/<name>/` leaves 53 for the name. */
const MAX_INGRESS_CLIENT_NAME_LENGTH = 62 - INGRESS_PREFIX.length - 1;
export const DEFAULT_INGRESS_INLINE_MAX_BYTES = 49_152;
export const DEFAULT_INGRESS_RETENTION_DAYS = 14;

/** An IPv4 or IPv6 address as a number, for prefix arithmetic. */
function addressBits(address: string, version: 4 | 6): bigint {
  if (version === 4) {
    return address.split('.').reduce((value, octet) => (value << 8n) | BigInt(Number(octet)), 0n);
  }
  // An embedded IPv4 tail (::ffff:192.0.2.1) is two groups.
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(address)?.[1];
  const hex = tail
    ? address.slice(0, -tail.length) +
      [0, 1]
        .map((half) => ((addressBits(tail, 4) >> BigInt(16 * (1 - half))) & 0xffffn).toString(16))
        .join(':')
    : address;
  const [head = '', rest] = hex.split('::');
  const headGroups = head === '' ? [] : head.split(':');
  const restGroups = rest === undefined || rest === '' ? [] : rest.split(':');
  const groups =
    rest === undefined
      ? headGroups
      : [...headGroups, ...Array(8 - headGroups.length - restGroups.length).fill('0'), ...restGroups];
  return groups.reduce((value, group) => (value << 16n) | BigInt(Number.parseInt(group, 16)), 0n);
}

/** The address a number stands for, IPv6 with its longest run of zero groups shortened to `::`. */
function formatAddress(bits: bigint, version: 4 | 6): string {
  if (version === 4) return [24n, 16n, 8n, 0n].map((shift) => String((bits >> shift) & 0xffn)).join('.');
  const groups = [7n, 6n, 5n, 4n, 3n, 2n, 1n, 0n].map((index) =>
    ((bits >> (16n * index)) & 0xffffn).toString(16),
  );
  let best = { start: -1, length: 0 };
  for (let start = 0; start < groups.length; start++) {
    let length = 0;
    while (groups[start + length] === '0') length++;
    if (length > best.length && length > 1) best = { start, length };
  }
  if (best.start < 0) return groups.join(':');
  const before = groups.slice(0, best.start).join(':');
  const after = groups.slice(best.start + best.length).join(':');
  return `${before}::${after}`;
}

/** Why a string cannot be an ingress client's allowed CIDR block, or undefined when it can. */
export function ingressCidrProblem(cidr: string): string | undefined {
  const match = /^([^/]+)\/(\d{1,3})$/.exec(cidr);
  const version = match ? isIP(match[1] ?? '') : 0;
  if (!match || (version !== 4 && version !== 6)) {
    return 'must be an IPv4 or IPv6 CIDR block, address/prefix, such as 203.0.113.10/32 or 2001:db8::/48';
  }
  const bits = version === 4 ? 32 : 128;
  const prefix = Number(match[2]);
  if (prefix > bits)
    return `must have a prefix from /1 to /${bits} (an IPv${version} address has ${bits} bits)`;
  if (prefix === 0) {
    return `allows every IPv${version} address on the internet: list the addresses the client connects from, so a leaked password alone cannot submit mail`;
  }
  const address = addressBits(match[1] ?? '', version);
  const hostBits = BigInt(bits - prefix);
  const network = (address >> hostBits) << hostBits;
  if (network !== address) {
    return `must be the network address of the block: ${formatAddress(network, version)}/${prefix}`;
  }
  return undefined;
}

/** The IP version of a valid CIDR block. */
export function cidrVersion(cidr: string): 4 | 6 {
  return isIP(cidr.slice(0, cidr.indexOf('/'))) === 6 ? 6 : 4;
}

const ingressClientConfigSchema = z.strictObject({
  name: z
    .string()
    .regex(
      new RegExp(`^[A-Za-z0-9_-]{1,${MAX_INGRESS_CLIENT_NAME_LENGTH}}$`),
      `must be 1-${MAX_INGRESS_CLIENT_NAME_LENGTH} letters, digits, hyphens or underscores (it becomes the S3 prefix ingress/<name>/, which Mail Manager caps at 62 characters)`,
    )
    .describe(
      'Client name, unique: names its endpoint, its stack outputs (Ingress<Name>Host …), its S3 prefix and the ingressClient tag of its messages.',
    ),
  allowedCidrs: z
    .array(
      z.string().superRefine((cidr, ctx) => {
        const problem = ingressCidrProblem(cidr);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
    )
    .min(1, 'list at least one CIDR block the client connects from')
    .refine((cidrs) => new Set(cidrs.map((cidr) => cidr.toLowerCase())).size === cidrs.length, {
      message: 'lists a block twice',
    })
    .describe(
      "The public addresses the client connects from, as CIDR blocks (203.0.113.10/32, 2001:db8::/48). The endpoint's traffic policy refuses every other address (and TLS below 1.2); an IPv6 block makes the endpoint dual-stack.",
    ),
  senders: z
    .array(fromPatternSchema)
    .min(1, 'list at least one sender pattern')
    .describe(
      'From addresses the client may use, as route patterns: one address (crm@fabrikam.com), "*@domain" or "*". The ingest function refuses a submission whose From, Sender or envelope sender is not one of them.',
    ),
  route: routeNameSchema
    .optional()
    .describe(
      "The route every message of this client takes, by name. Default: the route the From address selects (or, without routes, the providers that cover it). The route must allow all of the client's senders.",
    ),
});

const ingressConfigSchema = z.strictObject({
  clients: z
    .array(ingressClientConfigSchema)
    .min(1, 'list at least one client')
    .max(
      MAX_INGRESS_CLIENTS,
      `at most ${MAX_INGRESS_CLIENTS}: each client has its own Mail Manager rule set (40 per region) and authenticated ingress endpoint (50 per region)`,
    )
    .describe(
      'The applications that submit over SMTP. Each gets its own authenticated Mail Manager ingress endpoint (about $50/month each) with its own generated password (a Secrets Manager secret) and address allow-list; the user name is the endpoint ID (stack outputs Ingress<Name>Host, …UserName, …SecretArn, …Settings).',
    ),
  maxMessageBytes: z
    .int()
    .min(1024)
    .max(
      MAIL_MANAGER_MAX_MESSAGE_BYTES,
      `at most ${MAIL_MANAGER_MAX_MESSAGE_BYTES} (40 MB, the largest message Mail Manager accepts)`,
    )
    .optional()
    .describe(
      `Largest submission in bytes, MIME-encoded with headers: the traffic policy refuses larger ones and the ingest function checks again. At most message.maxMessageBytes and ${MAIL_MANAGER_MAX_MESSAGE_BYTES} (Mail Manager's 40 MB). Default: the smaller of the two.`,
    ),
  retentionDays: z
    .int()
    .min(1)
    .max(365)
    .default(DEFAULT_INGRESS_RETENTION_DAYS)
    .describe(
      `Days S3 keeps a stored submission. A message too large to travel inside the outbox message is read from there when it is sent, so this must be at least queue.retentionDays; the default ${DEFAULT_INGRESS_RETENTION_DAYS} also covers the 14 days a message may wait in a dead-letter queue before it is redriven.`,
    ),
  inlineMaxBytes: z
    .int()
    .min(0)
    .max(700_000)
    .default(DEFAULT_INGRESS_INLINE_MAX_BYTES)
    .describe(
      'Submissions up to this size (MIME bytes) travel inside the outbox message, and their stored copy is deleted at once; larger ones stay in S3 and the outbox message references them. SQS carries at most 1 MiB, and base64 adds a third.',
    ),
});
export type IngressConfig = z.output<typeof ingressConfigSchema>;
export type IngressClientConfig = IngressConfig['clients'][number];

/** `crm-eu_2` → `CrmEu2`: the part of a client's construct and output IDs that names it. */
export function ingressClientId(name: string): string {
  return name
    .split(/[-_]/)
    .filter((part) => part !== '')
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join('');
}

const routeSettingsSchema = routeSettingsSchemaFor(providerNameSchema);

const routeConfigSchema = z.strictObject({
  name: routeSettingsSchema.shape.name.describe(
    'Route name, unique: shows in logs, `mail-relay status` and dead-letter reasons; a message may ask for it with "route".',
  ),
  from: routeSettingsSchema.shape.from.describe(
    'The senders this route allows (the allow-list): one address (scanner@contoso.com), "*@domain" (every address at exactly that domain) or "*" (anyone: the default route). The most specific pattern wins; a From no route matches is refused as SenderNotAllowed.',
  ),
  providers: routeSettingsSchema.shape.providers.describe(
    `The provider chain, in order (${PROVIDERS.map((definition) => definition.section).join(', ')}; smtp:<name> for a connection of smtp.connections): a provider-level failure moves the message to the next at once; transient failures retry the same provider up to retry.maxAttempts, then move on.`,
  ),
  rewriteFrom: rewriteFromSchema
    .describe(
      'Sends from this service mailbox instead of the original From, shown as "Original Name via <name>", with the original sender as Reply-To (unless the message sets one): for servers that refuse send-as (550 5.7.1).',
    )
    .optional(),
  onUnknownOutcome: z
    .enum(UNKNOWN_OUTCOME_ACTIONS)
    .default('dead-letter')
    .describe(
      'A message a provider may have sent without the relay knowing (the answer was lost, or a function stopped while the provider had it) and that the relay cannot check (SES, SMTP, Graph without lookups): "dead-letter" never sends it twice, it goes to the dead-letter queue as OutcomeUnknown for an operator to check and release (mail-relay dlq redrive); "resend" never loses it, it is sent again and may arrive twice (for mail where a duplicate is harmless, such as password resets).',
    ),
  onLimit: z
    .enum(LIMIT_ACTIONS)
    .default('delay')
    .describe(
      'When a provider\'s limit is reached (a mailbox\'s 30 messages per minute or 10,000 recipients per day, the SES send rate …): "delay" waits until it frees, on the queue, without counting an attempt (a daily cap never dead-letters a message); "next-provider" sends through the route\'s next provider at once (e.g. SES when a mailbox\'s day is full). See docs/pacing.md.',
    ),
});
export type RouteConfig = z.output<typeof routeConfigSchema>;

const retryConfigSchema = z.strictObject({
  maxAttempts: retrySettingsSchema.shape.maxAttempts
    .default(3)
    .describe(
      'Tries on one provider after transient failures before moving to the next in the chain (or the dead-letter queue after the last).',
    ),
  baseDelaySeconds: retrySettingsSchema.shape.baseDelaySeconds
    .default(30)
    .describe("First retry delay; doubles with each try, with jitter. A provider's Retry-After wins."),
  maxDelaySeconds: retrySettingsSchema.shape.maxDelaySeconds.default(900).describe('Longest retry delay.'),
});

const circuitBreakerConfigSchema = z.strictObject({
  failureThreshold: circuitBreakerSettingsSchema.shape.failureThreshold
    .default(5)
    .describe('Consecutive provider-level failures after which a warm function skips the provider.'),
  cooldownSeconds: circuitBreakerSettingsSchema.shape.cooldownSeconds
    .default(60)
    .describe('How long the provider is skipped before one trial message goes through.'),
});

const ledgerConfigSchema = z.strictObject({
  retentionDays: z
    .int()
    .min(1)
    .max(365)
    .default(14)
    .describe(
      'Days the delivery ledger remembers a message: the window in which a repeated idempotencyKey is recognised as a duplicate, and `mail-relay status` answers.',
    ),
});

const rate = (description: string, fallback: number) =>
  z.number().gt(0).lt(1).default(fallback).describe(description);

const monitoringConfigSchema = z.strictObject({
  alarmEmail: z
    .string()
    .refine(isEmailAddress, { message: 'must be an email address' })
    .optional()
    .describe(
      'Subscribes this address to the alarm topic (SNS sends a confirmation mail first). Default: the topic without subscribers; subscribe your own endpoints to the AlarmTopicArn output.',
    ),
  bounceRate: z
    .strictObject({
      warning: rate('Bounced / Sent per provider at which the warning alarm fires (0.02 = 2%).', 0.02),
      critical: rate(
        'Bounced / Sent per provider at which the critical alarm fires (SES reviews accounts at 5%).',
        0.05,
      ),
      minimumSent: z
        .int()
        .min(1)
        .default(100)
        .describe('The bounce rate alarms only judge a period with at least this many sent messages.'),
      periodMinutes: z
        .int()
        .min(5)
        .max(1440)
        .default(60)
        .describe('The window the bounce and complaint rates are computed over.'),
    })
    .prefault({})
    .describe("Bounce rate alarms per provider, from the relay's own Bounced and Sent metrics."),
  complaintRate: rate('Complained / Sent at which the complaint alarm fires (0.001 = 0.1%).', 0.001),
  sesReputation: z
    .strictObject({
      bounceRate: rate(
        'AWS/SES Reputation.BounceRate alarm threshold (SES reviews at 5%, pauses at 10%).',
        0.05,
      ),
      complaintRate: rate('AWS/SES Reputation.ComplaintRate alarm threshold (SES reviews at 0.1%).', 0.001),
    })
    .prefault({})
    .describe('Alarms on the SES account reputation metrics, with an ses section.'),
  outboxAgeMinutes: z
    .int()
    .min(1)
    .max(20_160)
    .default(15)
    .describe('Alarm when the oldest message in the outbox is older than this.'),
  fallbackRate: rate(
    'FallbackUsed / Sent at which the fallback alarm fires: a provider is silently broken.',
    0.1,
  ),
  routeMetrics: z
    .boolean()
    .default(false)
    .describe(
      'Also write Sent and FallbackUsed per route (Route dimension) beside per provider: one more pair of CloudWatch custom metrics per route and provider, each $0.30 a month. No alarm reads them.',
    ),
  pauseSesOnCriticalBounces: z
    .boolean()
    .default(false)
    .describe(
      'When the critical bounce alarm fires, pause sending on the SES configuration set (the README has the runbook to resume). Needs ses.',
    ),
  dashboard: z
    .boolean()
    .default(false)
    .describe(
      "Adds a CloudWatch dashboard of the relay's metrics and alarms (stack output DashboardName): $3 a month at list price (an account's first three dashboards are in the free tier). With it, the send functions also write their latencies per provider, as the dashboard draws them (two more custom metrics per provider, $0.30 a month each); without it, for the relay as a whole. Default: none; the alarms do not need it.",
    ),
  alarmTopicKey: z
    .union([
      z.enum(['none', 'create']),
      z
        .string()
        .regex(
          /^arn:aws(-[a-z]+)*:kms:[a-z0-9-]+:\d{12}:key\/[0-9a-f-]+$/,
          'must be none, create or the ARN of a KMS key (arn:aws:kms:eu-west-1:123456789012:key/…)',
        ),
    ])
    .default('none')
    .describe(
      "Server-side encryption of the alarm topics. none: no SSE (publishing needs TLS; a notification holds the alarm's name, state and reason, never mail). create: a customer managed key for them, $1 a month. A key ARN: an existing customer managed key in the stack's region whose key policy lets cloudwatch.amazonaws.com use kms:Decrypt and kms:GenerateDataKey*. CloudWatch cannot publish to a topic under the AWS managed key alias/aws/sns.",
    ),
});
export type MonitoringConfig = z.output<typeof monitoringConfigSchema>;

const suppressionConfigSchema = z.strictObject({
  retentionDays: z
    .int()
    .min(1)
    .max(3650)
    .optional()
    .describe(
      'Days a hard bounce or complaint (or the soft-bounce threshold) keeps a recipient on the suppression list. Default: until removed (mail-relay suppression remove). A soft bounce never suppresses by itself.',
    ),
  softBounces: z
    .strictObject({
      count: z.int().min(2).max(100).describe('Soft bounces of the same address that suppress it, e.g. 5.'),
      days: z
        .int()
        .min(1)
        .max(365)
        .describe("The window, in days from the address's first soft bounce, e.g. 7."),
    })
    .optional()
    .describe(
      "Suppress an address after count soft bounces within days (verified bounces only; refusals that name a rate, blocklist, policy or content cause are not counted, as they are about the sender or the message). Counted per address in the suppression table, one conditional write per soft bounce; the entry's reason says 'N soft bounces in D days' and its cause is the last bounce's. Default: off: a soft bounce may recover (a full mailbox is still a mailbox), and the relay's messages are transactional, so a lost message costs more than a retried one.",
    ),
});

const bounceReportsConfigSchema = z.strictObject({
  mailboxes: z
    .array(z.string().refine(isEmailAddress, { message: 'must be a mailbox address (not a domain)' }))
    .min(1, 'list at least one sending mailbox')
    .refine((list) => new Set(list.map((mailbox) => mailbox.toLowerCase())).size === list.length, {
      message: 'lists a mailbox twice',
    })
    .describe(
      'Sending mailboxes (Microsoft 365) whose Inbox receives the non-delivery reports of what the relay sent through Graph or an SMTP connector. The Graph app needs the Mail.Read application permission for them.',
    ),
  scheduleMinutes: z.int().min(1).max(60).default(5).describe('How often the reader looks for new reports.'),
  lookbackHours: z
    .int()
    .min(1)
    .max(720)
    .default(24)
    .describe('How far back the first reading of a mailbox looks.'),
  maxMessagesPerMailbox: z
    .int()
    .min(1)
    .max(1000)
    .default(100)
    .describe('Messages read per mailbox per run; the rest wait for the next run.'),
});
export type BounceReportsConfig = z.output<typeof bounceReportsConfigSchema>;

const pacingSectionSchema = z.strictObject({
  enabled: z
    .boolean()
    .default(true)
    .describe(
      "Pace sends to the providers' limits across every send function (creates the pacing table). False: each function only keeps Graph's 4 requests per mailbox itself, and throttling is handled by retries.",
    ),
  maxWaitSeconds: z
    .int()
    .min(2)
    .max(30)
    .default(5)
    .describe(
      'The longest a send waits in the function for its turn (at least 2: a message back from the queue waits its last seconds here, so it leaves on time); a longer wait puts the message back on the queue until its turn (without counting an attempt).',
    ),
});

/** EventBridge custom events: $1.00 per million entries (us-east-1 list price), each outcome one entry. */
const publishKind = (fallback: boolean, description: string) =>
  z.boolean().default(fallback).describe(description);

const eventsConfigSchema = z.strictObject({
  busName: z
    .string()
    .regex(/^[A-Za-z0-9._-]{1,256}$/, 'must be an EventBridge event bus name')
    .default('default')
    .describe('The EventBridge bus outcome events (source mail-relay) are published to.'),
  publish: z
    .strictObject({
      sent: publishKind(
        false,
        'Mail Sent, from the send function: one event per message a provider accepted, $1.00 per million messages. Off: the Sent metric and `mail-relay status` still tell.',
      ),
      'dead-lettered': publishKind(
        true,
        'Mail Dead-Lettered, from the send function: a message the relay gave up on, with the failure code and reason. One event per failed message only.',
      ),
      suppressed: publishKind(
        true,
        'Mail Suppressed, from the send function: every recipient was on the suppression list, nothing was sent. One event per such message only.',
      ),
      delivered: publishKind(
        false,
        "Mail Delivered, from the feedback functions: the recipient's server accepted the message. With ses, also subscribes the configuration set to DELIVERY events, which runs the feedback function once more per SES message (about $0.20 per million requests plus its duration and logs) on top of $1.00 per million events; the Delivered metric and `mail-relay status` showing delivered come with it. Non-delivery reports read from mailboxes (bounceReports) that say delivered are published too.",
      ),
      bounced: publishKind(
        true,
        'Mail Bounced, from the feedback functions (SES bounce events, non-delivery reports): one event per bounce only.',
      ),
      complained: publishKind(
        true,
        'Mail Complained, from the SES feedback function: a recipient marked the message as spam. One event per complaint only.',
      ),
    })
    .prefault({})
    .describe(
      'Which outcome events are published. EventBridge bills each event ($1.00 per million): by default only what a producing app must act on (dead-lettered, suppressed, bounced, complained) is published, so a healthy relay publishes almost nothing; sent and delivered, one event per message each, are opt-in. A function that publishes no kind gets no events:PutEvents permission.',
    ),
});
export type EventsConfig = z.output<typeof eventsConfigSchema>;

/** The outcome kinds events.publish turns on, in OUTCOME_KINDS order. */
export function outcomeKindsOf(events: EventsConfig): OutcomeKind[] {
  return OUTCOME_KINDS.filter((kind) => events.publish[kind]);
}

/** A function's `events` settings for these kinds of its (outcomeEventSettings): undefined when it publishes none. */
export function outcomeEventSettingsFor(
  events: EventsConfig,
  functionKinds: readonly OutcomeKind[],
): { busName: string; kinds?: OutcomeKind[] } | undefined {
  return outcomeEventSettings(events.busName, outcomeKindsOf(events), functionKinds);
}

/** Lambda allows 4 KB of environment variables in total; leave room for the other variables. */
const MAX_SETTINGS_BYTES = 3_500;
/** A queue URL as long as AWS makes them (the real one is only known at deploy time). */
const LONGEST_QUEUE_URL = `https://sqs.ap-southeast-5.amazonaws.com/123456789012/${'x'.repeat(80)}`;
/**
 * The ARN of the secret the stack creates: CloudFormation names it after its logical ID plus a random
 * part, so its length depends on where the construct sits; 128 characters covers deep nesting.
 */
const LONGEST_CREATED_SECRET_ARN = `arn:aws-us-gov:secretsmanager:ap-southeast-5:123456789012:secret:${'x'.repeat(128)}-AbCdEf`;
/** S3 bucket names have at most 63 characters. */
const LONGEST_BUCKET_NAME = 'x'.repeat(63);
/** CloudFormation names a table <stack>-<logical id>-<random>: 128 characters covers deep nesting. */
const LONGEST_TABLE_NAME = 'x'.repeat(128);

/** The AWS resources the send function's settings name, known once the stack (or local mode) made them. */
export interface RelayResources {
  readonly queueUrl: string;
  readonly deadLetterQueueUrl: string;
  /**
   * The credential secret of each provider that has one, by provider name (`graph`, `smtp:billing`):
   * the one the configuration names, or the one the stack created. Graph requires its own.
   */
  readonly credentialSecretIds?: ReadonlyMap<string, string>;
  readonly attachmentBucketName?: string;
  /** Required when the configuration has an ingress section: where submitted messages are stored. */
  readonly ingressBucketName?: string;
  readonly ledgerTableName: string;
  readonly suppressionTableName: string;
  /** The configuration set SES sends use: the one the stack created when none is configured. */
  readonly sesConfigurationSetName?: string;
  /** The pacing table, when pacing is enabled. */
  readonly pacingTableName?: string;
}

/** MAIL_RELAY_SETTINGS for a validated configuration: what MailRelay writes and local mode starts from. */
export function relaySettingsFor(config: RelayConfig, resources: RelayResources): RelaySettings {
  const sectionResources: SectionResources = {
    batchSize: config.sendFunction.batchSize,
    credentialSecretIds: resources.credentialSecretIds ?? new Map(),
    ...(resources.sesConfigurationSetName !== undefined && {
      sesConfigurationSetName: resources.sesConfigurationSetName,
    }),
  };
  const providers = Object.fromEntries(
    configuredSections(config).map(({ definition, section }) => [
      definition.section,
      definition.settingsFor(section, sectionResources),
    ]),
  );
  return {
    queueUrl: resources.queueUrl,
    deadLetterQueueUrl: resources.deadLetterQueueUrl,
    maxReceiveCount: config.queue.maxReceiveCount,
    limits: config.message,
    ...providers,
    ...(config.attachments &&
      resources.attachmentBucketName !== undefined && {
        attachments: { bucket: resources.attachmentBucketName },
      }),
    ...(config.ingress &&
      resources.ingressBucketName !== undefined && {
        ingress: { bucket: resources.ingressBucketName },
      }),
    ...(config.routes && { routes: config.routes }),
    retry: config.retry,
    circuitBreaker: config.circuitBreaker,
    ledger: {
      tableName: resources.ledgerTableName,
      // A claim outlives the function that made it: past its timeout that function is gone for sure.
      leaseSeconds: config.sendFunction.timeoutSeconds,
      retentionDays: config.ledger.retentionDays,
    },
    suppression: { tableName: resources.suppressionTableName },
    ...optionalField('events', outcomeEventSettingsFor(config.events, SEND_OUTCOME_KINDS)),
    ...(config.monitoring.routeMetrics && { routeMetrics: true }),
    // Only the dashboard draws latencies per provider: without it, two metrics instead of two each.
    ...(config.monitoring.dashboard && { latencyByProvider: true }),
    ...(config.pacing.enabled &&
      resources.pacingTableName !== undefined && {
        pacing: { tableName: resources.pacingTableName, maxWaitSeconds: config.pacing.maxWaitSeconds },
      }),
  };
}

/**
 * The settings of the send function outside the VPC when providers send from the static-egress
 * function: it names them with whom they send as (to route by) and that function's queue, and leaves
 * out a section whose providers are all passed on (that function has it), so it reads no secret of
 * theirs. `settings` are the static-egress function's own, which hold everything.
 */
export function passingOnSettingsFor(
  settings: RelaySettings,
  passedOn: readonly string[],
  staticEgressQueueUrl: string,
): RelaySettings {
  if (passedOn.length === 0) return settings;
  const chosen = new Set(passedOn);
  const kept: Record<string, unknown> = { ...settings };
  const providers: { name: string; senders: string[] }[] = [];
  for (const { definition, section } of configuredSections(settings)) {
    const senders = definition.sendersOf(section);
    for (const entry of senders) {
      if (chosen.has(entry.provider)) providers.push({ name: entry.provider, senders: [...entry.senders] });
    }
    if (senders.every((entry) => chosen.has(entry.provider))) delete kept[definition.section];
  }
  return { ...(kept as RelaySettings), staticEgress: { queueUrl: staticEgressQueueUrl, providers } };
}

/** The secrets the send function reads, by provider name: the configured ARNs, or the stack's own. */
export function credentialSecretsOf(config: RelayConfig): CredentialSecret[] {
  return configuredSections(config).flatMap(({ definition, section }) =>
    definition.credentialSecrets(section),
  );
}

/** The largest submission an ingress endpoint takes: ingress.maxMessageBytes, else the relay's limit up to 40 MB. */
export function ingressMaxMessageBytes(config: RelayConfig): number {
  return (
    config.ingress?.maxMessageBytes ??
    Math.min(config.message.maxMessageBytes, MAIL_MANAGER_MAX_MESSAGE_BYTES)
  );
}

/** MAIL_RELAY_SETTINGS of the ingest function, for a configuration with an ingress section. */
export function ingestSettingsFor(
  config: RelayConfig,
  resources: { readonly queueUrl: string; readonly deadLetterQueueUrl: string; readonly bucket: string },
): IngestSettings {
  if (!config.ingress) {
    throw new ConfigurationError('Invalid ingest settings', ['ingress: required for the ingest function']);
  }
  return {
    queueUrl: resources.queueUrl,
    deadLetterQueueUrl: resources.deadLetterQueueUrl,
    bucket: resources.bucket,
    prefix: INGRESS_PREFIX,
    inlineMaxBytes: config.ingress.inlineMaxBytes,
    limits: { maxRecipients: config.message.maxRecipients, maxMessageBytes: ingressMaxMessageBytes(config) },
    clients: config.ingress.clients.map((client) => ({
      name: client.name,
      senders: client.senders,
      ...(client.route !== undefined && { route: client.route }),
    })),
  };
}

/** The size of MAIL_RELAY_SETTINGS, built as MailRelay builds it but with the longest plausible names. */
function estimatedSettingsBytes(config: RelayConfig): number {
  // A smarthost without a host is reported on its own; estimate it with a stand-in host.
  const standIn = (connection: SmtpConnectionConfig): SmtpConnectionConfig =>
    connection.mode === 'smarthost' && connection.host === undefined
      ? { ...connection, host: 'smarthost.invalid' }
      : connection;
  const smtp = config.smtp;
  const estimable =
    smtp === undefined
      ? config
      : {
          ...config,
          smtp:
            'connections' in smtp
              ? {
                  connections: Object.fromEntries(
                    Object.entries(smtp.connections).map(([name, connection]) => [name, standIn(connection)]),
                  ),
                }
              : standIn(smtp),
        };
  const settings = relaySettingsFor(estimable, {
    queueUrl: LONGEST_QUEUE_URL,
    deadLetterQueueUrl: LONGEST_QUEUE_URL,
    credentialSecretIds: new Map(
      credentialSecretsOf(config).map((secret) => [
        secret.provider,
        secret.arn ?? LONGEST_CREATED_SECRET_ARN,
      ]),
    ),
    attachmentBucketName: LONGEST_BUCKET_NAME,
    ingressBucketName: LONGEST_BUCKET_NAME,
    ledgerTableName: LONGEST_TABLE_NAME,
    suppressionTableName: LONGEST_TABLE_NAME,
    pacingTableName: LONGEST_TABLE_NAME,
  });
  // With static egress, the send function outside the VPC has its own settings: the larger counts.
  const passingOn = passingOnSettingsFor(settings, staticEgressProvidersOf(config), LONGEST_QUEUE_URL);
  return Math.max(Buffer.byteLength(JSON.stringify(settings)), Buffer.byteLength(JSON.stringify(passingOn)));
}

/**
 * The providers that send from the static Elastic IPs: egress.providers, else every SMTP connection.
 * Empty without an egress section.
 */
export function staticEgressProvidersOf(config: object): string[] {
  if (fieldOf(config, 'egress') === undefined) return [];
  const listed = fieldOf(config, 'egress', 'providers');
  if (Array.isArray(listed)) return listed.filter((name): name is string => typeof name === 'string');
  return configuredProviders(config)
    .map((provider) => provider.name)
    .filter((name) => providerFamily(name) === SMTP_PROVIDER_NAME);
}

/** egress.providers names configured providers, and every connector-mode connection leaves from the IPs. */
function staticEgressProblems(config: object): { path: (string | number)[]; message: string }[] {
  if (fieldOf(config, 'egress') === undefined) return [];
  const configured = configuredProviders(config);
  const names = configured.map((provider) => provider.name);
  const chosen = staticEgressProvidersOf(config);
  const problems: { path: (string | number)[]; message: string }[] = [];
  const listed = fieldOf(config, 'egress', 'providers');
  if (Array.isArray(listed)) {
    listed.forEach((name, index) => {
      if (typeof name === 'string' && !names.includes(name)) {
        problems.push({
          path: ['egress', 'providers', index],
          message: `"${name}" is not a configured provider (${names.join(', ')})`,
        });
      }
    });
  } else if (chosen.length === 0) {
    problems.push({
      path: ['egress'],
      message:
        'no provider sends from the static IPs (by default the SMTP connections do): configure smtp, or list the providers in egress.providers (graph, for Conditional Access by location)',
    });
  }
  for (const provider of configured) {
    const smtp = providerFamily(provider.name) === SMTP_PROVIDER_NAME;
    if (chosen.includes('graph') && smtp && fieldOf(config, ...provider.path, 'auth') === 'xoauth2') {
      if (!chosen.includes(provider.name)) {
        problems.push({
          path: ['egress', 'providers'],
          message: `must include ${provider.name} with graph: its XOAUTH2 tokens come from the Graph app, which then leaves from the static IPs`,
        });
      }
    }
    if (
      smtp &&
      fieldOf(config, ...provider.path, 'mode') === 'connector' &&
      !chosen.includes(provider.name)
    ) {
      problems.push({
        path: ['egress', 'providers'],
        message: `must include ${provider.name}: in connector mode Exchange Online accepts its mail only from the static IPs`,
      });
    }
  }
  return problems;
}

/** Every provider a route may name, with where its sender list is written and the list as written. */
function providersOf(config: object): { provider: string; listPath: string; senders: unknown }[] {
  return configuredProviders(config).map((provider) => ({
    provider: provider.name,
    listPath: formatPath([...provider.path, provider.sendersField]),
    senders: provider.senders,
  }));
}

/** Why a route names a provider that is not configured: what to add, or which names exist. */
function unconfiguredProviderProblem(config: object, provider: string): string {
  const definition = definitionOf(provider);
  return definition
    ? definition.whyNotConfigured(provider, fieldOf(config, definition.section))
    : `"${provider}" is not a provider the relay knows`;
}

/**
 * The rules across routes and the provider sections: unknown or unconfigured providers, providers
 * that cannot send as a route's senders, duplicate names and patterns two routes share. The routes
 * may have failed validation, so they are only read through fieldOf.
 */
function routeProblems(config: object, routes: unknown[]): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const namedAt = new Map<string, number>();
  const patternAt = new Map<string, number>();
  routes.forEach((route, index) => {
    const name = fieldOf(route, 'name');
    if (typeof name === 'string') {
      const first = namedAt.get(name);
      if (first !== undefined) {
        problems.push({
          path: ['routes', index, 'name'],
          message: `"${name}" is also the name of routes[${first}]`,
        });
      } else namedAt.set(name, index);
    }
    const from = fieldOf(route, 'from');
    const patterns = Array.isArray(from)
      ? from.filter((pattern): pattern is string => typeof pattern === 'string')
      : [];
    for (const pattern of patterns) {
      const normalized = pattern.toLowerCase();
      const first = patternAt.get(normalized);
      if (first !== undefined && first !== index) {
        problems.push({
          path: ['routes', index, 'from'],
          message: `"${pattern}" is also in routes[${first}]: two routes overlap when they share a pattern (the most specific pattern wins, so list each sender in one route)`,
        });
      } else patternAt.set(normalized, index);
    }
    const providers = fieldOf(route, 'providers');
    if (!Array.isArray(providers)) return;
    const rewrite = fieldOf(route, 'rewriteFrom', 'address');
    // A rewriting route sends as its service mailbox, so that is what the providers must cover.
    const sentAs = typeof rewrite === 'string' ? [rewrite] : patterns;
    const configured = providersOf(config);
    providers.forEach((provider, position) => {
      if (typeof provider !== 'string' || !providerNameSchema.safeParse(provider).success) return;
      const entry = configured.find((candidate) => candidate.provider === provider);
      if (entry === undefined) {
        problems.push({
          path: ['routes', index, 'providers', position],
          message: unconfiguredProviderProblem(config, provider),
        });
        return;
      }
      const { senders } = entry;
      if (!Array.isArray(senders)) return;
      const uncovered = sentAs.filter(
        (pattern) =>
          patternKind(pattern) !== 'any' &&
          !senders.some((sender) => typeof sender === 'string' && senderCoversPattern(sender, pattern)),
      );
      if (uncovered.length > 0) {
        problems.push({
          path: ['routes', index, 'providers', position],
          message: `"${provider}" cannot send as ${uncovered.join(', ')}: add ${uncovered.map((pattern) => pattern.replace(/^\*@/, '')).join(', ')} to ${entry.listPath}, or remove ${provider} from the chain`,
        });
      }
    });
  });
  return problems;
}

/** Whether every address the inner From pattern matches is matched by the outer one. */
function patternCovers(outer: string, inner: string): boolean {
  switch (patternKind(inner)) {
    case 'any':
      return patternKind(outer) === 'any';
    case 'domain':
      // Any mailbox of the domain stands for all of them; an address pattern covers none of the others.
      return patternKind(outer) !== 'address' && patternMatches(outer, `postmaster@${inner.slice(2)}`);
    case 'address':
      return patternMatches(outer, inner);
  }
}

/**
 * The rules across the ingress section and the rest of the configuration: unique client names (also
 * once made into output IDs), routes that exist and allow the clients' senders (or, without routes,
 * providers that cover them), and sizes and retention that fit the relay's. The section may have
 * failed validation, so it is only read through fieldOf.
 */
function ingressProblems(config: object, ingress: object): { path: (string | number)[]; message: string }[] {
  const problems: { path: (string | number)[]; message: string }[] = [];
  const clients = fieldOf(ingress, 'clients');
  const routes = fieldOf(config, 'routes');
  const routeList = Array.isArray(routes) ? routes : undefined;
  const routeNames = (routeList ?? [])
    .map((route) => fieldOf(route, 'name'))
    .filter((name): name is string => typeof name === 'string');
  const routePatterns = (route: unknown): string[] => {
    const from = fieldOf(route, 'from');
    return Array.isArray(from)
      ? from.filter((pattern): pattern is string => typeof pattern === 'string')
      : [];
  };
  const namedAt = new Map<string, number>();
  const idAt = new Map<string, number>();
  (Array.isArray(clients) ? clients : []).forEach((client, index) => {
    const at = (...path: (string | number)[]) => ['ingress', 'clients', index, ...path];
    const name = fieldOf(client, 'name');
    if (typeof name === 'string') {
      const sameName = namedAt.get(name);
      const sameId = idAt.get(ingressClientId(name));
      if (sameName !== undefined) {
        problems.push({
          path: at('name'),
          message: `"${name}" is also the name of ingress.clients[${sameName}]`,
        });
      } else if (sameId !== undefined) {
        problems.push({
          path: at('name'),
          message: `"${name}" and ingress.clients[${sameId}] would name the same stack outputs (Ingress${ingressClientId(name)}Host …): names must differ in more than hyphens and underscores`,
        });
      }
      namedAt.set(name, namedAt.get(name) ?? index);
      idAt.set(ingressClientId(name), idAt.get(ingressClientId(name)) ?? index);
    }
    // A value that fails its own check is reported by it; the rules here are about valid ones.
    const rawRoute = fieldOf(client, 'route');
    const route = routeNameSchema.safeParse(rawRoute).success ? rawRoute : undefined;
    const forced =
      typeof route === 'string'
        ? routeList?.find((candidate) => fieldOf(candidate, 'name') === route)
        : undefined;
    if (typeof route === 'string' && forced === undefined) {
      problems.push({
        path: at('route'),
        message: routeList
          ? `no route is named "${route}" (configured: ${routeNames.join(', ')}): name one of them, or leave route out to route by the From address`
          : `names route "${route}", but the configuration has no routes: add a routes section, or leave route out`,
      });
    }
    const senders = fieldOf(client, 'senders');
    if (!Array.isArray(senders)) return;
    senders.forEach((pattern, position) => {
      if (typeof pattern !== 'string' || !fromPatternSchema.safeParse(pattern).success) return;
      if (forced !== undefined) {
        const allowed = routePatterns(forced);
        if (!allowed.some((outer) => patternCovers(outer, pattern))) {
          problems.push({
            path: at('senders', position),
            message: `"${pattern}" is not allowed by route "${String(route)}" (it allows ${allowed.join(', ')}), which refuses a From it does not allow: add it to that route's from, or remove it here`,
          });
        }
      } else if (routeList) {
        if (
          !routeList.some((candidate) =>
            routePatterns(candidate).some((outer) => patternCovers(outer, pattern)),
          )
        ) {
          problems.push({
            path: at('senders', position),
            message: `"${pattern}" is not allowed by any route, so the relay would refuse its messages: add it${patternKind(pattern) === 'address' ? ` (or *@${pattern.slice(pattern.lastIndexOf('@') + 1)})` : ''} to a route's from patterns, or remove it here`,
          });
        }
      } else if (patternKind(pattern) === 'any') {
        problems.push({
          path: at('senders', position),
          message:
            '"*" (any sender) needs a route that allows "*": without routes only the senders the providers cover are allowed, so list them here',
        });
      } else {
        const covered = providersOf(config).some(
          ({ senders: list }) =>
            Array.isArray(list) &&
            list.some((sender) => typeof sender === 'string' && senderCoversPattern(sender, pattern)),
        );
        if (!covered) {
          const domain = pattern.slice(pattern.lastIndexOf('@') + 1);
          problems.push({
            path: at('senders', position),
            message: `"${pattern}" is not covered by any provider, so the relay would refuse its messages: add ${patternKind(pattern) === 'domain' ? domain : `${pattern} (or ${domain})`} to ses.identities, graph.senders or smtp.senders, or remove it here`,
          });
        }
      }
    });
  });
  const maxMessageBytes = fieldOf(ingress, 'maxMessageBytes');
  const relayMax = fieldOf(config, 'message', 'maxMessageBytes');
  if (
    typeof maxMessageBytes === 'number' &&
    maxMessageBytes <= MAIL_MANAGER_MAX_MESSAGE_BYTES &&
    typeof relayMax === 'number' &&
    maxMessageBytes > relayMax
  ) {
    problems.push({
      path: ['ingress', 'maxMessageBytes'],
      message: `must be at most message.maxMessageBytes (${relayMax}): the relay would accept submissions it then refuses to send; lower this or raise message.maxMessageBytes`,
    });
  }
  const retentionDays = fieldOf(ingress, 'retentionDays');
  const queueRetention = fieldOf(config, 'queue', 'retentionDays');
  if (
    typeof retentionDays === 'number' &&
    retentionDays >= 1 &&
    typeof queueRetention === 'number' &&
    retentionDays < queueRetention
  ) {
    problems.push({
      path: ['ingress', 'retentionDays'],
      message: `must be at least queue.retentionDays (${queueRetention}): a message waiting in the outbox may still need its stored submission; raise this or lower queue.retentionDays`,
    });
  }
  return problems;
}

/**
 * A message limit above what every configured provider takes: such messages could never be sent.
 * Above the largest any provider takes, the field's own maximum reports it.
 */
function messageLimitProblems(
  config: object,
  sections: readonly { readonly definition: ProviderDefinition }[],
): { path: string[]; message: string }[] {
  if (sections.length === 0) return [];
  const fields = [
    ['maxRecipients', 'recipients'],
    ['maxMessageBytes', 'bytes'],
  ] as const;
  return fields.flatMap(([field, unit]) => {
    const value = fieldOf(config, 'message', field);
    const largest = Math.max(...sections.map(({ definition }) => definition.limits[field]));
    if (typeof value !== 'number' || value <= largest) return [];
    const takers = PROVIDERS.filter((definition) => definition.limits[field] >= value);
    if (takers.length === 0) return [];
    const each = sections.map(({ definition }) => `${definition.title} ${definition.limits[field]}`);
    return [
      {
        path: ['message', field],
        message: `the configured providers take at most ${largest} ${unit} per message (${each.join(', ')}); only ${takers.map((definition) => definition.section).join(' or ')} ${takers.length > 1 ? 'take' : 'takes'} more, so lower this limit or add ${takers.length > 1 ? 'one of them' : `a ${takers[0]?.section} section`}`,
      },
    ];
  });
}

export const relayConfigSchema = z
  .strictObject({
    $schema: z.string().optional(),
    ...providerConfigShape(),
    attachments: attachmentsConfigSchema
      .optional()
      .describe(
        'Creates an S3 bucket (stack output AttachmentBucketName) for attachments too large to travel inside the message: SQS caps a message at 1 MiB, so above ~700 KB of files, upload them there and reference them as {"s3": {"bucket", "key"}}.',
      ),
    message: messageLimitsSchema
      .extend({
        maxRecipients: messageLimitsSchema.shape.maxRecipients.default(DEFAULT_MAX_RECIPIENTS),
        maxMessageBytes: messageLimitsSchema.shape.maxMessageBytes
          .default(DEFAULT_MAX_MESSAGE_BYTES)
          .describe(
            `Most bytes of decoded bodies + attachments in one message. Default ${DEFAULT_MAX_MESSAGE_BYTES} (40 MiB, the SES limit); up to ${GRAPH_MAX_MESSAGE_BYTES} (150 MiB, the Microsoft Graph limit) with a graph section.`,
          ),
      })
      .prefault({})
      .describe('Limits applied to every message (to + cc + bcc count, decoded body + attachment bytes).'),
    queue: queueConfigSchema.prefault({}),
    sendFunction: sendFunctionConfigSchema.prefault({}),
    routes: z
      .array(routeConfigSchema)
      .min(1)
      .optional()
      .describe(
        'Which senders the relay sends for and through which providers, in order. Without routes every sender a provider covers is allowed, with the providers that cover it as its chain (graph, smtp, ses).',
      ),
    retry: retryConfigSchema.prefault({}).describe('Retries with exponential backoff on the same provider.'),
    circuitBreaker: circuitBreakerConfigSchema
      .prefault({})
      .describe('Skips a provider that keeps failing at provider level, per warm function.'),
    monitoring: monitoringConfigSchema
      .prefault({})
      .describe('CloudWatch alarms (to one SNS topic) and the dashboard.'),
    suppression: suppressionConfigSchema
      .prefault({})
      .describe('The suppression list (DynamoDB): recipients the relay drops from every message.'),
    pacing: pacingSectionSchema
      .prefault({})
      .describe(
        "Fleet-wide pacing: every send function takes its turn within each provider's limits from one DynamoDB table (docs/pacing.md). The limits themselves are set per provider (graph.pacing, smtp.pacing, ses.pacing).",
      ),
    events: eventsConfigSchema
      .prefault({})
      .describe(
        'Outcome events (sent, dead-lettered, bounced …) published to EventBridge for producing apps.',
      ),
    bounceReports: bounceReportsConfigSchema
      .optional()
      .describe(
        'Reads non-delivery reports from the sending mailboxes through Graph (Mail.Read) on a schedule: bounces of Graph and SMTP sends become suppressions, metrics and outcome events. Needs graph.',
      ),
    ledger: ledgerConfigSchema
      .prefault({})
      .describe('The DynamoDB delivery ledger: no message sent twice, and `mail-relay status`.'),
    ingress: ingressConfigSchema
      .optional()
      .describe(
        'An SMTP front door on Amazon SES Mail Manager, for applications, CRMs and printers that only speak SMTP: each client submits to its own authenticated endpoint (STARTTLS on 587, user name and generated password, allowed addresses only), each message is stored in S3 and the ingest function puts it on the outbox as a raw message (docs/smtp-ingress.md).',
      ),
    sourceMaps: z
      .boolean()
      .default(false)
      .describe(
        'Ship a source map with every function and run it with --enable-source-maps, so stack traces in the logs name the TypeScript files and lines. Off by default: it adds about a tenth to every cold start and 1-2 MB to each function asset.',
      ),
    egress: egressConfigSchema
      .optional()
      .describe(
        'Sends from static Elastic IPs: a second send function, for the providers in egress.providers (default: SMTP), runs in a VPC whose private subnets reach the internet through NATs with fixed addresses (stack outputs EgressIps, InboundConnectorCommand, SpfRecord), for Exchange Online inbound connectors and allow lists that trust an IP (docs/static-egress.md).',
      ),
  })
  // Runs even when a field failed, so a missing provider is reported together with field errors.
  // The value may then be partly unparsed, so it is only read through fieldOf.
  .superRefine(
    (config, ctx) => {
      const sections = configuredSections(config);
      if (sections.length === 0) ctx.addIssue({ code: 'custom', path: [], message: NO_PROVIDER_MESSAGE });
      // Every provider's own rules, so all their problems are reported at once.
      for (const { definition, section } of sections) {
        for (const problem of definition.configProblems(section, config)) {
          ctx.addIssue({ code: 'custom', path: [...problem.path], message: problem.message });
        }
      }
      const ses = fieldOf(config, 'ses');
      const graph = fieldOf(config, 'graph');
      if (fieldOf(config, 'monitoring', 'pauseSesOnCriticalBounces') === true && ses === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['monitoring', 'pauseSesOnCriticalBounces'],
          message:
            'pauses the SES configuration set the relay sends with when the SES bounce rate is critical: configure ses too, or turn this off',
        });
      }
      if (fieldOf(config, 'bounceReports') !== undefined && graph === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['bounceReports'],
          message:
            'reads the mailboxes through Microsoft Graph (Mail.Read application permission): configure graph too',
        });
      }
      const routes = fieldOf(config, 'routes');
      if (Array.isArray(routes)) {
        for (const problem of routeProblems(config, routes)) ctx.addIssue({ code: 'custom', ...problem });
      }
      const ingress = fieldOf(config, 'ingress');
      if (typeof ingress === 'object' && ingress !== null) {
        for (const problem of ingressProblems(config, ingress)) ctx.addIssue({ code: 'custom', ...problem });
      }
      const base = fieldOf(config, 'retry', 'baseDelaySeconds');
      const max = fieldOf(config, 'retry', 'maxDelaySeconds');
      if (typeof base === 'number' && typeof max === 'number' && max < base) {
        ctx.addIssue({
          code: 'custom',
          path: ['retry', 'maxDelaySeconds'],
          message: `must be at least retry.baseDelaySeconds (${base})`,
        });
      }
      for (const problem of messageLimitProblems(config, sections))
        ctx.addIssue({ code: 'custom', ...problem });
      for (const problem of staticEgressProblems(config)) ctx.addIssue({ code: 'custom', ...problem });
    },
    { when: (payload) => typeof payload.value === 'object' && payload.value !== null },
  )
  // zod skips this once a field has the wrong type, so every field read here has its declared type
  // (its own range checks may still have failed and been reported).
  .superRefine((config, ctx) => {
    const settingsBytes = estimatedSettingsBytes(config);
    if (settingsBytes > MAX_SETTINGS_BYTES) {
      const providers = configuredProviders(config);
      const lists = providers.map((provider): [readonly string[], unknown] => [
        [...provider.path, provider.sendersField],
        provider.senders,
      ]);
      const [longerList = []] = lists.reduce((longest, list) =>
        JSON.stringify(list[1] ?? []).length > JSON.stringify(longest[1] ?? []).length ? list : longest,
      );
      ctx.addIssue({
        code: 'custom',
        path: [...longerList],
        message: `the function settings would take ~${settingsBytes} bytes of its environment, over the ${MAX_SETTINGS_BYTES} that fit in Lambda's 4 KB; list whole domains instead of many single addresses${providers.length > new Set(providers.map((provider) => providerFamily(provider.name))).size ? ', or configure fewer connections' : ''}`,
      });
    }
    if (config.ingress) {
      const ingestBytes = Buffer.byteLength(
        JSON.stringify(
          ingestSettingsFor(config, {
            queueUrl: LONGEST_QUEUE_URL,
            deadLetterQueueUrl: LONGEST_QUEUE_URL,
            bucket: LONGEST_BUCKET_NAME,
          }),
        ),
      );
      if (ingestBytes > MAX_SETTINGS_BYTES) {
        ctx.addIssue({
          code: 'custom',
          path: ['ingress', 'clients'],
          message: `the ingest function settings would take ~${ingestBytes} bytes of its environment, over the ${MAX_SETTINGS_BYTES} that fit in Lambda's 4 KB; list whole domains (*@domain) instead of many single addresses`,
        });
      }
    }
    const minimum = config.sendFunction.timeoutSeconds * 6;
    const visibility = config.queue.visibilityTimeoutSeconds;
    if (visibility !== undefined && visibility < minimum) {
      ctx.addIssue({
        code: 'custom',
        path: ['queue', 'visibilityTimeoutSeconds'],
        message: `must be at least 6 x sendFunction.timeoutSeconds (${minimum}) so a slow batch is not delivered twice`,
      });
    }
  });

/** What a config file may contain (defaults optional). */
export type RelayConfigInput = z.input<typeof relayConfigSchema>;
/** A validated configuration with every default filled in. */
export type RelayConfig = z.output<typeof relayConfigSchema>;

/** Validates a configuration object, reporting every problem in one error. */
export function parseRelayConfig(input: unknown, source = 'mail-relay configuration'): RelayConfig {
  const result = relayConfigSchema.safeParse(input);
  if (!result.success) {
    throw new ConfigurationError(`Invalid ${source}`, describeIssues(result.error));
  }
  return result.data;
}

/** Reads and validates a configuration file (`cdk synth -c config=PATH`). */
export function loadRelayConfig(path: string): RelayConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'file not found' : String(error);
    throw new ConfigurationError(`Cannot read mail-relay configuration ${path}`, [
      `${reason} (create it from examples/, or pass another file with \`-c config=PATH\`)`,
    ]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigurationError(`Invalid mail-relay configuration ${path}`, [
      `not valid JSON: ${(error as Error).message}`,
    ]);
  }
  // JSON.parse keeps the last of two equal keys: a second "routes" would silently replace the first.
  const duplicates = duplicateKeys(text);
  if (duplicates.length > 0) {
    throw new ConfigurationError(`Invalid mail-relay configuration ${path}`, duplicates);
  }
  return parseRelayConfig(json, `mail-relay configuration ${path}`);
}

/**
 * Keys that appear twice in one object of a JSON text (which JSON.parse accepts, keeping the last),
 * as `path: "key" appears twice (lines A and B)`. Expects text JSON.parse accepted.
 */
export function duplicateKeys(text: string): string[] {
  const problems: string[] = [];
  // One frame per open object or array: the keys seen (with their lines) and where it sits.
  const frames: {
    keys?: Map<string, number>;
    path: (string | number)[];
    index: number;
    pendingKey?: string;
  }[] = [];
  let line = 1;
  for (let position = 0; position < text.length; position += 1) {
    const char = text[position];
    if (char === '\n') line += 1;
    else if (char === '"') {
      let end = position + 1;
      while (end < text.length && text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      const value = JSON.parse(text.slice(position, end + 1)) as string;
      const frame = frames.at(-1);
      const rest = text.slice(end + 1).trimStart();
      if (frame?.keys && rest.startsWith(':')) {
        const first = frame.keys.get(value);
        if (first !== undefined) {
          problems.push(
            `${formatPath([...frame.path, value])}: appears twice (lines ${first} and ${line}); JSON keeps only the last`,
          );
        } else frame.keys.set(value, line);
        frame.pendingKey = value;
      }
      position = end;
    } else if (char === '{' || char === '[') {
      const parent = frames.at(-1);
      const key = parent?.keys ? (parent.pendingKey ?? '') : (parent?.index ?? 0);
      frames.push({
        ...(char === '{' && { keys: new Map<string, number>() }),
        path: parent ? [...parent.path, key] : [],
        index: 0,
      });
    } else if (char === '}' || char === ']') {
      frames.pop();
    } else if (char === ',') {
      const frame = frames.at(-1);
      if (frame && !frame.keys) frame.index += 1;
    }
  }
  return problems;
}

/** `{ [key]: value }`, or nothing when value is undefined (for settings that leave a field out). */
function optionalField<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}
