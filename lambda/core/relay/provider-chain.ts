import { randomUUID } from 'node:crypto';
import { domainOf } from '../address.ts';
import { isRawOutbound, type OutboundMessage } from '../attachments.ts';
import type { CircuitBreakers } from '../circuit-breaker.ts';
import { withFailure } from '../delivery.ts';
import { RelayFailure, toRelayFailure } from '../failures.ts';
import type { DeliveryRecord, MaybeSent, TryFailure } from '../ledger.ts';
import type { MailProvider, SendContext } from '../mail-provider.ts';
import { recipientsOf } from '../message.ts';
import { METRIC_DIMENSIONS, METRIC_NAMES, type RelayTelemetry } from '../metrics.ts';
import { type PacePermit, type Pacer, sleepFor } from '../pacing/pacer.ts';
import { reservationsOf } from '../record-delay.ts';
import {
  CLAIM_LOST,
  type Clock,
  type Delivery,
  describeFailure,
  exhausted,
  freshEntry,
  LEDGER_UNAVAILABLE,
  ledgerUnavailable,
  RetryScheduled,
  retryDelay,
} from './delivery-context.ts';
import type { MaybeSentResolver } from './maybe-sent.ts';
import type { OutcomeRecorder, Sent } from './outcome-recording.ts';
import type { RecordOutcome, RelayCoreSettings, RelayLogger } from './types.ts';

export interface ProviderChainDependencies {
  readonly settings: Pick<RelayCoreSettings, 'retry' | 'circuitBreaker' | 'ledger'>;
  readonly breakers: CircuitBreakers;
  readonly recorder: OutcomeRecorder;
  readonly maybeSent: MaybeSentResolver;
  readonly logger: RelayLogger;
  readonly clock: Clock;
  readonly random: () => number;
  /** Keeps sends inside the providers' limits across the fleet; absent: not paced. */
  readonly pacer?: Pacer | undefined;
  /** Providers the static-egress function sends through: their messages are passed to it. */
  readonly staticEgressProviders?: ReadonlySet<string> | undefined;
  readonly telemetry: RelayTelemetry;
}

/** Where the walk along a route's provider chain ended for this delivery. */
export type WalkResult =
  | ({ readonly kind: 'sent' } & Sent)
  | { readonly kind: 'permanent'; readonly failure: RelayFailure }
  | { readonly kind: 'retry'; readonly failure: RelayFailure; readonly delaySeconds: number }
  | { readonly kind: 'exhausted'; readonly failure: RelayFailure }
  /**
   * The hand-off was refused (another function handed the message off first) or could not be written
   * (the ledger is unreachable): the provider got nothing, and no provider try is counted.
   */
  | { readonly kind: 'not-handed-off'; readonly failure: RelayFailure; readonly delaySeconds: number }
  /** A provider's limit is reached and the route waits for it: back to the queue until `until`. */
  | {
      readonly kind: 'paced';
      readonly provider: string;
      readonly limit: string;
      readonly until: number;
      /** When the message should be back (see PaceDecision). */
      readonly returnAt: number;
      /** Rate slots the message keeps while it waits on the queue. */
      readonly reservations?: Readonly<Record<string, number>>;
    }
  /**
   * The provider is one the static-egress function sends through: the message goes to that function,
   * which resumes the chain here (the ledger says where).
   */
  | {
      readonly kind: 'static-egress';
      readonly provider: string;
      readonly progress: Pick<
        DeliveryRecord,
        'providerIndex' | 'attempts' | 'failures' | 'internetMessageId'
      >;
    }
  /** The provider may have accepted it: the answer to the sending request was lost. */
  | {
      readonly kind: 'maybe-sent';
      readonly maybeSent: MaybeSent;
      readonly failure: RelayFailure;
      readonly failures: TryFailure[];
    };

/**
 * The route's providers in turn: the hand-off in the ledger right before each send, circuit breakers,
 * fallback to the next provider, retries on the same one; then what the walk's end means for the record.
 */
