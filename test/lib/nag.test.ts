import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { loadRelayConfig } from '../../lib/config.ts';
import { MailRelayStack } from '../../lib/mail-relay-stack.ts';
import { fastApp, REPO_ROOT } from './support.ts';

const EXAMPLES_DIR = fileURLToPath(new URL('examples/', REPO_ROOT));
const exampleFiles = readdirSync(EXAMPLES_DIR).filter((name) => name.endsWith('.json'));

function appWithChecks(file: string): { app: App; checks: AwsSolutionsChecks } {
  const app = fastApp();
  new MailRelayStack(app, 'MailRelay', { config: loadRelayConfig(`${EXAMPLES_DIR}${file}`) });
  const checks = new AwsSolutionsChecks(app);
  Validations.of(app).addPlugins(checks);
  return { app, checks };
}

describe.each(exampleFiles)('AwsSolutions checks (cdk-nag) on the stack from examples/%s', (file) => {
  it('find no unacknowledged errors or warnings', () => {
    const { app, checks } = appWithChecks(file);
    app.synth();

    // Errors and warnings alike: a warning is a finding someone has to decide about.
    const findings = checks.validateScope(app).violations.map((violation) => ({
      rule: violation.ruleName,
      severity: violation.severity,
      at: violation.violatingResources.map((resource) => resource.constructPath),
    }));
    expect(findings).toEqual([]);
  });

  it('let the app synthesize with the checks registered as a validation plugin', () => {
    const { app } = appWithChecks(file);

    // Synthesis fails with the validation report if the plugin reports any finding.
    expect(() => app.synth()).not.toThrow();
  });

  it('are acknowledged only with a specific reason', () => {
    const { app } = appWithChecks(file);

    const acknowledgements = app.node
      .findAll()
      .flatMap((construct) =>
        construct.node.metadata
          .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
          .flatMap((entry) => Object.entries(entry.data as Record<string, string>)),
      );

    expect(acknowledgements.length).toBeGreaterThan(0);
    for (const [rule, reason] of acknowledgements) {
      expect(reason.trim().length, `reason for ${rule}`).toBeGreaterThanOrEqual(40);
    }
  });
});
