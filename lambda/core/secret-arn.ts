/**
 * A Secrets Manager secret ARN: `arn:<partition>:secretsmanager:<region>:<account>:secret:<name>`,
 * where Secrets Manager appends `-` and 6 random characters to the name in the complete ARN.
 * Secret names may contain letters, digits and `/_+=.@-` (up to 512 characters), never `:`.
 * Plain syntax (no named groups), as it also lands in the JSON Schema of the configuration file.
 */
export const SECRET_ARN_PATTERN =
  /^arn:(aws|aws-us-gov|aws-cn):secretsmanager:[a-z]{2}(-[a-z]+)+-\d+:\d{12}:secret:[A-Za-z0-9/_+=.@-]{1,519}$/;

/** The 6 characters Secrets Manager appends to a secret's name in its complete ARN. */
const COMPLETE_ARN_SUFFIX = /-[A-Za-z0-9]{6}$/;

export interface SecretArnParts {
  readonly partition: string;
  readonly region: string;
  readonly account: string;
  /** The name as it appears in the ARN (with the suffix when the ARN is complete). */
  readonly name: string;
  /**
   * Whether the ARN ends in the random suffix. A partial ARN whose name happens to end in `-` and
   * 6 letters or digits (`mail-relay`) cannot be told apart from a complete one, which is why
   * callers are asked for the complete ARN.
   */
  readonly complete: boolean;
}

export function parseSecretArn(value: string): SecretArnParts | undefined {
  if (!SECRET_ARN_PATTERN.test(value)) return undefined;
  const [, partition = '', , region = '', account = '', , name = ''] = value.split(':');
  return { partition, region, account, name, complete: COMPLETE_ARN_SUFFIX.test(name) };
}

/** What a configuration says about an ARN that does not fit SECRET_ARN_PATTERN. */
export const SECRET_ARN_MESSAGE =
  'must be a Secrets Manager secret ARN, arn:aws:secretsmanager:<region>:<account>:secret:<name>-AbCdEf (the complete ARN, as the console shows it)';
