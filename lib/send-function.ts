import { join } from 'node:path';
import type { Construct } from 'constructs';
import type { RelaySettings } from '../lambda/send/settings.ts';
import { REPO_ROOT, RelayFunction, type RelayFunctionProps } from './relay-function.ts';

export const SEND_HANDLER_ENTRY = join(REPO_ROOT, 'lambda', 'send', 'handler.ts');

export interface SendFunctionProps
  extends Omit<RelayFunctionProps, 'entry' | 'description' | 'name' | 'settings'> {
  /** What the function reads at cold start from `MAIL_RELAY_SETTINGS`. */
  readonly settings: RelaySettings;
  /** @default - the send function's: it sends through every configured provider */
  readonly description?: string;
}

/** The Lambda function that sends the outbox's mail requests (`lambda/send/handler.ts`). */
export class SendFunction extends RelayFunction {
  constructor(scope: Construct, id: string, props: SendFunctionProps) {
    super(scope, id, {
      ...props,
      entry: SEND_HANDLER_ENTRY,
      name: 'send function',
      description:
        props.description ??
        'Sends mail requests from the mail relay outbox through the configured providers (Amazon SES, Microsoft Graph, SMTP)',
    });
  }
}
