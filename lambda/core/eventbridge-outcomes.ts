import { type EventBridgeClient, PutEventsCommand } from '@aws-sdk/client-eventbridge';
import {
  OUTCOME_DETAIL_TYPES,
  OUTCOME_EVENT_SOURCE,
  type OutcomeEvent,
  type OutcomePublisher,
} from './outcomes.ts';

/** PutEvents takes at most 10 entries per call. */
const PUT_EVENTS_MAX_ENTRIES = 10;

/** Publishes outcome events to an EventBridge bus: source `mail-relay`, detail-type `Mail Sent` …. */
export class EventBridgeOutcomes implements OutcomePublisher {
  constructor(
    private readonly client: EventBridgeClient,
    private readonly busName: string,
  ) {}

  async publish(events: readonly OutcomeEvent[]): Promise<void> {
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
