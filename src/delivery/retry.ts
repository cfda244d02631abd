/**
 * Retry maths (SPEC §6): how long to wait before retry n, and what to do after an attempt.
 * Pure: no clock and no randomness of its own unless the caller leaves `random` at its default.
 *
 * Example, the defaults (exponential, initial 100 ms, multiplier 2.5, max 5 s, 3 attempts):
 * attempt 1 at 0 ms; retry 1 waits 100 ms; retry 2 waits 250 ms (attempt 3 about 350 ms after the
 * first); then the delivery is dead-lettered. Further retries would wait 625, 1563, 3906, 5000 ms.
 * (The FraiseQL document's timeline lists attempt 3 at "500ms (100ms * 2.5)"; its own formula gives
 * a 250 ms delay, which is what the SPEC states and what is implemented.)
 */

import type { RetryPolicy } from "../config/types.js";

/**
 * Delay in ms before retry `n` (n = 1 is the first retry, i.e. the wait after attempt 1 failed):
 * exponential `initialDelay * multiplier^(n-1)`, linear `initialDelay * n`, fixed `initialDelay`;
 * rounded to whole ms and capped at `maxDelay`; then, when `jitter` > 0, spread to a value in
 * `[d * (1 - jitter), d]` drawn from `random` (so jitter never lengthens a delay past the cap).
 * The result is always within `[0, maxDelay]`. `n` below 1 is treated as 1.
 *
 * @param random source of numbers in [0, 1). (Default: Math.random)
 */
export function retryDelay(policy: RetryPolicy, n: number, random: () => number = Math.random): number {
  const k = Math.max(1, Math.floor(n));
  const initial = Math.max(0, policy.initialDelay);
  const cap = Math.max(0, policy.maxDelay);
  let d: number;
  switch (policy.backoff) {
    case "linear":
      d = initial * k;
      break;
    case "fixed":
      d = initial;
      break;
    default:
      d = initial * policy.multiplier ** (k - 1);
  }
  // Large n overflows to Infinity: "as long as allowed". A zero initial delay stays zero (0 * Infinity is NaN).
  if (initial === 0) d = 0;
  else d = Number.isFinite(d) ? Math.min(Math.max(0, Math.round(d)), cap) : cap;
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  if (jitter > 0 && d > 0) {
    const x = random();
    const r = Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0;
    d = Math.round(d * (1 - jitter * r));
  }
  return d;
}

/** How one attempt ended, as the HTTP sender reports it. */
export type AttemptOutcome =
  | { kind: "success"; status: number }
  | { kind: "http"; status: number; retryAfterMs?: number }
  | { kind: "timeout" }
  | { kind: "connection"; code?: string }
  | { kind: "invalid_request"; message: string };

/**
 * What to do next. `reason` is one of {@link FAILURE_REASONS}. `exhausted` on a dead decision
 * says the failure was retryable but `maxAttempts` was reached (false: refused outright).
 */
export type RetryDecision =
  | { action: "succeeded" }
  | { action: "retry"; delayMs: number; reason: FailureReason }
  | { action: "dead"; reason: FailureReason; exhausted: boolean };

/**
 * Failure reasons, used as the DLQ `reason` column and the `reason` label of
 * `fraiseql_webhook_failures_total`:
 * - `http_4xx`, `http_5xx` (and `http_3xx`, `http_1xx` for statuses that are not followed): the
 *   receiver answered with that class of status;
 * - `timeout`: no answer within the timeout;
 * - `connection`: DNS, refused, reset, TLS...;
 * - `invalid_request`: the rendered request is invalid and was never sent.
 * The pipeline adds `upstream_failed` (SPEC §5, sequential chains) on its own.
 */
export const FAILURE_REASONS = [
  "http_1xx",
  "http_3xx",
  "http_4xx",
  "http_5xx",
  "timeout",
  "connection",
  "invalid_request",
] as const;

