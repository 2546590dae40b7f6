import { stat } from 'node:fs/promises';
import { constants } from 'node:os';
import { parseArgs } from 'node:util';
import { isEmailAddress } from '../lambda/core/address.ts';
import { configuredSections } from '../lambda/providers/registry.ts';
import {
  ATTACHMENT_BUCKET_NAME,
  DEFAULT_DYNAMODB_PORT,
  DEFAULT_GRAPH_PEER_PORT,
  DEFAULT_LOCAL_VISIBILITY_TIMEOUT_SECONDS,
  DEFAULT_SES_PORT,
  DEFAULT_SMTP_INGRESS_PORT,
  DEFAULT_SMTP_PORT,
  DEFAULT_SQS_PORT,
  OUTBOX_QUEUE_NAME,
} from '../local/local-names.ts';
import type { LocalRelay } from '../local/local-relay.ts';
import { DEFAULT_STATE_DIR } from '../local/state-dir.ts';
import { type DlqOptions, dlqList, dlqRedrive, dlqShow, MOVED_BY_SQS } from './dlq.ts';
import { describeError, isMessageTooLong, SQS_MAX_MESSAGE_BYTES, tooLargeAdvice } from './errors.ts';
import {
  ENDPOINTS_FILE,
  localQueueUrl,
  readLocalEndpoints,
  removeLocalEndpoints,
  writeLocalEndpoints,
} from './local-endpoints.ts';
import { buildMessage, DEFAULT_LOCAL_QUEUE_URL, enqueue } from './send.ts';
import { describeDelivery, lookUpDelivery } from './status.ts';
import { describeSuppressions, withSuppressionList } from './suppression.ts';
import type { TableOptions } from './tables.ts';
import { trySender } from './try-sender.ts';
import { uploadAttachment } from './upload.ts';

/** What local mode's defaults resolve to, said once in the usage. */
const LOCAL_DEFAULT = ` (the running local mode's, from <state dir>/${ENDPOINTS_FILE}; else ${DEFAULT_LOCAL_QUEUE_URL})`;

const START_USAGE = `  mail-relay start [--sqs-port N] [--ses-port N] [--config PATH] [--visibility-timeout SECONDS]
                   [--graph-peer [--graph-peer-port N]] [--graph-credential FILE] [--smtp-port N]
                   [--dynamodb-port N] [--smtp-ingress-port N] [--state-dir DIR] [--fresh] [--json-logs]
      Runs the whole relay locally (SQS, S3, SES, Secrets Manager and DynamoDB emulators on 127.0.0.1,
      the real send handler). Ports also from MAIL_RELAY_SQS_PORT / MAIL_RELAY_SES_PORT / MAIL_RELAY_GRAPH_PEER_PORT
      (defaults ${DEFAULT_SQS_PORT}, ${DEFAULT_SES_PORT}, ${DEFAULT_GRAPH_PEER_PORT}); 0 picks a free port (the banner shows it).
      --graph-peer        also start the local Entra ID + Graph peer: the Graph route with no tenant.
      --graph-credential  a JSON file with a real app credential: Graph mail goes to the real tenant.
      --smtp-port         the SMTP capture that stands in for the configured SMTP server (default ${DEFAULT_SMTP_PORT};
                          also MAIL_RELAY_SMTP_PORT); what it receives is saved under <state dir>/smtp/. With
                          named connections (smtp.connections), one capture each: the first on this port, the
                          others on free ports (the banner shows them), saving under <state dir>/smtp/<name>/.
      --dynamodb-port     the DynamoDB emulator with the delivery ledger and suppression list (default
                          ${DEFAULT_DYNAMODB_PORT}; also MAIL_RELAY_DYNAMODB_PORT).
      --smtp-ingress-port the SMTP submission listener for applications that only speak SMTP, with the
                          configuration's ingress clients (default ${DEFAULT_SMTP_INGRESS_PORT}; also MAIL_RELAY_SMTP_INGRESS_PORT):
                          STARTTLS, then AUTH as the client name with the password the banner shows.
      --state-dir         where the outbox, the dead-letter queue, the delivery ledger and the suppression
                          list are kept across restarts (default ${DEFAULT_STATE_DIR}; also MAIL_RELAY_STATE_DIR).
      --fresh             forget them: start with empty queues, ledger and suppression list.
      --json-logs         print the functions' JSON logs and EMF metrics (what Lambda would log) instead of
                          one line per outcome: time, outcome, message id (its first 8 characters), provider,
                          recipients, ms and why; outcomes: sent, retried (and when), waiting (a provider
                          limit), dead-lettered (failure code), suppressed, duplicate, bounced, complained.
                          Without it, errors the functions log are one line each on stderr.
      Once running, it writes where everything listens to <state dir>/${ENDPOINTS_FILE} (removed when it
      stops): send, status, suppression, dlq and doctor read it, so they find local mode on any port.
      Ctrl-C (or SIGTERM) stops receiving, lets the batches in progress finish and saves the queues;
      a second Ctrl-C exits at once.`;

