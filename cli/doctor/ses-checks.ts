import {
  GetAccountCommand,
  type GetAccountCommandOutput,
  GetConfigurationSetCommand,
  GetEmailIdentityCommand,
  type GetEmailIdentityCommandOutput,
  type SESv2Client,
} from '@aws-sdk/client-sesv2';
import { NETWORK_ERROR_CODES } from '../../lambda/core/failures.ts';
import { truncate } from '../../lambda/core/text.ts';
import { SES_FAILURES } from '../../lambda/providers/ses/failures.ts';
import { sesFault } from '../../lambda/providers/ses/ses-provider.ts';
import type { SesSettings } from '../../lambda/providers/ses/settings.ts';
import { type Finding, findingsOf } from './findings.ts';
import type { DoctorCheck, DoctorTarget } from './target.ts';

const AREA = 'ses';
const ACCOUNT = 'account';
/** More than this share of the day's quota used: a warning before sends start failing. */
const QUOTA_WARNING_SHARE = 0.8;

/** Codes that say doctor's own AWS credentials are missing or refused, not that SES is unreachable. */
const CREDENTIAL_ERROR_CODES = new Set([
  'CredentialsProviderError',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'ExpiredTokenException',
  'ExpiredToken',
]);

/** The advice of the relay's SES failure table for a code, so doctor and dead letters say the same. */
const hintFor = (code: string): string => SES_FAILURES.ruleFor(code)?.hint ?? '';

/**
 * Amazon SES as the relay would use it, read without sending: the account (sending, enforcement,
 * sandbox, the day's quota), each identity of `ses.identities` (verified, DKIM, custom MAIL FROM)
 * and the configuration set every send names.
 */
export const checkSes: DoctorCheck = async (target) => {
  const settings = target.settings.ses;
  if (settings === undefined) return [];
  const client = target.ses;
  if (client === undefined) {
    return [
      finding(ACCOUNT, 'client', 'problem', 'doctor has no SES client for the ses section', {
        fix: 'this is a bug in doctor: report it with the command line you ran',
      }),
    ];
  }
  let region: string;
  try {
    region = await client.config.region();
  } catch (error) {
    return [
      finding(ACCOUNT, 'region', 'problem', `no AWS region for SES: ${messageOf(error)}`, {
        fix: 'give the region the relay is deployed in (--region, AWS_REGION or the profile)',
      }),
    ];
  }
  const ses: SesContext = {
    client,
    target,
    settings,
    region,
    where: target.local ? `${region} (local mode's SES stand-in)` : region,
    endpoint: await endpointOf(client, region),
  };

  const account = await call(ses, 'ses:GetAccount', (signal) =>
    client.send(new GetAccountCommand({}), { abortSignal: signal }),
  );
  // No answer at all (or no credentials): every other call would fail the same way.
  if (!account.ok && account.failure.fatal) return [failureFinding(ses, ACCOUNT, account.failure)];
  const findings = account.ok
    ? accountFindings(ses, account.value)
    : [failureFinding(ses, ACCOUNT, account.failure)];

  const identities = await Promise.all(
    settings.identities.map((identity) => identityFindings(ses, identity)),
  );
  findings.push(...identities.flat());
  if (settings.configurationSetName !== undefined) {
    findings.push(await configurationSetFinding(ses, settings.configurationSetName));
  }
  return findings;
};

interface SesContext {
  readonly client: SESv2Client;
  readonly target: DoctorTarget;
  readonly settings: SesSettings;
  readonly region: string;
  /** The region as the report states it. */
  readonly where: string;
  readonly endpoint: string;
}

const finding = findingsOf(AREA);

// --- the account ---