/** One of {@link FAILURE_REASONS}. */
export type FailureReason = (typeof FAILURE_REASONS)[number];

function statusReason(status: number): FailureReason {
  if (status >= 500) return "http_5xx";
  if (status >= 400) return "http_4xx";
  if (status >= 300) return "http_3xx";
  return "http_1xx";
}

/**
 * What to do after attempt number `attempt` (1-based) ended with `outcome`.
 *
 * - 2xx (either kind) -> `succeeded`.
 * - A status in `dontRetryOn` -> `dead` at once (it wins when a status is in both lists).
 * - A status in `retryOn`, a timeout or a connection error -> `retry`.
 * - A status in neither list: 5xx -> `retry`; anything else (3xx, other 4xx) -> `dead` at once.
 * - `invalid_request` -> `dead` at once (the request was never sent and would not change).
 * - A retryable failure of the last attempt (`attempt >= maxAttempts`) -> `dead` with the reason of
 *   that failure and `exhausted: true`.
 * - The delay of a retry is {@link retryDelay}(policy, attempt); with a `Retry-After`
 *   (`retryAfterMs`) it is `min(max(computed, retryAfter), maxDelay)`: the receiver may ask for a
 *   longer wait, never beyond `maxDelay`, and never for a shorter one than the policy's.
 *
 * @param random passed to {@link retryDelay} for jitter. (Default: Math.random)
 */
export function decideRetry(
  policy: RetryPolicy,
  attempt: number,
  outcome: AttemptOutcome,
  random: () => number = Math.random,
): RetryDecision {
  let reason: FailureReason;
  let retryAfterMs: number | undefined;
  switch (outcome.kind) {
    case "success":
      return { action: "succeeded" };
    case "http": {
      const { status } = outcome;
      if (status >= 200 && status < 300) return { action: "succeeded" };
      reason = statusReason(status);
      const retryable = policy.dontRetryOn.includes(status)
        ? false
        : policy.retryOn.includes(status) || status >= 500;
      if (!retryable) return { action: "dead", reason, exhausted: false };
      retryAfterMs = outcome.retryAfterMs;
      break;
    }
    case "timeout":
      reason = "timeout";
      break;
    case "connection":
      reason = "connection";
      break;
    case "invalid_request":
      return { action: "dead", reason: "invalid_request", exhausted: false };
  }
  if (attempt >= policy.maxAttempts) return { action: "dead", reason, exhausted: true };
  let delayMs = retryDelay(policy, attempt, random);
  if (retryAfterMs !== undefined && retryAfterMs > delayMs) {
    delayMs = Math.min(Math.ceil(retryAfterMs), Math.max(0, policy.maxDelay));
  }
  return { action: "retry", delayMs, reason };
}

const DAY_NAME_RE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)/i;
const ASCTIME_RE = /^[A-Za-z]{3} [A-Za-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/;

/**
 * Parses a `Retry-After` header: delay-seconds (`"120"`) or an HTTP-date
 * (`"Wed, 21 Oct 2015 07:28:00 GMT"`, and the obsolete RFC 850 and asctime forms) into ms from
 * `now`. A date in the past gives 0. Absent, empty or unparseable values give `undefined`.
 *
 * @param now the current time, ms since the epoch. (Default: Date.now())
 */
export function parseRetryAfter(
  value: string | undefined | null,
  now: number = Date.now(),
): number | undefined {
  if (value === undefined || value === null) return undefined;
  const v = value.trim();
  if (v === "") return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  // Date.parse accepts almost anything ("1", "x 2"); an HTTP-date always starts with a day name.
  if (!DAY_NAME_RE.test(v)) return undefined;
  // asctime carries no zone but means GMT; Date.parse would read it as local time.
  const at = Date.parse(ASCTIME_RE.test(v) ? `${v} GMT` : v);
  if (!Number.isFinite(at)) return undefined;
  return Math.max(0, at - now);
}