const SEND_USAGE = `  mail-relay send --from ADDR --to ADDR [--to ADDR …] --subject S (--text T | --html H)
                  [--cc ADDR] [--bcc ADDR] [--reply-to ADDR] [--attach FILE …] [--attach-s3 FILE …]
                  [--header "X-Name: value" …] [--tag name=value …] [--idempotency-key K]
                  [--queue-url URL] [--endpoint URL] [--region R] [--bucket NAME] [--s3-endpoint URL]
                  [--state-dir DIR]
      Validates a message against the contract and enqueues it; prints the SQS message id.
      --attach puts the file in the message (base64; SQS caps a message at 1 MiB); --attach-s3 uploads
      it to the attachment bucket first (--bucket, default ${ATTACHMENT_BUCKET_NAME} in local mode).
      Default queue: local mode's outbox${LOCAL_DEFAULT}.

  mail-relay send --jsonl FILE [--queue-url URL] [--endpoint URL] [--region R] [--bucket NAME]
                  [--s3-endpoint URL] [--state-dir DIR]
      Bulk: each line of FILE (- reads stdin) is one message in the JSON contract (README, "The message
      contract"); blank lines are skipped. Each is validated as the relay will, then they go out with
      SendMessageBatch, ten at a time, as the typed client (mail-relay/client) sends them: a line without
      an idempotencyKey gets one derived from its content, so sending the same file again sends nothing
      twice; attachments too big for SQS go through the attachment bucket. A progress line on stderr
      when it is a terminal, then a summary: sent, invalid (line number and field; not sent), failed
      (SQS's reason). Exit code 0 when every message was enqueued, 1 otherwise.`;

const STATUS_USAGE = `  mail-relay status ID [--table NAME] [--region R] [--endpoint URL] [--json] [--state-dir DIR]
      Was it sent, by which provider, when: reads the delivery ledger for an idempotency key or an SQS
      message id. Default: local mode's ledger; against AWS pass --table (stack output
      DeliveryLedgerTableName) and --region. --json prints the ledger entry as stored. Exit code 1 when
      nothing is recorded.

  mail-relay status [--config PATH] [--json]
                    [--pacing-table NAME --outbox-url URL --dlq-url URL [--static-egress-url URL]] [--region R]
                    [--endpoint URL] [--sqs-endpoint URL] [--state-dir DIR]
      Without an id: the fleet's pacing and the queues. Per mailbox or provider paced today (UTC): the
      recipients counted today against its day limit and whether that cap is reached, whether its rate
      schedules are busy (next free in N s), the concurrency leases held now. Then the outbox (waiting,
      in flight, delayed) and the dead-letter queue. Limits come from the configuration (--config,
      default mail-relay.config.json when there is one); without it: "limit: see config". Default: local
      mode; against AWS pass --pacing-table, --outbox-url and --dlq-url (stack outputs PacingTableName,
      OutboxQueueUrl, DeadLetterQueueUrl; with egress also --static-egress-url, StaticEgressQueueUrl) and
      --region. Exit code 0. --json prints {now, day,
      pacing: {table, error, scopes: [{scope, provider, kind, mailbox, limits, today: {recipients,
      limit, capReached}, rates: [{limit, value, freeAt, busy, nextFreeInSeconds, fromAccount}],
      leases: {held, limit}}]}, limits: {known, config, note}, queues: {outbox: {url, visible,
      inFlight, delayed}, deadLetter: {…}, staticEgress: {…} or null, oldestAgeSeconds: null, oldestAgeNote}}; unknown values
      are null.`;

const SUPPRESSION_USAGE = `  mail-relay suppression list [--json] | add ADDRESS [--reason TEXT] | remove ADDRESS
                         [--table NAME] [--region R] [--endpoint URL] [--state-dir DIR]
      The recipients the relay does not send to (hard bounces, complaints, N soft bounces in D days when
      suppression.softBounces is set, operators' additions). list shows each address's cause and the
      evidence (status, provider, an excerpt of the remote server's words); --json prints [{address,
      reason, since, expiresAt, cause, evidence: {status, diagnostic, provider}}], absent fields left
      out. add records cause operator; remove is the way back (it also forgets the address's soft
      bounces). Default: local mode's list; against AWS pass --table (stack output
      SuppressionListTableName) and --region.`;

const DOCTOR_USAGE = `  mail-relay doctor [--config PATH] [--outputs FILE] [--stack NAME] [--region R] [--only AREA,…]
                    [--dns-server HOST:PORT …] [--rcpt ADDR] [--timeout SECONDS] [--json] [--state-dir DIR]
      Checks a setup against the services without sending mail; each check ✓ ok, ✗ problem, ! warning,
      with what it found and the fix. Areas (--only): graph (the credential, a token and its roles:
      Mail.Send, Mail.Read when bounce reports or lost-answer lookups need it; each sender mailbox
      reachable), smtp (per connection: DNS, TCP (a port-25 timeout is the cloud's block), greeting,
      EHLO, STARTTLS and the certificate, AUTH, MAIL FROM and RCPT TO for each sender, then RSET and
      QUIT: never DATA), ses (account: sandbox, paused, quota; each identity verified, DKIM; the
      configuration set), dns (SPF of each sender domain allows the relay's path, DMARC, MX).
      Without --config, --outputs, --stack or --region, it checks the running local mode's stand-ins;
      with them, the deployed relay the configuration describes (default mail-relay.config.json),
      against the real services with your AWS credentials. --outputs: the file of cdk deploy
      --outputs-file (the secrets the stack created, EgressIps, the SES configuration set).
      --rcpt: the RCPT TO address (default: each sender). --json prints {target, exitCode, counts,
      findings: [{area, subject, check, verdict, detail, fix, code}]}.
      Exit code 0: no problem (warnings allowed); 1: a problem found; 2: doctor could not run.`;

