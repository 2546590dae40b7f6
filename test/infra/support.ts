import { readFileSync } from 'node:fs';
import { App, type CfnResource, type Stack } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/** The repository root, so tests run the same from any working directory. */
export const REPO_ROOT = new URL('../../', import.meta.url);

/** The feature flags and settings `cdk synth` uses, so tests build what the CLI builds. */
export function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(new URL('cdk.json', REPO_ROOT), 'utf8')) as {
    context: Record<string, unknown>;
  };
  return cdkJson.context;
}

/**
 * An app that skips esbuild bundling (~0.25 s per synth instead of ~3 s).
 * Only test/infra/synth.test.ts bundles for real.
 */
export function fastApp(): App {
  // The built-in CloudFormation validator adds time to every synth; the bundling test keeps it on.
  process.env.CDK_VALIDATION = 'false';
  return new App({ context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [] } });
}

/** The logical ID CloudFormation knows a construct's main resource by. */
export function logicalIdOf(stack: Stack, construct: IConstruct): string {
  return stack.getLogicalId(construct.node.defaultChild as CfnResource);
}

/** The error an action throws; fails the test if it does not throw. */
export function errorFrom(action: () => unknown): Error {
  try {
    action();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected the action to throw');
}
