import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Most files spend their time waiting on peers, timeouts and child processes, not on the CPU:
    // more files than cores run side by side. Every test waits for conditions, so a busy machine
    // makes them slower, never wrong.
    maxWorkers: 4,
    // Limits that only end a broken run: tests wait for conditions, and a busy machine is slow.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    env: {
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      CDK_DISABLE_VERSION_CHECK: 'true',
    },
  },
});
