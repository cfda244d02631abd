import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { RateLimiter, TokenBucket } from "../../src/delivery/rate-limit.js";

describe("TokenBucket", () => {
  it("hands out the burst at once, then one token every 1/rate seconds", () => {
    const b = new TokenBucket(20, 20, 0);
    const waits = Array.from({ length: 100 }, () => b.reserve(0));
    assert.deepEqual(waits.slice(0, 20), Array(20).fill(0));
    assert.equal(waits[20], 50);
    assert.equal(waits[99], 4000, "100 events at 20/s with burst 20 take 4 s");
  });

  it("never runs ahead of the bucket: in any window, at most burst + rate * window tokens start", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.integer({ min: 0, max: 200 }), { minLength: 1, maxLength: 300 }),
        (rate, burst, gaps) => {
          const b = new TokenBucket(rate, burst, 0);
          let now = 0;
          const starts: number[] = [];
          for (const gap of gaps) {
            now += gap;
            starts.push(now + b.reserve(now));
          }
          starts.sort((x, y) => x - y);
          for (let i = 0; i < starts.length; i++) {
            for (let j = i; j < starts.length; j++) {
              const window = starts[j]! - starts[i]!;
              // +1 for rounding each due time up to a whole ms
              assert.ok(
                j - i + 1 <= burst + (rate * window) / 1000 + 1,
                `${j - i + 1} starts in ${window} ms`,
              );
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("a pause (Retry-After) lets nothing out before it ends", () => {
    const b = new TokenBucket(100, 100, 0);
    b.pause(2000, 0);
    assert.equal(b.reserve(10), 1990);
    assert.ok(b.reserve(10) >= 1990);
  });

  it("a refund gives the token back", () => {
    const b = new TokenBucket(1, 1, 0);
    assert.equal(b.reserve(0), 0);
    assert.equal(b.reserve(0), 1000);
    b.refund();
    assert.equal(b.reserve(0), 1000);
  });
});

describe("RateLimiter", () => {
  it("limits two origins independently", () => {
    const l = new RateLimiter(10, 1);
    assert.equal(l.reserve("http://a", 0), 0);
    assert.equal(l.reserve("http://b", 0), 0);
    assert.equal(l.reserve("http://a", 0), 100);
  });

  it("shares the budget between processes", () => {
    const l = new RateLimiter(100, 100);
    l.share(100, 100, 4, 0);
    const waits = Array.from({ length: 26 }, () => l.reserve("http://a", 0));
    assert.equal(waits[24], 0);
    assert.equal(waits[25], 40, "each of 4 processes gets 25/s");
  });
});