const DLQ_SYNOPSIS = `  mail-relay dlq list [--reason CODE] [--json]
  mail-relay dlq show ID [--json]
  mail-relay dlq redrive [--reason CODE] [--id ID] [--dry-run] [--by NAME]`;

const DLQ_OPTIONS = `         options of all three: [--dlq-url URL] [--outbox-url URL] [--sqs-endpoint URL]
                               [--table NAME] [--endpoint URL] [--region R]
                               [--state-dir DIR]`;

const DLQ_INTRO = `      The dead-letter queue, judged by the delivery ledger. Messages stay in the queue: a command holds
      what it reads (SQS has no peek) and makes it visible again when it ends, or after 5 minutes if it
      is killed; run one dlq command at a time. Copies of one message (same ledger key and body) count
      as one. CODE is a MailRelay.FailureCode, or ${MOVED_BY_SQS} for messages
      SQS moved itself after maxReceiveCount (no reason attached). Default: local mode's queues and
      ledger; against AWS pass --dlq-url, --outbox-url and --table (stack outputs DeadLetterQueueUrl,
      OutboxQueueUrl, DeliveryLedgerTableName) and --region.`;

const DLQ_LIST = `      list     every message: ledger key, failure code, class, provider, reason, deliveries, age, copies,
               what the ledger says; then counts by failure code. Exit code 0, also when empty.
               --json prints {deadLetterQueueUrl, messages: [{ledgerKey, failureCode, failureClass,
               provider, reason, hint, attempts, movedBySqs, copies, dlqMessageIds, sourceMessageIds,
               firstDeadLetteredAt, lastDeadLetteredAt, ageSeconds, ledger: {state, verdict, says,
               release}}], countsByCode: {CODE: {messages, copies}}, total: {messages, copies},
               truncated}; absent values are null; verdict is one of sent, in-flight, conflict,
               maybe-sent, released, not-sent, no-entry, ledger-unavailable.`;

const DLQ_SHOW = `      show     one message: ID is a DLQ message id, the original SQS message id or the idempotency key.
               Every MailRelay.* attribute in words, the producer's attributes, the ledger entry, and
               from, recipients, subject, attachments, tags (never the body). Exit code 1 when nothing
               matches. --json: {matches: [list's fields + copyDetails, ledgerEntry, message]}.`;

const DLQ_REDRIVE = `      redrive  per message: already sent: its DLQ copies are deleted, not sent again; another function
               has it right now, or its idempotency key belongs to another message: skipped; otherwise
               your release is recorded in its ledger entry (--by, default the OS user name; this is what
               lets a message a provider may have sent (OutcomeUnknown) go out again), one copy goes back
               to the outbox (same body, the producer's attributes, MailRelay.SourceMessageId), then
               every DLQ copy is deleted. --dry-run prints what it would do and changes nothing. Exit code
               1 when --id matches nothing or a message could not be handled.`;

const DLQ_USAGE = [DLQ_SYNOPSIS, DLQ_OPTIONS, DLQ_INTRO, DLQ_LIST, DLQ_SHOW, DLQ_REDRIVE].join('\n');

const LOCAL_MODE_NOTE = `  Local mode: every command but start finds the running local mode through <state dir>/${ENDPOINTS_FILE}
  (state dir: --state-dir, else MAIL_RELAY_STATE_DIR, else ${DEFAULT_STATE_DIR}), whatever ports start was given.
  Explicit flags (--queue-url, --endpoint, --dlq-url …) and MAIL_RELAY_SQS_PORT / MAIL_RELAY_DYNAMODB_PORT win.`;

const USAGE = `Usage:
${[START_USAGE, SEND_USAGE, STATUS_USAGE, SUPPRESSION_USAGE, DLQ_USAGE, DOCTOR_USAGE, LOCAL_MODE_NOTE].join('\n\n')}

  mail-relay help COMMAND, or COMMAND --help (-h): the usage of one command (dlq list --help: of one action).`;

/** The usage of each command, and of each dlq action (with the options they share). */
const COMMAND_USAGE: Readonly<Record<string, string>> = {
  start: START_USAGE,
  send: SEND_USAGE,
  status: STATUS_USAGE,
  suppression: SUPPRESSION_USAGE,
  dlq: DLQ_USAGE,
  doctor: DOCTOR_USAGE,
};
const DLQ_ACTION_USAGE: Readonly<Record<string, string>> = {
  list: [DLQ_SYNOPSIS.split('\n')[0], DLQ_OPTIONS, DLQ_INTRO, DLQ_LIST].join('\n'),
  show: [DLQ_SYNOPSIS.split('\n')[1], DLQ_OPTIONS, DLQ_INTRO, DLQ_SHOW].join('\n'),
  redrive: [DLQ_SYNOPSIS.split('\n')[2], DLQ_OPTIONS, DLQ_INTRO, DLQ_REDRIVE].join('\n'),
};

