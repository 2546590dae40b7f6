import { existsSync } from 'node:fs';
import { type AttributeValue, ScanCommand } from '@aws-sdk/client-dynamodb';
import { GetQueueAttributesCommand, type QueueAttributeName, type SQSClient } from '@aws-sdk/client-sqs';
import { type PaceLimits, type ProviderPacing, scopesFor } from '../lambda/core/pacing/limits.ts';
import type { SectionResources } from '../lambda/providers/provider-definition.ts';
import { configuredProviders, configuredSections } from '../lambda/providers/registry.ts';
import { DEFAULT_CONFIG_PATH, loadRelayConfig, type RelayConfig } from '../lib/config.ts';
import { DEAD_LETTER_QUEUE_NAME, OUTBOX_QUEUE_NAME, PACING_TABLE_NAME } from '../local/local-names.ts';
import { isLocalUrl, localQueueUrl, sqsClientFor } from './dlq-queue.ts';
import { localDynamoDbEndpoint } from './local-endpoints.ts';
import { type TableOptions, tableClient } from './tables.ts';

const NOTHING_ANSWERS = 'nothing answers there';

/** Where `mail-relay status` (no id) looks: local mode by default, a stack's table and queues with the flags. */
export interface FleetStatusOptions {
  /** The pacing table of a deployed stack (stack output PacingTableName); default: local mode's. */
  readonly pacingTable?: string;
  /** The OutboxQueueUrl stack output; default: local mode's outbox. */
  readonly outboxUrl?: string;
  /** The DeadLetterQueueUrl stack output; default: local mode's dead-letter queue. */
  readonly dlqUrl?: string;
  /** The StaticEgressQueueUrl stack output (a relay with egress); local mode has none. */
  readonly staticEgressUrl?: string;
  /** The DynamoDB endpoint; default: local mode's emulator, or AWS with --pacing-table. */
  readonly endpoint?: string;
  /** The SQS endpoint; default: a local queue URL's own origin, AWS otherwise. */
  readonly sqsEndpoint?: string;
  readonly region?: string;
  /** The configuration the limits come from; default mail-relay.config.json when there is one. */
  readonly configPath?: string;
  /** Where to look for a running local mode's endpoints file (--state-dir). */
  readonly stateDir?: string;
}

/** A rate schedule of a scope: when its capacity is free again. */
export interface RateStatus {
  readonly limit: 'messagesPerMinute' | 'recipientsPerSecond';
  /** The limit's value; null when unknown (no configuration, or read from the provider's account). */
  readonly value: number | null;
  /** ISO time the schedule is free again; null: no schedule kept (free). */
  readonly freeAt: string | null;
  readonly busy: boolean;
  /** Whole seconds until it is free (0 when free). */
  readonly nextFreeInSeconds: number;
  /** The send function reads this limit from the provider's account when it starts (SES's send rate). */
  readonly fromAccount: boolean;
}

/** One mailbox or provider scope the pacing table counted today. */
export interface ScopeStatus {
  /** The pacing table's scope key: `graph|mailbox|ana@contoso.com`, `ses|provider`. */
  readonly scope: string;
  readonly provider: string;
  readonly kind: 'mailbox' | 'provider';
  /** The sending mailbox; null for a provider scope. */
  readonly mailbox: string | null;
  /** The limits the configuration gives this scope; null when unknown (see FleetStatus.limits). */
  readonly limits: PaceLimits | null;
  readonly today: {
    /** Recipients counted today (UTC day). */
    readonly recipients: number;
    /** recipientsPerDay; null when unknown or not limited. */
    readonly limit: number | null;
    /** Whether today's count reached the limit (sends wait until the next UTC midnight); null: no limit known. */
    readonly capReached: boolean | null;
  };
  readonly rates: readonly RateStatus[];
  readonly leases: {
    /** Concurrency leases held now (not run out). */
    readonly held: number;
    /** concurrentRequests; null when unknown or not limited. */
    readonly limit: number | null;
  };
}

