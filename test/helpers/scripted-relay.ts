import type { SQSRecord } from 'aws-lambda';
import type { OutboundMessage } from '../../lambda/core/attachments.ts';
import type { DeadLetterSink } from '../../lambda/core/dead-letter.ts';
import { type FailureClass, RelayFailure } from '../../lambda/core/failures.ts';
import type { MailProvider, SendContext, SentLookup, SentQuery } from '../../lambda/core/mail-provider.ts';
import type { RecordDelay } from '../../lambda/core/record-delay.ts';
import type { RelayLogger } from '../../lambda/core/relay.ts';

/**
 * What a scripted provider does with a message: accept it, fail with a class (after the hand-off, as a
 * refusal from the server would), take it and lose the answer ('lost': sent, but the relay does not
 * hear so), or lose the request and the answer ('vanished': not sent, and the relay cannot tell).
 */
export type ScriptResult = 'ok' | FailureClass | 'lost' | 'vanished';
export type Script = (message: OutboundMessage) => ScriptResult;

/**
 * A provider for narrow unit tests of the relay's decisions. It behaves as the real adapters do
 * towards the core: it hands off right before "sending", and a lost answer is a maybeSent failure.
 */
export class ScriptedProvider implements MailProvider {
  /** Messages it accepted, whether or not the relay heard so. */
  readonly sent: OutboundMessage[] = [];
  readonly contexts: SendContext[] = [];
  /** Per call: whether the provider took the message. */
  private readonly accepted: boolean[] = [];
  calls = 0;
  lookupWindowSeconds?: number;
  /** Set to give the provider a lookup (as Graph's Sent Items): answers from `sent` by Message-ID. */
  findSent?: (query: SentQuery, signal: AbortSignal) => Promise<SentLookup>;

  constructor(
    readonly name: string,
    public script: Script = () => 'ok',
    private readonly covers: (address: string) => boolean = () => true,
  ) {}

  canSendAs(address: string): boolean {
    return this.covers(address);
  }

  /** Lets the relay look sent messages up by the Message-ID it gave them, for `windowSeconds`. */
  enableLookup(windowSeconds: number): void {
    this.lookupWindowSeconds = windowSeconds;
    this.findSent = async (query) =>
      this.contexts.some(
        (context, index) => context.internetMessageId === query.internetMessageId && this.sentAt(index),
      )
        ? { found: true, providerMessageId: query.internetMessageId }
        : { found: false };
  }

  async send(message: OutboundMessage, context: SendContext) {
    this.calls += 1;
    await context.handOff();
    const result = this.script(message);
    this.contexts.push(context);
    this.accepted.push(result === 'ok' || result === 'lost');
    if (result === 'ok' || result === 'lost') this.sent.push(message);
    if (result === 'lost' || result === 'vanished') {
      throw new RelayFailure({
        failureClass: 'transient',
        code: 'ETIMEDOUT',
        reason: `no answer from ${this.name} after the request was written`,
        provider: this.name,
        maybeSent: true,
      });
    }
    if (result !== 'ok') {
      throw new RelayFailure({
        failureClass: result,
        code: `${this.name}-${result}`,
        reason: `${this.name} failed (${result})`,
        provider: this.name,
      });
    }
    return { provider: this.name, providerMessageId: `${this.name}-${this.calls}` };
  }

  private sentAt(index: number): boolean {
    return this.accepted[index] === true;
  }
}

/** Dead-letter sink, record delay and logger in one, recording everything. */
export class Recorder implements DeadLetterSink, RecordDelay, RelayLogger {
  readonly deadLetters: { failure: RelayFailure; attempts: number; record: SQSRecord }[] = [];
  readonly delays: number[] = [];
  readonly lines: Record<string, unknown>[] = [];
  /** DEBUG records apart: detail below the one line per message. */
  readonly debugLines: Record<string, unknown>[] = [];
  async deadLetter(record: SQSRecord, failure: RelayFailure, attempts: number) {
    this.deadLetters.push({ failure, attempts, record });
  }
  async delay(_record: SQSRecord, seconds: number) {
    this.delays.push(seconds);
  }
  debug(message: string, attributes: Record<string, unknown>) {
    this.debugLines.push({ message, ...attributes });
  }
  info(message: string, attributes: Record<string, unknown>) {
    this.lines.push({ message, ...attributes });
  }
  warn(message: string, attributes: Record<string, unknown>) {
    this.lines.push({ message, ...attributes });
  }
  error(message: string, attributes: Record<string, unknown>) {
    this.lines.push({ message, ...attributes });
  }
}

/** What the relay hands a provider with each message, for tests that call an adapter directly. */
export function sendContext(overrides: Partial<SendContext> = {}): SendContext {
  return {
    signal: new AbortController().signal,
    internetMessageId: '<test-message@contoso.com>',
    handOff: async () => undefined,
    ...overrides,
  };
}
