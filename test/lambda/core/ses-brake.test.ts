import { describe, expect, it } from 'vitest';
import { applySesBrake, firingAlarms, type SesSendingSwitch } from '../../../lambda/core/ses-brake.ts';

/** An SNS record carrying `message` as CloudWatch publishes an alarm notification (Sns.Message is a JSON string). */
function snsRecord(message: unknown) {
  return {
    EventSource: 'aws:sns',
    Sns: {
      Type: 'Notification',
      TopicArn: 'arn:aws:sns:eu-west-1:123456789012:brake',
      Message: typeof message === 'string' ? message : JSON.stringify(message),
    },
  };
}

function stateChange(alarmName: string, newState: string, oldState = 'OK') {
  return {
    AlarmName: alarmName,
    AlarmDescription: 'Bounced / Sent through ses reached 0.05',
    NewStateValue: newState,
    NewStateReason:
      'Threshold Crossed: 1 datapoint [0.08] was greater than or equal to the threshold (0.05).',
    OldStateValue: oldState,
    StateChangeTime: '2026-11-20T09:14:03.912+0000',
    Region: 'EU (Ireland)',
  };
}

/** Records every pause it is asked for. */
function recordingSwitch(): SesSendingSwitch & { readonly paused: string[] } {
  const paused: string[] = [];
  return {
    paused,
    pauseSending: async (configurationSetName) => {
      paused.push(configurationSetName);
    },
  };
}

describe('the SES brake', () => {
  it('pauses the configuration set once when an alarm enters ALARM, and names the alarm', async () => {
    const ses = recordingSwitch();

    const alarms = await applySesBrake(
      { Records: [snsRecord(stateChange('relay-ses-bounce-rate-critical', 'ALARM'))] },
      'mail-relay',
      ses,
    );

    expect(ses.paused).toEqual(['mail-relay']);
    expect(alarms).toEqual(['relay-ses-bounce-rate-critical']);
  });

  it('pauses once for two firing alarms in one event, naming both', async () => {
    const ses = recordingSwitch();

    const alarms = await applySesBrake(
      {
        Records: [
          snsRecord(stateChange('relay-ses-bounce-rate-critical', 'ALARM')),
          snsRecord(stateChange('other-relay-ses-bounce-rate-critical', 'ALARM', 'INSUFFICIENT_DATA')),
        ],
      },
      'mail-relay',
      ses,
    );

    expect(ses.paused).toEqual(['mail-relay']);
    expect(alarms).toEqual(['relay-ses-bounce-rate-critical', 'other-relay-ses-bounce-rate-critical']);
  });

  it('names an alarm delivered twice once', () => {
    const change = snsRecord(stateChange('relay-ses-bounce-rate-critical', 'ALARM'));

    expect(firingAlarms({ Records: [change, change] })).toEqual(['relay-ses-bounce-rate-critical']);
  });

  it.each(['OK', 'INSUFFICIENT_DATA'])('does not pause (nor resume) on a transition to %s', async (state) => {
    const ses = recordingSwitch();

    const alarms = await applySesBrake(
      { Records: [snsRecord(stateChange('relay-ses-bounce-rate-critical', state, 'ALARM'))] },
      'mail-relay',
      ses,
    );

    expect(ses.paused).toEqual([]);
    expect(alarms).toEqual([]);
  });

  it('ignores messages that are not alarm state changes, and still acts on the firing alarm beside them', async () => {
    const ses = recordingSwitch();

    const alarms = await applySesBrake(
      {
        Records: [
          snsRecord('not json {'),
          snsRecord('"ALARM"'),
          snsRecord({ NewStateValue: 'ALARM' }),
          snsRecord({ AlarmName: 42, NewStateValue: 'ALARM' }),
          { Sns: { Message: { AlarmName: 'already-an-object', NewStateValue: 'ALARM' } } },
          { Sns: null },
          null,
          snsRecord(stateChange('relay-ses-bounce-rate-critical', 'ALARM')),
        ],
      },
      'mail-relay',
      ses,
    );

    expect(ses.paused).toEqual(['mail-relay']);
    expect(alarms).toEqual(['relay-ses-bounce-rate-critical']);
  });

  it.each([
    ['garbage only', { Records: [snsRecord('Test message published from the console')] }],
    ['no Records', {}],
    ['Records that are not a list', { Records: 'ALARM' }],
    ['no event', undefined],
  ])('pauses nothing for an event with %s', async (_, event) => {
    const ses = recordingSwitch();

    await expect(applySesBrake(event, 'mail-relay', ses)).resolves.toEqual([]);
    expect(ses.paused).toEqual([]);
  });

  it('rejects when the pause fails, so the invocation fails and is retried', async () => {
    const failing: SesSendingSwitch = {
      pauseSending: () => Promise.reject(new Error('TooManyRequestsException')),
    };

    await expect(
      applySesBrake(
        { Records: [snsRecord(stateChange('relay-ses-bounce-rate-critical', 'ALARM'))] },
        'mail-relay',
        failing,
      ),
    ).rejects.toThrow('TooManyRequestsException');
  });
});
