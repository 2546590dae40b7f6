import { RemovalPolicy, SecretValue, Validations } from 'aws-cdk-lib';
import type { Grant, IGrantable } from 'aws-cdk-lib/aws-iam';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { importExistingSecret } from './existing-secret.ts';

/**
 * What the created secret holds until the admin puts the credential in. The send function
 * recognises the `placeholder` key and reports GraphCredentialNotSet instead of a parse error.
 *
 * Never change this text: it is the secret's value in the template, so CloudFormation would write
 * the new text over the credential the admin put in, on the next deployment of every relay.
 */
export const GRAPH_CREDENTIAL_PLACEHOLDER = {
  placeholder:
    'Replace this value with {"clientSecret": "..."} or {"certificate": "-----BEGIN CERTIFICATE-----...", "privateKey": "-----BEGIN PRIVATE KEY-----..."}; see the README, Microsoft Graph setup',
};

export interface GraphCredentialProps {
  /**
   * ARN of an existing secret holding the credential, preferably the complete ARN (with the
   * 6-character suffix Secrets Manager adds to the name). It must be in the stack's region: the
   * function reads it through its own region's endpoint.
   *
   * @default - a new secret holding a placeholder, for the admin to fill after deploying
   */
  readonly secretArn?: string;
}

/**
 * The Secrets Manager secret with the Microsoft Graph app credential (a client secret, or a
 * certificate and its private key, as JSON). Either an existing secret, or one created with a
 * placeholder: the credential is issued in Entra ID and must never pass through the template.
 */
export class GraphCredential extends Construct {
  readonly secret: ISecret;

  constructor(scope: Construct, id: string, props: GraphCredentialProps = {}) {
    super(scope, id);
    this.secret =
      props.secretArn === undefined ? this.createPlaceholderSecret() : this.importSecret(props.secretArn);
  }

  /** Lets the grantee read the credential (GetSecretValue, DescribeSecret on this secret only). */
  grantRead(grantee: IGrantable): Grant {
    return this.secret.grantRead(grantee);
  }

  private importSecret(arn: string): ISecret {
    return importExistingSecret(
      this,
      'Secret',
      arn,
      `Invalid GraphCredential at ${this.node.path}`,
      'secretArn',
    );
  }

  private createPlaceholderSecret(): ISecret {
    const secret = new Secret(this, 'Secret', {
      description:
        'Microsoft Graph app credential for the mail relay, JSON: {"clientSecret": "..."} or ' +
        '{"certificate": "<PEM>", "privateKey": "<PEM>"}. Created with a placeholder; put the real value in after deploying.',
      // Not a secret: the real value is put in by hand after deploying and never passes through the template.
      secretStringValue: SecretValue.unsafePlainText(JSON.stringify(GRAPH_CREDENTIAL_PLACEHOLDER)),
      // The admin filled it by hand: deleting or replacing the stack must not lose the credential.
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(secret).acknowledge({
      id: 'AwsSolutions-SMG4',
      reason:
        'The credential is issued by Microsoft Entra ID, which also expires it (client secret or certificate ' +
        'lifetime) and where it is rotated; Secrets Manager cannot mint one. The function re-reads the secret ' +
        'on each cold start, so a rotated value put here is picked up without a deployment.',
    });
    return secret;
  }
}