export interface QueueDepth {
  readonly url: string;
  /** ApproximateNumberOfMessages: waiting to be received. */
  readonly visible: number;
  /** ApproximateNumberOfMessagesNotVisible: received and not yet deleted (in flight). */
  readonly inFlight: number;
  /** ApproximateNumberOfMessagesDelayed: not yet visible (pacing waits, delayed sends). */
  readonly delayed: number;
}

export interface FleetStatus {
  readonly now: string;
  /** The UTC day the day counters are read for (YYYY-MM-DD). */
  readonly day: string;
  readonly pacing: {
    readonly table: string;
    /** Null when the table was read; otherwise why it could not be. */
    readonly error: string | null;
    readonly scopes: readonly ScopeStatus[];
  };
  readonly limits: {
    /** Whether the configuration's limits were resolved (otherwise every limit is null). */
    readonly known: boolean;
    /** The configuration file the limits come from; null when none was read. */
    readonly config: string | null;
    /** Why limits are unknown or do not apply; null when they were resolved. */
    readonly note: string | null;
  };
  readonly queues: {
    readonly outbox: QueueDepth | { readonly url: string; readonly error: string };
    readonly deadLetter: QueueDepth | { readonly url: string; readonly error: string };
    /** With --static-egress-url: what waits for the static-egress function; null otherwise. */
    readonly staticEgress: QueueDepth | { readonly url: string; readonly error: string } | null;
    /** SQS has no attribute for it: always null here. */
    readonly oldestAgeSeconds: null;
    readonly oldestAgeNote: string;
  };
}

const DAY_MS = 86_400_000;
const OLDEST_AGE_NOTE =
  'not an SQS attribute; in AWS it is the CloudWatch metric ApproximateAgeOfOldestMessage of the queue, which the outbox-oldest-message-age alarm watches (and the dashboard shows, with monitoring.dashboard)';

/** The parts of a pacing table key (lambda/core/pacing/pacer.ts writes them). */
type PacingItem =
  | { readonly type: 'day'; readonly scope: string; readonly day: string; readonly total: number }
  | { readonly type: 'rate'; readonly scope: string; readonly rate: RateStatus['limit']; readonly at: number }
  | { readonly type: 'lease'; readonly scope: string; readonly leaseUntil: number };

const RATE_OF_SUFFIX = { messages: 'messagesPerMinute', recipients: 'recipientsPerSecond' } as const;

/** An item of the pacing table as one of the three kinds, or undefined for a key of another shape. */
export function parsePacingItem(item: Record<string, AttributeValue>): PacingItem | undefined {
  const key = item.key?.S;
  if (key === undefined) return undefined;
  const number = (name: string) => Number(item[name]?.N ?? Number.NaN);
  const day = /^(.+)\|day\|(\d{4}-\d{2}-\d{2})$/.exec(key);
  if (day?.[1] && day[2]) return { type: 'day', scope: day[1], day: day[2], total: number('total') || 0 };
  const rate = /^(.+)\|(messages|recipients)$/.exec(key);
  if (rate?.[1] && rate[2]) {
    const at = number('at');
    if (!Number.isFinite(at)) return undefined;
    return { type: 'rate', scope: rate[1], rate: RATE_OF_SUFFIX[rate[2] as 'messages'], at };
  }
  const lease = /^(.+)\|concurrent\|\d+$/.exec(key);
  if (lease?.[1]) return { type: 'lease', scope: lease[1], leaseUntil: number('leaseUntil') || 0 };
  return undefined;
}

/** `graph|mailbox|ana@contoso.com` → its provider, kind and mailbox; undefined for another shape. */
function parseScope(scope: string): Pick<ScopeStatus, 'provider' | 'kind' | 'mailbox'> | undefined {
  const mailbox = /^([^|]+)\|mailbox\|(.+)$/.exec(scope);
  if (mailbox?.[1] && mailbox[2]) return { provider: mailbox[1], kind: 'mailbox', mailbox: mailbox[2] };
  const provider = /^([^|]+)\|provider$/.exec(scope);
  if (provider?.[1]) return { provider: provider[1], kind: 'provider', mailbox: null };
  return undefined;
}