/** The usage of a command (and, for dlq, of an action); undefined for an unknown command. */
export function usageOf(command: string, action?: string): string | undefined {
  if (!Object.hasOwn(COMMAND_USAGE, command)) return undefined;
  const text =
    command === 'dlq' && action !== undefined && Object.hasOwn(DLQ_ACTION_USAGE, action)
      ? DLQ_ACTION_USAGE[action]
      : COMMAND_USAGE[command];
  return `Usage:\n${text}\n\n${LOCAL_MODE_NOTE}`;
}

/** `--help` or `-h` among a command's arguments (before a `--`, after which everything is a value). */
function asksForHelp(args: readonly string[]): boolean {
  for (const arg of args) {
    if (arg === '--') return false;
    if (arg === '--help' || arg === '-h') return true;
  }
  return false;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined) {
    console.log(USAGE);
    return 1;
  }
  if (command === 'help' || command === '--help' || command === '-h') {
    // `mail-relay help dlq redrive`: the usage of that command (and action); alone, all of it.
    const [topic, action] = rest;
    if (topic === undefined) {
      console.log(USAGE);
      return 0;
    }
    const text = usageOf(topic, action);
    if (text === undefined) {
      console.error(`Unknown command "${topic}".\n\n${USAGE}`);
      return 1;
    }
    console.log(text);
    return 0;
  }
  // Before any parsing: --help works even next to flags that are missing or wrong, and starts nothing.
  if (Object.hasOwn(COMMAND_USAGE, command) && asksForHelp(rest)) {
    console.log(usageOf(command, rest[0]));
    return 0;
  }
  try {
    switch (command) {
      case 'start':
        return await start(rest);
      case 'send':
        return await send(rest);
      case 'status':
        return await status(rest);
      case 'suppression':
        return await suppression(rest);
      case 'dlq':
        return await dlq(rest);
      case 'doctor':
        return await doctor(rest);
      default:
        console.error(`Unknown command "${command}".\n\n${USAGE}`);
        return 1;
    }
  } catch (error) {
    const described = describeError(error, stateDirFlag(rest), command);
    const code = (error as { code?: unknown }).code;
    const parseError = typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
    console.error(
      parseError ? `${described}\n\`mail-relay ${command} --help\` shows its options.` : described,
    );
    // doctor's exit codes keep 1 for "a problem found"; not running at all is 2.
    return command === 'doctor' ? 2 : 1;
  }
}

/** The --state-dir a command was given, for the error messages (before or without parsing). */
function stateDirFlag(args: readonly string[]): string | undefined {
  for (const [index, arg] of args.entries()) {
    if (arg === '--') return undefined;
    if (arg === '--state-dir') return args[index + 1];
    if (arg.startsWith('--state-dir=')) return arg.slice('--state-dir='.length);
  }
  return undefined;
}

function port(flag: string | undefined, envName: string, fallback: number): number {
  const raw = flag ?? process.env[envName];
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0 || value > 65_535) {
    throw new Error(`${flag !== undefined ? 'port flag' : envName} must be a port number, got "${raw}"`);
  }
  return value;
}

async function start(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'sqs-port': { type: 'string' },
      'ses-port': { type: 'string' },
      config: { type: 'string' },
      'visibility-timeout': { type: 'string' },
      'graph-peer': { type: 'boolean' },
      'graph-peer-port': { type: 'string' },
      'graph-credential': { type: 'string' },
      'smtp-port': { type: 'string' },
      'dynamodb-port': { type: 'string' },
      'smtp-ingress-port': { type: 'string' },
      'state-dir': { type: 'string' },
      fresh: { type: 'boolean' },
      'json-logs': { type: 'boolean' },
    },
  });
  if (values['graph-peer'] && values['graph-credential']) {
    throw new Error(
      'use either --graph-peer (local Graph peer) or --graph-credential (real Graph), not both',
    );
  }
  // Loaded only here: the emulators and peers take a second to load, the other commands need none of it.
  const { startLocalRelay } = await import('../local/local-relay.ts');
  const relay = await startLocalRelay({
    sqsPort: port(values['sqs-port'], 'MAIL_RELAY_SQS_PORT', DEFAULT_SQS_PORT),
    sesPort: port(values['ses-port'], 'MAIL_RELAY_SES_PORT', DEFAULT_SES_PORT),
    ...(values.config && { configPath: values.config }),
    visibilityTimeoutSeconds: Number(
      values['visibility-timeout'] ?? DEFAULT_LOCAL_VISIBILITY_TIMEOUT_SECONDS,
    ),
    ...(values['graph-peer'] && {
      graphPeer: true,
      graphPeerPort: port(values['graph-peer-port'], 'MAIL_RELAY_GRAPH_PEER_PORT', DEFAULT_GRAPH_PEER_PORT),
    }),
    ...(values['graph-credential'] && { graphCredentialPath: values['graph-credential'] }),
    smtpPort: port(values['smtp-port'], 'MAIL_RELAY_SMTP_PORT', DEFAULT_SMTP_PORT),
    dynamoDbPort: port(values['dynamodb-port'], 'MAIL_RELAY_DYNAMODB_PORT', DEFAULT_DYNAMODB_PORT),
    smtpIngressPort: port(
      values['smtp-ingress-port'],
      'MAIL_RELAY_SMTP_INGRESS_PORT',
      DEFAULT_SMTP_INGRESS_PORT,
    ),
    stateDir: values['state-dir'] ?? process.env.MAIL_RELAY_STATE_DIR ?? DEFAULT_STATE_DIR,
    fresh: values.fresh === true,
    // Default: a person reads this console, one line per outcome; --json-logs: what Lambda would log.
    ...(values['json-logs'] !== true && {
      outcomeLines: {
        line: (text: string) => console.log(text),
        problem: (text: string) => console.error(text),
      },
    }),
  });
  // Where everything listens, for the other commands: they find local mode on whatever ports it got.
  const endpointsFile = await writeLocalEndpoints(relay).catch((error: Error) => {
    console.error(
      `Could not write ${ENDPOINTS_FILE} in ${relay.state.directory} (${error.message}): the other commands need the ports as flags.`,
    );
    return undefined;
  });
  console.log(banner(relay, endpointsFile, values['graph-credential'] !== undefined));
  await new Promise<void>((resolve) => {
    const stopSignals = ['SIGINT', 'SIGTERM'] as const;
    const onFirstSignal = () => {
      for (const signal of stopSignals) process.off(signal, onFirstSignal);
      // From now on, a second signal is someone who does not want to wait.
      for (const signal of stopSignals) {
        process.once(signal, () => {
          console.log('Exiting at once: the queues are as last saved (at most about half a second ago).');
          removeLocalEndpoints(relay.state.directory);
          process.exit(128 + constants.signals[signal]);
        });
      }
      resolve();
    };
    for (const signal of stopSignals) process.on(signal, onFirstSignal);
  });
  console.log('Stopping: no new batches; waiting for those in progress (Ctrl-C again to exit at once)…');
  try {
    await relay.stop();
  } finally {
    // Stopped: from now on the other commands say local mode is not running.
    removeLocalEndpoints(relay.state.directory);
  }
  console.log(
    `Stopped. The queues, the delivery ledger and the suppression list are kept in ${relay.state.directory}.`,
  );
  return 0;
}

