import { X509Certificate } from 'node:crypto';
import { isEmailAddress } from '../../lambda/core/address.ts';
import { RelayFailure } from '../../lambda/core/failures.ts';
import { GRAPH_INLINE_ATTACHMENT_BYTES } from '../../lambda/core/limits.ts';
import {
  cachedCredential,
  type GraphCredential,
  graphSecretReader,
  parseGraphCredential,
} from '../../lambda/providers/graph/credentials.ts';
import { GRAPH_FAILURES } from '../../lambda/providers/graph/failures.ts';
import { graphFault } from '../../lambda/providers/graph/graph-provider.ts';
import { GRAPH_CLOUDS, type GraphSettings } from '../../lambda/providers/graph/settings.ts';
import { MsalTokenSource } from '../../lambda/providers/graph/token-source.ts';
import {
  type HttpResponse,
  type HttpTransport,
  TransportError,
} from '../../lambda/providers/http-transport.ts';
import { type Finding, findingsOf } from './findings.ts';
import type { DoctorCheck, DoctorTarget } from './target.ts';

/**
 * The Microsoft Graph checks of `mail-relay doctor`: the app credential in Secrets Manager, a token
 * from Entra ID (with the relay's own token source), the permissions the token carries, and a
 * harmless read of each mailbox the configuration names. Nothing is sent; no token or secret is
 * ever put in a finding.
 */
export const checkGraph: DoctorCheck = async (target) => {
  const graph = target.settings.graph;
  if (!graph) return [];
  const credential = await checkCredential(target, graph);
  if (credential.secretString === undefined) return [credential.finding];
  const token = await checkToken(target, graph, credential.secretString);
  if (token.accessToken === undefined) return [credential.finding, token.finding];
  const claims = claimsOf(token.accessToken);
  return [
    credential.finding,
    token.finding,
    ...checkClaims(target, graph, claims),
    ...(await checkMailboxes(target, graph, token.accessToken, readAccessOf(claims))),
  ];
};

const AREA = 'graph';
const SUBJECT = 'graph';
const DAY_MS = 86_400_000;
/** A certificate closer than this to its end is a warning: rotating it takes an admin. */
const CERTIFICATE_WARNING_DAYS = 30;
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Microsoft Graph's application id: the `aud` of v2.0 Graph tokens. */
const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';
/** Least privileged first: the one a finding names. */
const READ_ROLES = ['Mail.ReadBasic.All', 'Mail.ReadBasic', 'Mail.Read', 'Mail.ReadWrite'];
/** What reading a message's content (the bounce report reader) takes. */
const CONTENT_ROLES = ['Mail.Read', 'Mail.ReadWrite'];
const DOCS = 'docs/microsoft-graph.md';

const finding = findingsOf(AREA);

/** The fix the relay's failure table gives for a code (one place for the wording). */
function hintFor(code: string): string | undefined {
  return GRAPH_FAILURES.ruleFor(code)?.hint;
}

/** The target's transport with doctor's time limit on every exchange. */
function timedTransport(target: DoctorTarget): HttpTransport {
  return (request) =>
    target.graphTransport({ ...request, signal: request.signal ?? AbortSignal.timeout(target.timeoutMs) });
}

/**
 * The timed transport, keeping the last failure below HTTP: MSAL reports one only as
 * `network_error`, without the host or the reason.
 */
function watchedTransport(target: DoctorTarget): { transport: HttpTransport; lastError(): unknown } {
  const timed = timedTransport(target);
  let last: unknown;
  return {
    transport: async (request) => {
      try {
        return await timed(request);
      } catch (error) {
        last = error;
        throw error;
      }
    },
    lastError: () => last,
  };
}

// ---------------------------------------------------------------------------------------------
// 1. The credential

interface CredentialCheck {
  readonly finding: Finding;
  /** The secret's value when it holds a usable credential (kept in memory only, for the token). */
  readonly secretString?: string;
}

