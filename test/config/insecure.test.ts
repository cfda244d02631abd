import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { loadConfig } from "../../src/config/load.js";
import { isFraiseqlError } from "../../src/errors.js";

describe("an unauthenticated API on a public address", () => {
  it("is refused, naming the fix, unless --insecure allows it", async () => {
    const dir = await mkdtemp(join(tmpdir(), "fraiseql-insecure-"));
    try {
      const path = join(dir, "fraiseql.toml");
      await writeFile(path, '[server]\nhost = "0.0.0.0"\n');
      await assert.rejects(loadConfig({ path }), (err) => {
        assert.ok(isFraiseqlError(err, "FQL_CONFIG_INVALID"));
        assert.equal(err.location.key, "server.host");
        assert.match(err.describe(), /--insecure/);
        return true;
      });
      const config = await loadConfig({ path, insecure: true });
      assert.equal(config.server.host, "0.0.0.0");
      assert.equal(config.server.auth.mode, "none");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
