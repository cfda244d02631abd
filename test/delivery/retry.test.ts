import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import type { RetryPolicy } from "../../src/config/types.js";
import { type AttemptOutcome, decideRetry, parseRetryAfter, retryDelay } from "../../src/delivery/retry.js";

/** The SPEC §6 defaults. */
const DEFAULTS: RetryPolicy = {
  maxAttempts: 3,
  backoff: "exponential",
  initialDelay: 100,
  maxDelay: 5000,
  multiplier: 2.5,
  jitter: 0,
  retryOn: [408, 429, 500, 502, 503, 504],
  dontRetryOn: [400, 401, 403, 404, 422],
};
const policy = (over: Partial<RetryPolicy>): RetryPolicy => ({ ...DEFAULTS, ...over });

describe("retryDelay", () => {
  it("exponential: 100, 250, 625, ... capped at max_delay (SPEC §6)", () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 50, 5000].map((n) => retryDelay(DEFAULTS, n));
    assert.deepEqual(delays, [100, 250, 625, 1563, 3906, 5000, 5000, 5000, 5000]);
  });

  it("linear: initial * n; fixed: initial", () => {
    const linear = policy({ backoff: "linear", initialDelay: 1000, maxDelay: 3500 });
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((n) => retryDelay(linear, n)),
      [1000, 2000, 3000, 3500, 3500],
    );
    const fixed = policy({ backoff: "fixed", initialDelay: 700 });
    assert.deepEqual(
      [1, 2, 9].map((n) => retryDelay(fixed, n)),
      [700, 700, 700],
    );
  });

  it("jitter spreads within [d*(1-jitter), d], decided by random", () => {
    const p = policy({ jitter: 0.5 });
    assert.equal(
      retryDelay(p, 2, () => 0),
      250,
    );
    assert.equal(
      retryDelay(p, 2, () => 0.5),
      188,
    );
    assert.equal(
      retryDelay(p, 2, () => 0.999999),
      125,
    );
    assert.equal(
      retryDelay(p, 40, () => 0.5),
      3750,
    );
  });

  const arbPolicy = fc.record({
    maxAttempts: fc.integer({ min: 1, max: 30 }),
    backoff: fc.constantFrom("exponential" as const, "linear" as const, "fixed" as const),
    initialDelay: fc.integer({ min: 0, max: 100_000 }),
    maxDelay: fc.integer({ min: 0, max: 1_000_000 }),
    multiplier: fc.double({ min: 1, max: 10, noNaN: true }),
    jitter: fc.double({ min: 0, max: 1, noNaN: true }),
    retryOn: fc.constant([500]),
    dontRetryOn: fc.constant([400]),
  });

  it("always within [0, maxDelay]", () => {
    fc.assert(
      fc.property(
        arbPolicy,
        fc.integer({ min: -5, max: 10_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true }),
        (p, n, r) => {
          const d = retryDelay(p, n, () => r);
          assert.ok(d >= 0 && d <= p.maxDelay, `${d} outside [0, ${p.maxDelay}]`);
        },
      ),
    );
  });

  it("without jitter, never decreases as n grows", () => {
    fc.assert(
      fc.property(arbPolicy, fc.integer({ min: 1, max: 2000 }), (p0, n) => {
        const p = { ...p0, jitter: 0 };
        assert.ok(retryDelay(p, n + 1) >= retryDelay(p, n));
      }),
    );
  });

  it("with jitter, never above the un-jittered delay nor below its (1 - jitter) share", () => {
    fc.assert(
      fc.property(
        arbPolicy,
        fc.integer({ min: 1, max: 60 }),
        fc.double({ min: 0, max: 1, maxExcluded: true }),
        (p, n, r) => {
          const d = retryDelay(p, n, () => r);
          const full = retryDelay({ ...p, jitter: 0 }, n);
          assert.ok(d <= full);
          assert.ok(d >= Math.floor(full * (1 - p.jitter)));
        },
      ),
    );
  });
});