async function checkCredential(target: DoctorTarget, graph: GraphSettings): Promise<CredentialCheck> {
  const secretId = graph.credentialSecretId;
  try {
    const secretString = await graphSecretReader(target.secrets)(secretId);
    const credential = parseGraphCredential(secretString);
    return { finding: credentialFound(credential, secretString, secretId, target.local), secretString };
  } catch (error) {
    return { finding: credentialProblem(error, secretId) };
  }
}

function credentialFound(
  credential: GraphCredential,
  secretString: string,
  secretId: string,
  local: boolean,
): Finding {
  if (credential.kind === 'secret') {
    return finding(
      SUBJECT,
      'credential',
      'ok',
      `${secretId} holds a client secret (Entra ID shows when it expires: app registration > Certificates & secrets)`,
    );
  }
  // Parsed already, so the certificate field is a valid PEM certificate.
  const certificate = new X509Certificate((JSON.parse(secretString) as { certificate: string }).certificate);
  const validTo = new Date(certificate.validTo);
  const daysLeft = Math.floor((validTo.getTime() - Date.now()) / DAY_MS);
  const detail = `${secretId} holds a certificate (thumbprint ${certificate.fingerprint.replaceAll(':', '')}) valid until ${validTo.toISOString()}, ${daysLeft} day(s) from now`;
  // Local mode makes a short-lived certificate at each start: its expiry says nothing.
  if (daysLeft >= CERTIFICATE_WARNING_DAYS || local) return finding(SUBJECT, 'credential', 'ok', detail);
  return finding(SUBJECT, 'credential', 'warning', detail, {
    fix: `Upload a new certificate to the app registration (Certificates & secrets) and put it with its private key in the Graph credential secret before ${validTo.toISOString()}: Entra ID refuses an expired one and the relay gets no token.`,
  });
}

function credentialProblem(error: unknown, secretId: string): Finding {
  const failure = error instanceof RelayFailure ? error : undefined;
  const code = failure?.code;
  return finding(SUBJECT, 'credential', 'problem', `${failure?.reason ?? String(error)} (${secretId})`, {
    fix:
      (code !== undefined ? hintFor(code) : undefined) ??
      'Doctor could not reach Secrets Manager: check the AWS credentials and region it runs with, and try again.',
    code,
  });
}

// ---------------------------------------------------------------------------------------------
// 2. The token

interface TokenCheck {
  readonly finding: Finding;
  readonly accessToken?: string;
}

async function checkToken(
  target: DoctorTarget,
  graph: GraphSettings,
  secretString: string,
): Promise<TokenCheck> {
  // The secret was read once above; the token source gets it from memory rather than reading it again.
  const credential = cachedCredential(async () => secretString, graph.credentialSecretId);
  const watched = watchedTransport(target);
  const tokens = new MsalTokenSource(graph, credential, watched.transport);
  try {
    const accessToken = await tokens.getToken();
    const detail = `Entra ID issued a token to app ${graph.clientId} in tenant ${graph.tenantId} (${cloudOf(graph)})`;
    return { finding: finding(SUBJECT, 'token', 'ok', detail), accessToken };
  } catch (error) {
    const transportError = transportErrorIn(error) ?? transportErrorIn(watched.lastError());
    return {
      finding: transportError ? tokenUnreachable(target, graph, transportError) : tokenProblem(graph, error),
    };
  }
}

/** The graph.cloud whose hosts these are; undefined for other hosts (an override, local mode's peer). */
function cloudNameOf(graph: GraphSettings): string | undefined {
  return Object.entries(GRAPH_CLOUDS).find(
    ([, known]) => known.authorityHost === graph.authorityHost && known.graphEndpoint === graph.graphEndpoint,
  )?.[0];
}

/** Where tokens and Graph were asked for, for messages. */
function cloudOf(graph: GraphSettings): string {
  const cloud = cloudNameOf(graph);
  return `tokens from ${graph.authorityHost}, Graph at ${graph.graphEndpoint}${cloud ? `: graph.cloud ${cloud}` : ''}`;
}

const CLOUD_HOSTS = Object.entries(GRAPH_CLOUDS)
  .map(([name, cloud]) => `${name} ${new URL(cloud.authorityHost).host}`)
  .join(', ');