export class ProviderChain {
  constructor(private readonly dependencies: ProviderChainDependencies) {}

  /** Tries the chain from where earlier deliveries left off (fallback only moves forward). */
  async walk(
    delivery: Delivery,
    outbound: OutboundMessage,
    suppressedRecipients: readonly string[],
  ): Promise<WalkResult> {
    const { settings, breakers, recorder, logger, clock, random } = this.dependencies;
    const { chain, entry, keys, deadlines, route } = delivery;
    const previous = entry.record;
    // Progress survives across deliveries; a redriven or re-sent message starts the chain afresh.
    const resume = previous?.state === 'retrying' && !previous.release;
    let index = Math.min(resume ? previous.providerIndex : 0, chain.length - 1);
    let attempts = resume ? previous.attempts : 0;
    let failures = [...(previous?.failures ?? [])];
    // A raw message keeps the Message-ID its application gave it (replies thread on it).
    const internetMessageId =
      previous?.internetMessageId ??
      (isRawOutbound(outbound) ? outbound.messageId : undefined) ??
      newInternetMessageId(delivery.sender.from.address);
    for (;;) {
      const provider = chain[index] as MailProvider;
      if (this.dependencies.staticEgressProviders?.has(provider.name)) {
        // Before its pacing, its circuit breaker and any hand-off: that function does all three.
        return {
          kind: 'static-egress',
          provider: provider.name,
          progress: { providerIndex: index, attempts, failures, internetMessageId },
        };
      }
      const isLast = index === chain.length - 1;
      let failure: RelayFailure;
      let handedOffAt: string | undefined;
      const circuit = breakers.check(provider.name);
      if (circuit.allowed) {
        // The turn within the provider's limits, taken once the provider is ready (its token
        // fetched), so the request leaves when the turn comes. Waiting happens here, before any
        // connection is taken: an idle connection held open for a turn may be closed under it.
        const pace = await this.pace(delivery, provider, suppressedRecipients.length);
        if (pace.kind === 'limited') {
          if (route.onLimit === 'next-provider' && !isLast) {
            // Not a failure of the provider: no attempt counted, no circuit breaker told.
            this.dependencies.telemetry.count(METRIC_NAMES.spilledOver, {
              [METRIC_DIMENSIONS.provider]: provider.name,
            });
            if (pace.limit === 'recipientsPerDay') {
              this.dependencies.telemetry.count(METRIC_NAMES.dailyCapReached, {
                [METRIC_DIMENSIONS.provider]: provider.name,
              });
            }
            // Detail only: the SpilledOver metric counts it, and the message's outcome line names the provider that sent it.
            logger.debug?.('Provider limit reached; the next provider of the route takes the message', {
              ...keys,
              provider: provider.name,
              limit: pace.limit,
              freeAt: new Date(pace.until).toISOString(),
            });
            index += 1;
            attempts = 0;
            continue;
          }
          return {
            kind: 'paced',
            provider: provider.name,
            limit: pace.limit,
            until: pace.until,
            returnAt: pace.returnAt,
            ...(pace.reservations && { reservations: pace.reservations }),
          };
        }
        const context: SendContext = {
          signal: deadlines.work,
          internetMessageId,
          handOff: async () => {
            if (handedOffAt !== undefined) return;
            const at = clock.iso();
            await this.handOff(delivery, provider.name, at, {
              providerIndex: index,
              attempts,
              failures,
              internetMessageId,
              ...(suppressedRecipients.length > 0 && { suppressedRecipients }),
            });
            handedOffAt = at;
          },
        };
        const startedAt = clock.now();
        try {
          const receipt = await provider.send(outbound, context).finally(() => pace.release());
          const latencyMs = clock.now() - startedAt;
          breakers.recordSuccess(provider.name);
          const fallbackFrom = chain.slice(0, index).map((earlier) => earlier.name);
          return { kind: 'sent', receipt, fallbackFrom, failures, latencyMs };
        } catch (error) {
          failure = toRelayFailure(error);
          await this.throttled(delivery, provider, failure);
          // Anything unclassified after the hand-off may have happened after the request went out.
          const maybeSent =
            handedOffAt !== undefined && (failure.maybeSent || !(error instanceof RelayFailure));
          const lookupWindow = provider.findSent ? (provider.lookupWindowSeconds ?? 0) : 0;
          if (maybeSent && route.onUnknownOutcome === 'resend' && lookupWindow === 0) {
            // Nobody can find out, and the route prefers a possible duplicate to a loss.
            logger.warn('The answer was lost; the route resends the message', {
              ...keys,
              ...describeFailure(failure),
            });
          } else if (maybeSent && handedOffAt !== undefined) {
            breakers.recordInconclusive(provider.name);
            const ambiguous: MaybeSent = {
              provider: provider.name,
              since: handedOffAt,
              reason: `the answer was lost: ${failure.code}: ${failure.reason}`,
              ...(lookupWindow > 0 && { lookupUntil: Date.parse(handedOffAt) + lookupWindow * 1000 }),
            };
            failures = withFailure(failures, recorder.tryFailure(failure));
            // Only a lookup needs the window recorded now; otherwise the next write (the DLQ entry)
            // says it all, and until then the hand-off's lease says the same.
            if (lookupWindow > 0) {
              await recorder.note(delivery, {
                state: 'retrying',
                leaseUntil: undefined,
                maybeSent: ambiguous,
                failures,
              });
            }
            return { kind: 'maybe-sent', maybeSent: ambiguous, failure, failures };
          }
          // The relay's own hand-off failed: nothing went to the provider, which is not to blame.
          if (handedOffAt === undefined && failure.provider === undefined) {
            if (failure.code === CLAIM_LOST) return { kind: 'not-handed-off', failure, delaySeconds: 1 };
            if (failure.code === LEDGER_UNAVAILABLE) {
              return {
                kind: 'not-handed-off',
                failure,
                delaySeconds: recorder.delayFor(failure, delivery.attempt),
              };
            }
          }
          if (failure.cannotCarry) {
            // About this message, not the provider's health: the next provider may carry it, and
            // when none is left no retry ever will.
            breakers.recordInconclusive(provider.name);
            if (isLast) {
              return {
                kind: 'permanent',
                failure:
                  chain.length > 1
                    ? new RelayFailure({
                        failureClass: 'permanent',
                        code: failure.code,
                        reason: `no provider of route ${route.name} can carry this message: ${failure.reason}`,
                        ...(failure.hint !== undefined && { hint: failure.hint }),
                        provider: provider.name,
                      })
                    : failure,
              };
            }
            failures = withFailure(failures, recorder.tryFailure(failure));
            logger.warn('Provider cannot carry this message; the next one tries', {
              ...keys,
              ...describeFailure(failure),
            });
            index += 1;
            attempts = 0;
            continue;
          }
          if (failure.failureClass === 'provider') breakers.recordFailure(provider.name);
          else breakers.recordInconclusive(provider.name);
        }
      } else {
        failure = new RelayFailure({
          failureClass: 'provider',
          code: 'CircuitOpen',
          reason: `skipped: ${provider.name} failed ${settings.circuitBreaker.failureThreshold} times in a row at provider level`,
          provider: provider.name,
          retryAfterSeconds: circuit.retryInSeconds,
        });
      }
      if (failure.failureClass === 'permanent') return { kind: 'permanent', failure };
      failures = withFailure(failures, recorder.tryFailure(failure));
      logger.warn('Provider failed', { ...keys, ...describeFailure(failure) });
      attempts += 1;
      // Provider-level: this provider cannot send it now, so the next one tries at once. Transient:
      // the same provider again later, until its attempts are used up.
      const moveOn = failure.failureClass === 'provider' || attempts >= settings.retry.maxAttempts;
      const next = moveOn && !isLast;
      if (next) {
        index += 1;
        attempts = 0;
      }
      // Written when the message goes back to the queue, and when a provider that had it refused it:
      // the entry must not say a provider has the message any more.
      if (!next || handedOffAt !== undefined) {
        await recorder.note(delivery, {
          state: 'retrying',
          leaseUntil: undefined,
          providerIndex: index,
          attempts,
          failures,
          internetMessageId,
        });
      }
      if (next) continue;
      if (attempts >= settings.retry.maxAttempts) {
        return { kind: 'exhausted', failure: exhausted(failure, failures, delivery.attempt) };
      }
      return { kind: 'retry', failure, delaySeconds: retryDelay(failure, attempts, settings.retry, random) };
    }
  }

