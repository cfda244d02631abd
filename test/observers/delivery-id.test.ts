import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { deliveryId } from "../../src/observers/runtime.js";

const INSTANCE = "6f1c0a52-3d1e-4a7b-9a0e-2b8f4c1d9e77";

describe("deliveryId", () => {
  it("is a version 8 UUID, the same for the same installation, event, observer and action", () => {
    const id = deliveryId(INSTANCE, "42", "on_order_created", 0);
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.equal(deliveryId(INSTANCE, "42", "on_order_created", 0), id);
  });

  it("differs when any of its parts differs", () => {
    const ids = new Set([
      deliveryId(INSTANCE, "42", "on_order_created", 0),
      deliveryId(INSTANCE, "42", "on_order_created", 1),
      deliveryId(INSTANCE, "43", "on_order_created", 0),
      deliveryId(INSTANCE, "42", "on_order_paid", 0),
      deliveryId("0b6f0f5e-9d0c-4f43-8a56-64c2b2f0e1aa", "42", "on_order_created", 0),
      // Parts are separated: "4" + "2x" is not "42" + "x".
      deliveryId(INSTANCE, "4", "2on_order_created", 0),
    ]);
    assert.equal(ids.size, 6);
  });
});