/** `graphCredentialGiven`: --graph-credential was passed (the peer, when running, brings its own). */
function banner(relay: LocalRelay, endpointsFile?: string, graphCredentialGiven = false): string {
  const { ses, graph } = relay.settings;
  const lines = [
    'mail-relay local mode is running (Ctrl-C to stop)',
    '',
    ...restoredLine(relay),
    `  Outbox queue:      ${relay.queueUrl}`,
    `  Dead-letter queue: ${relay.deadLetterQueueUrl}`,
    `  SQS endpoint:      ${relay.sqsEndpoint}   (any AWS SDK, region us-east-1, any credentials)`,
  ];
  if (relay.attachmentBucket) {
    lines.push(
      `  Attachment bucket: ${relay.attachmentBucket.name} at ${relay.attachmentBucket.endpoint} (S3, path-style)`,
    );
  }
  if (ses) {
    lines.push(
      `  SES senders:       ${ses.identities.join(', ')}`,
      `  Captured mail:     ${relay.sesEndpoint}/   (web view)   ${relay.sesEndpoint}/store   (JSON)`,
      `  Exactly as sent:   ${relay.sesEndpoint}/mail-relay/sent   (envelopes)   ${relay.sesEndpoint}/mail-relay/raw/<id>.eml`,
    );
  }
  if (graph) {
    lines.push(`  Graph senders:     ${graph.senders.join(', ')}   (these go through Graph, not SES)`);
    lines.push(
      relay.graphPeer
        ? `  Graph peer:        ${relay.graphPeer.url}   received mail: ${relay.graphPeer.url}/mail-relay/delivered`
        : `  Graph:             ${graph.graphEndpoint} (tenant ${graph.tenantId})`,
    );
    if (!relay.graphPeer && !graphCredentialGiven) {
      // Local mode then gives Graph the stack's placeholder secret: say what happens to Graph mail.
      lines.push(
        "  Graph credential:  none: Graph mail fails over to its route's next provider, or, when Graph is the",
        '                     last, is retried and then dead-lettered (GraphCredentialNotSet). Start with',
        '                     --graph-peer (local Graph peer) or --graph-credential FILE (the real tenant).',
      );
    }
  }
  for (const { provider, peer, directory } of relay.smtpCaptures) {
    const connection = relay.settings.smtp?.find((candidate) => candidate.name === provider);
    const senders = connection?.senders.join(', ');
    lines.push(
      ...(provider === 'smtp'
        ? [
            `  SMTP senders:      ${senders}   (these go through SMTP, ${connection?.mode} mode)`,
            `  SMTP capture:      ${peer.host}:${peer.port}   received mail saved to ${directory}/*.eml`,
          ]
        : [
            `  SMTP connection:   ${provider}   (routes name it so)`,
            `    senders:         ${senders}   (${connection?.mode} mode)`,
            `    capture:         ${peer.host}:${peer.port}   received mail saved to ${directory}/*.eml`,
          ]),
    );
  }
  if (relay.smtpIngress) {
    const { host, port: listening, credentials } = relay.smtpIngress;
    lines.push(
      `  SMTP submission:   ${host}:${listening}   (STARTTLS required, then AUTH PLAIN or LOGIN; self-signed certificate)`,
    );
    for (const credential of credentials) {
      lines.push(
        `    client ${credential.client}:  user ${credential.username}   password ${credential.password}`,
      );
    }
  }
  lines.push(
    `  Delivery ledger:   ${relay.ledgerTableName} at ${relay.dynamoDbEndpoint}   (npx mail-relay status <message id or idempotency key>)`,
    `  Suppression list:  ${relay.suppressionTableName} at ${relay.dynamoDbEndpoint}`,
    `  State:             ${relay.state.directory}   (queues, ledger, suppression list: kept across restarts; --fresh forgets them)`,
    ...(endpointsFile
      ? [
          `  Endpoints file:    ${endpointsFile}   (send, status, suppression, dlq and doctor find local mode through it)`,
        ]
      : []),
    `  Outcome events:    ${relay.eventBridge.endpoint}/mail-relay/events   (what EventBridge would receive, source mail-relay)`,
  );
  if (ses) {
    lines.push(
      '  SES feedback:      send to bounce@, complaint@ or success@simulator.amazonses.com (the SES mailbox simulator)',
    );
  }
  // A sender the routes allow (without routes: the first sender of the first provider). Graph without
  // a credential cannot send: another provider's sender, when there is one.
  const providers = configuredSections(relay.settings).flatMap(({ definition, section }) =>
    definition.sendersOf(section),
  );
  const sendable = providers.filter(
    ({ provider }) => !(provider === 'graph' && graph && !relay.graphPeer && !graphCredentialGiven),
  );
  const sender = trySender(relay.settings.routes, sendable.length > 0 ? sendable : providers);
  lines.push(
    '',
    'Try:',
    `  npx mail-relay send --from ${sender} --to you@example.org --subject Hello --text "It works"`,
    '  npx mail-relay doctor   (checks the setup against these stand-ins, as it would the real services)',
    '',
  );
  return lines.join('\n');
}