  /**
   * Takes this send's turn within the provider's limits (a lease, a day count, a slot of the rate),
   * waiting in the function when the turn comes soon. When the pacing table cannot be reached the
   * send goes ahead: the provider's own throttling still answers, and its failures are retried.
   */
  private async pace(
    delivery: Delivery,
    provider: MailProvider,
    suppressed: number,
  ): Promise<
    | { readonly kind: 'go'; release(): Promise<void> }
    | {
        readonly kind: 'limited';
        readonly limit: string;
        readonly until: number;
        readonly returnAt: number;
        readonly reservations?: Readonly<Record<string, number>>;
      }
  > {
    const { pacer, clock, logger } = this.dependencies;
    const go = (permit?: PacePermit) => ({
      kind: 'go' as const,
      release: async () => {
        await permit?.release().catch((error: unknown) =>
          logger.warn('Could not give a pacing lease back (it expires by itself)', {
            error: String(error),
          }),
        );
      },
    });
    if (
      !pacer ||
      pacer.scopes({ provider: provider.name, mailbox: delivery.sender.from.address }).length === 0
    ) {
      return go();
    }
    try {
      await provider.prepare?.(delivery.deadlines.work);
    } catch {
      // The send meets the same trouble and classifies it; pacing a send that fails at once is moot.
      return go();
    }
    const request = {
      provider: provider.name,
      mailbox: delivery.sender.from.address,
      recipients: Math.max(recipientsOf(delivery.message).length - suppressed, 1),
      ...withReservations(reservationsOf(delivery.sqsRecord)),
    };
    let decision: Awaited<ReturnType<Pacer['acquire']>>;
    try {
      decision = await pacer.acquire(request, delivery.deadlines.work);
    } catch (error) {
      logger.warn('The pacing table did not answer; sending without pacing', {
        ...delivery.keys,
        provider: provider.name,
        error: String(error),
      });
      return go();
    }
    if (decision.kind === 'limited') return decision;
    const wait = decision.startAt - clock.now();
    if (wait > 0) {
      try {
        await sleepFor(wait, delivery.deadlines.work);
      } catch {
        // Out of time while waiting: the turn is lost, the message waits on the queue instead.
        await go(decision.permit).release();
        return {
          kind: 'limited',
          limit: 'invocationTime',
          until: decision.startAt,
          returnAt: decision.startAt,
        };
      }
    }
    return go(decision.permit);
  }