/**
 * The limits each configured provider is paced to, by provider name (`graph`, `smtp:billing`), as the
 * send function resolves them: each definition's settings for its section, then its `pacingOf`.
 */
export interface ConfiguredLimits {
  readonly pacing: ReadonlyMap<string, ProviderPacing | undefined>;
  /** Providers that read limits from their account when the function starts (SES's send rate). */
  readonly readFromAccount: ReadonlySet<string>;
}

export function configuredLimits(config: RelayConfig): ConfiguredLimits {
  // Settings need a credential secret per provider; any name does, only the limits are read.
  const resources: SectionResources = {
    batchSize: config.sendFunction.batchSize,
    credentialSecretIds: new Map(configuredProviders(config).map((provider) => [provider.name, 'unused'])),
  };
  const pacing = new Map<string, ProviderPacing | undefined>();
  const readFromAccount = new Set<string>();
  for (const { definition, section } of configuredSections(config)) {
    const settings = definition.settingsFor(section, resources);
    for (const entry of definition.pacingOf(settings)) {
      pacing.set(entry.provider, entry.pacing);
      if (definition.readPacing) readFromAccount.add(entry.provider);
    }
  }
  return { pacing, readFromAccount };
}

/** The limits of one scope from the configuration: undefined when the scope is not limited there. */
function limitsOfScope(limits: ConfiguredLimits, scope: string): PaceLimits | undefined {
  const parsed = parseScope(scope);
  if (!parsed) return undefined;
  const scopes = scopesFor(parsed.provider, limits.pacing.get(parsed.provider), parsed.mailbox ?? '');
  return scopes.find((candidate) => candidate.key === scope)?.limits;
}

/**
 * What the pacing table says about today: per scope seen today (a day counter of today, a schedule
 * or a lease used since midnight UTC), its count against its day limit, its schedules and its leases.
 */
export function summarizePacing(
  items: readonly Record<string, AttributeValue>[],
  now: number,
  limits: ConfiguredLimits | undefined,
): ScopeStatus[] {
  const today = new Date(now).toISOString().slice(0, 10);
  const midnight = Math.floor(now / DAY_MS) * DAY_MS;
  const byScope = new Map<string, PacingItem[]>();
  for (const raw of items) {
    const item = parsePacingItem(raw);
    if (!item || !parseScope(item.scope)) continue;
    const seenToday =
      item.type === 'day'
        ? item.day === today
        : (item.type === 'rate' ? item.at : item.leaseUntil) >= midnight;
    if (!seenToday) continue;
    byScope.set(item.scope, [...(byScope.get(item.scope) ?? []), item]);
  }
  const scopes: ScopeStatus[] = [];
  for (const [scope, scopeItems] of byScope) {
    const parsed = parseScope(scope);
    if (!parsed) continue;
    const scopeLimits = limits ? (limitsOfScope(limits, scope) ?? {}) : null;
    const total = scopeItems.reduce((sum, item) => sum + (item.type === 'day' ? item.total : 0), 0);
    const dayLimit = scopeLimits?.recipientsPerDay ?? null;
    const rateNames = new Set<RateStatus['limit']>();
    for (const item of scopeItems) if (item.type === 'rate') rateNames.add(item.rate);
    if (scopeLimits?.messagesPerMinute !== undefined) rateNames.add('messagesPerMinute');
    if (scopeLimits?.recipientsPerSecond !== undefined) rateNames.add('recipientsPerSecond');
    const rates = [...rateNames].sort().map((name): RateStatus => {
      const schedule = scopeItems.find((item) => item.type === 'rate' && item.rate === name);
      const at = schedule?.type === 'rate' ? schedule.at : undefined;
      const busy = at !== undefined && at > now;
      return {
        limit: name,
        value: scopeLimits?.[name] ?? null,
        freeAt: at === undefined ? null : new Date(at).toISOString(),
        busy,
        nextFreeInSeconds: busy ? Math.ceil((at - now) / 1000) : 0,
        fromAccount:
          scopeLimits?.[name] === undefined && (limits?.readFromAccount.has(parsed.provider) ?? false),
      };
    });
    scopes.push({
      scope,
      ...parsed,
      limits: scopeLimits,
      today: {
        recipients: total,
        limit: dayLimit,
        capReached: dayLimit === null ? null : total >= dayLimit,
      },
      rates,
      leases: {
        held: scopeItems.filter((item) => item.type === 'lease' && item.leaseUntil > now).length,
        limit: scopeLimits?.concurrentRequests ?? null,
      },
    });
  }
  return scopes.sort(
    (a, b) =>
      a.provider.localeCompare(b.provider) ||
      b.kind.localeCompare(a.kind) ||
      (a.mailbox ?? '').localeCompare(b.mailbox ?? ''),
  );
}

