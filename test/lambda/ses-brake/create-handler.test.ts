import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Context } from 'aws-lambda';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { SETTINGS_ENV_VAR } from '../../../lambda/core/settings.ts';
import { ConfigurationError } from '../../../lambda/core/validation.ts';
import { createSesBrakeHandler } from '../../../lambda/ses-brake/create-handler.ts';

const context = {
  functionName: 'ses-brake',
  awsRequestId: 'request-1',
  getRemainingTimeInMillis: () => 30_000,
} as unknown as Context;

/** One `PutConfigurationSetSendingOptions` call the peer answered. */
interface SendingOptionsCall {
  readonly configurationSet: string;
  readonly body: unknown;
}

interface Sesv2Peer {
  readonly endpoint: string;
  readonly calls: SendingOptionsCall[];
  /** From now on, every call fails with 500 (as SES's InternalFailure does). */
  failing: boolean;
  close(): Promise<void>;
}

/**
 * A tiny SES v2 peer: `PUT /v2/email/configuration-sets/<name>/sending` of the REST-JSON protocol (what
 * the SDK's PutConfigurationSetSendingOptionsCommand sends), recording each body. Nothing else is modelled.
 */
async function startSesv2Peer(): Promise<Sesv2Peer> {
  const calls: SendingOptionsCall[] = [];
  const reply = (res: ServerResponse, status: number, body: unknown, errorType?: string) => {
    res.writeHead(status, {
      'content-type': 'application/json',
      ...(errorType !== undefined && { 'x-amzn-errortype': errorType }),
    });
    res.end(JSON.stringify(body));
  };
  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const match = /^\/v2\/email\/configuration-sets\/([^/]+)\/sending$/.exec(req.url ?? '');
    if (req.method !== 'PUT' || !match?.[1]) {
      return reply(
        res,
        404,
        { message: 'only PutConfigurationSetSendingOptions is modelled' },
        'NotFoundException',
      );
    }
    if (peer.failing) return reply(res, 500, { message: 'injected failure' }, 'InternalFailure');
    calls.push({
      configurationSet: decodeURIComponent(match[1]),
      body: JSON.parse(Buffer.concat(chunks).toString('utf8')),
    });
    return reply(res, 200, {});
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) =>
      reply(res, 500, { message: String(error) }, 'InternalFailure'),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const peer: Sesv2Peer = {
    endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    failing: false,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  return peer;
}

