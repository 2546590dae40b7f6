import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { killLocalModes, spawnLocalMode } from '../local/isolated-local-mode.ts';

// The banner of `mail-relay start` with a graph section: without --graph-peer or --graph-credential,
// Graph only has the placeholder secret, and the banner must say what then happens to Graph mail.

describe('the local-mode banner and Graph without a credential', () => {
  const workDir = mkdtempSync(path.join(tmpdir(), 'mail-relay-banner-graph-'));
  const configPath = path.join(workDir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify({
      ses: { identities: ['example.com'] },
      graph: {
        tenantId: 'contoso.onmicrosoft.com',
        clientId: '6f1e2d3c-0000-4000-8000-00000000b4e7',
        senders: ['contoso.com'],
      },
    }),
  );
  const children: ChildProcess[] = [];
  afterEach(() => killLocalModes(children));
  afterAll(() => rmSync(workDir, { recursive: true, force: true }));

  /** The banner `mail-relay start` prints, up to and including its Try: line. */
  async function bannerOf(...extra: string[]): Promise<string> {
    return (await spawnLocalMode(workDir, children, ['--config', configPath, ...extra])).output();
  }

  it('says Graph has no credential, that its mail fails over (or is dead-lettered), and tries a sender that can send', async () => {
    const banner = await bannerOf();
    expect(banner).toContain(
      "  Graph credential:  none: Graph mail fails over to its route's next provider, or, when Graph is the\n" +
        '                     last, is retried and then dead-lettered (GraphCredentialNotSet).',
    );
    expect(banner).toContain('--graph-peer (local Graph peer) or --graph-credential FILE (the real tenant)');
    // Not a contoso.com sender: Graph, its only provider, cannot send without a credential.
    expect(banner).toMatch(/\nTry:\n {2}npx mail-relay send --from app@example\.com /);
    // The banner is one write: the doctor line is there with the send line.
    expect(banner).toMatch(/\n {2}npx mail-relay doctor {3}\(checks the setup against these stand-ins/);
  });

  it('says nothing of a missing credential when one is given with --graph-credential', async () => {
    const credentialPath = path.join(workDir, 'graph-credential.json');
    writeFileSync(credentialPath, JSON.stringify({ clientSecret: 'not-a-real-secret' }));
    const banner = await bannerOf('--graph-credential', credentialPath);
    expect(banner).toContain(
      '  Graph:             https://graph.microsoft.com (tenant contoso.onmicrosoft.com)',
    );
    expect(banner).not.toContain('Graph credential:');
    expect(banner).not.toContain('not-a-real-secret');
  });

  it('says nothing of a missing credential when the local Graph peer stands in for Microsoft', async () => {
    const banner = await bannerOf('--graph-peer');
    expect(banner).toContain('  Graph peer:        https://');
    expect(banner).not.toContain('Graph credential:');
    expect(banner).toMatch(/\nTry:\n {2}npx mail-relay send --from app@contoso\.com /);
  });
});