/** The configuration's limits, or why they are not known: a missing default file is no error. */
function readLimits(configPath: string | undefined): {
  limits: ConfiguredLimits | undefined;
  config: string | null;
  note: string | null;
} {
  const path = configPath ?? DEFAULT_CONFIG_PATH;
  if (configPath === undefined && !existsSync(path)) {
    return {
      limits: undefined,
      config: null,
      note: `no ${DEFAULT_CONFIG_PATH} here: limits unknown (pass --config PATH)`,
    };
  }
  // An explicit --config that cannot be read fails the command (ConfigurationError).
  const config = loadRelayConfig(path);
  if (!config.pacing.enabled) {
    return {
      limits: undefined,
      config: path,
      note: 'pacing is off in the configuration (pacing.enabled: false)',
    };
  }
  return { limits: configuredLimits(config), config: path, note: null };
}

const QUEUE_ATTRIBUTES: QueueAttributeName[] = [
  'ApproximateNumberOfMessages',
  'ApproximateNumberOfMessagesNotVisible',
  'ApproximateNumberOfMessagesDelayed',
];

async function queueDepth(
  sqs: SQSClient,
  url: string,
): Promise<QueueDepth | { readonly url: string; readonly error: string }> {
  try {
    const { Attributes = {} } = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: QUEUE_ATTRIBUTES }),
    );
    return {
      url,
      visible: Number(Attributes.ApproximateNumberOfMessages ?? 0),
      inFlight: Number(Attributes.ApproximateNumberOfMessagesNotVisible ?? 0),
      delayed: Number(Attributes.ApproximateNumberOfMessagesDelayed ?? 0),
    };
  } catch (error) {
    return { url, error: errorText(error) };
  }
}

async function scanPacingTable(
  options: TableOptions,
  table: string,
): Promise<Record<string, AttributeValue>[]> {
  const client = tableClient(options);
  try {
    const items: Record<string, AttributeValue>[] = [];
    let start: Record<string, AttributeValue> | undefined;
    do {
      const page = await client.send(
        new ScanCommand({
          TableName: table,
          ConsistentRead: true,
          ...(start && { ExclusiveStartKey: start }),
        }),
      );
      items.push(...(page.Items ?? []));
      start = page.LastEvaluatedKey;
    } while (start);
    return items;
  } finally {
    client.destroy();
  }
}

function errorText(error: unknown): string {
  const { name, message } = error as { name?: string; message?: string };
  if (name === 'ResourceNotFoundException') return 'no such table';
  if (name === 'QueueDoesNotExist' || name === 'AWS.SimpleQueueService.NonExistentQueue')
    return 'no such queue';
  const code = (error as { code?: string }).code ?? (error as { cause?: { code?: string } }).cause?.code;
  return code === 'ECONNREFUSED' ? NOTHING_ANSWERS : `${name ?? 'Error'}: ${message ?? String(error)}`;
}

/**
 * Resolves the table and queues: all local mode's, or all given. A stack's pacing table with local
 * mode's queues (or the reverse) would describe two different relays as one.
 */
