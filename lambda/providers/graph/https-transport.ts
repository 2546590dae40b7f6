import { Agent, request } from 'node:https';

export interface HttpRequest {
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  readonly url: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
}

export interface HttpResponse {
  readonly status: number;
  /** Lower-case names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

/** One HTTPS exchange, no retries: retrying is the relay's decision (see core/relay.ts). */
export type HttpTransport = (request: HttpRequest) => Promise<HttpResponse>;

/** Thrown for failures below HTTP (refused, reset, timed out); `code` is Node's (ECONNRESET, ETIMEDOUT …). */
export class TransportError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TransportError';
  }
}

export interface HttpsTransportOptions {
  /** Extra CA certificate (PEM) to trust, for local peers with self-signed certificates. */
  readonly ca?: string;
  /** Idle socket / no-response limit per request. @default 20000 */
  readonly timeoutMs?: number;
}

/**
 * node:https with keep-alive, shared by MSAL and the Graph client. Not fetch: a plain request
 * function takes a CA for local peers without global settings, and it never retries by itself.
 */
export function createHttpsTransport(options: HttpsTransportOptions = {}): HttpTransport {
  const agent = new Agent({
    keepAlive: true,
    ...(options.ca !== undefined && { ca: options.ca }),
  });
  const timeoutMs = options.timeoutMs ?? 20_000;
  return ({ method, url, headers, body }) =>
    new Promise<HttpResponse>((resolve, reject) => {
      const outgoing = request(
        url,
        {
          method,
          agent,
          headers: {
            ...headers,
            ...(body !== undefined && { 'content-length': String(Buffer.byteLength(body)) }),
          },
          timeout: timeoutMs,
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('error', (error) => reject(transportError(error)));
          response.on('end', () => {
            const responseHeaders: Record<string, string> = {};
            for (const [name, value] of Object.entries(response.headers)) {
              if (value !== undefined)
                responseHeaders[name] = Array.isArray(value) ? value.join(', ') : value;
            }
            resolve({
              status: response.statusCode ?? 0,
              headers: responseHeaders,
              body: Buffer.concat(chunks),
            });
          });
        },
      );
      outgoing.on('timeout', () =>
        outgoing.destroy(
          new TransportError('ETIMEDOUT', `no response from ${new URL(url).host} in ${timeoutMs} ms`),
        ),
      );
      outgoing.on('error', (error) => reject(transportError(error)));
      outgoing.end(body);
    });
}

function transportError(error: Error): TransportError {
  if (error instanceof TransportError) return error;
  const code = (error as NodeJS.ErrnoException).code ?? 'ECONNRESET';
  return new TransportError(code, error.message, { cause: error });
}
