import { describe, expect, it } from 'vitest';
import { parseSesEvent } from '../../lambda/core/feedback/ses-events.ts';
import type { CapturedSend } from '../../local/ses-capture.ts';
import { simulatedSesEvents } from '../../local/ses-simulator.ts';

const send = (to: string[]): CapturedSend => ({
  messageId: 'local-1',
  fromEmailAddress: 'billing@example.com',
  destination: { to, cc: [], bcc: ['Suppressionlist@Simulator.AmazonSES.com'] },
  raw: Buffer.from(
    'From: billing@example.com\r\nX-Mail-Relay-Message-Id: sqs-1\r\nSubject: Hi\r\n folded\r\n\r\nbody',
  ),
  tags: { app: 'billing' },
  configurationSetName: 'relay',
});

describe('the local SES mailbox simulator', () => {
  it('produces the events SES would publish, which the feedback parser reads like real ones', () => {
    const events = simulatedSesEvents(
      send([
        'success@simulator.amazonses.com',
        'ooto@simulator.amazonses.com',
        'complaint@simulator.amazonses.com',
        'someone@example.org',
      ]),
      new Date('2026-11-22T12:00:00Z'),
    );
    const parsed = events.flatMap((event) => parseSesEvent(event));

    expect(parsed.map((event) => [event.kind, event.recipients[0], event.bounceType])).toEqual([
      ['delivered', 'success@simulator.amazonses.com', undefined],
      ['delivered', 'ooto@simulator.amazonses.com', undefined],
      ['delivered', 'complaint@simulator.amazonses.com', undefined],
      ['complained', 'complaint@simulator.amazonses.com', undefined],
      // SES's suppression-list scenario: a permanent bounce, but from SES's own list for this account,
      // no fact about the address for the other providers: soft, never suppressed by the relay.
      ['bounced', 'suppressionlist@simulator.amazonses.com', 'soft'],
    ]);
    expect(parsed[0]).toMatchObject({
      provider: 'ses',
      providerMessageId: 'local-1',
      sourceMessageId: 'sqs-1',
      tags: { app: 'billing' },
      at: '2026-11-22T12:00:00.000Z',
    });
  });

  it('says nothing about recipients outside the simulator', () => {
    expect(simulatedSesEvents(send(['customer@example.org']))).toHaveLength(1); // the Bcc'd simulator address only
    expect(
      simulatedSesEvents({ ...send([]), destination: { to: ['a@example.org'], cc: [], bcc: [] } }),
    ).toEqual([]);
  });
});