describe("decideRetry", () => {
  const http = (status: number, retryAfterMs?: number): AttemptOutcome =>
    retryAfterMs === undefined ? { kind: "http", status } : { kind: "http", status, retryAfterMs };

  it("the seed's timeline: 500, 500, 500 with the defaults -> retry 100 ms, retry 250 ms, dead", () => {
    assert.deepEqual(decideRetry(DEFAULTS, 1, http(500)), {
      action: "retry",
      delayMs: 100,
      reason: "http_5xx",
    });
    assert.deepEqual(decideRetry(DEFAULTS, 2, http(500)), {
      action: "retry",
      delayMs: 250,
      reason: "http_5xx",
    });
    assert.deepEqual(decideRetry(DEFAULTS, 3, http(500)), {
      action: "dead",
      reason: "http_5xx",
      exhausted: true,
    });
  });

  it("2xx is success, whatever the attempt", () => {
    assert.deepEqual(decideRetry(DEFAULTS, 1, { kind: "success", status: 200 }), { action: "succeeded" });
    assert.deepEqual(decideRetry(DEFAULTS, 3, http(204)), { action: "succeeded" });
  });

  const table: Array<[AttemptOutcome, string, string]> = [
    [http(500), "retry", "http_5xx"],
    [http(503), "retry", "http_5xx"],
    [http(429), "retry", "http_4xx"],
    [http(408), "retry", "http_4xx"],
    [http(507), "retry", "http_5xx"], // in neither list: 5xx retries
    [{ kind: "timeout" }, "retry", "timeout"],
    [{ kind: "connection", code: "ECONNREFUSED" }, "retry", "connection"],
    [http(400), "dead", "http_4xx"],
    [http(401), "dead", "http_4xx"],
    [http(404), "dead", "http_4xx"],
    [http(422), "dead", "http_4xx"],
    [http(409), "dead", "http_4xx"], // in neither list: not 5xx, dead
    [http(302), "dead", "http_3xx"],
    [{ kind: "invalid_request", message: "CR in header" }, "dead", "invalid_request"],
  ];
  for (const [outcome, action, reason] of table) {
    it(`${JSON.stringify(outcome)} on attempt 1 -> ${action} (${reason})`, () => {
      const d = decideRetry(DEFAULTS, 1, outcome);
      assert.equal(d.action, action);
      assert.equal("reason" in d && d.reason, reason);
      if (d.action === "dead") assert.equal(d.exhausted, false);
    });
  }

  it("dontRetryOn wins over retryOn; configured lists override the 5xx rule", () => {
    const p = policy({ retryOn: [500, 418], dontRetryOn: [500, 501] });
    assert.equal(decideRetry(p, 1, http(500)).action, "dead");
    assert.equal(decideRetry(p, 1, http(501)).action, "dead");
    assert.equal(decideRetry(p, 1, http(418)).action, "retry");
  });

  it("a last attempt that timed out is dead with reason timeout", () => {
    assert.deepEqual(decideRetry(policy({ maxAttempts: 1 }), 1, { kind: "timeout" }), {
      action: "dead",
      reason: "timeout",
      exhausted: true,
    });
  });

  it("Retry-After lengthens the delay, up to maxDelay, never shortens it", () => {
    const p = policy({ backoff: "fixed", initialDelay: 1000, maxAttempts: 5 });
    assert.deepEqual(decideRetry(p, 1, http(429, 3000)), {
      action: "retry",
      delayMs: 3000,
      reason: "http_4xx",
    });
    assert.deepEqual(decideRetry(p, 1, http(503, 60_000)), {
      action: "retry",
      delayMs: 5000,
      reason: "http_5xx",
    });
    assert.deepEqual(decideRetry(p, 1, http(503, 10)), {
      action: "retry",
      delayMs: 1000,
      reason: "http_5xx",
    });
  });

  it("a retry's delay is the policy's delay for that retry number", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 20 }), (attempt) => {
        const p = policy({ maxAttempts: 25 });
        const d = decideRetry(p, attempt, { kind: "timeout" });
        assert.deepEqual(d, { action: "retry", delayMs: retryDelay(p, attempt), reason: "timeout" });
      }),
    );
  });
});

describe("parseRetryAfter", () => {
  const now = Date.parse("2015-10-21T07:28:00Z");

  it("delay-seconds", () => {
    assert.equal(parseRetryAfter("120", now), 120_000);
    assert.equal(parseRetryAfter(" 0 ", now), 0);
  });

  it("HTTP-date in its three forms, relative to now; past dates give 0", () => {
    assert.equal(parseRetryAfter("Wed, 21 Oct 2015 07:28:30 GMT", now), 30_000);
    assert.equal(parseRetryAfter("Wednesday, 21-Oct-15 07:29:00 GMT", now), 60_000);
    assert.equal(parseRetryAfter("Wed Oct 21 07:28:05 2015", now), 5000);
    assert.equal(parseRetryAfter("Wed Oct  7 07:28:00 2015", now), 0);
    assert.equal(parseRetryAfter("Tue, 20 Oct 2015 07:28:00 GMT", now), 0);
  });

  it("absent or invalid gives undefined", () => {
    for (const v of [undefined, null, "", "  ", "-5", "1.5", "soon", "1 2", "Wed, nonsense"]) {
      assert.equal(parseRetryAfter(v, now), undefined, String(v));
    }
  });
});