/** Says what came back from the state directory, when anything did. */
function restoredLine(relay: LocalRelay): string[] {
  const { outbox, deadLetterQueue } = relay.state.restored;
  if (outbox === 0 && deadLetterQueue === 0) return [];
  return [
    `  Restored from ${relay.state.directory}: ${outbox} message(s) in the outbox, ${deadLetterQueue} in the dead-letter queue`,
    '',
  ];
}

async function send(args: string[]): Promise<number> {
  const many = { type: 'string', multiple: true } as const;
  const { values } = parseArgs({
    args,
    options: {
      from: { type: 'string' },
      to: many,
      cc: many,
      bcc: many,
      'reply-to': many,
      subject: { type: 'string' },
      text: { type: 'string' },
      html: { type: 'string' },
      attach: many,
      'attach-s3': many,
      bucket: { type: 'string' },
      's3-endpoint': { type: 'string' },
      header: many,
      tag: many,
      'idempotency-key': { type: 'string' },
      'queue-url': { type: 'string' },
      endpoint: { type: 'string' },
      region: { type: 'string' },
      'state-dir': { type: 'string' },
      jsonl: { type: 'string' },
    },
  });
  if (values.jsonl !== undefined) {
    const messageFlags = Object.keys(values).filter((flag) => !JSONL_FLAGS.has(flag));
    if (messageFlags.length > 0) {
      console.error(
        `send --jsonl takes each whole message from its lines, not ${messageFlags.map((flag) => `--${flag}`).join(', ')}.\n\n${usageOf('send')}`,
      );
      return 1;
    }
  }
  // Before anything is uploaded: files that cannot fit inline are refused with the option that fits them.
  const inline = values.attach ?? [];
  const inlineBytes = await base64Bytes(inline);
  if (inlineBytes > SQS_MAX_MESSAGE_BYTES) {
    console.error(`Error: ${tooLargeAdvice(undefined, inline)}`);
    return 1;
  }
  // --queue-url, else MAIL_RELAY_SQS_PORT, else the running local mode's outbox, else the default port.
  const running = values['queue-url'] === undefined ? readLocalEndpoints(values['state-dir']) : undefined;
  const queueUrl = values['queue-url'] ?? localQueueUrl(OUTBOX_QUEUE_NAME, values['state-dir']);
  const local = ['127.0.0.1', 'localhost'].includes(new URL(queueUrl).hostname);
  const fromFile = running !== undefined && queueUrl === running.queueUrl;
  const bucket =
    values.bucket ??
    (fromFile ? running.attachmentBucket?.name : undefined) ??
    (local ? ATTACHMENT_BUCKET_NAME : undefined);
  const uploads = values['attach-s3'] ?? [];
  const s3Endpoint =
    values['s3-endpoint'] ??
    (fromFile ? running.attachmentBucket?.endpoint : undefined) ??
    (local ? new URL(queueUrl).origin : undefined);
  if (values.jsonl !== undefined) {
    const { runSendJsonl } = await import('./send-jsonl.ts');
    return runSendJsonl(
      values.jsonl,
      {
        queueUrl,
        ...(values.endpoint && { endpoint: values.endpoint }),
        ...(values.region && { region: values.region }),
        ...(bucket && { bucket }),
        ...(s3Endpoint && { s3Endpoint }),
      },
      {
        out: (text) => console.log(text),
        // Rewritten in place, and only for a person watching: a pipe or a log file gets the summary only.
        ...(process.stderr.isTTY && { progress: (text: string) => process.stderr.write(`\r${text}\x1b[K`) }),
      },
    ).finally(() => {
      if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
    });
  }
  const uploaded = [];
  for (const file of uploads) {
    if (bucket === undefined) {
      throw new Error('--attach-s3 needs --bucket NAME (the AttachmentBucketName stack output)');
    }
    const key = await uploadAttachment(file, {
      bucket,
      ...(s3Endpoint && { endpoint: s3Endpoint }),
      ...(values.region && { region: values.region }),
    });
    uploaded.push({ file, bucket, key });
  }
  const built = await buildMessage({ ...values, uploaded });
  if ('problems' in built) {
    console.error(
      `The message is not valid:\n${built.problems.map((problem) => `  - ${problem}`).join('\n')}`,
    );
    return 1;
  }
  const bytes = Buffer.byteLength(built.body);
  if (bytes > SQS_MAX_MESSAGE_BYTES) {
    console.error(`Error: ${tooLargeAdvice(bytes, inline)}`);
    return 1;
  }
  try {
    const id = await enqueue(built.body, {
      queueUrl,
      ...(values.endpoint && { endpoint: values.endpoint }),
      ...(values.region && { region: values.region }),
    });
    console.log(id);
    return 0;
  } catch (error) {
    if (!isMessageTooLong(error)) throw error;
    console.error(`Error: ${tooLargeAdvice(bytes, inline)} (SQS: ${(error as Error).message})`);
    return 1;
  }
}

