import { type ParseArgsConfig, parseArgs } from "node:util";
import { FraiseqlError } from "../errors.js";

/** parseArgs with errors turned into FQL_USAGE paragraphs. */
type Options = NonNullable<ParseArgsConfig["options"]>;

export interface ParsedCommand<T extends Options> {
  values: ReturnType<typeof parseArgs<{ options: T; allowPositionals: true; strict: true }>>["values"];
  positionals: string[];
}

export function parseCommandArgs<T extends Options>(
  command: string,
  args: string[],
  options: T,
  allowPositionals = true,
): ParsedCommand<T> {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (err) {
    throw new FraiseqlError("FQL_USAGE", `${command}: ${(err as Error).message}`, {
      hint: `Run "fraiseql help" for the list of commands and options.`,
    });
  }
}
