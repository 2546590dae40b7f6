import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { PutConfigurationSetSendingOptionsCommand, SESv2Client } from '@aws-sdk/client-sesv2';
import middy from '@middy/core';
import type { Context } from 'aws-lambda';
import { relayLogger } from '../core/relay-logger.ts';
import { applySesBrake, firingAlarms, type SesSendingSwitch } from '../core/ses-brake.ts';
import { readSettingsWith, sesBrakeSettingsSchema } from '../core/settings.ts';

export type SesBrakeHandler = (event: unknown, context: Context) => Promise<void>;

/** Pauses a configuration set with SES v2 `PutConfigurationSetSendingOptions` (idempotent, so the SDK's retries are safe). */
export class Sesv2SendingSwitch implements SesSendingSwitch {
  constructor(private readonly client: SESv2Client) {}

  async pauseSending(configurationSetName: string): Promise<void> {
    await this.client.send(
      new PutConfigurationSetSendingOptionsCommand({
        ConfigurationSetName: configurationSetName,
        SendingEnabled: false,
      }),
    );
  }
}

/**
 * The SES brake, subscribed to the topic the `ses` critical bounce alarm notifies on ALARM: pauses
 * sending on the relay's configuration set. A pause that fails fails the invocation, so Lambda retries
 * it (SNS invokes asynchronously), and the brake's error alarm tells the operators to pause by hand.
 * The SDK takes its endpoint from the standard configuration (AWS_ENDPOINT_URL_SESV2 in tests).
 */
export function createSesBrakeHandler(
  env: Readonly<Record<string, string | undefined>> = process.env,
): SesBrakeHandler {
  const { configurationSetName } = readSettingsWith(sesBrakeSettingsSchema, env);
  const logger = relayLogger(env);
  const ses = new Sesv2SendingSwitch(new SESv2Client({}));
  const handler = middy(async (event: unknown) => {
    let alarms: string[];
    try {
      alarms = await applySesBrake(event, configurationSetName, ses);
    } catch (error) {
      logger.error('Could not pause SES sending on the configuration set', {
        configurationSet: configurationSetName,
        alarms: firingAlarms(event),
        error: error as Error,
      });
      throw error;
    }
    if (alarms.length > 0) {
      logger.info('Paused SES sending on the configuration set', {
        configurationSet: configurationSetName,
        alarms,
      });
    } else {
      logger.info('No alarm in the notification entered ALARM: SES sending left as it is', {
        configurationSet: configurationSetName,
        alarms,
      });
    }
  }).use(injectLambdaContext(logger, { logEvent: false }));
  return handler as SesBrakeHandler;
}
