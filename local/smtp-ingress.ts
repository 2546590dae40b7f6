import { randomUUID, timingSafeEqual } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { DeleteObjectCommand, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from 'smtp-server';
import { parseMailbox } from '../lambda/core/address.ts';
import {
  clientMaySendAs,
  type Ingest,
  refusal,
  type SubmissionRefusal,
  senderRefusal,
} from '../lambda/core/ingest.ts';
import { LOOPBACK } from './emulators.ts';
import { createServerCertificate } from './peers/certificates.ts';

/** A client of the local listener: what the deployed ingress endpoint and traffic policy know of it. */
export interface LocalIngressClient {
  readonly name: string;
  readonly allowedCidrs: readonly string[];
  /** Read when the client authenticates (local mode keeps it in its Secrets Manager emulator). */
  password(): Promise<string>;
}

export interface SmtpIngressOptions {
  /** 0 picks a free port. */
  readonly port: number;
  readonly ingest: Ingest;
  readonly clients: readonly LocalIngressClient[];
  /** Where the listener stores each message before the ingest reads it, as Mail Manager does. */
  readonly s3: S3Client;
  /** Told about every message accepted (ids and counts only). */
  readonly onAccepted?: (accepted: { client: string; outboxMessageId: string; recipients: number }) => void;
}

export interface SmtpIngress {
  readonly host: string;
  readonly port: number;
  /** The self-signed certificate it offers with STARTTLS (trust it in a client, or skip verification locally). */
  readonly certificatePem: string;
  close(): Promise<void>;
}

interface ClientSession extends SMTPServerSession {
  user?: string;
}

/**
 * Local mode's SMTP submission endpoint: what Amazon SES Mail Manager's authenticated ingress endpoint
 * and the relay's traffic policy do in AWS, on 127.0.0.1. STARTTLS before AUTH PLAIN/LOGIN, only from
 * the client's CIDRs; then the same ingest the Lambda function runs (lambda/core/ingest.ts), before
 * the end of DATA is answered. So a 250 means the message is on the outbox, and a refusal is an SMTP
 * reply with an enhanced status code and the reason, during the session. Unlike Mail Manager, which
 * only stores the message, it refuses a sender the client may not use at MAIL FROM or at the end of
 * DATA (Mail Manager accepts it, and the ingest function dead-letters it).
 */
export async function startSmtpIngress(options: SmtpIngressOptions): Promise<SmtpIngress> {
  const { ingest } = options;
  const certificate = await createServerCertificate();
  const clients = new Map(options.clients.map((client) => [client.name, client]));
  const allowed = new Map(options.clients.map((client) => [client.name, blockListOf(client.allowedCidrs)]));
  const anyClient = blockListOf(options.clients.flatMap((client) => client.allowedCidrs));

  const server = new SubmissionServer({
    name: 'mail-relay-ingress.local',
    banner: 'mail-relay SMTP submission (local mode)',
    logger: false,
    disableReverseLookup: true,
    // Every reply carries an enhanced status code (SubmissionServer keeps ours as written).
    hideENHANCEDSTATUSCODES: false,
    key: certificate.privateKeyPem,
    cert: certificate.certificatePem,
    secure: false,
    authMethods: ['PLAIN', 'LOGIN'],
    authOptional: false,
    // TLS is required, as on Mail Manager's authenticated endpoints: no AUTH before STARTTLS.
    allowInsecureAuth: false,
    size: ingest.maxMessageBytes,
    closeTimeout: 1000,

    onConnect(session, callback) {
      if (!allowedFrom(anyClient, session.remoteAddress)) {
        return callback(
          reply(
            refusal(
              'AddressNotAllowed',
              554,
              '5.7.1',
              `${session.remoteAddress} is not an allowed client address`,
            ),
          ),
        );
      }
      callback();
    },

    onAuth(auth, session, callback) {
      const client = clients.get(auth.username ?? '');
      void (async () => {
        // The address first, as Mail Manager's traffic policy refuses it before any AUTH: from
        // elsewhere, the answer says nothing about the password.
        if (client && !allowedFrom(allowed.get(client.name), session.remoteAddress)) {
          return callback(
            reply(
              refusal(
                'AddressNotAllowed',
                550,
                '5.7.1',
                `client ${client.name} may not connect from ${session.remoteAddress}`,
              ),
            ),
          );
        }
        const expected = client ? await client.password() : undefined;
        if (!client || expected === undefined || !sameSecret(expected, auth.password ?? '')) {
          return callback(
            reply(refusal('AuthenticationFailed', 535, '5.7.8', 'authentication credentials invalid')),
          );
        }
        callback(null, { user: client.name });
      })().catch((error: unknown) => callback(tryLater(error)));
    },

    onMailFrom(address: SMTPServerAddress, session: ClientSession, callback) {
      const client = ingest.client(session.user ?? '');
      if (!client)
        return callback(reply(refusal('AuthenticationRequired', 530, '5.7.0', 'authentication required')));
      const parsed = address.address === '' ? undefined : parseMailbox(address.address);
      if (!parsed?.ok || !clientMaySendAs(client, parsed.mailbox.address)) {
        return callback(reply(senderRefusal(client, 'envelope sender', address.address || '<>')));
      }
      callback();
    },

    onRcptTo(address: SMTPServerAddress, session, callback) {
      if (!parseMailbox(address.address).ok) {
        return callback(
          reply(
            refusal('InvalidRecipient', 553, '5.1.3', `${address.address} is not a valid recipient address`),
          ),
        );
      }
      if (session.envelope.rcptTo.length >= ingest.maxRecipients) {
        return callback(
          reply(
            refusal(
              'TooManyRecipients',
              452,
              '4.5.3',
              `too many recipients: at most ${ingest.maxRecipients} per message`,
            ),
          ),
        );
      }
      callback();
    },

    onData(stream: SMTPServerDataStream, session: ClientSession, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => {
        if (!stream.sizeExceeded) chunks.push(chunk);
      });
      stream.on('end', () => {
        if (stream.sizeExceeded) {
          return callback(
            reply(
              refusal(
                'MessageTooLarge',
                552,
                '5.3.4',
                `message too large: the limit is ${ingest.maxMessageBytes} bytes`,
              ),
            ),
          );
        }
        void accept(Buffer.concat(chunks), session).then(
          (text) => callback(null, text),
          (error: unknown) => callback(error as Error),
        );
      });
    },
  });

  /** Stores the message, runs the ingest, and answers: 250 only once it is on the outbox. */
  async function accept(bytes: Buffer, session: ClientSession): Promise<string> {
    const client = session.user ?? '';
    const key = ingest.keyFor(client, `${new Date().toISOString().replaceAll(':', '-')}-${randomUUID()}`);
    const envelope = {
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      recipients: session.envelope.rcptTo.map((recipient) => recipient.address),
    };
    let enqueued = false;
    try {
      await options.s3.send(new PutObjectCommand({ Bucket: ingest.bucket, Key: key, Body: bytes }));
      const result = await ingest.ingest(ingest.bucket, key, { envelope });
      if (result.kind === 'refused') throw reply(result.refusal);
      if (result.kind === 'gone') throw tryLater(new Error('the stored message disappeared'));
      enqueued = true;
      options.onAccepted?.({
        client: result.client,
        outboxMessageId: result.outboxMessageId,
        recipients: result.recipients,
      });
      return `2.0.0 queued as ${result.outboxMessageId}`;
    } catch (error) {
      throw isReply(error) ? error : tryLater(error);
    } finally {
      // Refused or not queued: the client was told so and keeps the message; nothing else will read it.
      if (!enqueued) {
        await options.s3
          .send(new DeleteObjectCommand({ Bucket: ingest.bucket, Key: key }))
          .catch(() => undefined);
      }
    }
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, LOOPBACK, () => {
      server.off('error', reject);
      resolve();
    });
  });
  // An error after start (a client's broken TLS handshake) must not end local mode.
  server.on('error', () => undefined);
  const { port } = server.server.address() as { port: number };
  return {
    host: LOOPBACK,
    port,
    certificatePem: certificate.certificatePem,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const ENHANCED_CODE = /^[245]\.\d{1,3}\.\d{1,3} /;

interface ConnectionReplies {
  send(code: number, data?: unknown, context?: unknown): void;
}

/**
 * smtp-server, with an enhanced status code on every reply (RFC 2034, advertised in EHLO): a reply
 * of ours keeps the code we wrote (smtp-server would put its own default in front of it), one of
 * smtp-server's gets the code of its table. And a client that tries AUTH before STARTTLS hears
 * RFC 3207's `530 5.7.0`, not smtp-server's non-standard 538.
 */
class SubmissionServer extends SMTPServer {
  override connect(
    socket: Parameters<SMTPServer['connect']>[0],
    options: Parameters<SMTPServer['connect']>[1],
  ): void {
    super.connect(socket, options);
    const connections = (this as unknown as { connections: Set<ConnectionReplies> }).connections;
    const connection = [...connections].at(-1);
    if (!connection) return;
    const send = connection.send.bind(connection);
    connection.send = (code, data, context) => {
      if (typeof data === 'string' && ENHANCED_CODE.test(data)) return send(code, data, false);
      return send(code === 538 ? 530 : code, data, context);
    };
  }
}

type ReplyError = Error & { responseCode: number };

/** An error smtp-server writes as `<code> <enhanced code> <reason>`. */
function reply(refused: SubmissionRefusal): ReplyError {
  return Object.assign(new Error(`${refused.enhancedCode} ${refused.reason}`), {
    responseCode: refused.replyCode,
  });
}

function isReply(error: unknown): error is ReplyError {
  return error instanceof Error && typeof (error as Partial<ReplyError>).responseCode === 'number';
}

function tryLater(error: unknown): ReplyError {
  console.error(`[smtp ingress] could not queue a message: ${String(error)}`);
  return reply(
    refusal('TryLater', 451, '4.3.0', 'the message could not be queued right now; try again later'),
  );
}

function blockListOf(cidrs: readonly string[]): BlockList {
  const list = new BlockList();
  for (const cidr of cidrs) {
    const [network = '', prefix = ''] = cidr.split('/');
    list.addSubnet(network, Number(prefix), isIPv6(network) ? 'ipv6' : 'ipv4');
  }
  return list;
}

function allowedFrom(list: BlockList | undefined, remoteAddress: string): boolean {
  if (!list) return false;
  // IPv4 clients of a dual-stack socket appear as ::ffff:a.b.c.d.
  const address = remoteAddress.startsWith('::ffff:') ? remoteAddress.slice(7) : remoteAddress;
  return isIPv4(address) ? list.check(address, 'ipv4') : list.check(address, 'ipv6');
}

function sameSecret(expected: string, given: string): boolean {
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  return a.length === b.length && timingSafeEqual(a, b);
}