function accountFindings(ses: SesContext, account: GetAccountCommandOutput): Finding[] {
  const findings: Finding[] = [];
  const configurationSet = ses.settings.configurationSetName;
  findings.push(
    account.SendingEnabled === false
      ? finding(
          ACCOUNT,
          'sending',
          'problem',
          `sending is paused for the whole account in ${ses.where}: every SES send fails (SendingPausedException)`,
          {
            fix: `${hintFor('SendingPausedException')} SES paused the account itself: see the reputation page of the SES console (Account dashboard) in ${ses.region}, or AWS Support, to resume it. The relay's own brake pauses only its configuration set${configurationSet !== undefined ? ` (${configurationSet})` : ''}, never the account.`,
          },
        )
      : finding(ACCOUNT, 'sending', 'ok', `sending is enabled for the account in ${ses.where}`),
  );
  findings.push(enforcementFinding(ses, account.EnforcementStatus));
  findings.push(
    account.ProductionAccessEnabled === false
      ? finding(
          ACCOUNT,
          'production-access',
          'warning',
          `the account is in the SES sandbox in ${ses.where}: it sends only to verified recipients, at most ${account.SendQuota?.Max24HourSend ?? 200} messages a day; a send to any other recipient is refused (MessageRejected)`,
          {
            fix: `request production access for ${ses.region} (SES console, Account dashboard: Request production access); until then verify every recipient as an identity`,
          },
        )
      : finding(ACCOUNT, 'production-access', 'ok', 'production access: sends to any recipient'),
  );
  findings.push(quotaFinding(account.SendQuota));
  return findings;
}

function enforcementFinding(ses: SesContext, status: string | undefined): Finding {
  switch (status) {
    case 'HEALTHY':
      return finding(ACCOUNT, 'enforcement', 'ok', 'enforcement status HEALTHY');
    case 'PROBATION':
      return finding(
        ACCOUNT,
        'enforcement',
        'warning',
        `the account is on probation (EnforcementStatus PROBATION) in ${ses.where}: SES pauses its sending unless its bounce or complaint rate comes down`,
        {
          fix: `read the case on the reputation page of the SES console (Account dashboard) in ${ses.region} and answer it; clean the recipient lists (the suppression list keeps hard bounces and complaints out)`,
        },
      );
    case 'SHUTDOWN':
      return finding(
        ACCOUNT,
        'enforcement',
        'problem',
        `SES shut the account down (EnforcementStatus SHUTDOWN) in ${ses.where}: it may not send`,
        { fix: hintFor('AccountSuspendedException'), code: 'SHUTDOWN' },
      );
    default:
      return finding(
        ACCOUNT,
        'enforcement',
        'warning',
        `enforcement status ${status ?? '(none given)'}, which doctor does not know`,
        { fix: `look at the reputation page of the SES console (Account dashboard) in ${ses.region}` },
      );
  }
}

function quotaFinding(quota: GetAccountCommandOutput['SendQuota']): Finding {
  const max = quota?.Max24HourSend;
  const sent = quota?.SentLast24Hours ?? 0;
  const rate = quota?.MaxSendRate;
  const perSecond = rate !== undefined ? `, at most ${rate} a second` : '';
  if (max === undefined) {
    return finding(ACCOUNT, 'quota', 'warning', 'GetAccount gave no sending quota', {
      fix: 'look at the sending quota in the SES console (Account dashboard)',
    });
  }
  // SES reports an unlimited daily quota as -1.
  if (max < 0) {
    return finding(ACCOUNT, 'quota', 'ok', `no daily quota; ${sent} sent in the last 24 hours${perSecond}`);
  }
  const share = max === 0 ? 1 : sent / max;
  const detail = `${sent} of the day's ${max} messages sent in the last 24 hours (${Math.round(share * 100)}%)${perSecond}`;
  if (share >= 1) {
    return finding(
      ACCOUNT,
      'quota',
      'problem',
      `${detail}: SES refuses further sends until the window moves on`,
      {
        fix: hintFor('LimitExceededException'),
        code: 'LimitExceededException',
      },
    );
  }
  if (share > QUOTA_WARNING_SHARE) {
    return finding(ACCOUNT, 'quota', 'warning', `${detail}: close to the quota`, {
      fix: 'request a higher quota in the SES console (Account dashboard) before it is used up: then every SES send fails (LimitExceededException) until the 24-hour window moves on',
    });
  }
  return finding(ACCOUNT, 'quota', 'ok', detail);
}

