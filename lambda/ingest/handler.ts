import { createIngestHandler } from './create-handler.ts';

export const handler = createIngestHandler();
