import {
  type ClientRequest,
  Agent as HttpAgent,
  request as httpRequest,
  type IncomingMessage,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

export interface HttpRequest {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer | Uint8Array;
  /** Ends the exchange (the caller's deadline); the TransportError says whether the request was written. */
  readonly signal?: AbortSignal;
  /**
   * Runs once the connection is open, before the first byte of the request is written. A rejection
   * ends the exchange with nothing written: the relay records the hand-off to the provider here.
   */
  readonly beforeWrite?: () => Promise<void>;
}

export interface HttpResponse {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** One HTTP(S) exchange, no retries: retrying is the relay's decision (see core/relay.ts). */
export type HttpTransport = (request: HttpRequest) => Promise<HttpResponse>;

/**
 * Thrown for failures below HTTP (refused, reset, timed out, deadline); `code` is Node's (ECONNRESET,
 * ETIMEDOUT …) or DeadlineExceeded. `requestWritten` tells the two cases the relay must keep apart:
 * the request never left in full (nothing can have been done), or it did and the answer was lost.
 */
export class TransportError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly requestWritten: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransportError';
  }
}

export interface HttpTransportOptions {
  /** Extra CA certificate (PEM) to trust, for local peers with self-signed certificates. */
  readonly ca?: string;
  /** Idle socket / no-response limit per request. @default 20000 */
  readonly timeoutMs?: number;
}

/** How long a connection may wait for the next request (below the 5 s many servers keep one). */
const IDLE_CONNECTION_MS = 4000;

/**
 * node:https (and node:http, for local emulators) with keep-alive, shared by MSAL, the Graph client
 * and the SES client. Not fetch: a plain request function takes a CA for local peers without global
 * settings, never retries by itself, and can tell whether the request body was written.
 */
export function createHttpTransport(options: HttpTransportOptions = {}): HttpTransport {
  // An idle connection is closed after a few seconds rather than kept: a server that closes its end
  // first (Node's default after 5 s) would otherwise race the next request on it, which then fails
  // with ECONNRESET after being written, an answer lost for nothing. Requests set their own timeout.
  const agentOptions = { keepAlive: true, timeout: IDLE_CONNECTION_MS };
  const httpsAgent = new HttpsAgent({ ...agentOptions, ...(options.ca !== undefined && { ca: options.ca }) });
  const httpAgent = new HttpAgent(agentOptions);
  const timeoutMs = options.timeoutMs ?? 20_000;
  return (exchange) =>
    new Promise<HttpResponse>((resolve, reject) => {
      const { method, url, headers, body, signal, beforeWrite } = exchange;
      const host = new URL(url).host;
      if (signal?.aborted) {
        reject(deadlineError(host, false));
        return;
      }
      const secure = url.startsWith('https:');
      const outgoing: ClientRequest = (secure ? httpsRequest : httpRequest)(url, {
        method,
        agent: secure ? httpsAgent : httpAgent,
        headers: {
          ...headers,
          ...(body !== undefined && { 'content-length': String(Buffer.byteLength(body)) }),
        },
        timeout: timeoutMs,
      });
      // 'finish': the whole request has been handed to the operating system.
      let written = false;
      let settled = false;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener('abort', onAbort);
        reject(error);
        outgoing.destroy();
      };
      const onAbort = () => fail(deadlineError(host, written));
      signal?.addEventListener('abort', onAbort, { once: true });
      outgoing.on('finish', () => {
        written = true;
      });
      outgoing.on('timeout', () =>
        fail(new TransportError('ETIMEDOUT', `no response from ${host} in ${timeoutMs} ms`, written)),
      );
      outgoing.on('error', (error) => fail(transportError(error, written)));
      outgoing.on('response', (response: IncomingMessage) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('error', (error) => fail(transportError(error, written)));
        response.on('end', () => {
          if (settled) return;
          settled = true;
          signal?.removeEventListener('abort', onAbort);
          const responseHeaders: Record<string, string> = {};
          for (const [name, value] of Object.entries(response.headers)) {
            if (value !== undefined) responseHeaders[name] = Array.isArray(value) ? value.join(', ') : value;
          }
          resolve({
            status: response.statusCode ?? 0,
            headers: responseHeaders,
            body: Buffer.concat(chunks),
          });
        });
      });
      if (!beforeWrite) {
        outgoing.end(body);
        return;
      }
      // Nothing is written before end(): wait for the connection, let the caller record the hand-off,
      // and only then write the request.
      outgoing.once('socket', (socket: Socket) => {
        whenConnected(socket).then(
          () =>
            beforeWrite().then(
              () => {
                if (!settled) outgoing.end(body);
              },
              (error: unknown) => fail(error),
            ),
          (error: Error) => fail(transportError(error, false)),
        );
      });
    });
}

/** A new socket is ready once connected (for TLS: once the handshake is done); a reused one at once. */
function whenConnected(socket: Socket): Promise<void> {
  const tls = socket instanceof TLSSocket;
  // getProtocol() is 'unknown' until the handshake completes and null before the socket connects.
  const ready = tls ? !['unknown', null].includes((socket as TLSSocket).getProtocol()) : !socket.connecting;
  if (ready) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    socket.once('error', onError);
    socket.once(tls ? 'secureConnect' : 'connect', () => {
      socket.off('error', onError);
      resolve();
    });
  });
}

function deadlineError(host: string, written: boolean): TransportError {
  return new TransportError(
    'DeadlineExceeded',
    `the call to ${host} ran out of the invocation's time ${written ? 'after the request was written' : 'before the request was written'}`,
    written,
  );
}

function transportError(error: Error, written: boolean): TransportError {
  if (error instanceof TransportError) return error;
  const code = (error as NodeJS.ErrnoException).code ?? 'ECONNRESET';
  return new TransportError(code, error.message, written, { cause: error });
}
