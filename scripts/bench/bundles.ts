import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { App, type CfnResource, Stack } from 'aws-cdk-lib';
import { build } from 'esbuild';
import { parseRelayConfig, relaySettingsFor } from '../../lib/config.ts';
import { REPO_ROOT, RelayFunction } from '../../lib/relay-function.ts';
import { SendFunction } from '../../lib/send-function.ts';

export interface Bundles {
  /** The send function's bundle (index.mjs), as `cdk synth` builds it. */
  readonly relay: string;
  /** The hand-written loop (hand-written-handler.ts), bundled by the same construct. */
  readonly handWritten: string;
  /** lambda-worker.ts as plain JavaScript. */
  readonly worker: string;
  /** pacing-worker.ts (an instance that polls the outbox itself) as plain JavaScript. */
  readonly pacingWorker: string;
}

const HAND_WRITTEN_ENTRY = fileURLToPath(new URL('./hand-written-handler.ts', import.meta.url));
const WORKER_ENTRY = fileURLToPath(new URL('./lambda-worker.ts', import.meta.url));
const PACING_WORKER_ENTRY = fileURLToPath(new URL('./pacing-worker.ts', import.meta.url));

/**
 * Builds what the benchmark runs, from the code as it is now (every run). The two functions come from
 * a synth of the project's own constructs (SendFunction for the relay, RelayFunction for the loop),
 * so both are bundled exactly as `cdk synth` bundles the send function: whatever lib/relay-function.ts
 * says (ESM, node22, minified, AWS SDK inside …) applies without being repeated here.
 */
export async function buildBundles(
  directory: string,
  options: { readonly sourceMaps?: boolean } = {},
): Promise<Bundles> {
  // The template validator checks the CloudFormation, which the benchmark does not use.
  process.env.CDK_VALIDATION = 'false';
  const outdir = join(directory, 'cdk.out');
  const app = new App({ outdir, context: cdkJsonContext() });
  const stack = new Stack(app, 'MailRelayBench');
  // A source map only for --cpu-prof, whose summary maps the profile through it: deployed bundles have none.
  const sourceMaps = options.sourceMaps ?? false;
  const send = new SendFunction(stack, 'Send', { settings: placeholderSettings(), sourceMaps });
  const handWritten = new RelayFunction(stack, 'HandWritten', {
    entry: HAND_WRITTEN_ENTRY,
    name: 'hand-written loop',
    description: 'The benchmark yardstick: a sequential send loop',
    settings: {},
    sourceMaps,
  });
  const assembly = app.synth();
  const template = assembly.getStackByName(stack.stackName).template as CloudFormationTemplate;
  const bundleOf = (fn: RelayFunction) =>
    findBundle(outdir, stack.getLogicalId(fn.node.defaultChild as CfnResource), template);
  const worker = join(directory, 'lambda-worker.mjs');
  const pacingWorker = join(directory, 'pacing-worker.mjs');
  const plain = {
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    logLevel: 'warning',
  } as const;
  await build({ ...plain, entryPoints: [WORKER_ENTRY], outfile: worker });
  await build({
    ...plain,
    entryPoints: [PACING_WORKER_ENTRY],
    outfile: pacingWorker,
    // Its SQS client's CommonJS parts require Node built-ins, which an ES module has no `require` for.
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
  });
  return { relay: bundleOf(send), handWritten: bundleOf(handWritten), worker, pacingWorker };
}

interface CloudFormationTemplate {
  readonly Resources: Record<
    string,
    { readonly Properties?: { readonly Code?: { readonly S3Key?: unknown } } }
  >;
}

/** The index.mjs of a function: its Code.S3Key is `<asset hash>.zip`, its directory `asset.<hash>`. */
function findBundle(outdir: string, logicalId: string, template: CloudFormationTemplate): string {
  const key = template.Resources[logicalId]?.Properties?.Code?.S3Key;
  if (typeof key !== 'string') throw new Error(`the function ${logicalId} has no asset in the template`);
  const bundle = join(outdir, `asset.${key.replace(/\.zip$/, '')}`, 'index.mjs');
  if (!existsSync(bundle)) throw new Error(`the bundle of ${logicalId} is not at ${bundle}`);
  return bundle;
}

/** The feature flags of cdk.json, so the synth is the one `cdk synth` makes. */
function cdkJsonContext(): Record<string, unknown> {
  const cdkJson = JSON.parse(readFileSync(join(REPO_ROOT, 'cdk.json'), 'utf8')) as {
    context: Record<string, unknown>;
  };
  return cdkJson.context;
}

/** Any valid settings: the synth only writes them into the template, which the benchmark does not use. */
function placeholderSettings() {
  return relaySettingsFor(parseRelayConfig({ ses: { identities: ['example.com'] } }), {
    queueUrl: 'https://sqs.us-east-1.amazonaws.com/000000000000/outbox',
    deadLetterQueueUrl: 'https://sqs.us-east-1.amazonaws.com/000000000000/dlq',
    ledgerTableName: 'ledger',
    suppressionTableName: 'suppression',
  });
}
