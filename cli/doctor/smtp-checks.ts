import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { isEmailAddress } from '../../lambda/core/address.ts';
import { RelayFailure } from '../../lambda/core/failures.ts';
import { cachedCredential, graphSecretReader } from '../../lambda/providers/graph/credentials.ts';
import { MsalTokenSource } from '../../lambda/providers/graph/token-source.ts';
import { EXCHANGE_ONLINE_SMTP_SCOPE } from '../../lambda/providers/smtp/definition.ts';
import { SMTP_FAILURES } from '../../lambda/providers/smtp/failures.ts';
import type { SmtpSettings } from '../../lambda/providers/smtp/settings.ts';
import { cachedSmtpCredentials } from '../../lambda/providers/smtp/smtp-credentials.ts';
import { exchangeCloudOfHost } from '../../local/dns-zone.ts';
import { type Finding, findingsOf, type Verdict } from './findings.ts';
import { type ProbeReply, SmtpProbe, type TlsOutcome } from './smtp-probe.ts';
import type { DoctorCheck, DoctorTarget } from './target.ts';

/** Certificates that expire sooner than this get a warning. */
const CERTIFICATE_WARNING_DAYS = 14;
const DAY_MS = 86_400_000;
/** Exchange Online's connector refusals: they name the IP the server saw, not the configuration. */
const IP_REFUSALS = new Set(['5.7.708', '5.7.64', '5.7.606', '5.7.54']);
const SEND_AS = /send as|send-as|sendas/i;

/**
 * Each SMTP connection as the send function would use it, up to RCPT TO and never DATA: the host's
 * DNS, the TCP connection (a timeout on port 25 is the cloud's block), the greeting, EHLO, TLS and
 * its certificate, AUTH with the credential from Secrets Manager (or an XOAUTH2 token from the Graph
 * app), then MAIL FROM and RCPT TO for each sender, RSET and QUIT.
 */
export const checkSmtp: DoctorCheck = async (target) => {
  const connections = target.settings.smtp ?? [];
  const results = await Promise.all(connections.map((connection) => checkConnection(connection, target)));
  return results.flat();
};

const finding = findingsOf('smtp');

/** One connection's findings, in the order its checks ran. */
class ConnectionFindings {
  readonly list: Finding[] = [];
  constructor(private readonly subject: string) {}
  add(check: string, verdict: Verdict, detail: string, fix?: string, code?: string): void {
    this.list.push(finding(this.subject, check, verdict, detail, { fix, code }));
  }
}

