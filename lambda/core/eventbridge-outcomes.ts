import { type EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  DEFAULT_OUTCOME_KINDS,
  OUTCOME_DETAIL_TYPES,
  OUTCOME_EVENT_SOURCE,
  type OutcomeEvent,
  type OutcomeKind,
  type OutcomePublisher,
} from './outcomes.ts';

/** PutEvents takes at most 10 entries per call. */
const PUT_EVENTS_MAX_ENTRIES = 10;

/** Where outcome events go, as a function's settings say (`events`). */
export interface OutcomeEventTarget {
  readonly busName: string;
  /** The kinds published (EventBridge bills every entry); absent: DEFAULT_OUTCOME_KINDS. */
  readonly kinds?: readonly OutcomeKind[] | undefined;
}

/**
 * Publishes outcome events to an EventBridge bus: source `mail-relay`, detail-type `Mail Sent` …, only
 * the configured kinds (the others are dropped without a request), ten entries per PutEvents.
 */
export class EventBridgeOutcomes implements OutcomePublisher {
  private readonly busName: string;
  private readonly kinds: ReadonlySet<OutcomeKind>;

  constructor(
    private readonly client: EventBridgeClient,
    target: OutcomeEventTarget,
  ) {
    this.busName = target.busName;
    this.kinds = new Set(target.kinds ?? DEFAULT_OUTCOME_KINDS);
  }

  publishes(kind: OutcomeKind): boolean {
    return this.kinds.has(kind);
  }

  async publish(all: readonly OutcomeEvent[]): Promise<void> {
    const events = all.filter((event) => this.kinds.has(event.outcome));
    for (let start = 0; start < events.length; start += PUT_EVENTS_MAX_ENTRIES) {
      const batch = events.slice(start, start + PUT_EVENTS_MAX_ENTRIES);
      const result = await this.client.send(
        new PutEventsCommand({
          Entries: batch.map((event) => ({
            EventBusName: this.busName,
            Source: OUTCOME_EVENT_SOURCE,
            DetailType: OUTCOME_DETAIL_TYPES[event.outcome],
            Time: new Date(event.at),
            Detail: JSON.stringify(event),
          })),
        }),
      );
      if ((result.FailedEntryCount ?? 0) > 0) {
        const codes = (result.Entries ?? []).flatMap((entry) => (entry.ErrorCode ? [entry.ErrorCode] : []));
        throw new Error(
          `EventBridge refused ${result.FailedEntryCount} of ${batch.length} events (${codes.join(', ')})`,
        );
      }
    }
  }
}
