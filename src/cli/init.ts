import { access, mkdir, readFile, writeFile } from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { FraiseqlError } from "../errors.js";
import { packageVersion, parseCommandArgs } from "./args.js";

export const STARTER_TOML = `# fraiseql configuration. Reference: docs/configuration.md

# Entities and observers can also be declared in TypeScript (see schema.ts).
include = ["./schema.ts"]

[database]
# url = "\${DATABASE_URL}"        # a real PostgreSQL; without it the embedded PGlite is used
data_dir = ".fraiseql/data"

[server]
host = "127.0.0.1"
port = 4000

[[entities]]
name = "Order"
[entities.fields]
id = "ID"
customer_email = "String"
total = "Float"
status = "String"
tracking_number = "String?"

[[observers]]
name = "notify_shipping_update"
entity = "Order"
event = "UPDATE"
condition = "status.changed() && status == 'shipped'"

[[observers.actions]]
type = "webhook"
url = "http://127.0.0.1:8000/tracking"
body = { order_id = "{{ id }}", tracking_number = "{{ tracking_number }}", customer_email = "{{ customer_email }}" }

[webhooks]
timeout = "30s"

[webhooks.retry]
max_attempts = 3
backoff = "exponential"
initial_delay = "100ms"
max_delay = "5s"
retry_on = [408, 429, 500, 502, 503, 504]
dont_retry_on = [400, 401, 403, 404, 422]

[webhooks.signing]
enabled = true
algorithm = "sha256"
secret = "\${WEBHOOK_SECRET}"
header = "X-FraiseQL-Signature"
timestamp_header = "X-FraiseQL-Timestamp"

[webhooks.dlq]
enabled = true
backend = "postgresql"
table = "webhook_dlq"
schema = "public"
retention = "7d"
`;

export const STARTER_SCHEMA = `import { observer, webhook } from "fraiseql";

// Observers declared in TypeScript take the same keys as in fraiseql.toml.
export const onOrderCreated = observer({
  name: "on_order_created",
  entity: "Order",
  event: "INSERT",
  actions: [
    webhook({
      url: "http://127.0.0.1:8000/notifications",
      method: "POST",
      body: {
        event: "order.created",
        order_id: "{{ id }}",
        customer_email: "{{ customer_email }}",
        total: "{{ total }}",
        timestamp: "{{ _timestamp }}",
      },
    }),
  ],
});
`;

async function isModulePackage(path: string): Promise<boolean> {
  try {
    return (JSON.parse(await readFile(path, "utf8")) as { type?: unknown }).type === "module";
  } catch {
    return false;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * A starter package.json: `"type": "module"` makes schema.ts an ES module, whose
 * `import ... from "fraiseql"` the command line resolves to itself until the project installs
 * its own copy (`npm install`).
 */
async function starterPackage(dir: string): Promise<string> {
  const version = await packageVersion();
  const name =
    basename(dir)
      .toLowerCase()
      .replace(/[^a-z0-9._-]+/g, "-")
      .replace(/^[._-]+/, "") || "app";
  const pkg = {
    name,
    private: true,
    type: "module",
    scripts: { check: "fraiseql check", start: "fraiseql serve" },
    dependencies: { fraiseql: `^${version}` },
  };
  return `${JSON.stringify(pkg, null, 2)}\n`;
}

/**
 * \`fraiseql init [DIR]\`: writes a starter fraiseql.toml and schema.ts (never overwriting them
 * without --force), and a package.json when the directory has none (never overwritten).
 */
export async function runInit(args: string[]): Promise<number> {
  const { positionals, values } = parseCommandArgs("init", args, { force: { type: "boolean" } });
  const dir = resolve(positionals[0] ?? ".");
  await mkdir(dir, { recursive: true });
  const files: [string, string][] = [
    [join(dir, "fraiseql.toml"), STARTER_TOML],
    [join(dir, "schema.ts"), STARTER_SCHEMA],
  ];
  for (const [path] of files) {
    if (!values.force && (await exists(path))) {
      throw new FraiseqlError("FQL_USAGE", `${path} exists already; nothing was written`, {
        hint: "Pass --force to overwrite it.",
      });
    }
  }
  const pkgPath = join(dir, "package.json");
  const ownPackage = await exists(pkgPath);
  if (!ownPackage) files.push([pkgPath, await starterPackage(dir)]);
  for (const [path, text] of files) await writeFile(path, text);
  process.stdout.write(
    `wrote ${files.map(([p]) => p).join(", ")}\nnext: export WEBHOOK_SECRET=..., then fraiseql check && fraiseql serve\n`,
  );
  if (ownPackage && !(await isModulePackage(pkgPath))) {
    process.stdout.write(
      `note: ${pkgPath} is a CommonJS package: schema.ts imports fraiseql, so install it here (npm install fraiseql), or add "type": "module" to it\n`,
    );
  }
  return 0;
}