async function checkConnection(smtp: SmtpSettings, target: DoctorTarget): Promise<Finding[]> {
  const findings = new ConnectionFindings(smtp.name);
  const where = `${smtp.host}:${smtp.port}`;
  if (!(await resolves(smtp, target, findings))) return findings.list;
  const login = await loginFor(smtp, target, findings);

  let opened: Awaited<ReturnType<typeof SmtpProbe.open>>;
  try {
    opened = await SmtpProbe.open({
      host: smtp.host,
      port: smtp.port,
      implicitTls: smtp.tls === 'implicit',
      timeoutMs: target.timeoutMs,
      ...(target.smtpCa?.[smtp.name] !== undefined && { ca: target.smtpCa[smtp.name] }),
    });
  } catch (error) {
    connectionFailed(smtp, target, findings, error);
    return findings.list;
  }
  const { probe, greeting } = opened;
  try {
    findings.add('tcp', 'ok', `connected to ${where}${smtp.tls === 'implicit' ? ' over TLS' : ''}`);
    if (opened.tls) tlsFinding(findings, opened.tls, smtp, target);
    if (greeting.code !== 220) {
      refusal(findings, 'greeting', greeting, smtp, target, undefined);
      return findings.list;
    }
    findings.add('greeting', 'ok', firstLine(greeting));

    let ehlo = await probe.command(`EHLO ${hostname() || 'mail-relay-doctor'}`);
    if (ehlo.code !== 250) {
      refusal(findings, 'ehlo', ehlo, smtp, target, undefined);
      return findings.list;
    }
    const seenIp = clientIpIn(ehlo);
    if (smtp.tls === 'starttls') {
      if (!offers(ehlo, 'STARTTLS')) {
        findings.add(
          'starttls',
          smtp.requireTls ? 'problem' : 'warning',
          `${where} does not offer STARTTLS${smtp.requireTls ? ' and the connection requires TLS: the relay will not send through it' : ': mail would travel in clear text'}`,
          SMTP_FAILURES.ruleFor('TlsFailed')?.hint,
          smtp.requireTls ? 'TlsFailed' : undefined,
        );
        if (smtp.requireTls) return findings.list;
      } else {
        const reply = await probe.command('STARTTLS');
        if (reply.code !== 220) {
          refusal(findings, 'starttls', reply, smtp, target, seenIp);
          return findings.list;
        }
        const tls = await probe.startTls();
        tlsFinding(findings, tls, smtp, target);
        if (!tls.trusted) return findings.list;
        ehlo = await probe.command(`EHLO ${hostname() || 'mail-relay-doctor'}`);
      }
    } else if (smtp.tls === 'none') {
      findings.add(
        'tls',
        target.local ? 'ok' : 'warning',
        `tls is "none": mail to ${where} travels in clear text`,
        'Use tls "starttls" (port 25/587) or "implicit" (port 465) unless the server is on a private network.',
      );
    }

    if (!(await authenticate(probe, ehlo, smtp, login, findings, target, seenIp))) return findings.list;
    await envelopes(probe, smtp, findings, target, seenIp);
    egressFinding(findings, smtp, target, seenIp);
    return findings.list;
  } catch (error) {
    findings.add(
      'session',
      'problem',
      `${where}: ${(error as Error).message}`,
      undefined,
      (error as { code?: string }).code,
    );
    return findings.list;
  } finally {
    await probe.quit();
  }
}

/** The host's addresses through the target's DNS (an IP address needs none). */
async function resolves(
  smtp: SmtpSettings,
  target: DoctorTarget,
  findings: ConnectionFindings,
): Promise<boolean> {
  if (isIP(smtp.host) !== 0) {
    findings.add('dns', 'ok', `${smtp.host} is an IP address (no DNS needed)`);
    return true;
  }
  try {
    const addresses = await target.dns.addresses(smtp.host);
    if (addresses.length === 0) {
      findings.add(
        'dns',
        'problem',
        `${smtp.host} has no address (asked ${target.dns.source})`,
        smtp.mode === 'connector'
          ? "Use the tenant's MX host, <domain-with-dashes>.mail.protection.outlook.com (Microsoft 365 admin center > Domains > DNS records)."
          : 'Check the host name for typos.',
      );
      return false;
    }
    findings.add('dns', 'ok', `${smtp.host} is ${addresses.slice(0, 4).join(', ')}`);
    return true;
  } catch (error) {
    findings.add(
      'dns',
      'problem',
      `could not resolve ${smtp.host} via ${target.dns.source}: ${(error as Error).message}`,
    );
    return false;
  }
}

type Login =
  | { readonly kind: 'none' }
  | { readonly kind: 'password'; readonly username: string; readonly password: string }
  | { readonly kind: 'token'; readonly username: string; readonly token: string }
  | { readonly kind: 'failed' };

