// biome-ignore-all lint/suspicious/noTemplateCurlyInString: "${NAME}" is the config's environment reference syntax, not a mistaken template literal.
/**
 * `${NAME}` substitution in config strings (SPEC §5.2).
 *
 * - `${NAME}` is replaced by the environment variable `NAME` (`[A-Za-z_][A-Za-z0-9_]*`); an
 *   unset variable is an `FQL_ENV_MISSING` error naming it and the key that uses it. A variable
 *   set to the empty string is substituted as the empty string.
 * - `${file:/run/secrets/api_key}` is replaced by the contents of that file with surrounding
 *   whitespace trimmed (Docker and Kubernetes secrets). A relative path is read from the
 *   directory of the config file.
 * - `$${` is an escape: it yields a literal `${` and nothing after it is substituted.
 * - Every substituted value is recorded as a secret, so it can be redacted wherever text
 *   leaves the process.
 */

import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { FraiseqlError } from "../errors.js";

/** Where variables come from and where substituted values are recorded. */
export interface EnvContext {
  /** Variables by name. (Default in the loaders: `process.env`) */
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directory that relative `${file:...}` paths are read from. (Default: the working directory) */
  readonly baseDir?: string;
  /** Receives every substituted value (empty values excepted). */
  readonly secrets: Set<string>;
}

const REFERENCE = /\$(\$?)\{([^}]*)\}?/g;
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** True when `text` contains a `${...}` reference (an escaped `$${` does not count). */
export function hasEnvReference(text: string): boolean {
  for (const match of text.matchAll(REFERENCE)) if (match[1] === "") return true;
  return false;
}

/**
 * Replaces every `${NAME}` and `${file:PATH}` in `text` and unescapes `$${`.
 * @param key the dotted config key the text belongs to, named in errors.
 * @param escapeTemplates escape `{{` in substituted values, for strings that are `{{ }}` templates.
 * @throws FraiseqlError FQL_ENV_MISSING for an unset variable or unreadable file;
 *   FQL_CONFIG_INVALID for a malformed reference.
 */
export function expandEnv(text: string, ctx: EnvContext, key?: string, escapeTemplates = false): string {
  if (!text.includes("${")) return text;
  const where = key === undefined ? {} : { key };
  return text.replace(REFERENCE, (whole, escaped: string, inner: string) => {
    if (escaped === "$") return whole.slice(1);
    if (!whole.endsWith("}")) {
      throw new FraiseqlError("FQL_CONFIG_INVALID", `unterminated "\${" in "${text}"`, {
        ...where,
        hint: 'close it with "}", or write "$${" for a literal "${"',
      });
    }
    const value = inner.startsWith("file:")
      ? readSecretFile(inner.slice(5), ctx, where)
      : readVariable(inner, ctx, where);
    if (value !== "") ctx.secrets.add(value);
    return escapeTemplates ? value.replaceAll("{{", "\\{{") : value;
  });
}

function readVariable(name: string, ctx: EnvContext, where: { key?: string }): string {
  const trimmed = name.trim();
  if (!NAME.test(trimmed)) {
    throw new FraiseqlError(
      "FQL_CONFIG_INVALID",
      `"\${${name}}" is not a valid environment variable reference`,
      {
        ...where,
        hint: 'names are letters, digits and "_" (not starting with a digit); write "$${" for a literal "${"',
      },
    );
  }
  const value = ctx.env[trimmed];
  if (value === undefined) {
    throw new FraiseqlError("FQL_ENV_MISSING", `environment variable ${trimmed} is not set`, {
      ...where,
      hint: `set ${trimmed} in the environment of the process (an empty value is allowed)`,
    });
  }
  return value;
}

function readSecretFile(path: string, ctx: EnvContext, where: { key?: string }): string {
  const trimmed = path.trim();
  if (trimmed === "") {
    throw new FraiseqlError("FQL_CONFIG_INVALID", '"${file:}" names no file', {
      ...where,
      hint: 'write "${file:/run/secrets/NAME}"',
    });
  }
  const full = resolve(ctx.baseDir ?? process.cwd(), trimmed);
  try {
    return readFileSync(full, "utf8").trim();
  } catch (cause) {
    const reason = (cause as NodeJS.ErrnoException).code === "ENOENT" ? "does not exist" : "cannot be read";
    throw new FraiseqlError("FQL_ENV_MISSING", `secret file ${full} ${reason}`, { ...where, cause });
  }
}
