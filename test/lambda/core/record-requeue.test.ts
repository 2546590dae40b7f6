import { describe, expect, it } from 'vitest';
import { requeuedAttributes, reservationsOf } from '../../../lambda/core/record-delay.ts';
import { sqsRecord } from '../../helpers/peers.ts';

const attribute = (stringValue: string) => ({ dataType: 'String', stringValue }) as never;

describe('a copy put back on the queue to wait for a limit', () => {
  it('keeps the producer attributes, names the original and carries the reserved slots', () => {
    const record = {
      ...sqsRecord('{}', { messageId: 'original' }),
      messageAttributes: { tenant: attribute('acme') },
    };

    expect(requeuedAttributes(record, { 'graph|mailbox|a@contoso.com|messages': 1234 })).toEqual({
      tenant: { DataType: 'String', StringValue: 'acme' },
      'MailRelay.SourceMessageId': { DataType: 'String', StringValue: 'original' },
      'MailRelay.PacingReservations': {
        DataType: 'String',
        StringValue: '{"graph|mailbox|a@contoso.com|messages":1234}',
      },
    });
  });

  it('keeps naming the first original, and replaces the slots a copy of a copy had', () => {
    const record = {
      ...sqsRecord('{}', { messageId: 'copy-1' }),
      messageAttributes: {
        'MailRelay.SourceMessageId': attribute('original'),
        'MailRelay.PacingReservations': attribute('{"k":1}'),
      },
    };

    expect(requeuedAttributes(record, { k: 2 })).toEqual({
      'MailRelay.SourceMessageId': { DataType: 'String', StringValue: 'original' },
      'MailRelay.PacingReservations': { DataType: 'String', StringValue: '{"k":2}' },
    });
  });

  it('cannot be made when 10 attributes leave no room to name the original, and drops the slots first', () => {
    const nine = Object.fromEntries(Array.from({ length: 9 }, (_, index) => [`a${index}`, attribute('x')]));
    const ten = { ...nine, a9: attribute('x') };

    expect(requeuedAttributes({ ...sqsRecord('{}'), messageAttributes: ten })).toBeUndefined();
    const withNine = requeuedAttributes({ ...sqsRecord('{}'), messageAttributes: nine }, { k: 1 });
    expect(Object.keys(withNine ?? {})).toHaveLength(10);
    expect(withNine).not.toHaveProperty(['MailRelay.PacingReservations']);
  });

  it('reads the slots back, and ignores an attribute that is not its own shape', () => {
    const withSlots = (text: string) => ({
      ...sqsRecord('{}'),
      messageAttributes: { 'MailRelay.PacingReservations': attribute(text) },
    });

    expect(reservationsOf(withSlots('{"k":5,"bad":"x"}'))).toEqual({ k: 5 });
    expect(reservationsOf(withSlots('not json'))).toBeUndefined();
    expect(reservationsOf(sqsRecord('{}'))).toBeUndefined();
  });
});
