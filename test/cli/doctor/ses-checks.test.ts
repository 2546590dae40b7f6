import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SESv2Client } from '@aws-sdk/client-sesv2';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { exitCodeOf, type Finding } from '../../../cli/doctor/findings.ts';
import { checkSes } from '../../../cli/doctor/ses-checks.ts';
import type { DoctorSettings } from '../../../cli/doctor/target.ts';
import { SES_FAILURES } from '../../../lambda/providers/ses/failures.ts';
import { type Peers, REGION, startPeers, UNREACHABLE_CLIENT_CONFIG } from '../../helpers/peers.ts';
import { doctorTarget } from './doctor-target.ts';

let peers: Peers;

beforeAll(async () => {
  peers = await startPeers();
});
afterAll(() => peers.stop());
// Identities and sets are named per test; the account is shared, so each test starts from its defaults.
beforeEach(() => peers.capture.setAccount({}));

/** What checkSes finds for these SES settings, through the capture in front of the emulator. */
function check(ses: NonNullable<DoctorSettings['ses']>, client: SESv2Client = peers.ses) {
  return checkSes(doctorTarget({ settings: { ses }, ses: client }));
}

/** The one finding of a subject's check. */
function findingOf(findings: readonly Finding[], subject: string, checkName: string): Finding {
  const matching = findings.filter((found) => found.subject === subject && found.check === checkName);
  expect(matching, `${subject} ${checkName} in ${JSON.stringify(findings, null, 2)}`).toHaveLength(1);
  return matching[0] as Finding;
}