/** The flags of `send --jsonl`: where the queue and the bucket are; the messages come from the lines. */
const JSONL_FLAGS = new Set([
  'jsonl',
  'queue-url',
  'endpoint',
  'region',
  'bucket',
  's3-endpoint',
  'state-dir',
]);

/** The bytes the files take in a message, base64-encoded; unreadable files count 0 (buildMessage reports them). */
async function base64Bytes(files: readonly string[]): Promise<number> {
  let total = 0;
  for (const file of files) {
    const size = await stat(file).then(
      (stats) => stats.size,
      () => 0,
    );
    total += Math.ceil(size / 3) * 4;
  }
  return total;
}

/** Options of the commands that read a relay table: local mode's by default, a stack's with --table. */
const TABLE_OPTIONS = {
  table: { type: 'string' },
  region: { type: 'string' },
  endpoint: { type: 'string' },
  'state-dir': { type: 'string' },
} as const;

function tableOptions(values: {
  table?: string;
  region?: string;
  endpoint?: string;
  'state-dir'?: string;
}): TableOptions {
  return {
    ...(values.table && { table: values.table }),
    ...(values.region && { region: values.region }),
    ...(values.endpoint && { endpoint: values.endpoint }),
    ...(values['state-dir'] && { stateDir: values['state-dir'] }),
  };
}

async function status(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...TABLE_OPTIONS,
      json: { type: 'boolean' },
      'pacing-table': { type: 'string' },
      'outbox-url': { type: 'string' },
      'dlq-url': { type: 'string' },
      'static-egress-url': { type: 'string' },
      'sqs-endpoint': { type: 'string' },
      config: { type: 'string' },
    },
  });
  const [id] = positionals;
  if (positionals.length > 1) {
    console.error(`status takes one id: an idempotency key or an SQS message id.\n\n${usageOf('status')}`);
    return 1;
  }
  // The fleet's flags name another table and the queues; the ledger's --table means nothing without an id.
  const fleetFlags = [
    'pacing-table',
    'outbox-url',
    'dlq-url',
    'static-egress-url',
    'sqs-endpoint',
    'config',
  ] as const;
  const wrong =
    id === undefined
      ? values.table !== undefined
        ? ['table']
        : []
      : fleetFlags.filter((flag) => values[flag] !== undefined);
  if (wrong.length > 0) {
    const form = id === undefined ? 'status without an id' : 'status ID';
    const hint =
      id === undefined ? ' (it reads the pacing table: --pacing-table, stack output PacingTableName)' : '';
    console.error(
      `${form} does not take ${wrong.map((flag) => `--${flag}`).join(', ')}${hint}.\n\n${usageOf('status')}`,
    );
    return 1;
  }
  if (id === undefined) {
    // Loaded only here: it reads the configuration (lib/config.ts), which the other commands need not.
    const { describeFleetStatus, readFleetStatus } = await import('./fleet-status.ts');
    const fleet = await readFleetStatus({
      ...(values['pacing-table'] && { pacingTable: values['pacing-table'] }),
      ...(values['outbox-url'] && { outboxUrl: values['outbox-url'] }),
      ...(values['dlq-url'] && { dlqUrl: values['dlq-url'] }),
      ...(values['static-egress-url'] && { staticEgressUrl: values['static-egress-url'] }),
      ...(values['sqs-endpoint'] && { sqsEndpoint: values['sqs-endpoint'] }),
      ...(values.endpoint && { endpoint: values.endpoint }),
      ...(values.region && { region: values.region }),
      ...(values.config && { configPath: values.config }),
      ...(values['state-dir'] && { stateDir: values['state-dir'] }),
    });
    console.log(values.json ? JSON.stringify(fleet, null, 2) : describeFleetStatus(fleet));
    return 0;
  }
  const record = await lookUpDelivery(id, tableOptions(values));
  if (!record) {
    console.error(`No delivery recorded for ${id} (the ledger keeps entries for ledger.retentionDays).`);
    return 1;
  }
  console.log(values.json ? JSON.stringify(record, null, 2) : describeDelivery(record));
  return 0;
}

