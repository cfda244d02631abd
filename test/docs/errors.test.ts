import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, it } from "node:test";
import { FAILURE_REASONS } from "../../src/delivery/retry.js";
import { ERROR_CODES } from "../../src/errors.js";

describe("docs/errors.md", () => {
  it("documents every error code and every failure reason", async () => {
    const doc = await readFile(new URL("../../docs/errors.md", import.meta.url), "utf8");
    for (const code of Object.keys(ERROR_CODES))
      assert.ok(doc.includes(`\`${code}\``), `${code} is documented`);
    for (const reason of [...FAILURE_REASONS, "upstream_failed"]) {
      assert.ok(doc.includes(`\`${reason}\``), `reason ${reason} is documented`);
    }
  });
});