/** The credential the connection logs in with, read before connecting (a session must not idle). */
async function loginFor(
  smtp: SmtpSettings,
  target: DoctorTarget,
  findings: ConnectionFindings,
): Promise<Login> {
  if (smtp.auth === 'none') return { kind: 'none' };
  if (smtp.auth === 'xoauth2') {
    const graph = target.settings.graph;
    const username = smtp.senders.find(isEmailAddress);
    if (!graph || !username) {
      findings.add(
        'credential',
        'problem',
        !graph
          ? 'xoauth2 takes its tokens from the Graph app, and there is no graph section'
          : 'xoauth2 logs in as a sending mailbox: list one mailbox address among the senders',
      );
      return { kind: 'failed' };
    }
    try {
      const credential = cachedCredential(graphSecretReader(target.secrets), graph.credentialSecretId);
      const scope = smtp.oauthScope ?? EXCHANGE_ONLINE_SMTP_SCOPE;
      const token = await new MsalTokenSource(graph, credential, target.graphTransport, scope).getToken();
      findings.add('credential', 'ok', `an OAuth token for ${scope} from the Graph app`);
      return { kind: 'token', username, token };
    } catch (error) {
      failureFinding(findings, 'credential', error, 'could not get an OAuth token for XOAUTH2');
      return { kind: 'failed' };
    }
  }
  if (!smtp.credentialSecretId) {
    findings.add(
      'credential',
      'problem',
      `auth is ${smtp.auth} but no credential secret is configured`,
      SMTP_FAILURES.ruleFor('SmtpCredentialNotSet')?.hint,
    );
    return { kind: 'failed' };
  }
  try {
    const { username, password } = await cachedSmtpCredentials(
      target.secrets,
      smtp.credentialSecretId,
      smtp.name,
    ).get();
    findings.add('credential', 'ok', `user ${username} from the credential secret`);
    return { kind: 'password', username, password };
  } catch (error) {
    failureFinding(findings, 'credential', error, 'could not read the credential secret');
    return { kind: 'failed' };
  }
}

async function authenticate(
  probe: SmtpProbe,
  ehlo: ProbeReply,
  smtp: SmtpSettings,
  login: Login,
  findings: ConnectionFindings,
  target: DoctorTarget,
  seenIp: string | undefined,
): Promise<boolean> {
  if (login.kind === 'none') {
    if (smtp.mode === 'connector') {
      findings.add('auth', 'ok', 'none: the server must trust the relay by its IP (an inbound connector)');
    }
    return true;
  }
  if (login.kind === 'failed') return false;
  const method = smtp.auth.toUpperCase();
  const offered = authMethods(ehlo);
  // PLAIN and LOGIN carry the same secret: the relay uses whichever of the two the server offers.
  const usable =
    login.kind === 'token'
      ? offered.includes('XOAUTH2')
      : offered.includes(method) || offered.includes('PLAIN') || offered.includes('LOGIN');
  if (!usable) {
    findings.add(
      'auth',
      'problem',
      offered.length === 0
        ? `${smtp.host} offers no AUTH here${smtp.tls === 'starttls' ? ' (some servers offer it only after STARTTLS)' : ''}`
        : `${smtp.host} offers AUTH ${offered.join(' ')}, not ${method}`,
      'Use the auth method the server offers, or the submission port (587) where AUTH is offered.',
    );
    return false;
  }
  const reply =
    login.kind === 'token'
      ? await probe.command(
          `AUTH XOAUTH2 ${Buffer.from(`user=${login.username}\u0001auth=Bearer ${login.token}\u0001\u0001`).toString('base64')}`,
        )
      : await probe.command(
          `AUTH PLAIN ${Buffer.from(`\u0000${login.username}\u0000${login.password}`).toString('base64')}`,
        );
  if (reply.code === 235) {
    findings.add(
      'auth',
      'ok',
      `logged in as ${login.username} (${login.kind === 'token' ? 'XOAUTH2' : 'PLAIN'})`,
    );
    return true;
  }
  // XOAUTH2 refusals first send a 334 with a JSON error: end the exchange to read the final reply.
  const final = reply.code === 334 ? await probe.command('') : reply;
  refusal(findings, 'auth', final, smtp, target, seenIp, 'AuthenticationFailed');
  return false;
}

