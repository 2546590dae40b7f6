// The cold-start floor (cold-start.ts): a handler that imports nothing, bundled by the relay's own
// function construct, so its import time is what Node and the bundle's banner cost without any code.
export const handler = async (): Promise<Record<string, never>> => ({});
