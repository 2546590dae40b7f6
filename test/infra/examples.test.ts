import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { loadRelayConfig } from '../../lib/config.ts';
import { MailRelayStack } from '../../lib/mail-relay-stack.ts';
import { fastApp, REPO_ROOT } from './support.ts';

const EXAMPLES_DIR = fileURLToPath(new URL('examples/', REPO_ROOT));
const exampleFiles = readdirSync(EXAMPLES_DIR).filter((name) => name.endsWith('.json'));

function synthesize(file: string) {
  const config = loadRelayConfig(`${EXAMPLES_DIR}${file}`);
  const stack = new MailRelayStack(fastApp(), 'MailRelay', { config });
  return { config, template: Template.fromStack(stack) };
}

describe('the example configurations', () => {
  it('include a minimal and a full example', () => {
    expect(exampleFiles).toEqual(expect.arrayContaining(['minimal.config.json', 'full.config.json']));
  });

  it.each(exampleFiles)(
    '%s synthesizes into an outbox with a dead-letter queue and the send function',
    (file) => {
      const { config, template } = synthesize(file);

      template.resourceCountIs('AWS::SQS::Queue', 2);
      template.hasResourceProperties('AWS::SQS::Queue', {
        RedrivePolicy: Match.objectLike({ maxReceiveCount: config.queue.maxReceiveCount }),
      });
      template.resourceCountIs('AWS::Lambda::Function', 1);
      template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
        BatchSize: config.sendFunction.batchSize,
        ScalingConfig: { MaximumConcurrency: config.sendFunction.maxConcurrency },
      });
    },
  );

  it.each(exampleFiles)('%s sets the function timeout and memory it names', (file) => {
    const { config, template } = synthesize(file);

    template.hasResourceProperties('AWS::Lambda::Function', {
      Timeout: config.sendFunction.timeoutSeconds,
      MemorySize: config.sendFunction.memoryMiB,
    });
  });
});