/** MAIL FROM and RCPT TO for each sender (a domain: its postmaster), then RSET: never DATA. */
async function envelopes(
  probe: SmtpProbe,
  smtp: SmtpSettings,
  findings: ConnectionFindings,
  target: DoctorTarget,
  seenIp: string | undefined,
): Promise<void> {
  const exchangeSubmission = smtp.mode === 'submission' && exchangeCloudOfHost(smtp.host) !== undefined;
  for (const sender of smtp.senders) {
    const from = isEmailAddress(sender) ? sender : `postmaster@${sender}`;
    const recipient = target.testRecipient ?? from;
    const mail = await probe.command(`MAIL FROM:<${from}>`);
    if (mail.code !== 250) {
      refusal(findings, `mail from ${from}`, mail, smtp, target, seenIp);
      await probe.command('RSET');
      continue;
    }
    const rcpt = await probe.command(`RCPT TO:<${recipient}>`);
    if (rcpt.code !== 250 && rcpt.code !== 251) {
      refusal(findings, `rcpt to ${recipient}`, rcpt, smtp, target, seenIp);
    } else {
      const note = exchangeSubmission
        ? ' (Exchange Online checks send-as only after DATA: a 5.7.60 "not authorized to send as" refusal shows only in a test send)'
        : '';
      const domainNote = isEmailAddress(sender)
        ? ''
        : ` (the domain ${sender}: its postmaster stands for every address)`;
      findings.add(
        `envelope ${from}`,
        'ok',
        `MAIL FROM <${from}> and RCPT TO <${recipient}> accepted${domainNote}${note}`,
      );
    }
    await probe.command('RSET');
  }
}

/** The IP the server saw (Exchange Online and smtp-server say it in their EHLO reply) against the relay's. */
function egressFinding(
  findings: ConnectionFindings,
  smtp: SmtpSettings,
  target: DoctorTarget,
  seenIp: string | undefined,
): void {
  if (smtp.mode !== 'connector' || target.local) return;
  if (target.egressIps === undefined) {
    findings.add(
      'egress ip',
      'warning',
      `the relay's egress IPs are unknown${seenIp ? `; ${smtp.host} saw this machine as ${seenIp}` : ''}`,
      'Pass the stack outputs (--outputs cdk-outputs.json, from cdk deploy --outputs-file) so doctor can compare the connector with the EgressIps output.',
    );
    return;
  }
  if (seenIp !== undefined && !target.egressIps.includes(seenIp)) {
    findings.add(
      'egress ip',
      'warning',
      `doctor ran from ${seenIp}, the relay sends from ${target.egressIps.join(', ')}: what ${smtp.host} accepted from this machine says little about the relay`,
      `The inbound connector must trust ${target.egressIps.join(', ')} (stack output InboundConnectorCommand).`,
    );
  } else {
    findings.add('egress ip', 'ok', `the relay sends from ${target.egressIps.join(', ')}`);
  }
}

/** A refusal, explained by the SMTP failure table; IP refusals seen from another machine are only a warning. */
function refusal(
  findings: ConnectionFindings,
  check: string,
  reply: ProbeReply,
  smtp: SmtpSettings,
  target: DoctorTarget,
  seenIp: string | undefined,
  fallbackCode?: string,
): void {
  const line = firstLine(reply);
  const code =
    reply.enhanced === '5.7.1' && SEND_AS.test(reply.text)
      ? 'SendAsDenied'
      : (reply.enhanced ?? fallbackCode ?? `SMTP${reply.code}`);
  const hint =
    SMTP_FAILURES.ruleFor(code)?.hint ??
    (fallbackCode ? SMTP_FAILURES.ruleFor(fallbackCode)?.hint : undefined);
  const elsewhere =
    IP_REFUSALS.has(reply.enhanced ?? '') &&
    !target.local &&
    target.egressIps !== undefined &&
    (seenIp === undefined || !target.egressIps.includes(seenIp));
  if (elsewhere) {
    findings.add(
      check,
      'warning',
      `${smtp.host} answered ${line}: it refuses this machine${seenIp ? ` (${seenIp})` : ''}, which is not the relay's egress IP (${target.egressIps?.join(', ')}); expected unless the connector trusts this machine too`,
      hint,
      code,
    );
    return;
  }
  findings.add(
    check,
    reply.code >= 400 && reply.code < 500 ? 'warning' : 'problem',
    `${smtp.host} answered ${line}`,
    hint ?? genericAdvice(reply),
    code,
  );
}

function genericAdvice(reply: ProbeReply): string {
  return reply.code >= 400 && reply.code < 500
    ? 'A temporary refusal: the relay retries these; if it persists, ask the server operator.'
    : 'The server refused for the reason it gives; ask its operator, or check the connector or account it expects.';
}

