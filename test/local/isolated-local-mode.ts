import path from 'node:path';
import type { LocalRelayOptions } from '../../local/local-relay.ts';

/**
 * Local mode for a test: every port picked by the system (0) and the state in the test's own
 * directory, so two copies of the suite, or a developer's `npm start`, can run beside it.
 */
export function isolatedLocalMode(
  workDir: string,
): Required<
  Pick<
    LocalRelayOptions,
    'sqsPort' | 'sesPort' | 'dynamoDbPort' | 'smtpPort' | 'graphPeerPort' | 'smtpIngressPort' | 'stateDir'
  >
> {
  return {
    sqsPort: 0,
    sesPort: 0,
    dynamoDbPort: 0,
    smtpPort: 0,
    graphPeerPort: 0,
    smtpIngressPort: 0,
    stateDir: path.join(workDir, 'state'),
  };
}

/** The same for `mail-relay start`. */
export function isolatedStartArgs(workDir: string): string[] {
  const options = isolatedLocalMode(workDir);
  return [
    '--sqs-port',
    String(options.sqsPort),
    '--ses-port',
    String(options.sesPort),
    '--dynamodb-port',
    String(options.dynamoDbPort),
    '--smtp-port',
    String(options.smtpPort),
    '--graph-peer-port',
    String(options.graphPeerPort),
    '--smtp-ingress-port',
    String(options.smtpIngressPort),
    '--state-dir',
    options.stateDir,
  ];
}