async function suppression(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { ...TABLE_OPTIONS, reason: { type: 'string' }, json: { type: 'boolean' } },
  });
  const [action, address, ...extra] = positionals;
  const options = tableOptions(values);
  if (action === 'list' && address === undefined) {
    const entries = await withSuppressionList(options, (list) => list.list());
    console.log(values.json ? JSON.stringify(entries, null, 2) : describeSuppressions(entries));
    return 0;
  }
  if ((action === 'add' || action === 'remove') && address !== undefined && extra.length === 0) {
    if (!isEmailAddress(address)) {
      console.error(`"${address}" is not an email address.`);
      return 1;
    }
    await withSuppressionList(options, (list) =>
      action === 'add'
        ? list.suppress({
            address,
            reason: values.reason ?? 'added by an operator',
            since: new Date().toISOString(),
            cause: 'operator',
          })
        : list.remove(address),
    );
    console.log(
      `${action === 'add' ? 'Suppressed' : 'Removed from the suppression list'}: ${address.toLowerCase()}`,
    );
    return 0;
  }
  console.error(`suppression takes list, add ADDRESS or remove ADDRESS.\n\n${usageOf('suppression')}`);
  return 1;
}

async function dlq(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      ...TABLE_OPTIONS,
      'dlq-url': { type: 'string' },
      'outbox-url': { type: 'string' },
      'sqs-endpoint': { type: 'string' },
      reason: { type: 'string' },
      id: { type: 'string' },
      'dry-run': { type: 'boolean' },
      by: { type: 'string' },
      json: { type: 'boolean' },
    },
  });
  const [action, id, ...extra] = positionals;
  const options: DlqOptions = {
    ...tableOptions(values),
    ...(values['dlq-url'] && { dlqUrl: values['dlq-url'] }),
    ...(values['outbox-url'] && { outboxUrl: values['outbox-url'] }),
    ...(values['sqs-endpoint'] && { sqsEndpoint: values['sqs-endpoint'] }),
  };
  const misplaced = (allowed: readonly string[]) =>
    ['reason', 'id', 'dry-run', 'by', 'json'].filter(
      (flag) => values[flag as keyof typeof values] !== undefined && !allowed.includes(flag),
    );
  const refuse = (flags: string[]) => {
    console.error(
      `dlq ${action} does not take ${flags.map((flag) => `--${flag}`).join(', ')}.\n\n${usageOf('dlq', action)}`,
    );
    return 1;
  };
  if (action === 'list' && id === undefined) {
    const wrong = misplaced(['reason', 'json']);
    if (wrong.length > 0) return refuse(wrong);
    return dlqList(options, { ...(values.reason && { reason: values.reason }), json: values.json === true });
  }
  if (action === 'show' && id !== undefined && extra.length === 0) {
    const wrong = misplaced(['json']);
    if (wrong.length > 0) return refuse(wrong);
    return dlqShow(options, id, { json: values.json === true });
  }
  if (action === 'redrive' && id === undefined) {
    const wrong = misplaced(['reason', 'id', 'dry-run', 'by']);
    if (wrong.length > 0) return refuse(wrong);
    return dlqRedrive(options, {
      ...(values.reason && { reason: values.reason }),
      ...(values.id && { id: values.id }),
      ...(values.by && { by: values.by }),
      dryRun: values['dry-run'] === true,
    });
  }
  console.error(`dlq takes list, show ID or redrive.\n\n${usageOf('dlq')}`);
  return 1;
}

async function doctor(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      outputs: { type: 'string' },
      stack: { type: 'string' },
      region: { type: 'string' },
      only: { type: 'string' },
      'dns-server': { type: 'string', multiple: true },
      rcpt: { type: 'string' },
      timeout: { type: 'string' },
      json: { type: 'boolean' },
      'state-dir': { type: 'string' },
    },
  });
  // Loaded only here: the checks bring the provider clients.
  const { DOCTOR_AREAS, runDoctor } = await import('./doctor/doctor.ts');
  const areas = values.only?.split(',').map((area) => area.trim());
  const unknown = areas?.filter((area) => !(DOCTOR_AREAS as readonly string[]).includes(area)) ?? [];
  const timeout = values.timeout === undefined ? undefined : Number(values.timeout);
  if (unknown.length > 0 || (timeout !== undefined && !(timeout > 0))) {
    console.error(
      unknown.length > 0
        ? `--only takes ${DOCTOR_AREAS.join(', ')} (comma-separated), not ${unknown.join(', ')}`
        : `--timeout must be a number of seconds above 0, got "${values.timeout}"`,
    );
    return 2;
  }
  if (values.rcpt !== undefined && !isEmailAddress(values.rcpt)) {
    console.error(`--rcpt must be an email address, got "${values.rcpt}"`);
    return 2;
  }
  return runDoctor({
    json: values.json === true,
    ...(areas && { areas: areas as (typeof DOCTOR_AREAS)[number][] }),
    ...(values.config && { configPath: values.config }),
    ...(values.outputs && { outputsPath: values.outputs }),
    ...(values.stack && { stack: values.stack }),
    ...(values.region && { region: values.region }),
    ...(values['dns-server'] && { dnsServers: values['dns-server'] }),
    ...(values.rcpt && { testRecipient: values.rcpt }),
    ...(timeout !== undefined && { timeoutMs: timeout * 1000 }),
    ...(values['state-dir'] && { stateDir: values['state-dir'] }),
  });
}
