import { createSesBrakeHandler } from './create-handler.ts';

export const handler = createSesBrakeHandler();
