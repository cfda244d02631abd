import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { formatDuration, parseDuration, parseSize } from "../../src/config/units.js";
import { isFraiseqlError } from "../../src/errors.js";

describe("parseDuration", () => {
  const good: [string, number][] = [
    ["100ms", 100],
    ["5s", 5000],
    ["1.5s", 1500],
    [".5s", 500],
    ["1m", 60_000],
    ["2h", 7_200_000],
    ["7d", 604_800_000],
    ["1w", 604_800_000],
    ["1h30m", 5_400_000],
    ["1h 30m", 5_400_000],
    ["1m30s250ms", 90_250],
    ["0s", 0],
    [" 30s ", 30_000],
    ["10S", 10_000],
    ["0.4ms", 0],
  ];
  for (const [text, ms] of good) {
    it(`reads ${JSON.stringify(text)} as ${ms}ms`, () => assert.equal(parseDuration(text), ms));
  }

  const bad = ["", "30", "-5s", "5 sec", "5x", "1.5", "30m1h", "1s1s", "s", "5min", "1e3s", "ms100"];
  for (const text of bad) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(
        () => parseDuration(text),
        (err) =>
          isFraiseqlError(err, "FQL_CONFIG_INVALID") &&
          err.message.includes("not a duration") &&
          err.hint !== undefined,
      );
    });
  }

  it("formats durations back into their shortest text", () => {
    assert.equal(formatDuration(1500), "1.5s");
    assert.equal(formatDuration(100), "100ms");
    assert.equal(formatDuration(5_400_000), "1.5h");
    assert.equal(formatDuration(604_800_000), "1w");
    for (const ms of [0, 1, 999, 1000, 61_000, 86_400_000, 123_456])
      assert.equal(parseDuration(formatDuration(ms)), ms);
  });
});

describe("parseSize", () => {
  const good: [string, number][] = [
    ["1B", 1],
    ["10GB", 10_000_000_000],
    ["512MB", 512_000_000],
    ["1KB", 1000],
    ["1KiB", 1024],
    ["1.5KiB", 1536],
    ["2MiB", 2 * 1024 * 1024],
    ["1GiB", 1024 ** 3],
    ["1TB", 1e12],
    ["10gb", 10_000_000_000],
    ["10 GB", 10_000_000_000],
  ];
  for (const [text, bytes] of good) {
    it(`reads ${JSON.stringify(text)} as ${bytes} bytes`, () => assert.equal(parseSize(text), bytes));
  }

  for (const text of ["", "10", "10XB", "-1GB", "GB", "1.2.3MB", "10 G B"]) {
    it(`refuses ${JSON.stringify(text)}`, () => {
      assert.throws(
        () => parseSize(text),
        (err) => isFraiseqlError(err, "FQL_CONFIG_INVALID") && err.message.includes("not a size"),
      );
    });
  }
});

describe("unit laws", () => {
  it("a combined duration is the sum of its parts", () => {
    fc.assert(
      fc.property(fc.nat(100), fc.nat(23), fc.nat(59), fc.nat(59), fc.nat(999), (d, h, m, s, ms) => {
        const text = `${d}d${h}h${m}m${s}s${ms}ms`;
        return parseDuration(text) === (((d * 24 + h) * 60 + m) * 60 + s) * 1000 + ms;
      }),
    );
  });

  it("formatDuration and parseDuration round-trip", () => {
    fc.assert(fc.property(fc.nat(10 ** 12), (ms) => parseDuration(formatDuration(ms)) === ms));
  });

  it("a binary size is exactly its power of 1024", () => {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    fc.assert(fc.property(fc.nat(4096), fc.nat(4), (n, u) => parseSize(`${n}${units[u]}`) === n * 1024 ** u));
  });
});
