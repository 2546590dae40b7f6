import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayFunction } from '../../lib/relay-function.ts';
import { cdkJsonContext, fastApp, logicalIdOf } from './support.ts';

const ENTRY = fileURLToPath(new URL('../fixtures/bundling/charset-handler.ts', import.meta.url));

function environmentOf(sourceMaps: boolean | undefined): Record<string, unknown> {
  const stack = new Stack(fastApp(), 'Test');
  const fn = new RelayFunction(stack, 'Fn', {
    entry: ENTRY,
    name: 'test',
    description: 'test',
    settings: {},
    ...(sourceMaps !== undefined && { sourceMaps }),
  });
  const resource = Template.fromStack(stack).toJSON().Resources[logicalIdOf(stack, fn)];
  return resource.Properties.Environment.Variables;
}

describe('RelayFunction', () => {
  it('leaves source maps off unless asked for: no --enable-source-maps', () => {
    expect(environmentOf(undefined)).not.toHaveProperty('NODE_OPTIONS');
    expect(environmentOf(false)).not.toHaveProperty('NODE_OPTIONS');
  });

  it('turns source maps on with sourceMaps', () => {
    expect(environmentOf(true)).toMatchObject({ NODE_OPTIONS: '--enable-source-maps' });
  });
});

/** Bundles for real (esbuild), as `cdk synth` does. */
describe('a RelayFunction bundle', () => {
  let outdir: string;
  const assets: Record<'plain' | 'mapped', string> = { plain: '', mapped: '' };

  beforeAll(() => {
    process.env.CDK_VALIDATION = 'false';
    outdir = mkdtempSync(join(tmpdir(), 'mail-relay-relay-function-'));
    const app = new App({ outdir, context: cdkJsonContext() });
    const stack = new Stack(app, 'Bundles');
    const functions = {
      plain: new RelayFunction(stack, 'Plain', {
        entry: ENTRY,
        name: 'plain',
        description: 'plain',
        settings: {},
      }),
      mapped: new RelayFunction(stack, 'Mapped', {
        entry: ENTRY,
        name: 'mapped',
        description: 'mapped',
        settings: {},
        sourceMaps: true,
      }),
    };
    const template = app.synth().getStackByName('Bundles').template as {
      Resources: Record<string, { Properties: { Code: { S3Key: string } } }>;
    };
    for (const [name, fn] of Object.entries(functions)) {
      const key = template.Resources[logicalIdOf(stack, fn)]?.Properties.Code.S3Key ?? '';
      assets[name as keyof typeof assets] = join(outdir, `asset.${key.replace(/\.zip$/, '')}`);
    }
  });

  afterAll(() => {
    if (outdir) rmSync(outdir, { recursive: true, force: true });
  });

  it('ships the bundle alone by default, and a source map beside it with sourceMaps', () => {
    expect(readdirSync(assets.plain)).toEqual(['index.mjs']);
    expect(existsSync(join(assets.mapped, 'index.mjs.map'))).toBe(true);
  });

  it('still decodes Japanese and other charsets (encoding-japanese loaded at its first use)', () => {
    const words = [
      '=?ISO-2022-JP?B?GyRCJUYlOSVIGyhC?=',
      '=?EUC-JP?B?pcaluaXI?=',
      '=?Shift_JIS?B?g2WDWINn?=',
      '=?windows-1252?Q?caf=E9?=',
      '=?UTF-8?Q?J=C3=BCrgen?=',
    ];
    const decoded = execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { handler } = await import(${JSON.stringify(pathToFileURL(join(assets.plain, 'index.mjs')).href)});
         console.log(JSON.stringify(await handler({ words: ${JSON.stringify(words)} })));`,
      ],
      { encoding: 'utf8', env: { PATH: process.env.PATH } },
    );
    expect(JSON.parse(decoded)).toEqual(['テスト', 'テスト', 'テスト', 'café', 'Jürgen']);
  });
});