// --- the identities ---

async function identityFindings(ses: SesContext, identity: string): Promise<Finding[]> {
  const read = await readIdentity(ses, identity);
  if (!read.ok) {
    if (read.failure.code === 'NotFoundException') {
      return [
        finding(
          identity,
          'identity',
          'problem',
          `not an identity in this account in ${ses.where}: SES refuses every send from it`,
          {
            fix: `verify ${identity} in SES in ${ses.region} (SES console, Identities: Create identity; a domain covers every address at it), or list an identity that is verified there in ses.identities`,
            code: 'NotFoundException',
          },
        ),
      ];
    }
    return [failureFinding(ses, identity, read.failure)];
  }
  const found = read.value;
  const findings = [verificationFinding(ses, identity, found)];
  findings.push(await dkimFinding(ses, identity, found));
  const mailFrom = mailFromFinding(ses, identity, found.MailFromAttributes);
  if (mailFrom !== undefined) findings.push(mailFrom);
  return findings;
}

function readIdentity(ses: SesContext, identity: string): Promise<CallResult<GetEmailIdentityCommandOutput>> {
  return call(ses, 'ses:GetEmailIdentity', (signal) =>
    ses.client.send(new GetEmailIdentityCommand({ EmailIdentity: identity }), { abortSignal: signal }),
  );
}

const isAddress = (identity: string) => identity.includes('@');
const domainOf = (identity: string) => identity.slice(identity.lastIndexOf('@') + 1);

function verificationFinding(
  ses: SesContext,
  identity: string,
  found: GetEmailIdentityCommandOutput,
): Finding {
  if (found.VerifiedForSendingStatus === true) {
    return finding(identity, 'verification', 'ok', `verified for sending in ${ses.where}`);
  }
  const status =
    found.VerificationStatus !== undefined ? ` (VerificationStatus ${found.VerificationStatus})` : '';
  return finding(
    identity,
    'verification',
    'problem',
    `not verified for sending${status}: SES refuses every send from it`,
    {
      fix: isAddress(identity)
        ? `open the link in the verification email SES sent to ${identity} (resend it from the SES console, Identities, in ${ses.region})`
        : `publish the DKIM CNAME records the SES console shows for ${identity} (Identities, in ${ses.region}) in its DNS; SES verifies the domain once it finds them`,
      ...(found.VerificationStatus !== undefined && { code: found.VerificationStatus }),
    },
  );
}

/**
 * A domain's own DKIM; an address identity is signed with its domain identity's DKIM (when its domain
 * is one), so for an address without DKIM of its own, the domain identity is read.
 */
async function dkimFinding(
  ses: SesContext,
  identity: string,
  found: GetEmailIdentityCommandOutput,
): Promise<Finding> {
  if (!isAddress(identity)) return domainDkimFinding(ses, identity, identity, found.DkimAttributes);
  const domain = domainOf(identity);
  if (found.DkimAttributes?.Status === 'SUCCESS') {
    return finding(identity, 'dkim', 'ok', `signed with the DKIM of its domain identity ${domain}`);
  }
  const read = await readIdentity(ses, domain);
  if (read.ok) return domainDkimFinding(ses, identity, domain, read.value.DkimAttributes);
  if (read.failure.code === 'NotFoundException') {
    return finding(
      identity,
      'dkim',
      'warning',
      `an address identity gets DKIM from its domain's identity, and ${domain} is not an identity in ${ses.where}: its mail is not DKIM-signed as ${domain}, so DMARC can fail`,
      {
        fix: `verify the domain ${domain} in SES in ${ses.region} with Easy DKIM (publish its three CNAME records): it signs every address at it`,
      },
    );
  }
  return finding(
    identity,
    'dkim',
    'warning',
    `DKIM ${found.DkimAttributes?.Status ?? 'unknown'}; doctor could not read its domain identity ${domain} (${read.failure.code}: ${read.failure.message})`,
    {
      fix:
        read.failure.kind === 'denied'
          ? denialFix(ses, 'ses:GetEmailIdentity', domain)
          : `look at the DKIM of ${domain} in the SES console (Identities, in ${ses.region})`,
      code: read.failure.code,
    },
  );
}

