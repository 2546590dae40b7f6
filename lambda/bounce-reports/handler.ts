import { createBounceReportHandler } from './create-handler.ts';

export const handler = createBounceReportHandler();
