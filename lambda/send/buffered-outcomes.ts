import type { OutcomeEvent, OutcomeKind, OutcomePublisher } from '../core/outcomes.ts';

/**
 * Holds the outcome events of an invocation and publishes them together at its end (`flush`): one
 * PutEvents for up to ten messages instead of one each. Best effort, as before: a message's fate is
 * decided and recorded whether or not its event goes out.
 */
export class BufferedOutcomes implements OutcomePublisher {
  private pending: OutcomeEvent[] = [];

  constructor(private readonly target: OutcomePublisher) {}

  /** Only the kinds the target publishes are held. */
  async publish(events: readonly OutcomeEvent[]): Promise<void> {
    for (const event of events) if (this.publishes(event.outcome)) this.pending.push(event);
  }

  publishes(kind: OutcomeKind): boolean {
    return this.target.publishes?.(kind) ?? true;
  }

  /** Publishes what was held; rejects with the target's error (the events are then dropped). */
  async flush(): Promise<void> {
    const events = this.pending;
    this.pending = [];
    if (events.length > 0) await this.target.publish(events);
  }
}