function resolveTargets(options: FleetStatusOptions) {
  const given = [
    ['--pacing-table', options.pacingTable],
    ['--outbox-url', options.outboxUrl],
    ['--dlq-url', options.dlqUrl],
  ] as const;
  const missing = given.filter(([, value]) => value === undefined).map(([flag]) => flag);
  if (missing.length > 0 && missing.length < given.length) {
    throw new Error(
      `status without an id reads one relay: pass ${missing.join(' and ')} too (stack outputs PacingTableName, OutboxQueueUrl, DeadLetterQueueUrl), or none of them for local mode.`,
    );
  }
  const outboxUrl = options.outboxUrl ?? localQueueUrl(OUTBOX_QUEUE_NAME, options.stateDir);
  const dlqUrl = options.dlqUrl ?? localQueueUrl(DEAD_LETTER_QUEUE_NAME, options.stateDir);
  if (isLocalUrl(outboxUrl) !== isLocalUrl(dlqUrl)) {
    throw new Error(
      `--outbox-url ${outboxUrl} and --dlq-url ${dlqUrl} must belong to the same relay (one is local, the other is not).`,
    );
  }
  if (
    options.staticEgressUrl !== undefined &&
    isLocalUrl(options.staticEgressUrl) !== isLocalUrl(outboxUrl)
  ) {
    throw new Error(
      `--static-egress-url ${options.staticEgressUrl} and the outbox ${outboxUrl} must belong to the same relay (one is local, the other is not).`,
    );
  }
  return { pacingTable: options.pacingTable, outboxUrl, dlqUrl, staticEgressUrl: options.staticEgressUrl };
}

/** Reads the fleet's pacing state and the queues. Throws only when neither could be read at all. */
export async function readFleetStatus(options: FleetStatusOptions = {}): Promise<FleetStatus> {
  const targets = resolveTargets(options);
  const { limits, config, note } = readLimits(options.configPath);
  const tableOptions: TableOptions = {
    ...(targets.pacingTable && { table: targets.pacingTable }),
    ...(options.endpoint && { endpoint: options.endpoint }),
    ...(options.region && { region: options.region }),
    ...(options.stateDir && { stateDir: options.stateDir }),
  };
  const table = targets.pacingTable ?? PACING_TABLE_NAME;
  const sqs = sqsClientFor(
    {
      ...(options.sqsEndpoint && { sqsEndpoint: options.sqsEndpoint }),
      ...(options.region && { region: options.region }),
    },
    { dlqUrl: targets.dlqUrl, outboxUrl: targets.outboxUrl, tableOptions },
  );
  try {
    const [scan, outbox, deadLetter, staticEgress] = await Promise.all([
      scanPacingTable(tableOptions, table).then(
        (items) => ({ items, error: null }),
        (error: unknown) => ({ items: [], error: errorText(error) }),
      ),
      queueDepth(sqs, targets.outboxUrl),
      queueDepth(sqs, targets.dlqUrl),
      targets.staticEgressUrl === undefined ? null : queueDepth(sqs, targets.staticEgressUrl),
    ]);
    // Read after the calls: the schedules are compared with the moment they were read.
    const now = Date.now();
    if (scan.error !== null && 'error' in outbox && 'error' in deadLetter) {
      if (
        targets.pacingTable === undefined &&
        isLocalUrl(targets.outboxUrl) &&
        outbox.error === NOTHING_ANSWERS
      ) {
        const dynamoDb = options.endpoint ?? localDynamoDbEndpoint(options.stateDir);
        throw new Error(
          `local mode is not running: start it with \`npm start\` (tried the SQS endpoint ${new URL(targets.outboxUrl).origin} and the DynamoDB endpoint ${dynamoDb}: ${NOTHING_ANSWERS}).`,
        );
      }
      const local = targets.pacingTable === undefined ? ' Is local mode running (npm start)?' : '';
      throw new Error(
        `cannot read the pacing table ${table} (${scan.error}) nor the outbox ${targets.outboxUrl} (${outbox.error}).${local}`,
      );
    }
    return {
      now: new Date(now).toISOString(),
      day: new Date(now).toISOString().slice(0, 10),
      pacing: { table, error: scan.error, scopes: summarizePacing(scan.items, now, limits) },
      limits: { known: limits !== undefined, config, note },
      queues: { outbox, deadLetter, staticEgress, oldestAgeSeconds: null, oldestAgeNote: OLDEST_AGE_NOTE },
    };
  } finally {
    sqs.destroy();
  }
}

