import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseConfig } from "../../src/config/load.js";
import { compileObservers } from "../../src/observers/runtime.js";

const TOML = `
[[entities]]
name = "Order"
[entities.fields]
total = "Float"

[[observers]]
name = "o"
entity = "Order"
event = "INSERT"
[[observers.actions]]
url = "http://127.0.0.1:9/x"
headers = { Authorization = "Bearer \${TOKEN}" }
body = { key = "\${TOKEN}", total = "{{ total }}" }
`;

describe("${ENV} values inside templates", () => {
  it("stay literal text even when they contain {{", () => {
    const token = "tok{{ total }}en";
    const config = parseConfig(TOML, { env: { TOKEN: token } });
    const action = compileObservers(config).byName.get("o")!.actions[0]!;
    const ctx = {
      event: "INSERT" as const,
      old: null,
      new: { id: 1, total: 5 },
      entity: "Order",
      observer: "o",
      eventId: "1",
      timestamp: "2025-01-01T00:00:00.000Z",
    };
    assert.equal(action.headers[0]![1].render(ctx), `Bearer ${token}`);
    assert.deepEqual(action.body!.render(ctx), { key: token, total: 5 });
    assert.ok(config.secrets.includes(token));
  });
});
