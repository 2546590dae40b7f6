import { AsyncLocalStorage } from 'node:async_hooks';
import type {
  HttpHandlerOptions,
  RetryErrorInfo,
  RetryStrategyV2,
  RetryToken,
  HttpRequest as SdkHttpRequest,
  HttpResponse as SdkHttpResponse,
} from '@smithy/types';
import { type HttpTransport, TransportError } from './http-transport.ts';

/** The hand-off of the send running in this async context (see SendContext.handOff). */
const currentHandOff = new AsyncLocalStorage<() => Promise<void>>();

/** Runs an SDK call whose request hands the message off: the handler records it before writing. */
export function withHandOff<T>(handOff: () => Promise<void>, call: () => Promise<T>): Promise<T> {
  return currentHandOff.run(handOff, call);
}

/**
 * An AWS SDK request handler over the relay's own HTTP transport instead of the SDK's: it knows
 * whether a request was written in full before a failure (a lost answer) or not, honours the abort
 * signal, and records the hand-off right before a sending request is written.
 */
export class TransportRequestHandler {
  readonly metadata = { handlerProtocol: 'http/1.1' };

  constructor(private readonly transport: HttpTransport) {}

  async handle(
    request: SdkHttpRequest,
    options: HttpHandlerOptions = {},
  ): Promise<{ response: SdkHttpResponse }> {
    const handOff = currentHandOff.getStore();
    const signal = options.abortSignal as AbortSignal | undefined;
    const response = await this.transport({
      method: request.method as 'GET' | 'POST' | 'PUT' | 'DELETE',
      url: urlOf(request),
      headers: Object.fromEntries(
        // The transport sets content-length from the body it writes.
        Object.entries(request.headers).filter(([name]) => name.toLowerCase() !== 'content-length'),
      ),
      ...(request.body !== undefined && request.body !== null && { body: bodyOf(request.body) }),
      ...(signal && { signal }),
      ...(handOff && { beforeWrite: handOff }),
    });
    return {
      response: { statusCode: response.status, headers: { ...response.headers }, body: response.body },
    };
  }

  updateHttpClientConfig(): void {}

  httpHandlerConfigs(): Record<string, never> {
    return {};
  }

  destroy(): void {}
}

/**
 * The SDK's retries, minus the one that could send a message twice: a request that was written in
 * full and whose answer was lost is never repeated here. Refusals (throttling, 5xx answers) and
 * failures before the request left are retried with jittered backoff, up to `maxAttempts` in all.
 */
export class RefusalOnlyRetryStrategy implements RetryStrategyV2 {
  constructor(
    private readonly maxAttempts = 3,
    private readonly baseDelayMs = 100,
    private readonly random: () => number = Math.random,
  ) {}

  async acquireInitialRetryToken(): Promise<RetryToken> {
    return token(0, 0);
  }

  async refreshRetryTokenForRetry(previous: RetryToken, info: RetryErrorInfo): Promise<RetryToken> {
    const attempts = previous.getRetryCount() + 1;
    const lostAnswer = info.error instanceof TransportError && info.error.requestWritten;
    const retryable =
      info.errorType === 'THROTTLING' || info.errorType === 'TRANSIENT' || info.errorType === 'SERVER_ERROR';
    if (lostAnswer || !retryable || attempts >= this.maxAttempts) {
      throw info.error ?? new Error('not retried');
    }
    const delay = this.baseDelayMs * 2 ** (attempts - 1);
    return token(attempts, Math.round(delay / 2 + (this.random() * delay) / 2));
  }

  recordSuccess(): void {}
}

function token(retryCount: number, delayMs: number): RetryToken {
  return { getRetryCount: () => retryCount, getRetryDelay: () => delayMs };
}

function urlOf(request: SdkHttpRequest): string {
  const port = request.port ? `:${request.port}` : '';
  const query = Object.entries(request.query ?? {})
    .flatMap(([name, value]) =>
      (Array.isArray(value) ? value : [value]).map((item) =>
        item === null || item === undefined ? escapeUri(name) : `${escapeUri(name)}=${escapeUri(item)}`,
      ),
    )
    .join('&');
  return `${request.protocol}//${request.hostname}${port}${request.path}${query ? `?${query}` : ''}${request.fragment ? `#${request.fragment}` : ''}`;
}

/** RFC 3986 percent-encoding, as the SDK signs query strings. */
function escapeUri(value: string): string {
  return encodeURIComponent(value).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function bodyOf(body: unknown): string | Buffer | Uint8Array {
  if (typeof body === 'string' || body instanceof Uint8Array) return body;
  throw new Error('the relay sends only in-memory request bodies to AWS');
}
