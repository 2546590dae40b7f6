// dynalite ships no types; local mode uses only its server factory.
declare module 'dynalite' {
  import type { Server } from 'node:http';
  export default function dynalite(options?: Record<string, number | boolean | string>): Server;
}