  /** A provider said to slow down: the whole fleet's schedule for it moves, not only this function's. */
  private async throttled(delivery: Delivery, provider: MailProvider, failure: RelayFailure): Promise<void> {
    const { pacer, settings, logger } = this.dependencies;
    if (!pacer || failure.failureClass !== 'transient' || failure.maybeSent) return;
    // 429 with Retry-After (Graph, SES), or an SMTP server's 4.7.x (busy, rate limited).
    const seconds =
      failure.retryAfterSeconds ??
      (/^4\.7\./.test(failure.code) ? settings.retry.baseDelaySeconds : undefined);
    if (seconds === undefined) return;
    await pacer
      .backOff({ provider: provider.name, mailbox: delivery.sender.from.address }, seconds)
      .catch((error: unknown) =>
        logger.warn('Could not tell the fleet to back off', { ...delivery.keys, error: String(error) }),
      );
  }

  /** Records where the walk ended: sent, dead-lettered, or back on the queue for a retry. */
  async settle(
    delivery: Delivery,
    result: WalkResult,
    suppressedRecipients: readonly string[],
  ): Promise<RecordOutcome> {
    const { recorder, logger } = this.dependencies;
    const failuresSoFar = () => delivery.entry.record?.failures ?? [];
    switch (result.kind) {
      case 'sent':
        return recorder.sent(delivery, result, suppressedRecipients);
      case 'permanent':
        return recorder.deadLetter(delivery, result.failure, {
          delivery,
          changes: {
            state: 'dead-lettered',
            leaseUntil: undefined,
            failures: withFailure(failuresSoFar(), recorder.tryFailure(result.failure)),
          },
        });
      case 'exhausted':
        return recorder.deadLetter(delivery, result.failure, {
          delivery,
          changes: { state: 'dead-lettered', leaseUntil: undefined },
        });
      case 'retry':
        return recorder.retryLater(delivery, result.failure, result.delaySeconds, failuresSoFar(), {
          delivery,
        });
      case 'paced':
        return recorder.paced(delivery, result);
      case 'static-egress':
        return recorder.passToStaticEgress(delivery, result);
      case 'not-handed-off':
        return recorder.retryLater(delivery, result.failure, result.delaySeconds, [
          recorder.tryFailure(result.failure),
        ]);
      case 'maybe-sent': {
        logger.warn('The answer was lost: the provider may have sent the message', {
          ...delivery.keys,
          ...describeFailure(result.failure),
        });
        let resolved: RecordOutcome | undefined;
        try {
          resolved = await this.dependencies.maybeSent.resolve(delivery, result.maybeSent, result.failures);
        } catch (error) {
          if (error instanceof RetryScheduled) throw error;
          // Handled like a failure before any hand-off (the DLQ did not take it, say): noted, retried.
          return recorder.failedBeforeHandOff(delivery, toRelayFailure(error));
        }
        if (resolved) return resolved;
        // The route resends: a transient failure of that provider, retried as usual.
        await recorder.note(delivery, { maybeSent: undefined });
        return recorder.retryLater(
          delivery,
          result.failure,
          recorder.delayFor(result.failure, delivery.attempt),
          failuresSoFar(),
        );
      }
    }
  }

