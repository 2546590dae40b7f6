import { RemovalPolicy, SecretValue, Validations } from 'aws-cdk-lib';
import type { Grant, IGrantable } from 'aws-cdk-lib/aws-iam';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import type { CredentialSecret } from '../lambda/providers/provider-definition.ts';
import { importExistingSecret } from './existing-secret.ts';

/**
 * The Secrets Manager secret with a provider's credential (the Graph app's client secret or
 * certificate, an SMTP password …), as its definition describes it (lambda/providers/<name>/definition.ts):
 * an existing secret, or one created with a placeholder, since the credential is issued elsewhere
 * (Entra ID, the SMTP server) and must never pass through the template.
 */
export class ProviderCredential extends Construct {
  readonly secret: ISecret;

  constructor(scope: Construct, id: string, credential: CredentialSecret) {
    super(scope, id);
    if (credential.arn !== undefined) {
      this.secret = importExistingSecret(
        this,
        'Secret',
        credential.arn,
        `Invalid MailRelay props at ${scope.node.path}`,
        credential.path.join('.'),
      );
    } else if (credential.placeholder) {
      this.secret = this.createPlaceholderSecret(credential.placeholder);
    } else {
      throw new Error(`${credential.path.join('.')}: required (the provider cannot create its secret)`);
    }
  }

  /** Lets the grantee read the credential (GetSecretValue, DescribeSecret on this secret only). */
  grantRead(grantee: IGrantable): Grant {
    return this.secret.grantRead(grantee);
  }

  private createPlaceholderSecret(placeholder: NonNullable<CredentialSecret['placeholder']>): ISecret {
    const secret = new Secret(this, 'Secret', {
      description: placeholder.description,
      // Not a secret: the real value is put in by hand after deploying and never passes through the template.
      secretStringValue: SecretValue.unsafePlainText(JSON.stringify(placeholder.value)),
      // The admin filled it by hand: deleting or replacing the stack must not lose the credential.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The credential is issued by the provider (Microsoft Entra ID expires and rotates client secrets and ' +
        'certificates); Secrets Manager cannot mint one. The function re-reads the secret on each cold start, ' +
        'so a rotated value put here is picked up without a deployment.',
    });
    return secret;
  }
}