function domainDkimFinding(
  ses: SesContext,
  identity: string,
  domain: string,
  dkim: GetEmailIdentityCommandOutput['DkimAttributes'],
): Finding {
  const status = dkim?.Status;
  const via = identity === domain ? '' : ` (from its domain identity ${domain})`;
  const publish = `publish ${dkimRecords(domain, dkim)} in the DNS of ${domain}`;
  switch (status) {
    case 'SUCCESS':
      return dkim?.SigningEnabled === false
        ? finding(identity, 'dkim', 'warning', `DKIM records found but signing is off${via}`, {
            fix: `turn DKIM signing on for ${domain} (SES console, Identities, Authentication tab, in ${ses.region})`,
          })
        : finding(identity, 'dkim', 'ok', `DKIM signing on, records found (SUCCESS)${via}`);
    case 'PENDING':
      return finding(identity, 'dkim', 'warning', `SES has not found the DKIM records yet (PENDING)${via}`, {
        fix: `${publish} if they are not there yet; SES keeps looking for up to 72 hours`,
        code: status,
      });
    case 'TEMPORARY_FAILURE':
      return finding(
        identity,
        'dkim',
        'warning',
        `SES could not read the DKIM records lately (TEMPORARY_FAILURE)${via}: it keeps trying, and stops signing if they stay away`,
        { fix: `check that ${dkimRecords(domain, dkim)} still resolve from the internet`, code: status },
      );
    case 'FAILED':
      return finding(
        identity,
        'dkim',
        'problem',
        `SES could not find the DKIM records (FAILED)${via}: mail is not DKIM-signed as ${domain}`,
        {
          fix: `${publish}, then restart DKIM verification in the SES console (Identities, in ${ses.region})`,
          code: status,
        },
      );
    case 'NOT_STARTED':
      return finding(identity, 'dkim', 'problem', `DKIM was never set up (NOT_STARTED)${via}`, {
        fix: `set up Easy DKIM for ${domain} in the SES console (Identities, in ${ses.region}) and publish its three CNAME records`,
        code: status,
      });
    default:
      return finding(identity, 'dkim', 'warning', `DKIM status ${status ?? '(none given)'}${via}`, {
        fix: `look at ${domain}'s DKIM in the SES console (Identities, in ${ses.region})`,
      });
  }
}

/** The DKIM records SES looks for: Easy DKIM's CNAMEs, or (bring your own key) the selector's TXT record. */
function dkimRecords(domain: string, dkim: GetEmailIdentityCommandOutput['DkimAttributes']): string {
  const tokens = dkim?.Tokens ?? [];
  if (tokens.length === 0) return 'the DKIM records the SES console shows';
  if (dkim?.SigningAttributesOrigin !== undefined && dkim.SigningAttributesOrigin !== 'AWS_SES') {
    return tokens
      .map((selector) => `the TXT record ${selector}._domainkey.${domain} (your public key)`)
      .join(', ');
  }
  return tokens.map((token) => `${token}._domainkey.${domain} CNAME ${token}.dkim.amazonses.com`).join(', ');
}

