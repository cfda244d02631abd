import type { DlqConfig } from "../config/types.js";
import type { Database } from "../db/driver.js";
import { FraiseqlError } from "../errors.js";
import { postgresDlq } from "./postgres.js";
import type { DlqBackend } from "./types.js";

export { postgresDlq } from "./postgres.js";
export type { DeadLetter, DlqBackend, DlqListFilter } from "./types.js";

/** Opens the backend chosen by `[webhooks.dlq] backend`. */
export function openDlq(db: Database, config: DlqConfig): DlqBackend {
  switch (config.backend) {
    case "postgresql":
      return postgresDlq(db, config);
    default:
      throw new FraiseqlError("FQL_CONFIG_INVALID", `DLQ backend "${config.backend}" is not available yet`, {
        key: "webhooks.dlq.backend",
      });
  }
}