  /**
   * Records that the message goes to `provider` now, conditional on the version this function read:
   * the one write that decides which function sends it. Written right before the request that sends.
   */
  private async handOff(
    delivery: Delivery,
    provider: string,
    at: string,
    progress: Pick<DeliveryRecord, 'providerIndex' | 'attempts' | 'failures' | 'internetMessageId'> &
      Partial<Pick<DeliveryRecord, 'suppressedRecipients'>>,
  ): Promise<void> {
    const { settings, clock } = this.dependencies;
    const { entry, sqsRecord, bodyHash, route, deadlines } = delivery;
    let written: boolean;
    try {
      written = await entry.write(
        {
          state: 'sending',
          messageId: sqsRecord.messageId,
          bodyHash,
          route: route.name,
          leaseUntil: clock.now() + settings.ledger.leaseSeconds * 1000,
          handedOffTo: provider,
          handedOffAt: at,
          ...progress,
          // A release is used up by this hand-off; whatever was uncertain before is settled by it.
          release: undefined,
          maybeSent: undefined,
        },
        () => freshEntry(sqsRecord, bodyHash, clock, settings.ledger),
        at,
        deadlines.work,
      );
    } catch (error) {
      throw ledgerUnavailable(error);
    }
    if (!written) {
      throw new RelayFailure({
        failureClass: 'transient',
        code: CLAIM_LOST,
        reason: `${entry.key} was handed to a provider by another delivery first`,
      });
    }
  }
}

/** A message relay chose for a message: `<uuid@sender-domain>`, a valid RFC 5322 msg-id. */
function newInternetMessageId(from: string): string {
  return `<${randomUUID()}@${domainOf(from)}>`;
}

function withReservations(reservations: Record<string, number> | undefined): {
  reservations?: Record<string, number>;
} {
  return reservations ? { reservations } : {};
}