function tokenUnreachable(target: DoctorTarget, graph: GraphSettings, error: TransportError): Finding {
  return finding(
    SUBJECT,
    'token',
    'problem',
    `could not reach Entra ID at ${graph.authorityHost}: ${networkDetail(error, target)}`,
    {
      fix: `Check that this machine reaches ${new URL(graph.authorityHost).host} (proxy, firewall, DNS) and that graph.cloud names the tenant's cloud (token hosts: ${CLOUD_HOSTS}).`,
      code: error.code,
    },
  );
}

function tokenProblem(graph: GraphSettings, error: unknown): Finding {
  const failure = error instanceof RelayFailure ? error : undefined;
  const code = failure?.code;
  const hint =
    (code !== undefined ? hintFor(code) : undefined) ??
    'Check graph.tenantId, graph.clientId and the credential against the app registration.';
  // A tenant is only known in its own cloud: say which one was asked.
  const fix =
    code === 'AADSTS90002'
      ? `${hint} Doctor asked ${graph.authorityHost}${cloudNameOf(graph) ? ` (graph.cloud ${cloudNameOf(graph)})` : ''}; a tenant in a national cloud (usgov, usgov-dod, china) is not found in another one.`
      : hint;
  return finding(SUBJECT, 'token', 'problem', entraReason(failure?.reason ?? String(error)), { fix, code });
}

/**
 * MSAL words Entra ID's refusal "Error(s): 7000215 - Timestamp: … - Description: AADSTS7000215: …
 * - Trace ID: …": the description is what says what is wrong.
 */
function entraReason(reason: string): string {
  const description = /Description:\s*(.*?)(?:\s+-\s+(?:Trace ID|Correlation ID):.*)?$/s.exec(reason)?.[1];
  return description ? `Entra ID refused the token request: ${description}` : reason;
}

/** The network failure under a token or Graph failure, when that is what it was. */
function transportErrorIn(error: unknown, depth = 0): TransportError | undefined {
  if (error instanceof TransportError) return error;
  if (depth > 5 || typeof error !== 'object' || error === null) return undefined;
  const nested = error as { cause?: unknown; error?: unknown };
  return transportErrorIn(nested.cause, depth + 1) ?? transportErrorIn(nested.error, depth + 1);
}

function networkDetail(error: TransportError, target: DoctorTarget): string {
  // The transport words a deadline for the Lambda function; here it is doctor's time limit.
  return error.code === 'DeadlineExceeded' ? `no answer within ${target.timeoutMs} ms` : error.message;
}

// ---------------------------------------------------------------------------------------------
// 3. What the token carries

interface TokenClaims {
  readonly aud?: string;
  readonly tid?: string;
  readonly roles: readonly string[];
}

