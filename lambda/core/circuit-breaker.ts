import type { CircuitBreakerSettings } from './settings.ts';

interface Circuit {
  consecutiveFailures: number;
  /** Epoch ms until which the provider is skipped. */
  openUntil: number;
  /** After the cool-down one try goes through; until it ends, the others keep skipping. */
  trialInFlight: boolean;
}

export type CircuitDecision =
  | { readonly allowed: true }
  | { readonly allowed: false; readonly retryInSeconds: number };

/**
 * One circuit per provider, per warm function: after `failureThreshold` consecutive provider-level
 * failures (bad credential, blocked IP, paused account …) the provider is skipped for
 * `cooldownSeconds`, so each message does not pay a timeout or a refusal to find out. After the
 * cool-down a single trial goes through: success closes the circuit, failure opens it again.
 */
export class CircuitBreakers {
  private readonly circuits = new Map<string, Circuit>();

  constructor(
    private readonly settings: CircuitBreakerSettings,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a try on this provider may go ahead now. */
  check(provider: string): CircuitDecision {
    const circuit = this.circuits.get(provider);
    if (!circuit || circuit.openUntil === 0) return { allowed: true };
    const now = this.now();
    if (now < circuit.openUntil || circuit.trialInFlight) {
      return { allowed: false, retryInSeconds: Math.max(1, Math.ceil((circuit.openUntil - now) / 1000)) };
    }
    circuit.trialInFlight = true;
    return { allowed: true };
  }

  recordSuccess(provider: string): void {
    this.circuits.delete(provider);
  }

  /** A provider-level failure. */
  recordFailure(provider: string): void {
    const circuit = this.circuits.get(provider) ?? {
      consecutiveFailures: 0,
      openUntil: 0,
      trialInFlight: false,
    };
    circuit.consecutiveFailures += 1;
    if (circuit.trialInFlight || circuit.consecutiveFailures >= this.settings.failureThreshold) {
      circuit.openUntil = this.now() + this.settings.cooldownSeconds * 1000;
    }
    circuit.trialInFlight = false;
    this.circuits.set(provider, circuit);
  }

  /** A transient or permanent failure says nothing about the provider's health: a trial simply ends. */
  recordInconclusive(provider: string): void {
    const circuit = this.circuits.get(provider);
    if (circuit) circuit.trialInFlight = false;
  }

  isOpen(provider: string): boolean {
    const circuit = this.circuits.get(provider);
    return circuit !== undefined && circuit.openUntil > this.now();
  }
}