/** Only for an identity with a custom MAIL FROM domain: without one, SES's own is used and always works. */
function mailFromFinding(
  ses: SesContext,
  identity: string,
  mailFrom: GetEmailIdentityCommandOutput['MailFromAttributes'],
): Finding | undefined {
  const domain = mailFrom?.MailFromDomain;
  if (domain === undefined || domain === '') return undefined;
  const status = mailFrom?.MailFromDomainStatus;
  if (status === 'SUCCESS')
    return finding(identity, 'mail-from', 'ok', `custom MAIL FROM domain ${domain} in use`);
  const rejects = mailFrom?.BehaviorOnMxFailure === 'REJECT_MESSAGE';
  const what =
    status === 'FAILED'
      ? 'SES cannot find its MX record (FAILED)'
      : `SES has not confirmed its MX record (${status ?? 'no status'})`;
  const consequence = rejects
    ? 'sends are refused meanwhile (BehaviorOnMxFailure REJECT_MESSAGE)'
    : 'sends use amazonses.com as MAIL FROM meanwhile, so SPF does not align with your domain for DMARC';
  return finding(
    identity,
    'mail-from',
    rejects ? 'problem' : 'warning',
    `custom MAIL FROM domain ${domain}: ${what}; ${consequence}`,
    {
      fix: `${hintFor('MailFromDomainNotVerifiedException')} Publish at ${domain}: MX 10 feedback-smtp.${ses.region}.amazonses.com and TXT "v=spf1 include:amazonses.com ~all".`,
      ...(status !== undefined && { code: status }),
    },
  );
}

// --- the configuration set ---

async function configurationSetFinding(ses: SesContext, name: string): Promise<Finding> {
  const read = await call(ses, 'ses:GetConfigurationSet', (signal) =>
    ses.client.send(new GetConfigurationSetCommand({ ConfigurationSetName: name }), { abortSignal: signal }),
  );
  const check = 'configuration-set';
  if (!read.ok) {
    if (read.failure.code !== 'NotFoundException') return failureFinding(ses, name, read.failure);
    const ownSet = ses.target.config.ses?.configurationSetName === name;
    return finding(
      name,
      check,
      'problem',
      `the configuration set does not exist in ${ses.where}: every SES send names it, so every send fails (NotFoundException)`,
      {
        fix: ownSet
          ? `ses.configurationSetName names a set that must already exist: create it in ${ses.region} or correct the name`
          : `the relay's stack creates this set: deploy the stack in ${ses.region}, or check that doctor reads the stack the relay runs from`,
        code: 'NotFoundException',
      },
    );
  }
  if (read.value.SendingOptions?.SendingEnabled === false) {
    return finding(
      name,
      check,
      'problem',
      'sending is paused on the configuration set: every SES send through the relay fails (SendingPausedException)',
      {
        fix: `the relay's bounce/complaint brake (or someone) paused it. Once the cause is fixed (the lists cleaned, the suppression list checked), resume it with \`aws sesv2 put-configuration-set-sending-options --configuration-set-name ${name} --sending-enabled --region ${ses.region}\`, then redrive the dead-letter queue (\`mail-relay dlq redrive\`) if messages reached it meanwhile`,
      },
    );
  }
  return finding(name, check, 'ok', `the configuration set exists in ${ses.where} and sends`);
}

// --- calls and their failures ---

interface CallFailure {
  readonly code: string;
  readonly message: string;
  /** The IAM action the call needed. */
  readonly action: string;
  readonly kind: 'denied' | 'unreachable' | 'credentials' | 'other';
  /** No answer, or no usable credentials: every further call would fail alike. */
  readonly fatal: boolean;
}

type CallResult<T> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly failure: CallFailure };

/** One SES call within the target's time limit; its failure reduced to what a finding needs. */
async function call<T>(
  ses: SesContext,
  action: string,
  run: (signal: AbortSignal) => Promise<T>,
): Promise<CallResult<T>> {
  try {
    return { ok: true, value: await run(AbortSignal.timeout(ses.target.timeoutMs)) };
  } catch (error) {
    const fault = sesFault(error);
    const code = fault.code;
    const kind: CallFailure['kind'] =
      code === 'AccessDeniedException' || code === 'AccessDenied'
        ? 'denied'
        : CREDENTIAL_ERROR_CODES.has(code)
          ? 'credentials'
          : // Without an HTTP status, SES never answered (refused, reset, timed out, TLS).
            NETWORK_ERROR_CODES.has(code) || code === 'AbortError' || fault.status === undefined
            ? 'unreachable'
            : 'other';
    return {
      ok: false,
      failure: {
        code,
        message: truncate(fault.message, 300),
        action,
        kind,
        fatal: kind === 'unreachable' || kind === 'credentials',
      },
    };
  }
}

