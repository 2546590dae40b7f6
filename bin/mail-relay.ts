import { App } from 'aws-cdk-lib';
import { ConfigurationError } from '../lambda/core/validation.ts';
import { DEFAULT_CONFIG_PATH, loadRelayConfig } from '../lib/config.ts';
import { MailRelayStack } from '../lib/mail-relay-stack.ts';

const app = new App();
// `cdk synth -c config=PATH` picks another configuration file.
const configPath: unknown = app.node.tryGetContext('config');
try {
  const config = loadRelayConfig(typeof configPath === 'string' ? configPath : DEFAULT_CONFIG_PATH);
  new MailRelayStack(app, 'MailRelay', { config });
} catch (error) {
  // A configuration mistake deserves the list of problems, not a stack trace.
  if (!(error instanceof ConfigurationError)) throw error;
  console.error(error.message);
  process.exit(1);
}
