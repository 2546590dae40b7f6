import { describe, expect, it } from 'vitest';
import { summarize } from '../../cli/dlq.ts';

describe('the DLQ summary of a raw message (MIME plus envelope)', () => {
  it('counts its envelope as recipients and says where its MIME is', () => {
    const inline = summarize(
      JSON.stringify({
        v: 1,
        from: 'scanner@fabrikam.com',
        recipients: ['ana@example.org', 'boss@example.org'],
        mime: { content: Buffer.from('From: scanner@fabrikam.com\r\n\r\nscan\r\n').toString('base64') },
        tags: { ingressClient: 'scanner' },
      }),
    );
    const stored = summarize(
      JSON.stringify({
        v: 1,
        from: 'scanner@fabrikam.com',
        recipients: ['ana@example.org'],
        mime: { s3: { bucket: 'relay-ingress-0123abcd', key: 'ingress/scanner/m-1' } },
      }),
    );

    expect(inline).toMatchObject({
      envelope: ['ana@example.org', 'boss@example.org'],
      recipients: 2,
      mime: { bytes: 36, s3: null },
    });
    expect(stored.mime).toEqual({ bytes: null, s3: 's3://relay-ingress-0123abcd/ingress/scanner/m-1' });
  });

  it('has no MIME for a composed message', () => {
    expect(summarize(JSON.stringify({ v: 1, from: 'a@example.com', to: 'b@example.org' })).mime).toBeNull();
  });
});