function failureFinding(ses: SesContext, subject: string, failure: CallFailure): Finding {
  const resource = subject === ACCOUNT ? undefined : subject;
  switch (failure.kind) {
    case 'denied':
      return finding(
        subject,
        'access',
        'problem',
        `doctor may not call ${failure.action}${resource !== undefined ? ` on ${resource}` : ''}, so it could not check it: ${failure.message}`,
        { fix: denialFix(ses, failure.action, resource), code: failure.code },
      );
    case 'unreachable': {
      const timedOut = failure.code === 'AbortError' || failure.code === 'TimeoutError';
      const what = timedOut ? `no answer within ${ses.target.timeoutMs} ms` : failure.message;
      return finding(
        subject,
        'endpoint',
        'problem',
        `could not reach SES at ${ses.endpoint} (${ses.where}): ${what}${subject === ACCOUNT ? '; the identity and configuration set checks did not run' : ''}`,
        {
          fix: ses.target.local
            ? 'start local mode (mail-relay start) and run doctor against the endpoints it wrote'
            : `check the network path from here to ${ses.endpoint} (proxy, firewall, VPC endpoint) and the region`,
          code: failure.code,
        },
      );
    }
    case 'credentials':
      return finding(
        subject,
        'credentials',
        'problem',
        `doctor's AWS credentials were missing or refused (${ses.where}): ${failure.message}; nothing else was checked`,
        {
          fix: 'sign in with credentials for the account the relay runs in (aws sso login, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)',
          code: failure.code,
        },
      );
    default:
      return finding(
        subject,
        'api',
        'problem',
        `${failure.action} failed: ${failure.code}: ${failure.message}`,
        {
          ...(SES_FAILURES.ruleFor(failure.code)?.hint !== undefined && { fix: hintFor(failure.code) }),
          code: failure.code,
        },
      );
  }
}

/** For whoever runs doctor (not the relay's functions): the IAM action it lacks, on what. */
function denialFix(ses: SesContext, action: string, resource: string | undefined): string {
  const arn =
    resource === undefined
      ? '*'
      : action === 'ses:GetConfigurationSet'
        ? `arn:aws:ses:${ses.region}:<account>:configuration-set/${resource}`
        : `arn:aws:ses:${ses.region}:<account>:identity/${resource}`;
  return `allow ${action} on ${arn} for the AWS identity doctor runs as (doctor reads SES with ses:GetAccount, ses:GetEmailIdentity and ses:GetConfigurationSet)`;
}

/** The URL the client sends to: a custom endpoint (local mode, a VPC endpoint), else SES v2's regional one. */
async function endpointOf(client: SESv2Client, region: string): Promise<string> {
  const config = client.config as {
    readonly isCustomEndpoint?: boolean;
    readonly endpoint?: () => Promise<{ protocol: string; hostname: string; port?: number; path: string }>;
  };
  if (config.isCustomEndpoint === true && config.endpoint !== undefined) {
    try {
      const { protocol, hostname, port, path } = await config.endpoint();
      return `${protocol}//${hostname}${port !== undefined ? `:${port}` : ''}${path === '/' ? '' : path}`;
    } catch {
      // Fall through to the regional endpoint's name: only the message is at stake.
    }
  }
  return `https://email.${region}.amazonaws.com`;
}

function messageOf(error: unknown): string {
  return truncate(error instanceof Error ? error.message : String(error), 300);
}
