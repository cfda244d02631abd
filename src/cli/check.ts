import { loadConfig } from "../config/load.js";
import type { ResolvedConfig } from "../config/types.js";
import { parseCommandArgs } from "./args.js";

/** Advice that does not stop the config from loading. */
export function configWarnings(config: ResolvedConfig): string[] {
  const warnings: string[] = [];
  if (config.observers.length > 0 && !config.webhooks.signing.enabled) {
    warnings.push(
      'webhooks.signing: no secret is configured, so webhooks are sent unsigned; set [webhooks.signing] secret = "${WEBHOOK_SECRET}"',
    );
  }
  if (config.webhooks.testUrl !== undefined) {
    warnings.push("webhooks.test_url is set: every webhook is sent to it instead of its action's url");
  }
  for (const entity of config.entities) {
    if (!config.observers.some((o) => o.entity === entity.name)) {
      warnings.push(`entity ${entity.name}: no observer watches it, so its changes are not captured`);
    }
  }
  return warnings;
}

/** `fraiseql check`: loads and validates everything that startup validates, then reports. */
export async function runCheck(args: string[]): Promise<number> {
  const { values } = parseCommandArgs("check", args, { config: { type: "string" } }, false);
  const config = await loadConfig(values.config === undefined ? {} : { path: values.config });
  const actions = config.observers.reduce((n, o) => n + o.actions.length, 0);
  for (const warning of configWarnings(config)) process.stderr.write(`warning: ${warning}\n`);
  process.stdout.write(
    `ok: ${config.file ?? "(no config file: defaults)"}: ${config.entities.length} entities, ${config.observers.length} observers, ${actions} actions; database: ${config.database.url ? "PostgreSQL" : `embedded (${config.database.dataDir})`}\n`,
  );
  return 0;
}