describe('checkSes', () => {
  it('finds nothing to check without an ses section', async () => {
    expect(await checkSes(doctorTarget({ settings: {}, ses: peers.ses }))).toEqual([]);
  });

  it('passes a healthy account, a verified domain with DKIM, an address under it and the configuration set', async () => {
    const findings = await check({
      identities: ['healthy.example', 'billing@healthy.example'],
      configurationSetName: 'relay-healthy',
    });

    expect(findings.map(({ subject, check, verdict }) => `${subject} ${check} ${verdict}`)).toEqual([
      'account sending ok',
      'account enforcement ok',
      'account production-access ok',
      'account quota ok',
      'healthy.example verification ok',
      'healthy.example dkim ok',
      'billing@healthy.example verification ok',
      'billing@healthy.example dkim ok',
      'relay-healthy configuration-set ok',
    ]);
    expect(findings.every((found) => found.area === 'ses' && found.fix === undefined)).toBe(true);
    expect(exitCodeOf(findings)).toBe(0);
    // The region is stated, and that it is local mode's stand-in.
    expect(findingOf(findings, 'account', 'sending').detail).toBe(
      `sending is enabled for the account in ${REGION} (local mode's SES stand-in)`,
    );
    expect(findingOf(findings, 'account', 'quota').detail).toBe(
      "0 of the day's 1000000 messages sent in the last 24 hours (0%), at most 10000 a second",
    );
    expect(findingOf(findings, 'healthy.example', 'dkim').detail).toBe(
      'DKIM signing on, records found (SUCCESS)',
    );
    expect(findingOf(findings, 'billing@healthy.example', 'dkim').detail).toBe(
      'signed with the DKIM of its domain identity healthy.example',
    );
    expect(findingOf(findings, 'relay-healthy', 'configuration-set').detail).toContain('exists');
  });

  it('warns about the SES sandbox: verified recipients only, 200 a day', async () => {
    peers.capture.setAccount({ productionAccessEnabled: false, max24HourSend: 200 });
    const found = findingOf(await check({ identities: ['sandbox.example'] }), 'account', 'production-access');
    expect(found.verdict).toBe('warning');
    expect(found.detail).toContain('SES sandbox');
    expect(found.detail).toContain('only to verified recipients, at most 200 messages a day');
    expect(found.fix).toContain(`request production access for ${REGION}`);
  });

  it('finds sending paused for the account, and says the relay’s brake is not the cause', async () => {
    peers.capture.setAccount({ sendingEnabled: false });
    const findings = await check({
      identities: ['paused.example'],
      configurationSetName: 'relay-paused-account',
    });
    const found = findingOf(findings, 'account', 'sending');
    expect(found.verdict).toBe('problem');
    expect(found.detail).toContain('sending is paused for the whole account');
    expect(found.fix).toContain(SES_FAILURES.ruleFor('SendingPausedException')?.hint);
    expect(found.fix).toContain('reputation page');
    expect(found.fix).toContain(
      'pauses only its configuration set (relay-paused-account), never the account',
    );
    expect(exitCodeOf(findings)).toBe(1);
  });

  it('warns on probation and finds a shut-down account', async () => {
    peers.capture.setAccount({ enforcementStatus: 'PROBATION' });
    const probation = findingOf(await check({ identities: ['probation.example'] }), 'account', 'enforcement');
    expect(probation.verdict).toBe('warning');
    expect(probation.detail).toContain('on probation');
    expect(probation.fix).toContain('reputation page');

    peers.capture.setAccount({ enforcementStatus: 'SHUTDOWN' });
    const shutdown = findingOf(await check({ identities: ['probation.example'] }), 'account', 'enforcement');
    expect(shutdown.verdict).toBe('problem');
    expect(shutdown.detail).toContain('SHUTDOWN');
    expect(shutdown.fix).toBe(SES_FAILURES.ruleFor('AccountSuspendedException')?.hint);
  });

  it("warns when more than 80% of the day's quota is used", async () => {
    peers.capture.setAccount({ max24HourSend: 1000, sentLast24Hours: 900 });
    const found = findingOf(await check({ identities: ['quota.example'] }), 'account', 'quota');
    expect(found.verdict).toBe('warning');
    expect(found.detail).toBe(
      "900 of the day's 1000 messages sent in the last 24 hours (90%), at most 10000 a second: close to the quota",
    );
    expect(found.fix).toContain('request a higher quota');
  });

  it('finds an unverified domain and an unverified address, saying the verification status', async () => {
    peers.capture.setIdentity('unverified.example', { verified: false, dkimStatus: 'PENDING' });
    peers.capture.setIdentity('someone@unverified-address.example', { verified: false });
    const findings = await check({
      identities: ['unverified.example', 'someone@unverified-address.example'],
    });

    const domain = findingOf(findings, 'unverified.example', 'verification');
    expect(domain.verdict).toBe('problem');
    expect(domain.detail).toBe(
      'not verified for sending (VerificationStatus PENDING): SES refuses every send from it',
    );
    expect(domain.fix).toContain('publish the DKIM CNAME records');
    const address = findingOf(findings, 'someone@unverified-address.example', 'verification');
    expect(address.verdict).toBe('problem');
    expect(address.fix).toContain('verification email SES sent to someone@unverified-address.example');
  });

  it('warns while DKIM is pending, listing the CNAMEs to publish', async () => {
    peers.capture.setIdentity('pending.example', { dkimStatus: 'PENDING' });
    const findings = await check({ identities: ['pending.example'] });
    expect(findingOf(findings, 'pending.example', 'verification').verdict).toBe('ok');
    const found = findingOf(findings, 'pending.example', 'dkim');
    expect(found.verdict).toBe('warning');
    expect(found.detail).toContain('PENDING');
    expect(found.fix).toMatch(/\w+\._domainkey\.pending\.example CNAME \w+\.dkim\.amazonses\.com/);
  });

  it('finds failed DKIM a problem', async () => {
    peers.capture.setIdentity('dkim-failed.example', { dkimStatus: 'FAILED' });
    const found = findingOf(
      await check({ identities: ['dkim-failed.example'] }),
      'dkim-failed.example',
      'dkim',
    );
    expect(found.verdict).toBe('problem');
    expect(found.detail).toContain('SES could not find the DKIM records (FAILED)');
    expect(found.fix).toMatch(/\._domainkey\.dkim-failed\.example CNAME .*restart DKIM verification/);
    expect(found.code).toBe('FAILED');
  });

  it("takes an address identity's DKIM from its domain identity, and warns when the domain is none", async () => {
    peers.capture.setIdentity('alone@no-domain.example', { dkimStatus: 'NOT_STARTED' });
    peers.capture.setIdentity('no-domain.example', undefined);
    peers.capture.setIdentity('team@pending-domain.example', { dkimStatus: 'NOT_STARTED' });
    peers.capture.setIdentity('pending-domain.example', { dkimStatus: 'PENDING' });
    const findings = await check({ identities: ['alone@no-domain.example', 'team@pending-domain.example'] });

    const alone = findingOf(findings, 'alone@no-domain.example', 'dkim');
    expect(alone.verdict).toBe('warning');
    expect(alone.detail).toContain('no-domain.example is not an identity');
    expect(alone.fix).toContain('verify the domain no-domain.example');
    const team = findingOf(findings, 'team@pending-domain.example', 'dkim');
    expect(team.verdict).toBe('warning');
    expect(team.detail).toContain('(from its domain identity pending-domain.example)');
  });

  it('warns about a custom MAIL FROM domain SES cannot find the MX of, with the records to publish', async () => {
    peers.capture.setIdentity('mailfrom.example', {
      mailFromDomain: 'bounce.mailfrom.example',
      mailFromStatus: 'FAILED',
    });
    const found = findingOf(
      await check({ identities: ['mailfrom.example'] }),
      'mailfrom.example',
      'mail-from',
    );
    expect(found.verdict).toBe('warning');
    expect(found.detail).toContain('bounce.mailfrom.example: SES cannot find its MX record (FAILED)');
    expect(found.fix).toContain(SES_FAILURES.ruleFor('MailFromDomainNotVerifiedException')?.hint);
    expect(found.fix).toContain(`MX 10 feedback-smtp.${REGION}.amazonses.com`);
    expect(found.fix).toContain('v=spf1 include:amazonses.com ~all');
  });

  it('finds an identity that does not exist in the account', async () => {
    peers.capture.setIdentity('nowhere.example', undefined);
    const findings = await check({ identities: ['nowhere.example'] });
    const found = findingOf(findings, 'nowhere.example', 'identity');
    expect(found.verdict).toBe('problem');
    expect(found.code).toBe('NotFoundException');
    expect(found.detail).toContain(`not an identity in this account in ${REGION}`);
    expect(found.fix).toContain(`verify nowhere.example in SES in ${REGION}`);
    // Nothing else is said about an identity that is not there.
    expect(findings.filter((other) => other.subject === 'nowhere.example')).toHaveLength(1);
  });

  it('finds a configuration set that does not exist', async () => {
    peers.capture.setConfigurationSet('relay-missing', undefined);
    const findings = await check({ identities: ['set.example'], configurationSetName: 'relay-missing' });
    const found = findingOf(findings, 'relay-missing', 'configuration-set');
    expect(found.verdict).toBe('problem');
    expect(found.code).toBe('NotFoundException');
    expect(found.detail).toContain('does not exist');
    expect(found.detail).toContain('every send fails');
    expect(found.fix).toContain(`deploy the stack in ${REGION}`);
  });

  it('finds a paused configuration set and says how to resume it', async () => {
    peers.capture.setConfigurationSet('relay-braked', { sendingEnabled: false });
    const findings = await check({ identities: ['set.example'], configurationSetName: 'relay-braked' });
    const found = findingOf(findings, 'relay-braked', 'configuration-set');
    expect(found.verdict).toBe('problem');
    expect(found.detail).toContain('sending is paused on the configuration set');
    expect(found.fix).toContain("the relay's bounce/complaint brake (or someone) paused it");
    expect(found.fix).toContain(
      `aws sesv2 put-configuration-set-sending-options --configuration-set-name relay-braked --sending-enabled --region ${REGION}`,
    );
    // The account itself is fine: the pause is the set's alone.
    expect(findingOf(findings, 'account', 'sending').verdict).toBe('ok');
  });

  it('finds an unreachable endpoint once, naming it, and checks nothing else', async () => {
    const unreachable = new SESv2Client(UNREACHABLE_CLIENT_CONFIG);
    try {
      const findings = await check(
        { identities: ['far.example'], configurationSetName: 'relay-far' },
        unreachable,
      );
      expect(findings).toHaveLength(1);
      const found = findingOf(findings, 'account', 'endpoint');
      expect(found.verdict).toBe('problem');
      expect(found.code).toBe('ECONNREFUSED');
      expect(found.detail).toContain(`could not reach SES at ${UNREACHABLE_CLIENT_CONFIG.endpoint}`);
      expect(found.detail).toContain('the identity and configuration set checks did not run');
      expect(found.fix).toBeDefined();
    } finally {
      unreachable.destroy();
    }
  });
});

