import { readFileSync } from 'node:fs';
import path from 'node:path';
import { SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SESv2Client } from '@aws-sdk/client-sesv2';
import { createHttpTransport } from '../../lambda/providers/http-transport.ts';
import {
  credentialSecretsOf,
  DEFAULT_CONFIG_PATH,
  loadRelayConfig,
  type RelayConfig,
  relaySettingsFor,
} from '../../lib/config.ts';
import { LOCAL_REGION } from '../../local/local-names.ts';
import { ENDPOINTS_FILE, readLocalEndpoints } from '../local-endpoints.ts';
import type { Finding } from './findings.ts';
import { createDnsLookup, type DoctorSettings, type DoctorTarget } from './target.ts';

export interface DoctorOptions {
  /** The configuration file: checks the deployed relay it describes, against the real services. */
  readonly configPath?: string;
  /** `cdk deploy --outputs-file` output: the secrets the stack created, its egress IPs, its SES configuration set. */
  readonly outputsPath?: string;
  /** The stack in the outputs file, when it holds several. */
  readonly stack?: string;
  readonly region?: string;
  /** DNS servers (host:port) to ask instead of the system's resolver. */
  readonly dnsServers?: readonly string[];
  /** Recipient for the SMTP RCPT TO check; default each sender itself. */
  readonly testRecipient?: string;
  readonly timeoutMs?: number;
  readonly stateDir?: string;
}

/** Why doctor cannot run at all (exit code 2): no configuration, an unreadable outputs file, no region. */
export class DoctorCannotRun extends Error {}

