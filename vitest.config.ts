import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Most files spend their time waiting on peers, timeouts and child processes, not on the CPU:
    // more files than cores run side by side. Every test waits for conditions, so a busy machine
    // makes them slower, never wrong.
    maxWorkers: 4,
    // Peers start on free loopback ports per test file; synth with bundling takes a few seconds.
    testTimeout: 60_000,
    hookTimeout: 60_000,
    env: {
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      CDK_DISABLE_VERSION_CHECK: 'true',
    },
  },
});