describe('checkSes without permission', () => {
  // An HTTP server answering as SES does when IAM denies a call (403 AccessDeniedException): the
  // capture answers every read, as local mode's account allows everything.
  let denying: Server;
  let client: SESv2Client;

  beforeAll(async () => {
    denying = createServer((_req, res) => {
      res
        .writeHead(403, { 'content-type': 'application/json', 'x-amzn-errortype': 'AccessDeniedException' })
        .end(JSON.stringify({ message: 'User: arn:aws:iam::123456789012:user/doctor is not authorized' }));
    });
    await new Promise<void>((resolve) => denying.listen(0, '127.0.0.1', resolve));
    client = new SESv2Client({
      ...UNREACHABLE_CLIENT_CONFIG,
      endpoint: `http://127.0.0.1:${(denying.address() as AddressInfo).port}`,
    });
  });
  afterAll(async () => {
    client.destroy();
    denying.closeAllConnections();
    await new Promise((resolve) => denying.close(resolve));
  });

  it('names the IAM action doctor lacks for each call', async () => {
    const findings = await check(
      { identities: ['denied.example'], configurationSetName: 'relay-denied' },
      client,
    );
    expect(findings.map(({ subject, check, verdict }) => `${subject} ${check} ${verdict}`)).toEqual([
      'account access problem',
      'denied.example access problem',
      'relay-denied access problem',
    ]);
    const [account, identity, set] = findings as [Finding, Finding, Finding];
    expect(account.code).toBe('AccessDeniedException');
    expect(account.detail).toContain('doctor may not call ses:GetAccount');
    expect(account.fix).toContain('allow ses:GetAccount on *');
    expect(identity.fix).toContain(
      `allow ses:GetEmailIdentity on arn:aws:ses:${REGION}:<account>:identity/denied.example`,
    );
    expect(set.fix).toContain(
      `allow ses:GetConfigurationSet on arn:aws:ses:${REGION}:<account>:configuration-set/relay-denied`,
    );
  });
});
