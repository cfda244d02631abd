import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deliveryId } from "../../src/observers/runtime.js";

const INSTANCE = "6f1c0a52-3d1e-4a7b-9a0e-2b8f4c1d9e77";
const AT = Date.parse("2026-11-29T02:06:08.368Z");

describe("deliveryId", () => {
  it("is a version 7 UUID, the same for the same installation, event, observer and action", () => {
    const id = deliveryId(INSTANCE, "42", AT, "on_order_created", 0);
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(deliveryId(INSTANCE, "42", AT, "on_order_created", 0), id);
  });

  it("starts with the event's capture time in milliseconds, as RFC 9562 lays out version 7", () => {
    const id = deliveryId(INSTANCE, "42", AT, "on_order_created", 0);
    const hex = id.replaceAll("-", "");
    assert.equal(Number.parseInt(hex.slice(0, 12), 16), AT);
    // Times after 2^32 ms (1970-02-19) and near the 48-bit limit keep their high bits.
    for (const ms of [1, 2 ** 32 + 5, 2 ** 40 + 123, 2 ** 48 - 1]) {
      const h = deliveryId(INSTANCE, "1", ms, "o", 0).replaceAll("-", "");
      assert.equal(Number.parseInt(h.slice(0, 12), 16), ms, String(ms));
    }
  });

  it("sorts by capture time, whatever the rest", () => {
    const ids = Array.from({ length: 200 }, (_, i) =>
      deliveryId(INSTANCE, String(1000 - i), AT + i, `observer_${i % 7}`, i % 3),
    );
    assert.deepEqual([...ids].sort(), ids);
  });

  it("differs when any of its parts differs, the time aside", () => {
    const ids = new Set([
      deliveryId(INSTANCE, "42", AT, "on_order_created", 0),
      deliveryId(INSTANCE, "42", AT, "on_order_created", 1),
      deliveryId(INSTANCE, "43", AT, "on_order_created", 0),
      deliveryId(INSTANCE, "42", AT, "on_order_paid", 0),
      deliveryId("0b6f0f5e-9d0c-4f43-8a56-64c2b2f0e1aa", "42", AT, "on_order_created", 0),
      // Parts are separated: "4" + "2x" is not "42" + "x".
      deliveryId(INSTANCE, "4", AT, "2on_order_created", 0),
    ]);
    assert.equal(ids.size, 6);
    // The same event at the same time in two installations: only the hash tells them apart.
    const a = deliveryId(INSTANCE, "42", AT, "on_order_created", 0);
    const b = deliveryId("0b6f0f5e-9d0c-4f43-8a56-64c2b2f0e1aa", "42", AT, "on_order_created", 0);
    assert.equal(a.slice(0, 25), b.slice(0, 25));
    assert.notEqual(a, b);
  });

  it("within one millisecond, sorts by event id (modulo 2^30), the counter RFC 9562 allows", () => {
    const ids = Array.from({ length: 300 }, (_, i) =>
      deliveryId(INSTANCE, String(5000 + i * 997), AT, "o", 0),
    );
    assert.deepEqual([...ids].sort(), ids);
    const counter = (id: string) => {
      const hex = id.replaceAll("-", "");
      // rand_a (12 bits after the version nibble), then 18 bits after the two variant bits.
      const high = Number.parseInt(hex.slice(13, 16), 16);
      const low = Number.parseInt(hex.slice(16, 21), 16) & 0x3ffff;
      return high * 2 ** 18 + low;
    };
    for (const event of [1, 4095, 262_143, 262_144, 2 ** 30 - 1, 2 ** 30 + 7, 9_007_199_254_740_991]) {
      assert.equal(counter(deliveryId(INSTANCE, String(event), AT, "o", 0)), event % 2 ** 30, String(event));
    }
  });
});
