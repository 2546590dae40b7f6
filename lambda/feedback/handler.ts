import { createFeedbackHandler } from './create-handler.ts';

export const handler = createFeedbackHandler();
