/**
 * Token buckets, one per receiver origin: `ratePerSecond` tokens flow in continuously up to
 * `burst`. Reservations may run the balance below zero; each one learns when its token is due,
 * so queued requests leave exactly at the bucket's pace, never ahead of it. Pure: time is passed
 * in.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;
  /** No token is handed out before this time (a receiver's Retry-After). */
  private pausedUntil = 0;

  constructor(
    private ratePerSecond: number,
    private burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  private refill(now: number): void {
    const from = Math.max(this.last, this.pausedUntil);
    if (now > from) {
      this.tokens = Math.min(this.burst, this.tokens + ((now - from) * this.ratePerSecond) / 1000);
      this.last = now;
    }
  }

  /** Takes one token; returns how many ms from `now` the caller must wait before using it. */
  reserve(now: number): number {
    this.refill(now);
    this.tokens -= 1;
    const startAt = Math.max(now, this.pausedUntil);
    if (this.tokens >= 0) return startAt - now;
    return startAt - now + Math.ceil((-this.tokens * 1000) / this.ratePerSecond);
  }

  /** Gives back a reservation that will not be used. */
  refund(): void {
    this.tokens = Math.min(this.burst, this.tokens + 1);
  }

  /** Nothing leaves before `until` (the receiver asked for a pause); then one, then the rate. */
  pause(until: number, now: number): void {
    this.refill(now);
    if (until <= this.pausedUntil) return;
    this.pausedUntil = until;
    // One request may go when the pause ends; the rest follow at the bucket's rate.
    this.tokens = Math.min(this.tokens, 1);
    this.last = until;
  }

  /** Changes the rate (when the number of worker processes sharing the budget changes). */
  setRate(ratePerSecond: number, burst: number, now: number): void {
    this.refill(now);
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.tokens = Math.min(this.tokens, burst);
  }
}

/** Buckets per origin with a shared rate. */
export class RateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();
  private rate: number;
  private burst: number;

  constructor(maxPerSecond: number, burst: number) {
    this.rate = maxPerSecond;
    this.burst = burst;
  }

  private bucket(origin: string, now: number): TokenBucket {
    let b = this.buckets.get(origin);
    if (!b) {
      b = new TokenBucket(this.rate, this.burst, now);
      this.buckets.set(origin, b);
    }
    return b;
  }

  reserve(origin: string, now: number): number {
    return this.bucket(origin, now).reserve(now);
  }

  refund(origin: string): void {
    this.buckets.get(origin)?.refund();
  }

  pause(origin: string, until: number, now: number): void {
    this.bucket(origin, now).pause(until, now);
  }

  /**
   * Splits the configured budget over `shares` processes: each enforces `maxPerSecond / shares`
   * and `burst / shares` (at least one token), so all of them together stay within the budget.
   */
  share(maxPerSecond: number, burst: number, shares: number, now: number): void {
    const n = Math.max(1, shares);
    this.rate = maxPerSecond / n;
    this.burst = Math.max(1, burst / n);
    for (const b of this.buckets.values()) b.setRate(this.rate, this.burst, now);
  }
}
