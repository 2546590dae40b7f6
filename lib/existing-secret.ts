import { Stack, Token } from 'aws-cdk-lib';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { parseSecretArn } from '../lambda/core/secret-arn.ts';
import { ConfigurationError } from '../lambda/core/validation.ts';

/**
 * Imports an existing secret by ARN, so a grant on it covers exactly that secret: a complete ARN (with
 * the 6-character suffix) is granted as is, a partial one as `<arn>-??????`. The secret must be in the
 * stack's region, since the function reads secrets through its own region's endpoint.
 *
 * @param errorTitle - the title of the ConfigurationError thrown for a bad ARN
 * @param field - the field the problems are reported on (`secretArn`, `smtp.credentialSecretArn`)
 */
export function importExistingSecret(
  scope: Construct,
  id: string,
  arn: string,
  errorTitle: string,
  field: string,
): ISecret {
  const parts = parseSecretArn(arn);
  if (!parts) {
    throw new ConfigurationError(errorTitle, [
      `${field}: must be a Secrets Manager secret ARN, arn:aws:secretsmanager:<region>:<account>:secret:<name>-AbCdEf`,
    ]);
  }
  const stackRegion = Stack.of(scope).region;
  if (!Token.isUnresolved(stackRegion) && parts.region !== stackRegion) {
    throw new ConfigurationError(errorTitle, [
      `${field}: the secret is in ${parts.region} but the stack deploys to ${stackRegion}; the function reads secrets in its own region only, so replicate the secret to ${stackRegion} and give that ARN`,
    ]);
  }
  return parts.complete
    ? Secret.fromSecretCompleteArn(scope, id, arn)
    : Secret.fromSecretPartialArn(scope, id, arn);
}