/** The token's payload, read without checking its signature (Graph does that; doctor only reads). */
function claimsOf(accessToken: string): TokenClaims | undefined {
  const parts = accessToken.split('.');
  if (parts.length !== 3) return undefined;
  let payload: unknown;
  try {
    payload = JSON.parse(Buffer.from(parts[1] ?? '', 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return undefined;
  const { aud, tid, roles } = payload as Record<string, unknown>;
  const audience = Array.isArray(aud) ? aud[0] : aud;
  return {
    ...(typeof audience === 'string' && { aud: audience }),
    ...(typeof tid === 'string' && { tid }),
    // Entra ID leaves `roles` out when the app has no application permission.
    roles: Array.isArray(roles) ? roles.filter((role): role is string => typeof role === 'string') : [],
  };
}

function checkClaims(target: DoctorTarget, graph: GraphSettings, claims: TokenClaims | undefined): Finding[] {
  if (!claims) {
    return [
      finding(
        SUBJECT,
        'roles',
        'warning',
        'the access token is not a JWT: doctor cannot read the permissions (roles) it carries',
        {
          fix: 'A test send from each sender proves Mail.Send.',
        },
      ),
    ];
  }
  return [
    ...audienceProblems(graph, claims),
    ...tenantProblems(graph, claims),
    mailSendFinding(claims, target.config.graph?.mailboxAccess ?? 'consent'),
    ...draftFindings(target, claims),
    ...featureRoleFindings(target, graph, claims),
  ];
}

function audienceProblems(graph: GraphSettings, claims: TokenClaims): Finding[] {
  const normalise = (value: string) => value.replace(/\/+$/, '').toLowerCase();
  const aud = claims.aud;
  if (aud === undefined || normalise(aud) === normalise(graph.graphEndpoint) || aud === GRAPH_APP_ID)
    return [];
  return [
    finding(
      SUBJECT,
      'audience',
      'problem',
      `the token is for ${aud}, not for Graph at ${graph.graphEndpoint}`,
      {
        fix: "Set graph.cloud to the cloud of the tenant (global, usgov, usgov-dod, china), and remove graph.graphEndpoint unless it names that cloud's Graph.",
      },
    ),
  ];
}

function tenantProblems(graph: GraphSettings, claims: TokenClaims): Finding[] {
  // A tenant given as a domain cannot be compared with the token's tenant id.
  if (!GUID.test(graph.tenantId) || claims.tid === undefined) return [];
  if (claims.tid.toLowerCase() === graph.tenantId.toLowerCase()) return [];
  return [
    finding(
      SUBJECT,
      'tenant',
      'problem',
      `the token is from tenant ${claims.tid}, not graph.tenantId ${graph.tenantId}`,
      {
        fix: 'Set graph.tenantId to the directory (tenant) id of the mailboxes (Entra admin center > Overview).',
      },
    ),
  ];
}

function mailSendFinding(claims: TokenClaims, access: 'consent' | 'rbac'): Finding {
  if (claims.roles.includes('Mail.Send')) {
    return finding(SUBJECT, 'roles', 'ok', `the token carries Mail.Send (roles: ${claims.roles.join(', ')})`);
  }
  if (access === 'rbac') {
    // Exchange checks an RBAC for Applications scope itself: the token never shows it.
    return finding(
      SUBJECT,
      'roles',
      'warning',
      'graph.mailboxAccess is "rbac": the token carries no Mail.Send, as expected with RBAC for Applications; Exchange checks the scope at each send, which doctor cannot see',
      {
        fix: `Send a test message from each sender (mail-relay send) to prove the scope; if it fails with ErrorAccessDenied, assign the "Application Mail.Send" role on a scope that holds the senders (${DOCS}, step 4).`,
      },
    );
  }
  return finding(
    SUBJECT,
    'roles',
    'problem',
    `the token carries no Mail.Send role (roles: ${claims.roles.length > 0 ? claims.roles.join(', ') : 'none'})`,
    {
      fix: `Add the Microsoft Graph application permission Mail.Send to the app registration and grant admin consent (${DOCS}, step 2). An app scoped only through Exchange RBAC for Applications carries no Mail.Send role in its token, which doctor cannot see: then a test send from each sender is the proof.`,
    },
  );
}

/**
 * Messages with more than 3 MB of attachments go through a draft (create, upload, send): Graph asks
 * Mail.ReadWrite to write the draft, which Mail.Send alone does not give.
 */
function draftFindings(target: DoctorTarget, claims: TokenClaims): Finding[] {
  if (target.config.message.maxMessageBytes <= GRAPH_INLINE_ATTACHMENT_BYTES) return [];
  if ((target.config.graph?.mailboxAccess ?? 'consent') === 'rbac') return [];
  if (claims.roles.includes('Mail.ReadWrite')) {
    return [
      finding(
        SUBJECT,
        'roles',
        'ok',
        'messages with more than 3 MB of attachments can go as drafts (Mail.ReadWrite)',
      ),
    ];
  }
  return [
    finding(
      SUBJECT,
      'roles',
      'warning',
      "the token carries no Mail.ReadWrite: a message with more than 3 MB of attachments, sent as a draft, is refused with ErrorAccessDenied and goes to its route's next provider (or the dead-letter queue)",
      {
        fix: `Add the Microsoft Graph application permission Mail.ReadWrite and grant admin consent (${DOCS}, step 2), or lower message.maxMessageBytes to 3000000.`,
      },
    ),
  ];
}

/** The read permissions the configured features need, each said with the feature that needs it. */
function featureRoleFindings(target: DoctorTarget, graph: GraphSettings, claims: TokenClaims): Finding[] {
  const findings: Finding[] = [];
  const has = (roles: readonly string[]) => roles.find((role) => claims.roles.includes(role));
  if (target.config.bounceReports) {
    const role = has(CONTENT_ROLES);
    findings.push(
      role
        ? finding(
            SUBJECT,
            'roles',
            'ok',
            `bounce reports can read the Inbox of bounceReports.mailboxes (${role})`,
          )
        : finding(
            SUBJECT,
            'roles',
            'problem',
            'bounceReports is set, but the token carries no Mail.Read: the bounce report reader cannot read the Inbox of bounceReports.mailboxes',
            {
              fix: `Add the Microsoft Graph application permission Mail.Read and grant admin consent, or assign "Application Mail.Read" on the app's RBAC scope (${DOCS}, section 9).`,
            },
          ),
    );
  }
  if ((graph.sentItemsLookupSeconds ?? 0) > 0) {
    const role = has(READ_ROLES);
    findings.push(
      role
        ? finding(SUBJECT, 'roles', 'ok', `lost-answer lookups can search the senders' mailboxes (${role})`)
        : finding(
            SUBJECT,
            'roles',
            'problem',
            'graph.sentItemsLookupSeconds is set, but the token carries no Mail.ReadBasic.All or Mail.Read: after a lost answer the relay cannot look for the sent copy',
            {
              fix: `Add the Microsoft Graph application permission Mail.ReadBasic.All and grant admin consent, or set graph.sentItemsLookupSeconds to 0 (${DOCS}, section 10).`,
            },
          ),
    );
  }
  return findings;
}

// ---------------------------------------------------------------------------------------------
// 4. The mailboxes

/** Whether the token lets the app read mailboxes: unknown when the token could not be read. */
type ReadAccess = 'yes' | 'no' | 'unknown';

function readAccessOf(claims: TokenClaims | undefined): ReadAccess {
  if (!claims) return 'unknown';
  return READ_ROLES.some((role) => claims.roles.includes(role)) ? 'yes' : 'no';
}

interface MailboxToCheck {
  readonly address: string;
  sender: boolean;
  bounceReports: boolean;
}

/** The mailboxes the configuration names, once each, in the order it names them. */
function mailboxesOf(target: DoctorTarget, graph: GraphSettings): MailboxToCheck[] {
  const byAddress = new Map<string, MailboxToCheck>();
  const add = (address: string, role: 'sender' | 'bounceReports') => {
    const key = address.toLowerCase();
    const entry = byAddress.get(key) ?? { address, sender: false, bounceReports: false };
    entry[role] = true;
    byAddress.set(key, entry);
  };
  for (const sender of graph.senders) if (isEmailAddress(sender)) add(sender, 'sender');
  for (const mailbox of target.config.bounceReports?.mailboxes ?? []) add(mailbox, 'bounceReports');
  return [...byAddress.values()];
}

async function checkMailboxes(
  target: DoctorTarget,
  graph: GraphSettings,
  accessToken: string,
  access: ReadAccess,
): Promise<Finding[]> {
  const domains = graph.senders.filter((sender) => !isEmailAddress(sender));
  const checked = await Promise.all(
    mailboxesOf(target, graph).map((mailbox) => checkMailbox(target, graph, accessToken, mailbox, access)),
  );
  // The domain note first: it is about the provider, as the findings before it.
  return [...(domains.length > 0 ? [domainSendersFinding(domains)] : []), ...checked];
}

function domainSendersFinding(domains: readonly string[]): Finding {
  return finding(
    SUBJECT,
    'mailbox',
    'warning',
    `graph.senders lists the domain(s) ${domains.join(', ')}: doctor cannot enumerate a domain's mailboxes`,
    { fix: 'Check a mailbox by listing its address in graph.senders, or by a test send from it.' },
  );
}

/** A read that changes nothing: the folder the relay uses there (bounce reports: Inbox; senders: Sent Items). */
async function checkMailbox(
  target: DoctorTarget,
  graph: GraphSettings,
  accessToken: string,
  mailbox: MailboxToCheck,
  access: ReadAccess,
): Promise<Finding> {
  const folder = mailbox.bounceReports ? 'inbox' : 'sentitems';
  const url = `${graph.graphEndpoint}/v1.0/users/${encodeURIComponent(mailbox.address)}/mailFolders/${folder}?$select=id`;
  let response: HttpResponse;
  try {
    response = await timedTransport(target)({
      method: 'GET',
      url,
      headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json' },
    });
  } catch (error) {
    return mailboxUnreachable(target, graph, mailbox, error);
  }
  if (response.status >= 200 && response.status < 300) {
    return finding(mailbox.address, 'mailbox', 'ok', `${roleOf(mailbox)}: exists and the app can reach it`);
  }
  return mailboxProblem(graph, mailbox, graphFault(response, Date.now()), access);
}

function roleOf(mailbox: MailboxToCheck): string {
  if (mailbox.sender && mailbox.bounceReports) return 'sender and bounce-report mailbox';
  return mailbox.sender ? 'sender' : 'bounce-report mailbox';
}

function mailboxUnreachable(
  target: DoctorTarget,
  graph: GraphSettings,
  mailbox: MailboxToCheck,
  error: unknown,
): Finding {
  const transportError = transportErrorIn(error);
  const reason = transportError ? networkDetail(transportError, target) : String(error);
  return finding(
    mailbox.address,
    'mailbox',
    'problem',
    `could not reach Graph at ${graph.graphEndpoint}: ${reason}`,
    {
      fix: `Check that this machine reaches ${new URL(graph.graphEndpoint).host} (proxy, firewall, DNS) and that graph.cloud names the tenant's cloud.`,
      code: transportError?.code,
    },
  );
}

function mailboxProblem(
  graph: GraphSettings,
  mailbox: MailboxToCheck,
  failure: RelayFailure,
  access: ReadAccess,
): Finding {
  const { code, reason } = failure;
  const problem = (detail: string, fix: string | undefined) =>
    finding(mailbox.address, 'mailbox', 'problem', `${roleOf(mailbox)}: ${detail}`, { fix, code });
  if (code === 'ErrorInvalidUser') {
    return problem(
      `no such mailbox in tenant ${graph.tenantId}`,
      mailbox.sender
        ? hintFor(code)
        : 'No Exchange Online mailbox has this address: correct bounceReports.mailboxes, or create the mailbox.',
    );
  }
  if (code === 'MailboxNotEnabledForRESTAPI') {
    return problem('the mailbox is inactive, soft-deleted or on-premises', hintFor(code));
  }
  if (code === 'ErrorAccessDenied' || code === 'AccessDenied')
    return accessDenied(mailbox, reason, access, problem);
  if (failure.failureClass === 'transient') {
    return finding(
      mailbox.address,
      'mailbox',
      'warning',
      `${roleOf(mailbox)}: Graph could not answer now: ${reason}`,
      {
        fix: 'Run doctor again in a moment.',
        code,
      },
    );
  }
  return problem(`Graph refused the read: ${reason}`, hintFor(code) ?? `See ${DOCS}, Troubleshooting.`);
}

function accessDenied(
  mailbox: MailboxToCheck,
  reason: string,
  access: ReadAccess,
  problem: (detail: string, fix: string | undefined) => Finding,
): Finding {
  // Without a read role the refusal says nothing about the mailbox: that is not a problem found.
  if (access === 'no') {
    return finding(
      mailbox.address,
      'mailbox',
      'warning',
      `${roleOf(mailbox)}: cannot check without a read permission (Mail.ReadBasic.All); with Mail.Send alone only a test send proves it`,
      {
        fix: 'Add the Microsoft Graph application permission Mail.ReadBasic.All (admin consent) for doctor to check mailboxes, or send a test message from this one.',
      },
    );
  }
  const scopeFix = `An Application Access Policy or an RBAC for Applications scope excludes this mailbox: add it to the scope (${DOCS}, step 4); changes take up to 2 hours.`;
  return problem(
    `the app may not reach this mailbox: ${reason}`,
    access === 'unknown' ? `${scopeFix} Or the app lacks a read permission (Mail.ReadBasic.All).` : scopeFix,
  );
}
