import { OUTCOME_UNKNOWN, withFailure } from '../delivery.ts';
import { ANSWER_LOST_HINT, RelayFailure, toRelayFailure } from '../failures.ts';
import type { MaybeSent, TryFailure } from '../ledger.ts';
import type { MailProvider } from '../mail-provider.ts';
import type { Clock, Delivery } from './delivery-context.ts';
import type { OutcomeRecorder } from './outcome-recording.ts';
import type { RecordOutcome, RelayLogger } from './types.ts';

/** First wait before looking for a lost-answer message again; it doubles up to the provider's window. */
const LOOKUP_FIRST_DELAY_SECONDS = 10;

export interface MaybeSentDependencies {
  readonly providers: readonly MailProvider[];
  readonly recorder: OutcomeRecorder;
  readonly logger: RelayLogger;
  readonly clock: Clock;
}

/**
 * A provider may have a message (its answer was lost, or a function stopped while it had it). Asks the
 * provider's sent items while its lookup window lasts; otherwise the route decides: resend, or
 * dead-letter it rather than risk sending it twice.
 */
export class MaybeSentResolver {
  private readonly byName: Map<string, MailProvider>;

  constructor(private readonly dependencies: MaybeSentDependencies) {
    this.byName = new Map(dependencies.providers.map((provider) => [provider.name, provider]));
  }

  /**
   * Resolves the outcome when the question is settled here (found sent, or dead-lettered); returns
   * undefined when the message should be sent after all (the provider says it never got it, or the
   * route prefers a possible duplicate to a loss). Throws RetryScheduled to look again later.
   */
  async resolve(
    delivery: Delivery,
    maybeSent: MaybeSent,
    failuresSoFar?: readonly TryFailure[],
  ): Promise<RecordOutcome | undefined> {
    const { recorder, logger, clock } = this.dependencies;
    const { entry, keys, deadlines } = delivery;
    const provider = this.byName.get(maybeSent.provider);
    const internetMessageId = entry.record?.internetMessageId;
    const lookupUntil =
      maybeSent.lookupUntil ??
      (provider?.lookupWindowSeconds
        ? Date.parse(maybeSent.since) + provider.lookupWindowSeconds * 1000
        : undefined);
    let lookupProblem: RelayFailure | undefined;
    if (provider?.findSent && internetMessageId && lookupUntil !== undefined) {
      const lookup = await provider
        .findSent({ from: delivery.sender.from.address, internetMessageId }, deadlines.work)
        .catch((error: unknown) => ({ unavailable: toRelayFailure(error) }));
      if ('found' in lookup && lookup.found) {
        return this.confirmSent(delivery, maybeSent, lookup.providerMessageId ?? internetMessageId);
      }
      const stillLooking = clock.now() < lookupUntil;
      if ('found' in lookup) {
        if (!stillLooking) {
          // Not there a whole window after the hand-off: the provider never accepted it.
          logger.warn('Lost answer resolved: the provider does not have the message, sending it again', {
            ...keys,
            provider: maybeSent.provider,
            internetMessageId,
          });
          await recorder.note(delivery, {
            maybeSent: undefined,
            failures: withFailure(entry.record?.failures ?? [], {
              provider: maybeSent.provider,
              code: 'AnswerLost',
              failureClass: 'transient',
              reason: `${maybeSent.reason}; no sent copy with Message-ID ${internetMessageId} appeared in ${provider.lookupWindowSeconds} s, so it was not sent`,
              at: clock.iso(),
            }),
          });
          return undefined;
        }
      } else if (lookup.unavailable.failureClass !== 'transient' || !stillLooking) {
        lookupProblem = lookup.unavailable;
      }
      if (!lookupProblem) {
        // Not there yet, or the mailbox could not be read just now: look again a little later.
        if (!entry.record?.maybeSent || entry.record.maybeSent.lookupUntil === undefined) {
          await recorder.note(delivery, {
            state: 'retrying',
            leaseUntil: undefined,
            maybeSent: { ...maybeSent, lookupUntil },
          });
        }
        const lookups =
          entry.record?.failures.filter((failure) => failure.code === 'LookupPending').length ?? 0;
        const delaySeconds = Math.max(
          1,
          Math.min(LOOKUP_FIRST_DELAY_SECONDS * 2 ** lookups, Math.ceil((lookupUntil - clock.now()) / 1000)),
        );
        const pending = new RelayFailure({
          failureClass: 'transient',
          code: 'LookupPending',
          reason: `${maybeSent.provider} may have sent it (${maybeSent.reason}); looking for Message-ID ${internetMessageId} in the mailbox again in ${delaySeconds} s`,
          provider: maybeSent.provider,
        });
        await recorder.note(delivery, {
          failures: withFailure(entry.record?.failures ?? [], recorder.tryFailure(pending)),
        });
        return recorder.retryLater(delivery, pending, delaySeconds, entry.record?.failures ?? [], {
          finalFailure: this.outcomeUnknown(delivery, maybeSent, pending),
          delivery,
        });
      }
    }
    if (delivery.route.onUnknownOutcome === 'resend') {
      // The route prefers a possible duplicate to a loss (password resets, one-time codes).
      logger.warn('A provider may have sent this message; the route resends it', {
        ...keys,
        provider: maybeSent.provider,
        reason: maybeSent.reason,
      });
      return undefined;
    }
    const failure = this.outcomeUnknown(delivery, maybeSent, lookupProblem);
    return recorder.deadLetter(delivery, failure, {
      delivery,
      changes: {
        state: 'dead-lettered',
        leaseUntil: undefined,
        maybeSent,
        failures: withFailure(failuresSoFar ?? entry.record?.failures ?? [], recorder.tryFailure(failure)),
      },
    });
  }

  private outcomeUnknown(
    delivery: Delivery,
    maybeSent: MaybeSent,
    lookupProblem?: RelayFailure,
  ): RelayFailure {
    const internetMessageId = delivery.entry.record?.internetMessageId;
    return new RelayFailure({
      failureClass: 'permanent',
      code: OUTCOME_UNKNOWN,
      reason: `${maybeSent.provider} may have sent this message (${maybeSent.reason})${internetMessageId ? `, Message-ID ${internetMessageId}` : ''}; not sending it again${lookupProblem ? `. The mailbox could not be checked: ${lookupProblem.code}: ${lookupProblem.reason}` : ''}`,
      hint: ANSWER_LOST_HINT,
      provider: maybeSent.provider,
    });
  }

  /** The provider had the message after all: it was sent, once. */
  private confirmSent(
    delivery: Delivery,
    maybeSent: MaybeSent,
    providerMessageId: string,
  ): Promise<RecordOutcome> {
    const index = delivery.chain.findIndex((candidate) => candidate.name === maybeSent.provider);
    const fallbackFrom = index <= 0 ? [] : delivery.chain.slice(0, index).map((earlier) => earlier.name);
    return this.dependencies.recorder.foundSent(delivery, maybeSent, providerMessageId, fallbackFrom);
  }
}