/** The JSON log lines the code under test writes (Powertools: INFO to stdout, ERROR to stderr) until `stop`. */
function captureLogs(): { readonly lines: Record<string, unknown>[]; stop(): void } {
  const written: string[] = [];
  const keep = (chunk: string | Uint8Array) => {
    written.push(String(chunk));
    return true;
  };
  const spies = [
    vi.spyOn(process.stdout, 'write').mockImplementation(keep),
    vi.spyOn(process.stderr, 'write').mockImplementation(keep),
  ];
  return {
    get lines() {
      return written
        .flatMap((chunk) => chunk.split('\n'))
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    stop: () => {
      for (const spy of spies) spy.mockRestore();
    },
  };
}

/** An SNS event with one record per CloudWatch alarm notification, as the brake topic delivers it. */
function alarmEvent(...changes: { alarm: string; state: string }[]) {
  return {
    Records: changes.map(({ alarm, state }) => ({
      EventSource: 'aws:sns',
      Sns: {
        Type: 'Notification',
        Message: JSON.stringify({
          AlarmName: alarm,
          AlarmDescription: 'Bounced / Sent through ses reached 0.05',
          NewStateValue: state,
          OldStateValue: 'OK',
          NewStateReason: 'Threshold Crossed',
        }),
      },
    })),
  };
}

const CRITICAL = 'MailRelay-Relay-ses-bounce-rate-critical';

/** The error a cold start with these settings fails with; fails the test if it starts. */
function coldStartError(settings: string): ConfigurationError {
  try {
    createSesBrakeHandler({ [SETTINGS_ENV_VAR]: settings });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    return error as ConfigurationError;
  }
  throw new Error('expected the handler to refuse to start');
}

describe('the SES brake handler (SNS notifications of the critical bounce alarm)', () => {
  let ses: Sesv2Peer;
  const saved = { ...process.env };

  beforeAll(async () => {
    ses = await startSesv2Peer();
    Object.assign(process.env, {
      AWS_REGION: 'eu-west-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      AWS_ENDPOINT_URL_SESV2: ses.endpoint,
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
  });
  afterAll(async () => {
    process.env = saved;
    await ses.close();
  });
  afterEach(() => {
    ses.failing = false;
    ses.calls.length = 0;
    vi.restoreAllMocks();
  });

  const environment = () => ({
    ...process.env,
    [SETTINGS_ENV_VAR]: JSON.stringify({ configurationSetName: 'mail-relay' }),
  });

  it('pauses sending on the configuration set when the alarm fires, and logs one line naming both', async () => {
    const handler = createSesBrakeHandler(environment());
    const logs = captureLogs();
    try {
      await handler(alarmEvent({ alarm: CRITICAL, state: 'ALARM' }), context);
    } finally {
      logs.stop();
    }

    expect(ses.calls).toEqual([{ configurationSet: 'mail-relay', body: { SendingEnabled: false } }]);
    expect(logs.lines).toEqual([
      expect.objectContaining({
        level: 'INFO',
        message: 'Paused SES sending on the configuration set',
        configurationSet: 'mail-relay',
        alarms: [CRITICAL],
        function_request_id: 'request-1',
      }),
    ]);
  });

  it('pauses once for two firing alarms in one notification', async () => {
    const handler = createSesBrakeHandler(environment());
    const logs = captureLogs();
    try {
      await handler(
        alarmEvent({ alarm: CRITICAL, state: 'ALARM' }, { alarm: `${CRITICAL}-2`, state: 'ALARM' }),
        context,
      );
    } finally {
      logs.stop();
    }

    expect(ses.calls).toHaveLength(1);
    expect(logs.lines.map((line) => line.alarms)).toEqual([[CRITICAL, `${CRITICAL}-2`]]);
  });

  it('leaves sending alone when the alarm returns to OK', async () => {
    const handler = createSesBrakeHandler(environment());
    const logs = captureLogs();
    try {
      await handler(alarmEvent({ alarm: CRITICAL, state: 'OK' }), context);
    } finally {
      logs.stop();
    }

    expect(ses.calls).toEqual([]);
    expect(logs.lines).toEqual([
      expect.objectContaining({ level: 'INFO', configurationSet: 'mail-relay', alarms: [] }),
    ]);
  });

  it('fails the invocation when SES cannot pause, so Lambda retries it, and logs the error', async () => {
    ses.failing = true;
    const handler = createSesBrakeHandler(environment());
    const logs = captureLogs();
    try {
      await expect(handler(alarmEvent({ alarm: CRITICAL, state: 'ALARM' }), context)).rejects.toThrow(
        /injected failure/,
      );
    } finally {
      logs.stop();
    }

    expect(ses.calls).toEqual([]);
    expect(logs.lines).toEqual([
      expect.objectContaining({
        level: 'ERROR',
        message: 'Could not pause SES sending on the configuration set',
        configurationSet: 'mail-relay',
        alarms: [CRITICAL],
        error: expect.objectContaining({ name: 'InternalFailure' }),
      }),
    ]);
  });

  it('refuses to start with a configuration set name SES would not take, naming the field', () => {
    const error = coldStartError(JSON.stringify({ configurationSetName: 'mail relay!' }));

    expect(error.problems).toEqual([
      expect.stringMatching(/^MAIL_RELAY_SETTINGS\.configurationSetName: may contain only letters/),
    ]);
  });

  it('refuses to start without a configuration set name, naming the field', () => {
    const error = coldStartError('{}');

    expect(error.problems).toEqual(['MAIL_RELAY_SETTINGS.configurationSetName: required']);
  });
});