/** The target, and what resolving it already found (a secret only the stack outputs could name). */
export interface ResolvedTarget {
  readonly target: DoctorTarget;
  readonly findings: readonly Finding[];
  /** Releases the clients. */
  close(): void;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const LOCAL_CREDENTIALS = { accessKeyId: 'local', secretAccessKey: 'local' };

/**
 * Local mode's stand-ins when it runs and no deployment was named (no --config, --outputs, --stack or
 * --region); otherwise the deployed relay the configuration describes, with the real services.
 */
export function resolveDoctorTarget(options: DoctorOptions): ResolvedTarget {
  const namesDeployment =
    options.configPath !== undefined ||
    options.outputsPath !== undefined ||
    options.stack !== undefined ||
    options.region !== undefined;
  const running = namesDeployment ? undefined : readLocalEndpoints(options.stateDir);
  if (running?.doctor) return localTarget(running.doctor, running.sesEndpoint, options);
  return deployedTarget(options);
}

type LocalDoctorEndpoints = NonNullable<NonNullable<ReturnType<typeof readLocalEndpoints>>['doctor']>;

function localTarget(
  local: LocalDoctorEndpoints,
  sesEndpoint: string,
  options: DoctorOptions,
): ResolvedTarget {
  const config = loadConfig(local.configPath);
  const clientConfig = { region: LOCAL_REGION, credentials: LOCAL_CREDENTIALS, maxAttempts: 1 };
  const secrets = new SecretsManagerClient({ ...clientConfig, endpoint: local.secretsManagerEndpoint });
  const ses = local.settings.ses ? new SESv2Client({ ...clientConfig, endpoint: sesEndpoint }) : undefined;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const graphTransport = createHttpTransport({
    timeoutMs,
    ...(local.graphCa !== undefined && { ca: local.graphCa }),
  });
  return {
    target: {
      description: `local mode (${local.configPath}, stand-ins from ${ENDPOINTS_FILE})`,
      local: true,
      config,
      settings: local.settings,
      secrets,
      ...(ses && { ses }),
      graphTransport,
      smtpCa: local.smtpCa,
      dns: createDnsLookup(options.dnsServers ?? (local.dnsServer ? [local.dnsServer] : undefined)),
      egressIps: ['127.0.0.1'],
      timeoutMs,
      ...(options.testRecipient !== undefined && { testRecipient: options.testRecipient }),
    },
    findings: [],
    close: () => {
      secrets.destroy();
      ses?.destroy();
    },
  };
}

function deployedTarget(options: DoctorOptions): ResolvedTarget {
  const configPath = options.configPath ?? DEFAULT_CONFIG_PATH;
  const config = loadConfig(configPath);
  const outputs = options.outputsPath ? readStackOutputs(options.outputsPath, options.stack) : {};
  const findings: Finding[] = [];

  // The secrets: the ARNs the configuration gives, else what the stack created (its outputs).
  const secretIds = new Map<string, string>();
  for (const secret of credentialSecretsOf(config)) {
    const arn = secret.arn ?? (secret.provider === 'graph' ? outputs.GraphCredentialSecretArn : undefined);
    if (arn !== undefined) secretIds.set(secret.provider, arn);
  }
  const sesConfigurationSetName = config.ses?.configurationSetName ?? outputs.SesConfigurationSetName;
  const all = relaySettingsFor(config, {
    // Only the provider sections are read: the rest names resources doctor does not check.
    queueUrl: 'https://sqs.invalid/doctor',
    deadLetterQueueUrl: 'https://sqs.invalid/doctor-dlq',
    ledgerTableName: 'doctor',
    suppressionTableName: 'doctor',
    credentialSecretIds: withGraphPlaceholder(config, secretIds, findings, options.outputsPath),
    ...(sesConfigurationSetName !== undefined && { sesConfigurationSetName }),
  });
  const settings: DoctorSettings = {
    ...(all.graph && secretIds.has('graph') && { graph: all.graph }),
    ...(all.smtp && { smtp: all.smtp }),
    ...(all.ses && { ses: all.ses }),
    ...(all.routes && { routes: all.routes }),
  };
  const region =
    options.region ??
    process.env.AWS_REGION ??
    process.env.AWS_DEFAULT_REGION ??
    regionInArn([...secretIds.values()]) ??
    regionInQueueUrl(outputs.OutboxQueueUrl);
  if (region === undefined) {
    throw new DoctorCannotRun(
      "doctor needs the relay's AWS region: pass --region (or set AWS_REGION), or --outputs with the stack outputs",
    );
  }
  const secrets = new SecretsManagerClient({ region });
  const ses = settings.ses ? new SESv2Client({ region }) : undefined;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const graphTransport = createHttpTransport({ timeoutMs });
  const egressIps = outputs.EgressIps?.split(',')
    .map((ip) => ip.trim())
    .filter((ip) => ip.length > 0);
  return {
    target: {
      description: `${configPath} in ${region}${options.outputsPath ? ` with the outputs in ${options.outputsPath}` : ''}`,
      local: false,
      config,
      settings,
      secrets,
      ...(ses && { ses }),
      graphTransport,
      dns: createDnsLookup(options.dnsServers),
      ...(egressIps && egressIps.length > 0 && { egressIps }),
      timeoutMs,
      ...(options.testRecipient !== undefined && { testRecipient: options.testRecipient }),
    },
    findings,
    close: () => {
      secrets.destroy();
      ses?.destroy();
    },
  };
}

/** Graph's settings need a secret: when only the stack knows it, doctor says so and skips Graph. */
function withGraphPlaceholder(
  config: RelayConfig,
  secretIds: Map<string, string>,
  findings: Finding[],
  outputsPath: string | undefined,
): Map<string, string> {
  if (!config.graph || secretIds.has('graph')) return secretIds;
  findings.push({
    area: 'graph',
    subject: 'graph',
    check: 'credential',
    verdict: 'problem',
    detail: outputsPath
      ? `the stack created Graph's credential secret, and ${outputsPath} has no GraphCredentialSecretArn`
      : "the stack created Graph's credential secret: doctor needs the stack outputs to find it",
    fix: 'Pass --outputs cdk-outputs.json (cdk deploy --outputs-file cdk-outputs.json), or set graph.credentialSecretArn.',
  });
  return new Map([...secretIds, ['graph', 'unknown']]);
}

function loadConfig(configPath: string): RelayConfig {
  try {
    return loadRelayConfig(configPath);
  } catch (error) {
    throw new DoctorCannotRun((error as Error).message);
  }
}

/** The outputs of one stack in a `cdk deploy --outputs-file` file ({"Stack": {"Output": "value"}}). */
export function readStackOutputs(file: string, stack: string | undefined): Record<string, string> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new DoctorCannotRun(
      `cannot read the stack outputs ${path.resolve(file)}: ${(error as Error).message}`,
    );
  }
  const stacks = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>;
  const names = Object.keys(stacks);
  const name = stack ?? (names.length === 1 ? names[0] : undefined);
  if (name === undefined || !Object.hasOwn(stacks, name)) {
    throw new DoctorCannotRun(
      stack === undefined
        ? `${file} holds ${names.length === 0 ? 'no stack' : `the stacks ${names.join(', ')}`}: name one with --stack`
        : `${file} has no stack ${stack} (it has ${names.join(', ') || 'none'})`,
    );
  }
  const outputs = stacks[name];
  return Object.fromEntries(
    Object.entries(typeof outputs === 'object' && outputs !== null ? outputs : {}).filter(
      (entry): entry is [string, string] => typeof entry[1] === 'string',
    ),
  );
}

function regionInArn(arns: readonly string[]): string | undefined {
  for (const arn of arns) {
    const region = arn.split(':')[3];
    if (arn.startsWith('arn:') && region) return region;
  }
  return undefined;
}

function regionInQueueUrl(url: string | undefined): string | undefined {
  return url ? /^https:\/\/sqs\.([a-z0-9-]+)\.amazonaws\.com/.exec(url)?.[1] : undefined;
}