function connectionFailed(
  smtp: SmtpSettings,
  target: DoctorTarget,
  findings: ConnectionFindings,
  error: unknown,
): void {
  const code = (error as { code?: string }).code;
  const where = `${smtp.host}:${smtp.port}`;
  if (code === 'ETIMEDOUT' && smtp.port === 25) {
    findings.add(
      'tcp',
      'problem',
      `no connection to ${where} within ${target.timeoutMs} ms: port 25 is blocked on the way (from where doctor runs; many ISPs and clouds block it)`,
      `${SMTP_FAILURES.ruleFor('Port25Blocked')?.hint} From a laptop, run doctor from a network that allows port 25 to tell the two apart.`,
      'Port25Blocked',
    );
  } else if (code === 'ECONNREFUSED') {
    findings.add(
      'tcp',
      'problem',
      `nothing listens on ${where} (connection refused)`,
      'Check the host and port: 25 for a connector or MX, 587 for submission, 465 for implicit TLS.',
      code,
    );
  } else if (/certificate|TLS|SSL/i.test((error as Error).message ?? '')) {
    findings.add(
      'tls',
      'problem',
      `TLS with ${where} failed: ${(error as Error).message}`,
      SMTP_FAILURES.ruleFor('TlsFailed')?.hint,
      'TlsFailed',
    );
  } else {
    findings.add(
      'tcp',
      'problem',
      `could not connect to ${where}: ${(error as Error).message}`,
      undefined,
      code,
    );
  }
}

function tlsFinding(
  findings: ConnectionFindings,
  tls: TlsOutcome,
  smtp: SmtpSettings,
  target: DoctorTarget,
): void {
  const names = `${tls.subject ?? 'no subject'}, issued by ${tls.issuer ?? 'unknown'}`;
  if (!tls.trusted) {
    findings.add(
      'certificate',
      'problem',
      `the certificate of ${smtp.host} is not accepted (${tls.error ?? 'untrusted'}): ${names}`,
      SMTP_FAILURES.ruleFor('TlsFailed')?.hint,
      'TlsFailed',
    );
    return;
  }
  const daysLeft = tls.validTo ? Math.floor((tls.validTo.getTime() - Date.now()) / DAY_MS) : undefined;
  // Local mode's captures make a short-lived certificate at each start: their expiry says nothing.
  if (daysLeft !== undefined && daysLeft < CERTIFICATE_WARNING_DAYS && !target.local) {
    findings.add(
      'certificate',
      'warning',
      `${names}: expires in ${daysLeft} day(s)`,
      `Ask the operator of ${smtp.host} to renew it.`,
    );
    return;
  }
  findings.add(
    'certificate',
    'ok',
    `${tls.protocol ?? 'TLS'}, ${names}${daysLeft !== undefined ? `, valid ${daysLeft} more days` : ''}`,
  );
}

function failureFinding(findings: ConnectionFindings, check: string, error: unknown, what: string): void {
  if (error instanceof RelayFailure) {
    findings.add(check, 'problem', `${what}: ${error.reason}`, error.hint, error.code);
  } else {
    findings.add(check, 'problem', `${what}: ${(error as Error).message}`);
  }
}

function firstLine(reply: ProbeReply): string {
  return (reply.lines[0] ?? `${reply.code}`).slice(0, 300);
}

function offers(ehlo: ProbeReply, extension: string): boolean {
  return ehlo.lines.slice(1).some((line) => line.slice(4).toUpperCase().split(/\s+/)[0] === extension);
}

function authMethods(ehlo: ProbeReply): string[] {
  const line = ehlo.lines.slice(1).find((candidate) => /^AUTH[ =]/i.test(candidate.slice(4)));
  return line ? line.slice(9).toUpperCase().split(/\s+/).filter(Boolean) : [];
}

/** `250-host Hello [203.0.113.5]`: the client address the server saw, when it says it. */
function clientIpIn(ehlo: ProbeReply): string | undefined {
  const match = /\[([0-9a-fA-F:.]+)\]/.exec(ehlo.lines[0] ?? '');
  const ip = match?.[1]?.replace(/^::ffff:/, '');
  return ip && isIP(ip) !== 0 ? ip : undefined;
}