const RATE_WORDS: Record<RateStatus['limit'], string> = {
  messagesPerMinute: 'messages per minute',
  recipientsPerSecond: 'recipients per second',
};

const count = (value: number) => value.toLocaleString('en-US');

/** The status in words, for an operator. */
export function describeFleetStatus(status: FleetStatus): string {
  const unknown = status.limits.known ? 'no limit configured' : 'limit: see config';
  const source = status.limits.config !== null ? `limits from ${status.limits.config}` : status.limits.note;
  const lines = [`Pacing, UTC day ${status.day} (table ${status.pacing.table}; ${source}):`];
  if (status.limits.config !== null && status.limits.note !== null) lines.push(`  ${status.limits.note}`);
  if (status.pacing.error !== null) {
    lines.push(`  cannot read the pacing table: ${status.pacing.error}`);
  } else if (status.pacing.scopes.length === 0) {
    lines.push('  nothing paced since 00:00 UTC');
  }
  for (const scope of status.pacing.scopes) {
    lines.push(
      `  ${scope.provider} ${scope.kind === 'mailbox' ? `mailbox ${scope.mailbox}` : '(whole provider)'}`,
    );
    const { recipients, limit, capReached } = scope.today;
    if (limit !== null) {
      lines.push(
        `    recipients today: ${count(recipients)} of ${count(limit)}${capReached ? ': cap reached, sends wait until 00:00 UTC' : ''}`,
      );
    } else if (recipients > 0 || scope.limits === null) {
      lines.push(`    recipients today: ${count(recipients)} (${unknown})`);
    }
    for (const rate of scope.rates) {
      const value =
        rate.value !== null
          ? `limit ${count(rate.value)}`
          : rate.fromAccount
            ? "limit: the provider account's, read when the function starts"
            : unknown;
      lines.push(
        `    ${RATE_WORDS[rate.limit]} (${value}): ${rate.busy ? `busy, next free in ${rate.nextFreeInSeconds} s` : 'free'}`,
      );
    }
    if (scope.leases.limit !== null || scope.leases.held > 0) {
      const of = scope.leases.limit !== null ? ` of ${scope.leases.limit}` : ` (${unknown})`;
      lines.push(`    concurrent requests: ${scope.leases.held}${of} held now`);
    }
  }
  const { outbox, deadLetter, staticEgress } = status.queues;
  const depth = (queue: QueueDepth) =>
    `${count(queue.visible)} waiting, ${count(queue.inFlight)} in flight (being sent or retried), ${count(queue.delayed)} delayed (waiting for their turn)`;
  lines.push(
    'error' in outbox ? `Outbox: cannot read ${outbox.url}: ${outbox.error}` : `Outbox: ${depth(outbox)}`,
    `  age of the oldest message: ${status.queues.oldestAgeNote}`,
    ...(staticEgress === null
      ? []
      : [
          'error' in staticEgress
            ? `Static-egress queue: cannot read ${staticEgress.url}: ${staticEgress.error}`
            : `Static-egress queue (the providers that leave from the Elastic IPs): ${depth(staticEgress)}`,
        ]),
    'error' in deadLetter
      ? `Dead-letter queue: cannot read ${deadLetter.url}: ${deadLetter.error}`
      : `Dead-letter queue: ${count(deadLetter.visible + deadLetter.inFlight + deadLetter.delayed)} message(s)${deadLetter.inFlight > 0 ? ` (${count(deadLetter.inFlight)} held by a reader)` : ''} (mail-relay dlq list)`,
  );
  return lines.join('\n');
}
